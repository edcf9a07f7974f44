"""Model bundles: versioned sets of model files a workload serves instead of the bundled models.

A bundle is a directory ``<model_bundles_dir>/<name>/<version>/`` holding a ``bundle.json`` manifest::

    {"name": "edge-en", "version": "2026.12.1", "embedding": {"model_dir": "embedding"}}

``embedding.model_dir`` is relative to the bundle directory (an ONNX embedder: ``model.onnx`` +
``tokenizer.json``). A workload serves the bundle named by ``[common] model_bundle`` (env
``ISTHMUS_MODEL_BUNDLE``, which the chart fills from the pod annotation ``isthmus.dev/model-bundle`` that
an EdgeRollout sets), a reference ``<name>@<version>``.

A reference is never a path: :func:`parse_bundle_ref` accepts only the name and version patterns of the
EdgeRollout's ``spec.bundle`` (the operator's specs use the same constants), and :func:`load_bundle`
resolves the directories inside the root, refusing any symlink that leads out of it. Every failure is a
:class:`~isthmus_core.errors.ConfigurationError` naming the setting (``[common] model_bundle``), raised
when the settings are loaded: a workload never starts on a bundle it cannot serve.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from isthmus_core.errors import ConfigurationError

#: the EdgeRollout's ``spec.bundle.name`` / ``.version`` (operators/isthmus_operator/specs.py uses these)
BUNDLE_NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$"
BUNDLE_VERSION_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._+-]*[A-Za-z0-9])?$"
BUNDLE_PART_MAX = 63
MANIFEST = "bundle.json"
#: ``GetOnlineMetricsRequest.model_bundle`` for "answers served by the bundled models" (provenance
#: ``model_bundle`` empty); never a reference (a reference always contains ``@``). Empty = every answer.
BUNDLED_MODELS = "none"
#: the files an ONNX model directory must hold (isthmus_core.onnx_embedder)
_ONNX_FILES = ("model.onnx", "tokenizer.json")
_SETTING = "[common] model_bundle (env ISTHMUS_MODEL_BUNDLE)"


@dataclass(frozen=True, slots=True)
class BundleRef:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


def _part_ok(value: str, pattern: str) -> bool:
    return 1 <= len(value) <= BUNDLE_PART_MAX and re.fullmatch(pattern, value) is not None


def parse_bundle_ref(ref: str) -> BundleRef:
    """``<name>@<version>`` → :class:`BundleRef`; anything else is a ConfigurationError."""
    name, at, version = ref.partition("@")
    if not at or not _part_ok(name, BUNDLE_NAME_PATTERN) or not _part_ok(version, BUNDLE_VERSION_PATTERN):
        raise ConfigurationError(
            f"{_SETTING}: {ref!r} is not a bundle reference '<name>@<version>' (name: lowercase letters, "
            "digits, '.', '_', '-'; version: letters, digits, '.', '_', '+', '-'; 1-63 characters each)"
        )
    return BundleRef(name, version)


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: relative to the bundle directory
    model_dir: str = Field(min_length=1)


class BundleManifest(BaseModel):
    """``bundle.json``: which bundle it is and what it provides (every part optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    embedding: _Part | None = None


@dataclass(frozen=True, slots=True)
class ModelBundle:
    """A bundle found and checked: its reference, directory and the model directories it provides."""

    ref: BundleRef
    path: Path
    #: the ONNX embedder directory, or None when the bundle provides no embedding model
    embedding_model_dir: Path | None


def _inside(root: Path, relative: str, what: str, ref: str) -> Path:
    """``root/relative`` resolved (symlinks followed), refused unless it stays inside ``root``."""
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise ConfigurationError(f"{_SETTING}: bundle {ref}: {what} {relative!r} must be a relative path")
    resolved = (root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise ConfigurationError(
            f"{_SETTING}: bundle {ref}: {what} {relative!r} leads out of {root} (a symlink?); refused"
        )
    return resolved


def load_bundle(root: Path | None, ref: str) -> ModelBundle:
    """Find and check bundle ``ref`` under ``root`` (``[common] model_bundles_dir``).

    Raises ConfigurationError when the reference is malformed, no root is configured, the bundle or its
    manifest is missing or invalid, or a model directory it names is missing or incomplete."""
    parsed = parse_bundle_ref(ref)
    if root is None:
        raise ConfigurationError(
            f"{_SETTING} is {ref!r} but [common] model_bundles_dir (env ISTHMUS_MODEL_BUNDLES_DIR) is not "
            "set: mount the bundles and name their directory"
        )
    try:
        base = root.resolve(strict=True)
    except OSError as exc:
        raise ConfigurationError(
            f"[common] model_bundles_dir (env ISTHMUS_MODEL_BUNDLES_DIR): {root} does not exist"
        ) from exc
    bundle_dir = _inside(base, f"{parsed.name}/{parsed.version}", "directory", ref)
    manifest_path = bundle_dir / MANIFEST
    if not bundle_dir.is_dir():
        known = sorted(
            f"{n.name}@{v.name}" for n in base.iterdir() if n.is_dir() for v in n.iterdir() if v.is_dir()
        )
        raise ConfigurationError(
            f"{_SETTING}: unknown bundle {ref!r}: no directory {parsed.name}/{parsed.version} in {root} "
            f"(bundles there: {', '.join(known) or 'none'})"
        )
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest = BundleManifest.model_validate(raw)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{_SETTING}: bundle {ref}: {manifest_path} is missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{_SETTING}: bundle {ref}: {manifest_path} is not JSON: {exc}") from exc
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"{_SETTING}: bundle {ref}: {manifest_path}: {detail}") from exc
    if (manifest.name, manifest.version) != (parsed.name, parsed.version):
        raise ConfigurationError(
            f"{_SETTING}: bundle {ref}: {manifest_path} says it is {manifest.name}@{manifest.version}"
        )
    embedding = None
    if manifest.embedding is not None:
        embedding = _inside(bundle_dir, manifest.embedding.model_dir, "embedding.model_dir", ref)
        lacking = [f for f in _ONNX_FILES if not (embedding / f).is_file()]
        if lacking:
            raise ConfigurationError(
                f"{_SETTING}: bundle {ref}: embedding.model_dir {manifest.embedding.model_dir!r} "
                f"lacks {', '.join(lacking)}"
            )
    return ModelBundle(ref=parsed, path=bundle_dir, embedding_model_dir=embedding)
