"""The MyST sources, their paired .ipynb files and the table of contents agree."""
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.glob("book/*.md"), *ROOT.glob("exercises/*.md")])


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("md", SOURCES, ids=lambda p: p.name)
def test_pair_in_sync_and_without_outputs(md):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{ipynb.name} is missing: run `make sync`"
    text_nb = jupytext.read(md)
    paired = nbformat.read(ipynb, as_version=4)
    assert text_nb.metadata["jupytext"]["formats"] == "ipynb,md:myst"
    assert _cells(text_nb) == _cells(paired), f"{md.name} and {ipynb.name} differ: run `make sync`"
    assert text_nb.metadata["kernelspec"]["name"] == "python3"
    for cell in paired.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{ipynb.name} has stored outputs"


def _toc_files(entries):
    for entry in entries:
        if "file" in entry:
            yield entry["file"]
        yield from _toc_files(entry.get("chapters", []) + entry.get("sections", []))


def test_toc_lists_every_chapter_and_nothing_missing():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = set(_toc_files(toc.get("parts", [])))
    for f in files | {toc["root"]}:
        assert any((ROOT / f).with_suffix(s).is_file() for s in (".md", ".ipynb")), f"_toc.yml names missing {f}"
    chapters = {p.relative_to(ROOT).with_suffix("").as_posix() for p in ROOT.glob("book/*.md")}
    assert chapters <= files, f"chapters not in _toc.yml: {sorted(chapters - files)}"
