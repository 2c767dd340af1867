"""dldna_lite.landscape.topology: Parseval's identity, ripser's own lower-star routine, surfaces with known minima."""
import numpy as np
import pytest

from dldna_lite import landscape as L
from dldna_lite import surfaces

WELLS = np.array([[1.0, -1.5, -1.0, 0.5, 0.5], [0.7, 1.5, 1.0, 0.6, 0.4], [0.5, 0.0, 2.0, 0.4, 0.4]])


def _three_wells(nx=48, ny=40):
    xs, ys = np.linspace(-3, 3, nx), np.linspace(-3, 3, ny)
    return xs, ys, surfaces.GaussianSurface(WELLS, 2.0).grid(xs, ys)

@pytest.mark.parametrize("wavelet", ["haar", "db2", "sym4", "coif1"])
def test_wavelet_energy_parseval(wavelet):
    Z = np.random.default_rng(0).normal(size=(32, 32)) + np.linspace(0, 3, 32)[None, :] ** 2
    e = L.wavelet_energy(Z, wavelet)
    assert e["approx"] + sum(e["detail"]) == pytest.approx(np.sum(Z ** 2), rel=1e-10)
    assert e["total"] == pytest.approx(np.sum(Z ** 2))

def test_wavelet_energy_is_not_parseval_for_a_biorthogonal_wavelet():
    Z = np.random.default_rng(0).normal(size=(32, 32))
    e = L.wavelet_energy(Z, "bior2.2")
    assert abs(e["approx"] + sum(e["detail"]) - e["total"]) > 1e-3 * e["total"]

def test_wavelet_energy_separates_smooth_from_rough():
    x = np.linspace(-1, 1, 64)
    smooth = x[None, :] ** 2 + x[:, None] ** 2
    e = L.wavelet_energy(smooth, "haar", center=True)
    # a differentiable surface: Haar details ~ slope * spacing, so each finer level holds ~1/4 of the energy
    d = np.array(e["detail"])
    np.testing.assert_allclose(d[-2:] / d[-3:-1], 0.25, atol=0.005)
    # white noise: equal energy per coefficient, so the finest level holds 3/4 of it
    noise = L.wavelet_energy(np.random.default_rng(0).normal(size=(64, 64)), "haar", center=True)
    assert noise["detail"][-1] / noise["total"] == pytest.approx(0.75, abs=0.03)
    with pytest.raises(ValueError, match="wavelet"):
        L.wavelet_energy(smooth, "no-such-wavelet")

def test_persistence_counts_the_known_minima_and_matches_ripser_lower_star():
    from ripser import lower_star_img
    from scipy.ndimage import minimum_filter

    xs, ys, Z = _three_wells()
    h0, h1 = L.sublevel_persistence(Z)
    assert L.count_minima(h0, min_persistence=0.05) == 3
    ring = np.ones((3, 3), bool)
    ring[1, 1] = False
    strict = Z < minimum_filter(Z, footprint=ring, mode="constant", cval=np.inf)
    assert strict.sum() == 3                                                  # independent count of strict minima
    ref = lower_star_img(Z.astype(np.float32))
    np.testing.assert_allclose(np.sort(h0, 0), np.sort(ref, 0), rtol=1e-5)
    # the three wells have depths 1.0, 0.7, 0.5 below the plateau 2.0: births at the bottoms
    np.testing.assert_allclose(np.sort(h0[:, 0]), 2.0 - np.sort(WELLS[:, 0])[::-1], atol=0.02)
    assert np.all(h1[:, 1] - h1[:, 0] < 0.01)                                 # no loop of any size

def test_persistence_h1_of_a_ring_valley_around_a_bump():
    x = np.linspace(-3, 3, 61)                                                # contains 0: the bump top is on the grid
    X, Y = np.meshgrid(x, x)
    R = np.hypot(X, Y)
    Z = (R - 2) ** 2 + 0.5 * np.exp(-R ** 2)
    h0, h1 = L.sublevel_persistence(Z)
    life = h1[:, 1] - h1[:, 0]
    assert np.sum(life > 0.5) == 1
    birth, death = h1[np.argmax(life)]
    assert death == pytest.approx(Z[30, 30])                                   # filled when the level reaches the top
    assert birth < 0.1 and L.count_minima(h0, 0.05) == 1

def test_diagram_distance_zero_for_same_and_positive_for_different():
    _, _, Z = _three_wells()
    h0 = L.sublevel_persistence(Z)[0]
    assert L.diagram_distance(h0, h0) == 0
    shallower = L.sublevel_persistence(0.5 * Z)[0]
    assert L.diagram_distance(h0, shallower) > 0.05
    with pytest.raises(ValueError, match="non-finite"):
        L.sublevel_persistence(np.array([[0, np.nan], [1, 2]]))


def test_basins_counts_significant_minima_and_loops():
    xs, ys, Z = _three_wells()
    out = L.basins(Z)
    assert out["minima"] == 3 and out["loops"] == 0 and len(out["h0"]) >= 3
    h0, _ = L.sublevel_persistence(Z)
    assert out["minima"] == L.count_minima(h0, 0.05 * np.ptp(Z))
    noisy = Z + 0.001 * np.random.default_rng(0).normal(size=Z.shape)
    assert L.basins(noisy)["minima"] == 3 and L.basins(noisy, fraction=0.0)["minima"] > 3
    with pytest.raises(ValueError, match="fraction"):
        L.basins(Z, fraction=1.5)
