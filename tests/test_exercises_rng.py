"""No checker's verdict depends on the caller's global random state (issue 29): every checker is run on right and
wrong answers -- including answers that draw from torch's, NumPy's and Python's global generators -- under two
deliberately different global states, and must print the same verdicts; afterwards the caller's state is as it was."""
from __future__ import annotations

import math
import random

import numpy as np
import torch
from test_exercises import solutions_namespace

from dldna_lite.exercises import check


def _disturb(seed: int) -> None:
    torch.manual_seed(seed), random.seed(seed), np.random.seed(seed)
    torch.rand(seed % 7 + 1), random.random(), np.random.rand()  # and move the streams on a little


def _answers():
    ns = solutions_namespace("ex-init-variance", "ex-gd-quadratic", "ex-adam-step", "ex-lion", "ex-filter-direction",
                             "ex-power-iteration", "ex-checkpointing")

    def numpy_kaiming(W):  # legitimate, but from NumPy's global generator
        with torch.no_grad():
            return W.copy_(torch.from_numpy(np.random.normal(0, math.sqrt(2 / W.shape[1]), tuple(W.shape))))

    def global_direction(model, generator=None):  # wrong: ignores its generator
        return ns["filter_normalized_direction"](model, None)

    def python_start(model, data, loss_fn, iters):  # power iteration started from Python's global generator
        torch.manual_seed(random.randrange(10 ** 6))
        return ns["top_eigenvalue"](model, data, loss_fn, iters)

    return [("init_variance", (ns["xavier_normal_"], ns["kaiming_normal_"])),
            ("init_variance", (ns["xavier_normal_"], numpy_kaiming)),
            ("init_variance", (ns["xavier_normal_"], lambda W: torch.nn.init.orthogonal_(W))),
            ("gd_quadratic", (ns["gd"], ns["find_lr_max"])),
            ("gd_quadratic", (ns["gd"], lambda A, x0: 0.3 + 0.01 * random.random())),
            ("adam_step", (ns["adam_step"],)),
            ("lion_step", (ns["lion_step"], ns["update_over_lr"])),
            ("filter_direction", (ns["filter_normalized_direction"],)),
            ("filter_direction", (global_direction,)),
            ("power_iteration", (ns["top_eigenvalue"],)),
            ("power_iteration", (python_start,)),
            ("checkpoint_memory", (ns["count_saved"], ns["Checkpointed"]))]


def test_verdicts_do_not_depend_on_the_global_random_state():
    answers = _answers()
    verdicts = []
    for seed in (1, 2):
        _disturb(seed)
        verdicts.append([(r.passed, r.message) for r in (getattr(check, name)(*args) for name, args in answers)])
        after = torch.rand(3), random.random(), np.random.rand()
        _disturb(seed)
        expected = torch.rand(3), random.random(), np.random.rand()
        assert torch.equal(after[0], expected[0]) and after[1:] == expected[1:]  # the caller's streams left alone
    for (name, _), first, second in zip(answers, *verdicts):
        assert first == second, (name, first, second)
    passed = [p for p, _ in verdicts[0]]
    assert passed == [True, True, False, True, False, True, True, True, False, True, True, True], verdicts[0]
