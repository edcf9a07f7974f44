"""MirrorMaker 2: the properties of the MM2 process that replicates INTO one region.

Pure (a :class:`~isthmus_core.regions.RegionsConfig` in, the text of an ``mm2.properties`` out). Each
region runs one MM2 in dedicated mode (``org.apache.kafka.connect.mirror.MirrorMaker <props> --clusters
<region>``): it knows every cluster but only runs the flows that *target* its region, ``<peer>-><region>``,
copying :func:`~isthmus_core.regions.mirror_allowlist` topics as ``<peer>.<topic>``
(DefaultReplicationPolicy, separator ``.``, cluster alias = region name). The allow-list never matches a
prefixed copy, so nothing loops. Heartbeats: MM2 emits them into each *source* cluster (``heartbeats``) and
mirrors them with the data (``<peer>.heartbeats``), so the age of the newest ``<peer>.heartbeats`` record
in a region bounds how far replication from that peer is behind. Checkpoints
(``<peer>.checkpoints.internal``) translate consumer offsets; ``sync.group.offsets.enabled`` commits the
translated offsets for groups that are not active in the target.

Caution: a group that runs in *both* regions under the same name (each platform's own consumers) must be
excluded (``groups_exclude``): MM2 would otherwise move a stopped region's group to the peer's position on
a different topic history, skipping records that region never consumed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from isthmus_core.errors import InvalidArgument
from isthmus_core.regions import SEPARATOR, RegionsConfig, mirror_allowlist

#: MM2's own default ``groups.exclude`` (console consumers, Connect workers, internal groups): kept, and
#: extended with ``groups_exclude``
DEFAULT_GROUPS_EXCLUDE: Final = ("console-consumer-.*", "connect-.*", "__.*")
REPLICATION_POLICY: Final = "org.apache.kafka.connect.mirror.DefaultReplicationPolicy"


def mm2_properties(
    config: RegionsConfig,
    target: str,
    *,
    refresh_s: float = 5,
    heartbeat_s: float = 1,
    checkpoint_s: float = 1,
    sync_offsets_s: float = 1,
    replication_factor: int = 1,
    offset_lag_max: int = 0,
    offset_flush_ms: int = 1000,
    groups_exclude: Sequence[str] = (),
) -> str:
    """The ``mm2.properties`` of the MirrorMaker 2 that runs in (targets) region ``target``.

    ``refresh_s``: how often MM2 looks for new topics and groups; ``heartbeat_s``, ``checkpoint_s``,
    ``sync_offsets_s``: emit intervals (short, for drills); ``replication_factor``: of the mirrored topics
    and MM2's internal topics (1 for a one-broker test cluster); ``offset_lag_max``: how far a mirrored
    partition may run ahead of its last offset-sync record (0 = translate offsets exactly);
    ``offset_flush_ms``: how often MM2 records how far it has copied (what a killed MM2 replays from);
    ``groups_exclude``: regexes of consumer groups never checkpointed nor synced (see the module note)."""
    names = config.names
    if target not in config.regions:
        raise InvalidArgument(f"unknown target region {target!r}: the regions are {names}")
    if len(names) < 2:
        raise InvalidArgument(f"mirroring needs at least two regions, the config has {names}")
    missing = [n for n in names if not config.regions[n].kafka_bootstrap.strip()]
    if missing:
        raise InvalidArgument(
            f"regions {missing} have no kafka_bootstrap: MirrorMaker 2 needs every region's Kafka"
        )
    if replication_factor < 1:
        raise InvalidArgument(f"replication_factor must be at least 1, got {replication_factor}")
    for name, value in (
        ("refresh_s", refresh_s),
        ("heartbeat_s", heartbeat_s),
        ("checkpoint_s", checkpoint_s),
        ("sync_offsets_s", sync_offsets_s),
    ):
        if not value > 0:
            raise InvalidArgument(f"{name} must be positive, got {value}")
    if offset_lag_max < 0 or offset_flush_ms < 1:
        raise InvalidArgument("offset_lag_max must be >= 0 and offset_flush_ms >= 1")
    for pattern in groups_exclude:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidArgument(f"groups_exclude: {pattern!r} is not a regex: {exc}") from exc

    def secs(value: float) -> str:
        return str(max(1, round(value)))  # MM2 reads these intervals as whole seconds

    peers = [n for n in names if n != target]
    rf = str(replication_factor)
    props: list[tuple[str, str]] = [
        ("clusters", ", ".join(names)),
        *((f"{n}.bootstrap.servers", config.regions[n].kafka_bootstrap.strip()) for n in names),
        # every flow is named: the ones into the target on, all others off (another region's MM2 runs them)
        *(
            (f"{src}->{dst}.enabled", "true" if dst == target else "false")
            for src in names
            for dst in names
            if src != dst
        ),
        *((f"{p}->{target}.topics", mirror_allowlist()) for p in peers),
        ("replication.policy.class", REPLICATION_POLICY),
        ("replication.policy.separator", SEPARATOR),
        ("groups.exclude", ", ".join([*DEFAULT_GROUPS_EXCLUDE, *groups_exclude])),
        # replication factors: mirrored topics and every internal topic of MM2 and its Connect workers
        ("replication.factor", rf),
        ("checkpoints.topic.replication.factor", rf),
        ("heartbeats.topic.replication.factor", rf),
        ("offset-syncs.topic.replication.factor", rf),
        ("offset.storage.replication.factor", rf),
        ("config.storage.replication.factor", rf),
        ("status.storage.replication.factor", rf),
        # offsets: checkpoints and consumer-group offset sync (failover translation)
        ("emit.checkpoints.enabled", "true"),
        ("emit.checkpoints.interval.seconds", secs(checkpoint_s)),
        ("sync.group.offsets.enabled", "true"),
        ("sync.group.offsets.interval.seconds", secs(sync_offsets_s)),
        ("offset.lag.max", str(offset_lag_max)),
        # offset syncs in the target too: this MM2 then writes only into its own region's cluster
        ("offset-syncs.topic.location", "target"),
        ("offset.flush.interval.ms", str(offset_flush_ms)),
        # heartbeats: replication lag, measured from the target
        ("emit.heartbeats.enabled", "true"),
        ("emit.heartbeats.interval.seconds", secs(heartbeat_s)),
        # discovery of new topics and groups: short, for drills
        ("refresh.topics.enabled", "true"),
        ("refresh.topics.interval.seconds", secs(refresh_s)),
        ("refresh.groups.enabled", "true"),
        ("refresh.groups.interval.seconds", secs(refresh_s)),
        ("sync.topic.configs.enabled", "true"),
        ("sync.topic.acls.enabled", "false"),
        # dedicated mode: this MM2 is the only worker of its flows (no REST listener between nodes)
        ("dedicated.mode.enable.internal.rest", "false"),
        ("tasks.max", "1"),
    ]
    lines = [
        f"# MirrorMaker 2 running in region {target}: replicates {', '.join(peers)} -> {target}",
        "# generated by isthmus_core.mirrormaker.mm2_properties (isthmus regions mm2-properties)",
    ]
    lines += [f"{key} = {_escape(value)}" for key, value in props]
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    """A value as java.util.Properties reads it back: a backslash is an escape there (the topic regex
    has ``\\.``), so it is doubled."""
    return value.replace("\\", "\\\\")


__all__ = ["DEFAULT_GROUPS_EXCLUDE", "REPLICATION_POLICY", "mm2_properties"]
