"""Model bundles: references, manifests, directories inside the root, and the settings that name them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isthmus_core.errors import ConfigurationError
from isthmus_core.model_bundles import load_bundle, parse_bundle_ref
from isthmus_core.settings import CommonSettings, load_all


def make_bundle(root: Path, name: str, version: str, manifest: object | None = None) -> Path:
    """A bundle whose embedding model dir holds (empty) model.onnx and tokenizer.json."""
    bundle = root / name / version
    (bundle / "embedding").mkdir(parents=True)
    for f in ("model.onnx", "tokenizer.json"):
        (bundle / "embedding" / f).write_bytes(b"")
    if manifest is None:
        manifest = {"name": name, "version": version, "embedding": {"model_dir": "embedding"}}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    return bundle


@pytest.mark.parametrize(
    "ref",
    ["", "edge", "edge@", "@1", "../x@1", "edge@../../etc", "Edge@1", "edge@1/2", "edge@-1", "a@" + "1" * 64],
)
def test_a_reference_is_name_at_version_never_a_path(ref: str) -> None:
    with pytest.raises(ConfigurationError, match="model_bundle"):
        parse_bundle_ref(ref)


def test_a_bundle_is_found_with_its_embedding_model(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "edge-en", "2026.12.1")
    loaded = load_bundle(tmp_path, "edge-en@2026.12.1")
    assert str(loaded.ref) == "edge-en@2026.12.1"
    assert loaded.embedding_model_dir == (bundle / "embedding").resolve()


def test_a_bundle_may_provide_no_embedding_model(tmp_path: Path) -> None:
    make_bundle(tmp_path, "edge", "1", {"name": "edge", "version": "1"})
    assert load_bundle(tmp_path, "edge@1").embedding_model_dir is None


def test_unknown_bundle_names_the_setting_and_the_known_ones(tmp_path: Path) -> None:
    make_bundle(tmp_path, "edge", "1")
    with pytest.raises(ConfigurationError, match=r"model_bundle.*unknown bundle 'edge@2'.*edge@1"):
        load_bundle(tmp_path, "edge@2")


def test_no_bundles_dir_is_an_error_when_a_bundle_is_named() -> None:
    with pytest.raises(ConfigurationError, match="model_bundles_dir"):
        load_bundle(None, "edge@1")


@pytest.mark.parametrize(
    ("manifest", "error"),
    [
        (None, "bundle.json is missing"),
        ("{not json", "not JSON"),
        ({"name": "edge", "version": "1", "embeding": {}}, "embeding"),
        ({"name": "edge", "version": "2"}, "says it is edge@2"),
        ({"name": "edge", "version": "1", "embedding": {"model_dir": "../../x"}}, "relative path"),
        ({"name": "edge", "version": "1", "embedding": {"model_dir": "/etc"}}, "relative path"),
        ({"name": "edge", "version": "1", "embedding": {"model_dir": "nowhere"}}, "lacks model.onnx"),
    ],
)
def test_a_bad_manifest_is_refused_with_the_reason(tmp_path: Path, manifest: object, error: str) -> None:
    bundle = make_bundle(tmp_path, "edge", "1")
    if manifest is None:
        (bundle / "bundle.json").unlink()
    else:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        (bundle / "bundle.json").write_text(text)
    with pytest.raises(ConfigurationError, match=error):
        load_bundle(tmp_path, "edge@1")


def test_symlinks_out_of_the_root_are_refused(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "bundles", tmp_path / "elsewhere"
    root.mkdir()
    outside = make_bundle(elsewhere, "edge", "1")
    (root / "edge").mkdir()
    (root / "edge" / "1").symlink_to(outside)
    with pytest.raises(ConfigurationError, match="leads out of"):
        load_bundle(root, "edge@1")
    # and a model dir inside a bundle that points out of the bundle
    inside = make_bundle(root, "edge", "2")
    (inside / "models").symlink_to(outside / "embedding")
    (inside / "bundle.json").write_text(
        json.dumps({"name": "edge", "version": "2", "embedding": {"model_dir": "models"}})
    )
    with pytest.raises(ConfigurationError, match="leads out of"):
        load_bundle(root, "edge@2")


def test_isthmus_model_bundle_feeds_common_model_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the chart sets ISTHMUS_MODEL_BUNDLE from the pod annotation: the common section has prefix ISTHMUS_
    make_bundle(tmp_path, "edge", "1")
    monkeypatch.setenv("ISTHMUS_MODEL_BUNDLE", "edge@1")
    monkeypatch.setenv("ISTHMUS_MODEL_BUNDLES_DIR", str(tmp_path))
    common = load_all([CommonSettings])["common"]
    assert isinstance(common, CommonSettings)
    assert common.model_bundle == "edge@1"
    loaded = common.loaded_model_bundle()
    assert loaded is not None and str(loaded.ref) == "edge@1"


def test_the_config_file_names_the_bundle_too(tmp_path: Path) -> None:
    make_bundle(tmp_path / "b", "edge", "1")
    cfg = tmp_path / "isthmus.toml"
    cfg.write_text(f'[common]\nmodel_bundle = "edge@1"\nmodel_bundles_dir = "{tmp_path / "b"}"\n')
    common = load_all([CommonSettings], cfg)["common"]
    assert isinstance(common, CommonSettings) and common.model_bundle == "edge@1"


def test_an_empty_annotation_means_the_bundled_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISTHMUS_MODEL_BUNDLE", "")  # the downward API of an absent annotation
    common = load_all([CommonSettings])["common"]
    assert isinstance(common, CommonSettings) and common.loaded_model_bundle() is None


def test_an_unknown_bundle_fails_the_start_with_the_other_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_bundle(tmp_path, "edge", "1")
    monkeypatch.setenv("ISTHMUS_MODEL_BUNDLE", "edge@9")
    monkeypatch.setenv("ISTHMUS_MODEL_BUNDLES_DIR", str(tmp_path))
    monkeypatch.setenv("ISTHMUS_REGION", "Not A Region")
    with pytest.raises(ConfigurationError) as caught:
        load_all([CommonSettings])
    assert "unknown bundle 'edge@9'" in str(caught.value)
    assert "region: 'Not A Region'" in str(caught.value)
