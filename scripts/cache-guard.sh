#!/usr/bin/env bash
# Drop a book build's execution cache when what the notebooks ran with has changed.
# jupyter-cache keys on the notebook's code only; the outputs also depend on DLDNA_PROFILE and on the code of the
# dldna_lite package (and on the widget renderer in it), so we keep a key of those next to the cache.
# Usage: scripts/cache-guard.sh BUILD_DIR PROFILE [FILE...]   (BUILD_DIR holds .jupyter_cache, jupyter_execute,
# .doctrees; each FILE, e.g. the kernel's constraints, is part of the key too)
set -euo pipefail
build=$1 profile=$2
shift 2
key="$profile $({ find dldna_lite -name '*.py' -print0 | sort -z | xargs -0 cat; cat "$@" /dev/null; } | sha1sum | cut -d' ' -f1)"
mkdir -p "$build"
if [ "$(cat "$build/.cache-key" 2>/dev/null)" != "$key" ]; then
  [ -d "$build/.jupyter_cache" ] && echo "profile or dldna_lite changed: executing every page again"
  rm -rf "$build/.jupyter_cache" "$build/jupyter_execute" "$build/.doctrees"   # .doctrees: make Sphinx re-read
fi
echo "$key" > "$build/.cache-key"
