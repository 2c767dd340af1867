"""The exercise checkers pass the book's solutions and fail typical wrong answers with the intended message.

The solutions are taken from the one place they live, the gated solution blocks of
``book/09-exercise-solutions.md`` (parsed by :func:`solution_code` below); the student notebooks in
``exercises/`` are also executed with those solutions filled in, and every check must print ✓.
"""
from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import torch
from torch import nn

from dldna_lite import exercises as ex
from dldna_lite.exercises import check

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book/09-exercise-solutions.md"
NOTEBOOKS = sorted((ROOT / "exercises").glob("*.md"))
STUDENT_TAG = "raises-exception"


def solution_code(page) -> dict[str, str]:
    """The solution of each exercise on the solutions page, ``{label: code}``.

    A solution is the code cells between ``{solution-start} <label>`` and ``{solution-end}`` (sphinx-exercise's
    gated directives), check calls (cells starting with ``check.``) left out. This is the only copy of the solutions.
    """
    out: dict[str, list[str]] = {}
    label = None
    for cell in jupytext.read(page).cells:
        if cell.cell_type == "markdown":
            for m in re.finditer(r"\{solution-(start|end)\}[ \t]*(\S*)", cell.source):
                label = m.group(2) if m.group(1) == "start" else None
        elif label is not None and not cell.source.lstrip().startswith("check."):
            out.setdefault(label, []).append(cell.source)
    return {k: "\n\n".join(v) for k, v in out.items()}


def fill_in(notebook, solutions: dict[str, str]):
    """A copy of a student ``notebook`` (nbformat) whose exercise cells hold the solutions.

    An exercise cell is a code cell tagged with an exercise label (and ``raises-exception``); its source is
    replaced by ``solutions[label]`` and the ``raises-exception`` tag dropped. ``ValueError`` if a label has no
    solution.
    """
    nb = copy.deepcopy(notebook)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        labels = [t for t in tags if t.startswith("ex-")]
        if cell.cell_type != "code" or not labels:
            continue
        missing = [t for t in labels if t not in solutions]
        if missing:
            raise ValueError(f"no solution for {missing}; the solutions page has {', '.join(sorted(solutions))}")
        cell.source = "\n\n".join(solutions[t] for t in labels)
        cell.metadata["tags"] = [t for t in tags if t != STUDENT_TAG and t not in labels]
    return nb


SOLUTIONS = solution_code(PAGE)


@pytest.fixture(scope="module")
def sol():
    """Namespace holding the page's imports and the solution code of the cheap (function) exercises."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c.source for c in jupytext.read(PAGE).cells if c.cell_type == "code"]
    ns: dict = {}
    exec(next(c for c in cells if "from dldna_lite.exercises import check" in c), ns)
    for label in ("ex-init-variance", "ex-sgd-by-hand", "ex-gd-quadratic", "ex-adam-step", "ex-lion",
                  "ex-rosenbrock", "ex-filter-direction", "ex-power-iteration", "ex-checkpointing",
                  "ex-double-descent"):
        exec(SOLUTIONS[label], ns)
    plt.close("all")
    return ns


def stub(*args, **kwargs):
    raise NotImplementedError


def expect_fail(result, *fragments):
    assert not result, f"should fail: {result}"
    for f in fragments:
        assert f in result.message, f"{f!r} not in {result.message!r}"


# --------------------------------------------------------------------------------------------- the solution page
def test_every_exercise_has_one_solution_and_one_student_cell():
    page_text = PAGE.read_text()
    labels = set(__import__("re").findall(r"\{exercise-start\}\s*\n:label: (\S+)", page_text))
    assert labels == set(SOLUTIONS), f"exercises without solution: {labels ^ set(SOLUTIONS)}"
    student = {}
    for md in NOTEBOOKS:
        for cell in jupytext.read(md).cells:
            tags = cell.metadata.get("tags", [])
            for t in (t for t in tags if t.startswith("ex-")):
                assert t not in student, f"{t} has two student cells"
                assert "raises-exception" in tags and "YOUR CODE HERE" in cell.source
                assert "raise NotImplementedError" in cell.source
                student[t] = md.name
    assert set(student) == labels, f"mismatch page/notebooks: {set(student) ^ labels}"
    for label, code in SOLUTIONS.items():
        assert "NotImplementedError" not in code and "YOUR CODE HERE" not in code, label


def test_solutions_live_only_on_the_page():
    """No solution code is copied into a student notebook."""
    for md in NOTEBOOKS:
        text = md.read_text()
        for label, code in SOLUTIONS.items():
            body = [line for line in code.splitlines()  # signatures are given to the student; bodies are not
                    if len(line.strip()) > 40 and not line.lstrip().startswith(("#", "def "))]
            assert not any(line in text for line in body), f"{md.name} contains solution code of {label}"


# --------------------------------------------------------------------------------------------- machinery
def test_checker_prints_one_verdict_and_never_raises(capsys):
    r = check.adam_step(stub)
    out = capsys.readouterr().out
    assert out.startswith("✗ adam_step: not done yet") and out.count("\n") == 1
    assert not r and "YOUR CODE HERE" in r.message
    for bad in ("a string", 3, None):
        assert not check.adam_step(bad)
    assert not check.gd_quadratic(lambda *a: 1 / 0, 0.3).passed
    assert "ZeroDivisionError" in check.gd_quadratic(lambda *a: 1 / 0, 0.3).message
    with pytest.raises(AttributeError, match="available: adam_step"):
        check.no_such_check
    assert "adam_step" in dir(check)


def test_values_not_given_yet():
    expect_fail(check.sgd_by_hand(None, None), "no answer yet", "w1")
    expect_fail(check.batchnorm_init(None, None), "no answer yet")
    expect_fail(check.init_experiment(None, None), "no answer yet")
    expect_fail(check.grokking_weight_decay(None, None, None), "no answer yet")
    expect_fail(check.sgd_by_hand(float("nan"), 1.0), "not a finite number")


# --------------------------------------------------------------------------------------------- 1. SGD by hand
def test_sgd_by_hand(sol):
    assert check.sgd_by_hand(sol["w1"], sol["w2"])
    p = ex.SGD_PROBLEM
    g0 = (p["w0"] * p["x"] - p["y"]) * p["x"]
    # independent reference: the closed form w1 = w0 − lr·(w0·x − y)·x by hand
    assert math.isclose(ex.sgd_by_hand_reference(1)[0], p["w0"] - p["lr"] * g0)
    expect_fail(check.sgd_by_hand(p["w0"] + p["lr"] * g0, 0.0), "stepped *up*")
    expect_fail(check.sgd_by_hand(p["w0"] - 2 * p["lr"] * g0, 0.0), "twice too long")
    expect_fail(check.sgd_by_hand(p["w0"] - p["lr"] * (p["w0"] * p["x"] - p["y"]), 0.0), "chain rule")
    expect_fail(check.sgd_by_hand(sol["w1"], sol["w1"] - p["lr"] * g0), "taken at w1")


# --------------------------------------------------------------------------------------------- 2. GD
def test_gd_quadratic(sol):
    assert check.gd_quadratic(sol["gd"], sol["lr_max"])
    assert check.gd_quadratic(sol["gd"], 2 / 6)
    expect_fail(check.gd_quadratic(sol["gd"], 1 / 6), "1/λ_max")
    expect_fail(check.gd_quadratic(sol["gd"], 2.0), "2/λ_min")
    expect_fail(check.gd_quadratic(sol["gd"], 0.25), "off by")
    expect_fail(check.gd_quadratic(lambda A, x0, lr, k: sol["gd"](A, x0, lr, k)[1:], 1 / 3), "include x0")
    expect_fail(check.gd_quadratic(lambda A, x0, lr, k: sol["gd"](A, x0, -lr, k), 1 / 3), "iterate 1 differs")
    expect_fail(check.gd_quadratic(stub, 1 / 3), "not done yet")


# --------------------------------------------------------------------------------------------- 3. init
def test_init_variance_solution_and_torch_reference(sol):
    assert check.init_variance(sol["xavier_normal_"], sol["kaiming_normal_"])
    # independent reference: torch.nn.init's own functions pass
    assert check.init_variance(nn.init.xavier_normal_, lambda W: nn.init.kaiming_normal_(W, nonlinearity="relu"))


def test_init_variance_wrong_answers(sol):
    fan_out = lambda W: nn.init.kaiming_normal_(W, mode="fan_out", nonlinearity="relu")  # noqa: E731
    expect_fail(check.init_variance(sol["xavier_normal_"], fan_out), "kaiming_normal_", "fan_out",
                "fan_in = W.shape[1]")
    lecun = lambda W: nn.init.normal_(W, std=1 / math.sqrt(W.shape[1]))  # noqa: E731
    expect_fail(check.init_variance(lecun, sol["kaiming_normal_"]), "xavier_normal_", "LeCun")
    expect_fail(check.init_variance(lambda W: nn.init.normal_(W, mean=0.1, std=0.03), sol["kaiming_normal_"]),
                "mean 0")
    expect_fail(check.init_variance(lambda W: torch.zeros(3), sol["kaiming_normal_"]), "shape")
    expect_fail(check.init_variance(stub, stub), "not done yet")


# --------------------------------------------------------------------------------------------- 4. Adam
def test_adam_step(sol):
    assert check.adam_step(sol["adam_step"])
    h = ex.ADAM_HPARAMS

    def no_bias_correction(p, g, m, v, t, **kw):
        m, v = h["beta1"] * m + (1 - h["beta1"]) * g, h["beta2"] * v + (1 - h["beta2"]) * g * g
        return p - kw["lr"] * m / (v.sqrt() + kw["eps"]), m, v

    def eps_inside(p, g, m, v, t, **kw):
        m, v = h["beta1"] * m + (1 - h["beta1"]) * g, h["beta2"] * v + (1 - h["beta2"]) * g * g
        m_hat, v_hat = m / (1 - h["beta1"] ** t), v / (1 - h["beta2"] ** t)
        return p - kw["lr"] * m_hat / (v_hat + kw["eps"]).sqrt(), m, v

    def t_from_zero(p, g, m, v, t, **kw):
        return sol["adam_step"](p, g, m, v, t - 1, **kw)

    expect_fail(check.adam_step(no_bias_correction), "step 1", "bias correction")
    expect_fail(check.adam_step(eps_inside), "eps belongs outside")
    expect_fail(check.adam_step(t_from_zero), "inf or NaN")
    expect_fail(check.adam_step(lambda *a, **k: a[0]), "tuple")


# --------------------------------------------------------------------------------------------- 5. BatchNorm
def test_batchnorm_init_values():
    chance = math.log(10)
    assert check.batchnorm_init(chance - 0.001, 0.83)
    expect_fail(check.batchnorm_init(1.2, 0.83), "stays at chance level")
    expect_fail(check.batchnorm_init(chance, 2.2), "not clearly below chance")


# --------------------------------------------------------------------------------------------- 6. Lion
def test_lion_reference_matches_lion_pytorch_and_dldna_optim():
    from lion_pytorch import Lion as LionPT

    from dldna_lite.optim import Lion

    h = ex.LION_HPARAMS
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(20, generator=gen, dtype=torch.float64)
    grads = [torch.randn(20, generator=gen, dtype=torch.float64) for _ in range(8)]
    for cls in (LionPT, Lion):
        p, m = p0.clone(), torch.zeros_like(p0)
        q = p0.clone().requires_grad_(True)
        opt = cls([q], lr=h["lr"], betas=(h["beta1"], h["beta2"]), weight_decay=h["weight_decay"])
        for g in grads:
            p, m = ex.lion_reference(p, g, m, **h)
            q.grad = g.clone()
            opt.step()
        torch.testing.assert_close(q.detach(), p, rtol=1e-12, atol=1e-12)


def test_lion_step(sol):
    assert check.lion_step(sol["lion_step"], sol["update_over_lr"])

    def source_version(p, g, m, lr, beta1, beta2, weight_decay):  # m_t = c_t
        return ex.lion_reference(p, g, m, lr, beta1, beta1, weight_decay)

    def momentum_sign(p, g, m, lr, beta1, beta2, weight_decay):  # sign of the new momentum instead of c_t
        m = beta2 * m + (1 - beta2) * g
        return p * (1 - lr * weight_decay) - lr * torch.sign(m), m

    expect_fail(check.lion_step(source_version, 1.0), "m_t = c_t")
    expect_fail(check.lion_step(momentum_sign, 1.0), "differ from Lion")
    expect_fail(check.lion_step(sol["lion_step"], math.sqrt(1000)), "update_over_lr")
    expect_fail(check.lion_step(stub, 1.0), "not done yet")


# --------------------------------------------------------------------------------------------- 7. init experiment
def test_init_experiment_reads_the_steps_column():
    rows = [dict(method="naive", steps_to_target=None, reached=0),
            dict(method="kaiming_normal", steps_to_target=29.0, reached=1),
            dict(method="xavier_normal", steps_to_target=29.0, reached=1)]
    assert check.init_experiment(rows, "kaiming_normal")
    assert check.init_experiment(rows, "xavier_normal")  # a tie counts for both
    expect_fail(check.init_experiment(rows, "naive"), "never reached it")
    expect_fail(check.init_experiment(rows, "orthogonal"), "not one of the methods")
    expect_fail(check.init_experiment(rows[:1], "naive"), "at least two")
    expect_fail(check.init_experiment([rows[0], rows[0]], "naive"), "no method reached")


# --------------------------------------------------------------------------------------------- 8. Rosenbrock
def test_rosenbrock_reference_matches_analysis_optimizer_path():
    analysis = pytest.importorskip("dldna_lite.analysis")
    make = lambda ps: torch.optim.Adam(ps, lr=0.05)  # noqa: E731
    path = analysis.optimizer_path(lambda x, y: ex.rosenbrock(torch.stack([x, y])), make, ex.ROSENBROCK_START, 100)
    torch.testing.assert_close(ex.rosenbrock_path_reference(make, 100), torch.as_tensor(path))


def test_rosenbrock_path(sol):
    assert check.rosenbrock_path(sol["optimize_rosenbrock"], sol["distance_adam"])

    def no_zero_grad(make_optimizer, steps):
        return ex.rosenbrock_path_reference(make_optimizer, steps, accumulate=True)

    expect_fail(check.rosenbrock_path(no_zero_grad, sol["distance_adam"]), "zero_grad")
    expect_fail(check.rosenbrock_path(lambda mk, k: sol["optimize_rosenbrock"](mk, k)[1:], 0.0),
                "include the starting point")
    expect_fail(check.rosenbrock_path(sol["optimize_rosenbrock"], 2 * sol["distance_adam"]), "distance_adam")


# --------------------------------------------------------------------------------------------- 9. filter normalization
def test_filter_direction(sol):
    assert check.filter_direction(sol["filter_normalized_direction"])

    def layer_normalized(model, generator=None):
        out = []
        for W in model.parameters():
            D = torch.randn(W.shape, generator=generator, dtype=W.dtype)
            out.append(torch.zeros_like(W) if W.dim() <= 1 else D * W.detach().norm() / D.norm())
        return out

    def unit_filters(model, generator=None):
        d = sol["filter_normalized_direction"](model, generator)
        return [t if t.dim() <= 1 else t / t.flatten(1).norm(dim=1).view(-1, 1) for t in d]

    def random_bias(model, generator=None):
        d = sol["filter_normalized_direction"](model, generator)
        return [torch.randn_like(t) if t.dim() <= 1 else t for t in d]

    expect_fail(check.filter_direction(layer_normalized), "whole layer")
    expect_fail(check.filter_direction(unit_filters), "norm 1")
    expect_fail(check.filter_direction(random_bias), "should be zero")
    expect_fail(check.filter_direction(lambda model, generator=None: [p.detach().clone() if p.dim() > 1 else
                                                                       torch.zeros_like(p)
                                                                       for p in model.parameters()]),
                "the weight itself")
    expect_fail(check.filter_direction(lambda model, generator=None: []), "one tensor per")


def test_filter_direction_agrees_with_landscape_module(sol):
    landscape = pytest.importorskip("dldna_lite.landscape")
    net = ex._small_relu_net()
    d = landscape.random_direction(net, norm="filter", ignore_1d=True, generator=torch.Generator().manual_seed(0))
    for t, p in zip(d, net.parameters()):
        if p.dim() > 1:
            torch.testing.assert_close(ex._filter_norms(t), ex._filter_norms(p.detach()))
    assert check.filter_direction(lambda model, generator=None: landscape.random_direction(
        model, norm="filter", ignore_1d=True, generator=generator))


# --------------------------------------------------------------------------------------------- 10. power iteration
def test_exact_hessian_matches_autograd_functional():
    net, loss_fn, (X, y) = ex.tiny_hessian_problem()
    H = ex.exact_hessian(net, loss_fn, (X, y))
    P = sum(p.numel() for p in net.parameters())
    assert H.shape == (P, P) and torch.allclose(H, H.T, atol=1e-10)
    # independent reference: a finite difference of autograd gradients along a random direction
    v = torch.randn(P, dtype=torch.float64)
    flat = torch.cat([p.detach().flatten() for p in net.parameters()])

    def grad_at(vec):
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(vec, net.parameters())
        net.zero_grad()
        loss_fn(net(X), y).backward()
        return torch.cat([p.grad.flatten() for p in net.parameters()])

    h = 1e-5
    fd = (grad_at(flat + h * v) - grad_at(flat - h * v)) / (2 * h)
    torch.nn.utils.vector_to_parameters(flat, net.parameters())
    torch.testing.assert_close(H @ v, fd, rtol=1e-6, atol=1e-8)


def test_power_iteration(sol):
    assert check.power_iteration(sol["top_eigenvalue"])
    net, loss_fn, data = ex.tiny_hessian_problem()
    trace = torch.linalg.eigvalsh(ex.exact_hessian(net, loss_fn, data)).sum().item()
    expect_fail(check.power_iteration(lambda *a: trace), "trace")
    expect_fail(check.power_iteration(lambda m, lf, d, iters: sol["top_eigenvalue"](m, lf, d, 1)), "exact")

    def perturbs(model, loss_fn, data, iters):
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        return 1.0

    expect_fail(check.power_iteration(perturbs), "parameters changed")


def test_power_iteration_agrees_with_hessian_module():
    hessian = pytest.importorskip("dldna_lite.hessian")
    net, loss_fn, data = ex.tiny_hessian_problem()
    values, _ = hessian.top_eigenvalues(net, loss_fn, data, k=1, max_iter=500, tol=1e-10,
                                        generator=torch.Generator().manual_seed(0))
    assert math.isclose(values[0], ex.top_eigenvalue_reference(net, loss_fn, data), rel_tol=1e-3)


# --------------------------------------------------------------------------------------------- 11. checkpointing
def test_checkpoint_reference_counts():
    for layers in (2, 4, 8):
        plain, _ = ex.checkpoint_counts(layers, 2)
        assert plain == layers + 1  # the input and one ReLU output per layer


def test_checkpoint_memory(sol):
    assert check.checkpoint_memory(sol["count_saved"], sol["saved_plain"], sol["saved_checkpointed"])
    plain, ckpt = ex.checkpoint_counts()
    assert ckpt < plain

    def every_pack(model, x):
        n = 0

        def pack(t):
            nonlocal n
            n += 1
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
        return n

    expect_fail(check.checkpoint_memory(every_pack, plain, ckpt), "count each storage once")
    expect_fail(check.checkpoint_memory(sol["count_saved"], plain, plain), "saved_checkpointed")
    expect_fail(check.checkpoint_memory(lambda m, x: 3.0, plain, ckpt), "should return an int")


# --------------------------------------------------------------------------------------------- 12. grokking
def test_grokking_weight_decay_values():
    assert check.grokking_weight_decay(0.99, 0.006, False)
    expect_fail(check.grokking_weight_decay(0.99, 0.006, True), "your own numbers")
    expect_fail(check.grokking_weight_decay(0.3, 0.006, False), "should generalise")
    expect_fail(check.grokking_weight_decay(0.99, 0.97, False), "weight_decay=0")
    expect_fail(check.grokking_weight_decay(99.0, 0.6, False), "fraction")
    (X_tr, y_tr), (X_val, y_val) = ex.modular_addition_data()
    p = ex.GROKKING_SETUP["p"]
    assert len(X_tr) + len(X_val) == p * p and torch.equal((X_tr.sum(1) % p), y_tr)
    assert ex.ModularAdditionMLP()(X_val[:5]).shape == (5, p)


# --------------------------------------------------------------------------------------------- 13. double descent
def test_double_descent(sol):
    assert check.double_descent(sol["test_error"], sol["k_peak"])
    assert sol["k_peak"] == ex.DOUBLE_DESCENT_SETUP["n_train"]  # the peak sits at the interpolation threshold
    # independent reference: the pseudo-inverse gives the same minimum-norm fit away from the peak
    F_tr, y_tr, F_te, y_te = ex.double_descent_data()
    B = torch.linalg.pinv(F_tr[:, :1000]) @ torch.nn.functional.one_hot(y_tr, 10).double()
    assert math.isclose((F_te[:, :1000] @ B).argmax(1).ne(y_te).double().mean().item(),
                        ex.double_descent_reference(1000), abs_tol=1e-3)
    expect_fail(check.double_descent(sol["test_error"], ex.DOUBLE_DESCENT_SETUP["max_features"]), "*best* k")
    expect_fail(check.double_descent(sol["test_error"], 150), "worst at k = 200")

    def train_error(k):
        B = torch.linalg.lstsq(F_tr[:, :k], torch.nn.functional.one_hot(y_tr, 10).double()).solution
        return (F_tr[:, :k] @ B).argmax(1).ne(y_tr).double().mean().item()

    expect_fail(check.double_descent(train_error, 200), "test_error(50)")
    expect_fail(check.double_descent(stub, 200), "not done yet")


# --------------------------------------------------------------------------------------------- the notebooks, solved
@pytest.mark.parametrize("md", NOTEBOOKS, ids=lambda p: p.name)
def test_student_notebook_passes_every_check_with_the_solutions_filled_in(md):
    from nbclient import NotebookClient

    nb = fill_in(nbformat.read(md.with_suffix(".ipynb"), as_version=4), SOLUTIONS)
    n_checks = sum(c.cell_type == "code" and c.source.lstrip().startswith("check.") for c in nb.cells)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "✗" not in text, text
    assert text.count("✓") == n_checks >= 2, text
