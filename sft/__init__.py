"""sft: supervised fine-tuning of TF Hub BERT encoders for chatbot classifiers."""

import os

# TF Hub's KerasLayer is a Keras 2 layer: make `tf.keras` mean tf-keras before
# TensorFlow is first imported anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
