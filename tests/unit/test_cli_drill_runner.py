"""The drill runner end to end on two real platforms (one `isthmus run --target all` process per region,
no replication between them), with real shell hooks from a regions file: kill -9 the primary, fail over,
restore it, fail back. Without replication the survivor holds none of the primary's writes, so the RPO
must count every write the primary acknowledged before the failover."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from isthmus_cli.drill.executor import LocalExecutor
from isthmus_cli.drill.report import write_report
from isthmus_cli.drill.runner import Drill, DrillOptions
from isthmus_core.drills.measure import Mark
from isthmus_core.drills.scenarios import Action, Scenario, Step
from isthmus_core.regions import load_regions
from isthmus_core.testing.cluster import free_port

pytestmark = pytest.mark.slow

ISTHMUS = Path(sys.executable).with_name("isthmus")

SCENARIO = Scenario(
    "kill-and-back",
    "kill -9 the primary, fail over, restore it, fail back (no convergence check: no replication here)",
    (
        Step(Action.OBSERVE, seconds=3),
        Step(Action.KILL_REGION),
        Step(Action.MOVE_PRIMARY, "secondary"),
        Step(Action.AWAIT_RECOVERY, "secondary", 60),
        Step(Action.OBSERVE, seconds=2),
        Step(Action.RESTORE_REGION),
        Step(Action.MOVE_PRIMARY, "primary"),
        Step(Action.AWAIT_RECOVERY, "primary", 120),
        Step(Action.OBSERVE, seconds=2),
    ),
    checks_convergence=False,
)


def regions_file(base: Path) -> Path:
    """Two regions, each a platform started by a shell script; hooks kill -9 it and start it again (without
    the console, which the drill does not use: a restarted region loads no web stack before it answers)."""
    lines = []
    for name in ("a", "b"):
        port = free_port()
        start = base / f"start-{name}.sh"
        start.write_text(
            f"ISTHMUS_BUS=inprocess ISTHMUS_GRPC_PORT={port} ISTHMUS_METRICS_PORT=0 ISTHMUS_CONSOLE_ENABLED=false "
            f"ISTHMUS_DATA_DIR={base / name} ISTHMUS_SHUTDOWN_GRACE_S=1 ISTHMUS_LOG_FORMAT=json "
            f"nohup {ISTHMUS} run --target all >> {base / name}.log 2>&1 &\n"
            f"echo $! > {base / name}.pid\n"
        )
        lines += [
            f"[regions.{name}]",
            f'endpoint = "127.0.0.1:{port}"',
            f"[regions.{name}.hooks]",
            f'kill = "kill -9 $(cat {base / name}.pid)"',
            f'restore = "sh {start}"',
        ]
    path = base / "regions.toml"
    path.write_text("\n".join(lines) + '\n[primaries]\ndrill = "a"\n')
    return path


async def test_kill_fail_over_restore_fail_back_with_rpo_and_rto(tmp_path: Path) -> None:
    path = regions_file(tmp_path)
    config = load_regions(path)
    for name in ("a", "b"):  # the regions' processes, as regions.sh would start them
        proc = await asyncio.create_subprocess_exec("sh", str(tmp_path / f"start-{name}.sh"))
        assert await proc.wait() == 0
    try:
        options = DrillOptions(
            scenario=SCENARIO, tenant="drill", primary="a", secondary="b", write_rate=4, read_rate=8
        )
        result = await Drill(config, options, LocalExecutor(config, timeout_s=30)).run()
        assert result.failure == ""
        tl, m = result.timeline, result.measures
        seq = [(mk.kind, mk.region) for mk in tl.markers if mk.kind not in (Mark.STEP, Mark.DETECTION)]
        # the steps in order: fault, writes moved, b answered, a back, writes moved back, a answered
        assert seq == [
            (Mark.FAULT, "a"),
            (Mark.FAILOVER, "b"),
            (Mark.RECOVERY, "b"),
            (Mark.HEAL, "a"),
            (Mark.FAILBACK, "a"),
            (Mark.RECOVERY, "a"),
        ]
        fault = tl.first(Mark.FAULT)
        assert fault is not None
        detection = tl.first(Mark.DETECTION)  # the client noticed a was down (before or after the move)
        assert detection is not None and detection.region == "a" and detection.t >= fault.t
        # no replication: b held none of a's acknowledged writes at failover
        assert m.rpo is not None and m.rpo.acknowledged > 0
        assert m.rpo.count == m.rpo.acknowledged == len(tl.acknowledged("a", until=m.rpo.at))
        assert m.rpo.seconds > 0
        assert m.rto is not None and m.rto.first_answer_s is not None and m.rto.survivor == "b"
        heal = tl.first(Mark.HEAL)
        assert heal is not None
        assert any(w.region == "b" and fault.t < w.t < heal.t for w in tl.acknowledged())
        # writes follow the primary back to a (whether a acknowledges them within the last observe step
        # depends on how fast the restarted platform warms up: not asserted)
        assert any(w.region == "a" and w.t > heal.t for w in tl.writes), "writes failed back"
        assert any(r.ok and r.region == "a" and r.t > heal.t for r in tl.reads), "reads failed back"
        assert m.convergence is None

        json_path, html_path = write_report(result, tmp_path / "report")
        report = json.loads(json_path.read_text())
        assert report["measures"]["rpo"]["count"] == m.rpo.count and report["ok"] is True
        assert "<svg" in html_path.read_text()
    finally:
        for name in ("a", "b"):
            pid = int((tmp_path / f"{name}.pid").read_text())
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
