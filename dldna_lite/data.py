"""Fashion-MNIST as in-memory tensors, found offline.

Search order for the raw idx files (``train-images-idx3-ubyte.gz`` ...):

1. ``$DLDNA_DATA_DIR`` (the files themselves, or a ``FashionMNIST/raw`` / ``fashion-mnist`` folder inside it);
2. ``/usr/share/datasets/fashion-mnist`` (Debian's package ``dataset-fashion-mnist``);
3. torchvision's download into the cache folder.

The decoded arrays are cached as ``.npz`` under ``$DLDNA_CACHE_DIR`` (default ``~/.cache/dldna_lite``), so a second
load takes a few tens of milliseconds. Batches are slices of the in-memory tensors with a seeded permutation:
no ``DataLoader``, no per-sample Python.

A damaged source (a truncated ``.gz``, idx data shorter than its header says, labels outside 0..9) is skipped with a
``RuntimeWarning`` naming the file, and the next source is tried; when none is left, one ``RuntimeError`` names the
damaged files and how to replace them. A cache file that does not hold Fashion-MNIST raises ``ValueError`` saying
to delete it. :func:`check_data` and :func:`positive_int` are the argument checks the package shares: every
function that takes ``data = (X, y)`` or a size calls them.
"""
from __future__ import annotations

import gzip
import math
import numbers
import os
import shutil
import warnings
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .distributed import atomic_write

SPLITS = ("train", "test")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Mean and standard deviation of the Fashion-MNIST training pixels (in [0, 1]).
MEAN, STD = 0.2860, 0.3530
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_HOW_TO_FIX = (
    "Fashion-MNIST was not found. Fix it in one of three ways:\n"
    "  1. Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` (files land in /usr/share/datasets/fashion-mnist);\n"
    "  2. put the four idx files (train-images-idx3-ubyte.gz, ...) in a folder and set DLDNA_DATA_DIR to it;\n"
    "  3. connect to the internet so torchvision can download them."
)


#: What reading a damaged gzip file raises (truncated: EOFError; not gzip: BadGzipFile; corrupt: zlib.error).
_DAMAGED = (EOFError, gzip.BadGzipFile, zlib.error)
_REPLACE = ("delete it and download it again (or, for /usr/share/datasets/fashion-mnist, reinstall it: "
            "`sudo apt-get install --reinstall dataset-fashion-mnist`)")


def positive_int(name: str, value, *, allow_none: bool = False) -> int | None:
    """``int(value)``; ``ValueError`` unless it is an integer >= 1 (numpy integers too, not a ``bool``), or
    ``None`` with ``allow_none``. The one check of a size, count or period argument in the package."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"invalid {name}: {value!r} (expected a positive int{' or None' if allow_none else ''}, "
                         f"e.g. {name}=10)")
    return int(value)


def check_data(data, name: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """``data`` as ``(X, y)``; ``ValueError`` explaining the ``data=(X, y)`` convention unless it is a pair of
    tensors with as many rows each (at least one): a tensor alone, a ``DataLoader``, a dict, numpy arrays, ..."""
    how = (f"pass {name}=(X, y), the inputs and the targets as two tensors with one row per example (a "
           "DataLoader: X, y = map(torch.cat, zip(*loader)) first)")
    if torch.is_tensor(data):
        raise ValueError(f"{name} is one tensor of shape {tuple(data.shape)}, not the pair (X, y); {how}")
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        got = f"a {type(data).__name__}" + (f" of {len(data)} items" if isinstance(data, (tuple, list)) else "")
        raise ValueError(f"{name} must be the pair (X, y), got {got}; {how}")
    X, y = data
    if not (torch.is_tensor(X) and torch.is_tensor(y)):
        raise ValueError(f"{name} must hold two tensors, got ({type(X).__name__}, {type(y).__name__}); convert "
                         f"with torch.as_tensor; {how}")
    if X.dim() == 0 or y.dim() == 0 or len(X) != len(y) or len(X) == 0:
        shapes = f"X {tuple(X.shape)}, y {tuple(y.shape)}"
        raise ValueError(f"{name}=(X, y) needs as many rows in X as in y, at least one ({shapes}); {how}")
    return X, y


def cache_dir() -> Path:
    """Folder for decoded arrays and downloads (``$DLDNA_CACHE_DIR`` or ``~/.cache/dldna_lite``)."""
    return Path(os.environ.get("DLDNA_CACHE_DIR", Path.home() / ".cache" / "dldna_lite"))


def _idx_shape(raw: bytes, path: Path) -> tuple[int, ...]:
    """The shape an idx file announces in its header; ``RuntimeError`` naming ``path`` if the header is not one or
    the data that follow are not exactly that many bytes (a truncated file)."""
    magic = int.from_bytes(raw[:4], "big")
    if len(raw) < 4 or magic >> 8 != 0x08:  # 0x08 = unsigned byte data
        raise RuntimeError(f"{path} is not an unsigned-byte idx file (magic {magic:#x}); {_REPLACE}")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != 4 + 4 * ndim + math.prod(shape):
        raise RuntimeError(f"{path} holds {len(raw)} bytes but its header announces {4 + 4 * ndim + math.prod(shape)} "
                           f"(shape {shape}): it is truncated or damaged; {_REPLACE}")
    return shape


def _read_idx(path: Path) -> np.ndarray:
    """Decode one idx file (gzipped or not) into a uint8 array, shape from its header; ``RuntimeError`` naming the
    file and the fix when it is damaged (truncated gzip stream, short data, not an idx file)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except _DAMAGED as err:
        raise RuntimeError(f"{path} is damaged ({type(err).__name__}: {err}); {_REPLACE}") from None
    shape = _idx_shape(raw, path)
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=4 + 4 * len(shape)).reshape(shape)


def _array_problem(images: np.ndarray, labels: np.ndarray) -> str | None:
    """What is wrong with ``(images, labels)`` as Fashion-MNIST (``uint8 [N, 28, 28]``, labels ``[N]`` in 0..9),
    or ``None``."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) == 0:
        return f"images are {images.dtype} {images.shape}, not uint8 [N, 28, 28]"
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        return f"labels are {labels.dtype} {labels.shape} for {len(images)} images"
    if labels.min() < 0 or labels.max() >= len(CLASSES):
        return f"labels run from {labels.min()} to {labels.max()}, not 0..{len(CLASSES) - 1}"
    return None


def _find_in(folder: Path, split: str) -> tuple[Path, Path] | None:
    """The (images, labels) paths of ``split`` in ``folder`` or its usual sub-folders, if all are there."""
    for sub in (folder, folder / "FashionMNIST" / "raw", folder / "fashion-mnist"):
        found = []
        for stem in _FILES[split]:
            hits = [sub / (stem + ext) for ext in (".gz", "") if (sub / (stem + ext)).is_file()]
            if not hits:
                break
            found.append(hits[0])
        if len(found) == 2:
            return found[0], found[1]
    return None


def candidate_dirs() -> list[Path]:
    """The folders searched, in order."""
    dirs = []
    if os.environ.get("DLDNA_DATA_DIR"):
        dirs.append(Path(os.environ["DLDNA_DATA_DIR"]).expanduser())
    dirs.append(DEBIAN_DIR)
    return dirs


def _download_with_torchvision(split: str) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.datasets import FashionMNIST  # imported late: only this fallback needs it

    ds = FashionMNIST(root=str(cache_dir() / "torchvision"), train=(split == "train"), download=True)
    return ds.data.numpy(), ds.targets.numpy().astype(np.uint8)


def _sources(split: str) -> list[tuple[Path, Path]]:
    """The (images, labels) paths of ``split`` in every searched folder that has them, in search order."""
    return [paths for paths in (_find_in(folder, split) for folder in candidate_dirs()) if paths]


def _no_source(split: str, damaged: list[str], err: Exception | None = None) -> Exception:
    """The one error when no source of ``split`` could be used: ``RuntimeError`` listing the damaged files (and
    their fix) if some were found, else ``FileNotFoundError`` with the three ways to get the data."""
    failed = f"download failed: {type(err).__name__}: {err}" if err is not None else "no download attempted"
    if damaged:
        return RuntimeError(f"no readable copy of the Fashion-MNIST {split} split:\n  " + "\n  ".join(damaged)
                            + f"\n({failed})")
    return FileNotFoundError(f"{_HOW_TO_FIX}\n(searched: {', '.join(map(str, candidate_dirs()))}; {failed})")


def _skip(err: Exception, damaged: list[str]) -> None:
    damaged.append(str(err))
    warnings.warn(f"{err}. Trying the next source of Fashion-MNIST.", RuntimeWarning, stacklevel=3)


def _read_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``split`` from the first source that reads whole (damaged ones are skipped with a warning), else from
    torchvision's download, else :func:`_no_source`'s error."""
    damaged: list[str] = []
    for paths in _sources(split):
        try:
            images, labels = _read_idx(paths[0]), _read_idx(paths[1])
            problem = _array_problem(images, labels)
            if problem:
                raise RuntimeError(f"{paths[0]} and {paths[1]} are not Fashion-MNIST ({problem}); {_REPLACE}")
            return images, labels
        except RuntimeError as err:
            _skip(err, damaged)
    try:
        return _download_with_torchvision(split)
    except Exception as err:  # no network, no torchvision, ...
        raise _no_source(split, damaged, err) from None


def _read_cache(cached: Path) -> tuple[np.ndarray, np.ndarray]:
    """The arrays of the cache file; ``ValueError`` saying to delete it when it is not a whole Fashion-MNIST."""
    fix = f"delete it (rm {cached}) and load again: it is rebuilt from the idx files"
    try:
        with np.load(cached, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
    except Exception as err:          # truncated or overwritten file, not an npz, keys missing, ...
        raise ValueError(f"the Fashion-MNIST cache file {cached} is corrupt ({type(err).__name__}: {err}); "
                         f"{fix}") from None
    problem = _array_problem(images, labels)
    if problem:
        raise ValueError(f"the Fashion-MNIST cache file {cached} holds unexpected arrays ({problem}); {fix}")
    return images, labels


def load_raw(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [N, 28, 28]`` and labels ``uint8 [N]`` of one split, from the cache or the search order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    cached = cache_dir() / f"fashion_mnist_{split}.npz"
    if cached.is_file():
        return _read_cache(cached)
    images, labels = _read_split(split)
    problem = _array_problem(images, labels)
    if problem:
        raise RuntimeError(f"the Fashion-MNIST {split} split read is not Fashion-MNIST ({problem})")
    cached.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(cached, lambda f: np.savez(f, images=images, labels=labels))
    return images, labels


def load_fashion_mnist(split: str = "train", *, limit: int | None = None, flatten: bool = False,
                       device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST as normalised tensors, already on ``device`` (default: the CPU; pass ``dl.device()`` or the
    model's device to train on a GPU without copying a batch at a time).

    Returns ``X`` float32 ``[N, 1, 28, 28]`` (or ``[N, 784]`` with ``flatten=True``), standardised with the
    training mean/std, and ``y`` int64 ``[N]``. ``limit`` keeps the first ``limit`` examples.
    """
    limit = positive_int("limit", limit, allow_none=True)
    images, labels = load_raw(split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    X = torch.from_numpy(images).to(torch.float32).mul_(1 / 255).sub_(MEAN).div_(STD)  # in place: one allocation
    X = X.reshape(len(X), -1) if flatten else X.unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return X.to(device), y.to(device)


def batches(X: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = True,
            generator: torch.Generator | None = None, drop_last: bool = False
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Minibatches ``(X[idx], y[idx])`` sliced from in-memory tensors.

    With ``shuffle`` the order is one ``torch.randperm`` drawn from ``generator`` (seeded: same order every run).
    """
    batch_size = positive_int("batch_size", batch_size)
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    n = len(X)
    order = torch.randperm(n, generator=generator).to(X.device) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield X[start:start + batch_size], y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield X[idx], y[idx]


def _complete_idx(path: Path) -> bool:
    """Whether ``path`` is an uncompressed idx file exactly as long as its header says (a copy cut short is not)."""
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        magic = int.from_bytes(f.read(4), "big")
        shape = [int.from_bytes(f.read(4), "big") for _ in range(magic & 0xFF)]
    return magic >> 8 == 0x08 and path.stat().st_size == 4 + 4 * len(shape) + math.prod(shape)


def _copy_idx(src: Path, dst: Path) -> None:
    """``src`` gunzipped (if ``.gz``) into ``dst`` through a temporary file and ``os.replace``
    (:func:`~dldna_lite.distributed.atomic_write`); ``RuntimeError`` naming ``src`` if it is damaged."""
    opener = gzip.open if src.suffix == ".gz" else open

    def write(f):
        with opener(src, "rb") as fin:
            shutil.copyfileobj(fin, f)

    try:
        atomic_write(dst, write)
    except _DAMAGED as err:
        raise RuntimeError(f"{src} is damaged ({type(err).__name__}: {err}); {_REPLACE}") from None
    if not _complete_idx(dst):                           # an uncompressed source cut short copies without error
        dst.unlink()
        raise RuntimeError(f"{src} is shorter (or longer) than its idx header says: truncated or damaged; {_REPLACE}")


def torchvision_root(root: str | os.PathLike | None = None) -> Path:
    """A folder that ``torchvision.datasets.FashionMNIST(root, download=False)`` accepts.

    Debian ships the idx files recompressed, so their checksums differ from torchvision's and its download check
    rejects them; gunzipped copies in ``<root>/FashionMNIST/raw`` are read as they are. Each copy is written to a
    temporary file and renamed, and a copy whose size does not match its header (cut short by an older version or
    a full disk) is made again; a damaged source is skipped with a warning, as in :func:`load_raw`.
    """
    root = Path(root) if root is not None else cache_dir() / "torchvision"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        if all(_complete_idx(raw / stem) for stem in _FILES[split]):
            continue
        damaged: list[str] = []
        for paths in _sources(split):
            try:
                for src, stem in zip(paths, _FILES[split]):
                    _copy_idx(src, raw / stem)
                break
            except RuntimeError as err:
                _skip(err, damaged)
        else:
            raise _no_source(split, damaged)
    return root


def cache_all() -> None:
    """Find, decode and cache both splits, saying where they are (``make`` runs this once during set-up)."""
    for split in SPLITS:
        images, _ = load_raw(split)
        print(f"Fashion-MNIST {split}: {len(images)} images cached in {cache_dir()}")


if __name__ == "__main__":
    cache_all()
