"""``pip install`` into a venv, done by uv when make provides it (set-up of ``.venv`` and of the student kernels).

    python scripts/fast_install.py VENV_PYTHON -- <pip install arguments>

uv installs the same packages at the same versions as pip, from the same indexes, in a fraction of the time: it
unpacks wheels in parallel and links them from its cache. Measured on this project's 2-core machine, 2026-12-02:
``.venv`` (torch 2.14.1 and 200 other packages from the local disk) in 24 s with an empty uv cache against 3.5 min with
pip; the 103 packages of the Colab kernel in under 30 s against 104 s; same package list, same versions.

uv is taken from ``$DLDNA_UV`` (``make`` puts it in ``_build/uv`` with ``pip install --target``) or from ``PATH``.
Without it, or when uv fails, this runs pip itself with the same arguments, so set-up never depends on uv. uv does
not read pip's configuration, so pip's extra indexes and find-links (``pip config``, ``$PIP_FIND_LINKS``; on this
machine the local wheels of torch) are handed over, and ``--index-strategy unsafe-best-match`` makes uv choose among
indexes as pip does (the best version from any of them).

Both compile the installed modules to bytecode (uv's ``--compile-bytecode``; pip does so by default). uv does not by
default, and where ``$PYTHONDONTWRITEBYTECODE`` is set (this project's machines) Python then compiles torch, dynamo,
matplotlib and the rest from source in every kernel and every worker process: measured 2026-12-03 on the 2-core
machine, ``import torch`` took 3.7 s instead of 1.9 s and the first ``torch.optim`` optimizer 4.6 s instead of 1.8 s.

Only the installs of a set-up go through here. What a student's install cell does stays ``pip``, because that is
what Colab and Jupyter run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def uv_binary() -> str | None:
    """``$DLDNA_UV`` when it is an executable file, else ``uv`` on ``PATH``, else None."""
    given = os.environ.get("DLDNA_UV")
    if given:
        return given if os.access(given, os.X_OK) and Path(given).is_file() else None
    return shutil.which("uv")


def _pip_config(python: str) -> dict[str, str]:
    done = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True)
    config = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if value:
            config[key.split(".", 1)[-1]] = value.strip().strip("'\"")
    return config


def uv_flags(python: str) -> list[str]:
    """pip's extra indexes and find-links as uv options (uv reads neither pip.conf nor $PIP_*)."""
    config = _pip_config(python)
    flags = ["--index-strategy", "unsafe-best-match"]
    for url in config.get("extra-index-url", "").split():
        flags += ["--extra-index-url", url]
    for where in sorted({*config.get("find-links", "").split(), *os.environ.get("PIP_FIND_LINKS", "").split()}):
        flags += ["--find-links", where]
    for path in config.get("constraint", "").split():      # a machine's own caps (here: torch <= 2.14.1)
        flags += ["--constraint", path]
    return flags


def install(python: str, args: list[str]) -> int:
    """``pip install args`` into the environment of ``python``: by uv when there is one, else (or if uv fails) pip."""
    uv = uv_binary()
    if uv:
        done = subprocess.run([uv, "pip", "install", "--python", python, "--compile-bytecode", *uv_flags(python),
                               *args])
        if done.returncode == 0:
            return 0
        print(f"fast_install: uv failed (exit {done.returncode}); installing with pip instead", file=sys.stderr)
    return subprocess.run([python, "-m", "pip", "install", "--compile", *args]).returncode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[1] != "--":
        raise SystemExit("usage: python scripts/fast_install.py VENV_PYTHON -- <pip install arguments>")
    return install(argv[0], argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
