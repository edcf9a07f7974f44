"""A drill's outputs: the summary table (terminal and HTML), ``report.json`` and a self-contained
``report.html`` (inline CSS, the timeline plot as inline SVG drawn by matplotlib)."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from isthmus_core.drills.measure import Mark, Measures, Timeline

if TYPE_CHECKING:
    from isthmus_cli.drill.runner import DrillResult

#: markers drawn on the plot, with their colours (steps and health-again lines are left out)
MARKER_COLOURS: Final = {
    Mark.FAULT: "#d62728",
    Mark.DETECTION: "#ff7f0e",
    Mark.FAILOVER: "#9467bd",
    Mark.RECOVERY: "#2ca02c",
    Mark.HEAL: "#17becf",
    Mark.CATCH_UP: "#7f7f7f",
    Mark.FAILBACK: "#8c564b",
}


def _s(value: float | None, missing: str = "never") -> str:
    return missing if value is None else f"{value:.2f} s"


def summary_rows(measures: Measures) -> list[tuple[str, str]]:
    """(measure, value) rows: RPO, RTO, loss, duplicates, documents compared, traffic."""
    rows: list[tuple[str, str]] = []
    p = measures.rpo
    if p is None:
        rows.append(("RPO", "n/a (no failover)"))
    else:
        rows.append(("RPO (acknowledged writes not in the survivor)", f"{p.count} of {p.acknowledged}"))
        rows.append(("RPO (seconds of writes)", _s(p.seconds)))
    t = measures.rto
    if t is None:
        rows.append(("RTO", "n/a (no fault)"))
    else:
        rows.append(("RTO (first answer from the survivor)", _s(t.first_answer_s)))
        rows.append(
            (
                f"RTO (error rate < {t.max_error_rate:.0%} over {t.window_s:g} s)",
                _s(t.error_rate_s, "not recovered"),
            )
        )
    c = measures.convergence
    if c is None:
        rows.append(("convergence", "not checked"))
    else:
        rows.append(("acknowledged writes lost", str(c.lost_count)))
        rows.append(("duplicated chunks", str(c.duplicate_count)))
        rows.append(("documents compared (equal / listed)", f"{c.equal} / {c.compared}"))
    rows.append(("writes acknowledged", f"{measures.writes_acknowledged} / {measures.writes}"))
    rows.append(("reads answered", f"{measures.reads_ok} / {measures.reads}"))
    return rows


def write_json(result: DrillResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")


def timeline_svg(timeline: Timeline, title: str = "") -> str:
    """Latency of every request (failures as red crosses) and success per second, with the markers."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "isthmus-drill", "font.size": 9}):
        fig = Figure(figsize=(10, 5.6), layout="constrained")
        lat, rate = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
        series = {
            "reads": ([(r.done, r.latency_s, r.ok) for r in timeline.reads], "#1f77b4"),
            "writes": ([(w.done, w.latency_s, w.ok) for w in timeline.writes], "#2ca02c"),
        }
        for kind, (events, colour) in series.items():
            ok = [(done, latency) for done, latency, good in events if good]
            lat.scatter([d for d, _ in ok], [1000 * x for _, x in ok], s=8, color=colour, label=f"{kind} ok")
            bins: dict[int, list[bool]] = {}
            for done, _, good in events:
                bins.setdefault(int(done), []).append(good)
            xs = sorted(bins)
            rate.step(
                xs, [100 * sum(bins[x]) / len(bins[x]) for x in xs], where="post", color=colour, label=kind
            )
        failed = [(d, x) for events, _ in series.values() for d, x, good in events if not good]
        if failed:
            lat.scatter(
                [d for d, _ in failed],
                [1000 * max(x, 0.001) for _, x in failed],
                s=18,
                marker="x",
                color="#d62728",
                label="failed",
            )
        lat.set_yscale("log")
        lat.set_ylabel("latency (ms)")
        rate.set_ylabel("success per second (%)")
        rate.set_ylim(-5, 105)
        rate.set_xlabel("seconds since the drill started")
        labelled: set[Mark] = set()
        for m in timeline.markers:
            mcolour = MARKER_COLOURS.get(m.kind)
            if mcolour is None:
                continue
            for ax in (lat, rate):
                label = str(m.kind) if ax is lat and m.kind not in labelled else None
                ax.axvline(m.t, color=mcolour, linestyle="--", linewidth=1, label=label)
            labelled.add(m.kind)
        lat.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        rate.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        if title:
            fig.suptitle(title)
        buf = io.StringIO()
        # no RDF metadata block (creator, date): nothing but the drawing, the same bytes for the same data
        fig.savefig(buf, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]


CSS: Final = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: left; }
th { background: #f3f3f3; }
.ok { color: #2a7d2a; font-weight: bold; } .bad { color: #b32020; font-weight: bold; }
.meta td:first-child { color: #666; }
svg { max-width: 100%; height: auto; }
"""


def _table(rows: list[tuple[str, str]], head: tuple[str, str], cls: str = "") -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    attr = f' class="{cls}"' if cls else ""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table{attr}><tr>{th}</tr>{body}</table>"


def render_html(result: DrillResult) -> str:
    d: dict[str, Any] = result.to_dict()
    o = result.options
    verdict = (
        '<p class="ok">objectives met</p>'
        if result.ok
        else '<p class="bad">'
        + html.escape("; ".join(([result.failure] if result.failure else []) + result.problems))
        + "</p>"
    )
    meta = [
        ("scenario", f"{o.scenario.name}: {o.scenario.summary}"),
        ("tenant", o.tenant),
        ("regions", f"primary {o.primary}, secondary {o.secondary}"),
        ("started", result.started_at),
        ("run", result.run_id),
        ("traffic", f"{o.write_rate:g} writes/s, {o.read_rate:g} {'asks' if o.ask else 'searches'}/s"),
        ("objectives", f"RPO ≤ {o.rpo_max_s} s, RTO ≤ {o.rto_max_s} s"),
    ]
    markers = [(f"{m.t:.2f} s", f"{m.kind} {m.region} {m.note}".strip()) for m in result.timeline.markers]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Isthmus drill {html.escape(o.scenario.name)} {html.escape(result.run_id)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Failover drill: {html.escape(o.scenario.name)}</h1>",
        verdict,
        _table(meta, ("", ""), "meta"),
        "<h2>RPO / RTO</h2>",
        _table(summary_rows(result.measures), ("measure", "value"), "measures"),
        "<h2>Timeline</h2>",
        timeline_svg(result.timeline),
        "<h2>Markers</h2>",
        _table(markers, ("time", "event")),
    ]
    conv = d["measures"].get("convergence")
    if conv and conv["differences"]:
        rows = [(x["document_id"], json.dumps(x["rows"])) for x in conv["differences"][:50]]
        parts += ["<h2>Documents that differ</h2>", _table(rows, ("document", "per region"))]
    for note in result.notes:
        parts.append(f"<p>{html.escape(note)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result: DrillResult, directory: Path) -> tuple[Path, Path]:
    """``DIR/report.json`` and ``DIR/report.html`` (the directory is created)."""
    directory.mkdir(parents=True, exist_ok=True)
    as_json, as_html = directory / "report.json", directory / "report.html"
    write_json(result, as_json)
    as_html.write_text(render_html(result), encoding="utf-8")
    return as_json, as_html
