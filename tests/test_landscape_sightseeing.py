"""dldna_lite.landscape.sightseeing: a trained plane that draws a picture in the loss (Skorokhodov & Burtsev 2019)."""
import numpy as np
import pytest
import torch
from torch.func import functional_call
from torch.nn import functional as F

from dldna_lite import landscape as L
from dldna_lite import models
from landscape_helpers import data


def _tiny(seed=0):
    torch.manual_seed(seed)
    return models.mlp([20, 16, 4])


@pytest.mark.parametrize("pattern, match", [(np.ones((3, 3)), "both values"), (np.zeros((3, 3)), "both values"),
                                            (np.array([1, 0, 1]), "2D boolean")])
def test_a_pattern_needs_two_dimensions_and_both_values(pattern, match):
    with pytest.raises(ValueError, match=match):
        L.fit_pattern(_tiny(), data(), pattern, steps=1)


def test_low_must_be_below_high():
    with pytest.raises(ValueError, match="low < high"):
        L.fit_pattern(_tiny(), data(), L.SMILEY, low=3.0, high=1.0, steps=1)


def test_pattern_coords_put_row_zero_at_the_top():
    a, b = L.pattern_coords(np.zeros((3, 5)), 2.0)
    assert a.reshape(3, 5)[0].tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert b.reshape(3, 5)[:, 0].tolist() == [2.0, 0.0, -2.0]


def test_a_tiny_fit_draws_the_smiley_and_leaves_the_model_alone():
    model = _tiny()
    before = L.flat_params(model)
    plane = L.fit_pattern(model, data(n=16), steps=200, lr=2e-2, generator=torch.Generator().manual_seed(0),
                          progress=False)
    assert plane["losses"].shape == L.SMILEY.shape and len(plane["objective"]) == 200
    assert plane["objective"][-1] < 0.5 * plane["objective"][0]
    assert L.pattern_agreement(plane) >= 0.95 and L.pattern_agreement(plane, "picture") >= 0.75
    torch.testing.assert_close(L.flat_params(model), before)


def test_plane_losses_equal_a_direct_functional_call():
    model, (X, y) = _tiny(), data(n=32)
    plane = L.fit_pattern(model, (X, y), steps=3, generator=torch.Generator().manual_seed(1), progress=False)
    a, b = L.pattern_coords(L.SMILEY, plane["span"])
    for k in (0, 10, 40, 80):
        params = {n: plane["w0"][n] + a[k] * plane["u"][n] + b[k] * plane["v"][n] for n in plane["w0"]}
        direct = F.cross_entropy(functional_call(model, params, (X,)), y).item()
        assert plane["losses"].reshape(-1)[k] == pytest.approx(direct, rel=1e-5)
    finer = L.plane_losses(model, (X, y), plane, a[:5].numpy(), b[:5].numpy(), chunk=2)
    np.testing.assert_allclose(finer, plane["losses"].reshape(-1)[:5], rtol=1e-6)


def test_agreement_counts_pixels_on_the_right_side_of_the_midpoint():
    pattern = np.array([[True, False], [False, False]])
    plane = dict(pattern=pattern, low=0.0, high=2.0, losses=np.array([[0.5, 1.5], [0.9, 3.0]]))
    assert L.pattern_agreement(plane) == 0.75


def test_agreement_by_part_sees_a_plane_that_is_high_everywhere():
    pattern = np.array([[True, False], [False, False]])
    flat_high = dict(pattern=pattern, low=0.0, high=2.0, losses=np.full((2, 2), 2.5))
    assert L.pattern_agreement(flat_high) == 0.75 and L.pattern_agreement(flat_high, "background") == 1.0
    assert L.pattern_agreement(flat_high, "picture") == 0.0
    with pytest.raises(ValueError, match="all, picture, background"):
        L.pattern_agreement(flat_high, "pixels")
