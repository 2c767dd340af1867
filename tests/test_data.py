import gzip
import struct

import numpy as np
import pytest
import torch

from dldna_lite import data


def test_shapes_dtypes_and_normalisation():
    X, y = data.load_fashion_mnist("train")
    assert X.shape == (60000, 1, 28, 28) and X.dtype == torch.float32
    assert y.shape == (60000,) and y.dtype == torch.long
    assert abs(X.mean().item()) < 0.01 and abs(X.std().item() - 1) < 0.01  # standardised with train stats
    assert set(y.unique().tolist()) == set(range(10))
    assert torch.bincount(y).tolist() == [6000] * 10  # Fashion-MNIST is balanced
    Xt, yt = data.load_fashion_mnist("test", limit=100, flatten=True)
    assert Xt.shape == (100, 784) and yt.shape == (100,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="train, test"):
        data.load_fashion_mnist("validation")
    with pytest.raises(ValueError, match="limit"):
        data.load_fashion_mnist("test", limit=0)
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(torch.zeros(4, 2), torch.zeros(4), batch_size=0))


def _write_idx(path, array):
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", n) for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No cache, no Debian folder, no download: only what a test puts in DLDNA_DATA_DIR."""
    monkeypatch.setenv("DLDNA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")

    def no_network(split):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_download_with_torchvision", no_network)
    return tmp_path


def test_reads_idx_files_from_data_dir_and_caches(isolated, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28))
    labels = rng.integers(0, 10, size=7)
    folder = isolated / "fm"
    folder.mkdir()
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("DLDNA_DATA_DIR", str(folder))
    X, y = data.load_fashion_mnist("test")
    np.testing.assert_allclose(X[:, 0].numpy(), (images / 255 - data.MEAN) / data.STD, rtol=1e-5, atol=1e-5)
    assert y.tolist() == labels.tolist()
    assert (isolated / "cache" / "fashion_mnist_test.npz").is_file()
    # a second load is served from the cache even when the source is gone
    for f in folder.iterdir():
        f.unlink()
    assert data.load_fashion_mnist("test")[1].tolist() == labels.tolist()


def test_nothing_found_gives_one_clear_error(isolated, monkeypatch):
    monkeypatch.setenv("DLDNA_DATA_DIR", str(isolated / "empty"))
    with pytest.raises(FileNotFoundError) as err:
        data.load_fashion_mnist("train")
    message = str(err.value)
    for fix in ("apt-get install dataset-fashion-mnist", "DLDNA_DATA_DIR", "torchvision can download"):
        assert fix in message


def test_batches_cover_every_row_once_in_a_seeded_order():
    X = torch.arange(10).float().unsqueeze(1)
    y = torch.arange(10)
    order1 = torch.cat([yb for _, yb in data.batches(X, y, 3, generator=torch.Generator().manual_seed(1))])
    order2 = torch.cat([yb for _, yb in data.batches(X, y, 3, generator=torch.Generator().manual_seed(1))])
    assert sorted(order1.tolist()) == list(range(10)) and torch.equal(order1, order2)
    assert [len(b[1]) for b in data.batches(X, y, 3, shuffle=False)] == [3, 3, 3, 1]
    assert [len(b[1]) for b in data.batches(X, y, 3, drop_last=True)] == [3, 3, 3]
    for xb, yb in data.batches(X, y, 4, generator=torch.Generator().manual_seed(2)):
        assert torch.equal(xb[:, 0].long(), yb)  # rows stay paired with their labels


def test_torchvision_root_makes_the_debian_files_readable(tmp_path):
    from torchvision.datasets import FashionMNIST

    root = data.torchvision_root(tmp_path)
    ds = FashionMNIST(str(root), train=False, download=False)
    raw_images, raw_labels = data.load_raw("test")
    assert len(ds) == 10000 and torch.equal(ds.targets, torch.from_numpy(raw_labels.astype(np.int64)))


def test_a_corrupt_cache_says_to_delete_it_and_the_cache_is_written_atomically(isolated, monkeypatch):
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, size=(5, 28, 28)), rng.integers(0, 10, size=5)
    folder = isolated / "fm"
    folder.mkdir()
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("DLDNA_DATA_DIR", str(folder))
    writes = []
    real = data.atomic_write

    def spy(path, write):
        writes.append(path)
        return real(path, write)

    monkeypatch.setattr(data, "atomic_write", spy)            # the one atomic writer (unique temporary name)
    data.load_fashion_mnist("test")
    cached = isolated / "cache" / "fashion_mnist_test.npz"
    assert writes == [cached] and sorted(p.name for p in cached.parent.iterdir()) == [cached.name]
    for corrupt in (cached.read_bytes()[:200], b"not an npz at all"):   # truncated by a crash; overwritten
        cached.write_bytes(corrupt)
        with pytest.raises(ValueError, match=f"cache file {cached} is corrupt.*delete it"):
            data.load_fashion_mnist("test")
    np.savez(cached, images=np.zeros((3, 2), dtype=np.float32), labels=np.zeros(3))
    with pytest.raises(ValueError, match="unexpected arrays.*delete it"):
        data.load_fashion_mnist("test")
    cached.unlink()                                           # what the message says to do
    assert data.load_fashion_mnist("test")[1].tolist() == labels.tolist()
