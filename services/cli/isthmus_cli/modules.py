"""The composition root's module list: the only place that imports every service."""

from __future__ import annotations

from isthmus_agent_orchestrator.module import MODULE as AGENT_ORCHESTRATOR
from isthmus_console.module import MODULE as CONSOLE
from isthmus_core.runtime.module import AnyModule
from isthmus_embedding.module import MODULE as EMBEDDING
from isthmus_evaluation.module import MODULE as EVALUATION
from isthmus_guardrail.module import MODULE as GUARDRAIL
from isthmus_ingestion.module import MODULE as INGESTION
from isthmus_retrieval.module import MODULE as RETRIEVAL

MODULES: tuple[AnyModule, ...] = (
    EMBEDDING,
    RETRIEVAL,
    INGESTION,
    GUARDRAIL,
    AGENT_ORCHESTRATOR,
    EVALUATION,
    CONSOLE,
)
