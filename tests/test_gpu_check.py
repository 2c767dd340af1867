"""The offline GPU check (issue 27): scripts/gpu_check.py's runner and report, scripts/gpu_bundle.py's closure and
size limit, and the claims log of ``dldna_lite.notebook.claim``.

The runner is exercised as on the GPU machine, in ``--dry`` mode (quick profile, CPU) on synthetic notebooks: one
that passes with a held claim (and a cell tagged ``raises-exception``), one with a failing claim and a later cell
that still runs, one raising ``ValueError`` (and a cell after it that must not run), and one that sleeps past a
tiny budget (timed out; the page after it is skipped). No download: the bundle's tests fake sizes and packages.
"""
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import dldna_lite.notebook as nb
from dldna_lite.config import profile
from fake_device import META, fake_device

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_bundle  # noqa: E402
import gpu_check  # noqa: E402

PAGE_KEYS = {"page", "notebook", "status", "predicted_s", "measured_s", "timeout_s", "returncode", "claims", "cells",
             "error", "gpu", "cuda", "optimizer_steps", "sync_warnings", "syncs_per_step", "ops", "flops", "log_tail"}
REPORT_KEYS = {"schema", "created", "dry", "count", "profile", "budget_s", "min_start_s", "elapsed_s", "bundle", "device",
               "host_reads", "pages", "totals", "passed"}


def write_notebook(path: Path, *cells) -> Path:
    """An .ipynb of code cells; a cell is its source, or ``(source, [tags])``."""
    cells = [c if isinstance(c, tuple) else (c, []) for c in cells]
    path.write_text(json.dumps({
        "cells": [{"cell_type": "markdown", "metadata": {}, "source": "# a page"}]
        + [{"cell_type": "code", "metadata": {"tags": tags}, "source": source.splitlines(keepends=True),
            "outputs": [], "execution_count": None} for source, tags in cells],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def run_check(tmp_path: Path, notebooks: list[Path], *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """scripts/gpu_check.py --dry on ``notebooks`` in the dev venv's python; the process and its report."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry", "--out", str(out), "--work", str(tmp_path / "work"),
                           "--bundle", str(tmp_path / "no-bundle"), "--notebooks", *map(str, notebooks), *args],
                          capture_output=True, text=True, timeout=120)
    assert (out / "gpu-check.json").is_file(), done.stdout + done.stderr
    return done, json.loads((out / "gpu-check.json").read_text())


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One --dry run over the passing, failing-claim and ValueError notebooks (generous budget)."""
    tmp = tmp_path_factory.mktemp("gpu-check")
    claim = "from dldna_lite.notebook import claim\n"
    pages = [
        write_notebook(tmp / "good.ipynb", "x = 2 + 2", claim + "claim(x == 4, 'two and two make four', x=x)",
                       ("raise KeyError('allowed here')", ["raises-exception"]), "print('good done')"),
        write_notebook(tmp / "claims.ipynb", claim + "claim(True, 'this one holds')",
                       "claim(1 > 2, 'one is more than two', one=1)", "open('after.txt', 'w').write('ran')"),
        write_notebook(tmp / "broken.ipynb", "y = 1", "raise ValueError('no good')", "open('never.txt', 'w')"),
    ]
    done, report = run_check(tmp, pages, "--budget", "150", "--min-start", "1")
    return tmp, done, report


def test_dry_run_statuses_claims_and_exit_code(dry_run):
    tmp, done, report = dry_run
    pages = {p["page"]: p for p in report["pages"]}
    assert [p["page"] for p in report["pages"]] == ["good", "claims", "broken"]
    assert {k: p["status"] for k, p in pages.items()} == {"good": "passed", "claims": "claims failed",
                                                          "broken": "error"}, done.stdout + done.stderr
    assert done.returncode == 1 and report["passed"] is False
    assert pages["good"]["claims"] == {"held": 1, "failed": 0, "failed_statements": []}
    assert pages["claims"]["claims"] == {"held": 1, "failed": 1, "failed_statements": ["one is more than two"]}
    assert [c["status"] for c in pages["good"]["cells"]] == ["ok", "ok", "expected error", "ok"]
    assert [c["status"] for c in pages["claims"]["cells"]] == ["ok", "claim failed", "ok"]
    assert (tmp / "after.txt").read_text() == "ran"           # the page went on after the failed claim
    error = pages["broken"]["error"]
    assert error["cell"] == 2 and error["type"] == "ValueError" and error["message"] == "no good"
    assert "ValueError: no good" in error["traceback"][-1]
    assert not (tmp / "never.txt").exists() and len(pages["broken"]["cells"]) == 2   # the page ended there
    assert report["totals"] == {"pages": 3, "passed": 1, "timed_out": 0, "skipped": 0, "failed": 2,
                                "measured_s": report["totals"]["measured_s"], "predicted_s": None,
                                "claims_held": 2, "claims_failed": 1}


def test_dry_run_report_schema_and_table(dry_run):
    tmp, done, report = dry_run
    assert set(report) == REPORT_KEYS and report["schema"] == gpu_check.SCHEMA
    assert report["dry"] is True and report["profile"] == "quick"
    assert report["device"]["device"] == "cpu" and report["host_reads"] == {"status": "n/a (cpu)"}
    for page in report["pages"]:
        assert set(page) == PAGE_KEYS, page["page"]
        assert page["measured_s"] > 0 and all(c["seconds"] >= 0 for c in page["cells"])
        assert page["syncs_per_step"] is None and page["cuda"] is False and page["predicted_s"] is None
    assert sorted(p.name for p in (tmp / "out").iterdir()) == ["gpu-check.json", "gpu-check.txt", "pages.log"]
    table = (tmp / "out" / "gpu-check.txt").read_text()
    assert "| predicted s | measured s | status" in table and "1/3 passed" in table
    assert "broken: cell 2: ValueError: no good" in table and "claim failed: one is more than two" in table
    assert "good done" in (tmp / "out" / "pages.log").read_text()


def test_a_page_past_the_budget_is_killed_and_the_next_one_skipped(tmp_path):
    sleeper = write_notebook(tmp_path / "sleeper.ipynb", "import subprocess, time\n"
                             "child = subprocess.Popen(['sleep', '300'])\n"
                             "open('child.pid', 'w').write(str(child.pid))\ntime.sleep(300)")
    later = write_notebook(tmp_path / "later.ipynb", "print('too late')")
    start = time.monotonic()
    done, report = run_check(tmp_path, [sleeper, later], "--budget", "6", "--min-start", "2")
    assert time.monotonic() - start < 30
    pages = {p["page"]: p for p in report["pages"]}
    assert pages["sleeper"]["status"] == "timed out" and 3 < pages["sleeper"]["measured_s"] < 10
    assert pages["later"]["status"] == "skipped (budget)" and pages["later"]["measured_s"] is None
    assert report["totals"]["timed_out"] == 1 and report["totals"]["skipped"] == 1 and done.returncode == 1
    pid = int((tmp_path / "child.pid").read_text())                # the page's own child died with it
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split(")")[-1].split()[0] in ("Z", "X")


def test_every_page_passing_exits_zero(tmp_path):
    done, report = run_check(tmp_path, [write_notebook(tmp_path / "ok.ipynb", "print(1)")], "--min-start", "1")
    assert done.returncode == 0 and report["passed"] is True, done.stdout + done.stderr


def test_claims_log_gets_every_claim_before_a_false_one_raises(tmp_path, monkeypatch):
    log = tmp_path / "claims.jsonl"
    monkeypatch.delenv("DLDNA_STATIC_WIDGETS", raising=False)
    monkeypatch.setenv("DLDNA_CLAIMS_LOG", str(log))
    nb.claim(True, "it holds", n=3)
    with pytest.raises(nb.ClaimError):
        nb.claim(False, "it does not", x=0.123456)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["statement"], r["holds"], r["numbers"]) for r in records] == [
        ("it holds", True, {"n": "3"}), ("it does not", False, {"x": "0.1235"})]
    assert all({"statement", "numbers", "holds", "profile", "cell"} <= set(r) for r in records)
    assert records[0]["profile"] == profile()
    monkeypatch.delenv("DLDNA_CLAIMS_LOG")
    nb.claim(True, "not logged")
    assert len(log.read_text().splitlines()) == 2


def test_toc_order_and_predictions(tmp_path):
    pages = gpu_check.toc_notebooks()
    assert {p.name for p in pages} == {p.name for p in (ROOT / "book").glob("*.ipynb")}
    assert [p.stem for p in pages][:2] == ["00-quickstart", "01-initialization"]
    assert [p.stem for p in pages][-2:] == ["09-exercise-solutions", "08-running-this-book"]   # _toc.yml's order
    model = tmp_path / "model.json"
    model.write_text(json.dumps({"pages": {"00-quickstart": {"gpu_h200_s": 12.5, "cpu_quick_measured_s": 30}}}))
    assert gpu_check.predictions(False, model) == {"00-quickstart": 12.5}
    assert gpu_check.predictions(True, model) == {"00-quickstart": 30.0}
    assert gpu_check.predictions(False, tmp_path / "missing.json") == {}


def test_sync_warnings_are_counted_every_time_and_others_still_shown():
    with warnings.catch_warnings(record=True) as shown:
        counters = gpu_check.PageCounters(cuda=False)
        for _ in range(3):
            counters.count_sync_warnings()          # armed before every cell: must not wrap itself
            warnings.warn("called a synchronizing CUDA operation")   # the same line each time: none deduplicated
        warnings.warn("something else", UserWarning)
    assert counters.syncs == 3
    assert [str(w.message) for w in shown] == ["something else"]


def test_host_read_micro_check_counts_one_read_per_epoch():
    with fake_device():
        found = gpu_check.host_read_check(META, steps=48, epochs=3, batch_size=8)
    assert found["steps"] == 48 and found["reads"] == 3 and found["reads_per_step"] == 3 / 48, found


# --------------------------------------------------------------------------------------------- the bundle
def test_closure_from_the_dev_venv_is_what_the_gpu_image_lacks():
    pins = gpu_bundle.closure(gpu_bundle.root_requirements(), "3.12")
    assert {"ipython", "ipywidgets", "pywavelets", "ripser", "persim", "jedi"} <= set(pins)
    assert not {"torch", "numpy", "scipy", "matplotlib", "torchvision", "scikit-learn", "dldna-lite"} & set(pins)
    assert pins["ipython"][1] == __import__("IPython").__version__


class FakeDist:
    def __init__(self, name, requires=()):
        self.metadata, self.version, self.requires = {"Name": name}, "1.0", list(requires)


def test_closure_evaluates_markers_for_the_target_python_and_skips_extras():
    dists = {"a": FakeDist("a", ['b; python_version < "3.12"', 'c; sys_platform == "win32"', 'd; extra == "test"',
                                 "e>=1", "torch"]), "b": FakeDist("b"), "e": FakeDist("E", ["a"])}

    def distribution(name):
        if name.lower() not in dists:
            raise gpu_bundle.importlib.metadata.PackageNotFoundError(name)
        return dists[name.lower()]

    req = [gpu_bundle.Requirement("a")]
    assert gpu_bundle.closure(req, "3.12", distribution=distribution) == {"a": ("a", "1.0"), "e": ("E", "1.0")}
    assert set(gpu_bundle.closure(req, "3.11", distribution=distribution)) == {"a", "b", "e"}
    with pytest.raises(gpu_bundle.BundleError, match="not installed"):
        gpu_bundle.closure([gpu_bundle.Requirement("zzz")], "3.12", distribution=distribution)


def test_bundle_over_64_mib_with_the_tree_is_refused(tmp_path, monkeypatch, capsys):
    files = [{"path": "wheels/big.whl", "bytes": 60 * 2**20, "sha256": "0"}]
    assert gpu_bundle.check_size(files, 4 * 2**20) == 64 * 2**20          # exactly the limit still travels
    with pytest.raises(gpu_bundle.BundleError, match="over the 64 MiB"):
        gpu_bundle.check_size(files, 4 * 2**20 + 1)
    # the whole command, with packages, downloads, data and the tree's size faked
    data = tmp_path / "train-images-idx3-ubyte.gz"
    data.write_bytes(b"x" * 1000)

    def fake_download(pins, wheels, python_version, known):
        wheels.mkdir(parents=True, exist_ok=True)
        (wheels / "a-1.0-py3-none-any.whl").write_bytes(b"w" * 1000)
        return [wheels / "a-1.0-py3-none-any.whl"]

    monkeypatch.setattr(gpu_bundle, "closure", lambda roots, version: {"a": ("a", "1.0")})
    monkeypatch.setattr(gpu_bundle, "download_wheels", fake_download)
    monkeypatch.setattr(gpu_bundle, "fashion_mnist_files", lambda: [data])
    monkeypatch.setattr(gpu_bundle, "tree_bytes", lambda: 64 * 2**20 - 1500)
    assert gpu_bundle.main(["--out", str(tmp_path / "bundle")]) == 1
    assert "over the 64 MiB the device tool carries" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["fits"] is False and manifest["bundle_bytes"] == 2000
    assert {f["path"] for f in manifest["files"]} == {"wheels/a-1.0-py3-none-any.whl", "data/" + data.name}


def test_count_mode_counts_operators_and_the_flops_of_a_known_product(tmp_path):
    """--count: a [64, 32] @ [32, 16] product is 2 * 64 * 32 * 16 FLOPs; ten adds are ten more operators."""
    page = write_notebook(tmp_path / "ops.ipynb", "import torch\na, b = torch.ones(64, 32), torch.ones(32, 16)",
                          "c = a @ b", "for _ in range(10):\n    c = c + 1",
                          "from dldna_lite import config\nassert config.available_cores() == 1")
    done, report = run_check(tmp_path, [page], "--count", "--min-start", "1")
    entry = report["pages"][0]
    assert done.returncode == 0 and report["count"] is True
    assert entry["status"] == "passed"      # on one core: nothing runs in uncounted worker processes
    assert entry["flops"] == 2 * 64 * 32 * 16
    cells = {c["index"]: c for c in entry["cells"]}
    assert cells[3]["ops"] - cells[2]["ops"] == 9 and cells[3]["flops"] == 0   # the product is one op, adds ten
    assert entry["ops"] == sum(c["ops"] for c in entry["cells"])
