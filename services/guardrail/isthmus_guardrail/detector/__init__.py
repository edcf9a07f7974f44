"""The learned prompt-injection detector (see :mod:`isthmus_guardrail.detector.model`)."""

from isthmus_guardrail.detector.model import LinearInjectionModel, Weights, load_default

__all__ = ["LinearInjectionModel", "Weights", "load_default"]
