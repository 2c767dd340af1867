#!/usr/bin/env bash
# On a CUDA machine: the quick profile's tests, then the whole book in the gpu profile, then the time of every page.
# usage: bash scripts/gpu-check.sh            (after `make setup`; writes the gpu book to _build/gpu)
# Every step runs even when an earlier one fails (a failing test must not hide the book's page times); the failed
# steps are listed at the end and the exit status is non-zero if there was any.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
failed=()

step() {    # step NAME COMMAND...: run it, time it, remember a failure
  local name=$1 start rc
  shift
  start=$(date +%s)
  "$@"
  rc=$?
  echo "gpu-check: $name: exit $rc, $(( $(date +%s) - start )) s"
  [ "$rc" -eq 0 ] || failed+=("$name (exit $rc)")
  return 0
}

$BIN/python - <<'PY' || exit 1
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu-check: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine")
print(f"GPU: {torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()}), torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}")
PY
step "quick-profile tests" env DLDNA_PROFILE=quick DLDNA_PROGRESS=0 \
  $BIN/python -m pytest -q -p no:cacheprovider tests --ignore=tests/test_html.py
step "cache guard" bash scripts/cache-guard.sh _build/gpu/_build gpu
step "gpu-profile book" env DLDNA_PROFILE=gpu DLDNA_STATIC_WIDGETS=1 DLDNA_PROGRESS=0 \
  $BIN/jupyter-book build . --path-output _build/gpu --warningiserror --keep-going
echo "per page:"
step "page times" $BIN/python scripts/page_times.py _build/gpu/_build
if [ ${#failed[@]} -gt 0 ]; then
  printf 'gpu-check: FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "gpu-check: all steps passed"
