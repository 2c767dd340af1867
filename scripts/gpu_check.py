"""The offline GPU check of issue 27: every book page in the gpu profile, each in a fresh process, within a budget.

usage: python3 scripts/gpu_check.py [--budget 540] [--out DIR] [--dry] [--bundle _build/gpu-bundle]
                                    [--notebooks PATH ...] [--work DIR]

Made for the lent GPU machine, which reaches no network and has no Jupyter: it needs only its python3 (torch,
numpy, ...), the working tree and the bundle of scripts/gpu_bundle.py (the wheels of IPython, ipywidgets,
PyWavelets, ripser, persim ... and Fashion-MNIST). Notebooks are read as JSON; no nbformat, nbclient or kernel.

* The bundle's wheels, unless this python already has them, are installed once with
  ``pip install --no-index --no-deps --target WORK/site``; children get that and the repository on PYTHONPATH.
* Pages are book/*.ipynb in _toc.yml's order (or ``--notebooks``). Each runs in a fresh ``python3`` (this script,
  ``--run-page``) in the notebook's folder, with DLDNA_PROFILE=gpu (quick with ``--dry``), static widgets, no
  progress bars, the Agg backend, the bundle's data and DLDNA_CLAIMS_LOG=WORK/claims/PAGE.jsonl. The child runs the
  code cells through IPython's ``InteractiveShell.run_cell``: a failed ``claim`` is recorded and the page goes on, a
  cell tagged ``raises-exception`` may fail, any other error ends the page. Under CUDA it counts the synchronisation
  warnings of ``torch.cuda.set_sync_debug_mode("warn")`` and the optimizer steps (a global step post-hook).
* Budget: a page starts only with at least ``--min-start`` seconds left and runs at most the time left (then its
  process group is killed: "timed out"); pages not started are "skipped (budget)". The report is always written.
* While a page runs, nvidia-smi is sampled once a second (utilisation mean/max, memory max).
* A host-read micro-check: ``dldna_lite.fit`` on a small MLP under :class:`HostReads` (reads per step).
* Predicted seconds per page come from benchmarks/gpu_time_model.json when it exists.

Writes OUT/gpu-check.json, OUT/gpu-check.txt (the table) and OUT/pages.log (the end of each page's output): three
files, because the device tool brings back at most 8 from $OUT. OUT is ``--out``, else $OUT, else
_build/gpu-check. The per-page files (claims, results, logs) and the installed wheels live in WORK
(``--work``, default _build/gpu-check-work). Exit status 0 only when every page passed.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIME_MODEL = ROOT / "benchmarks" / "gpu_time_model.json"
SCHEMA = "dldna-gpu-check/1"
PASSED = "passed"
SKIPPED = "skipped (budget)"
TIMED_OUT = "timed out"
#: A page is not started with less than this many seconds of the budget left.
MIN_START_S = 20.0
PROBE_TIMEOUT_S = 180.0
#: What ``torch.cuda.set_sync_debug_mode("warn")`` warns ("called a synchronizing CUDA operation").
SYNC_WARNING = re.compile(r"synchroniz", re.IGNORECASE)
LOG_TAIL_CHARS = 4000
PAGE_LOG_CHARS = 40_000

# --- host reads: shared with tests/test_host_syncs.py ------------------------------------------------------------

#: Tensor methods that read a value back to the host (a synchronisation when the tensor lives on a GPU).
READS = {"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__complex__"}


def _to_host(args, kwargs) -> bool:
    """Whether ``Tensor.to(*args, **kwargs)`` targets the CPU."""
    import torch

    for a in (*args[1:], kwargs.get("device")):
        if isinstance(a, (str, torch.device)) and torch.device(a).type == "cpu":
            return True
        if isinstance(a, torch.Tensor) and a.device.type == "cpu":
            return True
    return False


def _host_reads_class():
    """Build :class:`HostReads` (a ``TorchFunctionMode``; torch is imported only when it is first asked for)."""
    import torch
    from torch.overrides import TorchFunctionMode

    class HostReads(TorchFunctionMode):
        """Counts host reads of off-CPU tensors (:data:`READS`, and ``.to`` the CPU); ``where`` lists the method
        names in order. Reads of CPU tensors cost no synchronisation and are not counted."""

        def __init__(self):
            super().__init__()
            self.where: list[str] = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            self_ = args[0] if args else None
            if isinstance(self_, torch.Tensor) and self_.device.type != "cpu":
                if name in READS or (name == "to" and _to_host(args, kwargs)):
                    self.where.append(name)
            return func(*args, **kwargs)

        @property
        def count(self) -> int:
            return len(self.where)

    return HostReads


def __getattr__(name: str):
    """``HostReads`` is built on first use, so that the parent process (which runs no torch code) never imports
    torch: ``from gpu_check import HostReads`` works all the same."""
    if name == "HostReads":
        globals()["HostReads"] = cls = _host_reads_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def host_read_check(device, steps: int = 384, epochs: int = 3, batch_size: int = 32) -> dict:
    """Train a small MLP with ``dldna_lite.fit`` for ``steps`` steps on ``device`` under :class:`HostReads`;
    return the reads counted, the steps and the reads per step (fit reads once per epoch: ``epochs / steps``)."""
    import torch

    import dldna_lite as dl
    from dldna_lite import models

    g = torch.Generator().manual_seed(0)
    n = steps // epochs * batch_size
    X, y = torch.randn(n, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    model = models.mlp([32, 64, 10]).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    data = (X.to(device), y.to(device))
    with __getattr__("HostReads")() as reads:
        history = dl.fit(model, opt, data, epochs, batch_size=batch_size, progress=False, track_steps=True)
    done = len(history["loss"])
    return {"device": str(device), "steps": done, "epochs": epochs, "reads": reads.count,
            "reads_per_step": reads.count / done if done else None, "where": dict(collections.Counter(reads.where))}


# --- notebooks ---------------------------------------------------------------------------------------------------


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """book/*.ipynb in _toc.yml's order (entries without a notebook skipped), then any notebook it does not list."""
    listed = re.findall(r"^\s*-?\s*file:\s*(\S+)", (root / "_toc.yml").read_text(), flags=re.MULTILINE)
    ordered = [root / (entry + ".ipynb") for entry in listed]
    ordered = [path for path in ordered if path.parent == root / "book" and path.is_file()]
    return ordered + sorted(set((root / "book").glob("*.ipynb")) - set(ordered))


def code_cells(notebook: Path) -> list[tuple[int, str, list[str]]]:
    """``(index in the notebook, source, tags)`` of every code cell, from the .ipynb JSON."""
    cells = json.loads(notebook.read_text(encoding="utf8"))["cells"]
    found = []
    for index, cell in enumerate(cells):
        if cell.get("cell_type") == "code":
            source = cell.get("source", "")
            found.append((index, "".join(source) if isinstance(source, list) else source,
                          list(cell.get("metadata", {}).get("tags", []))))
    return found


def write_json(path: Path, data) -> None:
    """Write ``data`` as JSON atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


# --- child: one page ---------------------------------------------------------------------------------------------


class PageCounters:
    """Synchronisation warnings and optimizer steps of one page (both only when torch and CUDA are there)."""

    def __init__(self, cuda: bool):
        self.cuda, self.syncs, self.steps = cuda, 0, 0
        self._show = warnings.showwarning
        self._hook = self._showwarning   # one bound method, so that arm() can tell whether it is still installed
        if cuda:
            import torch

            torch.optim.optimizer.register_optimizer_step_post_hook(self._step)

    def _step(self, optimizer, args, kwargs) -> None:
        self.steps += 1

    def _showwarning(self, message, category, filename, lineno, file=None, line=None):
        """Count the sync-debug warnings (not shown: there can be thousands), show any other."""
        if SYNC_WARNING.search(str(message)):
            self.syncs += 1
            return
        self._show(message, category, filename, lineno, file, line)

    def count_sync_warnings(self) -> None:
        """Every sync warning from now on reaches :meth:`_showwarning`, none deduplicated (again before each cell:
        a cell may have changed the filters or ``warnings.showwarning``)."""
        warnings.filterwarnings("always", message=".*synchroniz")
        if warnings.showwarning is not self._hook:
            self._show, warnings.showwarning = warnings.showwarning, self._hook

    def arm(self) -> None:
        """Before each cell, under CUDA: count the sync warnings, which torch emits in sync debug mode "warn"."""
        if not self.cuda:
            return
        import torch

        self.count_sync_warnings()
        torch.cuda.set_sync_debug_mode("warn")

    def wait_for_gpu(self) -> None:
        """Let the GPU finish the cell's work (so its time is the cell's), without counting this sync."""
        if self.cuda:
            import torch

            torch.cuda.set_sync_debug_mode(0)
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("warn")


def _is_claim_error(err: BaseException) -> bool:
    """Whether ``err`` is a ``dldna_lite.notebook.ClaimError`` (looked up only if the page imported it)."""
    module = sys.modules.get("dldna_lite.notebook")
    return module is not None and isinstance(err, module.ClaimError)


def error_record(index: int, err: BaseException) -> dict:
    """Cell index, exception type, message and the last lines of the traceback of a failed cell."""
    lines = "".join(traceback.format_exception(type(err), err, err.__traceback__)).rstrip().splitlines()
    return {"cell": index, "type": f"{type(err).__module__}.{type(err).__qualname__}".removeprefix("builtins."),
            "message": str(err)[:2000], "traceback": lines[-15:]}


def _shell():
    """A plain IPython shell with its history in memory (``store_history=True`` still fills ``input_hist_raw``,
    which ``dldna_lite.notebook`` reads for the cell's key)."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    config.InteractiveShell.colors = "NoColor"   # plain tracebacks in the page's log
    return InteractiveShell.instance(config=config)


class OpCount:
    """With ``enabled``: the aten operators a block dispatches (on a GPU, about one kernel launch each) and its
    floating-point operations (``torch.utils.flop_counter.FlopCounterMode``: matrix products, convolutions,
    attention), for scripts/gpu_time_model.py. Costs a Python call per operator, so only ``--count`` runs use it."""

    def __init__(self, enabled: bool):
        self.enabled, self.ops, self.flops, self._modes = enabled, 0, 0, []

    def __enter__(self):
        if self.enabled:
            from torch.utils._python_dispatch import TorchDispatchMode
            from torch.utils.flop_counter import FlopCounterMode

            counter = self

            class _Ops(TorchDispatchMode):
                def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                    counter.ops += 1
                    return func(*args, **(kwargs or {}))

            self._flop_mode = FlopCounterMode(display=False)
            self._modes = [self._flop_mode, _Ops()]
            for mode in self._modes:
                mode.__enter__()
        return self

    def __exit__(self, *exc):
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
        if self._modes:
            self.flops = int(self._flop_mode.get_total_flops())
        return False


def run_page_child(notebook: Path, result_path: Path, dry: bool, count: bool = False) -> int:
    """Run the code cells of ``notebook`` in this process, writing the result JSON after every cell (with
    ``count``: each cell's operators and FLOPs, :class:`OpCount`)."""
    sys.path[0] = str(Path.cwd())   # as in a kernel: the notebook's folder, not scripts/
    if count and hasattr(os, "sched_setaffinity"):
        # Work in spawned processes escapes this process's counters: on one core, the code that would fan out
        # (the parallel grokking runs of dl.generalization, say) runs here, one run after the other, as on a GPU.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    result = {"notebook": str(notebook), "cells": [], "error": None, "finished": False, "cuda": False,
              "optimizer_steps": None, "sync_warnings": None}
    try:
        cuda = False
        if not dry:
            import torch

            cuda = torch.cuda.is_available()
        counters = PageCounters(cuda)
        result.update(cuda=cuda, optimizer_steps=0 if cuda else None, sync_warnings=0 if cuda else None)
        shell = _shell()
    except BaseException as err:  # noqa: BLE001 - e.g. IPython missing: the page cannot run at all
        result["error"] = error_record(-1, err)
        write_json(result_path, result)
        return 0
    write_json(result_path, result)
    for index, source, tags in code_cells(notebook):
        if "skip-execution" in tags:
            continue
        counters.arm()
        syncs, steps, start = counters.syncs, counters.steps, time.perf_counter()
        with OpCount(count) as ops:
            outcome = shell.run_cell(source, store_history=True)
        err = outcome.error_before_exec or outcome.error_in_exec
        try:
            counters.wait_for_gpu()
        except Exception as gpu_err:  # noqa: BLE001 - e.g. a device-side assert of the cell's kernels
            err = err or gpu_err
        status = "ok" if err is None else "expected error" if "raises-exception" in tags else \
            "claim failed" if _is_claim_error(err) else "error"
        cell = {"index": index, "seconds": round(time.perf_counter() - start, 3), "status": status}
        if count:
            cell.update(ops=ops.ops, flops=ops.flops)
        if cuda:
            cell.update(syncs=counters.syncs - syncs, steps=counters.steps - steps)
        result["cells"].append(cell)
        if cuda:
            result.update(optimizer_steps=counters.steps, sync_warnings=counters.syncs)
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")   # as the inline backend does after each cell
        if status == "error":
            result["error"] = error_record(index, err)
            break
        write_json(result_path, result)
    else:
        result["finished"] = True
    write_json(result_path, result)
    return 0


# --- child: device probe -----------------------------------------------------------------------------------------


def _dist_version(name: str) -> str | None:
    """The installed version of a distribution, without importing it."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def probe_child(result_path: Path, dry: bool) -> int:
    """The device section and the host-read micro-check, written to ``result_path``."""
    device = {"python": platform.python_version(), "executable": sys.executable, "cpu_count": os.cpu_count()}
    if dry:
        device.update(device="cpu", torch=_dist_version("torch"), cuda=None, device_count=0)
        write_json(result_path, {"device": device, "host_reads": {"status": "n/a (cpu)"}})
        return 0
    import torch

    cuda = torch.cuda.is_available()
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    device.update(torch=torch.__version__, cuda=torch.version.cuda, device=names[0] if names else "cpu",
                  devices=names, device_count=len(names))
    reads = {"status": "n/a (cpu)"}
    if cuda:
        try:
            reads = host_read_check(torch.device("cuda"))
            reads["status"] = "ok"
        except Exception as err:  # noqa: BLE001 - reported, the pages still run
            reads = {"status": f"failed: {type(err).__name__}: {err}"}
    write_json(result_path, {"device": device, "host_reads": reads})
    return 0


# --- parent ------------------------------------------------------------------------------------------------------


class GpuSampler:
    """nvidia-smi's utilisation and memory once a second in a thread, while a page runs (nothing without it)."""

    QUERY = ["--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]

    def __init__(self, interval: float = 1.0):
        self.smi, self.interval = shutil.which("nvidia-smi"), interval
        self.util: list[float] = []
        self.memory: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        if self.smi:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        """Sample until stopped (a failed or odd reading is skipped)."""
        while True:
            try:
                text = subprocess.run([self.smi, *self.QUERY], capture_output=True, text=True, timeout=5).stdout
                util, memory = (float(v) for v in text.splitlines()[0].split(","))   # the first GPU
                self.util.append(util)
                self.memory.append(memory)
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                pass
            if self._stop.wait(self.interval):
                return

    def summary(self) -> dict | None:
        """Mean and max utilisation (%), max memory used (MiB), number of samples; ``None`` without samples."""
        if not self.util:
            return None
        return {"util_mean": round(sum(self.util) / len(self.util), 1), "util_max": max(self.util),
                "mem_max_mib": max(self.memory), "samples": len(self.util)}


def _wheel_pin(path: Path) -> tuple[str, str]:
    """``(normalised name, version)`` from a wheel's file name (stdlib only: the GPU machine may lack packaging)."""
    name, version = path.name.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def bundle_site(bundle: Path, work: Path) -> tuple[Path | None, str]:
    """The folder to put first on the children's PYTHONPATH for the bundle's wheels (``None``: not needed), and
    a line saying what was done. Installs them into ``work/site`` once (a stamp names the wheels installed)."""
    wheels = sorted((bundle / "wheels").glob("*.whl"))
    if not wheels:
        return None, f"no wheels in {bundle / 'wheels'}"
    pins = [_wheel_pin(path) for path in wheels]
    if all(_dist_version(name) == version for name, version in pins):
        return None, f"the {len(wheels)} wheels of the bundle are already installed in {sys.prefix}"
    site, stamp = work / "site", "\n".join(path.name for path in wheels)
    if (site / ".bundle").is_file() and (site / ".bundle").read_text() == stamp:
        return site, f"{len(wheels)} wheels already installed in {site}"
    shutil.rmtree(site, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
           "--target", str(site), *map(str, wheels)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        return None, f"installing the bundle's wheels failed (exit {done.returncode}): {done.stderr[-2000:]}"
    (site / ".bundle").write_text(stamp)
    return site, f"installed {len(wheels)} wheels into {site}"


def child_env(dry: bool, bundle: Path, site: Path | None, work: Path) -> dict[str, str]:
    """The environment of every child: profile, static widgets, no progress bars, Agg, the bundle's data."""
    env = dict(os.environ)
    env.update(DLDNA_PROFILE="quick" if dry else "gpu", DLDNA_STATIC_WIDGETS="1", DLDNA_PROGRESS="0",
               MPLBACKEND="Agg", PYTHONUNBUFFERED="1", IPYTHONDIR=str(work / "ipython"))
    if dry:   # the CPU rehearsal shares its cores with other work; the GPU machine is lent whole (spinning is faster)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    paths = [str(site)] if site else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    if (bundle / "data").is_dir():
        env["DLDNA_DATA_DIR"] = str(bundle / "data")
    if dry:
        env["CUDA_VISIBLE_DEVICES"] = ""   # the dry run is the CPU rehearsal, on any machine
    for proxy in ("http_proxy", "https_proxy"):   # the GPU machine reaches no network: a download attempt (e.g.
        env.setdefault(proxy, "http://127.0.0.1:9")   # torchvision's CIFAR-100) fails at once instead of hanging
    return env


def run_child(cmd: list[str], cwd: Path, env: dict, timeout: float, log: Path) -> tuple[int | None, bool, float]:
    """Run ``cmd`` in its own process group with output to ``log``; kill the group after ``timeout`` seconds.
    Returns (exit status or None, timed out, seconds)."""
    start = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # also what the page left running
            except ProcessLookupError:
                pass
            proc.wait()
    return (None if timed_out else proc.returncode), timed_out, time.monotonic() - start


def read_claims(path: Path) -> list[dict]:
    """The claim records a page appended to its DLDNA_CLAIMS_LOG (a torn last line is ignored)."""
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    return records


def page_status(child: dict | None, timed_out: bool, returncode: int | None, claims_failed: int) -> str:
    """passed, claims failed, error, timed out or crashed (exit N) -- the worst that happened."""
    if timed_out:
        return TIMED_OUT
    if child is None:
        return f"crashed (exit {returncode})"
    if child["error"]:
        return "error"
    if claims_failed or any(cell["status"] == "claim failed" for cell in child["cells"]):
        return "claims failed"
    if not child["finished"] or returncode:
        return f"crashed (exit {returncode})"
    return PASSED


def tail(path: Path, chars: int) -> str:
    """The last ``chars`` characters of a text file ('' when there is none)."""
    if not path.is_file():
        return ""
    text = path.read_bytes()[-chars * 4:].decode("utf8", "replace")
    return text[-chars:]


def run_page(notebook: Path, timeout: float, env: dict, work: Path, dry: bool, count: bool = False) -> dict:
    """Run one page in a fresh child process; its report entry."""
    name = notebook.stem
    result, claims, log = (work / sub / f"{name}{ext}" for sub, ext in
                           (("results", ".json"), ("claims", ".jsonl"), ("logs", ".log")))
    for path in (result, claims, log):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-page", str(notebook), "--result", str(result)]
    with GpuSampler() as gpu:
        returncode, timed_out, seconds = run_child(cmd + (["--dry"] if dry else []) + (["--count"] if count else []),
                                                   notebook.parent,
                                                   {**env, "DLDNA_CLAIMS_LOG": str(claims)}, timeout, log)
    child = json.loads(result.read_text()) if result.is_file() else None
    records = read_claims(claims)
    failed = [r for r in records if not r.get("holds")]
    status = page_status(child, timed_out, returncode, len(failed))
    steps, syncs = (child or {}).get("optimizer_steps"), (child or {}).get("sync_warnings")
    return {"page": name, "notebook": str(notebook), "status": status, "measured_s": round(seconds, 1),
            "timeout_s": round(timeout, 1), "returncode": returncode,
            "claims": {"held": len(records) - len(failed), "failed": len(failed),
                       "failed_statements": [r.get("statement") for r in failed]},
            "cells": (child or {}).get("cells", []), "error": (child or {}).get("error"), "gpu": gpu.summary(),
            "cuda": (child or {}).get("cuda", False), "optimizer_steps": steps, "sync_warnings": syncs,
            "syncs_per_step": round(syncs / steps, 3) if steps and syncs is not None else None,
            "ops": _cell_total((child or {}).get("cells", []), "ops"),
            "flops": _cell_total((child or {}).get("cells", []), "flops"),
            "log_tail": "" if status == PASSED else tail(log, LOG_TAIL_CHARS)}


def _cell_total(cells: list[dict], key: str) -> int | None:
    """The sum of ``key`` over the cells that have it (``ops``/``flops`` of a ``--count`` run), else None."""
    values = [c[key] for c in cells if c.get(key) is not None]
    return sum(values) if values else None


def skipped_page(notebook: Path) -> dict:
    """The report entry of a page the budget left no time for."""
    return {"page": notebook.stem, "notebook": str(notebook), "status": SKIPPED, "measured_s": None,
            "timeout_s": None, "returncode": None, "claims": {"held": 0, "failed": 0, "failed_statements": []},
            "cells": [], "error": None, "gpu": None, "cuda": False, "optimizer_steps": None, "sync_warnings": None,
            "syncs_per_step": None, "ops": None, "flops": None, "log_tail": ""}


def predictions(dry: bool, model: Path = TIME_MODEL) -> dict[str, float]:
    """Predicted seconds per page from the time model (``gpu_h200_s``; for --dry the quick time it was calibrated
    on, ``cpu_quick_measured_s``); {} without."""
    key = "cpu_quick_measured_s" if dry else "gpu_h200_s"
    try:
        pages = json.loads(model.read_text())["pages"]
        return {name: float(entry[key]) for name, entry in pages.items() if entry.get(key) is not None}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def nvidia_driver() -> str | None:
    """The driver version nvidia-smi reports (None without nvidia-smi)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        text = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return text.splitlines()[0].strip() if text.strip() else None


def probe(env: dict, work: Path, timeout: float, dry: bool) -> tuple[dict, dict]:
    """The device section and the host-read check, from a child (the parent never imports torch)."""
    result, log = work / "probe.json", work / "logs" / "probe.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", "--result", str(result)]
    returncode, timed_out, _ = run_child(cmd + (["--dry"] if dry else []), ROOT, env, timeout, log)
    if result.is_file():
        found = json.loads(result.read_text())
        device, reads = found["device"], found["host_reads"]
    else:
        why = "timed out" if timed_out else f"exit {returncode}: {tail(log, 1500)}"
        device, reads = {"status": f"probe failed ({why})"}, {"status": "not run (probe failed)"}
    device["driver"] = None if dry else nvidia_driver()
    return device, reads


def _cell(value, fmt: str = "{:.1f}") -> str:
    """A number for the table, "-" for none."""
    return "-" if value is None else fmt.format(value)


def format_table(report: dict) -> str:
    """The report as text: device, host reads, one row per page, totals."""
    d, reads = report["device"], report["host_reads"]
    lines = [f"gpu-check ({'dry, quick profile' if report['dry'] else 'gpu profile'}), budget {report['budget_s']:g} s,"
             f" {report['elapsed_s']:.1f} s elapsed",
             f"device: {d.get('device', d.get('status'))} x{d.get('device_count', 0)}; python {d.get('python')}, "
             f"torch {d.get('torch')}, CUDA {d.get('cuda')}, driver {d.get('driver')}, {d.get('cpu_count')} CPUs",
             "host reads: " + (f"{reads['reads']} in {reads['steps']} steps of dldna_lite.fit = "
                               f"{reads['reads_per_step']:.4f} per step on {reads['device']}"
                               if "reads" in reads else reads["status"]),
             f"bundle: {report['bundle']}", ""]
    head = ("page", "predicted s", "measured s", "status", "claims held/failed", "GPU util mean/max", "syncs/step")
    rows = []
    for p in report["pages"]:
        gpu = p["gpu"]
        rows.append((p["page"], _cell(p["predicted_s"]), _cell(p["measured_s"]), p["status"],
                     f"{p['claims']['held']}/{p['claims']['failed']}",
                     f"{gpu['util_mean']:.0f}/{gpu['util_max']:.0f} %" if gpu else "-",
                     _cell(p["syncs_per_step"], "{:.3f}") if p["cuda"] else "n/a (cpu)"))
    t = report["totals"]
    rows.append(("total", _cell(t["predicted_s"]), _cell(t["measured_s"]), f"{t['passed']}/{t['pages']} passed",
                 f"{t['claims_held']}/{t['claims_failed']}", "", ""))
    widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]
    fmt = " | ".join(f"{{:{'<' if i in (0, 3) else '>'}{w}}}" for i, w in enumerate(widths))
    lines += [fmt.format(*head), "-+-".join("-" * w for w in widths)]
    lines += [fmt.format(*row) for row in rows[:-1]] + ["-+-".join("-" * w for w in widths), fmt.format(*rows[-1])]
    for p in report["pages"]:
        if p["error"]:
            e = p["error"]
            lines.append(f"{p['page']}: cell {e['cell']}: {e['type']}: {e['message'].splitlines()[0][:200]}")
        for statement in p["claims"]["failed_statements"]:
            lines.append(f"{p['page']}: claim failed: {statement}")
    return "\n".join(lines)


def totals(pages: list[dict]) -> dict:
    """Counts and sums over the pages."""
    def total(key):
        """The sum of ``key`` over the pages that have it (None when none has)."""
        values = [p[key] for p in pages if p[key] is not None]
        return round(sum(values), 1) if values else None
    count = collections.Counter(p["status"] for p in pages)
    return {"pages": len(pages), "passed": count[PASSED], "timed_out": count[TIMED_OUT], "skipped": count[SKIPPED],
            "failed": len(pages) - count[PASSED] - count[TIMED_OUT] - count[SKIPPED],
            "measured_s": total("measured_s"), "predicted_s": total("predicted_s"),
            "claims_held": sum(p["claims"]["held"] for p in pages),
            "claims_failed": sum(p["claims"]["failed"] for p in pages)}


def check(args) -> int:
    """Run the pages within the budget, write the report, print the table; 0 when every page passed."""
    start = time.monotonic()
    left = lambda: args.budget - (time.monotonic() - start)   # noqa: E731
    out = (args.out or Path(os.environ.get("OUT") or ROOT / "_build" / "gpu-check")).resolve()
    work, bundle = args.work.resolve(), args.bundle.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    notebooks = [Path(n).resolve() for n in args.notebooks] if args.notebooks else toc_notebooks()
    site, bundle_note = bundle_site(bundle, work)
    print(f"gpu-check: {bundle_note}", flush=True)
    env = child_env(args.dry, bundle, site, work)
    device, reads = probe(env, work, min(PROBE_TIMEOUT_S, max(left(), 1.0)), args.dry)
    predicted = predictions(args.dry)
    pages = []
    for number, notebook in enumerate(notebooks, 1):
        remaining = left()
        try:
            page = skipped_page(notebook) if remaining < args.min_start else \
                run_page(notebook, remaining, env, work, args.dry, args.count)
        except Exception as err:  # noqa: BLE001 - a fault of this script: noted, the other pages still run
            page = {**skipped_page(notebook), "status": f"runner error: {type(err).__name__}: {err}"}
        page["predicted_s"] = predicted.get(notebook.stem)
        pages.append(page)
        print(f"gpu-check: [{number}/{len(notebooks)}] {page['page']}: {page['status']}"
              + (f" in {page['measured_s']:.1f} s" if page["measured_s"] is not None else ""), flush=True)
    report = {"schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "dry": args.dry, "count": args.count, "profile": "quick" if args.dry else "gpu", "budget_s": args.budget,
              "min_start_s": args.min_start, "elapsed_s": round(time.monotonic() - start, 1), "bundle": bundle_note,
              "device": device, "host_reads": reads, "pages": pages, "totals": totals(pages),
              "passed": bool(pages) and all(p["status"] == PASSED for p in pages)}
    write_json(out / "gpu-check.json", report)
    table = format_table(report)
    (out / "gpu-check.txt").write_text(table + "\n")
    with open(out / "pages.log", "w", encoding="utf8") as log:
        for page in pages:
            log.write(f"===== {page['page']}: {page['status']} =====\n")
            log.write(tail(work / "logs" / f"{page['page']}.log", PAGE_LOG_CHARS) + "\n")
    print("\n" + table, flush=True)
    print(f"\ngpu-check: report in {out / 'gpu-check.json'}", flush=True)
    return 0 if report["passed"] else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (``--run-page``, ``--probe`` and ``--result`` are the children's, hidden)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for everything (default 540)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default $OUT or _build/gpu-check)")
    parser.add_argument("--work", type=Path, default=ROOT / "_build" / "gpu-check-work",
                        help="per-page files and installed wheels (default _build/gpu-check-work)")
    parser.add_argument("--dry", action="store_true", help="the quick profile on the CPU: a rehearsal anywhere")
    parser.add_argument("--bundle", type=Path, default=ROOT / "_build" / "gpu-bundle",
                        help="scripts/gpu_bundle.py's output (default _build/gpu-bundle)")
    parser.add_argument("--notebooks", nargs="+", default=None, help="these notebooks instead of the book's")
    parser.add_argument("--count", action="store_true",
                        help="count each cell's aten operators and FLOPs (slower; for scripts/gpu_time_model.py)")
    parser.add_argument("--min-start", type=float, default=MIN_START_S,
                        help=f"start no page with fewer seconds left (default {MIN_START_S:g})")
    parser.add_argument("--run-page", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """The check, or one of its children."""
    args = parse_args(argv)
    if args.run_page:
        return run_page_child(args.run_page, args.result, args.dry, args.count)
    if args.probe:
        return probe_child(args.result, args.dry)
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
