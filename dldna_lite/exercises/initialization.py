"""Checkers of ``exercises/01-initialization``: Xavier and Kaiming by hand, BatchNorm and a bad init, ``init.analyze``.

References: the variance formulas and a normality test (excess kurtosis, Kolmogorov–Smirnov distance) on the tensor
the student's initializer filled in place; a rerun of the BatchNorm recipe on the student's own network builder;
cached reruns of ``init.analyze`` for the methods in the student's rows.
"""
from __future__ import annotations

import copy
import math
from functools import lru_cache

import torch
from torch import nn
from torch.nn import functional as F

from .. import init
from ..config import seed_everything
from ..data import load_fashion_mnist
from ..train import train
from . import Fail, _call, _isolated_rng, _module, _need, _tensor, checker

# --------------------------------------------------------------------------------------------- the problems
#: Exercise 2: a deep MLP with a bad initialization, trained with and without BatchNorm.
BATCHNORM_SETUP = dict(depth=10, width=128, init_std=0.01, lr=0.1, epochs=2, batch_size=128, train_limit=4000, seed=0)
#: Exercise 3: ``init.analyze`` on the first ``train_limit`` training and ``test_limit`` test images (flattened) for
#: ``epochs`` epochs, with target loss :data:`INIT_TARGET_LOSS`. Fixed sizes (not the profile's): the check reruns
#: ``init.analyze`` for the student's methods, under a second per method.
INIT_EXPERIMENT = dict(train_limit=4000, test_limit=1000, epochs=2)
INIT_TARGET_LOSS = 0.8

# --------------------------------------------------------------------------------------------- 1. Xavier and Kaiming
#: Shapes ``[fan_out, fan_in]`` the initializers are tried on: wide and tall, so that the fans cannot be confused.
INIT_SHAPES = ((300, 1200), (1200, 300))
# Tolerances on n = 360 000 entries, from torch's own normal_ over 20 seeds × both shapes: |Var/target − 1| ≤ 0.56%
# (theory: sd √(2/n) = 0.24%), |excess kurtosis| ≤ 0.014 (sd √(24/n) = 0.008), KS distance of the standardised
# entries from N(0, 1) ≤ 0.0016. The bounds below sit 3-5× above those maxima and far below the wrong answers:
# uniform noise of the right variance has kurtosis −1.2 and KS 0.058, a ±2σ truncated normal −0.63 and 0.017,
# Laplace +3.1 and 0.063, Student-t(5) +4.6 and 0.039; a fan_in/fan_out mix-up is off by 300%.
VAR_TOL = 0.03
KURTOSIS_TOL = 0.06
KS_TOL = 0.005
# Independence, by the spectrum: for W [p, n] (p ≤ n) with i.i.d. entries, S = W Wᵀ has p·tr(S²)/tr(S)² = 1 + (p + 1)/n
# in expectation (Marchenko–Pastur's second moment; 1.2508 for [300, 1200]); a scaled (semi-)orthogonal matrix, whose
# singular values are all equal, has exactly 1.0, although its entries pass the normality tests. Measured on torch's
# normal_ over 20 seeds × both shapes: |deviation| ≤ 0.0044 (sd 0.0014); the bound 0.02 rejects an orthogonal matrix
# (−0.25), one mixed half and half with a Gaussian one (−0.06), and repeated rows (+ several).
SPECTRUM_TOL = 0.02


def _shape_stats(W: torch.Tensor) -> tuple[float, float]:
    """Excess kurtosis and Kolmogorov–Smirnov distance to N(0, 1) of the standardised entries of ``W``."""
    w = W.double().flatten()
    z, n = (w - w.mean()) / w.std(), w.numel()
    kurtosis = (z ** 4).mean().item() - 3
    cdf = 0.5 * (1 + torch.erf(z.sort().values / math.sqrt(2)))
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return kurtosis, torch.maximum(i / n - cdf, cdf - (i - 1) / n).max().item()


def spectrum_moment(W: torch.Tensor) -> tuple[float, float]:
    """``p·tr(S²)/tr(S)²`` of ``S = W Wᵀ`` (``W`` transposed to ``[p, n]``, p ≤ n) and its value ``1 + (p + 1)/n``
    for i.i.d. entries."""
    w = W.double() if W.shape[0] <= W.shape[1] else W.double().T
    p, n = w.shape
    S = w @ w.T
    return p * (S * S).sum().item() / S.trace().item() ** 2, 1 + (p + 1) / n


def _check_independent(W: torch.Tensor, name: str) -> None:
    got, want = spectrum_moment(W)
    if abs(got - want) > SPECTRUM_TOL:
        kind = (" (1.00: all singular values equal, an orthogonal matrix)" if abs(got - 1) < SPECTRUM_TOL else
                " (rows or columns repeat or depend on each other)" if got > want else "")
        raise Fail(f"{name}: the entries look Gaussian but are not independent: the spread of W's singular values, "
                   f"p·tr(S²)/tr(S)² with S = W Wᵀ, is {got:.3f}{kind}; i.i.d. entries give {want:.3f} "
                   f"(Marchenko–Pastur; ± {SPECTRUM_TOL}). Draw every entry on its own: W.normal_(0, std)")


def _filled(fn, name: str, shape, seed: int) -> torch.Tensor:
    """Run the student's initializer on the weight of a fresh ``nn.Linear`` (NaN-filled first); the weight itself."""
    W = nn.Linear(shape[1], shape[0]).weight
    with torch.no_grad():
        W.fill_(math.nan)
    with _isolated_rng(seed):
        out = _call(fn, W)
    filled = bool(torch.isfinite(W).all())
    if not filled and isinstance(out, torch.Tensor) and out.shape == W.shape and torch.isfinite(out).all():
        raise Fail(f"{name} returns a new tensor but leaves W unfilled: fill W itself in place "
                   "(W.normal_(...) under torch.no_grad()) and return it")
    if not filled:
        raise Fail(f"{name}: W is {'partly ' if torch.isfinite(W).any() else ''}unfilled after the call: fill every "
                   "entry of W in place")
    if out is None:
        raise Fail(f"{name} fills W but returns None: end with `return W`")
    if not isinstance(out, torch.Tensor) or out.shape != W.shape or not torch.equal(out.detach(), W.detach()):
        raise Fail(f"{name} fills W, but returns something else: return W itself")
    return _tensor(W, f"{name}(W)", shape)


def _variance_hint(var: float, fan_out: int, fan_in: int) -> str:
    candidates = {"2/fan_out (Kaiming's fan_out mode)": 2 / fan_out, "1/fan_in (LeCun)": 1 / fan_in,
                  "2/(fan_in + fan_out) (Xavier)": 2 / (fan_in + fan_out), "2/fan_in (Kaiming)": 2 / fan_in,
                  "1/(fan_in + fan_out)": 1 / (fan_in + fan_out), "1 (torch.randn without scaling)": 1.0}
    match = [k for k, v in candidates.items() if abs(var - v) <= VAR_TOL * v]
    if not match:
        return ""
    return f" — that is {match[0]}" + ("; nn.Linear stores W as [out_features, in_features], so fan_in = W.shape[1]"
                                       if "fan_out" in match[0] else "")


def _check_initializer(fn, name: str) -> None:
    for seed, (fan_out, fan_in) in enumerate(INIT_SHAPES):
        W = _filled(fn, name, (fan_out, fan_in), seed).double()
        want = 2 / (fan_in + fan_out) if name == "xavier_normal_" else 2 / fan_in
        if abs(W.mean().item()) > 0.05 * W.std().item():  # the sample mean of N(0, σ²) is ≈ σ/600 here
            raise Fail(f"{name}: the weights should have mean 0, got {W.mean().item():.3g}")
        var = W.var().item()
        if abs(var - want) > VAR_TOL * want:
            raise Fail(f"{name}: for W of shape [{fan_out}, {fan_in}] the variance is {var:.3g}, expected {want:.3g} "
                       f"(off by {100 * (var / want - 1):+.0f}%){_variance_hint(var, fan_out, fan_in)}")
        kurtosis, ks = _shape_stats(W)
        if abs(kurtosis) > KURTOSIS_TOL or ks > KS_TOL:
            kind = " (−1.2 is the uniform distribution's)" if abs(kurtosis + 1.2) < 0.1 else ""
            raise Fail(f"{name}: the variance is right but the entries are not Gaussian: excess kurtosis "
                       f"{kurtosis:+.2f}{kind}, KS distance {ks:.3f} (a normal sample: ≈ 0 and < {KS_TOL}); "
                       "draw with W.normal_(0, std)")
        _check_independent(W, name)
    if torch.equal(W, _filled(fn, name, INIT_SHAPES[-1], seed=99).double()):
        raise Fail(f"{name} gave identical weights on two calls: draw fresh random numbers (no fixed seed inside)")


@checker
def init_variance(xavier_normal_, kaiming_normal_) -> str:
    """Exercise 1: ``xavier_normal_(W)`` and ``kaiming_normal_(W)`` (ReLU) fill a Linear weight ``[out, in]`` in place
    and return it. Tried on the weights of two fresh ``nn.Linear`` layers (wide and tall, NaN-filled first): the
    tensor passed in must be filled, with mean 0, the right variance, Gaussian entries (kurtosis, Kolmogorov–Smirnov),
    independent entries (the singular-value spectrum of an i.i.d. matrix, not an orthogonal one's), and fresh random
    numbers."""
    for name, fn in (("xavier_normal_", xavier_normal_), ("kaiming_normal_", kaiming_normal_)):
        _check_initializer(fn, name)
    return ("W filled in place with i.i.d. Gaussian entries (normality and Marchenko–Pastur spectrum tests) of "
            "variance 2/(fan_in + fan_out) and 2/fan_in, for W of shapes "
            f"{' and '.join(str(list(s)) for s in INIT_SHAPES)}")


# --------------------------------------------------------------------------------------------- 2. BatchNorm
@lru_cache(maxsize=None)
def _batchnorm_data() -> tuple[torch.Tensor, torch.Tensor]:
    return load_fashion_mnist("train", limit=BATCHNORM_SETUP["train_limit"], flatten=True)


def _check_network(net, batchnorm: bool) -> None:
    s = BATCHNORM_SETUP
    _module(net, f"make_network({batchnorm})")
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    widths = [784] + [s["width"]] * (s["depth"] - 1) + [10]
    if [(m.in_features, m.out_features) for m in linears] != list(zip(widths[:-1], widths[1:])):
        raise Fail(f"make_network({batchnorm}) should have {s['depth']} Linear layers {widths[0]} → {s['width']} … "
                   f"→ {widths[-1]}: models.mlp([784] + [width] * (depth - 1) + [10], batchnorm=...)")
    n_bn = sum(isinstance(m, nn.BatchNorm1d) for m in net.modules())
    if (n_bn > 0) != batchnorm:
        raise Fail(f"make_network({batchnorm}) has {n_bn} BatchNorm layers: pass batchnorm={batchnorm} to models.mlp")
    for k, m in enumerate(linears, start=1):
        std = m.weight.detach().double().std().item()
        if abs(std / s["init_std"] - 1) > 0.1:  # the smallest layer has 1280 weights: sd of the sample std ≈ 2%
            raise Fail(f"Linear layer {k} of make_network({batchnorm}) has weights of std {std:.3g}, not init_std = "
                       f"{s['init_std']}: initialise *every* Linear weight with nn.init.normal_(w, std=init_std)")
        if m.bias is not None and m.bias.detach().abs().max() > 0:
            raise Fail(f"Linear layer {k} of make_network({batchnorm}) has non-zero biases: set them to 0")


def _recipe(make_network, batchnorm: bool) -> nn.Module:
    """The setup's training recipe on the student's builder: seed, build, plain SGD with ``dl.fit``."""
    s = BATCHNORM_SETUP
    with _isolated_rng():
        seed_everything(s["seed"])
        net = _module(_call(make_network, batchnorm), f"make_network({batchnorm})")
        try:
            train(net, torch.optim.SGD(net.parameters(), lr=s["lr"]), _batchnorm_data(), s["epochs"],
                  batch_size=s["batch_size"], progress=False)
        except Exception as e:  # noqa: BLE001 -- the student's network failed to train: a ✗ line, not a traceback
            raise Fail(f"dl.fit on make_network({batchnorm}) raised {type(e).__name__}: {str(e)[:200]}") from None
    return net


def _training_loss(net: nn.Module) -> float:
    """Cross-entropy on the training images, BatchNorm with batch statistics (on a copy: running stats untouched)."""
    X, y = _batchnorm_data()
    with torch.no_grad():
        logits = _call(copy.deepcopy(net).cpu().train(), X)
    if not isinstance(logits, torch.Tensor) or logits.shape != (len(X), 10):
        raise Fail(f"the trained network should map [N, 784] images to [N, 10] logits, got {type(logits).__name__}"
                   + (f" of shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else ""))
    return F.cross_entropy(logits, y).item()


def _relative_distance(a: nn.Module, b: nn.Module) -> float:
    va, vb = (torch.cat([p.detach().cpu().flatten().double() for p in m.parameters()]) for m in (a, b))
    return float("inf") if va.shape != vb.shape else ((va - vb).norm() / vb.norm()).item()


# Replaying the recipe is bitwise exact on the CPU (distance 0.0, also with dldna_lite.optim.SGD for torch.optim.SGD).
# What a different run moves, measured: only the batch order (dl.fit(seed=1)): 0.35% (plain) and 10% (BatchNorm) of
# ‖θ‖; another init seed: 140% and 23%. 1e-4 accepts float noise only.
RECIPE_TOL = 1e-4


def _check_training(train_network, make_network, batchnorm: bool) -> float:
    s = BATCHNORM_SETUP
    with _isolated_rng(12345):  # not the setup's seed: a train_network that does not seed itself shows
        net = _module(_call(train_network, batchnorm), f"train_network({batchnorm})")
    distance = _relative_distance(net, _recipe(make_network, batchnorm))
    if distance > RECIPE_TOL:
        raise Fail(f"train_network({batchnorm}) does not follow the setup: its parameters differ by "
                   f"{100 * distance:.2g}% from dl.seed_everything({s['seed']}), make_network({batchnorm}), "
                   f"then dl.fit with torch.optim.SGD(lr={s['lr']}), epochs={s['epochs']}, "
                   f"batch_size={s['batch_size']} on the first {s['train_limit']} training images")
    return _training_loss(net)


@checker
def batchnorm_init(make_network, train_network) -> str:
    """Exercise 2: ``make_network(batchnorm) -> nn.Module``, the MLP of :data:`BATCHNORM_SETUP` with its bad
    initialization, and ``train_network(batchnorm) -> nn.Module``, trained by the setup's recipe.

    The check inspects the built networks (layers, BatchNorm, weight std, zero biases), runs ``train_network`` and
    replays the recipe on ``make_network`` (they must agree), and measures both training losses itself.
    """
    for batchnorm in (False, True):
        with _isolated_rng(0):
            _check_network(_call(make_network, batchnorm), batchnorm)
    # The story, measured over seeds 0-9 of the setup: without BatchNorm the training loss is 2.30189 ± 3e-7 (ln 10 =
    # 2.30259); with it, 0.79-1.47 (the last iterate at lr 0.1 is noisy: sd 0.24). Both bounds below hold with room.
    chance = math.log(10)
    plain, bn = (_check_training(train_network, make_network, b) for b in (False, True))
    if abs(plain - chance) > 0.02:
        raise Fail(f"without BatchNorm the training loss is {plain:.4f}, not ln 10 = {chance:.4f}: with this "
                   "initialization the plain network should not learn at all")
    if bn > chance - 0.5:
        raise Fail(f"with BatchNorm the training loss is {bn:.4f}, not clearly below chance ({chance:.4f})")
    return (f"without BN the training loss stays at ln 10 = {chance:.3f} ({plain:.4f}); with BN it falls to "
            f"{bn:.3f} (both measured by the check on the networks your train_network returned)")


# --------------------------------------------------------------------------------------------- 3. init experiment
#: Row fields compared with the rerun. ``condition_number``/``spectral_norm``/``erank_ratio`` fix the initialization,
#: ``test_*`` the training, ``steps_to_target``/``reached`` the target loss.
ROW_FIELDS = ("condition_number", "spectral_norm", "erank_ratio", "test_loss", "test_acc", "reached",
              "steps_to_target")
# The rows must be the run itself: same code, same seed, same process → bitwise equal on the CPU. Measured over
# seeds 0-4 of INIT_EXPERIMENT: test loss 0.534-0.592 (kaiming_normal) and 1.83-1.94 (naive), steps_to_target 27-31,
# mean σ_max ±1.5%; so 1e-4 relative rejects another seed, other epochs or sizes, or a typed row, and accepts float
# noise only.
ROW_TOL = 1e-4


@lru_cache(maxsize=None)
def _analyze_reference(method: str) -> dict:
    s = INIT_EXPERIMENT
    train_data = load_fashion_mnist("train", limit=s["train_limit"], flatten=True)
    test_data = load_fashion_mnist("test", limit=s["test_limit"], flatten=True)
    with _isolated_rng():
        (row,) = init.analyze([method], train_data, test_data, epochs=s["epochs"], target_loss=INIT_TARGET_LOSS,
                              progress=False)
    return row


def _differs(got, want) -> bool:
    if want is None or got is None:
        return (want is None) != (got is None)
    try:
        return abs(float(got) - float(want)) > ROW_TOL * max(1.0, abs(float(want)))
    except (TypeError, ValueError):
        return True


def _check_row(row: dict) -> None:
    method = row["method"]
    if row.get("seeds") != 1:
        raise Fail(f"the row of {method!r} averages {row.get('seeds')} seeds: run init.analyze with its default "
                   "seeds=(0,)")
    want = _analyze_reference(method)
    bad = [k for k in ROW_FIELDS if _differs(row.get(k), want[k])]
    if not bad:
        return
    s = INIT_EXPERIMENT
    if bad[0] in ROW_FIELDS[:3]:
        raise Fail(f"the row of {method!r} does not come from {method!r}'s initialization with seed 0 ({bad[0]} "
                   f"{row.get(bad[0])} instead of {want[bad[0]]:.4g}): hand in the rows init.analyze returned, run "
                   "with its default seeds=(0,)")
    if bad[0] in ("test_loss", "test_acc"):
        raise Fail(f"the row of {method!r} does not match init.analyze on ex.INIT_EXPERIMENT (test loss "
                   f"{row.get('test_loss')} instead of {want['test_loss']:.4f}): use the first {s['train_limit']} "
                   f"training and {s['test_limit']} test images (flatten=True), epochs={s['epochs']}, and "
                   "init.analyze's other defaults")
    raise Fail(f"the row of {method!r} has steps_to_target {row.get('steps_to_target')} instead of "
               f"{want['steps_to_target']}: pass target_loss=ex.INIT_TARGET_LOSS ({INIT_TARGET_LOSS})")


def _check_rows(rows) -> dict:
    rows = _need(rows, "rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "method" in r for r in rows):
        raise Fail("rows should be the list of dicts returned by dldna_lite.init.analyze")
    missing = [k for k in ("seeds", "status", *ROW_FIELDS) if any(k not in r for r in rows)]
    if missing:
        raise Fail(f"the rows have no {missing[0]!r}: hand in the list that init.analyze returned, unchanged")
    methods = [r["method"] for r in rows]
    if len(set(methods)) < 2:
        raise Fail(f"compare two different methods; rows has {', '.join(map(repr, methods)) or 'none'}")
    unknown = [m for m in methods if m not in init.METHODS]
    if unknown:
        raise Fail(f"{unknown[0]!r} is not a method of init.METHODS")
    if len(set(methods)) < len(methods):
        raise Fail("each method should appear once in rows")
    for row in rows:
        _check_row(row)
    return {r["method"]: (r["steps_to_target"] if r["reached"] else None) for r in rows}


@checker
def init_experiment(rows, first) -> str:
    """Exercise 3: ``rows`` from ``init.analyze`` for two methods (each row is checked against a cached rerun of
    ``init.analyze`` for its method on :data:`INIT_EXPERIMENT` and :data:`INIT_TARGET_LOSS`) and ``first``, the method
    that reaches the target loss in fewer steps (read from the rows)."""
    steps = _check_rows(rows)
    reached = {m: s for m, s in steps.items() if s is not None}
    if not reached:
        raise Fail("no method reached the target loss: pick a method that trains (e.g. a Kaiming init)")
    first = _need(first, "first")
    best = min(reached, key=reached.get)
    if first not in steps:
        raise Fail(f"first = {first!r} is not one of the methods you ran: {', '.join(steps)}")
    if first != best and steps[first] != reached[best]:  # a tie counts for both
        got = "never reached it" if steps[first] is None else f"needed {steps[first]:.0f} steps"
        raise Fail(f"{first!r} {got}; {best!r} needed {reached[best]:.0f} (read the steps_to_target column)")
    return (f"the rows match a rerun of init.analyze; {first!r} reaches the target first, after "
            f"{reached[best]:.0f} steps")
