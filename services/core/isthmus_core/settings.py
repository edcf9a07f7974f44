"""Settings: one pydantic-settings class per service, read once at start, validated together.

Sources, highest priority first: environment variables (``ISTHMUS_<SECTION>_<FIELD>``, and
``ISTHMUS_<FIELD>`` for the common section), then the TOML file named by ``ISTHMUS_CONFIG`` (or passed
with ``--config``; one table per section: ``[common]``, ``[ingestion]``, ``[agent-orchestrator]``…),
then defaults. :func:`load_all` validates every requested section and reports every error at once.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, StringConstraints, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from isthmus_core.bus.kafka_security import KafkaSecurity, SaslMechanism, SecurityProtocol
from isthmus_core.errors import ConfigurationError

if TYPE_CHECKING:
    from isthmus_core.model_bundles import ModelBundle


class _TomlSection(PydanticBaseSettingsSource):
    """A settings source returning one table of an already-parsed TOML file."""

    def __init__(self, settings_cls: type[BaseSettings], values: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = dict(values)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k in self.settings_cls.model_fields}


def env_prefix(section: str) -> str:
    return "ISTHMUS_" if section == "common" else "ISTHMUS_" + section.upper().replace("-", "_") + "_"


def section_config(section: str) -> SettingsConfigDict:
    """The model_config of a settings section: its env prefix, unknown keys rejected."""
    return SettingsConfigDict(extra="forbid", env_nested_delimiter="__", env_prefix=env_prefix(section))


class SectionSettings(BaseSettings):
    """Base for every settings section. ``section`` names the TOML table and the env prefix."""

    section: ClassVar[str] = "common"
    model_config = SettingsConfigDict(extra="forbid", env_nested_delimiter="__")

    @classmethod
    def env_prefix_for(cls) -> str:
        return env_prefix(cls.section)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_values = _FILE_VALUES.get(cls.section, {})
        return (init_settings, env_settings, _TomlSection(settings_cls, file_values), file_secret_settings)


# The parsed config file, keyed by section. Filled by ``load_all`` (explicitly, never at import time).
_FILE_VALUES: dict[str, dict[str, Any]] = {}


#: a key of ``admission_families`` / ``admission_overrides``: ``Service/Method``, ``Service`` or a family name
_ADMISSION_KEY = r"^[A-Za-z][A-Za-z0-9_.-]*(/[A-Za-z][A-Za-z0-9_]*)?$"
AdmissionKey = Annotated[str, StringConstraints(pattern=_ADMISSION_KEY)]

#: methods sharing a family unless ``admission_families`` says otherwise: Ask and AskStream cost the same
#: and make the same internal calls (a guardrail output stream each), so they share one bound
DEFAULT_ADMISSION_FAMILIES: dict[str, str] = {
    "AgentOrchestratorService/AskStream": "AgentOrchestratorService/Ask",
}


class AdmissionOverride(BaseModel):
    """Limits of one admission family (or of each family of a service); unset = the ``[common]`` default."""

    model_config = {"extra": "forbid"}

    max_concurrent: int | None = Field(None, ge=1)
    max_queue: int | None = Field(None, ge=0)
    max_queue_wait_ms: float | None = Field(None, ge=0)


#: family limits unless ``admission_overrides`` says otherwise: a document watch is long and idle
#: (ingestion bounds open watches itself), so it is not held to the defaults made for short calls; an
#: answer is CPU-bound on the local generator, so more than a few at once only share the cores (measured
#: with ``python -m isthmus_bench.capacity``, docs/benchmarks.md) and a short wait keeps admitted answers
#: fast and refusals prompt
DEFAULT_ADMISSION_OVERRIDES: dict[str, AdmissionOverride] = {
    "AgentOrchestratorService/Ask": AdmissionOverride(max_concurrent=4, max_queue=16, max_queue_wait_ms=25),
    "IngestionService/WatchDocuments": AdmissionOverride(
        max_concurrent=256, max_queue=0, max_queue_wait_ms=None
    ),
}


class CommonSettings(SectionSettings):
    section: ClassVar[str] = "common"
    model_config = section_config("common")

    data_dir: Path = Field(Path(".isthmus-data"), description="where embedded state is persisted")
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(50051, ge=0, le=65535, description="0 picks a free port")
    metrics_port: int = Field(9464, ge=0, le=65535, description="Prometheus /metrics; 0 disables it")
    metrics_auth: bool = Field(
        True,
        description="with auth on, /metrics needs a bearer token holding metrics.read for every tenant "
        "(false: served to anyone who reaches the port; protect it another way)",
    )
    bus: Literal["auto", "inprocess", "kafka"] = Field(
        "auto", description="auto = in-process for the 'all' target, Kafka for single services"
    )
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    kafka_partitions: int = Field(6, ge=1)
    kafka_replication_factor: int = Field(1, ge=1)
    kafka_retention_ms: int | None = Field(
        None, ge=1, description="overrides every topic's retention (default: the topic registry's)"
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description="PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL (isthmus_core.bus.kafka_security)",
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        None, description="PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 | AWS_MSK_IAM (with a SASL_* protocol)"
    )
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = Field(
        SecretStr(""), description="from a Secret (chart: kafka.sasl.passwordSecretRef)"
    )
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle for the brokers; default: system CAs")
    kafka_ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    kafka_ssl_keyfile: Path | None = Field(None, description="its private key")
    kafka_ssl_key_password: SecretStr = SecretStr("")
    kafka_aws_region: str = Field(
        default_factory=lambda: os.environ.get("AWS_REGION", ""),
        description="the MSK cluster's region, for AWS_MSK_IAM (default: AWS_REGION)",
    )
    endpoints: dict[str, str] = Field(
        default_factory=dict,
        description="gRPC address per service for calls between services; missing = this process",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_endpoint: str = "http://127.0.0.1:4317"
    shutdown_grace_s: float = Field(10.0, ge=0, description="in-flight calls get this long to finish")
    shutdown_drain_delay_s: float = Field(
        0.0, ge=0, description="readiness reports NOT_SERVING this long before the listener closes"
    )
    max_message_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    admission_enabled: bool = Field(
        True, description="refuse gRPC calls past a family's capacity (RESOURCE_EXHAUSTED + RetryInfo)"
    )
    admission_max_concurrent: int = Field(16, ge=1, description="calls of one family running at once")
    admission_max_queue: int = Field(64, ge=0, description="calls of one family waiting; more are refused")
    admission_max_queue_wait_ms: float = Field(
        1000.0,
        ge=0,
        description="a call predicted to wait longer is refused at once, one that waited this long too",
    )
    admission_families: dict[AdmissionKey, AdmissionKey] = Field(
        default_factory=dict,
        description="'Service/Method' or 'Service' -> family name, for methods sharing one bound "
        "(added to the built-in AskStream -> AgentOrchestratorService/Ask)",
    )
    admission_overrides: dict[AdmissionKey, AdmissionOverride] = Field(
        default_factory=dict,
        description="family name ('Service/Method' by default) or 'Service' -> max_concurrent, max_queue, "
        "max_queue_wait_ms (added to the built-in one for IngestionService/WatchDocuments)",
    )
    # -- event bus bounds: back-pressure and retention (isthmus_core.bus.inprocess, .kafka) -----------
    inprocess_max_backlog_messages: int = Field(
        10_000, ge=1, description="in-process bus: publish waits while a partition's slowest group lags this"
    )
    inprocess_max_backlog_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="in-process bus: ... or this many bytes behind (per partition)"
    )
    inprocess_publish_timeout_s: float = Field(
        10.0, ge=0, description="in-process bus: a publish waits this long for room, then UNAVAILABLE"
    )
    inprocess_retained_messages: int = Field(
        1_000,
        ge=0,
        description="in-process bus: handled messages kept per partition (for late groups)",
    )
    inprocess_retained_bytes: int = Field(
        32 * 1024 * 1024, ge=0, description="in-process bus: ... and at most this many bytes of them"
    )
    kafka_max_poll_records: int = Field(
        500, ge=1, description="Kafka consumers: records handled per fetch (then committed)"
    )
    kafka_fetch_max_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1,
        description="Kafka consumers: bytes per fetch response (one larger record still comes)",
    )
    kafka_max_partition_fetch_bytes: int = Field(
        1024 * 1024, ge=1, description="Kafka consumers: bytes per partition per fetch (prefetch buffer)"
    )

    # -- model bundles (isthmus_core.model_bundles; EdgeRollout) ----------------------------------------
    model_bundle: str = Field(
        "",
        max_length=128,
        description="the model bundle this workload serves, '<name>@<version>' (an EdgeRollout sets it "
        "through the pod annotation isthmus.dev/model-bundle); empty = the bundled models. Checked at "
        "start: the bundle must exist under model_bundles_dir with a valid bundle.json",
    )
    model_bundles_dir: Path | None = Field(
        None,
        description="where the model bundles are: <dir>/<name>/<version>/bundle.json (the chart mounts "
        "modelBundles here); unset = no bundles (model_bundle must be empty)",
    )

    # -- multi-region (isthmus_core.regions, docs/multi-region.md) -------------------------------------
    region: str = Field(
        "", description="this deployment's region (a DNS label); empty = a single-region deployment"
    )
    regions: list[str] = Field(
        default_factory=list,
        description="every region of the deployment, this one included: consumers also read what "
        "MirrorMaker 2 mirrors from the others ('<region>.<topic>'); document versions are drawn per region",
    )

    # -- identity and access (isthmus_core.auth, docs/security.md) -----------------------------------
    auth: Literal["off", "oidc", "local"] = Field(
        "off",
        description="off = no authentication (loopback only, said loudly at start); oidc = bearer JWTs "
        "from auth_issuer, checked against its JWKS; local = JWTs from this machine's development "
        "issuer (isthmus auth token)",
    )
    auth_issuer: str = Field("", description="oidc: the issuer URL, as in the tokens' iss claim")
    auth_jwks_url: str = Field("", description="oidc: its JWKS; default <issuer>/.well-known/jwks.json")
    auth_audience: str = Field("isthmus", description="the aud every token must name")
    auth_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256"],
        description="accepted signature algorithms (asymmetric only; none and HS* are always refused)",
    )
    auth_leeway_s: float = Field(30.0, ge=0, le=300, description="clock skew allowed on exp/nbf/iat")
    auth_jwks_cache_s: float = Field(300.0, ge=0, description="how long fetched keys are kept")
    auth_groups_claim: str = Field("groups", description="the claim listing a caller's groups")
    auth_exempt_methods: list[str] = Field(
        default_factory=list,
        description="full method names served without authentication (health and reflection always are)",
    )
    auth_local_key_file: Path | None = Field(
        None, description="local: the development issuer's key; default <data_dir>/auth/local-issuer.pem"
    )
    auth_service_token_url: str = Field(
        "", description="oidc: token endpoint for this process's own (client-credentials) token"
    )
    auth_service_client_id: str = Field("", description="oidc: this process's OAuth2 client id")
    auth_service_client_secret: SecretStr = Field(SecretStr(""), description="... and its secret")
    access_file: Path | None = Field(
        None,
        description="role bindings and quotas per tenant (TOML); default <data_dir>/access.toml; "
        "re-read when it changes",
    )
    quota_replicas: int = Field(
        1,
        ge=1,
        description="rates and token budgets are per process, divided by this so N replicas together "
        "allow the tenant's quota (the chart sets it to the Deployment's replicas)",
    )

    @model_validator(mode="after")
    def _settings_are_consistent(self) -> CommonSettings:
        """Checks across settings: every problem found is reported, one per line (auth, regions, model
        bundle, Kafka)."""
        from isthmus_core.auth.settings_check import auth_problems

        problems = [*auth_problems(self), *self._region_problems(), *self._bundle_problems()]
        if self.bus != "inprocess":
            problems.extend(self.kafka_security().problems())
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _region_problems(self) -> list[str]:
        from isthmus_core.regions import REGION_RULE, is_region

        problems = [f"regions: {r!r}: {REGION_RULE}" for r in self.regions if not is_region(r)]
        if self.region and not is_region(self.region):
            problems.append(f"region: {self.region!r}: {REGION_RULE}")
        if len(set(self.regions)) != len(self.regions):
            problems.append(f"regions lists a region twice: {self.regions}")
        if self.regions and self.region not in self.regions:
            problems.append(f"region {self.region!r} must be one of regions {self.regions}")
        return problems

    def peer_regions(self) -> list[str]:
        """The other regions, whose mirrored topics this region's consumers read."""
        return [r for r in sorted(self.regions) if r != self.region]

    def _bundle_problems(self) -> list[str]:
        """The bundle named by model_bundle must be there and valid (a workload never starts without it)."""
        try:
            self.loaded_model_bundle()
        except ConfigurationError as exc:
            return [str(exc)]
        return []

    def loaded_model_bundle(self) -> ModelBundle | None:
        """The bundle this workload serves (None = the bundled models); checked when loaded."""
        from isthmus_core.model_bundles import load_bundle

        return load_bundle(self.model_bundles_dir, self.model_bundle) if self.model_bundle else None

    def kafka_security(self) -> KafkaSecurity:
        """How every Kafka client of this process connects (TLS, SASL, MSK IAM)."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
            ssl_key_password=self.kafka_ssl_key_password.get_secret_value() or None,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username or None,
            sasl_password=self.kafka_sasl_password.get_secret_value() or None,
            aws_region=self.kafka_aws_region or None,
        )


def read_config_file(path: Path | None) -> dict[str, dict[str, Any]]:
    if path is None:
        env = os.environ.get("ISTHMUS_CONFIG")
        path = Path(env) if env else None
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigurationError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from exc
    bad = [k for k, v in data.items() if not isinstance(v, dict)]
    if bad:
        raise ConfigurationError(f"config file {path}: top-level keys must be [section] tables, got {bad}")
    return {k: dict(v) for k, v in data.items()}


def load_all(
    classes: Sequence[type[SectionSettings]],
    config_file: Path | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, SectionSettings]:
    """Validate every section; raise one ConfigurationError listing every problem.

    ``overrides`` (per section) win over every other source — used by in-process tools and tests."""
    _FILE_VALUES.clear()
    _FILE_VALUES.update(read_config_file(config_file))
    known = {c.section for c in classes}
    problems: list[str] = [
        f"[{name}] unknown section in config file" for name in _FILE_VALUES if name not in known
    ]
    for cls in classes:
        unknown = sorted(set(_FILE_VALUES.get(cls.section, {})) - set(cls.model_fields))
        problems.extend(f"[{cls.section}] {key}: unknown setting in config file" for key in unknown)
    out: dict[str, SectionSettings] = {}
    for cls in classes:
        try:
            out[cls.section] = cls(**dict((overrides or {}).get(cls.section, {})))
        except ValidationError as exc:
            for err in exc.errors():
                if not err["loc"]:  # checks across settings (model validator): one problem per line
                    lines = err["msg"].removeprefix("Value error, ").splitlines()
                    problems.extend(f"[{cls.section}] {line}" for line in lines)
                    continue
                loc = ".".join(str(p) for p in err["loc"])
                env = cls.env_prefix_for() + loc.split(".")[0].upper()
                problems.append(f"[{cls.section}] {loc}: {err['msg']} (env {env})")
    if problems:
        raise ConfigurationError("invalid settings:\n  " + "\n  ".join(problems))
    return out


def masked(settings: BaseModel) -> dict[str, Any]:
    """A JSON-able dump with secrets masked, for ``isthmus config print``."""
    data: dict[str, Any] = json.loads(settings.model_dump_json())
    for name, value in settings:
        if isinstance(value, SecretStr):
            data[name] = "********" if value.get_secret_value() else ""
    return data
