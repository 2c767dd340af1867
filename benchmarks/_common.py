"""What every benchmark shares: the ``--repeats`` and ``--threads`` options (imported as ``_common`` by the scripts,
which run as ``python benchmarks/<name>.py``)."""
from __future__ import annotations

import argparse

import torch


def add_timing_args(parser: argparse.ArgumentParser, what: str = "timed runs per contender") -> None:
    parser.add_argument("--repeats", type=int, default=5, help=f"{what} (default 5, at least 5)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's, one per core)")


def apply_timing_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject fewer than 5 repeats (the median of 5 is the project's rule) and set torch's thread count."""
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)
