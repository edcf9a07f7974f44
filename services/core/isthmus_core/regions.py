"""Regions: the deployment-wide description of regions, and the replication rules every region shares.

Pure (values in, values or :class:`~isthmus_core.errors.InvalidArgument` out, no I/O library) but for
:func:`load_regions`, which reads the file.

* :class:`RegionsConfig` is the file (TOML) that names each region's endpoints and, for local drills,
  the shell hooks that inject faults. ``tests/infra/regions.sh up`` writes one; ``isthmus drill run``,
  the regional client and the MirrorMaker 2 configuration read it.
* :data:`REPLICATED_TOPICS` is what crosses regions (MirrorMaker 2's allow-list); a topic mirrored
  from region ``a`` arrives in the other regions as ``a.<topic>`` (MM2's DefaultReplicationPolicy,
  source-cluster alias = region name), so a region never mirrors back what it received: no loops.
* :func:`next_version` gives each region its own residue class of document versions, so two regions
  that write one document concurrently never pick the same version: the higher version wins everywhere.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from isthmus_core.contracts import topics
from isthmus_core.contracts.events import Event
from isthmus_core.contracts.ids import TENANT_ID_PATTERN
from isthmus_core.errors import InvalidArgument

EventT = TypeVar("EventT", bound=Event)

#: a region name: a DNS label (it names a Kafka cluster alias, a topic prefix and Kubernetes objects)
REGION_PATTERN: Final = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
REGION_RULE: Final = "region names are 1-63 characters of lowercase letters, digits and '-' (a DNS label)"
_REGION: Final = re.compile(REGION_PATTERN)

#: topics MirrorMaker 2 copies between regions: the embedded chunks carry a document whole (text,
#: offsets, metadata, vectors, version, content hash), so a region indexes a mirrored document without
#: parsing or embedding it again; answers and verdicts feed evaluation's cross-region view; an erasure
#: requested in one region is applied in every region, which each answer the origin's receipt; a document
#: deleted in one region is deleted in every region.
REPLICATED_TOPICS: Final[tuple[topics.AnyTopic, ...]] = (
    topics.CHUNKS_EMBEDDED,
    topics.DOCUMENTS_DELETED,
    topics.ANSWERS_PRODUCED,
    topics.GUARDRAIL_VERDICTS,
    topics.ERASURES_REQUESTED,
    topics.ERASURES_APPLIED,
)
#: MM2's replication policy separator (DefaultReplicationPolicy): ``<source alias>.<topic>``
SEPARATOR: Final = "."


def is_region(value: object) -> bool:
    return isinstance(value, str) and _REGION.fullmatch(value) is not None


def parse_region(value: str, field: str = "region") -> str:
    if not is_region(value):
        raise InvalidArgument(f"{field}: {value!r} is not a region name: {REGION_RULE}")
    return value


def remote_topic(source_region: str, topic: str) -> str:
    """The name a topic of ``source_region`` has in the other regions' clusters."""
    return f"{parse_region(source_region)}{SEPARATOR}{topic}"


def mirrored(spec: topics.TopicSpec[EventT], source_region: str) -> topics.TopicSpec[EventT]:
    """``spec`` as MirrorMaker 2 delivers it from ``source_region``: same events, partitions and key,
    named ``<source_region>.<topic>`` (so the typed bus helpers subscribe to it like to any topic)."""
    if spec not in REPLICATED_TOPICS:
        raise InvalidArgument(f"{spec.name} is not replicated between regions")
    return dataclasses.replace(spec, name=remote_topic(source_region, spec.name))


def source_region(topic: str, local_region: str) -> str:
    """The region a message on ``topic`` was first written in: the alias prefix, or the local region."""
    for spec in REPLICATED_TOPICS:
        for name in (spec.name, spec.dlq):
            if topic.endswith(SEPARATOR + name):
                return topic[: -len(SEPARATOR + name)]
    return local_region


def mirror_allowlist() -> str:
    """MM2's ``topics`` property: a regex of exactly the replicated topics (never a mirrored copy)."""
    return "|".join(re.escape(spec.name) for spec in REPLICATED_TOPICS)


def next_version(previous: int, region: str = "", regions: Sequence[str] = ()) -> int:
    """The version a new write of a document gets in ``region``: the smallest integer above ``previous``
    in the region's residue class modulo the number of regions (one region: ``previous + 1``).

    Regions are ranked by name, so every region computes the same classes. A write after seeing the
    other region's version always ranks above it; two concurrent writes from the same ``previous`` get
    different versions, and the higher one wins in every region (a defined winner, no tie)."""
    if previous < 0:
        raise InvalidArgument(f"a document version is never negative, got {previous}")
    ranked = sorted(set(regions))
    if not region or len(ranked) <= 1:
        return previous + 1
    if region not in ranked:
        raise InvalidArgument(f"region {region!r} is not one of the regions {ranked}")
    n = len(ranked)
    residue = (ranked.index(region) + 1) % n
    v = previous + 1
    return v + (residue - v) % n


class RegionHooks(BaseModel):
    """Shell commands a local drill runs to inject and heal faults (``tests/infra/regions.sh`` writes
    them). Each is run with ``/bin/sh -c``; an empty hook means the fault is not available."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kill: str = Field("", description="kill -9 every process of the region, brokers included")
    restore: str = Field("", description="start the region again on its data")
    kill_broker: str = Field("", description="kill one broker of the region's cluster")
    restore_broker: str = Field("", description="start that broker again")
    stop_link: str = Field("", description="stop replication into this region (its MirrorMaker 2)")
    start_link: str = Field("", description="start it again")


class Region(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(min_length=1, description="the region's gRPC address (host:port)")
    kafka_bootstrap: str = Field("", description="the region's Kafka bootstrap list, for producers")
    metrics: str = Field("", description="the region's Prometheus /metrics address (host:port)")
    hooks: RegionHooks = Field(default_factory=lambda: RegionHooks.model_validate({}))


class RegionsConfig(BaseModel):
    """Every region of a deployment, and each tenant's primary (the region its writes go to)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regions: dict[str, Region] = Field(min_length=1)
    #: tenant id -> primary region; a tenant not listed writes to the first region by name
    primaries: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self) -> RegionsConfig:
        problems = [f"regions.{r}: {REGION_RULE}" for r in self.regions if not _REGION.fullmatch(r)]
        for tenant, region in self.primaries.items():
            if not re.fullmatch(TENANT_ID_PATTERN, tenant):
                problems.append(f"primaries: {tenant!r} is not a tenant id")
            if region not in self.regions:
                known = sorted(self.regions)
                problems.append(f"primaries.{tenant}: {region!r} is not one of the regions {known}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def names(self) -> list[str]:
        return sorted(self.regions)

    def primary_of(self, tenant_id: str) -> str:
        return self.primaries.get(tenant_id, self.names[0])

    def region(self, name: str) -> Region:
        if name not in self.regions:
            raise InvalidArgument(f"unknown region {name!r}: the regions are {self.names}")
        return self.regions[name]


def parse_regions(data: Mapping[str, Any], source: str = "regions config") -> RegionsConfig:
    """Validate a parsed regions file; every problem is reported at once, with its field."""
    try:
        return RegionsConfig.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '<file>'}: {err['msg']}" for err in exc.errors()
        ]
        raise InvalidArgument(f"{source}: " + "; ".join(problems)) from exc


def load_regions(path: Path) -> RegionsConfig:
    """Read and validate a regions TOML file (the one ``regions.sh up`` writes, or your own)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidArgument(f"cannot read the regions file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{path} is not valid TOML: {exc}") from exc
    return parse_regions(data, str(path))
