"""The drill report from a constructed result: the summary table, the JSON shape, a self-contained HTML
page with the RPO/RTO table and the timeline plot as inline SVG."""

from __future__ import annotations

import json
import re
from pathlib import Path

from isthmus_cli.drill.report import render_html, summary_rows, write_report
from isthmus_cli.drill.runner import DrillOptions, DrillResult
from isthmus_core.drills.measure import (
    DocumentRow,
    Mark,
    Marker,
    Read,
    RegionSnapshot,
    Timeline,
    Write,
    measure,
    objectives_missed,
)
from isthmus_core.drills.scenarios import scenario


def result(lost: bool = False) -> DrillResult:
    tl = Timeline(
        writes=[Write(float(i), f"d{i}", "a" if i < 5 else "b", i != 5, 0.02) for i in range(10)],
        reads=[Read(i / 2, "a" if i < 10 else "b", i not in (10, 11), 0.01, "d1") for i in range(40)],
        markers=[
            Marker(5.0, Mark.FAULT, "a", "kill-region"),
            Marker(5.2, Mark.DETECTION, "a", "unhealthy (UNAVAILABLE)"),
            Marker(5.3, Mark.FAILOVER, "b", "writes move to the secondary"),
            Marker(6.1, Mark.RECOVERY, "b", "answered"),
            Marker(8.0, Mark.HEAL, "a", "restore-region"),
        ],
    )
    acked = [w.document_id for w in tl.acknowledged()]
    docs = tuple(DocumentRow(d, 1, "h" + d, 1) for d in acked)
    snapshots = [
        RegionSnapshot("a", docs[:-1] if lost else docs, len(docs) - lost),
        RegionSnapshot("b", docs, len(docs)),
    ]
    m = measure(tl, "a", "b", available_at_failover=["d0", "d1", "d2"], snapshots=snapshots)
    options = DrillOptions(scenario("region-loss"), "drill", "a", "b", rpo_max_s=10, rto_max_s=30)
    return DrillResult(options, "r1", "2026-12-06T12:00:00+00:00", tl, m, "", objectives_missed(m, 10, 30))


def test_summary_rows_name_every_measure() -> None:
    rows = dict(summary_rows(result().measures))
    assert rows["RPO (acknowledged writes not in the survivor)"] == "2 of 5"  # d3, d4
    assert rows["RPO (seconds of writes)"] == "2.98 s"  # b holds up to d2 (acknowledged at 2.02), fault at 5
    assert rows["RTO (first answer from the survivor)"] == "1.01 s"  # the read of 6.0, done 6.01
    assert rows["acknowledged writes lost"] == "0" and rows["duplicated chunks"] == "0"
    assert rows["documents compared (equal / listed)"] == "9 / 9"
    assert rows["writes acknowledged"] == "9 / 10"


def test_json_shape() -> None:
    d = json.loads(json.dumps(result().to_dict()))  # plain JSON all the way down
    assert {
        "run_id",
        "scenario",
        "tenant",
        "primary",
        "secondary",
        "ok",
        "failure",
        "problems",
        "measures",
    } <= set(d)
    assert d["ok"] is True and d["scenario"] == "region-loss"
    assert d["measures"]["rpo"]["count"] == 2 and d["measures"]["rpo"]["missing"] == ["d3", "d4"]
    assert d["measures"]["convergence"]["lost_count"] == 0
    assert d["timeline"]["markers"][0] == {"t": 5.0, "kind": "fault", "region": "a", "note": "kill-region"}
    assert d["timeline"]["writes"][5]["ok"] is False


def test_html_is_self_contained_with_the_table_and_an_inline_svg(tmp_path: Path) -> None:
    json_path, html_path = write_report(result(), tmp_path / "out")
    page = html_path.read_text()
    assert json.loads(json_path.read_text())["run_id"] == "r1"
    assert page.count("<svg") == 1 and "</svg>" in page
    assert re.search(r"<td>RPO \(seconds of writes\)</td><td>2\.98 s</td>", page)
    assert re.search(r"<td>RTO \(first answer from the survivor\)</td><td>1\.01 s</td>", page)
    assert "objectives met" in page
    # nothing fetched from elsewhere: no scripts, stylesheets or images; URLs only as XML namespaces
    assert not re.search(r"<script|<link|<img|src=|url\((?!#)", page)
    assert set(re.findall(r"https?://[^\"]*", page)) == {
        "http://www.w3.org/2000/svg",
        "http://www.w3.org/1999/xlink",
    }


def test_html_says_why_objectives_are_missed() -> None:
    r = result(lost=True)
    assert not r.ok
    page = render_html(r)
    assert "1 acknowledged write(s) lost after convergence" in page
    assert "<h2>Documents that differ</h2>" in page and "d9" in page
