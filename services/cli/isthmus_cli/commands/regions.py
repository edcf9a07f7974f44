"""``isthmus regions mm2-properties|status``: MirrorMaker 2 configuration and health of every region.

``status`` reads each region's gRPC health and, for every peer, the replication lag into the region: the
age of the newest MirrorMaker 2 heartbeat mirrored from that peer (``<peer>.heartbeats`` in the region's
Kafka). MM2 emits heartbeats into the peer's own cluster every second or so and copies them with the
data, so the age is (emit interval + replication delay) while the link works and grows while it does not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from isthmus_cli.client import kafka_security, run
from isthmus_cli.options import AsJson, ConfigFile
from isthmus_cli.output import console, fail

if TYPE_CHECKING:
    from isthmus_core.bus.kafka_security import KafkaSecurity
    from isthmus_core.regions import RegionsConfig

app = typer.Typer(
    help="Regions: MirrorMaker 2 configuration, health and replication lag.", no_args_is_help=True
)

RegionsFile = Annotated[
    Path,
    typer.Option(
        "--regions", envvar="ISTHMUS_REGIONS_FILE", help="regions TOML file (regions.sh up writes one)"
    ),
]
HEARTBEATS = "heartbeats"
#: how long one region's probes may take before it is reported unreachable
PROBE_TIMEOUT_S = 8.0


def _load(path: Path) -> RegionsConfig:
    from isthmus_core.errors import InvalidArgument
    from isthmus_core.regions import load_regions

    try:
        return load_regions(path)
    except InvalidArgument as exc:
        fail(str(exc), 2)


def platform_groups() -> list[str]:
    """Regexes of the consumer groups every region's platform runs under the same names: MM2 must never
    sync their offsets across regions (each region consumes its own history; see isthmus_core.mirrormaker)."""
    from isthmus_embedding.module import GROUP as EMBEDDING
    from isthmus_evaluation.module import GROUP as EVALUATION
    from isthmus_guardrail.module import TENANT_EVENTS_GROUP as GUARDRAIL
    from isthmus_ingestion.module import GROUP as INGESTION
    from isthmus_retrieval.module import GROUP as RETRIEVAL

    return [f"{g}(-.*)?" for g in sorted({EMBEDDING, EVALUATION, GUARDRAIL, INGESTION, RETRIEVAL})]


@app.command("mm2-properties")
def mm2_properties(
    regions: RegionsFile,
    target: Annotated[str, typer.Option("--target", help="the region this MirrorMaker 2 replicates into")],
    refresh_s: Annotated[float, typer.Option(help="topic and group discovery interval (s)")] = 5,
    heartbeat_s: Annotated[float, typer.Option(help="heartbeat emit interval (s)")] = 1,
    checkpoint_s: Annotated[float, typer.Option(help="checkpoint and group offset sync interval (s)")] = 1,
    replication_factor: Annotated[
        int, typer.Option(help="of mirrored and MM2 internal topics (1 for one broker)")
    ] = 1,
) -> None:
    """Print the mm2.properties of the MirrorMaker 2 that runs in region TARGET (peers -> TARGET)."""
    from isthmus_core.errors import InvalidArgument
    from isthmus_core.mirrormaker import mm2_properties as build

    config = _load(regions)
    try:
        text = build(
            config,
            target,
            refresh_s=refresh_s,
            heartbeat_s=heartbeat_s,
            checkpoint_s=checkpoint_s,
            sync_offsets_s=checkpoint_s,
            replication_factor=replication_factor,
            groups_exclude=platform_groups(),
        )
    except InvalidArgument as exc:
        fail(str(exc), 2)
    print(text, end="")


async def region_status(
    config: RegionsConfig, security: KafkaSecurity, clock: Callable[[], float] = time.time
) -> dict[str, Any]:
    """Per region: gRPC health, and per peer ``lag_s``: the age of the newest mirrored heartbeat
    (``<peer>.heartbeats`` in the region's Kafka, against ``clock()`` when it was read). MM2 emits a
    peer's heartbeats from the MM2 running *in that peer*, so ``lag_s`` also grows while the peer's own
    MM2 is down; ``behind_s`` (newest heartbeat in the peer's ``heartbeats`` minus the newest mirrored
    one, when the peer's Kafka answers) is the link's own delay."""
    import grpc
    from grpc_health.v1 import health_pb2

    from isthmus_cli.client import connect
    from isthmus_core.bus.kafka_tools import newest_timestamp_ms
    from isthmus_core.errors import IsthmusError
    from isthmus_core.regions import remote_topic

    async def health(endpoint: str) -> str:
        try:
            async with connect(endpoint) as stubs:
                r = await stubs.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=3)
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)

    async def newest(bootstrap: str, topic: str) -> tuple[int | None, float, str]:
        """(newest timestamp, when it was observed, error)"""
        if not bootstrap:
            return None, clock() * 1000, "no kafka_bootstrap"
        try:
            ts, now_ms = await asyncio.wait_for(
                newest_timestamp_ms(bootstrap, topic, security, clock), PROBE_TIMEOUT_S
            )
        except TimeoutError:
            return None, clock() * 1000, f"no answer from {bootstrap} in {PROBE_TIMEOUT_S}s"
        except IsthmusError as exc:
            return None, clock() * 1000, str(exc)
        return ts, now_ms, "" if ts is not None else f"no record in {topic!r} yet"

    # aiokafka logs every refused connection: the error is reported per region instead
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    names = config.names
    healths, sources = await asyncio.gather(
        asyncio.gather(*(health(config.regions[n].endpoint) for n in names)),
        asyncio.gather(*(newest(config.regions[n].kafka_bootstrap, HEARTBEATS) for n in names)),
    )
    source_of = dict(zip(names, sources, strict=True))
    pairs = [(t, p) for t in names for p in names if p != t]
    mirrored = await asyncio.gather(
        *(newest(config.regions[t].kafka_bootstrap, remote_topic(p, HEARTBEATS)) for t, p in pairs)
    )
    out: dict[str, Any] = {
        n: {
            "endpoint": config.regions[n].endpoint,
            "kafka_bootstrap": config.regions[n].kafka_bootstrap,
            "health": h,
            "replication": {},
        }
        for n, h in zip(names, healths, strict=True)
    }
    for (target, peer), (ts, now_ms, error) in zip(pairs, mirrored, strict=True):
        source_ts = source_of[peer][0]
        out[target]["replication"][peer] = {
            "topic": remote_topic(peer, HEARTBEATS),
            "newest_heartbeat_ms": ts,
            "lag_s": None if ts is None else round(max(0.0, now_ms - ts) / 1000, 3),
            "behind_s": None if ts is None or source_ts is None else round(max(0, source_ts - ts) / 1000, 3),
            "error": error,
        }
    return {"regions": out}


@app.command("status")
def status(regions: RegionsFile, as_json: AsJson = False, config: ConfigFile = None) -> None:
    """Health of every region and the replication lag into it from each peer (MM2 heartbeats)."""
    cfg = _load(regions)
    security = kafka_security(config)
    out = run(region_status(cfg, security))
    if as_json:
        print(json.dumps(out, indent=2))
        return
    table = Table("region", "endpoint", "health", "from", "lag (s)", "behind (s)", "note")
    for name, r in out["regions"].items():
        rows = list(r["replication"].items()) or [("", {"lag_s": None, "error": "no kafka_bootstrap"})]
        for i, (peer, rep) in enumerate(rows):
            lag_s = "" if rep["lag_s"] is None else f"{rep['lag_s']:.1f}"
            behind_s = "" if rep.get("behind_s") is None else f"{rep['behind_s']:.1f}"
            first = i == 0
            table.add_row(
                name if first else "",
                r["endpoint"] if first else "",
                r["health"] if first else "",
                peer,
                lag_s,
                behind_s,
                rep["error"],
            )
    console.print(table)
