"""Raw dialogue files to prepared splits: pure Python, no TensorFlow."""
