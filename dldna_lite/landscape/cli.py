"""``python -m dldna_lite.landscape``: a filter-normalized loss-landscape scan of a checkpoint, on one process or
many (the appendix page "Running this book", section "Scanning with several processes").

One process::

    python -m dldna_lite.landscape --checkpoint mlp.pt --grid 51 --range -1 1 --out scan.npz

The same scan split over 4 processes of this machine, or over 2 machines with 8 GPUs each (run on both nodes)::

    torchrun --standalone --nproc_per_node=4 -m dldna_lite.landscape --checkpoint mlp.pt --out scan.npz
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=host0:29500 \\
        -m dldna_lite.landscape --checkpoint mlp.pt --out scan.npz

How the numbers stay the same whatever the number of processes:

* **Directions** come from a shared seed: every rank draws them from a CPU ``torch.Generator`` seeded with
  ``--seed`` on a CPU copy of the model (no broadcast needed); the ranks then compare a hash of them and stop
  if they disagree.
* **Work split**: the grid's points, in row-major order, are cut into chunks of a fixed size (one grid row for a
  2D scan, the engine's batch for 1D) that does not depend on the number of processes; round ``r`` gives rank ``k``
  chunk ``r * world_size + k``; every chunk is one call of the scan engine
  (:func:`dldna_lite.landscape.point_evaluator`), so each point sees the same floating-point operations wherever it runs. Rank 0 gathers each round.
* **Threads**: each process uses ``cores // processes per node`` intra-op threads;
  :func:`distributed.reproducible_blas` makes MKL's matrix products independent of that count, and one serial
  warm-up evaluation (:func:`distributed.warm_up_serially`) keeps MKL's vector math (``exp``, ``log``) from
  picking a low-accuracy kernel in a race on its first multi-threaded call.
* **Resume**: rank 0 rewrites ``<out>.partial.npz`` atomically after every round (chunks done, their values and a
  header describing the scan, including the device type, since CPU and CUDA round differently). A rerun with the
  same arguments skips the chunks done, with any number of processes; a different scan (or the same scan on
  another device type) refuses to reuse the file unless ``--restart`` is given. Test hook: with
  ``DLDNA_SCAN_KILL_AFTER_CHUNKS=k`` in the environment, rank 0 sends itself ``SIGKILL`` as soon as the partial file
  holds ``k`` chunks computed by this run, which is what a kill at that moment would leave.
* **Bounded time**: a rank waits at most ``--timeout`` seconds for the others in any exchange, and leaving the
  process group is watched too (:func:`distributed.teardown`), so a lost rank ends the scan with an error
  instead of a hang.

Checkpoints (:mod:`dldna_lite.landscape.checkpoints`): :func:`save_checkpoint` writes
``{"format", "model", "kwargs", "state_dict"}``, which
``torch.load(weights_only=True)`` reads; a bare ``state_dict`` works with ``--model`` and ``--model-kwargs``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .. import distributed
from ..data import SPLITS, load_fashion_mnist
from ..train import progress_enabled
from .checkpoints import MODELS, load_checkpoint, model_hash, tensors_hash
from .directions import NORMS, random_direction
from .engine import point_evaluator

__all__ = ["grid_coords", "scan_directions", "run_scan", "main"]

SCAN_FORMAT = "dldna_lite.scan/1"
KILL_AFTER_ENV = "DLDNA_SCAN_KILL_AFTER_CHUNKS"      # test hook (module docstring)


# ---------------------------------------------------------------------------------------------------- the scan
def grid_coords(dims: int, grid: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """``(xs [grid], coords [P, dims])``: ``xs = linspace(lo, hi, grid)`` and the points in row-major order,
    point ``i * grid + j`` = ``(xs[j], xs[i])`` in 2D (``P = grid²``; row ``i`` is ``y = xs[i]``, as in
    :func:`dldna_lite.landscape.scan_2d`), ``xs[j]`` in 1D."""
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    if not isinstance(grid, int) or grid < 2:
        raise ValueError(f"grid must be an int >= 2 (points per axis), got {grid!r}")
    if not np.isfinite([lo, hi]).all() or lo >= hi:
        raise ValueError(f"range must be two finite numbers LO < HI, got {lo!r} {hi!r}")
    xs = np.linspace(lo, hi, grid)
    if dims == 1:
        return xs, xs[:, None]
    return xs, np.stack([np.tile(xs, grid), np.repeat(xs, grid)], 1)


def scan_directions(model: nn.Module, dims: int, seed: int, norm: str = "filter") -> list[list[torch.Tensor]]:
    """``dims`` directions from one CPU ``torch.Generator`` seeded with ``seed`` (d1 first), computed on a CPU
    copy of the weights: every rank, on any device, gets the same bits. Biases are not perturbed
    (:func:`dldna_lite.landscape.random_direction`'s default)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    cpu = model if all(p.device.type == "cpu" for p in model.parameters()) else copy.deepcopy(model).cpu()
    gen = torch.Generator().manual_seed(seed)
    return [random_direction(cpu, norm=norm, generator=gen) for _ in range(dims)]


def _load_data(split: str, n_eval: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if not isinstance(n_eval, int) or n_eval < 1:
        raise ValueError(f"n_eval must be a positive int, got {n_eval!r}")
    X, y = load_fashion_mnist(split, limit=n_eval, flatten=True)
    if len(X) < n_eval:
        raise ValueError(f"n_eval={n_eval} but the {split} split has only {len(X)} images")
    return X.to(device), y.to(device)


def run_scan(checkpoint: str | os.PathLike, out: str | os.PathLike, *, model: str | None = None,
             model_kwargs: dict | None = None, dims: int = 2, grid: int = 51,
             range_: Sequence[float] = (-1.0, 1.0), seed: int = 0, norm: str = "filter", n_eval: int = 1000,
             split: str = "test", chunk: int | None = None, restart: bool = False,
             ctx: distributed.Context | None = None, progress: bool | None = None) -> dict | None:
    """Scan the cross-entropy of ``checkpoint`` on ``n_eval`` Fashion-MNIST images over a ``grid``-point (per
    axis) line or plane through the weights, write ``out`` (``.npz``) and return its contents (rank 0; other
    ranks return ``None``). ``ctx`` is the process group (:func:`distributed.setup`); ``None``: one process.

    The file holds ``loss``/``acc`` (``[grid, grid]``, row ``i`` at ``y = xs[i]``; ``[grid]`` in 1D), ``xs``,
    ``ys`` (2D), ``coords [P, dims]``, ``seed``, ``model_hash``, ``direction_hash``, ``chunk`` and ``header``
    (JSON of everything that defines the values, the device type included). It never records the number of
    processes, so the file is the same for any. ``chunk`` (points per chunk): default one grid row in 2D, the
    engine's batch in 1D. The returned dict also holds ``seconds``, ``resumed_chunks`` and ``engine`` (how the
    scan engine evaluated the points: ``"first-layer+bmm"`` for an MLP, see
    :func:`dldna_lite.landscape.point_evaluator`).
    """
    ctx = ctx or distributed.Context()
    kill_after = _kill_after()
    lo, hi = (float(v) for v in range_)
    xs, coords = grid_coords(dims, grid, lo, hi)
    engine, recipe = _engine(ctx, checkpoint, model, model_kwargs, dims, seed, norm, split, n_eval)
    chunk = chunk or (grid if dims == 2 else engine.chunk)
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    header = dict(format=SCAN_FORMAT, **recipe, dims=dims, grid=grid, range=[lo, hi], seed=seed, norm=norm,
                  n_eval=n_eval, split=split, chunk=chunk, loss="cross_entropy", device=ctx.device.type)
    out = Path(out)
    part, todo = _open_partial(ctx, out, header, len(coords), chunk, restart)
    start_time = time.perf_counter()
    _scan_rounds(ctx, engine, coords, chunk, part, todo, dims, progress, kill_after)
    if not ctx.is_main:
        return None
    result = _result(part, header, xs, coords)
    distributed.atomic_savez(out, **result)
    part.remove()
    result["seconds"] = time.perf_counter() - start_time
    result["resumed_chunks"] = len(part.bounds) - len(todo)
    result["engine"] = engine.path
    return result


def _engine(ctx, checkpoint, model, model_kwargs, dims: int, seed: int, norm: str, split: str, n_eval: int):
    """The scan engine on ``ctx.device`` (warmed up) and the header fields naming the model and directions; the
    ranks check that they loaded the same weights and drew the same directions."""
    net, name, kwargs = load_checkpoint(checkpoint, model, model_kwargs)
    dirs = scan_directions(net, dims, seed, norm)
    recipe = dict(model=name, model_kwargs=kwargs, model_hash=model_hash(net),
                  direction_hash=tensors_hash((f"d{c}.{i}", t) for c, d in enumerate(dirs) for i, t in enumerate(d)))
    distributed.check_same(ctx, (recipe["model_hash"], recipe["direction_hash"]), "the model and direction hashes")
    net = net.to(ctx.device)
    dirs = [[t.to(ctx.device) for t in d] for d in dirs]
    engine = point_evaluator(net, _load_data(split, n_eval, ctx.device), dirs)
    distributed.warm_up_serially(engine.batch, np.zeros((1, dims)))   # settles MKL's kernel choice before threads race
    return engine, recipe


def _scan_rounds(ctx, engine, coords: np.ndarray, chunk: int, part, todo: list[int], dims: int,
                 progress: bool | None, kill_after: int | None = None) -> None:
    """Each rank evaluates its chunk of each round; rank 0 records the gathered values and rewrites the partial
    file after every round, with a progress bar."""
    bounds = distributed.chunk_bounds(len(coords), chunk)
    bar = tqdm(total=len(bounds), initial=len(bounds) - len(todo), unit="chunk", desc=f"scan {dims}d",
               disable=not (ctx.is_main and progress_enabled(progress)), file=sys.stderr)
    computed = 0
    for chunk_id in distributed.assign_rounds(todo, ctx.world_size, ctx.rank):
        values = engine.batch(coords[slice(*bounds[chunk_id])]) if chunk_id is not None else (None, None)
        gathered = distributed.gather_chunks(ctx, chunk_id, *values)
        if ctx.is_main:
            for cid, loss, acc in gathered:
                part.record(cid, loss, acc)
            part.save()
            bar.update(len(gathered))
            computed += len(gathered)
            if kill_after is not None and computed >= kill_after:
                os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))     # the test hook
    bar.close()


def _kill_after() -> int | None:
    """``$DLDNA_SCAN_KILL_AFTER_CHUNKS`` as a positive int, or ``None`` when unset (the test hook)."""
    value = os.environ.get(KILL_AFTER_ENV)
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{KILL_AFTER_ENV}={value!r} must be a positive integer (a test hook; unset it)")
    return int(value)


def _open_partial(ctx, out: Path, header: dict, n_points: int, chunk: int, restart: bool):
    """Rank 0 opens (or starts) the partial record and tells every rank which chunks are left, or the error."""
    part, status = None, None
    if ctx.is_main:
        try:
            if out.is_dir():
                raise ValueError(f"--out {out} is an existing folder; name the result file, e.g. {out / 'scan.npz'}")
            out.parent.mkdir(parents=True, exist_ok=True)
            part = distributed.PartialResult.open(Path(f"{out}.partial.npz"), header, n_points, chunk, restart)
            status = ("todo", part.todo())
        except (ValueError, OSError) as err:        # OSError: e.g. a parent of --out that is a file, no permission
            status = ("error", str(err))
    status = distributed.broadcast(ctx, status)
    if status[0] == "error":
        raise ValueError(status[1])
    return part, status[1]


def _result(part: distributed.PartialResult, header: dict, xs: np.ndarray, coords: np.ndarray) -> dict:
    grid, dims = header["grid"], header["dims"]
    shape = (grid, grid) if dims == 2 else (grid,)
    result = dict(loss=part.loss.reshape(shape), acc=part.acc.reshape(shape), xs=xs, coords=coords,
                  seed=np.int64(header["seed"]), model_hash=np.array(header["model_hash"]),
                  direction_hash=np.array(header["direction_hash"]), chunk=np.int64(header["chunk"]),
                  header=np.array(json.dumps(part.header, sort_keys=True)))
    if dims == 2:
        result["ys"] = xs.copy()
    return result


# --------------------------------------------------------------------------------------------------------- CLI
def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object like '{{\"widths\": [784, 100, 10]}}', got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dldna_lite.landscape",
        description="Filter-normalized loss-landscape scan (cross-entropy and accuracy on Fashion-MNIST) of a "
                    "checkpoint over a 2D (or 1D) grid around its weights. Runs on one process, or under torchrun "
                    "with the grid split across ranks (gloo on CPU, nccl on GPU); any run resumes from "
                    "<out>.partial.npz.",
        epilog="example: torchrun --standalone --nproc_per_node=2 -m dldna_lite.landscape --checkpoint mlp.pt "
               "--grid 51 --range -1 1 --out scan.npz")
    p.add_argument("--checkpoint", required=True, 
                   help="file from dldna_lite.landscape.save_checkpoint, or a state_dict")
    p.add_argument("--out", required=True, help="result file (.npz); partial results go to OUT.partial.npz")
    p.add_argument("--model", choices=list(MODELS), help="model of a bare state_dict (optional otherwise)")
    p.add_argument("--model-kwargs", type=_json_object, metavar="JSON",
                   help='constructor arguments of --model as JSON, e.g. \'{"widths": [784, 100, 10]}\'')
    p.add_argument("--dims", type=int, choices=(1, 2), default=2, help="1D line or 2D plane (default 2)")
    p.add_argument("--grid", type=int, default=51, help="points per axis (default 51)")
    p.add_argument("--range", type=float, nargs=2, default=(-1.0, 1.0), metavar=("LO", "HI"),
                   help="coordinate range of each axis (default -1 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions (default 0)")
    p.add_argument("--norm", choices=NORMS, default="filter", help="direction normalization")
    p.add_argument("--n-eval", type=int, default=1000, help="images evaluated per point (default 1000)")
    p.add_argument("--split", choices=SPLITS, default="test", help="Fashion-MNIST split (default test)")
    p.add_argument("--chunk", type=_positive_int, default=None,
                   help="points per work unit, >= 1 (default: one grid row in 2D, the engine's batch in 1D); "
                        "part of the scan's definition, independent of the number of processes")
    p.add_argument("--device", choices=distributed.DEVICES, default="auto", help="default: CUDA when available")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="intra-op threads per process, >= 1 (default: cores // processes on this node)")
    p.add_argument("--timeout", type=_seconds, default=distributed.TIMEOUT, metavar="SECONDS",
                   help="longest wait of a rank for the others in one exchange, after which the scan fails "
                        f"instead of hanging (default {distributed.TIMEOUT:.0f})")
    p.add_argument("--restart", action="store_true", help="discard partial results of a different scan")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, join torchrun's process group (if any), scan, and print a one-line summary on rank 0."""
    distributed.reproducible_blas()                     # before the first matrix product of this process
    args = _parser().parse_args(argv)
    ctx = None
    try:
        ctx = distributed.setup(args.device, timeout=args.timeout)
        threads = args.threads or distributed.threads_per_process(ctx.local_world_size)
        torch.set_num_threads(threads)
        result = run_scan(args.checkpoint, args.out, model=args.model, model_kwargs=args.model_kwargs,
                          dims=args.dims, grid=args.grid, range_=args.range, seed=args.seed, norm=args.norm,
                          n_eval=args.n_eval, split=args.split, chunk=args.chunk, restart=args.restart, ctx=ctx)
    except (ValueError, FileNotFoundError) as err:
        if ctx is None or ctx.is_main:
            print(f"python -m dldna_lite.landscape: error: {err}", file=sys.stderr)
        return 2
    finally:
        if ctx is not None:
            distributed.teardown(ctx)
    if result is not None:
        resumed = f", {result['resumed_chunks']} chunks resumed" if result["resumed_chunks"] else ""
        print(f"scanned {result['coords'].shape[0]} points on {ctx.world_size} process(es) x {threads} thread(s) "
              f"({ctx.device}, engine {result['engine']}) in {result['seconds']:.2f} s{resumed} -> {args.out}")
    return 0
