"""The built book in a real browser: headless Chromium (Debian's ``chromium``) driven by playwright, offline.

For every page of the table of contents, served from a local ``http.server``:

* the page loads with no JavaScript console error and no uncaught exception;
* nothing is requested from a host other than this machine (the book must work offline);
* every formula is typeset by the bundled MathJax, and every Markdown table printed by a cell is a table;
* every static slider renders its figure, and moving each of its controls changes the figure
  (both the image source and the pixels of the widget's screenshot);
* the page weighs at most 2 MB (its HTML plus the images it references; shared CSS/JS is not counted).

A screenshot of each page is saved in ``_build/screenshots/``. ``make test`` runs this on the quick book it builds
into ``_build/quick/_build/html``; ``make check-html`` runs it on the cpu book in ``_build/html``. Without a built
book or a browser the tests are skipped, unless ``DLDNA_REQUIRE_BROWSER=1`` (set by ``make``) makes that a failure.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

pytestmark = [pytest.mark.html, pytest.mark.built_book]

ROOT = Path(__file__).resolve().parents[1]
HTML_DIR = Path(os.environ.get("DLDNA_HTML_DIR", ROOT / "_build/quick/_build/html"))
SCREENSHOTS = ROOT / "_build" / "screenshots"
REQUIRED = os.environ.get("DLDNA_REQUIRE_BROWSER", "0") == "1"
MAX_PAGE_BYTES = 2 * 1024 * 1024
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TABLE_RULE = re.compile(r"\|\s*[-\u2013\u2014:]+\s*\|")   # a table's |---| rule (dashes typographic or not)


def toc_pages() -> list[str]:
    """Every document of ``_toc.yml`` (root first), as ``path/without/suffix``."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [chapter["file"] for chapter in part.get("chapters", [])]
    return pages


def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (DLDNA_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server():
    if not (HTML_DIR / "index.html").exists():
        _unavailable(f"no built book in {HTML_DIR}: run `make book-quick` (or set DLDNA_HTML_DIR)")
    handler = functools.partial(_QuietHandler, directory=str(HTML_DIR))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]' -c constraints.txt)")
    if not Path(CHROMIUM).exists():
        _unavailable("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield chromium
        chromium.close()


class PageReport:
    """What a page did while it loaded: console errors, uncaught exceptions, requests to other hosts."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.external: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.route("**/*", self._route)

    def _route(self, route):
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.external.append(url)
            route.abort()


@pytest.fixture(scope="module")
def open_page(server, browser):
    opened = {}

    def _open(doc: str):
        if doc in opened:
            return opened[doc]
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        report = PageReport(page)
        page.goto(f"{server}/{doc}.html", wait_until="load")
        page.wait_for_function("() => !window.MathJax || !MathJax.startup || MathJax.startup.promise", timeout=30000)
        page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
        opened[doc] = page, report
        return page, report

    yield _open
    for page, _ in opened.values():
        page.close()


def page_bytes(doc: str) -> int:
    """Bytes of the page's HTML plus the local images it references (``data:`` images are inside the HTML)."""
    html_path = HTML_DIR / f"{doc}.html"
    html = html_path.read_text(encoding="utf-8")
    total = html_path.stat().st_size
    for src in set(re.findall(r'<img[^>]*\ssrc="([^"]+)"', html)):
        if not src.startswith(("data:", "http:", "https:")):
            image = (html_path.parent / src).resolve()
            total += image.stat().st_size if image.exists() else 0
    return total


@pytest.mark.parametrize("doc", toc_pages())
def test_page_is_built_light_offline_and_error_free(doc, open_page):
    assert (HTML_DIR / f"{doc}.html").exists(), f"{doc} is in _toc.yml but was not built"
    page, report = open_page(doc)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{doc.replace('/', '_')}.jpg"), full_page=True, type="jpeg", quality=60)
    weight = page_bytes(doc)
    print(f"{doc}: {weight / 1e6:.2f} MB")
    assert report.external == [], f"requests to other hosts: {report.external}"
    assert report.errors == [], f"console errors: {report.errors}"
    unrendered = page.locator("p", has_text=TABLE_RULE).count()
    assert unrendered == 0, f"{unrendered} Markdown table(s) shown as text instead of a table"
    assert weight <= MAX_PAGE_BYTES, f"{doc} weighs {weight / 1e6:.2f} MB (limit {MAX_PAGE_BYTES / 1e6:.1f} MB)"


@pytest.mark.parametrize("doc", toc_pages())
def test_every_formula_is_typeset(doc, open_page):
    page, _ = open_page(doc)
    formulas = page.locator("span.math, div.math").count()
    typeset = page.locator("mjx-container").count()
    assert typeset >= formulas, f"{formulas} formulas but only {typeset} typeset by MathJax"
    if formulas:
        assert page.locator("mjx-container merror").count() == 0, "MathJax reported an error in a formula"


def _controls(widget):
    return [widget.locator("input[type=range], select").nth(i)
            for i in range(widget.locator("input[type=range], select").count())]


def _move(control) -> None:
    """Move a slider one step (right, or left at its end) or pick another option of a dropdown."""
    if control.evaluate("el => el.tagName") == "SELECT":
        n, value = control.evaluate("el => [el.options.length, el.selectedIndex]")
        control.select_option(index=(value + 1) % n)
    else:
        value, top = control.evaluate("el => [Number(el.value), Number(el.max)]")
        control.focus()
        control.press("ArrowRight" if value < top else "ArrowLeft")


@pytest.mark.parametrize("doc", toc_pages())
def test_every_slider_changes_its_figure(doc, open_page):
    page, _ = open_page(doc)
    widgets = page.locator(".dldna-widget")
    for i in range(widgets.count()):
        widget = widgets.nth(i)
        image = widget.locator("img")
        widget.scroll_into_view_if_needed()
        assert image.evaluate("img => img.complete && img.naturalWidth > 0"), f"widget {i}: figure not rendered"
        controls = _controls(widget)
        assert controls, f"widget {i} has no control"
        for k, control in enumerate(controls):
            before_src, before_pixels = image.get_attribute("src"), image.screenshot()
            _move(control)
            src_changed = image.get_attribute("src") != before_src
            pixels_changed = image.screenshot() != before_pixels
            assert src_changed, f"widget {i}, control {k}: the figure did not change"
            assert pixels_changed, f"widget {i}, control {k}: the pixels did not change"
