"""What ``isthmus eval`` does with its report besides printing it: ``--output`` (the JSON report),
``--html`` (the page of :mod:`isthmus_evaluation.html_report`) and the regression gate (``--baseline`` with
``--max-drop``, :mod:`isthmus_evaluation.gate`).

Two steps around the run: :func:`prepare` checks everything it can before the dataset is ingested (the
specs, the baseline file, the output paths, that the baseline has what the specs name and this run's
dataset and modes) — a usage error exits 2 at once, not after minutes; :func:`finish` writes the files,
prints each check and exits 1 when the gate did not pass (past an allowance, or unable to compare).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from isthmus_cli.output import err, fail

if TYPE_CHECKING:
    from isthmus_evaluation.gate import DropSpec, GateResult
    from isthmus_evaluation.report import EvalReport

#: exit codes (see ``isthmus eval --help``)
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2


def dataset_name(path: Path) -> str:
    """The name the evaluation gets for a dataset directory (what its report calls the dataset)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", path.name).lstrip("._-")[:64] or "dataset"


@dataclass(frozen=True)
class Outputs:
    specs: list[DropSpec] = field(default_factory=list)
    baseline: EvalReport | None = None
    html: Path | None = None
    output: Path | None = None
    allow_mismatch: bool = False


def _target(path: Path | None, flag: str) -> Path | None:
    """``path`` with its directory created, or exit 2 when it cannot be written there."""
    if path is None:
        return None
    if path.is_dir():
        fail(f"{flag} {path} is a directory: give a file name", EXIT_USAGE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{flag} {path}: cannot create its directory: {exc.strerror or exc}", EXIT_USAGE)
    return path


def prepare(
    *,
    baseline: Path | None,
    max_drop: list[str],
    html: Path | None,
    output: Path | None,
    allow_mismatch: bool,
    dataset: str,
    modes: list[str],
) -> Outputs:
    """Parse and check the options before the run (exit 2 on a usage error)."""
    from isthmus_core.errors import InvalidArgument
    from isthmus_evaluation.gate import MODE_METRICS, check, parse_specs
    from isthmus_evaluation.report import EvalReport

    try:
        specs = parse_specs(max_drop)
    except InvalidArgument as exc:
        fail(str(exc), EXIT_USAGE)
    if specs and baseline is None:
        fail("--max-drop needs --baseline (the report to compare with)", EXIT_USAGE)
    base = None
    if baseline is not None:
        try:
            base = EvalReport.from_json(baseline.read_text(encoding="utf-8"))
        except OSError as exc:
            fail(f"--baseline {baseline}: cannot read it: {exc.strerror or exc}", EXIT_USAGE)
        except (InvalidArgument, UnicodeDecodeError) as exc:
            fail(f"--baseline {baseline}: {exc}", EXIT_USAGE)
        # what the baseline lacks is known now: the baseline compared with itself
        problems = [e.replace(" nor the current report", " report") for e in check(base, base, specs).errors]
        if not allow_mismatch and base.dataset != dataset:
            problems.append(
                f"the baseline is a report of dataset {base.dataset!r}, this run evaluates {dataset!r} "
                "(--allow-mismatch to compare them anyway)"
            )
        if any(s.metric in MODE_METRICS for s in specs):
            named = {s.mode for s in specs if s.mode is not None}
            if any(s.mode is None and s.metric in MODE_METRICS for s in specs):
                named |= {m.mode for m in base.modes}
            if missing := sorted(named - set(modes)):
                problems.append(
                    f"the gate compares mode(s) {missing}, which this run does not evaluate "
                    f"(--modes {','.join(modes)})"
                )
        if problems:
            for p in problems[:-1]:
                err.print(f"[red]error:[/red] {p}", markup=True, highlight=False)
            fail(problems[-1], EXIT_USAGE)
    return Outputs(
        specs=specs,
        baseline=base,
        html=_target(html, "--html"),
        output=_target(output, "--output"),
        allow_mismatch=allow_mismatch,
    )


def _print_gate(result: GateResult) -> None:
    from rich.markup import escape

    from isthmus_evaluation.gate import Verdict

    for p in result.problems:
        err.print(f"[red]gate error:[/red] {escape(p)}", highlight=False)
    for c in result.checks:
        tag = {Verdict.PASS: "[green]gate ok:[/green]", Verdict.FAIL: "[red]gate FAILED:[/red]"}.get(
            c.verdict, "[red]gate error:[/red]"
        )
        err.print(f"{tag} {escape(c.message)}", highlight=False)


def finish(report: EvalReport, outputs: Outputs) -> None:
    """Write ``--output`` and ``--html``, run the gate, print its checks; exit 1 when it did not pass."""
    from isthmus_evaluation.gate import check

    result = None
    if outputs.baseline is not None and outputs.specs:
        result = check(report, outputs.baseline, outputs.specs, allow_mismatch=outputs.allow_mismatch)
    try:
        if outputs.output is not None:
            outputs.output.write_text(report.to_json() + "\n", encoding="utf-8")
        if outputs.html is not None:
            from isthmus_evaluation.html_report import render_html

            outputs.html.write_text(render_html(report, outputs.baseline, result), encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write the report: {exc}")
    for flag, path in (("report", outputs.output), ("HTML report", outputs.html)):
        if path is not None:
            err.print(f"{flag}: {path}", highlight=False)
    if result is None:
        return
    _print_gate(result)
    if not result.ok:
        err.print(
            f"[red]gate failed:[/red] {len(result.failed)} metric(s) past their allowance, "
            f"{len(result.errors)} that could not be compared",
            highlight=False,
        )
        raise typer.Exit(EXIT_GATE_FAILED)
    err.print(
        f"[green]gate passed:[/green] {len(result.checks)} check(s) within their allowances", highlight=False
    )
