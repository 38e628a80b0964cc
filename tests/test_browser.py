"""The built book as a reader meets it: every page opened in a real, offline browser.

The test serves ``_build/html`` on the loopback address and opens **every** page in headless
Chromium (Playwright's Python package driving the system's Chromium: no browser download).
Requests to any other host are blocked, as in a classroom with no network. It fails on:

- a formula left untypeset (raw TeX, a MathJax error such as an unknown macro or a double
  subscript, or a "$" left in the prose where Markdown did not parse the math);
- a failed request to the local server, or any request the page makes to another host;
- a broken image, or a figure that did not render (matplotlib's ``<Figure size ...>`` text);
- a console error or an uncaught exception;
- an error output cell;
- a page with no title;
- a code cell wider than its box (the reader would scroll sideways mid-statement).

It also checks the reader's conveniences offline: search finds a word, the "download this page
as .ipynb" link serves the notebook, dark mode switches, and a chapter fits a 390-px phone.

A screenshot of every page goes to ``$BROWSER_SCREENSHOTS`` (default: a temporary folder,
printed at the end) for a person to look through.

Without a built book or without Chromium the test is skipped with the reason; with
``BROWSER_TEST=require`` (what ``.ci/run`` sets after building the book) it fails instead.
Run it locally after building the book:

    BROWSER_TEST=require pytest tests/test_browser.py
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
REQUIRED = os.environ.get("BROWSER_TEST", "") == "require"

#: Pages that Sphinx writes for its own machinery, not for reading.
SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
#: The chapter opened at phone width.
PHONE_PAGE = "book/part1_sampling/gaussian_distributions.html"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"browser test required (BROWSER_TEST=require) but {reason}")
    pytest.skip(reason)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _pages() -> list[str]:
    if not (HTML / "index.html").is_file():
        return []
    pages = []
    for path in sorted(HTML.rglob("*.html")):
        rel = path.relative_to(HTML).as_posix()
        if rel.startswith(("_static/", "_sources/", "_images/")) or rel in SKIP_PAGES:
            continue
        if 'http-equiv="refresh"' in path.read_text(errors="replace")[:2000].lower():
            continue  # a redirect (the root index.html points at book/index.html)
        pages.append(rel)
    return pages


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    failures: list[str]

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None):
        self.failures.append(f"{code} {self.path}")
        super().send_error(code, message, explain)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, list[str]]]:
    """The built book on http://127.0.0.1:<free port>/, and the list of its failed requests."""
    if not (HTML / "index.html").is_file():
        _unavailable(f"no built book at {HTML} (build it with the README's first command)")
    failures: list[str] = []
    handler = functools.partial(
        type("Handler", (_QuietHandler,), {"failures": failures}), directory=str(HTML)
    )
    socketserver.TCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", failures
        httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright's Python package is not installed (pip install -r requirements.txt)")
    executable = _chromium()
    if executable is None:
        _unavailable("no Chromium on this machine (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=executable,
            headless=True,
            # As root in a container, and with no background traffic to hosts we cannot reach.
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    folder = os.environ.get("BROWSER_SCREENSHOTS")
    path = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="book-screenshots-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _offline_page(browser, base: str, width: int = 1280, height: int = 900, scheme: str = "light"):
    """A new page that may talk only to the local server; returns (page, problems)."""
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
    page = context.new_page()
    problems: list[str] = []
    local = urlparse(base).netloc

    def route(r) -> None:
        url = urlparse(r.request.url)
        if url.scheme in ("data", "blob") or url.netloc == local:
            r.continue_()
        else:
            problems.append(f"request to another host: {r.request.url}")
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and "net::ERR_FAILED" not in m.text else None)
    page.on("pageerror", lambda e: problems.append(f"uncaught exception: {e}"))

    def failed(req) -> None:
        if urlparse(req.url).netloc == local:
            problems.append(f"failed request: {req.url} ({req.failure})")

    page.on("requestfailed", failed)
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}")
            if r.status >= 400 else None)
    return page, problems


# Everything the page can tell about itself, in one round trip.
_INSPECT = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const out = {};
  out.title = document.title.trim();
  out.h1 = Array.from(document.querySelectorAll('main h1, article h1')).length;
  const maths = Array.from(document.querySelectorAll('.math'));
  out.math = maths.length;
  out.untypeset = maths.filter(m => !m.querySelector('mjx-container'))
                       .map(m => m.textContent.trim().slice(0, 60));
  out.mathErrors = Array.from(document.querySelectorAll('mjx-merror'))
                        .map(m => (m.getAttribute('data-mjx-error') || m.textContent).slice(0, 80));
  out.brokenImages = Array.from(document.images)
      .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
  out.errorCells = document.querySelectorAll('.output.traceback, .output.error').length;
  out.unrendered = Array.from(document.querySelectorAll('.cell_output'))
      .filter(o => /<Figure size \\d+x\\d+ with/.test(o.textContent)).length;
  // A "$" left in the prose is math that Markdown did not parse (e.g. display math glued to
  // a paragraph, or an inline formula broken by a line that starts with "+").
  const walker = document.createTreeWalker(document.querySelector('article') || document.body,
                                           NodeFilter.SHOW_TEXT);
  out.strayDollars = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement.closest('pre, code, mjx-container, .cell_output, script, style, ' +
                                '.citation, .bibliography')) continue;
    if (n.textContent.includes('$')) out.strayDollars.push(n.textContent.trim().slice(0, 60));
  }
  // A printed table (a line with several runs of 2+ spaces used for alignment) longer than
  // the cell's 79 characters wraps and loses its columns.
  out.wideTables = [];
  for (const p of document.querySelectorAll('.cell_output pre')) {
    for (const line of p.textContent.split('\\n')) {
      if (line.length > 79 && (line.match(/\\S {2,}(?=\\S)/g) || []).length >= 2) {
        out.wideTables.push(line.slice(0, 100));
      }
    }
  }
  out.overflow = Array.from(document.querySelectorAll('.cell_input pre, .cell_output pre'))
      .filter(p => p.scrollWidth > p.clientWidth + 1)
      .map(p => p.textContent.split('\\n').reduce((a, b) => a.length >= b.length ? a : b, '')
                 .slice(0, 100));
  return out;
}
"""


def _pages_or_skip() -> list[str]:
    pages = _pages()
    return pages if pages else ["index.html"]


@pytest.mark.parametrize("rel", _pages_or_skip())
def test_page(rel: str, server, browser, screenshots: Path) -> None:
    base, server_failures = server
    page, problems = _offline_page(browser, base)
    try:
        page.goto(base + rel, wait_until="load")
        report = page.evaluate(_INSPECT)
        shot = screenshots / (rel.replace("/", "__").removesuffix(".html") + ".png")
        page.screenshot(path=str(shot), full_page=True)
    finally:
        page.context.close()
    if not report["title"]:
        problems.append("the page has no <title>")
    if report["h1"] == 0:
        problems.append("the page has no heading (h1)")
    if report["untypeset"]:
        problems.append(f"{len(report['untypeset'])} formula(s) left untypeset, e.g. "
                        f"{report['untypeset'][:3]}")
    if report["mathErrors"]:
        problems.append(f"MathJax errors: {report['mathErrors'][:3]}")
    if report["strayDollars"]:
        problems.append(f"{len(report['strayDollars'])} unparsed '$' in the text (math that "
                        f"Markdown broke), e.g. {report['strayDollars'][:2]}")
    if report["brokenImages"]:
        problems.append(f"broken images: {report['brokenImages'][:3]}")
    if report["errorCells"]:
        problems.append(f"{report['errorCells']} error output cell(s)")
    if report["unrendered"]:
        problems.append(f"{report['unrendered']} figure(s) shown as text, not rendered")
    if report["overflow"]:
        problems.append(f"{len(report['overflow'])} code cell(s) or output(s) wider than the "
                        f"page, e.g. {report['overflow'][:2]}")
    if report["wideTables"]:
        problems.append(f"{len(report['wideTables'])} printed table line(s) over 79 characters "
                        f"(they wrap), e.g. {report['wideTables'][:2]}")
    problems += [f for f in server_failures if f not in problems]
    server_failures.clear()
    assert not problems, f"{rel}:\n  " + "\n  ".join(problems)


def test_search_works_offline(server, browser) -> None:
    base, _ = server
    page, problems = _offline_page(browser, base)
    try:
        page.goto(base + "search.html?q=gaussian", wait_until="load")
        page.wait_for_selector("#search-results ul li, ul.search li", timeout=30_000)
        hits = page.locator("ul.search li").count()
    finally:
        page.context.close()
    assert hits > 0, "search for 'gaussian' found nothing"
    assert not problems, problems


def test_download_ipynb_and_dark_mode(server, browser) -> None:
    base, _ = server
    page, problems = _offline_page(browser, base)
    try:
        page.goto(base + PHONE_PAGE, wait_until="load")
        # The theme's download menu links to the page's source notebook under _sources/.
        links = page.eval_on_selector_all(
            "a[href*='_sources/'][href$='.ipynb']", "els => els.map(e => e.href)"
        )
        assert links, "no 'download as .ipynb' link on a notebook page"
        response = page.request.get(links[0])
        assert response.ok and b'"cells"' in response.body(), f"{links[0]} is not a notebook"
        # The theme's switch cycles light -> dark -> auto; the document records the mode.
        page.evaluate("document.documentElement.dataset.theme = 'light'")
        page.locator(".theme-switch-button").first.click()
        mode = page.evaluate("document.documentElement.dataset.theme")
        assert mode == "dark", f"the theme switch gave {mode!r}, not 'dark'"
    finally:
        page.context.close()
    assert not problems, problems


def test_phone_width(server, browser, screenshots: Path) -> None:
    base, _ = server
    page, problems = _offline_page(browser, base, width=390, height=844)
    try:
        page.goto(base + PHONE_PAGE, wait_until="load")
        page.evaluate(_INSPECT)
        page.screenshot(path=str(screenshots / "phone__gaussian_mixtures.png"), full_page=True)
        too_wide = page.evaluate(
            """() => Array.from(document.querySelectorAll('.cell_output img'))
                  .filter(i => i.getBoundingClientRect().right > window.innerWidth + 1)
                  .map(i => i.src)"""
        )
        page_wide = page.evaluate(
            "document.documentElement.scrollWidth > window.innerWidth + 1"
        )
    finally:
        page.context.close()
    assert not too_wide, f"figures wider than a 390-px screen: {too_wide[:3]}"
    assert not page_wide, "the page scrolls sideways on a 390-px screen"
    assert not problems, problems


def test_screenshots_were_saved(server, browser, screenshots: Path) -> None:
    # Runs last (file order): tells the person where to look.
    shots = list(screenshots.glob("*.png"))
    print(f"\n{len(shots)} screenshots in {screenshots}")
    assert shots, f"no screenshot was written to {screenshots}"
