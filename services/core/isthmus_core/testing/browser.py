"""Browser tests with Playwright's sync API on the system's Chromium (Debian's ``/usr/bin/chromium``,
installed by ``make test-setup``: tools/tools.d/chromium.sh; Playwright never downloads a browser here).

- :func:`chromium_path` / :func:`launch_chromium`: the browser, with the flags a closed network needs
  (Chromium's background services — updates, sync, safe browsing, QUIC probes — would otherwise dial
  out and be refused);
- :class:`PageErrors`: what went wrong inside a page — uncaught JavaScript exceptions, Content Security
  Policy violations, console errors — collected so a test can fail on them;
- :func:`axe_violations`: axe-core (the copy bundled in the ``axe-playwright-python`` package: offline)
  run on a page. It is injected with ``page.evaluate``, which runs through the DevTools protocol and is
  not subject to the page's CSP — so no ``bypass_csp`` context is needed, even under ``script-src 'self'``.

Sync API only: Playwright's sync API refuses to run inside a running asyncio loop, so tests and
fixtures using it must be plain ``def`` (pytest-asyncio's auto mode leaves those alone)."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from isthmus_core.testing.infra import missing_tool

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright

#: the system Chromium (override with ISTHMUS_CHROMIUM, e.g. /usr/bin/chromium-browser elsewhere)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",  # root in a container: the setuid/user-namespace sandbox is unavailable
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: the axe impacts a page must not have (axe's four: minor, moderate, serious, critical)
BLOCKING_IMPACTS: tuple[str, ...] = ("serious", "critical")
#: Chromium's console text for a CSP violation ("... violates the following Content Security Policy ...")
_CSP = re.compile(r"Content Security Policy", re.IGNORECASE)


def chromium_path() -> Path:
    """The Chromium binary; :func:`missing_tool` (skip locally, fail under CI=true) when absent."""
    path = Path(os.environ.get("ISTHMUS_CHROMIUM") or CHROMIUM)
    if not os.access(path, os.X_OK):
        missing_tool(
            f"{path} is not installed: the browser tests need Debian's chromium (make test-setup installs "
            "it: tools/tools.d/chromium.sh)"
        )
    return path


def launch_chromium(playwright: Playwright, *, headless: bool = True, **options: Any) -> Browser:
    """The system Chromium through ``playwright.chromium.launch`` with :data:`CHROMIUM_ARGS`."""
    args = [*CHROMIUM_ARGS, *options.pop("args", ())]
    return playwright.chromium.launch(
        executable_path=str(chromium_path()), headless=headless, args=args, **options
    )


@dataclass
class PageErrors:
    """Errors raised in the pages it is attached to: JavaScript exceptions (``pageerror``), CSP
    violations and other console errors (``console`` messages of type error, e.g. a failed resource
    load, an htmx error). ``allow(pattern)`` excuses console errors a test expects (a 4xx a page shows
    on purpose); exceptions and CSP violations are never excused. :meth:`problems` lists the rest.
    A failed ``/favicon.ico`` is not counted: the browser asks for it on its own."""

    exceptions: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("pageerror", lambda err: self.exceptions.append(f"{page.url}: {err}"))
        page.on("console", lambda msg: self._console(page, msg))

    def _console(self, page: Page, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        source = str((msg.location or {}).get("url") or "")
        if source.endswith("/favicon.ico"):  # the browser's own guess, not something a page asked for
            return
        text = f"{page.url}: {msg.text}" + (f" ({source})" if source and source != page.url else "")
        (self.csp_violations if _CSP.search(msg.text) else self.console_errors).append(text)

    def allow(self, pattern: str) -> None:
        """Console errors matching ``pattern`` (a regex, searched) are expected."""
        self.allowed.append(re.compile(pattern))

    def problems(self) -> list[str]:
        unexpected = [e for e in self.console_errors if not any(p.search(e) for p in self.allowed)]
        return (
            [f"JavaScript exception: {e}" for e in self.exceptions]
            + [f"CSP violation: {e}" for e in self.csp_violations]
            + [f"console error: {e}" for e in unexpected]
        )

    def clear(self) -> None:
        self.exceptions.clear()
        self.csp_violations.clear()
        self.console_errors.clear()


@cache
def axe_script() -> str:
    """axe.min.js as bundled in ``axe_playwright_python`` (read from the installed package, offline)."""
    spec = importlib.util.find_spec("axe_playwright_python")
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    for location in locations:
        script = Path(location) / "axe.min.js"
        if script.is_file():
            return script.read_text(encoding="utf-8")
    missing_tool("axe-playwright-python (the dev group) is not installed: run make dev-setup")


def axe_results(page: Page, context: Any = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """axe-core's full result object for the page as it is now (injected once per document)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_script())
    run_options = {"resultTypes": ["violations"], **(options or {})}
    results: dict[str, Any] = page.evaluate(
        "([context, options]) => axe.run(context ?? document, options)", [context, run_options]
    )
    return results


def axe_violations(
    page: Page,
    impacts: Iterable[str] | None = BLOCKING_IMPACTS,
    *,
    context: Any = None,
    options: dict[str, Any] | None = None,
) -> Violations:
    """axe violations on the page, those of ``impacts`` only (None: every one). Each is axe's dict (id,
    impact, help, helpUrl, nodes...); the list's repr lists them readably (``assert not violations``)."""
    found: list[dict[str, Any]] = axe_results(page, context, options)["violations"]
    wanted = None if impacts is None else set(impacts)
    return Violations(v for v in found if wanted is None or v.get("impact") in wanted)


def describe_violations(violations: Sequence[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        targets = [", ".join(map(str, n.get("target", []))) for n in v.get("nodes", [])][:5]
        lines.append(f"{v.get('impact')}: {v.get('id')} — {v.get('help')} ({v.get('helpUrl')}) at {targets}")
    return "\n".join(lines)


class Violations(list[dict[str, Any]]):
    """axe violations whose repr is readable (what a failed ``assert not violations`` prints)."""

    def __repr__(self) -> str:
        return "no axe violations" if not self else "axe violations:\n" + describe_violations(self)

    __str__ = __repr__
