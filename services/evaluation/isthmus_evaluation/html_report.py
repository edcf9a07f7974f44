"""``isthmus eval … --html out.html``: an evaluation report as one self-contained page a person reads.

One file, viewable offline: inline CSS, the figures drawn by matplotlib (Agg, no display) and inlined as
SVG, no script, no font, no link to anything. Sections, each present when the report has its data:

* the header (dataset, documents, queries, ingest time, tenant, judge) and the gate's verdict;
* the **mode comparison** (nDCG@10, recall@100, MRR@10, MAP@100, p50/p95 latency), with the baseline's
  values and the changes when a baseline is given, the rows and cells the gate failed highlighted;
* **per-query score distributions** per mode (and, against a baseline, each query's nDCG@10 before and
  after, with the queries that moved most);
* **latency histograms** per mode;
* the **worst queries** of each mode with their retrieved passages, the relevant ones marked;
* the **answer metrics** (means, n, judge failures and their reasons) and the worst answers.

Every text from the report is escaped (passages and questions are user data). The page is also well-formed
XML apart from its doctype (void elements closed), which the tests check. Pure apart from matplotlib:
values in, a string out; the page for the same reports is the same bytes (no date, fixed SVG ids).
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Final

from isthmus_evaluation.gate import LATENCY_METRICS, GateResult, Verdict
from isthmus_evaluation.report import AnswerResult, EvalReport, ModeReport, Passage, QueryResult, QueryText

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: the mode table's columns: (field of ModeReport, heading)
COLUMNS: Final = (
    ("ndcg_at_10", "nDCG@10"),
    ("recall_at_100", "recall@100"),
    ("mrr_at_10", "MRR@10"),
    ("map_at_100", "MAP@100"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p95_ms", "p95 ms"),
)
#: per-query metrics drawn as distributions: (field of QueryResult, label)
QUERY_METRICS: Final = (
    ("ndcg_at_10", "nDCG@10"),
    ("recall_at_100", "recall@100"),
    ("mrr_at_10", "MRR@10"),
    ("map_at_100", "MAP@100"),
)
WORST_QUERIES: Final = 10
WORST_ANSWERS: Final = 10
MOVED_QUERIES: Final = 10
#: characters of a passage shown under a worst query (the rest is cut, marked with an ellipsis)
PASSAGE_CHARS: Final = 700

CSS: Final = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.failed td { background: #fde8e8; } td.failed { background: #f7c1c1; font-weight: bold; }
.ok { color: #2a7d2a; font-weight: bold; } .bad { color: #b32020; font-weight: bold; }
.up { color: #2a7d2a; } .down { color: #b32020; } .muted { color: #777; }
.meta td:first-child { color: #666; }
details { margin: 0.4em 0 0.8em 0; } summary { cursor: pointer; }
.passage { border-left: 3px solid #ccc; margin: 0.3em 0 0.3em 0.5em; padding: 0.1em 0.6em; }
.passage.relevant { border-left-color: #2a7d2a; background: #f1f9f1; }
.passage p { margin: 0.2em 0; white-space: pre-wrap; }
svg { max-width: 100%; height: auto; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(metric: str, value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.1f}" if metric in LATENCY_METRICS else f"{value:.4f}"


def _delta(metric: str, base: float, cur: float) -> str:
    """The change as a coloured ``+0.0123`` (green when better: up for quality, down for latency)."""
    d = cur - base
    if not math.isfinite(d):
        return ""
    better = d < 0 if metric in LATENCY_METRICS else d > 0
    cls = "muted" if abs(d) < 5e-5 else ("up" if better else "down")
    return f' <span class="{cls}">({"+" if d >= 0 else "-"}{_num(metric, abs(d))})</span>'


# -- figures -------------------------------------------------------------------------------------------


def _svg(fig: Figure, name: str) -> str:
    """The figure as an inline ``<svg>`` element: no XML prolog, no metadata, ids salted per figure (two
    figures never share an id in the page) and the same bytes for the same data."""
    from matplotlib import rc_context

    buf = io.StringIO()
    with rc_context({"svg.hashsalt": f"isthmus-eval-{name}"}):
        fig.savefig(buf, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    # matplotlib numbers its element ids per figure (figure_1, axes_1...): prefix them and the references
    # to them (clip paths, markers) with the figure's name so that the page's ids stay unique
    svg = re.sub(r'\bid="', f'id="{name}-', svg)
    svg = re.sub(r'href="#', f'href="#{name}-', svg)
    return re.sub(r"url\(#", f"url(#{name}-", svg)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    # a bare Figure draws with the Agg/SVG canvases, never pyplot's GUI backends
    return Figure(figsize=(width, height), layout="constrained")


def _style() -> AbstractContextManager[None]:
    """Text as text (not paths: smaller, searchable), a small font."""
    from matplotlib import rc_context

    return rc_context({"svg.fonttype": "none", "font.size": 9})


def score_distributions_svg(modes: Sequence[ModeReport]) -> str:
    """Per metric, a histogram of the per-query values of every mode (step lines, 10 bins over 0..1)."""
    with _style():
        fig = _figure(10, 5.2)
        axes = fig.subplots(2, 2).flatten()
        bins = [i / 10 for i in range(11)]
        for ax, (metric, label) in zip(axes, QUERY_METRICS, strict=True):
            for mode in modes:
                values = [float(getattr(q, metric)) for q in mode.per_query]
                if values:
                    ax.hist(values, bins=bins, histtype="step", linewidth=1.6, label=mode.mode)
            ax.set_title(f"{label} per query")
            ax.set_xlim(0, 1)
            ax.set_xlabel(label)
            ax.set_ylabel("queries")
        axes[0].legend(loc="upper left", fontsize=8)
        return _svg(fig, "scores")


def latency_histograms_svg(modes: Sequence[ModeReport]) -> str:
    """One histogram of per-query search latency per mode, its p50 and p95 marked."""
    with _style():
        fig = _figure(10, 2.4 * math.ceil(len(modes) / 2))
        axes = fig.subplots(math.ceil(len(modes) / 2), 2, squeeze=False).flatten()
        for ax, mode in zip(axes, modes, strict=False):
            values = [q.latency_ms for q in mode.per_query]
            ax.hist(values, bins=30, color="#1f77b4")
            ax.axvline(
                mode.latency_p50_ms, color="#2ca02c", linestyle="--", label=f"p50 {mode.latency_p50_ms:.1f}"
            )
            ax.axvline(
                mode.latency_p95_ms, color="#d62728", linestyle="--", label=f"p95 {mode.latency_p95_ms:.1f}"
            )
            ax.set_title(f"{mode.mode}: search latency per query")
            ax.set_xlabel("ms")
            ax.set_ylabel("queries")
            ax.legend(fontsize=8)
        for ax in axes[len(modes) :]:
            ax.set_visible(False)
        return _svg(fig, "latency")


def baseline_scatter_svg(pairs: Sequence[tuple[str, list[tuple[float, float]]]]) -> str:
    """Per mode, each query's nDCG@10 in the baseline (x) against this run (y), the diagonal drawn."""
    with _style():
        fig = _figure(10, 3.6 * math.ceil(len(pairs) / 3))
        axes = fig.subplots(math.ceil(len(pairs) / 3), 3, squeeze=False).flatten()
        for ax, (mode, points) in zip(axes, pairs, strict=False):
            ax.plot([0, 1], [0, 1], color="#999", linewidth=0.8)
            ax.scatter([b for b, _ in points], [c for _, c in points], s=10, color="#1f77b4")
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{mode}: nDCG@10 per query")
            ax.set_xlabel("baseline")
            ax.set_ylabel("this run")
        for ax in axes[len(pairs) :]:
            ax.set_visible(False)
        return _svg(fig, "baseline")


def answer_scores_svg(results: Sequence[AnswerResult]) -> str:
    """Per answer metric, a histogram of the scored answers' values."""
    names = sorted({name for r in results for name in r.scores})
    with _style():
        fig = _figure(10, 2.4 * math.ceil(len(names) / 2))
        axes = fig.subplots(math.ceil(len(names) / 2), 2, squeeze=False).flatten()
        bins = [i / 10 for i in range(11)]
        for ax, name in zip(axes, names, strict=False):
            ax.hist([r.scores[name] for r in results if name in r.scores], bins=bins, color="#9467bd")
            ax.set_xlim(0, 1)
            ax.set_title(f"{name} per answer")
            ax.set_ylabel("answers")
        for ax in axes[len(names) :]:
            ax.set_visible(False)
        return _svg(fig, "answers")


# -- sections ------------------------------------------------------------------------------------------


def _table(head: Iterable[str], rows: Iterable[str], cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table{attr}><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _header(report: EvalReport, baseline: EvalReport | None) -> str:
    rows = [
        ("dataset", report.dataset),
        ("documents", str(report.documents)),
        ("queries", str(report.queries)),
        ("ingested in", f"{report.ingest_seconds:.1f} s"),
        ("tenant", report.tenant_id),
        ("modes", ", ".join(m.mode for m in report.modes) or "none"),
    ]
    if report.answers is not None:
        rows.append(("judge", report.answers.judge or "unknown"))
        rows.append(("answers", str(report.answers.samples)))
    if baseline is not None:
        rows.append(
            ("baseline", f"{baseline.dataset}: {baseline.documents} documents, {baseline.queries} queries")
        )
    body = [f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows]
    return _table(("", ""), body, "meta")


def _gate(gate: GateResult) -> str:
    if gate.ok:
        verdict = f'<p class="ok">gate passed: {len(gate.checks)} checks within their allowances</p>'
    else:
        verdict = (
            f'<p class="bad">gate failed: {len(gate.failed)} metric(s) past their allowance, '
            f"{len(gate.errors)} error(s)</p>"
        )
    rows = [f'<tr class="failed"><td class="bad">error</td><td>{_e(p)}</td></tr>' for p in gate.problems]
    for c in gate.checks:
        cls = "ok" if c.verdict is Verdict.PASS else "bad"
        tr = "" if c.verdict is Verdict.PASS else ' class="failed"'
        rows.append(f'<tr{tr}><td class="{cls}">{_e(c.verdict)}</td><td>{_e(c.message)}</td></tr>')
    return "<h2 id='gate'>Regression gate</h2>" + verdict + _table(("verdict", "check"), rows, "gate")


def _modes(report: EvalReport, baseline: EvalReport | None, failed: set[tuple[str | None, str]]) -> str:
    base = {m.mode: m for m in baseline.modes} if baseline else {}
    rows = []
    for mode in report.modes:
        b = base.get(mode.mode)
        bad_row = any((mode.mode, metric) in failed for metric, _ in COLUMNS)
        cells = [f"<td>{_e(mode.mode)}</td>"]
        for metric, _ in COLUMNS:
            value = float(getattr(mode, metric))
            text = _num(metric, value)
            if b is not None:
                bv = float(getattr(b, metric))
                text += f' <span class="muted">vs {_num(metric, bv)}</span>{_delta(metric, bv, value)}'
            cls = "num failed" if (mode.mode, metric) in failed else "num"
            cells.append(f'<td class="{cls}">{text}</td>')
        tr = ' class="failed"' if bad_row else ""
        rows.append(f"<tr{tr}>{''.join(cells)}</tr>")
    for name in sorted(base.keys() - {m.mode for m in report.modes}):
        rows.append(
            f'<tr class="failed"><td>{_e(name)}</td>'
            f'<td colspan="{len(COLUMNS)}">only in the baseline</td></tr>'
        )
    note = (
        '<p class="muted">Each cell: this run, <em>vs</em> the baseline, (the change).</p>'
        if baseline
        else ""
    )
    return "<h2 id='modes'>Modes</h2>" + note + _table(["mode"] + [h for _, h in COLUMNS], rows, "modes")


def _passage_html(doc_id: str, score: float, grade: int, passage: Passage | None) -> str:
    if grade > 0:
        head = f'<span class="ok">relevant ({grade})</span> '
    else:
        head = ""
    title = text = ""
    if passage is not None:
        title = f" — {_e(passage.title)}" if passage.title else ""
        cut = passage.text if len(passage.text) <= PASSAGE_CHARS else passage.text[:PASSAGE_CHARS] + "…"
        text = f"<p>{_e(cut)}</p>"
    cls = "passage relevant" if grade > 0 else "passage"
    line = f"{head}<strong>{_e(doc_id)}</strong> score {score:.4f}{title}"
    return f'<div class="{cls}"><div>{line}</div>{text}</div>'


def worst_queries(mode: ModeReport, n: int = WORST_QUERIES) -> list[QueryResult]:
    """The ``n`` lowest nDCG@10 (then lowest recall@100, then query id)."""
    return sorted(mode.per_query, key=lambda q: (q.ndcg_at_10, q.recall_at_100, q.query_id))[:n]


def _worst(report: EvalReport) -> str:
    texts: dict[str, QueryText] = {q.query_id: q for q in report.query_texts}
    passages = {p.document_id: p for p in report.passages}
    parts = ["<h2 id='worst'>Worst queries</h2>"]
    for mode in report.modes:
        parts.append(f"<h3>{_e(mode.mode)}</h3>")
        worst = worst_queries(mode)
        if not worst:
            parts.append('<p class="muted">no per-query results in this report</p>')
            continue
        for q in worst:
            qt = texts.get(q.query_id)
            relevant = qt.relevant if qt else {}
            found = {d for d, _ in q.top}
            missing = sorted(d for d, g in relevant.items() if g > 0 and d not in found)
            summary = (
                f"<strong>{_e(q.query_id)}</strong> nDCG@10 {q.ndcg_at_10:.4f}, recall@100 "
                f"{q.recall_at_100:.4f}, MRR@10 {q.mrr_at_10:.4f}, {q.latency_ms:.1f} ms"
                f"{': ' + _e(qt.text) if qt else ''}"
            )
            body = [_passage_html(d, s, relevant.get(d, 0), passages.get(d)) for d, s in q.top]
            if not q.top:
                body.append('<p class="muted">nothing retrieved</p>')
            if missing:
                body.append(f"<p>relevant, not in the top {len(q.top)}: {_e(', '.join(missing))}</p>")
            parts.append(f"<details><summary>{summary}</summary>{''.join(body)}</details>")
    return "".join(parts)


def _moved(report: EvalReport, baseline: EvalReport) -> str:
    base = {m.mode: {q.query_id: q for q in m.per_query} for m in baseline.modes}
    texts = {q.query_id: q.text for q in report.query_texts}
    pairs: list[tuple[str, list[tuple[float, float]]]] = []
    rows = []
    for mode in report.modes:
        before = base.get(mode.mode, {})
        both = [(before[q.query_id], q) for q in mode.per_query if q.query_id in before]
        if not both:
            continue
        pairs.append((mode.mode, [(b.ndcg_at_10, c.ndcg_at_10) for b, c in both]))
        moved = sorted(both, key=lambda bc: (-abs(bc[1].ndcg_at_10 - bc[0].ndcg_at_10), bc[1].query_id))
        for b, c in moved[:MOVED_QUERIES]:
            if c.ndcg_at_10 == b.ndcg_at_10:
                break
            rows.append(
                f"<tr><td>{_e(mode.mode)}</td><td>{_e(c.query_id)}</td>"
                f'<td class="num">{b.ndcg_at_10:.4f}</td><td class="num">{c.ndcg_at_10:.4f}'
                f"{_delta('ndcg_at_10', b.ndcg_at_10, c.ndcg_at_10)}</td>"
                f"<td>{_e(texts.get(c.query_id, ''))}</td></tr>"
            )
    if not pairs:
        return (
            "<h2 id='baseline'>Baseline, query by query</h2>"
            '<p class="muted">the reports share no per-query results to compare</p>'
        )
    table = (
        _table(("mode", "query", "baseline nDCG@10", "this run", "query text"), rows)
        if rows
        else '<p class="muted">no query changed its nDCG@10</p>'
    )
    return (
        "<h2 id='baseline'>Baseline, query by query</h2>"
        + baseline_scatter_svg(pairs)
        + f"<h3>The queries that moved most (up to {MOVED_QUERIES} per mode)</h3>"
        + table
    )


def _answer_score(r: AnswerResult) -> float:
    return min(r.scores.values()) if r.scores else math.inf


def _answers(report: EvalReport, baseline: EvalReport | None, failed: set[tuple[str | None, str]]) -> str:
    a = report.answers
    if a is None:
        return ""
    base = {m.name: m for m in baseline.answers.metrics} if baseline and baseline.answers else {}
    rows = []
    for m in a.metrics:
        b = base.get(m.name)
        mean = _num(m.name, m.mean)
        if b is not None:
            mean += f' <span class="muted">vs {_num(m.name, b.mean)}</span>{_delta(m.name, b.mean, m.mean)}'
        cls = "num failed" if (None, m.name) in failed else "num"
        tr = ' class="failed"' if (None, m.name) in failed else ""
        rows.append(
            f'<tr{tr}><td>{_e(m.name)}</td><td class="{cls}">{mean}</td>'
            f'<td class="num">{m.n}</td><td class="num">{m.failures}</td></tr>'
        )
    parts = [
        "<h2 id='answers'>Answers</h2>",
        f"<p>{a.samples} answers asked, judged by {_e(a.judge or 'unknown')}; {a.blocked} blocked by the "
        f"guardrails; answer latency p50 {a.latency_p50_ms:.1f} ms, p95 {a.latency_p95_ms:.1f} ms.</p>",
        _table(("metric", "mean", "n scored", "judge failures"), rows, "answer-metrics"),
    ]
    if a.failure_reasons:
        reasons = [
            f'<tr><td>{_e(k)}</td><td class="num">{v}</td></tr>' for k, v in sorted(a.failure_reasons.items())
        ]
        parts.append("<h3>Judge failures</h3>" + _table(("reason", "answers"), reasons, "failure-reasons"))
    results = report.answer_results
    if any(r.scores for r in results):
        parts.append(answer_scores_svg(results))
    scored = sorted((r for r in results if r.scores), key=lambda r: (_answer_score(r), r.query_id))
    if scored:
        parts.append(f"<h3>Worst answers (lowest score, up to {WORST_ANSWERS})</h3>")
        for r in scored[:WORST_ANSWERS]:
            scores = ", ".join(f"{k} {v:.3f}" for k, v in sorted(r.scores.items()))
            parts.append(
                f"<details><summary><strong>{_e(r.query_id)}</strong> {_e(scores)}: "
                f"{_e(r.question)}</summary>"
                f'<div class="passage"><p>{_e(r.answer)}</p></div>'
                f'<p class="muted">contexts: {_e(", ".join(r.context_documents) or "none")}; '
                f"{r.latency_ms:.1f} ms</p></details>"
            )
    unscored = [r for r in results if r.failure or r.blocked]
    if unscored:
        rows = [
            f"<tr><td>{_e(r.query_id)}</td><td>{'blocked' if r.blocked else _e(r.failure)}</td>"
            f"<td>{_e(r.failure_detail)}</td><td>{_e(r.question)}</td></tr>"
            for r in sorted(unscored, key=lambda r: r.query_id)
        ]
        parts.append(
            "<h3>Answers not scored</h3>"
            + _table(("query", "reason", "detail", "question"), rows, "unscored")
        )
    return "".join(parts)


def render_html(
    report: EvalReport, baseline: EvalReport | None = None, gate: GateResult | None = None
) -> str:
    """The page (see the module docstring)."""
    failed = gate.failed_keys() if gate is not None else set()
    with_queries = [m for m in report.modes if m.per_query]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"/>',
        f"<title>Isthmus evaluation: {_e(report.dataset)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Evaluation of {_e(report.dataset)}</h1>",
        _header(report, baseline),
    ]
    if gate is not None:
        parts.append(_gate(gate))
    parts.append(_modes(report, baseline, failed))
    parts.append("<h2 id='distributions'>Per-query scores</h2>")
    if with_queries:
        parts.append(score_distributions_svg(with_queries))
    else:
        parts.append('<p class="muted">no per-query results in this report</p>')
    parts.append("<h2 id='latency'>Search latency</h2>")
    if with_queries:
        parts.append(latency_histograms_svg(with_queries))
    else:
        parts.append('<p class="muted">no per-query latencies in this report</p>')
    parts.append(_worst(report))
    parts.append(_answers(report, baseline, failed))
    if baseline is not None:
        parts.append(_moved(report, baseline))
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)
