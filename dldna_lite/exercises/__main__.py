"""``python -m dldna_lite.exercises grade <folder>``: run the checks of a folder of submitted exercise notebooks and
print one table per exercise notebook (:mod:`dldna_lite.exercises.grading`; the page ``lecturers.md``).

Exit status: 0 when the table was printed (whatever the students' results), 1 when the folder holds no notebook,
2 for a wrong command line or when nbclient or the kernel is missing."""
from __future__ import annotations

import argparse
import sys
import time

from . import grading


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text!r}")
        return value
    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dldna_lite.exercises",
                                description="Tools for lecturers using the dldna-lite exercise notebooks.")
    sub = p.add_subparsers(dest="command", required=True, metavar="grade")
    g = sub.add_parser("grade", help="run the checks of every .ipynb in a folder and print a table",
                       description="Execute every submitted notebook (.ipynb, subfolders too) from the top in a "
                                   "fresh kernel, in the quick profile, and print per exercise pass / fail / "
                                   "not attempted. The students' code runs: use a container or a spare account.")
    g.add_argument("folder", help="folder of submitted notebooks")
    g.add_argument("--timeout", type=_positive(float), default=300.0,
                   help="seconds per notebook, kernel start included (default 300)")
    g.add_argument("--jobs", type=_positive(int), default=1, help="notebooks run at once (default 1)")
    g.add_argument("--kernel", default="python3", help="Jupyter kernel to run them in (default python3)")
    g.add_argument("--profile", default="quick", choices=["quick", "cpu", "gpu"],
                   help="DLDNA_PROFILE of the kernels (default quick)")
    g.add_argument("--json", metavar="FILE", help="also write every row, with the kernels' reports, as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not grading.Path(args.folder).is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    paths = grading.notebooks_in(args.folder)
    if not paths:
        print(f"error: no .ipynb notebook in {args.folder}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    print(f"grading {len(paths)} notebook(s) in {args.folder} ...", file=sys.stderr)
    try:
        rows = grading.grade(args.folder, timeout=args.timeout, jobs=args.jobs, kernel=args.kernel,
                             profile=args.profile,
                             log=lambda r: print(f"  {r.path}: {r.error and 'error' or r.total}", file=sys.stderr))
    except (RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(grading.format_table(rows), end="")
    if args.json:
        grading.save_json(args.json, grading.rows_json(rows))
    print(f"{len(rows)} notebook(s) graded in {time.perf_counter() - start:.0f} s"
          + (f"; rows written to {args.json}" if args.json else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
