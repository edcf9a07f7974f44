"""The console's settings: the ``[console]`` section (env ``ISTHMUS_CONSOLE_<KEY>``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from isthmus_core.settings import SectionSettings, section_config


class ConsoleSettings(SectionSettings):
    section: ClassVar[str] = "console"
    model_config = section_config("console")

    enabled: bool = Field(True, description="serve the console (false: the module starts nothing)")
    host: str = Field(
        "127.0.0.1",
        description="where the console listens; beyond loopback only with authentication on "
        "(common.auth = oidc or local)",
    )
    port: int = Field(8088, ge=0, le=65535, description="the console's HTTP port; 0 picks a free one")
    public_url: str = Field(
        "",
        description="the console's external base URL (the OIDC redirect URI is <public_url>/auth/callback); "
        "default http://<host>:<port>",
    )
    oidc_client_id: str = Field(
        "", description="oidc: the console's OAuth2 client (authorization code + PKCE)"
    )
    oidc_client_secret: SecretStr = Field(SecretStr(""), description="... and its secret (from a Secret)")
    oidc_scopes: list[str] = Field(
        default_factory=lambda: ["openid", "offline_access"], description="scopes the login asks for"
    )
    session_ttl_s: float = Field(
        8 * 3600.0, gt=0, description="a console session ends this long after its last request"
    )
    max_sessions: int = Field(
        10_000, ge=1, description="sessions kept at once (in memory, per replica); the oldest go first"
    )
    max_upload_bytes: int = Field(64 * 1024 * 1024, ge=1, description="the largest document upload")
    region_endpoints: dict[str, str] = Field(
        default_factory=dict,
        description="region -> gRPC address of that region's platform, for health per region "
        "(the operations page); empty = this deployment only",
    )
    kube_namespace: str = Field(
        "",
        description="where EdgeRollout and FailoverDrill objects are read (read-only) from the Kubernetes "
        "API; empty = the operations page says rollouts and drills are not configured",
    )
    kubeconfig: Path | None = Field(
        None, description="with kube_namespace: a kubeconfig file; unset = the pod's in-cluster account"
    )
