"""scripts/gpu_time_model.py: the work ratios, the calibration of the scaling share and the prediction's arithmetic."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_time_model as tm  # noqa: E402


def test_every_page_has_a_formula_and_the_quick_profile_is_its_own_unit():
    pages = sorted(p.stem for p in (ROOT / "book").glob("*.ipynb"))
    assert sorted(tm.WORK) == pages
    for page in pages:
        assert tm.ratios(page, "quick") == (1.0, 1.0)
        r_cpu, _ = tm.ratios(page, "cpu")
        r_gpu, _ = tm.ratios(page, "gpu")
        assert r_gpu >= r_cpu >= 1.0, page      # the profiles only grow


def test_scaling_share_recovers_a_linear_cost(monkeypatch):
    """T = a + b W through the quick and cpu times: f = b W_quick / T_quick, clamped to [0, 1]."""
    monkeypatch.setattr(tm, "ratios", lambda page, target="gpu": (5.0, 1.0) if target == "cpu" else (50.0, 1.0))
    a, b_w = 6.0, 4.0                          # quick: T = 10 of which 4 scale; cpu: T = 6 + 4 * 5 = 26
    assert tm.scaling_share("p", a + b_w, a + 5 * b_w) == pytest.approx(0.4)
    assert tm.scaling_share("p", 10.0, 5.0) == 0.0          # faster at cpu sizes: nothing scales (clamped)
    assert tm.scaling_share("p", 10.0, None) == 1.0         # no cpu time: the upper bound


def test_prediction_scales_the_scaling_part_only(monkeypatch):
    monkeypatch.setattr(tm, "ratios", lambda page, target="gpu": (5.0, 1.0) if target == "cpu" else (50.0, 2.0))
    cpu = dict(t_op_s=1e-6, flops_per_s=1e10, threads=2)
    model = tm.predict({"p": dict(ops=1000, flops=1e9, seconds=10.0)}, cpu, {"p": 26.0})
    page = model["pages"]["p"]
    f, launch = 0.4, 1e-6 + tm.CUDA_LAUNCH_S
    assert page["scaling_share"] == pytest.approx(f)
    expected = (1 - f) * 10.0 + f * 50 * (1000 * launch + 1e9 * 2 / tm.H200_FLOPS)
    assert page["gpu_h200_s"] == pytest.approx(expected, abs=0.05)
    assert page["scaling_cpu_measured_s"] == pytest.approx(4.0)
    assert model["calibrated_on_a_gpu"] is False and "p" in tm.table(model)


def test_predict_reprices_the_stored_counts_at_the_current_sizes(tmp_path, monkeypatch, capsys):
    """`predict` rebuilds the model from a stored one: same counts, same quick times and CPU rates, new ratios."""
    cpu = dict(t_op_s=1e-6, flops_per_s=1e10, threads=2)
    monkeypatch.setattr(tm, "ratios", lambda page, target="gpu": (5.0, 1.0) if target == "cpu" else (50.0, 1.0))
    stored = tm.predict({"p": dict(ops=1000, flops=1e9, seconds=10.0)}, cpu, {"p": 26.0})
    path = tmp_path / "model.json"
    tm._write(path, stored)
    monkeypatch.setattr(tm, "ratios", lambda page, target="gpu": (5.0, 1.0) if target == "cpu" else (25.0, 1.0))
    out = tmp_path / "new.json"
    assert tm.main(["predict", "--model", str(path), "--out", str(out)]) == 0
    new = tm.json.loads(out.read_text())
    assert new["pages"]["p"]["scaling_share"] == pytest.approx(0.4)          # the stored cpu time was kept
    fixed = 0.6 * 10.0
    assert new["pages"]["p"]["gpu_h200_s"] - fixed == pytest.approx((stored["pages"]["p"]["gpu_h200_s"] - fixed) / 2,
                                                                     abs=0.1)
    assert "**total**" in capsys.readouterr().out


def test_best_is_the_fastest_repeat_per_call(monkeypatch):
    """A busy machine slows some repeats; the model keeps the idle speed (the fastest), not a median."""
    clock = iter([0.0, 10.0, 10.0, 12.0, 12.0, 21.0])       # three repeats of 2 calls: 10 s, 2 s, 9 s
    monkeypatch.setattr(tm.time, "perf_counter", lambda: next(clock))
    calls = []
    assert tm._best(lambda: calls.append(1), repeats=3, inner=2) == pytest.approx(1.0)
    assert len(calls) == 6


def test_measure_cpu_prices_an_operator_of_a_real_training_step():
    """t_op is a training step's time over the operators it dispatches: more than a bare one-element add costs."""
    cpu = tm.measure_cpu()
    assert cpu["ops_per_step"] >= 40          # forward, loss, backward and Adam of a 3-layer MLP
    assert cpu["t_op_s"] > cpu["t_add_s"] > 0
    assert cpu["flops_per_s"] > 0 and cpu["threads"] >= 1


def test_calibrate_takes_the_quick_times_of_make_book_quick(tmp_path, monkeypatch):
    """--quick-times reads {page: seconds} (scripts/page_times.py, make book-quick) or a dry run's report."""
    monkeypatch.setattr(tm, "ratios", lambda page, target="gpu": (5.0, 1.0) if target == "cpu" else (50.0, 1.0))
    monkeypatch.setattr(tm, "measure_cpu", lambda: dict(t_op_s=1e-6, flops_per_s=1e10, threads=2))
    counts = tmp_path / "counts.json"
    counts.write_text(tm.json.dumps({"pages": [dict(page="p", status="passed", ops=1000, flops=1e9,
                                                    measured_s=99.0)]}))
    cpu_times = tmp_path / "cpu.json"
    cpu_times.write_text(tm.json.dumps({"p": 26.0}))
    dry = dict(pages=[dict(page="p", status="passed", measured_s=10.0)])
    for quick in ({"p": 10.0}, dry):
        (tmp_path / "quick.json").write_text(tm.json.dumps(quick))
        out = tmp_path / "model.json"
        assert tm.main(["calibrate", "--counts", str(counts), "--quick-times", str(tmp_path / "quick.json"),
                        "--cpu-times", str(cpu_times), "--out", str(out)]) == 0
        page = tm.json.loads(out.read_text())["pages"]["p"]
        assert page["cpu_quick_measured_s"] == 10.0 and page["scaling_share"] == pytest.approx(0.4)
