"""The ``Tenant`` and ``EdgeRollout`` specs as pydantic models, and the checks the CRD schema cannot make.

The CRD's openAPIV3Schema (``charts/isthmus-operator/crds/``) rejects malformed objects at the API server;
these models re-check the same shape (an older CRD may be installed) and add what needs the object's
name or the cluster's state. Every failure is an :class:`~isthmus_core.errors.InvalidArgument` whose
message names the field and says what to change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from isthmus_core.auth.identity import Role
from isthmus_core.auth.methods import METHOD_RULES
from isthmus_core.contracts.ids import PRINCIPAL_PATTERN, PRINCIPAL_RULE, is_tenant_id
from isthmus_core.drills.scenarios import SCENARIOS, Action, Scenario, bind
from isthmus_core.errors import InvalidArgument
from isthmus_core.model_bundles import BUNDLE_NAME_PATTERN, BUNDLE_PART_MAX, BUNDLE_VERSION_PATTERN

REGION_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
#: a Kubernetes quantity (the CRD checks it with CEL ``isQuantity``)
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
METRIC_NAMES = ("ndcg_at_10", "faithfulness", "guardrail_block_rate")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ModelBundle(_Spec):
    name: str = Field(min_length=1, max_length=BUNDLE_PART_MAX, pattern=BUNDLE_NAME_PATTERN)
    version: str = Field(min_length=1, max_length=BUNDLE_PART_MAX, pattern=BUNDLE_VERSION_PATTERN)

    @property
    def ref(self) -> str:
        """``<name>@<version>``: what edge workloads receive in annotation ``isthmus.dev/model-bundle``."""
        return f"{self.name}@{self.version}"


class Quotas(_Spec):
    requests_per_second: int = Field(alias="requestsPerSecond", ge=1)
    tokens_per_day: int = Field(alias="tokensPerDay", ge=1)
    storage: str = Field(pattern=QUANTITY_PATTERN)


#: the RPC families a ``requestsPerS`` may name (``MethodRule.family``; the access file's FAMILIES)
FAMILIES: frozenset[str] = frozenset(rule.family for rule in METHOD_RULES.values())
#: roles a Tenant (or the operator's platform bindings) may bind: every role but ``service``, which
#: Isthmus binds implicitly to its own client (isthmus_core.auth)
BINDABLE_ROLES: tuple[str, ...] = tuple(r.value for r in Role if r is not Role.SERVICE)


class Binding(_Spec):
    """A role bound to a principal (in a Tenant: in that tenant; in the operator's settings: in all)."""

    #: a token's subject (a client-credentials token's client id) or ``group:<name>``: the access
    #: file's rule (isthmus_core.contracts.ids.PRINCIPAL_PATTERN)
    principal: str
    role: str

    @field_validator("principal")
    @classmethod
    def _principal(cls, value: str) -> str:
        if not re.fullmatch(PRINCIPAL_PATTERN, value):
            raise ValueError(f"principal {value!r}: {PRINCIPAL_RULE}")
        return value

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if value not in BINDABLE_ROLES:
            raise ValueError(f"role {value!r} is not one of {', '.join(BINDABLE_ROLES)}")
        return value


class Access(_Spec):
    bindings: tuple[Binding, ...] = Field(default=(), max_length=256)


class Quota(_Spec):
    """The tenant's enforced limits (the access file's ``[tenants.<t>.quota]``); absent = unlimited."""

    requests_per_s: dict[str, int] = Field(default_factory=dict, alias="requestsPerS")
    max_documents: int | None = Field(default=None, alias="maxDocuments", ge=0)
    max_bytes: int | None = Field(default=None, alias="maxBytes", ge=0)
    llm_tokens_per_day: int | None = Field(default=None, alias="llmTokensPerDay", ge=0)

    @field_validator("requests_per_s")
    @classmethod
    def _rates(cls, value: dict[str, int]) -> dict[str, int]:
        for family, rate in value.items():
            if family not in FAMILIES:
                raise ValueError(
                    f"requestsPerS: {family!r} is not an RPC family; the families are "
                    f"{', '.join(sorted(FAMILIES))}"
                )
            if rate < 1:
                raise ValueError(f"requestsPerS.{family}: at least 1 request per second, got {rate}")
        return value


class PolicyRef(_Spec):
    """The tenant's guardrail policy: a preset by ``name`` ("default", "strict", "permissive"), or, with
    ``version``, that stored version of the tenant's policy (then ``name`` is not applied)."""

    name: str = Field(min_length=1, max_length=63)
    version: int | None = Field(default=None, ge=1)

    @property
    def text(self) -> str:
        """``preset 'strict'`` or ``version 3``: what the ref asks for, for messages."""
        return f"version {self.version}" if self.version is not None else f"preset {self.name!r}"


class TenantSpec(_Spec):
    primary_region: str = Field(alias="primaryRegion", pattern=REGION_PATTERN)
    replica_regions: tuple[str, ...] = Field(default=(), alias="replicaRegions")
    #: recorded only (tenant.json); superseded by ``quota``, which is enforced
    quotas: Quotas | None = None
    access: Access = Access()
    quota: Quota | None = None
    guardrail_policy_ref: PolicyRef = Field(default=PolicyRef(name="default"), alias="guardrailPolicyRef")
    model_bundle: ModelBundle = Field(alias="modelBundle")
    deletion_policy: Literal["Delete", "Retain"] = Field(default="Delete", alias="deletionPolicy")

    @model_validator(mode="after")
    def _regions(self) -> TenantSpec:
        for region in self.replica_regions:
            if not re.fullmatch(REGION_PATTERN, region):
                raise ValueError(f"replicaRegions: {region!r} is not a region name (lowercase, digits, '-')")
        if self.primary_region in self.replica_regions:
            raise ValueError(
                f"replicaRegions must not contain the primary region {self.primary_region!r}: "
                "the primary already holds the tenant's data"
            )
        if len(set(self.replica_regions)) != len(self.replica_regions):
            raise ValueError("replicaRegions lists a region twice")
        return self


class NodePool(_Spec):
    match_labels: dict[str, str] = Field(alias="matchLabels", min_length=1)
    workload_kind: Literal["DaemonSet", "Deployment"] = Field(default="DaemonSet", alias="workloadKind")

    @property
    def label_selector(self) -> str:
        """The ``labelSelector`` query string for a list call."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.match_labels.items()))


class Gates(_Spec):
    """Thresholds are absolute differences against the baseline (e.g. 0.02 nDCG@10 points)."""

    max_ndcg_drop: float | None = Field(default=None, alias="maxNdcgDrop", ge=0, le=1)
    max_faithfulness_drop: float | None = Field(default=None, alias="maxFaithfulnessDrop", ge=0, le=1)
    max_block_rate_increase: float | None = Field(
        default=None, alias="maxGuardrailBlockRateIncrease", ge=0, le=1
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> Gates:
        if self.max_ndcg_drop is None and self.max_faithfulness_drop is None:
            if self.max_block_rate_increase is None:
                raise ValueError(
                    "gates: set at least one of maxNdcgDrop, maxFaithfulnessDrop, "
                    "maxGuardrailBlockRateIncrease"
                )
        return self


class RolloutEvaluation(_Spec):
    """Whose answers the gates judge (the evaluation service's online metrics, operator setting
    ``rollout_metrics = "evaluation"``): one tenant's, or every tenant's when ``tenant`` is absent."""

    tenant: str | None = Field(default=None)

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        if value is not None and not is_tenant_id(value):
            raise ValueError(f"tenant {value!r} is not a tenant id (the name of a Tenant object)")
        return value


class EdgeRolloutSpec(_Spec):
    bundle: ModelBundle
    node_pool: NodePool = Field(alias="nodePool")
    waves: tuple[int, ...] = Field(min_length=1, max_length=10)
    gates: Gates
    paused: bool = False
    evaluation: RolloutEvaluation = RolloutEvaluation()

    @model_validator(mode="after")
    def _waves(self) -> EdgeRolloutSpec:
        if any(not 1 <= w <= 100 for w in self.waves):
            raise ValueError(f"waves: every wave is a percentage in 1..100, got {list(self.waves)}")
        if any(b <= a for a, b in zip(self.waves, self.waves[1:], strict=False)):
            raise ValueError(f"waves must strictly increase, got {list(self.waves)}")
        if self.waves[-1] != 100:
            raise ValueError(f"the last wave must be 100 (the whole pool), got {self.waves[-1]}")
        return self


#: a namespace name (a DNS label)
NAMESPACE_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
#: actions that act on a region's workloads through the Kubernetes API (the rest wait or patch Tenants)
WORKLOAD_ACTIONS = frozenset(
    {
        Action.KILL_REGION,
        Action.RESTORE_REGION,
        Action.KILL_BROKER,
        Action.RESTORE_BROKER,
        Action.STOP_LINK,
        Action.START_LINK,
    }
)


class RegionWorkloads(_Spec):
    """Where a region's workloads are: Deployments and StatefulSets (and broker pods) matching
    ``matchLabels`` in ``namespace`` (default: the drill's namespace)."""

    namespace: str | None = Field(default=None, pattern=NAMESPACE_PATTERN)
    match_labels: dict[str, str] = Field(alias="matchLabels", min_length=1)

    def selector(self, *extra: tuple[str, str]) -> str:
        """The ``labelSelector`` query string, with ``extra`` labels added (e.g. the component)."""
        labels = {**self.match_labels, **dict(extra)}
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class DrillRegions(_Spec):
    primary: str = Field(pattern=REGION_PATTERN)
    secondary: str = Field(pattern=REGION_PATTERN)

    @model_validator(mode="after")
    def _apart(self) -> DrillRegions:
        if self.primary == self.secondary:
            raise ValueError(
                f"secondary must differ from primary ({self.primary!r}): a drill fails "
                "the primary region over to another one"
            )
        return self


class Objectives(_Spec):
    rpo_max_seconds: float = Field(alias="rpoMaxSeconds", ge=0)
    rto_max_seconds: float = Field(alias="rtoMaxSeconds", gt=0)


class FailoverDrillSpec(_Spec):
    scenario: str
    tenants: tuple[str, ...] = Field(min_length=1, max_length=64)
    regions: DrillRegions
    objectives: Objectives
    region_workloads: dict[str, RegionWorkloads] = Field(default_factory=dict, alias="regionWorkloads")
    #: every OBSERVE / AWAIT step's seconds are multiplied by this (a quick rehearsal: 0.1)
    pace: float = Field(default=1.0, gt=0, le=10)

    @field_validator("scenario")
    @classmethod
    def _scenario(cls, value: str) -> str:
        if value not in SCENARIOS:
            raise ValueError(
                f"unknown drill scenario {value!r}; the scenarios are: {', '.join(sorted(SCENARIOS))}"
            )
        return value

    @field_validator("tenants")
    @classmethod
    def _tenants(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [t for t in value if not is_tenant_id(t)]
        if bad:
            raise ValueError(f"{bad} are not tenant ids (the names of Tenant objects)")
        if len(set(value)) != len(value):
            raise ValueError("a tenant is listed twice")
        return value

    @model_validator(mode="after")
    def _workloads(self) -> FailoverDrillSpec:
        problems = []
        drill_regions = (self.regions.primary, self.regions.secondary)
        stray = sorted(set(self.region_workloads) - set(drill_regions))
        if stray:
            problems.append(
                f"regionWorkloads: {stray} are not the drill's regions (primary {drill_regions[0]!r}, "
                f"secondary {drill_regions[1]!r})"
            )
        if self.scenario in SCENARIOS:
            for region, actions in workload_regions(SCENARIOS[self.scenario], *drill_regions).items():
                if region not in self.region_workloads:
                    problems.append(
                        f"regionWorkloads.{region}: required: scenario {self.scenario!r} runs "
                        f"{', '.join(actions)} on region {region!r} (give its namespace and matchLabels)"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def definition(self) -> Scenario:
        return SCENARIOS[self.scenario]


def workload_regions(definition: Scenario, primary: str, secondary: str) -> dict[str, list[str]]:
    """The regions whose workloads a scenario acts on, each with the actions (in step order)."""
    out: dict[str, list[str]] = {}
    for step in definition.steps:
        if step.action in WORKLOAD_ACTIONS:
            actions = out.setdefault(bind(step, primary, secondary), [])
            if step.action.value not in actions:
                actions.append(step.action.value)
    return out


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"spec.{loc}: {msg}" if loc else f"spec: {msg}")
    return "; ".join(parts)


def parse_tenant(name: str, spec: Mapping[str, Any]) -> TenantSpec:
    """Validate a Tenant; ``name`` (metadata.name) becomes the tenant id, so it must fit that rule too."""
    if not is_tenant_id(name):
        raise InvalidArgument(
            f"metadata.name {name!r} cannot be a tenant id: use 1-63 lowercase letters, digits or '-', "
            "starting with a letter or digit (no dots)"
        )
    try:
        return TenantSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise InvalidArgument(f"invalid Tenant {name!r}: {_describe(exc)}") from exc


def parse_rollout(name: str, spec: Mapping[str, Any]) -> EdgeRolloutSpec:
    try:
        return EdgeRolloutSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise InvalidArgument(f"invalid EdgeRollout {name!r}: {_describe(exc)}") from exc


def parse_drill(name: str, spec: Mapping[str, Any]) -> FailoverDrillSpec:
    try:
        return FailoverDrillSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise InvalidArgument(f"invalid FailoverDrill {name!r}: {_describe(exc)}") from exc
