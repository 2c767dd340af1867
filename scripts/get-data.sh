#!/usr/bin/env bash
# Make Fashion-MNIST available offline, then decode and cache it (idempotent).
# Order: $DLDNA_DATA_DIR, Debian's dataset-fashion-mnist (installed here when apt is usable), torchvision's download.
set -euo pipefail
PY=${1:-.venv/bin/python}
DEBIAN_FILE=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CACHE=${DLDNA_CACHE_DIR:-$HOME/.cache/dldna_lite}
if [ -z "${DLDNA_DATA_DIR:-}" ] && [ ! -f "$DEBIAN_FILE" ] && [ ! -f "$CACHE/fashion_mnist_test.npz" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
    echo "Installing Debian's dataset-fashion-mnist with apt-get ..."
    $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
      || echo "apt-get could not install dataset-fashion-mnist (no root? run: sudo apt-get install dataset-fashion-mnist)"
  else
    echo "apt-get is not available: set DLDNA_DATA_DIR to a folder with the four Fashion-MNIST idx files," \
         "or let torchvision download them (needs the internet)."
  fi
fi
"$PY" -c "from dldna_lite.data import cache_all; cache_all()"
