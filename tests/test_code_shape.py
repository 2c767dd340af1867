"""The shape CONTRIBUTING.md asks of the code: modules ≤ 400 lines, functions ≤ 50 lines (docstring not counted) and
nested ≤ 4 blocks deep, notebook code cells ≤ 15 lines. Measured with the ``ast`` module and jupytext, so a reader
who opens any file finds pieces that fit on a screen."""
import ast
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = sorted((ROOT / "dldna_lite").rglob("*.py"))
NOTEBOOKS = sorted([*(ROOT / "book").glob("*.md"), *(ROOT / "exercises").glob("*.md")])
MAX_MODULE, MAX_FUNCTION, MAX_DEPTH, MAX_CELL = 400, 50, 4, 15
BLOCKS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.Match,
          ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _body_lines(fn: ast.FunctionDef) -> int:
    lines = fn.end_lineno - fn.lineno + 1
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
            and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def _depth(node: ast.AST) -> int:
    """Deepest nesting of blocks below ``node`` (an ``elif`` counts as one level with its ``if``)."""
    best = 0
    for child in ast.iter_child_nodes(node):
        inner = _depth(child)
        is_elif = isinstance(node, ast.If) and isinstance(child, ast.If) and node.orelse == [child]
        best = max(best, inner + (isinstance(child, BLOCKS) and not is_elif))
    return best


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_modules_are_short():
    long = {_name(p): n for p in PACKAGE if (n := len(p.read_text().splitlines())) > MAX_MODULE}
    assert not long, f"modules over {MAX_MODULE} lines (split them by topic): {long}"


def test_functions_are_short_and_flat():
    bad = []
    for path in PACKAGE:
        for fn in _functions(ast.parse(path.read_text())):
            n, depth = _body_lines(fn), _depth(fn)
            if n > MAX_FUNCTION or depth > MAX_DEPTH:
                bad.append(f"{_name(path)}:{fn.lineno} {fn.name}: {n} lines, depth {depth}")
    assert not bad, f"functions over {MAX_FUNCTION} lines or nested deeper than {MAX_DEPTH}:\n" + "\n".join(bad)


def test_notebook_cells_are_short():
    bad = []
    for path in NOTEBOOKS:
        for i, cell in enumerate(jupytext.read(path).cells):
            n = len(cell.source.rstrip().splitlines())
            if cell.cell_type == "code" and n > MAX_CELL:
                bad.append(f"{_name(path)} cell {i}: {n} lines, starting {cell.source.splitlines()[0]!r}")
    assert not bad, f"code cells over {MAX_CELL} lines (move code into the package):\n" + "\n".join(bad)


@pytest.mark.parametrize("source, depth", [("def f():\n    return 1\n", 1),
                                           ("def f():\n    for i in x:\n        if i:\n            pass\n", 3),
                                           ("def f():\n    if a:\n        pass\n    elif b:\n        pass\n", 2)])
def test_depth_counts_blocks(source, depth):
    tree = ast.parse(source)
    assert _depth(tree) == depth
