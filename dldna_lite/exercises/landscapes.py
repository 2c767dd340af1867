"""Checkers of ``exercises/03-loss-landscapes``: filter-normalized directions and power iteration on the Hessian.

References: the ReLU rescaling invariance that filter normalization exists for (Li et al. 2018), on an MLP and on a
small CNN, and the exact Hessian (:func:`dldna_lite.hessian.exact_hessian`) of tiny float64 networks.
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import torch
from torch import nn
from torch.nn import functional as F

from ..hessian import exact_hessian
from . import Fail, _call, _close, _isolated_rng, _number, _tensor, checker


# --------------------------------------------------------------------------------------------- 1. filter normalization
def _filter_norms(t: torch.Tensor) -> torch.Tensor:
    """Norm of each filter (slice along dim 0) of a weight ``[out, ...]``: ``[out]``."""
    return torch.linalg.vector_norm(t.reshape(len(t), -1), dim=1)


#: The rescalings of the check's networks (ReLU is positively homogeneous, so each leaves the function unchanged):
#: "layer" multiplies the whole first layer (weight and bias) by 10 and divides the next weight by 10; "unit" multiplies
#: unit i of the first layer by UNIT_SCALES[i] and divides its outgoing weights by it.
UNIT_SCALES = (10.0, 0.1, 3.0, 0.5, 1.0, 7.0, 0.2, 2.0)


def _rescale(first: nn.Module, second: nn.Module, how: str | None, repeat: int) -> None:
    if how is None:
        return
    n = first.weight.shape[0]
    c = torch.full((n,), 10.0, dtype=torch.float64) if how == "layer" else torch.tensor(
        UNIT_SCALES * (n // len(UNIT_SCALES)), dtype=torch.float64)
    with torch.no_grad():
        first.weight.mul_(c.view(-1, *[1] * (first.weight.dim() - 1))), first.bias.mul_(c)
        second.weight.div_(c.repeat_interleave(repeat)[None, :])


def _small_relu_net(scale: str | None = None) -> nn.Sequential:
    """A 6 → 16 → 3 ReLU MLP (float64, seed 9), optionally rescaled (``"layer"`` or ``"unit"``: same function)."""
    with _isolated_rng(9):
        net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    _rescale(net[0], net[2], scale, 1)
    return net


def _small_conv_net(scale: str | None = None) -> nn.Sequential:
    """Conv2d(2 → 8, 3×3) → ReLU → Flatten → Linear(8·4·4 → 3) on ``[N, 2, 6, 6]`` (float64, seed 8), optionally
    rescaled (``"layer"``, or ``"unit"``: output channel by output channel)."""
    with _isolated_rng(8):
        net = nn.Sequential(nn.Conv2d(2, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 3)).double()
    _rescale(net[0], net[3], scale, 16)
    return net


def _problems():
    """(name, build, data) of the two networks the direction is tried on."""
    gen = torch.Generator().manual_seed(9)
    mlp_data = (torch.randn(64, 6, generator=gen, dtype=torch.float64), torch.randint(0, 3, (64,), generator=gen))
    conv_data = (torch.randn(32, 2, 6, 6, generator=gen, dtype=torch.float64),
                 torch.randint(0, 3, (32,), generator=gen))
    return (("a Linear MLP", _small_relu_net, mlp_data), ("a Conv2d network", _small_conv_net, conv_data))


#: Seeds of the global RNG while the student's function runs: two different ones, neither of them a generator's seed.
#: The same generator must give the same direction under both; two generators must give two directions.
GLOBAL_SEEDS = (1234, 98765)
#: Generator seeds of the distribution test (and of its reference: :func:`_reference_entries`).
DISTRIBUTION_SEEDS = range(100, 120)
# The distribution test: in a filter-normalized Gaussian direction each filter d[i] / ‖d[i]‖ is uniform on the sphere,
# so z = √n · d[i] / ‖d[i]‖ has a known law (not quite N(0, 1) for a 6-entry row). The check pools z over both networks
# and 20 generators (13 440 entries) and compares it, by a two-sample Kolmogorov–Smirnov distance, with 134 400 entries
# of its own Gaussian directions. Measured for a correct direction over 200 disjoint sets of 20 generator seeds: KS
# ≤ 0.018 (mean 0.008), none above the bound 0.03 (1.2 × the two-sample critical value 0.024 at level 1e-6). Wrong
# laws: uniform entries 0.055, Laplace 0.059, all-positive (torch.rand) 0.50.
DIRECTION_KS_TOL = 0.03


def _filter_z(direction, net) -> torch.Tensor:
    """√n · d[i] / ‖d[i]‖ for every filter of every weight (dim > 1) of ``direction``, pooled."""
    out = []
    for t, p in zip(direction, net.parameters()):
        if p.dim() > 1:
            f = t.flatten(1)
            out.append((f / f.norm(dim=1, keepdim=True).clamp_min(1e-300) * f.shape[1] ** 0.5).flatten())
    return torch.cat(out)


def _gaussian_direction(model, generator):
    """The check's own Gaussian filter-normalized direction (the reference of the distribution test)."""
    out = []
    for W in model.parameters():
        D = torch.randn(W.shape, generator=generator, dtype=W.dtype)
        out.append(D if W.dim() <= 1 else D * (W.detach().flatten(1).norm(dim=1) / D.flatten(1).norm(dim=1)).view(
            -1, *[1] * (W.dim() - 1)))
    return out


@lru_cache(maxsize=None)
def _reference_entries() -> torch.Tensor:
    nets = (_small_relu_net(), _small_conv_net())
    return torch.cat([_filter_z(_gaussian_direction(net, torch.Generator().manual_seed(10_000 + s)), net)
                      for s in range(200) for net in nets]).sort().values


def ks_two_sample(a: torch.Tensor, b: torch.Tensor) -> float:
    """The two-sample Kolmogorov–Smirnov distance sup |F_a − F_b|."""
    a, b = a.double().sort().values, b.double().sort().values
    grid = torch.cat([a, b])
    fa = torch.searchsorted(a, grid, right=True).double() / len(a)
    fb = torch.searchsorted(b, grid, right=True).double() / len(b)
    return (fa - fb).abs().max().item()


def _check_distribution(fn) -> None:
    nets = (("a Linear MLP", _small_relu_net()), ("a Conv2d network", _small_conv_net()))
    z = torch.cat([_filter_z(_direction_of(fn, net, s, where), net) for s in DISTRIBUTION_SEEDS for where, net in nets])
    ks = ks_two_sample(z, _reference_entries())
    if ks > DIRECTION_KS_TOL:
        pos = (z > 0).double().mean().item()
        kind = (f"{100 * pos:.0f}% of the entries are positive (torch.rand draws from [0, 1))" if abs(pos - 0.5) > 0.05
                else f"excess kurtosis of the filters' entries {(z ** 4).mean().item() - 3:+.2f}")
        raise Fail(f"the direction's filters are not Gaussian directions: over {len(DISTRIBUTION_SEEDS)} generators "
                   f"their entries have a Kolmogorov–Smirnov distance {ks:.3f} from those of Gaussian filters (a "
                   f"correct direction: < {DIRECTION_KS_TOL}); {kind}. Draw D with torch.randn(W.shape, "
                   "generator=generator, dtype=W.dtype)")


def _check_randomness(fn, net, d, where: str) -> None:
    if not all(torch.equal(a, b) for a, b in zip(d, _direction_of(fn, net, 0, where, GLOBAL_SEEDS[1]))):
        raise Fail("the same generator gave two different directions when the global random state changed: your "
                   "function draws from torch's global RNG; draw with torch.randn(W.shape, generator=generator, "
                   "dtype=W.dtype)")
    if all(torch.equal(a, b) for a, b in zip(d, _direction_of(fn, net, 1, where))):
        raise Fail("two different generators gave the same direction: draw it with "
                   "torch.randn(W.shape, generator=generator, dtype=W.dtype)")


def _loss_along(net: nn.Module, direction, alpha: float, data) -> float:
    X, y = data
    params = {name: p + alpha * d for (name, p), d in zip(net.named_parameters(), direction)}
    return F.cross_entropy(torch.func.functional_call(net, params, (X,)), y).item()


def _direction_of(fn, net, seed: int, where: str, global_seed: int = GLOBAL_SEEDS[0]) -> list[torch.Tensor]:
    """The student's direction for a generator seeded with ``seed``, the global RNG seeded with ``global_seed`` (never
    the generator's seed: a function that ignores its ``generator`` must not get the generator's numbers)."""
    try:
        with _isolated_rng(global_seed):
            d = _call(fn, net, torch.Generator().manual_seed(seed))
    except Fail as e:
        conv = any(p.dim() > 2 for p in net.parameters()) and "not done yet" not in str(e)
        raise Fail(f"on {where}, {e}" + (" (a conv weight is [out, in, k, k]: flatten each filter, W.flatten(1), "
                                         "before taking its norm)" if conv else "")) from None
    params = list(net.parameters())
    if not isinstance(d, (list, tuple)) or len(d) != len(params):
        raise Fail(f"return a list with one tensor per model.parameters() entry ({len(params)}), "
                   f"got {type(d).__name__}" + (f" of length {len(d)}" if isinstance(d, (list, tuple)) else ""))
    return [_tensor(t, f"direction[{i}]", p.shape).to(p.dtype) for i, (t, p) in enumerate(zip(d, params))]


def _finer_normalization(t: torch.Tensor, W: torch.Tensor) -> tuple | None:
    """The dims over which ``t`` copies the norms of ``W`` slice by slice, when that is finer than per filter."""
    if torch.allclose(t.abs(), W.abs(), rtol=1e-6):
        return ()
    inner = range(1, t.dim())
    for r in range(1, t.dim() - 1):
        for dims in itertools.combinations(inner, r):
            if torch.allclose(t.norm(dim=dims), W.norm(dim=dims), rtol=1e-6, atol=1e-12):
                return dims
    return None


def _check_filters(i: int, t: torch.Tensor, W: torch.Tensor, where: str) -> None:
    want, got = _filter_norms(W), _filter_norms(t)
    if not torch.allclose(got, want, rtol=1e-5):
        if torch.allclose(got, torch.ones_like(got), rtol=1e-5):
            hint = "each filter has norm 1: multiply it by the norm of the same filter of the weight"
        elif torch.allclose(t.norm(dim=0), W.norm(dim=0), rtol=1e-5):
            hint = "you normalised the slices W[:, j] along dim 0; a filter is W[i], one output unit or channel"
        elif _close(torch.linalg.vector_norm(t).item(), torch.linalg.vector_norm(W).item(), rel=1e-5):
            hint = "you matched the whole layer's norm; match each filter W[i] separately"
        else:
            hint = "rescale each filter d[i] to ‖d[i]‖ = ‖W[i]‖"
        fmt = ", ".join(f"{a:.3g} vs {b:.3g}" for a, b in zip(got[:3].tolist(), want[:3].tolist()))
        raise Fail(f"on {where}, direction[{i}]: filter norms [{fmt}, ...] should equal the weight's ({hint})")
    dims = _finer_normalization(t, W)
    if dims == ():
        raise Fail(f"on {where}, direction[{i}] copies |W| entry by entry: draw a Gaussian D and rescale each whole "
                   "filter D[i] to the norm of W[i]")
    if dims is not None:
        raise Fail(f"on {where}, direction[{i}] (shape {list(W.shape)}) matches the norms taken over dim "
                   f"{', '.join(map(str, dims))} only, one per slice, not the norm of each whole filter: for a "
                   "convolution the filter W[i] is [in_channels, k, k]; take norms of W.flatten(1) along dim 1")


def _check_direction(fn, where: str, build, data) -> float:
    net = build()
    d = _direction_of(fn, net, 0, where)
    cos = F.cosine_similarity(d[0].flatten(), next(net.parameters()).detach().flatten(), dim=0)
    if cos.abs() > 0.9:
        raise Fail("the direction is (almost) the weight itself: draw a random Gaussian direction first")
    for i, (t, p) in enumerate(zip(d, net.parameters())):
        if p.dim() <= 1 and t.abs().max() > 0:
            raise Fail(f"on {where}, direction[{i}] (a bias, shape {tuple(p.shape)}) should be zero: filter "
                       "normalization leaves 1-d parameters out")
        if p.dim() > 1:
            _check_filters(i, t, p.detach(), where)
    _check_randomness(fn, net, d, where)
    a = _loss_along(net, d, 0.5, data)
    for how, keep in (("layer", len(d)), ("unit", 1)):  # per unit: only the first layer's filters move with the unit
        twin = build(scale=how)
        d_twin = _direction_of(fn, twin, 0, where)
        mine, theirs = ([t if i < keep else torch.zeros_like(t) for i, t in enumerate(x)] for x in (d, d_twin))
        if not _close(_loss_along(net, mine, 0.5, data), _loss_along(twin, theirs, 0.5, data), rel=1e-6):
            what = "whole layer rescaled (×10, then ÷10)" if how == "layer" else "units rescaled one by one"
            raise Fail(f"on {where}, the loss at α = 0.5 along your direction differs between the network and its twin "
                       f"with the {what}, which computes the same function: each filter of the direction must scale "
                       "with the same filter of the weights")
    return a


@checker
def filter_direction(filter_normalized_direction) -> str:
    """Exercise 1: ``filter_normalized_direction(model, generator) -> list[Tensor]`` (Li et al. 2018).

    Each filter (slice along dim 0: a row of a Linear weight, an output channel ``[in, k, k]`` of a convolution) of a
    weight gets a Gaussian direction rescaled to that filter's norm; 1-d parameters (biases, BatchNorm) get zero.
    Tried on an MLP and on a small CNN: shapes, filter norms (and not a finer per-slice normalization), zero biases,
    randomness drawn from ``generator`` (same generator, same direction, whatever the global random state; two
    generators, two directions), the law of the filters (a Kolmogorov–Smirnov test against Gaussian filters over 20
    generators), and the point of it all -- the loss along the direction is the same for a rescaled twin of the
    network that computes the same function (ReLU is positively homogeneous): layer by layer, and unit by unit.
    """
    losses = [_check_direction(filter_normalized_direction, *problem) for problem in _problems()]
    _check_distribution(filter_normalized_direction)
    return ("filter norms match on a Linear MLP and a Conv2d network, biases are zero, the filters are Gaussian "
            "directions drawn from your generator (not from the global RNG), and the loss along the direction "
            f"(α = 0.5: {losses[0]:.4f}, {losses[1]:.4f}) is the same for each network and its rescaled twins")


# --------------------------------------------------------------------------------------------- 2. power iteration
def tiny_hessian_problem(seed: int = 10):
    """``(model, data, loss_fn)``: a 5 → 8 → 3 tanh MLP in float64 with 40 examples and cross-entropy, small
    enough for an exact Hessian."""
    with _isolated_rng(seed):
        net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    gen = torch.Generator().manual_seed(seed)
    data = (torch.randn(40, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (40,), generator=gen))
    return net, data, F.cross_entropy


# Power iteration from random starts on the two problems (|λ2/λ1| = 0.90 and 0.83), the solution's relative error:
# after 100 iterations ≤ 4.2e-7 over global seeds 0-19 (the next worst 8e-9; the check's seed 10: 1.6e-10); after 50,
# up to 3e-4 (seeds 0-4); after 30, up to 1.6%. So 100 iterations and a 1e-4 tolerance (240× the worst of 20 seeds)
# leave room for any correct variant, and reject an eigenvalue off by 2e-4; one iteration (a Rayleigh quotient of a
# random vector) is off by 90%.
POWER_ITERS = 100
POWER_TOL = 1e-4


def _negative_cross_entropy(logits, y):
    return -F.cross_entropy(logits, y)


def power_iteration_problems():
    """The check's problems: :func:`tiny_hessian_problem`, and a second one (seed 11) with the *negated* loss, whose
    eigenvalue of largest magnitude is negative (so that ‖Hv‖ instead of vᵀHv, or a typed number, fails)."""
    net, data, _ = tiny_hessian_problem(11)
    return [tiny_hessian_problem(), (net, data, _negative_cross_entropy)]


def top_eigenvalue_reference(model, data, loss_fn=F.cross_entropy) -> float:
    """The eigenvalue of largest magnitude of :func:`exact_hessian` (signed)."""
    ev = torch.linalg.eigvalsh(exact_hessian(model, data, loss_fn=loss_fn))
    return ev[ev.abs().argmax()].item()


def _check_eigenvalue(top_eigenvalue, net, data, loss_fn, which: str) -> float:
    before = [p.detach().clone() for p in net.parameters()]
    with _isolated_rng(10):
        got = _number(_call(top_eigenvalue, net, data, loss_fn, POWER_ITERS), "top_eigenvalue(...)")
    if any(not torch.equal(a, b) for a, b in zip(before, net.parameters())):
        raise Fail("the model's parameters changed: power iteration must only read them")
    ev = torch.linalg.eigvalsh(exact_hessian(net, data, loss_fn=loss_fn))
    want = ev[ev.abs().argmax()].item()
    if _close(got, want, rel=POWER_TOL):
        return got
    hint = ""
    if _close(got, -want, rel=1e-3):
        hint = " (that is its magnitude: return the Rayleigh quotient vᵀHv, which keeps the sign)"
    elif _close(got, ev.sum().item(), rel=1e-2):
        hint = " (that is the trace, the sum of all eigenvalues)"
    elif any(_close(got, e, rel=1e-3) for e in ev.tolist()):
        hint = " (that is another eigenvalue: did the iteration run long enough from a random start?)"
    raise Fail(f"on {which} the top eigenvalue is {want:.7g} (exact Hessian), you returned {got:.7g} (off by "
               f"{abs(got / want - 1):.2g}, more than {POWER_TOL:g}){hint}; "
               "hint: normalise v each iteration and return the Rayleigh quotient vᵀHv with ‖v‖ = 1")


@checker
def power_iteration(top_eigenvalue) -> str:
    """Exercise 2: ``top_eigenvalue(model, data, loss_fn, iters) -> float`` by power iteration on Hessian-vector
    products, against the eigenvalues of the exact Hessians of two tiny float64 problems (one with a negative top
    eigenvalue)."""
    names = ("the tiny tanh network", "a second network with the negated loss")
    got = [_check_eigenvalue(top_eigenvalue, *problem, which) for problem, which in
           zip(power_iteration_problems(), names)]
    with _isolated_rng(10):
        one = _number(_call(top_eigenvalue, *tiny_hessian_problem(), 1), "top_eigenvalue(..., iters=1)")
    if _close(one, got[0], rel=1e-9):  # one step from a random start is off by ≥ 10% on both problems
        raise Fail("with iters=1 your function already returns the exact eigenvalue: it does not run power "
                   "iteration (iters steps of v ← Hv/‖Hv‖ from a random start) but computes it another way")
    return f"λ = {got[0]:.5g} and {got[1]:.5g} (signed), as the exact Hessians say"
