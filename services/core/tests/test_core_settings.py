from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import Field, SecretStr

from isthmus_core.errors import ConfigurationError
from isthmus_core.settings import CommonSettings, SectionSettings, load_all, masked, section_config


class DemoSettings(SectionSettings):
    section: ClassVar[str] = "demo-svc"
    model_config = section_config("demo-svc")

    batch: int = Field(8, ge=1)
    api_key: SecretStr = SecretStr("")


def test_defaults_load() -> None:
    s = load_all([CommonSettings, DemoSettings])
    assert s["common"].grpc_port == 50051  # type: ignore[attr-defined]
    assert s["demo-svc"].batch == 8  # type: ignore[attr-defined]


def test_env_beats_file_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "isthmus.toml"
    cfg.write_text('[common]\ngrpc_port = 6000\nlog_level = "debug"\n[demo-svc]\nbatch = 3\n')
    monkeypatch.setenv("ISTHMUS_GRPC_PORT", "7000")
    s = load_all([CommonSettings, DemoSettings], cfg)
    assert s["common"].grpc_port == 7000  # type: ignore[attr-defined]
    assert s["common"].log_level == "debug"  # type: ignore[attr-defined]
    assert s["demo-svc"].batch == 3  # type: ignore[attr-defined]


def test_every_error_is_reported_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "isthmus.toml"
    cfg.write_text("[demo-svc]\nbatch = 0\n[nonsense]\nx = 1\n")
    monkeypatch.setenv("ISTHMUS_GRPC_PORT", "abc")
    monkeypatch.setenv("ISTHMUS_BUS", "carrier-pigeon")
    with pytest.raises(ConfigurationError) as info:
        load_all([CommonSettings, DemoSettings], cfg)
    msg = str(info.value)
    for expected in ("[common] grpc_port", "[common] bus", "[demo-svc] batch", "[nonsense] unknown section"):
        assert expected in msg
    assert "ISTHMUS_DEMO_SVC_BATCH" in msg


def test_unknown_key_in_a_section_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "isthmus.toml"
    cfg.write_text("[common]\ngrpc_prot = 1\n")
    with pytest.raises(ConfigurationError, match="grpc_prot"):
        load_all([CommonSettings], cfg)


def test_bad_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_all([CommonSettings], tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[common\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_all([CommonSettings], bad)


def test_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISTHMUS_GRPC_PORT", "7000")
    s = load_all([CommonSettings], overrides={"common": {"grpc_port": 0}})
    assert s["common"].grpc_port == 0  # type: ignore[attr-defined]


def test_masked_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISTHMUS_DEMO_SVC_API_KEY", "sk-123")
    s = load_all([DemoSettings])["demo-svc"]
    dumped = masked(s)
    assert dumped["api_key"] == "********" and "sk-123" not in str(dumped)
