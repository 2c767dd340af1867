"""The prose talks to a reader about deep learning, not about how the book was built (issue 28).

A reader of the HTML book or of a notebook on Colab does not see hidden cells, profiles or builds, so phrases like
"a hidden cell checks" or "this build" mean nothing to them. The claims ledger page and the appendix on running the
book are where the machinery is explained (they are allowed to name it; the chapters point there).
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READER_PAGES = sorted((ROOT / "book").glob("*.md")) + [ROOT / p for p in ("intro.md", "lecturers.md")] \
    + sorted((ROOT / "exercises").glob("*.md"))
EXPLAINS_THE_MACHINERY = {"08-running-this-book.md", "claims-ledger.md", "lecturers.md"}
META = [r"\bthis build\b", r"\ba hidden cell\b", r"\beach profile checks\b", r"\bproven, not claimed\b",
        r"\bsays so instead of hiding\b", r"\bthe source\b(?!\s*(code|of|file|\(`))", r"\bthe sources\b(?! of)"]


def prose(path: Path) -> str:
    """The markdown of a page without its code cells, front matter and directive options."""
    text = path.read_text()
    text = re.sub(r"^---\n.*?\n---\n", "", text, count=1, flags=re.S)
    text = re.sub(r"```\{code-cell\}.*?\n```", "", text, flags=re.S)
    return text


@pytest.mark.parametrize("page", READER_PAGES, ids=lambda p: p.name)
def test_no_build_talk_in_the_prose(page):
    if page.name in EXPLAINS_THE_MACHINERY:
        patterns = META[-2:]     # those pages may talk about builds, never about "the source"
    else:
        patterns = META
    found = [m.group(0) for pat in patterns for m in re.finditer(pat, prose(page), flags=re.I)]
    assert not found, f"{page.name}: {found}"


def test_the_check_sees_a_meta_phrase(tmp_path):
    page = tmp_path / "x.md"
    page.write_text("---\njupytext: {}\n---\n# T\n\nA hidden cell checks this.\n\n```{code-cell} ipython3\n"
                    "# this build\n```\n")
    assert "this build" not in prose(page)
    with pytest.raises(AssertionError, match="hidden cell"):
        test_no_build_talk_in_the_prose(page)
