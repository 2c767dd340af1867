#!/usr/bin/env bash
# On a CUDA machine: the quick profile's tests, then the whole book in the gpu profile, then the time of every page.
# usage: bash scripts/gpu-check.sh            (after `make setup`; writes the gpu book to _build/gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
$BIN/python - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu-check: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine")
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
start=$(date +%s)
DLDNA_PROFILE=quick DLDNA_PROGRESS=0 $BIN/python -m pytest -q -p no:cacheprovider tests --ignore=tests/test_html.py
echo "quick-profile tests: $(( $(date +%s) - start )) s"
bash scripts/cache-guard.sh _build/gpu/_build gpu
start=$(date +%s)
DLDNA_PROFILE=gpu DLDNA_STATIC_WIDGETS=1 DLDNA_PROGRESS=0 \
  $BIN/jupyter-book build . --path-output _build/gpu --warningiserror --keep-going
echo "gpu-profile book: $(( $(date +%s) - start )) s, per page:"
$BIN/python scripts/page_times.py _build/gpu/_build
