"""Print how long each page of a built book took to execute, from the book's jupyter-cache.

usage: python scripts/page_times.py [BUILD_DIR] [--json FILE]   (default _build: the cache is BUILD_DIR/.jupyter_cache)

``--json FILE`` also writes ``{page: seconds}`` (page = the notebook's stem), which scripts/gpu_time_model.py reads.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from jupyter_cache import get_cache


def page_times(build_dir: Path) -> list[tuple[str, float]]:
    cache_dir = build_dir / ".jupyter_cache"
    if not cache_dir.is_dir():
        raise SystemExit(f"no execution cache at {cache_dir}: build the book first")
    # A page whose code changed is executed again and gets a new record; the old one stays in the cache. Each page
    # counts once, with its newest execution (the one the built HTML shows).
    newest = {}
    for record in sorted(get_cache(str(cache_dir)).list_cache_records(), key=lambda r: r.created):
        newest[Path(record.uri).name] = float(record.data.get("execution_seconds", float("nan")))
    return sorted(newest.items())


def main(argv: list[str]) -> int:
    args = list(argv[1:])
    out = None
    if "--json" in args:
        i = args.index("--json")
        out, args = Path(args[i + 1]), args[:i] + args[i + 2:]
    rows = page_times(Path(args[0] if args else "_build"))
    if out is not None:
        out.write_text(json.dumps({Path(name).stem: seconds for name, seconds in rows}, indent=1) + "\n")
    for name, seconds in rows:
        print(f"{name:<32} {seconds:8.1f} s")
    print(f"{'total':<32} {sum(s for _, s in rows):8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
