"""sft: supervised fine-tuning of TF Hub BERT encoders for chatbot classifiers."""

import os

# TF Hub's KerasLayer is a Keras 2 layer: make `tf.keras` mean tf-keras before
# TensorFlow is first imported anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ warnings and errors show, its info lines do not; a user's own level is kept,
# and then sft/startup.py filters nothing (the marker tells sft's default from the user's).
if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    os.environ["SFT_QUIET_TENSORFLOW"] = "1"

__version__ = "0.1.0"
