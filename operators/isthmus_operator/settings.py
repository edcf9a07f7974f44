"""Operator settings: ``ISTHMUS_OPERATOR_<FIELD>`` env vars (or the config file's ``[operator]`` table)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, SecretStr, model_validator

from isthmus_core.regions import REGION_RULE, is_region
from isthmus_core.settings import SectionSettings, section_config
from isthmus_operator.specs import Binding

ENDPOINT_PATTERN = r"^[^\s:]+:[0-9]{1,5}$"


if TYPE_CHECKING:
    from isthmus_core.auth.outbound import TokenSource


class OperatorSettings(SectionSettings):
    section: ClassVar[str] = "operator"
    model_config = section_config("operator")

    retrieval_endpoint: str = Field(
        "",
        description="host:port of the retrieval gRPC service, where tenants are created in the vector "
        "store; empty = the operator does not manage vector-store tenants. The single-region case: "
        "set regions instead for several regions (not both)",
        pattern=r"^$|" + ENDPOINT_PATTERN,
    )
    regions: dict[str, str] = Field(
        default_factory=dict,
        description="region name -> that region's gRPC endpoint (host:port, the all-in-one platform or "
        'its retrieval/ingestion), e.g. ISTHMUS_OPERATOR_REGIONS=\'{"a":"a-isthmus:50051",'
        '"b":"b-isthmus:50051"}\': a Tenant is created in its primaryRegion and every replicaRegion, '
        "its status shows each region's readiness and lag; FailoverDrills probe these endpoints' gRPC "
        "health. Empty = one region (retrieval_endpoint)",
    )
    retrieval_timeout_s: float = Field(5.0, gt=0, description="deadline of one retrieval call")
    guardrail_endpoint: str = Field(
        "",
        description="host:port of the guardrail gRPC service, where each Tenant's guardrailPolicyRef is "
        "applied (ApplyPolicyRef, with the operator's token; condition GuardrailPolicyReady); empty = "
        "not applied. With regions, each region's endpoint serves its guardrail instead (not both)",
        pattern=r"^$|" + ENDPOINT_PATTERN,
    )
    guardrail_timeout_s: float = Field(5.0, gt=0, description="deadline of one guardrail call")
    rollout_metrics: Literal["evaluation", "configmap"] = Field(
        "evaluation",
        description="where EdgeRollout gates read their metrics: evaluation = the evaluation service's "
        "online metrics of the answers served with each bundle (evaluation_endpoint); configmap = the "
        "ConfigMap isthmus-rollout-metrics-<rollout> that you write (keys baseline, wave-1 ...)",
    )
    evaluation_endpoint: str = Field(
        "",
        description="host:port of the evaluation gRPC service (GetOnlineMetrics, with the operator's "
        "token: it needs metrics.read in every tenant, e.g. platform-admin); required with "
        "rollout_metrics=evaluation",
        pattern=r"^$|" + ENDPOINT_PATTERN,
    )
    evaluation_timeout_s: float = Field(5.0, gt=0, description="deadline of one evaluation call")
    evaluation_min_samples: int = Field(
        20,
        ge=1,
        description="a gate metric computed over fewer answers (block rate) or judged samples (nDCG@10, "
        "faithfulness) than this counts as missing: the rollout holds on its gate until there are enough",
    )
    evaluation_baseline_window_s: float = Field(
        86_400.0,
        gt=0,
        description="the baseline counts the answers served with the workloads' previous bundles from this "
        "long before the first wave until now",
    )
    rollout_interval_s: float = Field(
        15.0, gt=0, description="how often an EdgeRollout re-reads its metrics and decides its next step"
    )
    regions_interval_s: float = Field(
        30.0,
        gt=0,
        description="with regions: how often a Tenant is re-ensured in its regions and its per-region "
        "status (readiness, replication lag) refreshed",
    )
    drill_interval_s: float = Field(
        1.0, gt=0, description="how often a running FailoverDrill is advanced (one step at most per tick)"
    )
    retry_delay_s: float = Field(
        10.0, gt=0, description="delay before retrying a handler after a transient error"
    )
    access_configmap: str = Field(
        "isthmus-access",
        description="the ConfigMap (key access.toml) the operator renders from the Tenant objects of each "
        "namespace — spec.access.bindings and spec.quota, in the access file format — for the isthmus "
        "chart's access.existingConfigMap; empty = the operator writes no access file",
        pattern=r"^$|^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
    )
    access_platform_bindings: list[Binding] = Field(
        default_factory=list,
        description="bindings for every tenant (the access file's [platform]), JSON, e.g. "
        '[{"principal": "ops-admin", "role": "platform-admin"}]',
    )
    namespace: str = Field("", description="watch only this namespace; empty = every namespace")
    # -- its own identity on the platform's gRPC APIs (auth on: CreateTenant needs platform-admin) ---
    auth_token_url: str = Field(
        "", description="OAuth2 token endpoint for the operator's client-credentials token; empty = none"
    )
    auth_client_id: str = Field("", description="the operator's OAuth2 client (bind it as platform-admin)")
    auth_client_secret: SecretStr = Field(SecretStr(""), description="its secret (from a Secret)")
    auth_audience: str = Field("isthmus", description="the audience its tokens are requested for")
    liveness_endpoint: str = Field(
        "http://0.0.0.0:8080/healthz", description="kopf's liveness endpoint; empty = none"
    )

    @model_validator(mode="after")
    def _regions(self) -> OperatorSettings:
        import re

        problems = []
        for name, endpoint in sorted(self.regions.items()):
            if not is_region(name):
                problems.append(f"regions: {name!r}: {REGION_RULE}")
            if not re.fullmatch(ENDPOINT_PATTERN, endpoint):
                problems.append(f"regions.{name}: the endpoint must be host:port, got {endpoint!r}")
        if self.regions and self.retrieval_endpoint:
            problems.append(
                "set either retrieval_endpoint (one region) or regions (several), not both: with regions, "
                "each region's endpoint serves its tenants"
            )
        if self.regions and self.guardrail_endpoint:
            problems.append(
                "set either guardrail_endpoint (one region) or regions (several), not both: with regions, "
                "each region's endpoint serves its guardrail"
            )
        if self.rollout_metrics == "evaluation" and not self.evaluation_endpoint:
            problems.append(
                "rollout_metrics is 'evaluation' but evaluation_endpoint is empty: set it to the evaluation "
                "service's host:port (env ISTHMUS_OPERATOR_EVALUATION_ENDPOINT), or set rollout_metrics to "
                "'configmap'"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def operator_tokens(settings: OperatorSettings) -> TokenSource | None:
    """The operator's bearer on the platform's APIs: a client-credentials token when configured."""
    from isthmus_core.auth.outbound import ClientCredentialsToken

    if not settings.auth_token_url:
        return None
    return ClientCredentialsToken(
        settings.auth_token_url,
        settings.auth_client_id,
        settings.auth_client_secret.get_secret_value(),
        audience=settings.auth_audience,
    )
