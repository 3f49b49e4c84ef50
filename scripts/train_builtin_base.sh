#!/usr/bin/env bash
# Re-create the shipped built-in base, driftsketch/pretrained/builtin-base.pt (what `bash scripts/demo.sh`
# starts from), and measure it: 96 x 4 transformer (0.72M parameters), batch 128, 4000 steps on the
# built-in doodles (seed 0); ~13 minutes on 2 CPU cores. Then the weights-only export (EMA weights, 2.7 MiB)
# and benchmarks/bench_demo_base.py: recognizability per class under a classifier trained on doodles
# of another generator seed (none of them seen by the base), FD, continuity and a sample grid.
#
#   bash scripts/train_builtin_base.sh            # writes runs/builtin-base/ and the shipped file
#   OUT=runs/other SHIP=runs/other/base.pt bash scripts/train_builtin_base.sh --set model.depth=6  # another recipe
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/builtin-base}
.venv/bin/driftsketch-train --data builtin --max-steps 4000 --checkpoint-dir "$OUT" --no-wandb \
  --set model.dim=96 --set model.depth=4 --set batch_size=128 --set seed=0 "$@"
.venv/bin/driftsketch-models export "$OUT/model.pt" "${SHIP:-driftsketch/pretrained/builtin-base.pt}"
.venv/bin/python benchmarks/bench_demo_base.py "${SHIP:-driftsketch/pretrained/builtin-base.pt}" --out "$OUT/bench"
