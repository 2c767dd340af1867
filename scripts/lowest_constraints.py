"""The lowest versions that pyproject.toml's runtime ranges allow, as pip constraints (``make test-lowest``).

    python scripts/lowest_constraints.py > _build/constraints-lowest.txt

Every runtime dependency must have a lower bound (``>=`` or ``==``): a range without one cannot be tested at its
bottom, so this script refuses it. ``scripts/student_kernel.py`` builds the kernel of ``make test-lowest`` from the
result, and every notebook runs in it.
"""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def lowest(requirements: list[str]) -> list[str]:
    """``name==lowest`` for each requirement string."""
    pins = []
    for text in requirements:
        req = Requirement(text)
        bounds = [s.version for s in req.specifier if s.operator in (">=", "==", "~=")]
        if not bounds:
            raise SystemExit(f"{text!r} has no lower bound: write the lowest version it was seen running on")
        pins.append(f"{req.name}=={max(bounds, key=Version)}")
    return pins


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = ["# The lowest runtime versions pyproject.toml allows (scripts/lowest_constraints.py; make test-lowest)."]
    sys.stdout.write("\n".join(lines + lowest(project["dependencies"])) + "\n")


if __name__ == "__main__":
    main()
