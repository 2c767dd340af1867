"""What a student meets on Colab: the declared ranges admit Colab's image, and the widgets work on its versions.

The snapshot is ``tests/data/colab-cpu-runtime-*.pip-freeze.txt`` (Colab's ``pip freeze``, from googlecolab/backend-info);
``constraints-colab.txt`` is made from it by ``scripts/colab_constraints.py``. ``make test`` runs every notebook in a
kernel at those versions (``scripts/student_kernel.py``); these tests check the parts that need no such kernel, and
the live widgets in whichever kernels ``DLDNA_STUDENT_PYTHON`` names (``make test``: Colab's ipywidgets 7.7) besides
this environment's (ipywidgets 8).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import colab_constraints  # noqa: E402
import student_kernel  # noqa: E402

SNAPSHOTS = sorted((ROOT / "tests" / "data").glob("colab-*.pip-freeze.txt"))
CONSTRAINTS = ROOT / "constraints-colab.txt"


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def test_constraints_file_is_generated_from_the_newest_snapshot():
    assert SNAPSHOTS, "no Colab snapshot in tests/data"
    header = CONSTRAINTS.read_text().splitlines()[1]
    assert SNAPSHOTS[-1].name in header, f"constraints-colab.txt was made from another snapshot: {header}"
    pins, _ = colab_constraints.convert(SNAPSHOTS[-1].read_text())
    body = [line for line in CONSTRAINTS.read_text().splitlines() if not line.startswith("#")]
    assert body == sorted(pins, key=str.lower), "regenerate: make colab-constraints FREEZE=... SOURCE=..."


def test_constraints_replace_what_cannot_be_installed_here():
    pins, notes = colab_constraints.convert(SNAPSHOTS[-1].read_text())
    names = {colab_constraints.canonical(line.split("==")[0]): line for line in pins}
    assert names["torch"].startswith("torch==2.11.0 ") and "2.11.0+cpu" in names["torch"]
    assert not any(n.startswith("nvidia-") or n == "triton" for n in names)
    assert not any("@" in line.split("#")[0] for line in pins)
    assert any("google-colab" in note for note in notes)


def test_runtime_ranges_admit_every_version_colab_ships():
    """The install cell must not upgrade anything Colab has (IPython 7.34 under google-colab's pin, ipywidgets 7.7
    under Colab's widget front end, ...): each declared range admits the snapshot's version."""
    colab = colab_constraints.local_pins(SNAPSHOTS[-1])
    for line in SNAPSHOTS[-1].read_text().splitlines():      # torch and torchvision are `name @ url` lines
        name = colab_constraints.canonical(line.split("@")[0].strip())
        wheel = colab_constraints.WHEEL.search(line.replace("%2B", "+"))
        if "@" in line and name in ("torch", "torchvision") and wheel:
            colab[name] = wheel[2]
    rejected = [f"{req} excludes Colab's {colab[colab_constraints.canonical(req.name)]}"
                for req in runtime_requirements() if colab_constraints.canonical(req.name) in colab
                and not req.specifier.contains(Version(colab[colab_constraints.canonical(req.name)]), prereleases=True)]
    assert not rejected, "; ".join(rejected)
    assert {"torch", "ipython", "ipywidgets", "numpy"} <= set(colab), "the snapshot lacks a package it should have"


def _student_kernel_resolution() -> Path | None:
    """The dry-run report ``scripts/student_kernel.py build`` left in ``$DLDNA_STUDENT_PYTHON``'s venv, when it was
    resolved against this CONSTRAINTS file after the last change of it and of pyproject.toml; else None."""
    python = os.environ.get("DLDNA_STUDENT_PYTHON")
    report = Path(python).absolute().parents[1] / "resolution.json" if python else None   # VENV/bin/python
    if report is None or not report.exists():
        return None
    newest_input = max(CONSTRAINTS.stat().st_mtime, (ROOT / "pyproject.toml").stat().st_mtime)
    return report if report.stat().st_mtime > newest_input else None


def test_pip_resolves_this_repository_against_colabs_image(tmp_path):
    """`pip install --dry-run -c constraints-colab.txt .`: resolves, and installs nothing Colab has at another
    version (pip's own resolver, the package index; nothing is installed). Under make test the student kernel was
    built from exactly this dry run (plus a Jupyter kernel's packages) minutes ago: its report is read instead of
    resolving again (76 s), as long as it is newer than the constraints and pyproject.toml."""
    report = _student_kernel_resolution()
    if report is None:
        report = tmp_path / "report.json"
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
                               "--report", str(report), "-c", str(CONSTRAINTS), str(ROOT)],
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    colab = colab_constraints.local_pins(CONSTRAINTS)
    resolved = {colab_constraints.canonical(i["metadata"]["name"]): i["metadata"]["version"]
                for i in json.loads(report.read_text())["install"]}
    assert all(resolved[n] == colab[n] for n in resolved if n in colab)
    added = set(resolved) - set(colab) - {"dldna-lite"}
    assert {"ripser", "persim"} <= added, added


def test_kernel_check_names_every_change_the_install_made():
    before = {"ipython": "7.34.0", "numpy": "2.1.3"}
    pins = {"ipython": "7.34.0", "numpy": "2.1.3", "psutil": "5.9.5"}
    assert student_kernel.differences(before, dict(before, ripser="0.6.15"), pins) == []
    assert student_kernel.differences(before, {"ipython": "9.18.1", "numpy": "2.1.3"}, pins) == \
        ["ipython 7.34.0 -> 9.18.1"]
    assert student_kernel.differences(before, dict(before, psutil="7.2.2"), pins) == \
        ["psutil 7.2.2 added, the image has 5.9.5"]
    assert student_kernel.differences(before, {"numpy": "2.1.3"}, pins) == ["ipython 7.34.0 -> removed"]


# ------------------------------------------------------------------------------------------- live widgets
LIVE = textwrap.dedent("""
    import ipywidgets, matplotlib.pyplot as plt
    from dldna_lite import widgets
    calls = []
    def draw(**values):
        calls.append(values)
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1], [0, len(calls)])
        ax.set_title(repr(sorted(values.items())))
        return fig
    # the kinds of control the chapters use: a numeric slider, a dropdown of names, a non-default start
    box = widgets.interactive_figure(draw, lr=[0.01, 0.1, 1.0], method=["sgd", "adam"], initial={"lr": 0.1})
    slider, dropdown = box.children[0].children
    print("KIND", type(slider).__name__, type(dropdown).__name__, ipywidgets.__version__)
    print("MARK built")
    slider.value = 1.0
    print("MARK slider")
    dropdown.value = "adam"
    print("MARK dropdown")
    print("CALLS", calls)
""")


def live_kernels() -> list[str]:
    pythons = [sys.executable] + [p for p in [os.environ.get("DLDNA_STUDENT_PYTHON")] if p]
    return pythons


def run_in_kernel(python: str, code: str, tmp_path: Path) -> list[dict]:
    """Execute ``code`` in a real ipykernel of ``python`` (jupyter_client, no front end); its iopub messages."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = tmp_path / "kernels" / "live"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [python, "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"], "language": "python",
                                                  "display_name": "live"}))
    km = KernelManager(kernel_name="live", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec.parent)]))
    env = dict(os.environ, PYTHONPATH=str(ROOT), DLDNA_STATIC_WIDGETS="0", MPLBACKEND="module://matplotlib_inline.backend_inline")
    km.start_kernel(env=env, cwd=str(tmp_path))
    client = km.client()
    messages = []
    try:
        client.start_channels()
        client.wait_for_ready(timeout=300)
        reply = client.execute_interactive(code, timeout=300, output_hook=messages.append)
        assert reply["content"]["status"] == "ok", "\n".join(reply["content"].get("traceback", []))
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)
    return messages


@pytest.mark.parametrize("python", live_kernels())
def test_live_kernel_redraws_the_figure_when_a_control_moves(python, tmp_path):
    """In a live kernel (ipywidgets 8 here; Colab's 7.7 in make test's student kernel), each move of a control
    calls ``draw`` with the new values and sends a new figure to the front end."""
    figures, pending, seen = {}, [], []        # figures sent before each MARK line
    for msg in run_in_kernel(python, LIVE, tmp_path):
        content = msg["content"]
        if msg["msg_type"] == "stream":
            for line in content["text"].splitlines():
                seen.append(line)
                if line.startswith("MARK "):
                    figures[line.split()[1]], pending = pending, []
        elif msg["msg_type"] == "display_data" and "image/png" in content["data"]:
            pending.append(content["data"]["image/png"])
    kind = next(line for line in seen if line.startswith("KIND"))
    assert kind.split()[1:3] == ["SelectionSlider", "Dropdown"], kind
    calls = next(line for line in seen if line.startswith("CALLS"))
    assert calls.endswith("[{'lr': 0.1, 'method': 'sgd'}, {'lr': 1.0, 'method': 'sgd'}, "
                          "{'lr': 1.0, 'method': 'adam'}]"), calls
    counts = {k: len(v) for k, v in figures.items()}
    assert counts == {"built": 1, "slider": 1, "dropdown": 1}, f"figures sent per step: {counts} ({kind})"
    assert len({figures[k][0] for k in counts}) == 3, "a move of a control did not change the figure"
