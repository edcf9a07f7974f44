"""The all-in-one platform with its web console as a child process: ``isthmus run --target all`` on free
loopback ports (gRPC and console; metrics off), a data dir of its own, settings from environment
variables only (``ISTHMUS_<KEY>`` for [common], ``ISTHMUS_CONSOLE_<KEY>`` for [console]; an inherited
``ISTHMUS_CONFIG`` is dropped), ready when the console's ``GET /readyz`` answers 200 (the console is up
and the platform's services answer SERVING). Used by the browser tests (tests/console) and
tools/console-screenshots.py; sync code (no asyncio), so Playwright's sync API can run beside it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import grpc

from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.testing.infra import free_port_run

ISTHMUS = str(Path(sys.executable).with_name("isthmus"))
#: cold start on two shared cores: the bundled models load before the services answer SERVING
READY_TIMEOUT_S = 300.0


class PlatformExited(RuntimeError):
    """The platform process ended (or never became ready); the message ends with its log's last lines."""


class PlatformProcess:
    """One ``isthmus run --target all`` process. ``url`` is the console's base URL (no trailing slash),
    ``grpc_address`` the platform's gRPC ``host:port``, ``log`` its combined stdout/stderr."""

    def __init__(
        self,
        base: Path,
        env: Mapping[str, str] | None = None,
        *,
        console_port: int | None = None,
        grpc_port: int | None = None,
    ) -> None:
        self.base = base
        self.data_dir = base / "data"
        self.log = base / "platform.log"
        self.console_port = console_port or free_port_run(1)
        self.grpc_port = grpc_port or free_port_run(1)
        self.url = f"http://127.0.0.1:{self.console_port}"
        self.grpc_address = f"127.0.0.1:{self.grpc_port}"
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if k != "ISTHMUS_CONFIG"}
        return {
            **inherited,
            "ISTHMUS_DATA_DIR": str(self.data_dir),
            "ISTHMUS_GRPC_HOST": "127.0.0.1",
            "ISTHMUS_GRPC_PORT": str(self.grpc_port),
            "ISTHMUS_METRICS_PORT": "0",
            "ISTHMUS_BUS": "inprocess",
            "ISTHMUS_AUTH": "off",
            "ISTHMUS_SHUTDOWN_GRACE_S": "2",
            "ISTHMUS_CONSOLE_HOST": "127.0.0.1",
            "ISTHMUS_CONSOLE_PORT": str(self.console_port),
            **self.extra_env,
        }

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [ISTHMUS, "run", "--target", "all"],
                env=self.env(),
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the test run reaches it through stop() only
            )

    def wait_ready(self, within: float = READY_TIMEOUT_S) -> None:
        """Poll ``GET /readyz`` until 200; :class:`PlatformExited` if the process ends or time runs out."""
        deadline = time.monotonic() + within
        last = "no answer yet"
        while True:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise PlatformExited(f"the platform exited ({code}) before it was ready:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=5) as resp:
                    if resp.status == 200:
                        return
                    last = f"{resp.status}"
            except urllib.error.HTTPError as err:
                last = f"{err.code} {err.read()[:500].decode(errors='replace')}"
            except OSError as err:
                last = str(err)
            if time.monotonic() > deadline:
                raise PlatformExited(
                    f"{self.url}/readyz not 200 within {within:.0f}s (last: {last}):\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])


@contextlib.contextmanager
def running_platform(
    base: Path,
    env: Mapping[str, str] | None = None,
    *,
    console_port: int | None = None,
    within: float = READY_TIMEOUT_S,
) -> Iterator[PlatformProcess]:
    """A started, ready :class:`PlatformProcess`, stopped on exit."""
    platform = PlatformProcess(base, env, console_port=console_port)
    platform.start()
    try:
        platform.wait_ready(within)
        yield platform
    finally:
        platform.stop()


def create_tenants(address: str, tenants: Iterable[str], token: str | None = None) -> None:
    """Create ``tenants`` over the platform's gRPC API (RetrievalService.CreateTenant; one that exists
    already is fine), as ``token``'s caller when given (auth on: a platform-admin token)."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(address) as channel:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        for tenant in tenants:
            try:
                stub.CreateTenant(
                    retrieval_pb2.CreateTenantRequest(tenant_id=tenant), metadata=metadata, timeout=60
                )
            except grpc.RpcError as err:
                if err.code() is not grpc.StatusCode.ALREADY_EXISTS:
                    raise
