"""The judges of answers (:class:`isthmus_core.ports.judge.Judge`), chosen by name.

* ``offline`` — the guardrail's bundled grounding model and ms-marco cross-encoder, over gRPC
  (:class:`isthmus_core.clients.judge.GrpcJudge`): no network beyond the platform;
* ``llm`` — an OpenAI-compatible chat model (:class:`.llm.LlmJudge`), at ``evaluation.judge_llm_url``
  asking ``evaluation.judge_llm_model``.

Both bound one call by ``evaluation.judge_timeout_s``. Close a judge with :func:`close_judge` when done
(the LLM judge holds an HTTP connection pool).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from isthmus_core.errors import ConfigurationError, InvalidArgument
from isthmus_core.ports.judge import Judge

if TYPE_CHECKING:
    import grpc

    from isthmus_evaluation.settings import EvaluationSettings

#: the judge names build_judge knows
KINDS = ("offline", "llm")


def build_judge(kind: str, settings: EvaluationSettings, guardrail_channel: grpc.aio.Channel) -> Judge:
    """The judge named ``kind`` (one of :data:`KINDS`), configured from ``settings``.

    An unknown ``kind`` (e.g. a request's ``judge`` field) is InvalidArgument; ``llm`` without
    ``judge_llm_url`` / ``judge_llm_model`` is ConfigurationError naming the missing settings."""
    if kind == "offline":
        from isthmus_core.clients.judge import GrpcJudge

        return GrpcJudge(guardrail_channel, timeout_s=settings.judge_timeout_s)
    if kind == "llm":
        missing = [
            f"evaluation.judge_llm_{name}"
            for name, value in (("url", settings.judge_llm_url), ("model", settings.judge_llm_model))
            if not value.strip()
        ]
        if missing:
            raise ConfigurationError(
                f"the llm judge needs {' and '.join(missing)} (ISTHMUS_EVALUATION_JUDGE_LLM_URL / "
                "ISTHMUS_EVALUATION_JUDGE_LLM_MODEL): an OpenAI-compatible API and the model to ask"
            )
        from isthmus_evaluation.judges.llm import LlmJudge

        return LlmJudge(settings.judge_llm_url, settings.judge_llm_model, timeout_s=settings.judge_timeout_s)
    raise InvalidArgument(f"judge must be one of {list(KINDS)}, got {kind!r}")


async def close_judge(judge: Judge) -> None:
    """Release what ``judge`` holds (the LLM judge's connections); a no-op for the others."""
    aclose = getattr(judge, "aclose", None)
    if aclose is not None:
        await aclose()
