"""Interactive figures that work in a live kernel *and* in the static HTML book.

``interactive_figure(draw, lr=[...], method=[...])`` precomputes nothing itself: ``draw(**values)`` must be cheap
(it should plot results that the notebook already computed). Two renderings of the same controls:

* live kernel (Jupyter, Colab, Binder): ipywidgets sliders/dropdowns whose callback calls ``draw`` and re-plots;
* static book (``$DLDNA_STATIC_WIDGETS=1``, set by ``make book``): every combination is drawn once to a PNG and the
  page gets plain HTML controls with a few lines of JavaScript that swap ``data:`` images -- no kernel, no network.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
from typing import Callable, Sequence

import matplotlib.pyplot as plt
from PIL import Image

from .notebook import in_book_build

MAX_STATIC_FRAMES = 64


def static_mode() -> bool:
    """True when rendering for the static HTML book (:func:`dldna_lite.notebook.in_book_build`)."""
    return in_book_build()


def _is_numeric(values: Sequence) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _check_controls(controls: dict[str, Sequence]) -> dict[str, list]:
    if not controls:
        raise ValueError("give at least one control, e.g. lr=[0.01, 0.1]")
    out = {}
    for name, values in controls.items():
        values = list(values)
        if not values:
            raise ValueError(f"control {name!r} has no values")
        out[name] = values
    n = 1
    for values in out.values():
        n *= len(values)
    if static_mode() and n > MAX_STATIC_FRAMES:
        raise ValueError(f"{n} combinations is too many frames for the static book (max {MAX_STATIC_FRAMES})")
    return out


DPI = 80   # the static frames' resolution (a 7.5-inch figure is 600 pixels wide, the page column)


def _figure_png(fig) -> str:
    """The figure as a base64 PNG with a 256-colour palette: line plots and contour maps look the same as the
    true-colour PNG and weigh about 2.5x less (the optimizers page went from 2.4 MB to under 1 MB)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="rgba", dpi=DPI)   # raw pixels: matplotlib's own PNG encoder took 40% of a frame's time
    width, height = (int(x * DPI) for x in fig.get_size_inches())    # Agg truncates the same way
    plt.close(fig)
    if buf.getbuffer().nbytes != 4 * width * height:
        raise RuntimeError(f"matplotlib wrote {buf.getbuffer().nbytes} bytes for a {width}x{height} RGBA frame")
    image = Image.frombuffer("RGBA", (width, height), buf.getbuffer(), "raw", "RGBA", 0, 1)
    image = image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode("ascii")


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def static_html(draw: Callable[..., "plt.Figure"], controls: dict[str, list], initial: dict) -> str:
    """HTML with one ``<input type=range>`` or ``<select>`` per control and an ``<img>`` swapped by JavaScript."""
    names = list(controls)
    frames = {}
    for combo in itertools.product(*(range(len(controls[n])) for n in names)):
        values = {n: controls[n][i] for n, i in zip(names, combo)}
        frames["|".join(map(str, combo))] = _figure_png(draw(**values))
    uid = "dw" + hashlib.sha1(json.dumps(sorted(frames.items())).encode()).hexdigest()[:10]
    start = [controls[n].index(initial[n]) for n in names]
    rows = []
    for k, n in enumerate(names):
        values = controls[n]
        if _is_numeric(values):
            widget = (f'<input type="range" min="0" max="{len(values) - 1}" step="1" value="{start[k]}" '
                      f'data-labels=\'{json.dumps([_label(v) for v in values])}\' oninput="{uid}_update()">'
                      f' <output>{html.escape(_label(values[start[k]]))}</output>')
        else:
            opts = "".join(f'<option value="{i}"{" selected" if i == start[k] else ""}>{html.escape(_label(v))}</option>'
                           for i, v in enumerate(values))
            widget = f'<select onchange="{uid}_update()">{opts}</select>'
        rows.append(f'<label style="display:block;margin:2px 0"><code>{html.escape(n)}</code> {widget}</label>')
    first = frames["|".join(map(str, start))]
    script = f"""<script>
var {uid}_frames = {json.dumps(frames)};
function {uid}_update() {{
  var box = document.getElementById("{uid}");
  var inputs = box.querySelectorAll("input, select");
  var key = [];
  inputs.forEach(function (el) {{
    key.push(el.value);
    if (el.type === "range") {{ el.nextElementSibling.textContent = JSON.parse(el.dataset.labels)[el.value]; }}
  }});
  box.querySelector("img").src = "data:image/png;base64," + {uid}_frames[key.join("|")];
}}
</script>"""
    controls_html = "".join(rows)
    image = f'<img alt="interactive figure" src="data:image/png;base64,{first}"/>'
    size = len(controls_html) + len(image) + len(script)          # what the widget adds to the page, in bytes
    note = (f'<div class="dldna-widget-size" style="font-size:smaller;color:#666">{len(frames)} precomputed '
            f'frames, {size / 1024:.0f} kB; the slider works without a kernel.</div>')
    return f'<div id="{uid}" class="dldna-widget">{controls_html}{image}{note}</div>{script}'


def interactive_figure(draw: Callable[..., "plt.Figure"], initial: dict | None = None, **controls: Sequence):
    """Show ``draw(**values)`` with one control per keyword (numbers -> slider, anything else -> dropdown).

    ``draw`` returns a matplotlib Figure. Returns the ipywidgets box (live) or the HTML object (static book).
    """
    controls = _check_controls(controls)
    initial = {n: (initial or {}).get(n, v[0]) for n, v in controls.items()}
    for n, v in initial.items():
        if v not in controls[n]:
            raise ValueError(f"initial value {v!r} of {n!r} is not one of {controls[n]}")
    from IPython.display import HTML, display

    if static_mode():
        out = HTML(static_html(draw, controls, initial))
        display(out)
        return out
    import ipywidgets as widgets

    inputs = {}
    for n, values in controls.items():
        options = [(_label(v), v) for v in values]
        if _is_numeric(values):
            inputs[n] = widgets.SelectionSlider(options=options, value=initial[n], description=n,
                                                continuous_update=False)
        else:
            inputs[n] = widgets.Dropdown(options=options, value=initial[n], description=n)
    output = widgets.Output()

    def redraw(_change=None):
        with output:
            output.clear_output(wait=True)
            fig = draw(**{n: w.value for n, w in inputs.items()})
            display(fig)
            plt.close(fig)

    for w in inputs.values():
        w.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox(list(inputs.values())), output])
    display(box)
    return box
