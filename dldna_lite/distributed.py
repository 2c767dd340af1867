"""Running a grid of independent evaluations on several processes (``torchrun``) or on one, with the same numbers.

The pieces the landscape scan CLI (:mod:`dldna_lite.landscape.cli`, ``python -m dldna_lite.landscape``) is
built from (chapter 03); :func:`atomic_write` also keeps the data cache whole (:mod:`dldna_lite.data`):

* :func:`setup` / :func:`teardown` -- a process group from the environment ``torchrun`` sets (``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), or no group at all for a
  plain ``python`` process. Backend ``gloo`` on the CPU; on CUDA device ``cuda:{LOCAL_RANK % GPUs}`` with ``nccl``,
  or ``gloo`` when a node has more processes than GPUs (NCCL refuses two ranks on one GPU). Every collective and
  the teardown end within a bounded time (``timeout``), so a lost rank is an error, never a hang.
* :func:`threads_per_process` / :func:`reproducible_blas` / :func:`warm_up_serially` -- the intra-op thread count
  of each process (``cores // processes on this node``), the MKL setting that makes matrix products independent of
  it, and a first evaluation on one thread that keeps MKL's vector math from racing on its first call.
* :func:`chunk_bounds` / :func:`assign_rounds` -- the work split. Points are cut into chunks of a fixed size that
  does *not* depend on the number of processes; each round gives every rank one whole chunk. A chunk is always
  evaluated as one batch, so a point's value does not depend on which rank computed it.
* :func:`gather_chunks`, :func:`broadcast`, :func:`check_same` -- the collectives (rank 0 ends up with all values),
  all built on one pickled all-gather whose work handles this process keeps until :func:`teardown`.
* :class:`PartialResult` -- the resumable file: the chunks done so far plus a header describing the scan, rewritten
  atomically (temporary file, then ``os.replace``) after every round.
"""
from __future__ import annotations

import faulthandler
import glob
import json
import math
import os
import pickle
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from .config import available_cores

__all__ = ["Context", "setup", "teardown", "threads_per_process", "reproducible_blas", "warm_up_serially",
           "chunk_bounds", "assign_rounds", "gather_chunks", "broadcast", "check_same", "atomic_savez", "PartialResult"]

DEVICES = ("auto", "cpu", "cuda")
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT = 600.0               # seconds a rank waits for the others in one collective (setup's default)
TEARDOWN_TIMEOUT = 120.0      # seconds destroy_process_group may take before the process is ended (teardown)
STALE_TMP = 3600.0            # a temporary of atomic_write unmodified this long (s) was left by a killed writer
_IN_FLIGHT: list = []         # work handles of this process's collectives, released after teardown


# ------------------------------------------------------------------------------------------------ process group
@dataclass(frozen=True)
class Context:
    """Where this process sits: global ``rank`` of ``world_size``, ``local_rank`` of ``local_world_size`` on its
    node, the ``device`` it computes on and the ``backend`` of its process group (``None``: single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that gathers, writes files and shows progress."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer (torchrun sets it)") from None


def _device_and_backend(device: str, local_rank: int, local_world: int) -> tuple[torch.device, str]:
    """The compute device and the backend of process ``local_rank`` of ``local_world`` on its node."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available; use --device cpu")
    if not (device == "cuda" or (device == "auto" and torch.cuda.is_available())):
        return torch.device("cpu"), "gloo"
    gpus = torch.cuda.device_count()
    return torch.device(f"cuda:{local_rank % gpus}"), ("nccl" if local_world <= gpus else "gloo")


def setup(device: str = "auto", timeout: float = TIMEOUT) -> Context:
    """Join the process group ``torchrun`` describes in the environment, or run alone when it describes none.

    ``device``: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``. On the CPU the backend is ``gloo``.
    Under CUDA process ``LOCAL_RANK`` computes on ``cuda:{LOCAL_RANK % torch.cuda.device_count()}``; the backend
    is ``nccl`` when the node has at least one GPU per process, and ``gloo`` (collectives on CPU copies of the
    few values exchanged per chunk) when processes share a GPU, e.g. 2 processes on a 1-GPU machine: NCCL refuses two ranks on
    one device, while two processes may well compute on one GPU. ``timeout`` (seconds): the longest any
    collective waits for the other ranks before it raises (``init_process_group(timeout=...)``); it must cover
    the slowest rank's work between two collectives (one chunk of a scan, or loading the data).
    """
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local_rank, local_world = _env_int("LOCAL_RANK", 0), _env_int("LOCAL_WORLD_SIZE", 1)
    dev, backend = _device_and_backend(device, local_rank, local_world)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    launched = all(v in os.environ for v in _TORCHRUN_VARS)
    if not launched:
        return Context(device=dev)
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout),
                                device_id=dev if backend == "nccl" else None)
    return Context(rank, world, local_rank, local_world, dev, backend)


def teardown(ctx: Context, timeout: float = TEARDOWN_TIMEOUT) -> None:
    """Leave the process group (no-op for a single process), then drop the collectives' work handles.

    Why in this order: up to torch 2.7 the Python binding of a process group destroys it *holding the GIL*, and
    gloo's destructor joins its worker threads; a worker that still owns the last reference to a finished
    collective whose tensors were made in Python needs the GIL to free them, so the process deadlocked at exit
    (seen with torch 2.5.1 in 2-process scans; upstream, pytorch/pytorch#154976 releases the GIL there). Every
    collective here keeps its handle in this process until after ``destroy_process_group``, so a worker never
    frees such tensors (they hold the exchanged bytes: about the size of the gathered results once more). As a
    last resort a watchdog that needs no GIL (``faulthandler.dump_traceback_later``, which replaces any such timer
    of the process) prints every thread's stack and ends the process with exit code 1 if the teardown takes
    longer than ``timeout`` seconds.
    """
    if ctx.backend is None or not dist.is_initialized():
        return
    faulthandler.dump_traceback_later(timeout, exit=True)
    try:
        dist.destroy_process_group()
    finally:
        faulthandler.cancel_dump_traceback_later()
        _IN_FLIGHT.clear()


def threads_per_process(local_world_size: int, cores: int | None = None) -> int:
    """``max(1, cores // local_world_size)``: the node's cores shared evenly by its processes (``cores``
    defaults to the CPUs this process may run on)."""
    if cores is None:
        cores = available_cores()
    return max(1, cores // max(1, local_world_size))


def reproducible_blas() -> None:
    """Ask Intel MKL for *strict* conditional numerical reproducibility (``MKL_CBWR=AUTO,STRICT``).

    Without it, MKL's float32 matrix products with long inner dimensions (e.g. ``[1000, 784] @ [784, 100]``) split
    the work differently for 1 and 2 threads and round differently in the last bit, so a scan run as one process
    with 2 threads and as two processes with 1 thread each would disagree by ~1e-7. Strict CNR makes GEMM results
    independent of the thread count at no measurable cost. MKL reads the variable at its first call, so this must
    run before any matrix product in the process (the CLI calls it first); an existing setting is kept. Builds
    without MKL (OpenBLAS, Apple) ignore it: there, compare runs with the same ``--threads``.
    """
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")


def warm_up_serially(fn: Callable, *args) -> None:
    """Call ``fn(*args)`` once on a single intra-op thread and discard the result.

    oneMKL picks the kernel of each vector-math function (``exp``, ``log``, ``tanh``, ... which ATen routes to MKL
    VML for contiguous float tensors) lazily, at its first call. When several worker threads make that first call
    at once, one of them can run a low-accuracy kernel for its share of that single call (seen here under CPU
    contention: half of a ``logsumexp`` off by ~1e-5 relative, so the first grid point of a scan changed from run
    to run; pytorch/pytorch#188792, oneMKL 2024.2 as in the torch wheels). A first call on one thread settles the
    choice for the whole process, so every later parallel call is exact and repeatable.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fn(*args)
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------- the split
def chunk_bounds(n_points: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each chunk of ``chunk`` consecutive points (the last may be shorter); chunk id = index."""
    if not isinstance(n_points, int) or n_points < 1 or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"n_points and chunk must be positive ints, got {n_points!r}, {chunk!r}")
    return [(start, min(start + chunk, n_points)) for start in range(0, n_points, chunk)]


def assign_rounds(todo: Sequence[int], world_size: int, rank: int) -> list[int | None]:
    """The chunk ids rank ``rank`` evaluates, one per round: ``todo[r * world_size + rank]`` in round ``r``
    (``None`` when the last round has fewer chunks than ranks). Every rank gets the same number of rounds."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank} of {world_size}")
    todo = list(todo)
    rounds = -(-len(todo) // world_size)
    return [todo[i] if (i := r * world_size + rank) < len(todo) else None for r in range(rounds)]


# ------------------------------------------------------------------------------------------------- collectives
def broadcast(ctx: Context, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    return _all_gather(ctx, obj if ctx.is_main else None)[0]


def _wait(work) -> None:
    """Wait for a collective and keep its handle (and so its tensors) alive until :func:`teardown`."""
    work.wait()
    _IN_FLIGHT.append(work)


def _all_gather(ctx: Context, obj: Any) -> list:
    """Every rank's picklable ``obj``, in rank order (``dist.all_gather_object``, with the handles kept)."""
    if ctx.backend is None:
        return [obj]
    dev = ctx.device if ctx.backend == "nccl" else torch.device("cpu")
    data = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8).to(dev)
    sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(ctx.world_size)]
    _wait(dist.all_gather(sizes, torch.tensor([len(data)], dtype=torch.int64, device=dev), async_op=True))
    longest = max(int(size.item()) for size in sizes)
    mine = torch.zeros(longest, dtype=torch.uint8, device=dev)
    mine[:len(data)] = data
    out = [torch.empty(longest, dtype=torch.uint8, device=dev) for _ in range(ctx.world_size)]
    _wait(dist.all_gather(out, mine, async_op=True))
    return [pickle.loads(t[:int(size.item())].cpu().numpy().tobytes()) for t, size in zip(out, sizes)]


def check_same(ctx: Context, value: Any, what: str) -> None:
    """Raise ``RuntimeError`` on every rank unless all ranks hold the same ``value`` (e.g. a hash)."""
    values = _all_gather(ctx, value)
    if any(v != values[0] for v in values):
        raise RuntimeError(f"ranks disagree on {what}: " + ", ".join(f"rank {r}: {v}" for r, v in enumerate(values)))


def gather_chunks(ctx: Context, chunk_id: int | None, loss: np.ndarray | None, acc: np.ndarray | None
                  ) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Every rank's ``(chunk_id, loss, acc)`` of this round (ranks without a chunk pass ``None``s), in rank
    order. float64 arrays travel pickled, so their bits arrive unchanged. All ranks receive the list (an
    all-gather: it works the same on gloo and nccl); only rank 0 uses it."""
    mine = None if chunk_id is None else (int(chunk_id), np.asarray(loss, np.float64), np.asarray(acc, np.float64))
    return [item for item in _all_gather(ctx, mine) if item is not None]


# ------------------------------------------------------------------------------------------------- resume file
def atomic_write(path: str | os.PathLike, write: Callable) -> Path:
    """``write(f)`` into a temporary file next to ``path``, then ``os.replace`` it onto ``path``: readers (and a
    resumed run) see the old file or the new one, never half of one, even if the process is killed while
    writing. The temporary name is unique (``<name>.<16 hex digits>.tmp``), so two processes writing the same
    file at once (two notebooks filling one data cache) never write into each other's temporary; it is removed if
    ``write`` or the replace fails in any way (``KeyboardInterrupt`` included). Only a killed process (SIGKILL,
    power loss) leaves one behind: after each successful write, temporaries of ``path`` that nobody has modified
    for ``STALE_TMP`` seconds (an hour; a live writer keeps touching its own) are removed too."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:16]}.tmp")
    try:
        with open(tmp, "xb") as f:                  # exclusive create, usual permissions (umask)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)                 # gone after the replace; what a failed write left otherwise
    _remove_stale_temporaries(path)
    return path


def _remove_stale_temporaries(path: Path) -> None:
    """Delete ``<path>.<16 hex digits>.tmp`` files unmodified for ``STALE_TMP`` seconds (left by killed writes)."""
    now = time.time()
    for tmp in path.parent.glob(glob.escape(path.name) + "." + "?" * 16 + ".tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_TMP:
                tmp.unlink()
        except OSError:                             # removed meanwhile by another process, or not ours to remove
            pass


def atomic_savez(path: str | os.PathLike, **arrays) -> None:
    """``np.savez(path, **arrays)`` written atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


class PartialResult:
    """The chunks of a scan finished so far, kept in memory and mirrored in ``path`` (an ``.npz``).

    The file holds ``header`` (JSON: everything that defines the values, e.g. model hash, seed, grid, range,
    n-eval, norm, chunk size), ``done`` (bool ``[n_chunks]``) and ``loss``/``acc`` (float64 ``[n_points]``, NaN
    where not done). It does not record how many processes made it, so a run may resume with another world size.
    """

    def __init__(self, path: str | os.PathLike, header: dict, n_points: int, chunk: int):
        self.path = Path(path)
        self.header = json.loads(json.dumps(header, sort_keys=True))    # as it reads back (tuples -> lists)
        self.bounds = chunk_bounds(n_points, chunk)
        self.done = np.zeros(len(self.bounds), dtype=bool)
        self.loss = np.full(n_points, np.nan)
        self.acc = np.full(n_points, np.nan)

    @classmethod
    def open(cls, path: str | os.PathLike, header: dict, n_points: int, chunk: int,
             restart: bool = False) -> "PartialResult":
        """A fresh record, or the one in ``path`` when it exists and its header equals ``header``.

        A file from a different scan raises ``ValueError`` naming the differing fields (``restart=True`` discards
        it instead); an unreadable one raises ``ValueError`` too.
        """
        part = cls(path, header, n_points, chunk)
        if part.path.exists() and restart:
            part.path.unlink()
        if not part.path.exists():
            return part
        try:
            with np.load(part.path, allow_pickle=False) as z:
                saved = json.loads(str(z["header"]))
                done, loss, acc = z["done"], z["loss"], z["acc"]
        except Exception as err:
            raise ValueError(f"cannot read the partial results {part.path} ({type(err).__name__}: {err}); "
                             "rerun with --restart to discard them") from None
        if saved != part.header:
            diff = [f"{k}: {saved.get(k)!r} there, {part.header.get(k)!r} now"
                    for k in sorted(set(saved) | set(part.header)) if saved.get(k) != part.header.get(k)]
            raise ValueError(f"the partial results in {part.path} belong to a different scan ({'; '.join(diff)}); "
                             "rerun with --restart to discard them, or choose another --out")
        if done.shape != part.done.shape or loss.shape != part.loss.shape or acc.shape != part.acc.shape:
            raise ValueError(f"the partial results in {part.path} have the wrong sizes; rerun with --restart")
        part.done[:], part.loss[:], part.acc[:] = done, loss, acc
        return part

    def todo(self) -> list[int]:
        """Ids of the chunks not done yet, ascending."""
        return [int(i) for i in np.flatnonzero(~self.done)]

    def record(self, chunk_id: int, loss: np.ndarray, acc: np.ndarray) -> None:
        """Store the values of one chunk (in memory; :meth:`save` writes the file)."""
        start, stop = self.bounds[chunk_id]
        if len(loss) != stop - start or len(acc) != stop - start:
            raise ValueError(f"chunk {chunk_id} has {stop - start} points, got {len(loss)} and {len(acc)} values")
        self.loss[start:stop], self.acc[start:stop] = loss, acc
        self.done[chunk_id] = True

    def save(self) -> None:
        """Write the record atomically."""
        atomic_savez(self.path, header=np.array(json.dumps(self.header, sort_keys=True)), done=self.done,
                     loss=self.loss, acc=self.acc)

    def remove(self) -> None:
        """Delete the file (and temporaries left by killed writes), once the final result is safe."""
        self.path.unlink(missing_ok=True)
        for tmp in self.path.parent.glob(glob.escape(self.path.name) + ".*.tmp"):
            tmp.unlink(missing_ok=True)
