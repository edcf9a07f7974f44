"""The console's browser tier: Playwright's sync API on Debian's Chromium against a real platform
(``isthmus run --target all`` in a subprocess, the console on a free port), and a real Ory Hydra for the
OIDC login. Fixtures:

- ``browser`` (module): a Chromium (isthmus_core.testing.browser.launch_chromium);
- ``page`` (per test): a page in a fresh browser context; JavaScript exceptions, CSP violations and
  console errors in it fail the test (``page_errors.allow(regex)`` excuses expected console errors);
- ``axe_check(page)``: the page's serious and critical axe-core violations (``assert not axe_check(page)``);
- ``console_platform`` (package: this folder): the platform with the console, auth off; tenants acme
  and globex exist;
- ``console_platform_oidc`` (package): the same with ``auth = "oidc"`` against Hydra; users alice
  (tenant-admin of acme) and bob (reader of globex) log in with ``console_platform_oidc.log_in(page, "alice")``.

Tests here are plain ``def`` functions: Playwright's sync API refuses to run inside a running asyncio
loop, and while it runs an asyncio test cannot (see ``playwright`` below)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from isthmus_core.testing.browser import (
    BLOCKING_IMPACTS,
    PageErrors,
    Violations,
    axe_violations,
    chromium_path,
    launch_chromium,
)
from isthmus_core.testing.platform_process import PlatformExited, PlatformProcess, create_tenants

#: the tenants both platforms have
ACME, GLOBEX = "acme", "globex"
#: the console's pages, in nav order: (name, path)
PAGES = (
    ("ask", "/ask"),
    ("documents", "/documents"),
    ("tenants", "/tenants"),
    ("evaluation", "/evaluation"),
    ("operations", "/operations"),
)
VIEWPORT = {"width": 1280, "height": 800}
#: how long a page action may take: the platform shares two cores with other test processes
ACTION_TIMEOUT_MS = 20_000

_ERRORS = pytest.StashKey[PageErrors]()


# -- the browser -------------------------------------------------------------------------------------
# Module scope, not session: while Playwright's sync API is started, its event loop stays marked as the
# thread's running loop (its dispatcher is suspended inside run_until_complete between calls), so every
# asyncio test after it would fail ("Cannot run the event loop while another loop is running"). Stopped
# at the end of each module, it leaves the rest of the session's tests alone; a module costs one driver
# and browser start (about a second). Hence also: no ``async def`` test in a module that uses them.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    chromium_path()  # skip (locally) / fail (CI=true) before starting Playwright's driver
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    """The system Chromium, headless, for the test module (each test gets its own context)."""
    b = launch_chromium(playwright)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def page_errors(request: pytest.FixtureRequest) -> PageErrors:
    """The errors of this test's pages; checked after the test body (see pytest_runtest_call)."""
    errors = PageErrors()
    request.node.stash[_ERRORS] = errors
    return errors


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies, no storage) per test."""
    ctx = browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="UTC")
    ctx.set_default_timeout(ACTION_TIMEOUT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: Any, page_errors: PageErrors) -> Any:
    """A page whose JavaScript exceptions, CSP violations and console errors fail the test; pages the
    test opens from it (popups, ``context.new_page()``) are watched too."""
    context.on("page", page_errors.attach)
    return context.new_page()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """After the test body: errors its pages raised fail it (a failure, not a teardown error)."""
    result = yield
    errors = item.stash.get(_ERRORS, None)
    if errors is not None and (problems := errors.problems()):
        pytest.fail("errors in the browser:\n" + "\n".join(problems), pytrace=False)
    return result


@pytest.fixture
def axe_check() -> Callable[..., Violations]:
    """``axe_check(page, impacts=("serious", "critical"), context=None)``: axe-core's violations of those
    impacts on the page as it is now (offline axe, injected through page.evaluate: no CSP bypass)."""

    def check(page: Any, impacts: Any = BLOCKING_IMPACTS, context: Any = None) -> Violations:
        return axe_violations(page, impacts, context=context)

    return check


def wait_for_url(page: Any, prefix: str, what: str, timeout_ms: float = ACTION_TIMEOUT_MS) -> None:
    """Wait until the page's URL starts with ``prefix``; on time-out, fail saying where it is instead."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_url(re.compile("^" + re.escape(prefix)), timeout=timeout_ms)
    except PlaywrightTimeout:
        try:
            shown = page.locator("body").inner_text(timeout=2000)[:1500]
        except PlaywrightTimeout:
            shown = "(no body)"
        pytest.fail(f"not at {what} ({prefix}) but at {page.url}, showing:\n{shown}", pytrace=False)


# -- the platform ------------------------------------------------------------------------------------
@dataclass
class ConsolePlatform:
    """A running platform with its console: ``url`` (no trailing slash), ``grpc_address``, the process
    (``process.log``, ``process.log_tail()``)."""

    url: str
    grpc_address: str
    process: PlatformProcess

    def page_url(self, path: str) -> str:
        return self.url + path


def _start(process: PlatformProcess) -> None:
    process.start()
    try:
        process.wait_ready()
    except PlatformExited as err:
        process.stop()
        pytest.fail(f"the console platform did not start: {err}", pytrace=False)


@pytest.fixture(scope="package")
def console_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsolePlatform]:
    """``isthmus run --target all`` with the console, auth off, data in a temp dir, free ports; ready
    (``/readyz`` 200) with tenants acme and globex created. Shared by this folder's tests, stopped after
    the last one (package scope: tests/console has an __init__.py), not held for the rest of a session."""
    chromium_path()  # no platform start for nothing when the browser is missing
    process = PlatformProcess(tmp_path_factory.mktemp("console-platform"))
    _start(process)
    try:
        create_tenants(process.grpc_address, (ACME, GLOBEX))
        yield ConsolePlatform(process.url, process.grpc_address, process)
    finally:
        process.stop()


@dataclass
class OidcUser:
    subject: str
    name: str
    groups: tuple[str, ...] = ()


#: who may log in, and their bindings in the access file (tenant -> role)
USERS = {
    "alice": (OidcUser("alice", "Alice Liddell"), {ACME: "tenant-admin"}),
    "bob": (OidcUser("bob", "Bob Dobbs"), {GLOBEX: "reader"}),
}


@dataclass
class ConsoleOidcPlatform(ConsolePlatform):
    """:class:`ConsolePlatform` with ``auth = "oidc"`` against ``hydra`` (conftest.HydraServer): the
    console's OAuth2 client (``client_id``), the users, the access file, and an admin client (its
    ``admin_token()`` is platform-admin) for setting things up over gRPC."""

    hydra: Any = None
    client_id: str = ""
    access_file: Path = Path()
    users: dict[str, OidcUser] = field(default_factory=dict)
    admin_client: tuple[str, str] = ("", "")

    def admin_token(self) -> str:
        return str(self.hydra.token(*self.admin_client))

    def log_in(self, page: Any, username: str, path: str = "/ask") -> None:
        """Open ``path``, follow the redirect to Hydra's login form, sign in as ``username`` (consent is
        given at once) and wait until the browser is back on ``path``."""
        page.goto(self.url + path)
        wait_for_url(page, self.hydra.login.login_url, "Hydra's login form")
        page.get_by_label("Username").fill(username)
        page.get_by_role("button", name="Sign in").click()
        wait_for_url(page, self.url + path, f"the console's {path} after the login")


def _access_toml(admin: str) -> str:
    lines = ["[platform]", f'bindings = [{{ principal = {json.dumps(admin)}, role = "platform-admin" }}]']
    tenants: dict[str, list[str]] = {}
    for user, roles in USERS.values():
        for tenant, role in roles.items():
            tenants.setdefault(tenant, []).append(
                f"{{ principal = {json.dumps(user.subject)}, role = {json.dumps(role)} }}"
            )
    for tenant, bindings in tenants.items():
        lines += ["", f"[tenants.{tenant}]", "bindings = [" + ", ".join(bindings) + "]"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="package")
def console_platform_oidc(
    tmp_path_factory: pytest.TempPathFactory, hydra: Any
) -> Iterator[ConsoleOidcPlatform]:
    """The platform with the console and ``auth = "oidc"`` trusting the session's Hydra: the console
    logs users in with the authorization-code flow (its client: authorization_code + refresh_token,
    redirect ``<console>/auth/callback``); Hydra's login & consent provider signs in any username and
    puts the user's groups in ``ext.groups``; the access file makes alice tenant-admin of acme and bob
    reader of globex; tenants acme and globex exist."""
    chromium_path()
    base = tmp_path_factory.mktemp("console-platform-oidc")
    process = PlatformProcess(base)
    service = hydra.new_client(name="isthmus-console-svc")  # the platform's own identity
    admin = hydra.new_client(name="isthmus-console-admin")
    client_id, secret = hydra.new_browser_client(process.url + "/auth/callback", name="isthmus-console")
    users = {name: user for name, (user, _) in USERS.items()}
    for user in users.values():
        hydra.login.add_user(user.subject, user.name, user.groups)
    access = base / "access.toml"
    access.write_text(_access_toml(admin[0]))
    process.extra_env.update(
        {
            "ISTHMUS_AUTH": "oidc",
            "ISTHMUS_AUTH_ISSUER": hydra.issuer,
            "ISTHMUS_AUTH_JWKS_URL": hydra.jwks_url,
            "ISTHMUS_AUTH_AUDIENCE": "isthmus",
            "ISTHMUS_AUTH_GROUPS_CLAIM": "ext.groups",  # Hydra puts the consent's claims under ext
            "ISTHMUS_AUTH_SERVICE_TOKEN_URL": hydra.token_url,
            "ISTHMUS_AUTH_SERVICE_CLIENT_ID": service[0],
            "ISTHMUS_AUTH_SERVICE_CLIENT_SECRET": service[1],
            "ISTHMUS_ACCESS_FILE": str(access),
            "ISTHMUS_CONSOLE_PUBLIC_URL": process.url,
            "ISTHMUS_CONSOLE_OIDC_CLIENT_ID": client_id,
            "ISTHMUS_CONSOLE_OIDC_CLIENT_SECRET": secret,
        }
    )
    _start(process)
    try:
        platform = ConsoleOidcPlatform(
            process.url,
            process.grpc_address,
            process,
            hydra=hydra,
            client_id=client_id,
            access_file=access,
            users=users,
            admin_client=admin,
        )
        create_tenants(process.grpc_address, (ACME, GLOBEX), token=platform.admin_token())
        yield platform
    finally:
        process.stop()
