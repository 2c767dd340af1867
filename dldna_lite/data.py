"""Fashion-MNIST as in-memory tensors, found offline.

Search order for the raw idx files (``train-images-idx3-ubyte.gz`` ...):

1. ``$DLDNA_DATA_DIR`` (the files themselves, or a ``FashionMNIST/raw`` / ``fashion-mnist`` folder inside it);
2. ``/usr/share/datasets/fashion-mnist`` (Debian's package ``dataset-fashion-mnist``);
3. torchvision's download into the cache folder.

The decoded arrays are cached as ``.npz`` under ``$DLDNA_CACHE_DIR`` (default ``~/.cache/dldna_lite``), so a second
load takes a few tens of milliseconds. Batches are slices of the in-memory tensors with a seeded permutation:
no ``DataLoader``, no per-sample Python.
"""
from __future__ import annotations

import gzip
import os
import shutil
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


def cache_dir() -> Path:
    """Folder for decoded arrays and downloads (``$DLDNA_CACHE_DIR`` or ``~/.cache/dldna_lite``)."""
    return Path(os.environ.get("DLDNA_CACHE_DIR", Path.home() / ".cache" / "dldna_lite"))


def _read_idx(path: Path) -> np.ndarray:
    """Decode one idx file (gzipped or not) into a uint8 array, shape from its header."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte data
        raise ValueError(f"{path} is not an unsigned-byte idx file (magic {magic:#x})")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


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


def load_raw(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [N, 28, 28]`` and labels ``uint8 [N]`` of one split, from the cache or the search order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    cached = cache_dir() / f"fashion_mnist_{split}.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as z:
                images, labels = z["images"], z["labels"]
        except Exception as err:          # truncated or overwritten file, not an npz, keys missing, ...
            raise ValueError(f"the Fashion-MNIST cache file {cached} is corrupt ({type(err).__name__}: {err}); "
                             f"delete it (rm {cached}) and load again: it is rebuilt from the idx files") from None
        if images.dtype != np.uint8 or images.ndim != 3 or labels.shape != (len(images),):
            raise ValueError(f"the Fashion-MNIST cache file {cached} holds unexpected arrays (images "
                             f"{images.dtype} {images.shape}, labels {labels.shape}); delete it (rm {cached}) "
                             "and load again: it is rebuilt from the idx files")
        return images, labels
    for folder in candidate_dirs():
        paths = _find_in(folder, split)
        if paths:
            images, labels = _read_idx(paths[0]), _read_idx(paths[1])
            break
    else:
        try:
            images, labels = _download_with_torchvision(split)
        except Exception as err:  # no network, no torchvision, ...
            raise FileNotFoundError(f"{_HOW_TO_FIX}\n(searched: {', '.join(map(str, candidate_dirs()))}; "
                                    f"download failed: {err.__class__.__name__}: {err})") from None
    if len(images) != len(labels):
        raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels")
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
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
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
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
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


def torchvision_root(root: str | os.PathLike | None = None) -> Path:
    """A folder that ``torchvision.datasets.FashionMNIST(root, download=False)`` accepts.

    Debian ships the idx files recompressed, so their checksums differ from torchvision's and its download check
    rejects them; gunzipped copies in ``<root>/FashionMNIST/raw`` are read as they are.
    """
    root = Path(root) if root is not None else cache_dir() / "torchvision"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        if all((raw / stem).is_file() for stem in _FILES[split]):
            continue
        for folder in candidate_dirs():
            paths = _find_in(folder, split)
            if paths:
                break
        else:
            raise FileNotFoundError(_HOW_TO_FIX)
        for src, stem in zip(paths, _FILES[split]):
            opener = gzip.open if src.suffix == ".gz" else open
            with opener(src, "rb") as fin, open(raw / stem, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    return root


def cache_all() -> None:
    """Find, decode and cache both splits, saying where they are (``make`` runs this once during set-up)."""
    for split in SPLITS:
        images, _ = load_raw(split)
        print(f"Fashion-MNIST {split}: {len(images)} images cached in {cache_dir()}")


if __name__ == "__main__":
    cache_all()
