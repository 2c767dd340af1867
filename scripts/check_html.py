"""Drive the built book in headless Chromium, offline: every static slider must swap its image, math must render,
and no page may request anything outside localhost or log a console error.

Needs Debian's `chromium` and PyPI's `playwright` (no browser download): `make check-html` after `make book`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

# Console errors of stock Jupyter Book 1 pages that are not ours (see shared notes): allowed.
KNOWN = ("THEBE_JS_URL", "invalid theme mode")


def check_page(browser, url: str) -> list[str]:
    page = browser.new_page()
    errors, external = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    def route(r):
        if r.request.url.startswith(("http://127.0.0.1", "data:", "blob:")):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(url)
    problems = []
    widgets = page.locator(".dldna-widget")
    for i in range(widgets.count()):
        w = widgets.nth(i)
        before = w.locator("img").get_attribute("src")
        ranges = w.locator("input[type=range]")
        if ranges.count():
            ranges.first.focus()
            for key in ("ArrowRight", "ArrowLeft", "ArrowLeft"):
                page.keyboard.press(key)
                if w.locator("img").get_attribute("src") != before:
                    break
        else:
            w.locator("select").first.select_option(index=1)
        if w.locator("img").get_attribute("src") == before:
            problems.append(f"widget {i} did not change its image")
    if page.locator(".math").count() and not page.locator("mjx-container").count():
        problems.append("math is not rendered (MathJax)")
    problems += [f"external request {u}" for u in external]
    problems += [f"console: {e}" for e in errors if not any(k in e for k in KNOWN)]
    page.close()
    return problems


def main(root: str = "_build/html", port: int = 8765) -> int:
    pages = sorted(Path(root).glob("book/*.html")) + [Path(root) / "intro.html"]
    failed = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        for path in pages:
            rel = path.relative_to(root).as_posix()
            problems = check_page(browser, f"http://127.0.0.1:{port}/{rel}")
            print(f"{'ok ' if not problems else 'BAD'} {rel}" + "".join(f"\n    {q}" for q in problems))
            failed += bool(problems)
        browser.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
