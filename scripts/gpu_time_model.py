"""A first-order model of the gpu book's time per page on one GPU, from counts made on the CPU.

    python scripts/gpu_time_model.py calibrate --counts _build/gpu-count/gpu-check.json \\
        --quick-times _build/quick/page-times-quick.json --cpu-times _build/page-times-cpu.json

(``make gpu-time-model CPU_TIMES=...`` runs both steps.) Counting takes about 20 minutes; once the counts are stored,

    python scripts/gpu_time_model.py predict [--cpu-times _build/page-times-cpu.json]

prices the current ``config.SIZES`` again from the stored counts (``benchmarks/gpu_time_model.json``), with newer cpu
times if given: what a change of the gpu sizes does to the prediction, in a second.

``--counts`` is the report of ``scripts/gpu_check.py --dry --count`` (every page in the quick profile on the CPU,
each cell under a ``TorchDispatchMode`` that counts the aten operators it runs, i.e. the kernels it would launch on a
GPU, and ``FlopCounterMode``'s floating-point operations). The model then says, for each page:

* **work ratio** ``r``: how much more the gpu profile does than the quick one: the ratio of the page's training
  steps (plus scan points, Hessian products, ... where they dominate) computed from ``config.SIZES`` by the page's
  formula in :data:`WORK` below -- a first-order account of each page's main loops, not of every cell;
* **scaling share** ``f``: not all of a page grows with its sizes (imports, data, figures, fixed-size cells).
  Two measured CPU times of the page calibrate it: ``T = a + b W`` through the quick and the cpu profile (``make
  book`` prints the cpu times; ``--cpu-times``) gives ``f = b W_quick / T_quick``; without them ``f = 1`` (an
  upper bound);
* the gpu time ``t = (1 - f) T_quick + f r (N t_op + F w / R)``: the part that does not scale (imports, data,
  figures, Python between the operators) costs on the GPU machine's host what it cost here; the part that scales
  is priced by its operators (``N``, at ``t_op`` each: launch-bound is the regime of these small models) and its
  FLOPs (``F``, ``w`` the FLOPs-per-unit ratio from widths, at ``R`` FLOP/s).

``t_op`` on the CPU is measured here (:func:`measure_cpu`: a tiny model's whole training step divided by the
operators it dispatches, the host cost every launch also pays) and the CUDA launch latency added to it is an assumption
(:data:`CUDA_LAUNCH_S`), as is the achieved rate ``R`` of an H200 on these small float32 products
(:data:`H200_FLOPS`). The same formula with the CPU's measured rate predicts the quick book on this CPU, which the
counts' own measured times check (the ``cpu_quick`` columns). Until a GPU report exists (``scripts/gpu_check.py``
on a lent GPU), the gpu column is a prediction, and says so.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: CUDA kernel launch latency added to each operator's host-side dispatch (assumption: 4-6 us is what PyTorch eager
#: mode measures on current GPUs; no GPU has been lent to this project to measure it).
CUDA_LAUNCH_S = 5e-6
#: Achieved float32 rate of an H200 on the book's matrix products (assumption: a third of its 67 TFLOP/s float32
#: peak; the products are small, 64-1024 rows, so they reach far less than the peak).
H200_FLOPS = 20e12
FASHION_TRAIN, CIFAR_TRAIN = 60000, 50000


def _steps(n, batch, epochs=1):
    return epochs * -(-n // batch)


def _n(value, full):
    return full if value is None else value


def _quickstart(s):
    return len(s["lrs"]) * _steps(_n(s["train_limit"], FASHION_TRAIN), s["batch_size"], s["epochs"]), 1.0


def _init(s):
    steps = _steps(_n(s["train_limit"], FASHION_TRAIN), s["batch_size"])
    deep = (len(s["depths"]) * 3 + 3) * steps * s["deep_epochs"]          # three methods per depth, then BatchNorm
    compare = 11 * len(s["seeds"]) * steps * s["compare_epochs"]          # every method (+2 variants) per seed
    return deep + compare, (s["deep_width"] / 128) ** 2


def _optim(s):
    sweep = 9 * s["lr_grid"] * _steps(_n(s["sweep_train"], FASHION_TRAIN), s["batch_size"], s["sweep_epochs"])
    compare = 9 * len(s["seeds"]) * _steps(_n(s["train_limit"], FASHION_TRAIN), s["batch_size"], s["epochs"])
    large = 9 * _steps(_n(s["large_train"], CIFAR_TRAIN), s["batch_size"], s["large_epochs"])
    return sweep + compare + large, (s["large_width"] / 0.25) ** 2


def _landscape(s):
    train = _steps(_n(s["train_limit"], FASHION_TRAIN), s["batch_size"])
    training = 2 * train * s["epochs"] + train * s["skip_epochs"] * 2 + train * s["sharp_epochs"] * len(s["batch_sizes"])
    scans = (s["grid"] ** 2 + s["hess_grid"] ** 2) * s["eval_limit"] / s["batch_size"]
    hessian = (s["power_iters"] + s["trace_samples"] + s["density_iters"] * s["density_runs"]) * s["hess_limit"] / 128
    return training + scans + hessian, (s["skip_width"] / 48) ** 2


def _analysis(s):
    train = _steps(_n(s["train_limit"], FASHION_TRAIN), s["batch_size"])
    training = train * (3 * s["traj_epochs"] + 2 * s["deep_epochs"] + 2 * s["mc_epochs"] + s["bezier_epochs"])
    scans = (4 * s["scan_grid"] ** 2 + s["plane_grid"] ** 2 + s["mc_points"]) * s["eval_limit"] / s["batch_size"]
    return training + scans + s["sight_steps"] + s["toy_steps"], 1.0


def _dynamics(s):
    train = _steps(_n(s["train_limit"], FASHION_TRAIN), s["batch_size"])
    runs = (len(s["monitor_lrs"]) + 1) * s["monitor_epochs"] + 3 * s["monitor_epochs"]
    runs += len(s["peak_lrs"]) * len(s["warmups"]) * s["sched_epochs"] + 2 * s["exp_epochs"] + 6 * s["bn_epochs"]
    lb = sum(_steps(_n(s["train_limit"], FASHION_TRAIN), b, s["lb_epochs"]) for b in s["lb_batch_sizes"])
    eos = len(s["eos_lrs"]) * s["eos_steps"] * (1 + s["eos_power_iters"] / s["eos_every"])
    return train * runs + lb + eos, (s["width"] / 128) ** 2


def _stories(s):
    grok = 2 * s["grok_steps"] + s["tf_steps"]
    return grok, (s["tf_width"] / 64) ** 2 * s["tf_depth"]


def _backprop(s):
    return sum(s["mem_depths"]) * s["mem_repeats"] * 3, (s["mem_width"] / 256) ** 2 * s["mem_batch"] / 128


def _scan_demo(s):
    train = _steps(_n(s.get("scan_demo_train", s["train_limit"]), FASHION_TRAIN), s["batch_size"])
    return train * s.get("scan_demo_epochs", s["epochs"]) + s["grid"] ** 2 * s["eval_limit"] / s["batch_size"], 1.0


#: page -> (config section, formula(sizes) -> (work units, FLOPs per unit relative to the quick profile's width)).
WORK = {
    "00-quickstart": ("quickstart", _quickstart),
    "01-initialization": ("init", _init),
    "02-optimizers": ("optim", _optim),
    "03-loss-landscapes": ("landscape", _landscape),
    "04-landscape-analysis": ("analysis", _analysis),
    "05-training-dynamics": ("dynamics", _dynamics),
    "06-modern-stories": ("stories", _stories),
    "07-backprop-memory": ("stories", _backprop),
    "08-running-this-book": ("landscape", _scan_demo),
    "09-exercise-solutions": (None, None),       # re-runs small pieces of the chapters at fixed sizes
}


def ratios(page: str, target: str = "gpu") -> tuple[float, float]:
    """(work ratio r, FLOPs-per-unit ratio w) of ``target`` against the quick profile for ``page``."""
    from dldna_lite import config

    section, formula = WORK.get(page, (None, None))
    if formula is None:
        return 1.0, 1.0
    work_q, width_q = formula(config.sizes(section, "quick"))
    work_t, width_t = formula(config.sizes(section, target))
    return work_t / work_q, width_t / width_q


def _best(fn, repeats: int, inner: int) -> float:
    """The fastest of ``repeats`` timings of ``inner`` calls, per call: the machine's speed when nothing else
    runs (a median taken while the machine was busy once priced an operator at 4.5 times its idle cost)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def measure_cpu() -> dict:
    """This CPU's host time per aten operator and its float32 matmul rate, each the best of 7 timings.

    ``t_op_s`` is the time of a whole training step (forward, cross-entropy, backward, Adam with ``foreach``) of
    a 16-8-8-10 MLP on one example, divided by the operators it dispatches (counted as the pages' counts are,
    :class:`gpu_check.OpCount`): its arithmetic is negligible, so this is what the book's small-model steps pay
    per operator in Python, autograd and dispatch, the host cost that a GPU launch adds to. A one-element
    ``torch.add`` (``t_add_s``, kept for comparison) pays about a fifth of it."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    from gpu_check import OpCount

    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, foreach=True)
    x, y = torch.randn(1, 16, generator=gen), torch.randint(0, 10, (1,), generator=gen)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    _best(step, 1, 50)                                  # warm-up: the optimizer's state, the allocator
    with OpCount(True) as counted:
        step()
    one = torch.ones(1)
    a, b = torch.randn(512, 784, generator=gen), torch.randn(784, 256, generator=gen)
    return dict(t_op_s=_best(step, 7, 500) / counted.ops, ops_per_step=counted.ops,
                t_add_s=_best(lambda: torch.add(one, one), 7, 20000),
                flops_per_s=2 * 512 * 784 * 256 / _best(lambda: a @ b, 7, 50),
                threads=torch.get_num_threads())


def scaling_share(page: str, t_quick: float | None, t_cpu: float | None) -> float:
    """``f``: the share of the page's quick-profile time that grows with its work (see the module docstring)."""
    r_cpu, _ = ratios(page, "cpu")
    if not t_quick or t_cpu is None or r_cpu <= 1:
        return 1.0
    return min(1.0, max(0.0, (t_cpu - t_quick) / ((r_cpu - 1) * t_quick)))


def predict(counts: dict, cpu: dict, cpu_times: dict | None = None) -> dict:
    """Per page: the counts, the ratios, the scaling share and the predicted seconds on one H200 (gpu profile).

    ``scaling_cpu_measured_s`` (``f T_quick``) against ``scaling_cpu_model_s`` (``f (N t_op + F / R_cpu)``, this
    CPU's measured rates) says how much of the scaling part the operator and FLOP counts explain here."""
    pages = {}
    launch = cpu["t_op_s"] + CUDA_LAUNCH_S
    for page, row in counts.items():
        n_ops, flops, t_quick = row["ops"], row["flops"], row.get("seconds") or 0.0
        r, w = ratios(page)
        f = scaling_share(page, t_quick, (cpu_times or {}).get(page))
        pages[page] = dict(
            ops_quick=n_ops, flops_quick=flops, work_ratio=round(r, 3), width_ratio=round(w, 3),
            scaling_share=round(f, 3), cpu_quick_measured_s=t_quick, cpu_measured_s=(cpu_times or {}).get(page),
            scaling_cpu_measured_s=round(f * t_quick, 1),
            scaling_cpu_model_s=round(f * (n_ops * cpu["t_op_s"] + flops / cpu["flops_per_s"]), 1),
            gpu_h200_s=round((1 - f) * t_quick + f * r * (n_ops * launch + flops * w / H200_FLOPS), 1))
    total = sum(p["gpu_h200_s"] for p in pages.values())
    return dict(model=__doc__.split("\n\n")[1].strip(), assumptions=dict(cuda_launch_s=CUDA_LAUNCH_S,
                h200_flops_per_s=H200_FLOPS), cpu=cpu, pages=pages, gpu_h200_total_s=round(total, 1),
                calibrated_on_a_gpu=False)


def table(model: dict) -> str:
    """The README's table: page, counts, ratios, CPU prediction against measurement, GPU prediction."""
    lines = ["| page | aten ops (quick) | GFLOP (quick) | work ratio gpu/quick | scaling share f | scaling part "
             "on this CPU: measured / ops+FLOPs model s | H200 gpu: predicted s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for page, p in model["pages"].items():
        lines.append(f"| {page} | {p['ops_quick']:,} | {p['flops_quick'] / 1e9:.1f} | {p['work_ratio']:.0f} "
                     f"| {p['scaling_share']:.2f} | {p['scaling_cpu_measured_s']:.0f} / {p['scaling_cpu_model_s']:.0f} "
                     f"| {p['gpu_h200_s']:.0f} |")
    lines.append(f"| **total** | | | | | | **{model['gpu_h200_total_s'] / 60:.1f} min** |")
    return "\n".join(lines)


def repredict(stored: Path, cpu_times_path: Path | None, out: Path | None, quick_times_path: Path | None = None) -> int:
    """``predict``: the counts, quick times and CPU rates of a stored model, priced at today's sizes (with newer
    quick and cpu page times where given)."""
    model = json.loads(stored.read_text())
    quick = quick_seconds(json.loads(quick_times_path.read_text())) if quick_times_path else {}
    counts = {page: dict(ops=p["ops_quick"], flops=p["flops_quick"], seconds=quick.get(page, p["cpu_quick_measured_s"]))
              for page, p in model["pages"].items()}
    cpu_times = (json.loads(cpu_times_path.read_text()) if cpu_times_path else
                 {page: p["cpu_measured_s"] for page, p in model["pages"].items() if p.get("cpu_measured_s")})
    new = predict(counts, model["cpu"], cpu_times)
    if out:
        _write(out, new)
    print(table(new))
    return 0


def quick_seconds(times: dict) -> dict:
    """{page: seconds} of the quick profile, from either a ``gpu_check.py --dry`` report (its passed pages) or a
    ``{page: seconds}`` file of ``scripts/page_times.py`` (``make book-quick``: measured as ``make book`` measures
    the cpu times, which is what the scaling share needs)."""
    if "pages" not in times:
        return {page: float(s) for page, s in times.items()}
    return {page["page"]: page.get("measured_s") for page in times["pages"] if page.get("status") == "passed"}


def _write(path: Path, model: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(model, indent=1) + "\n")
    tmp.replace(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cal = sub.add_parser("calibrate", help="counts of a dry --count run -> the model's predictions")
    cal.add_argument("--counts", type=Path, nargs="+", required=True, help="reports of --count runs (merged)")
    cal.add_argument("--quick-times", type=Path, help="the quick times: {page: seconds} of make book-quick, "
                     "or the report of a dry run without --count (default: the counting run's, slowed by counting)")
    cal.add_argument("--cpu-times", type=Path, help="JSON {page: seconds} of a cpu-profile book (make book)")
    cal.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gpu_time_model.json")
    pre = sub.add_parser("predict", help="the stored counts priced again at the current config.SIZES")
    pre.add_argument("--model", type=Path, default=ROOT / "benchmarks" / "gpu_time_model.json")
    pre.add_argument("--cpu-times", type=Path, help="JSON {page: seconds} of a newer cpu-profile book")
    pre.add_argument("--quick-times", type=Path, help="JSON {page: seconds} of the quick profile measured the same way "
                     "as --cpu-times (same machine, threads and load)")
    pre.add_argument("--out", type=Path, help="where to write the new model (default: print only)")
    args = parser.parse_args(argv)
    if args.command == "predict":
        return repredict(args.model, args.cpu_times, args.out, args.quick_times)
    counted = [page for path in args.counts for page in json.loads(path.read_text())["pages"]]
    seconds = quick_seconds(json.loads(args.quick_times.read_text()) if args.quick_times else {"pages": counted})
    counts = {page["page"]: dict(ops=page["ops"], flops=page["flops"], seconds=seconds.get(page["page"]))
              for page in counted if page.get("ops") is not None and page.get("status") == "passed"}
    if not counts:
        raise SystemExit(f"{args.counts} holds no op counts: run scripts/gpu_check.py --dry --count first")
    cpu_times = json.loads(args.cpu_times.read_text()) if args.cpu_times else None
    model = predict(counts, measure_cpu(), cpu_times)
    _write(args.out, model)
    print(table(model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
