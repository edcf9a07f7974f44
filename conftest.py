"""Session fixtures for the real-infrastructure test tiers (shared by every test folder)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from isthmus_core.testing.infra import SecureKafka, free_port_run, missing_tool
from isthmus_core.testing.oidc_login import LoginProvider, create_browser_client

ROOT = Path(__file__).resolve().parent


def _tools_cache() -> Path:
    return Path(os.environ.get("ISTHMUS_TOOLS_CACHE", Path.home() / ".cache" / "isthmus-tools"))


class ScriptServer:
    """A server run by one of the tests/infra scripts from its own data dir; ``stop``/``start`` keep the
    data (outage and restart drills). ``data`` is None for an external server the tests did not start."""

    script = ""

    def __init__(self, data: Path | None) -> None:
        self.data = data

    def stop(self) -> None:
        self._script("stop")

    def start(self) -> None:
        self._script("start")

    def _script(self, cmd: str) -> None:
        if self.data is None:
            pytest.fail(
                f"this test runs '{self.script} {cmd}': it needs the server the tests started, "
                "not an external one"
            )
        proc = subprocess.run(
            ["bash", str(ROOT / "tests" / "infra" / self.script), cmd, "--dir", str(self.data)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            pytest.fail(f"{self.script} {cmd} failed: {proc.stderr[-3000:]}", pytrace=False)


class KafkaBroker(ScriptServer):
    """A broker started by tests/infra/kafka.sh; ``stop``/``start`` restart it on the same data."""

    script = "kafka.sh"

    def __init__(self, bootstrap: str, data: Path | None) -> None:
        super().__init__(data)
        self.bootstrap = bootstrap


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker) -> str:
    return kafka_broker.bootstrap


@contextlib.contextmanager
def _kafka_up(*flags: str, ports: int) -> Iterator[tuple[Path, str]]:
    """A broker from tests/infra/kafka.sh up (``flags`` e.g. --secure) on ``ports`` free ports and its own
    temp dir, removed afterwards: yields (data dir, plaintext bootstrap)."""
    if shutil.which("java") is None:
        missing_tool(
            "Java is not installed: the Kafka tier needs it (apt-get install openjdk-17-jre-headless)"
        )
    cache = Path(os.environ.get("ISTHMUS_TOOLS_CACHE", Path.home() / ".cache" / "isthmus-tools"))
    if not (cache / "kafka-4.1.1" / "libs" / ".complete").exists() and shutil.which("mvn") is None:
        missing_tool("Maven is not installed and the Kafka jars are not cached (run make test-setup)")
    data = Path(tempfile.mkdtemp(prefix="isthmus-kafka-"))
    script = str(ROOT / "tests" / "infra" / "kafka.sh")
    command = ["bash", script, "up", *flags, "--port", str(free_port_run(ports)), "--dir", str(data)]
    what = " ".join(["tests/infra/kafka.sh up", *flags])

    def down() -> None:
        subprocess.run(["bash", script, "down", "--dir", str(data)], capture_output=True, timeout=120)

    try:  # resolving the jars on a cold cache takes about a minute; starting the broker a few seconds
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        down()
        pytest.fail(f"{what} did not finish within {e.timeout:.0f}s", pytrace=False)
    if proc.returncode != 0:
        down()
        pytest.fail(f"could not start Kafka ({what}): {proc.stderr[-3000:]}", pytrace=False)
    try:
        yield data, proc.stdout.strip().splitlines()[-1]
    finally:
        down()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """A real Apache Kafka broker: ISTHMUS_TEST_KAFKA_BOOTSTRAP if set, else one started for the session
    by tests/infra/kafka.sh (needs Java and Maven, or jars already cached)."""
    given = os.environ.get("ISTHMUS_TEST_KAFKA_BOOTSTRAP")
    if given:
        yield KafkaBroker(given, None)
        return
    with _kafka_up(ports=2) as (data, bootstrap):
        yield KafkaBroker(bootstrap, data)


@pytest.fixture(scope="session")
def kafka_secure() -> Iterator[SecureKafka]:
    """A second real broker, with a SASL_SSL listener, started for the session by kafka.sh up --secure."""
    if shutil.which("openssl") is None:
        missing_tool("openssl is not installed: the TLS Kafka tier makes its certificates with it")
    with _kafka_up("--secure", ports=3) as (data, bootstrap):
        lines = (data / "secure.env").read_text().splitlines()
        env = dict(line.split("=", 1) for line in lines if "=" in line)
        yield SecureKafka(
            bootstrap=env["BOOTSTRAP"],
            cafile=Path(env["CAFILE"]),
            username=env["USERNAME"],
            password=env["PASSWORD"],
            plaintext_bootstrap=bootstrap,
        )


class WeaviateServer(ScriptServer):
    """A server started by tests/infra/weaviate.sh; ``stop``/``start`` for outage tests."""

    script = "weaviate.sh"

    def __init__(self, url: str, grpc_port: int, data: Path | None) -> None:
        super().__init__(data)
        self.url = url
        self.grpc_port = grpc_port


@pytest.fixture(scope="session")
def weaviate_server() -> Iterator[WeaviateServer]:
    """A real Weaviate 1.32.4: ISTHMUS_TEST_WEAVIATE_URL (+ _GRPC_PORT) if set, else one started for the
    session by tests/infra/weaviate.sh (the server is built by make test-setup; needs Go)."""
    given = os.environ.get("ISTHMUS_TEST_WEAVIATE_URL")
    if given:
        yield WeaviateServer(given, int(os.environ.get("ISTHMUS_TEST_WEAVIATE_GRPC_PORT", "50051")), None)
        return
    cache = Path(os.environ.get("ISTHMUS_TOOLS_CACHE", Path.home() / ".cache" / "isthmus-tools"))
    if not (cache / "weaviate-v1.32.4" / "weaviate-server").exists() and shutil.which("go") is None:
        missing_tool("Go is not installed and weaviate-server is not built (install Go, run make test-setup)")
    data = Path(tempfile.mkdtemp(prefix="isthmus-weaviate-"))
    script = str(ROOT / "tests" / "infra" / "weaviate.sh")

    def down() -> None:
        subprocess.run(["bash", script, "down", "--dir", str(data)], capture_output=True, timeout=120)

    try:  # building on a cold cache takes about 3 minutes; starting the server a few seconds
        proc = subprocess.run(
            ["bash", script, "up", "--port", str(free_port_run(6)), "--dir", str(data)],
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired as e:
        down()
        pytest.fail(f"tests/infra/weaviate.sh up did not finish within {e.timeout:.0f}s", pytrace=False)
    if proc.returncode != 0:
        down()
        pytest.fail(
            f"could not start Weaviate (tests/infra/weaviate.sh up): {proc.stderr[-3000:]}", pytrace=False
        )
    url, grpc_port = proc.stdout.strip().splitlines()[-1].split()
    try:
        yield WeaviateServer(url, int(grpc_port), data)
    finally:
        down()


class Regions:
    """Two local regions from tests/infra/regions.sh (Kafka, MirrorMaker 2 and a platform each):
    ``path`` is their regions.toml, ``config`` the parsed :class:`~isthmus_core.regions.RegionsConfig`,
    ``dir`` the script's directory (pids, logs, data)."""

    def __init__(self, path: Path) -> None:
        from isthmus_core.regions import load_regions

        self.path = path
        self.dir = path.parent
        self.config = load_regions(path)

    def endpoint(self, region: str) -> str:
        return self.config.region(region).endpoint

    def bootstrap(self, region: str) -> str:
        return self.config.region(region).kafka_bootstrap

    def run(self, region: str, hook: str) -> None:
        """Run one fault hook of a region (``kill``, ``restore``, ``stop_link``...), as a drill does."""
        command = getattr(self.config.region(region).hooks, hook)
        if not command:
            pytest.fail(f"region {region} has no {hook} hook", pytrace=False)
        proc = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"{hook} {region} failed: {proc.stderr[-3000:]}", pytrace=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The multi-region tier runs last: its two regions (two brokers, two MirrorMaker 2 processes, two
    platforms) start once for it and stay up until the session ends, so no other test shares the two
    cores with them."""
    items.sort(key=lambda item: item.get_closest_marker("multiregion") is not None)


@pytest.fixture(scope="session")
def regions() -> Iterator[Regions]:
    """Regions a and b: ISTHMUS_TEST_REGIONS (a regions.toml, e.g. from `make regions-up`) if set, else
    started once for the session by tests/infra/regions.sh up on free ports, and stopped at the end."""
    given = os.environ.get("ISTHMUS_TEST_REGIONS")
    if given:
        yield Regions(Path(given))
        return
    if shutil.which("java") is None:
        missing_tool(
            "Java is not installed: the multi-region tier needs it (apt-get install openjdk-17-jre-headless)"
        )
    cache = Path(os.environ.get("ISTHMUS_TOOLS_CACHE", Path.home() / ".cache" / "isthmus-tools"))
    if not (cache / "kafka-4.1.1" / "libs" / ".complete").exists() and shutil.which("mvn") is None:
        missing_tool("Maven is not installed and the Kafka jars are not cached (run make test-setup)")
    data = Path(tempfile.mkdtemp(prefix="isthmus-regions-"))
    script = str(ROOT / "tests" / "infra" / "regions.sh")

    def down() -> None:
        subprocess.run(["bash", script, "down", "--dir", str(data)], capture_output=True, timeout=300)

    command = ["bash", script, "up", "--dir", str(data), "--base-port", str(free_port_run(18))]
    try:  # about a minute on two cores (two brokers, two MM2s, two platforms loading their models)
        proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as e:
        down()
        pytest.fail(f"tests/infra/regions.sh up did not finish within {e.timeout:.0f}s", pytrace=False)
    if proc.returncode != 0:
        down()
        pytest.fail(f"could not start the regions (regions.sh up): {proc.stderr[-3000:]}", pytrace=False)
    try:
        yield Regions(Path(proc.stdout.strip().splitlines()[-1]))
    finally:
        down()


class _TokenHook(ThreadingHTTPServer):
    """Hydra's token hook for the tests (on loopback, in a thread): Hydra POSTs each token request here
    before it signs; for a client given groups, the answer adds them to the access token (Hydra puts
    hook claims under ``ext``: the token then has ``ext.groups``); other clients' tokens are unchanged."""

    daemon_threads = True

    def __init__(self) -> None:
        self.groups: dict[str, list[str]] = {}
        super().__init__(("127.0.0.1", 0), _TokenHookHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/token-hook"
        threading.Thread(target=self.serve_forever, name="hydra-token-hook", daemon=True).start()


class _TokenHookHandler(BaseHTTPRequestHandler):
    server: _TokenHook

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        groups = self.server.groups.get(str(body.get("request", {}).get("client_id", "")))
        if groups is None:
            self.send_response(204)
            self.end_headers()
            return
        answer = json.dumps({"session": {"access_token": {"groups": groups}, "id_token": {}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


class HydraServer:
    """An Ory Hydra v2.3.0 OAuth2/OIDC server from tests/infra/hydra.sh (in-memory store, JWT access
    tokens): ``issuer`` is exactly the tokens' ``iss``; ``new_client`` registers a client-credentials
    client, ``token`` runs that grant, ``rotate_keys`` adds a signing key (new tokens carry its kid),
    ``set_groups`` makes a client's next tokens carry ``ext.groups`` (through the token hook);
    ``login`` is its login & consent provider (browser logins, :mod:`isthmus_core.testing.oidc_login`)
    and ``new_browser_client`` registers an authorization-code client (a web app such as the console)."""

    script = str(ROOT / "tests" / "infra" / "hydra.sh")

    def __init__(
        self, data: Path, hook: _TokenHook | None = None, login: LoginProvider | None = None
    ) -> None:
        self.data = data
        self._hook = hook
        self._login = login
        lines = (data / "env").read_text().splitlines()
        env = dict(line.split("=", 1) for line in lines if "=" in line)
        self.issuer = env["ISSUER"]
        self.jwks_url = env["JWKS_URL"]
        self.token_url = env["TOKEN_URL"]
        self.admin_url = env["ADMIN_URL"]

    def set_groups(self, client_id: str, groups: list[str]) -> None:
        """The client's tokens from now on carry ``"ext": {"groups": groups}``."""
        if self._hook is None:
            pytest.fail(
                "this test gives a Hydra client groups through the token hook: it needs the Hydra the "
                "tests started (unset ISTHMUS_TEST_HYDRA_DIR)",
                pytrace=False,
            )
        self._hook.groups[client_id] = list(groups)

    @property
    def login(self) -> LoginProvider:
        """The login & consent pages Hydra sends browsers to (users: ``login.add_user``)."""
        if self._login is None:
            pytest.fail(
                "this test logs in through a browser: it needs the Hydra the tests started with their "
                "login & consent provider (unset ISTHMUS_TEST_HYDRA_DIR)",
                pytrace=False,
            )
        return self._login

    def new_browser_client(
        self, redirect_uri: str, name: str = "isthmus-console", audience: str = "isthmus"
    ) -> tuple[str, str]:
        """A new authorization-code client (+ refresh tokens) redirecting to ``redirect_uri``, its secret
        sent with HTTP basic auth (client_secret_basic, Authlib's default): (client_id, secret)."""
        return create_browser_client(self.admin_url, redirect_uri, name=name, audience=[audience])

    def _run(self, *args: str) -> str:
        proc = subprocess.run(
            ["bash", self.script, *args, "--dir", str(self.data)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            pytest.fail(f"hydra.sh {' '.join(args)} failed: {proc.stderr[-3000:]}", pytrace=False)
        return proc.stdout.strip().splitlines()[-1]

    def new_client(
        self, audience: str = "isthmus", name: str = "isthmus-test", scope: str = ""
    ) -> tuple[str, str]:
        """A new client allowed the client-credentials grant for ``audience``: (client_id, secret)."""
        made = json.loads(self._run("client", "--audience", audience, "--name", name, "--scope", scope))
        return str(made["client_id"]), str(made["client_secret"])

    def token(self, client_id: str, secret: str, scope: str = "", audience: str | None = "isthmus") -> str:
        """An access token (a JWT) from the client-credentials grant; ``audience`` is requested (Hydra
        puts only requested audiences in ``aud``), None requests none."""
        form = {"grant_type": "client_credentials"}
        if scope:
            form["scope"] = scope
        if audience is not None:
            form["audience"] = audience
        quote = urllib.parse.quote  # client_secret_basic: both parts form-encoded (RFC 6749 2.3.1)
        resp = httpx.post(
            self.token_url, data=form, auth=(quote(client_id, safe=""), quote(secret, safe="")), timeout=30
        )
        if resp.status_code != 200:
            raise AssertionError(f"Hydra refused the token request: {resp.status_code} {resp.text}")
        return str(resp.json()["access_token"])

    def rotate_keys(self) -> str:
        """A new RS256 key in Hydra's access-token key set; returns its kid (new tokens carry it)."""
        return self._run("rotate-keys")


@pytest.fixture(scope="session")
def hydra() -> Iterator[HydraServer]:
    """A real Ory Hydra: the one ISTHMUS_TEST_HYDRA_DIR names (e.g. .tools/hydra after `make hydra-up`) if
    set, else one started for the session by tests/infra/hydra.sh up on free ports and stopped at the end
    (built by make test-setup; needs Go to build)."""
    given = os.environ.get("ISTHMUS_TEST_HYDRA_DIR")
    if given:
        yield HydraServer(Path(given))
        return
    if not (_tools_cache() / "hydra-v2.3.0" / "hydra").exists() and shutil.which("go") is None:
        missing_tool("Go is not installed and hydra is not built (install Go, run make test-setup)")
    if shutil.which("curl") is None:
        missing_tool("curl is not installed: tests/infra/hydra.sh talks to Hydra with it")
    data = Path(tempfile.mkdtemp(prefix="isthmus-hydra-"))
    script = HydraServer.script
    hook = _TokenHook()
    login = LoginProvider()  # Hydra's config names its pages; it learns Hydra's admin URL once Hydra is up

    def down() -> None:
        subprocess.run(["bash", script, "down", "--dir", str(data)], capture_output=True, timeout=120)
        hook.shutdown()
        hook.server_close()
        login.close()

    try:  # building on a cold cache takes a few minutes; starting the server about a second
        proc = subprocess.run(
            [
                *("bash", script, "up", "--port", str(free_port_run(2)), "--dir", str(data)),
                *("--token-hook", hook.url),
                *("--login-url", login.login_url, "--consent-url", login.consent_url),
            ],
            capture_output=True,
            text=True,
            timeout=1200,
        )
    except subprocess.TimeoutExpired as e:
        down()
        pytest.fail(f"tests/infra/hydra.sh up did not finish within {e.timeout:.0f}s", pytrace=False)
    if proc.returncode != 0:
        down()
        pytest.fail(f"could not start Hydra (tests/infra/hydra.sh up): {proc.stderr[-3000:]}", pytrace=False)
    server = HydraServer(data, hook, login)
    login.admin_url = server.admin_url
    try:
        yield server
    finally:
        down()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def grpcurl() -> Path:
    """The grpcurl binary (.tools/bin/grpcurl, from make test-setup; built here if missing and Go is here)."""
    linked = ROOT / ".tools" / "bin" / "grpcurl"
    if linked.exists():
        return linked
    on_path = shutil.which("grpcurl")
    if on_path:
        return Path(on_path)
    if shutil.which("go") is None:
        missing_tool("grpcurl is not installed and Go is missing to build it (install Go, make test-setup)")
    proc = subprocess.run(
        ["bash", str(ROOT / "tools" / "tools.d" / "grpcurl.sh")], capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0 or not linked.exists():
        pytest.fail(f"could not build grpcurl (tools.d/grpcurl.sh): {proc.stderr[-3000:]}", pytrace=False)
    return linked
