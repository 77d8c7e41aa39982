"""Write the tiny random TF Hub-format BERT (2 layers, hidden 32) used by tests and smoke runs.

    python scripts/make_tiny_hub.py OUT      # writes OUT/encoder and OUT/preprocessor
"""

import sys

import sft  # noqa: F401  (selects tf-keras before TensorFlow loads)
from sft.hub.export import export_tiny

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(export_tiny(sys.argv[1]))
