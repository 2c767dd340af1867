import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from dldna_lite import widgets  # noqa: E402


def _draw(lr, method):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.set_title(f"{method} {lr}")
    return fig


def test_static_html_has_one_frame_per_combination_and_a_stable_id():
    controls = {"lr": [0.1, 0.3, 1.0], "method": ["sgd", "adam"]}
    html1 = widgets.static_html(_draw, controls, {"lr": 0.3, "method": "adam"})
    html2 = widgets.static_html(_draw, controls, {"lr": 0.3, "method": "adam"})
    assert html1 == html2  # deterministic: stored outputs don't change between builds
    frames = re.search(r"_frames = (\{.*?\});", html1).group(1)
    assert frames.count('":') == 6
    assert 'type="range"' in html1 and "<select" in html1 and 'value="1"' in html1


def test_bad_controls(monkeypatch):
    with pytest.raises(ValueError, match="at least one control"):
        widgets.interactive_figure(_draw)
    with pytest.raises(ValueError, match="not one of"):
        widgets.interactive_figure(_draw, initial={"lr": 5}, lr=[1, 2], method=["a"])
    monkeypatch.setenv("DLDNA_STATIC_WIDGETS", "1")
    with pytest.raises(ValueError, match="too many frames"):
        widgets.interactive_figure(_draw, lr=list(range(20)), method=list("abcd"))


def test_live_mode_builds_ipywidgets(monkeypatch):
    monkeypatch.setenv("DLDNA_STATIC_WIDGETS", "0")
    box = widgets.interactive_figure(_draw, lr=[0.1, 1.0], method=["sgd", "adam"])
    slider, dropdown = box.children[0].children
    assert slider.value == 0.1 and dropdown.value == "sgd"
    slider.value = 1.0  # the callback redraws without error


def test_frames_are_palette_pngs_and_the_stated_size_is_the_real_one():
    import base64
    import io

    from PIL import Image

    html = widgets.static_html(_draw, {"lr": [0.1, 1.0], "method": ["sgd"]}, {"lr": 0.1, "method": "sgd"})
    frames = re.findall(r'"(iVBOR[A-Za-z0-9+/=]+)"', html)
    assert len(frames) == 2
    assert all(Image.open(io.BytesIO(base64.b64decode(f))).mode == "P" for f in frames)
    stated = int(re.search(r"2 precomputed frames, (\d+) kB", html).group(1))
    assert abs(stated - len(html.encode()) / 1024) < 1      # the widget's whole weight on the page, within 1 kB


@pytest.mark.parametrize("figsize", [(4.2, 3.3), (2.999, 3.0001), (7.5, 3.05)])
def test_frame_has_the_pixels_of_matplotlibs_png(figsize):
    """A static frame is read from the raw canvas, not from matplotlib's PNG: same size, same pixels after the
    palette (fractional pixel sizes included, which both truncate)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    fig, ax = plt.subplots(figsize=figsize)
    ax.contourf(np.random.default_rng(0).random((20, 20)), cmap="viridis")
    ax.set_title("a title")
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=widgets.DPI)
    reference = Image.open(png).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).convert("RGB")
    frame = Image.open(io.BytesIO(base64.b64decode(widgets._figure_png(fig)))).convert("RGB")
    assert frame.size == reference.size
    assert np.array_equal(np.asarray(frame), np.asarray(reference))
