#!/usr/bin/env bash
# Install the Label Studio server into its own virtualenv, Debian's chromium for the browser test and
# Debian's postgresql for Label Studio on PostgreSQL (server.database: postgresql).
# Safe to re-run: skips what is there. Measured on the 2-core CI machine: ~52 s for the venv
# (label-studio 1.23.2 and ~330 packages), ~1-2 min for chromium via apt.
#   .venv-labelstudio   label-studio==1.23.2 (it cannot share a venv with Prefect 3.9: pip backtracks
#                       to a Prefect that breaks at run time)
#   /usr/bin/chromium   headless browser for tests/test_labeling_browser.py (root only; else a hint)
#   postgresql          server programs in /usr/lib/postgresql/<major>/bin (root only; else a hint); we never
#                       use Debian's own cluster: `driftsketch-labelstudio start --set server.database=postgresql`
#                       runs one of its own under the Label Studio data dir
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LABEL_STUDIO_VERSION=1.23.2
VENV=.venv-labelstudio

if ! "$VENV/bin/label-studio" --help >/dev/null 2>&1 || \
   [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("label-studio"))' 2>/dev/null)" != "$LABEL_STUDIO_VERSION" ]; then
  echo "[labelstudio] creating $VENV with label-studio==$LABEL_STUDIO_VERSION"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "label-studio==$LABEL_STUDIO_VERSION"
fi

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "[labelstudio] installing Debian's chromium (browser test)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  else
    echo "[labelstudio] chromium missing: run 'sudo apt-get install -y chromium' for the browser test"
  fi
fi
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "[labelstudio] installing Debian's postgresql (Label Studio on PostgreSQL)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null
  else
    echo "[labelstudio] postgresql missing: run 'sudo apt-get install -y postgresql' for server.database=postgresql"
  fi
fi
echo "[labelstudio] ready: $VENV/bin/label-studio"
