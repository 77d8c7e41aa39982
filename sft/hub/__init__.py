"""TF Hub-format BERT: the encoder and preprocessor modules, their export, and handle resolution."""

# The encoder's three inputs, as TF Hub's BERT interface names them (TensorFlow-free: ONNX Runtime feeds them too).
INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")
