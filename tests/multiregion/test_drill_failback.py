"""The multi-region tier: `isthmus drill run failback` against two real regions (Kafka, MirrorMaker 2
and a platform each, from tests/infra/regions.sh): region a is killed with kill -9, traffic fails over
to b, a returns and catches up, traffic moves back. After failback no acknowledged write is lost, no
chunk is duplicated and both regions list the same documents. RPO and RTO are printed (benchmarks, not
assertions: timing varies with the machine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from isthmus_core.testing.client import run_cli

pytestmark = [pytest.mark.multiregion, pytest.mark.slow]


async def test_failback_loses_nothing_duplicates_nothing_and_the_regions_agree(
    regions: Any, tmp_path: Path
) -> None:
    report = tmp_path / "report"
    code, out, err = await run_cli(
        "drill", "run", "failback", "--regions", str(regions.path), "--json", "--report", str(report),
        timeout_s=900,
    )  # fmt: skip
    assert out, f"no JSON from the drill (exit {code}): {err[-3000:]}"
    result = json.loads(out)
    m = result["measures"]
    rpo, rto, conv = m["rpo"], m["rto"], m["convergence"]
    print(
        f"\nfailback drill {result['run_id']}: RPO {rpo['count']} write(s) / {rpo['seconds']:.2f} s; "
        f"RTO first answer {rto['first_answer_s']} s, error rate < 1 % {rto['error_rate_s']} s; "
        f"{m['writes_acknowledged']}/{m['writes']} writes acknowledged, {m['reads_ok']}/{m['reads']} reads ok"
    )
    assert result["failure"] == "", result["failure"]
    assert conv is not None, "the failback scenario checks convergence"
    assert conv["lost_count"] == 0, conv["lost"]
    assert conv["duplicate_count"] == 0, conv["duplicates"]
    assert conv["differences"] == [] and conv["equal"] == conv["compared"] > 0
    assert m["writes_acknowledged"] > 0 and rto["first_answer_s"] is not None
    kinds = [mk["kind"] for mk in result["timeline"]["markers"]]
    assert {"fault", "failover", "recovery", "heal", "catch-up", "failback"} <= set(kinds)
    assert code == 0, err[-3000:]
    assert (report / "report.json").exists() and "<svg" in (report / "report.html").read_text()
