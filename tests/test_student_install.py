"""The student's install, checked statically (the dynamic check is ``make test``: every notebook in a kernel at
Colab's versions that has only what a notebook's install cell installs besides, ``scripts/student_kernel.py``).

* every module that ``dldna_lite`` or a notebook imports is provided by a dependency that ``pyproject.toml``
  declares (stdlib excepted), and every declared dependency is imported somewhere;
* the install cell and the launch links are what ``scripts/sync_notebooks.py`` derives from ``_config.yml``, and
  the repository URL is written nowhere else by hand;
* the install cell fails with a message that says what to do when its requirement cannot be installed;
* Binder's files install the same package.
"""
from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import sync_notebooks  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NOTEBOOKS = sorted([*ROOT.glob("book/*.md"), *ROOT.glob("exercises/*.md")])
MODULES = sorted((ROOT / "dldna_lite").rglob("*.py"))


def _name(requirement: str) -> str:
    """The normalized distribution name of a PEP 508 requirement (``"PyWavelets>=1.6"`` -> ``"pywavelets"``)."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)).lower()


RUNTIME = {_name(r) for r in PYPROJECT["project"]["dependencies"]}


def _guarded(node: ast.AST, parents: dict) -> bool:
    """True when ``node`` sits in a ``try`` whose handlers catch ImportError: an optional import."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try):
            names = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if names & {"ImportError", "ModuleNotFoundError", "(ImportError, ModuleNotFoundError)"}:
                return True
    return False


def imported_modules(source: str) -> set[str]:
    """Top-level names of the absolute imports in ``source`` (optional imports left out)."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and not _guarded(node, parents):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and not _guarded(node, parents):
            out.add(node.module.split(".")[0])
    return out


def notebook_code(md: Path) -> str:
    """The code cells of a MyST notebook, IPython magics and shell lines blanked out."""
    cells = [c.source for c in jupytext.read(md).cells if c.cell_type == "code"]
    lines = "\n\n".join(cells).splitlines()
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)


def _third_party(modules: set[str]) -> set[str]:
    return {m for m in modules if m not in sys.stdlib_module_names and m not in ("dldna_lite", "__future__")}


@pytest.fixture(scope="module")
def used() -> dict[str, set[str]]:
    """``{module: files importing it}`` over the package and every notebook."""
    out: dict[str, set[str]] = {}
    for path in MODULES:
        for module in _third_party(imported_modules(path.read_text())):
            out.setdefault(module, set()).add(path.relative_to(ROOT).as_posix())
    for md in NOTEBOOKS:
        for module in _third_party(imported_modules(notebook_code(md))):
            out.setdefault(module, set()).add(md.relative_to(ROOT).as_posix())
    return out


def test_every_import_comes_from_a_declared_runtime_dependency(used):
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module, files in used.items():
        dists = {_name(d) for d in providers.get(module, [])}
        if not dists & RUNTIME:
            missing[module] = (sorted(dists) or ["not installed"], sorted(files))
    assert not missing, ("imported at run time but not in pyproject.toml's dependencies (module: distribution, "
                         f"files): {missing}")


def test_every_declared_runtime_dependency_is_used(used):
    providers = importlib.metadata.packages_distributions()
    provided = {_name(d) for module in used for d in providers.get(module, [])}
    assert RUNTIME <= provided, f"declared but imported nowhere: {sorted(RUNTIME - provided)}"


def test_import_scanner_sees_what_it_must():
    source = "import os\nimport numpy as np\nfrom scipy import linalg\ntry:\n    import myst_nb\nexcept ImportError:\n" \
             "    pass\ndef f():\n    import sklearn.linear_model\nfrom . import config\n"
    assert _third_party(imported_modules(source)) == {"numpy", "scipy", "sklearn"}


def test_build_and_test_tools_are_not_runtime_dependencies():
    extras = PYPROJECT["project"]["optional-dependencies"]
    tools = {_name(r) for r in extras["book"] + extras["test"]}
    assert not tools & RUNTIME, f"build/test tools among the runtime dependencies: {sorted(tools & RUNTIME)}"
    assert {"jupyter-book", "myst-nb"} <= tools and {"pytest", "nbval"} <= tools


def test_torch_lower_bound_has_what_the_code_uses():
    """``torch.optim.Adafactor`` (used by the optimizers chapter) exists from torch 2.5 on."""
    torch_req = next(r for r in PYPROJECT["project"]["dependencies"] if _name(r) == "torch")
    assert re.search(r">=\s*2\.([5-9]|\d\d)", torch_req), torch_req
    import torch

    assert hasattr(torch.optim, "Adafactor")


# --------------------------------------------------------------------------------------------- one repository URL
def test_install_cells_and_links_agree_with_config():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_notebooks.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("md", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_is_the_install_cell(md):
    cell = next(c for c in jupytext.read(md).cells if c.cell_type == "code")
    assert cell.source == sync_notebooks.install_cell(sync_notebooks.repository()), f"{md.name}: run `make sync`"


def test_sync_check_catches_a_hand_edited_cell(tmp_path):
    """A copy of the tree with one notebook's URL changed by hand is reported."""
    for rel in ["_config.yml", "exercises.md", *[p.relative_to(ROOT) for p in NOTEBOOKS]]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((ROOT / rel).read_text())
    assert all((tmp_path / p).read_text() == t for p, t in
               ((p.relative_to(tmp_path), t) for p, t in sync_notebooks.expected(tmp_path).items()))
    md = tmp_path / "book" / "00-quickstart.md"
    md.write_text(md.read_text().replace("github.com/dldna-lite/dldna-lite", "github.com/someone/fork", 1))
    stale = [p for p, t in sync_notebooks.expected(tmp_path).items() if p.read_text() != t]
    assert stale == [md]


def test_repository_url_is_written_nowhere_else():
    """Outside _config.yml and the generated parts, no tracked file spells out the install or launch URLs."""
    repo = sync_notebooks.repository()
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offenders = []
    for rel in files:
        path = ROOT / rel
        if rel == "_config.yml" or path.suffix not in (".md", ".ipynb", ".py", ".txt", ".yml", ".toml", ".sh", "") \
                or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if rel.endswith(".ipynb"):
            text = "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
        if rel.endswith(".ipynb") or path.with_suffix(".md") in NOTEBOOKS or rel == sync_notebooks.EXERCISES_PAGE:
            text = sync_notebooks.GENERATED.sub("", text).replace(sync_notebooks.requirement(repo), "")
        if repo["slug"] in text or "git+http" in text:
            offenders.append(rel)
    allowed = {"scripts/sync_notebooks.py", "tests/test_student_install.py",
               "constraints-colab.txt"}   # Colab's freeze and the file made from it name Colab's own git+https builds
    offenders = [rel for rel in offenders if not rel.startswith("tests/data/")]
    assert set(offenders) <= allowed, f"the repository URL is typed by hand in {sorted(set(offenders) - allowed)}"


# --------------------------------------------------------------------------------------------- the install cell
def _run_install_cell(env_extra: dict, cwd: Path) -> subprocess.CompletedProcess:
    """The install cell in a Python that cannot import dldna_lite (no site-packages: ``-S``)."""
    source = sync_notebooks.install_cell(sync_notebooks.repository())
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-S", "-c", source], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_install_cell_reports_a_requirement_that_cannot_be_installed(tmp_path):
    out = _run_install_cell({"DLDNA_INSTALL": str(tmp_path / "no-such-clone")}, tmp_path)
    assert out.returncode != 0
    assert "pip could not install" in out.stderr and "no-such-clone" in out.stderr, out.stderr
    assert "DLDNA_INSTALL" in out.stderr, out.stderr


def test_install_cell_does_nothing_where_the_package_is_importable(tmp_path):
    source = sync_notebooks.install_cell(sync_notebooks.repository())
    out = subprocess.run([sys.executable, "-c", source], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "DLDNA_INSTALL": str(tmp_path / "no-such-clone")}, timeout=60)
    assert out.returncode == 0 and "Installing" not in out.stdout, out.stdout + out.stderr


# --------------------------------------------------------------------------------------------- Binder
def test_binder_installs_the_student_package_with_a_cpu_torch():
    lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines == ["--extra-index-url https://download.pytorch.org/whl/cpu", "."], lines
    assert (ROOT / "runtime.txt").read_text().strip() == "python-3.11"
    assert "dataset-fashion-mnist" in (ROOT / "apt.txt").read_text().split()


def test_exercise_notebooks_have_launch_links_and_a_solutions_section():
    repo = sync_notebooks.repository()
    page = (ROOT / sync_notebooks.EXERCISES_PAGE).read_text()
    for md in ROOT.glob("exercises/*.md"):
        path = md.relative_to(ROOT).with_suffix(".ipynb").as_posix()
        colab, binder = sync_notebooks.launch_urls(repo, path)
        text = md.read_text()
        assert colab in text and binder in text and colab in page and binder in page
        label, _ = sync_notebooks.solution_section(md)
        assert f"{{ref}}`{label}`" in page
