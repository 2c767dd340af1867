"""One clear error for every mistake a reader makes (issue 26), and no half-written data files.

Each test asserts the exception's type and that its message names the argument (or file) and the fix.
"""
import gzip
import math
import struct

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dldna_lite import data, hessian, init, optim, surfaces
from dldna_lite.hessian import krylov
from dldna_lite.landscape import directions, engine
from dldna_lite.optim import compare, large


# ------------------------------------------------------------------------------------------------ data files
def _idx_bytes(array):
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_split(folder, split, n=6, seed=0, labels=None):
    """Small idx.gz files of ``split`` in ``folder``; returns the labels written."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n) if labels is None else np.asarray(labels)
    folder.mkdir(parents=True, exist_ok=True)
    stems = data._FILES[split]
    for stem, array in zip(stems, (rng.integers(0, 256, size=(len(labels), 28, 28)), labels)):
        with gzip.open(folder / f"{stem}.gz", "wb") as f:
            f.write(_idx_bytes(array))
    return labels


def _truncate(path, keep=0.5):
    path.write_bytes(path.read_bytes()[:int(len(path.read_bytes()) * keep)])


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No cache, no download; DLDNA_DATA_DIR = tmp/first, the Debian folder = tmp/second (both empty)."""
    monkeypatch.setenv("DLDNA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DLDNA_DATA_DIR", str(tmp_path / "first"))
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "second")

    def no_network(split):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_download_with_torchvision", no_network)
    return tmp_path


def test_truncated_gz_names_the_file_and_the_fix(isolated):
    _write_split(isolated / "first", "test")
    bad = isolated / "first" / "t10k-images-idx3-ubyte.gz"
    _truncate(bad)
    with pytest.warns(RuntimeWarning, match="next source"):
        with pytest.raises(RuntimeError) as err:
            data.load_fashion_mnist("test")
    assert str(bad) in str(err.value) and "delete it and download it again" in str(err.value)
    assert not (isolated / "cache" / "fashion_mnist_test.npz").exists()      # nothing half-written cached


def test_truncated_gz_falls_back_to_the_next_source_with_a_warning(isolated):
    _write_split(isolated / "first", "test", seed=1)
    good = _write_split(isolated / "second", "test", seed=2)
    _truncate(isolated / "first" / "t10k-labels-idx1-ubyte.gz", keep=0.9)
    with pytest.warns(RuntimeWarning, match=r"t10k-labels-idx1-ubyte.gz is (damaged|shorter).*next source"):
        _, y = data.load_fashion_mnist("test")
    assert y.tolist() == good.tolist()


def test_idx_files_with_labels_out_of_range_are_not_fashion_mnist(isolated):
    _write_split(isolated / "first", "test", labels=[0, 3, 11])
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match=r"labels run from 0 to 11, not 0\.\.9"
                                                                          r".*delete it"):
        data.load_fashion_mnist("test")


@pytest.mark.parametrize("images,labels,problem", [
    (np.zeros((3, 28, 28), np.uint8), np.array([0, 5, 12], np.uint8), r"labels run from 0 to 12"),
    (np.zeros((3, 28, 28), np.uint8), np.array([0, 5, -1]), r"labels run from -1 to 5"),
    (np.zeros((3, 27, 28), np.uint8), np.zeros(3, np.uint8), r"not uint8 \[N, 28, 28\]"),
    (np.zeros((3, 28, 28), np.float32), np.zeros(3, np.uint8), r"not uint8 \[N, 28, 28\]"),
    (np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.float32), r"labels are float32"),
], ids=["labels>9", "labels<0", "shape", "image-dtype", "label-dtype"])
def test_a_cache_out_of_range_names_the_file_and_says_to_delete_it(isolated, images, labels, problem):
    cached = isolated / "cache" / "fashion_mnist_test.npz"
    cached.parent.mkdir()
    np.savez(cached, images=images, labels=labels)
    with pytest.raises(ValueError, match=problem) as err:
        data.load_fashion_mnist("test")
    assert str(cached) in str(err.value) and f"delete it (rm {cached})" in str(err.value)


def _both_splits(folder):
    return {split: _write_split(folder, split, seed=i) for i, split in enumerate(data.SPLITS)}


def test_torchvision_root_copies_through_a_temporary_file(isolated, monkeypatch):
    _both_splits(isolated / "first")
    written = []
    real = data.atomic_write
    monkeypatch.setattr(data, "atomic_write", lambda path, write: written.append(path.name) or real(path, write))
    raw = data.torchvision_root(isolated / "tv") / "FashionMNIST" / "raw"
    assert sorted(written) == sorted(stem for split in data.SPLITS for stem in data._FILES[split])
    assert sorted(p.name for p in raw.iterdir()) == sorted(written)             # no temporary left over


def test_torchvision_root_redoes_a_truncated_copy(isolated):
    labels = _both_splits(isolated / "first")
    raw = data.torchvision_root(isolated / "tv") / "FashionMNIST" / "raw"
    whole = (raw / "train-images-idx3-ubyte").read_bytes()
    _truncate(raw / "train-images-idx3-ubyte")                                  # an old copy cut short by a crash
    data.torchvision_root(isolated / "tv")
    assert (raw / "train-images-idx3-ubyte").read_bytes() == whole
    assert data._read_idx(raw / "train-labels-idx1-ubyte").tolist() == labels["train"].tolist()


def test_torchvision_root_skips_a_damaged_source(isolated):
    _both_splits(isolated / "first")
    good = _both_splits(isolated / "second")
    _truncate(isolated / "first" / "t10k-images-idx3-ubyte.gz")
    with pytest.warns(RuntimeWarning, match="t10k-images-idx3-ubyte.gz.*next source"):
        raw = data.torchvision_root(isolated / "tv") / "FashionMNIST" / "raw"
    assert data._read_idx(raw / "t10k-labels-idx1-ubyte").tolist() == good["test"].tolist()
    assert data._complete_idx(raw / "t10k-images-idx3-ubyte")


# ------------------------------------------------------------------------------------------------ optimizers
BAD = [  # optimizer, keyword, value, exception, fix named in the message
    ("SGD", "momentum", 1.5, ValueError, r"momentum.*\[0, 1\).*momentum=0\.9"),
    ("SGD", "momentum", -0.1, ValueError, r"momentum.*\[0, 1\)"),
    ("SGD", "dampening", math.nan, ValueError, r"dampening.*\[0, 1\]"),
    ("SGD", "dampening", 1.5, ValueError, r"dampening.*\[0, 1\]"),
    ("RMSprop", "alpha", 1.5, ValueError, r"alpha.*\[0, 1\).*alpha=0\.99"),
    ("RMSprop", "momentum", 1.0, ValueError, r"momentum.*\[0, 1\)"),
    ("Adam", "eps", 0.0, ValueError, r"eps.*\(0, inf\)"),
    ("Adam", "betas", (0.9,), ValueError, r"betas.*betas=\(0\.9, 0\.999\)"),
    ("Adam", "betas", (0.9, 1.0), ValueError, r"betas\[1\].*\[0, 1\)"),
    ("Adagrad", "lr_decay", -1.0, ValueError, r"lr_decay.*\[0, inf\)"),
    ("Adagrad", "initial_accumulator_value", math.inf, ValueError, r"initial_accumulator_value.*finite"),
    ("Adafactor", "beta2_decay", 0.5, ValueError, r"beta2_decay.*\(-inf, 0\]"),
    ("Adafactor", "d", 0.5, ValueError, r"\bd\b.*\[1, inf\]"),
    ("Adafactor", "eps", (0.0, 1e-3), ValueError, r"eps\[0\].*eps=\(None, 1e-3\)"),
    ("Lion", "betas", (1.2, 0.99), ValueError, r"betas\[0\].*\[0, 1\)"),
    ("Sophia", "rho", -1.0, ValueError, r"rho.*\[0, inf\)"),
    ("Sophia", "update_period", 0, ValueError, r"update_period.*positive int"),
    ("SGD", "lr", True, TypeError, r"lr.*bool, not a real number.*lr=0\.001"),
    ("Adam", "lr", "1e-3", TypeError, r"lr.*str, not a real number"),
    ("Adam", "amsgrad", 1, TypeError, r"amsgrad.*True or False.*amsgrad=True"),
    ("SGD", "nesterov", "yes", TypeError, r"nesterov.*True or False"),
]


@pytest.mark.parametrize("name,key,value,exc,fix", BAD, ids=[f"{b[0]}-{b[1]}={b[2]!r}" for b in BAD])
def test_every_hyperparameter_is_checked(name, key, value, exc, fix):
    with pytest.raises(exc, match=fix):
        optim.get(name)([nn.Parameter(torch.zeros(2))], **{key: value})


def test_nesterov_without_momentum_says_what_it_needs():
    with pytest.raises(ValueError, match=r"nesterov.*momentum > 0 and dampening=0"):
        optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.1, nesterov=True)


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_numpy_scalars_are_numbers_and_bools_are_not(name):
    params = [nn.Parameter(torch.zeros(2))]
    opt = optim.get(name)(params, lr=np.float32(0.01), weight_decay=np.int64(0))
    assert type(opt.defaults["lr"]) is float and opt.defaults["lr"] == float(np.float32(0.01))
    with pytest.raises(TypeError, match="lr"):
        optim.get(name)(params, lr=np.True_)


def test_a_numpy_learning_rate_steps_as_torch_does():
    ours = reference = None
    for make in (optim.SGD, torch.optim.SGD):
        p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
        opt = make([p], lr=np.float32(0.01) if make is optim.SGD else float(np.float32(0.01)), momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            (p ** 2).sum().backward()
            opt.step()
        ours, reference = (p.detach(), reference) if make is optim.SGD else (ours, p.detach())
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)


TORCH_REJECTS = [("SGD", "lr", -0.1), ("SGD", "momentum", -0.5), ("SGD", "weight_decay", -1.0),
                 ("Adagrad", "lr_decay", -1.0), ("Adagrad", "initial_accumulator_value", -1.0),
                 ("RMSprop", "alpha", -0.5), ("RMSprop", "eps", -1.0), ("Adam", "betas", (0.9, 1.0)),
                 ("AdamW", "eps", -1e-8), ("Adafactor", "beta2_decay", 0.1), ("Adafactor", "d", 0.5)]


@pytest.mark.parametrize("name,key,value", TORCH_REJECTS, ids=[f"{n}-{k}" for n, k, _ in TORCH_REJECTS])
def test_what_torch_rejects_we_reject(name, key, value):
    """Consistent with torch.optim: every value it rejects is rejected here too (and named)."""
    kwargs = {"lr": 0.01, key: value}
    with pytest.raises(ValueError):
        getattr(torch.optim, name)([nn.Parameter(torch.zeros(2))], **kwargs)
    with pytest.raises(ValueError, match=key):
        optim.get(name)([nn.Parameter(torch.zeros(2))], **kwargs)


def test_other_optimizer_arguments():
    with pytest.raises(ValueError, match=r"n_samples.*positive int"):
        optim.hutchinson_diagonal(torch.zeros((), requires_grad=True), [], n_samples=0)
    with pytest.raises(ValueError, match=r"unknown optimizer label 'adam'; choose one of SGD, SGD\+momentum"):
        compare.lr_grid("adam")
    with pytest.raises(ValueError, match=r"lrs is empty.*lrs=lr_grid"):
        compare.lr_sweep("SGD", [], None, None, None, 1)
    with pytest.raises(ValueError, match=r"limit.*positive int or None"):
        large.load_cifar100("test", limit=0)


# ------------------------------------------------------------------------------------------------ init
@pytest.mark.parametrize("module", [nn.ReLU(), nn.Sequential(nn.Tanh()), nn.LayerNorm(4)], ids=str)
def test_initialize_without_a_layer_to_initialize(module):
    with pytest.raises(ValueError, match=r"initialize found no nn.Linear/nn.Conv layer.*whole nn.Sequential"):
        init.initialize(module, "lecun")


def test_steps_to_target_window():
    with pytest.raises(ValueError, match=r"window.*positive int"):
        init.steps_to_target([1.0, 0.5], 0.6, window=0)


# ------------------------------------------------------------------------------------------------ (X, y) convention
@pytest.fixture
def tiny():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    X = torch.randn(8, 3, dtype=torch.float64)
    return model, X, torch.randint(0, 2, (8,))


CALLS = {
    "hvp": lambda m, d: hessian.hvp(m, d, [torch.zeros_like(p) for p in m.parameters()]),
    "top_eigenvalues": lambda m, d: hessian.top_eigenvalues(m, d),
    "hessian_trace": lambda m, d: hessian.hessian_trace(m, d),
    "eigen_density": lambda m, d: hessian.eigen_density(m, d),
    "exact_hessian": lambda m, d: hessian.exact_hessian(m, d),
    "hessian_directions": lambda m, d: directions.hessian_directions(m, d),
    "scan_1d": lambda m, d: engine.scan_1d(m, d, [torch.zeros_like(p) for p in m.parameters()], [0.0, 1.0]),
}


def _wrong_data(X, y):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=4)
    return {"X alone": (X, r"one tensor of shape \(8, 3\), not the pair \(X, y\)"),
            "DataLoader": (loader, r"got a DataLoader.*map\(torch.cat, zip\(\*loader\)\)"),
            "triple": ((X, y, y), r"got a tuple of 3 items"),
            "numpy": ((X.numpy(), y.numpy()), r"two tensors.*torch.as_tensor"),
            "rows": ((X, y[:5]), r"as many rows in X as in y")}


@pytest.mark.parametrize("kind", ["X alone", "DataLoader", "triple", "numpy", "rows"])
@pytest.mark.parametrize("call", list(CALLS))
def test_data_must_be_the_pair_x_y(tiny, call, kind):
    model, X, y = tiny
    wrong, why = _wrong_data(X, y)[kind]
    with pytest.raises(ValueError, match=why) as err:
        CALLS[call](model, wrong)
    assert "pass data=(X, y)" in str(err.value)


@pytest.mark.parametrize("kwargs,name", [(dict(batch=0), "batch"), (dict(batch=-3), "batch"),
                                         (dict(batch=True), "batch"), (dict(n_samples=0), "n_samples")])
def test_hessian_trace_sizes(tiny, kwargs, name):
    model, X, y = tiny
    with pytest.raises(ValueError, match=rf"invalid {name}: .*positive int, e.g. {name}="):
        hessian.hessian_trace(model, (X, y), **kwargs)


def test_other_hessian_sizes(tiny):
    model, X, y = tiny
    for kwargs, name in ((dict(n_iter=0), "n_iter"), (dict(grid_size=0), "grid_size"),
                         (dict(sigma=math.nan), "sigma")):
        with pytest.raises(ValueError, match=name):
            hessian.eigen_density(model, (X, y), **kwargs)
    with pytest.raises(ValueError, match=r"invalid sigma: -1\.0"):
        hessian.density_on_grid([0.0], [1.0], [0.0], -1.0)
    with pytest.raises(ValueError, match=r"n_iter.*positive int"):
        krylov.lanczos(lambda v: v, torch.ones(3), 0)


# ------------------------------------------------------------------------------------------------ scans and grids
def test_empty_grids(tiny):
    model, X, y = tiny
    d = [torch.zeros_like(p) for p in model.parameters()]
    for call, name in ((lambda: engine.scan_1d(model, (X, y), d, []), "alphas"),
                       (lambda: engine.scan_2d(model, (X, y), d, d, [], [0.0]), "xs"),
                       (lambda: engine.scan_2d(model, (X, y), d, d, [0.0], [[0.0]]), "ys"),
                       (lambda: engine.interpolate(model, (X, y), model, []), "alphas"),
                       (lambda: engine.scan_1d(model, (X, y), d, [0.0, math.nan]), "alphas")):
        with pytest.raises(ValueError, match=rf"{name} must be a non-empty 1-D sequence of finite numbers.*"
                                             rf"{name}=np.linspace"):
            call()
    with pytest.raises(ValueError, match=r"coords must have shape \[G, 1\].*G >= 1"):
        engine.evaluate_points(model, (X, y), [d], np.zeros((0, 1)))


def test_nonconvex_fraction_needs_an_even_grid():
    xs = np.array([-1.0, -0.5, 0.0, 1.0, 2.0])
    ys = np.linspace(-1, 1, 4)
    Z = xs[None] ** 2 + ys[:, None] ** 2
    with pytest.raises(ValueError, match=r"scan\['xs'\] must be evenly spaced.*np.linspace"):
        engine.nonconvex_fraction(dict(xs=xs, ys=ys, loss=Z))
    even = np.linspace(-1, 1, 5)
    assert engine.nonconvex_fraction(dict(xs=even, ys=ys, loss=even[None] ** 2 + ys[:, None] ** 2)) == 0.0
    with pytest.raises(ValueError, match=r"scan\['ys'\] must be evenly spaced"):
        engine.nonconvex_fraction(dict(xs=even, ys=np.zeros(4), loss=np.zeros((4, 5))))


def test_rescale_layers_rejects_nan(tiny):
    model = tiny[0]
    with pytest.raises(ValueError, match="c must be positive"):
        directions.rescale_layers(model, model[0], model[2], math.nan)


# ------------------------------------------------------------------------------------------------ toy surfaces
def test_surface_paths_and_grids():
    sgd = lambda params: optim.SGD(params, lr=1e-3)      # noqa: E731
    with pytest.raises(ValueError, match=r"invalid steps: -1.*steps=200"):
        surfaces.optimizer_path(surfaces.rosenbrock, sgd, (0.0, 0.0), -1)
    with pytest.raises(ValueError, match=r"invalid blowup: nan.*blowup=1e6"):
        surfaces.optimizer_path(surfaces.rosenbrock, sgd, (0.0, 0.0), 5, blowup=math.nan)
    assert len(surfaces.optimizer_path(surfaces.rosenbrock, sgd, (0.0, 0.0), np.int64(3))[0]) == 4
    with pytest.raises(ValueError, match=r"invalid n: 1.*n=120"):
        surfaces.surface("quadratic").grid(1)
