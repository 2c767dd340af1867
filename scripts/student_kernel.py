"""The student's kernel: a throw-away venv that holds what a student's Jupyter already has, and nothing of ours.

    python scripts/student_kernel.py build  VENV --python python3.11 --constraints constraints-colab.txt
    python scripts/student_kernel.py verify VENV --constraints constraints-colab.txt

``build`` makes VENV with the packages that the image pins (``--constraints``: Colab's freeze made by
``scripts/colab_constraints.py``, or the lowest declared versions made by ``scripts/lowest_constraints.py``) and that
installing this repository would touch: pip resolves the repository plus a Jupyter kernel (ipykernel, IPython,
ipywidgets, ...) against the constraints in a dry run, and every resolved package the constraints pin is installed at
that version (by uv when make provides it, ``scripts/fast_install.py``; the resolution stays pip's, which is what
a student's install cell runs) -- dldna-lite itself and whatever the image does not ship are left to the notebooks'
install cells. The venv is registered as the Jupyter kernel ``dldna-student`` under ``VENV/share/jupyter`` (point
Jupyter at it with ``JUPYTER_PATH``) and its ``pip freeze`` is kept in ``VENV/image-freeze.txt``.

``verify`` runs after the notebooks: dldna-lite must have been installed into VENV by an install cell, and the
install must have changed no version the image had and added nothing at a version other than the image's pin. It
prints what the install cells added.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fast_install  # noqa: E402
from colab_constraints import canonical, local_pins  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KERNEL = ["ipykernel", "ipython", "ipywidgets", "traitlets", "widgetsnbextension", "jupyterlab-widgets", "psutil"]
FREEZE = "image-freeze.txt"


def _pip(venv: Path, *args: str, capture: bool = False) -> str:
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", *args], check=False, text=True,
                          stdout=subprocess.PIPE if capture else None)
    if done.returncode:
        raise SystemExit(f"student kernel: `pip {' '.join(args[:3])} ...` failed (exit {done.returncode})")
    return done.stdout or ""


def _freeze(venv: Path) -> dict[str, str]:
    pins = {}
    for line in _pip(venv, "list", "--format=freeze", "--exclude-editable", capture=True).splitlines():
        name, _, version = line.partition("==")
        if version:
            pins[canonical(name)] = version
    return pins


def build(venv: Path, python: str, constraints: Path) -> None:
    pins = local_pins(constraints)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    report = venv / "resolution.json"
    _pip(venv, "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report), "-c", str(constraints),
         str(ROOT), *KERNEL)
    resolved = {canonical(item["metadata"]["name"]): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    image = sorted(f"{name}=={version}" for name, version in resolved.items() if name in pins)
    if fast_install.install(str(venv / "bin" / "python"), ["-q", "-c", str(constraints), *image]):
        raise SystemExit(f"student kernel: installing the {len(image)} packages of {constraints.name} failed")
    installed = _freeze(venv)
    (venv / FREEZE).write_text("".join(f"{n}=={v}\n" for n, v in sorted(installed.items())))
    subprocess.run([str(venv / "bin" / "python"), "-m", "ipykernel", "install", "--prefix", str(venv),
                    "--name", "dldna-student", "--display-name", "dldna-lite student (install cell only)"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if subprocess.run([str(venv / "bin" / "python"), "-c", "import dldna_lite"], capture_output=True,
                      cwd=venv).returncode == 0:
        raise SystemExit("student kernel: dldna_lite is importable before any install cell ran (PYTHONPATH?)")
    left = sorted(set(resolved) - set(installed) - {"dldna-lite"})
    print(f"student kernel: {venv} with {len(image)} packages at {constraints.name}'s versions "
          f"(torch {resolved.get('torch', '?')}, IPython {resolved.get('ipython', '?')}, "
          f"ipywidgets {resolved.get('ipywidgets', '?')}); left to the install cell: {', '.join(left) or 'nothing'}")


def differences(before: dict[str, str], after: dict[str, str], pins: dict[str, str]) -> list[str]:
    """What an install did that the image forbids: a version it changed, or a package it added at another version
    than the image pins."""
    problems = [f"{n} {v} -> {after.get(n, 'removed')}" for n, v in sorted(before.items()) if after.get(n) != v]
    problems += [f"{n} {after[n]} added, the image has {pins[n]}" for n in sorted(set(after) - set(before))
                 if n in pins and pins[n].split("+")[0] != after[n].split("+")[0]]
    return problems


def verify(venv: Path, constraints: Path) -> None:
    site = list(venv.glob("lib/python*/site-packages/dldna_lite"))
    if not site:
        raise SystemExit(f"the notebooks passed, but no install cell installed dldna_lite into {venv}: "
                         "they ran in another environment (check JUPYTER_PATH and PYTHONPATH)")
    before = local_pins(venv / FREEZE)
    after = {n: v for n, v in _freeze(venv).items() if n != "dldna-lite"}
    problems = differences(before, after, local_pins(constraints))
    if problems:
        raise SystemExit(f"the notebooks' install cell changed what {constraints.name} ships:\n  "
                         + "\n  ".join(problems) + "\nwiden the ranges in pyproject.toml so that the image's versions "
                         "satisfy them (or say in the README why a newer version is needed)")
    added = sorted(f"{n} {after[n]}" for n in set(after) - set(before))
    print(f"student kernel: the install cells added {', '.join(added) or 'nothing'} and changed none of the "
          f"{len(before)} packages of {constraints.name}'s image")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["build", "verify"])
    parser.add_argument("venv", type=Path)
    parser.add_argument("--constraints", type=Path, required=True)
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the new venv (build)")
    args = parser.parse_args(argv)
    if args.action == "build":
        build(args.venv.resolve(), args.python, args.constraints.resolve())
    else:
        verify(args.venv.resolve(), args.constraints.resolve())


if __name__ == "__main__":
    main()
