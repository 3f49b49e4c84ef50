#!/usr/bin/env bash
# Set up everything DriftSketch needs on a fresh machine; safe to re-run (skips what is there).
#   .venv              the project (torch CPU wheel, Prefect, label-studio-sdk, test tools)
#   .venv-labelstudio  the Label Studio server (it cannot share a venv with Prefect 3.9)
#   chromium           Debian's browser, for the browser test of the annotation UI (root only)
# GPU users: create .venv yourself first and install a CUDA torch there (see README), then run this.
set -euo pipefail
cd "$(dirname "$0")/.."
# One setup at a time: the README's two commands may start together in a fresh clone, and two pip runs
# filling one .venv at once break each other (seen: ModuleNotFoundError inside pip). The second waits,
# then finds everything installed and skips it. flock -o: only flock itself holds the lock, not a server
# a package's install script may leave running.
if [ -z "${DRIFTSKETCH_SETUP_LOCKED:-}" ] && command -v flock >/dev/null; then
  export DRIFTSKETCH_SETUP_LOCKED=1
  exec flock -o .setup.lock bash scripts/setup.sh "$@"
fi
PY=${PYTHON:-python3}
TORCH_SPEC=${DRIFTSKETCH_TORCH:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC (CPU wheel; see README for GPU)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q "$TORCH_SPEC"
fi
if ! .venv/bin/python -c "import driftsketch, prefect, label_studio_sdk, pytest, playwright" 2>/dev/null; then
  echo "[setup] installing the project and its dependencies into .venv"
  .venv/bin/pip install -q -e ".[test]"
fi
if [ -f scripts/install_labelstudio.sh ]; then
  bash scripts/install_labelstudio.sh
fi
echo "[setup] done"
