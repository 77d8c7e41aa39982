#!/usr/bin/env bash
# Install sft into ./.venv and run the main job offline: prepare -> train -> evaluate
# on the sample dialogue log with the bundled pretrained MiniLM-L6 encoder.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
.venv/bin/sft prepare --config configs/sample.yaml --overwrite
.venv/bin/sft train --config configs/sample.yaml --overwrite
.venv/bin/sft evaluate --run-dir runs/sample
