"""scripts/page_times.py: one row per page, its newest execution, even when the cache holds older records of it."""
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import page_times  # noqa: E402


def test_a_page_executed_again_counts_once_with_its_newest_time(tmp_path, monkeypatch):
    (tmp_path / ".jupyter_cache").mkdir()
    record = lambda uri, minute, seconds: SimpleNamespace(uri=uri, created=datetime(2026, 12, 3, 12, minute),
                                                          data={"execution_seconds": seconds})
    records = [record("/b/book/04-x.md", 57, 99.0), record("/b/book/00-q.md", 30, 48.0),
               record("/b/book/04-x.md", 38, 90.0)]              # the older record of 04 comes last in the listing
    monkeypatch.setattr(page_times, "get_cache", lambda path: SimpleNamespace(list_cache_records=lambda: records))
    assert page_times.page_times(tmp_path) == [("00-q.md", 48.0), ("04-x.md", 99.0)]
    out = tmp_path / "times.json"
    assert page_times.main(["page_times.py", str(tmp_path), "--json", str(out)]) == 0
    assert out.read_text().count("04-x") == 1
