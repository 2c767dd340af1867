"""Every Python that ``requires-python`` admits: what a student runs (the package and the notebooks' code) uses no
syntax or standard-library name newer than the oldest one, and nothing that the newest ones removed.

Run for real: 3.11 (this environment, and the student kernel at Colab's versions) and 3.10 (``make test-lowest``).
Colab's Python 3.13 is checked here by its own parser where pyenv has it; the package itself was not run on 3.12/3.13.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_student_install import MODULES, NOTEBOOKS, PYPROJECT, imported_modules, notebook_code

ROOT = Path(__file__).resolve().parents[1]
OLDEST = tuple(int(p) for p in re.fullmatch(r">=\s*(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"]).groups())
# standard-library modules that Python 3.12 (PEP 632, 594 first wave) and 3.13 (PEP 594) removed
REMOVED = {"distutils", "imp", "asynchat", "asyncore", "smtpd", "aifc", "audioop", "cgi", "cgitb", "chunk", "crypt",
           "imghdr", "mailcap", "msilib", "nis", "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau",
           "telnetlib", "uu", "xdrlib", "lib2to3"}


@pytest.fixture(scope="module")
def student_code(tmp_path_factory) -> Path:
    """The package plus every notebook's code cells as ``.py`` files in one folder."""
    out = tmp_path_factory.mktemp("student-code")
    shutil.copytree(ROOT / "dldna_lite", out / "dldna_lite")
    for md in NOTEBOOKS:
        (out / f"{md.parent.name}_{md.stem.replace('-', '_')}.py").write_text(notebook_code(md))
    return out


def test_no_syntax_or_stdlib_name_newer_than_the_oldest_python(student_code):
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent))
    assert vermin, "vermin is a test dependency (pyproject.toml [test])"
    done = subprocess.run([vermin, "-q", "--no-tips", "--violations", "--eval-annotations",
                           f"-t={OLDEST[0]}.{OLDEST[1]}-", str(student_code)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"newer than Python {OLDEST}: {done.stdout[-3000:]}{done.stderr[-1000:]}"


def test_no_module_that_a_newer_python_removed():
    used = {m for path in MODULES for m in imported_modules(path.read_text())}
    used |= {m for md in NOTEBOOKS for m in imported_modules(notebook_code(md))}
    assert not used & REMOVED, sorted(used & REMOVED)


@pytest.mark.parametrize("version", ["3.10", "3.12", "3.13"])
def test_every_file_compiles_under_that_python(version, student_code):
    """The real parser of each Python that pyenv has here (the newest is Colab's)."""
    found = sorted(Path.home().glob(f".pyenv/versions/{version}*/bin/python{version}")) + \
        [Path(p) for p in [shutil.which(f"python{version}")] if p and "shims" not in p]
    if not found:
        pytest.skip(f"no python{version} on this machine")
    done = subprocess.run([str(found[0]), "-m", "compileall", "-q", "-f", "-d", "x", str(student_code)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
