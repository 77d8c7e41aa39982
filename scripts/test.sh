#!/usr/bin/env bash
# Install sft with its test extra into ./.venv and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh test
.venv/bin/python -m pytest "$@"
