"""The browser tier's own fixtures, against a tiny local site (no platform): the system Chromium starts
with Playwright's sync API; a page under the console's strict CSP reports nothing when it is clean, and
an inline script (a CSP violation), an uncaught exception and a failed load are each caught by
PageErrors; axe-core (injected through page.evaluate, not subject to the CSP) runs under that CSP and
finds a missing alt text. test_browser_loop.py, run after this module, checks that asyncio tests still
run once the module's Playwright has stopped."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from isthmus_core.testing.browser import PageErrors

pytestmark = pytest.mark.browser

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEAD = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>{head}</head>'
SITE = {
    "/clean": HEAD.format(title="Clean", head='<script src="/app.js" defer></script>')
    + '<body><header><nav aria-label="Main"><a href="/clean">Home</a></nav></header>'
    '<main><h1>Clean</h1><p id="out">waiting</p><img src="/dot.svg" alt="a dot"></main></body></html>',
    "/dirty": HEAD.format(title="Dirty", head='<script src="/throw.js"></script>')
    + "<body><main><h1>Dirty</h1><script>document.title = 'inline'</script>"
    '<img src="/dot.svg"><img src="/missing.png" alt="gone"></main></body></html>',
    "/app.js": "document.getElementById('out').textContent = 'ran';",
    "/throw.js": "throw new Error('boom from throw.js');",
    "/dot.svg": '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>',
}
TYPES = {".js": "text/javascript", ".svg": "image/svg+xml"}


class _Site(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = SITE.get(self.path)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = body.encode()
        self.send_response(200)
        self.send_header(
            "Content-Type", next((t for s, t in TYPES.items() if self.path.endswith(s)), "text/html")
        )
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_clean_page_under_the_strict_csp_has_no_errors_and_no_axe_violations(
    site: str, page: Any, page_errors: PageErrors, axe_check: Any
) -> None:
    page.goto(site + "/clean")
    page.locator("#out", has_text="ran").wait_for()  # the 'self' script ran
    assert not axe_check(page)
    assert not axe_check(page, impacts=None)  # not even minor ones
    assert page_errors.problems() == []


def test_inline_scripts_exceptions_and_failed_loads_are_caught(
    site: str, context: Any, axe_check: Any
) -> None:
    errors = PageErrors()  # not the page fixture's: these errors are the point of the test
    page = context.new_page()
    errors.attach(page)
    page.goto(site + "/dirty")
    page.wait_for_load_state("load")
    page.wait_for_timeout(200)  # console events are delivered asynchronously
    assert page.title() == "Dirty"  # the inline script did not run
    problems = errors.problems()
    assert any(p.startswith("CSP violation:") and "script-src" in p for p in problems), problems
    assert any(p.startswith("JavaScript exception:") and "boom from throw.js" in p for p in problems), (
        problems
    )
    assert any(p.startswith("console error:") and "404" in p for p in problems), problems
    errors.allow(r"status of 404")
    assert not any(p.startswith("console error:") for p in errors.problems())
    assert any(p.startswith("CSP violation:") for p in errors.problems())  # never excused
    violations = axe_check(page)
    assert [v["id"] for v in violations] == ["image-alt"], violations
    assert "image-alt" in repr(violations)
