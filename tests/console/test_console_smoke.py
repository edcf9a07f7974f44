"""The console in a real browser: the platform's console answers ``/`` by sending the browser to the Ask
page, whose navigation links the five pages; axe-core finds no serious or critical accessibility
problem; no JavaScript error or CSP violation happens on the way (the ``page`` fixture); a screenshot is
kept under the test's temp dir. With ``auth = "oidc"``, opening /ask sends the browser to Hydra, whose
login form signs alice in, and the console shows her name once it is back on /ask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import PAGES, ConsoleOidcPlatform, ConsolePlatform

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_root_lands_on_ask_with_the_five_pages_in_the_nav(
    console_platform: ConsolePlatform, page: Any, axe_check: Any, tmp_path: Path
) -> None:
    response = page.goto(console_platform.url + "/")
    assert response is not None and response.ok, response
    assert page.url == console_platform.url + "/ask"
    nav = page.get_by_role("navigation").first
    for name, path in PAGES:
        link = nav.locator(f'a[href="{path}"], a[href^="{path}?"]')
        assert link.count() == 1, f"the nav has no single link to {path} ({name})"
    assert not axe_check(page)
    page.screenshot(path=str(tmp_path / "ask.png"), full_page=True)
    assert (tmp_path / "ask.png").stat().st_size > 0


@pytest.mark.hydra
def test_oidc_login_as_alice_comes_back_to_ask(console_platform_oidc: ConsoleOidcPlatform, page: Any) -> None:
    # /ask -> the console's /auth/login -> Hydra -> the login & consent provider's form -> back
    console_platform_oidc.log_in(page, "alice", "/ask")
    assert console_platform_oidc.hydra.login.logins[-1] == "alice"
    body = page.locator("body").inner_text()
    assert "Alice Liddell" in page.get_by_role("banner").inner_text(), body[:2000]  # the ID token's name
