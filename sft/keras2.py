"""The one import of Keras: tf-keras, Keras 2, because TF Hub's `KerasLayer` is a Keras 2 layer.

`sft/__init__.py` sets TF_USE_LEGACY_KERAS before TensorFlow loads, so that
`tf.keras` means this Keras too; importing Keras 3 beside it costs about 100 MB
and mixes two layer classes that cannot be combined.
"""

import tf_keras as keras

__all__ = ["keras"]
