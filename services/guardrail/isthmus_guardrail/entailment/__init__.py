"""The grounding (NLI) model: entailed / unsupported / contradicted answer sentences (see :mod:`.model`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from isthmus_guardrail.entailment.model import NliGroundingModel, load_model

if TYPE_CHECKING:
    from isthmus_core.onnx_reranker import OnnxCrossEncoder

__all__ = ["NliGroundingModel", "load_default"]


def load_default(cross_encoder: OnnxCrossEncoder) -> NliGroundingModel:
    """The bundled grounding model (``models/grounding``) over the bundled ms-marco cross-encoder.

    Raises :class:`~isthmus_core.errors.ConfigurationError` if the artefact is missing or stale."""
    return load_model(cross_encoder)
