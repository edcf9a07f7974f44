"""``isthmus drill list|run``: failover drills against two regions described in a regions file, with
steady traffic, a timeline, and measured RPO/RTO (the scenarios are
:data:`isthmus_core.drills.scenarios.SCENARIOS`, shared with the operator's FailoverDrill)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from isthmus_cli.client import run
from isthmus_cli.options import LOCAL_REGIONS, AsJson, tenant_id
from isthmus_cli.output import console, err, fail
from isthmus_core.drills.scenarios import Action, Step

app = typer.Typer(help="Failover drills: faults, failover and failback, with measured RPO/RTO.")


@app.command("list")
def drill_list(as_json: AsJson = False) -> None:
    """The drill scenarios and their steps."""
    from isthmus_core.drills.scenarios import SCENARIOS

    rows: list[dict[str, Any]] = [
        {
            "name": s.name,
            "summary": s.summary,
            "steps": [_step(st) for st in s.steps],
        }
        for s in SCENARIOS.values()
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("scenario", "what happens", "steps")
    for r in rows:
        table.add_row(r["name"], r["summary"], escape(", ".join(r["steps"])))
    console.print(table)


def _step(step: Step) -> str:
    """``kill-region primary``, ``observe 5 s``, ``await-recovery secondary ≤ 60 s``."""
    text = str(step.action)
    if step.action not in (Action.OBSERVE, Action.AWAIT_CATCH_UP):
        text += f" {step.region}"
    if step.seconds:
        text += f" {'' if step.action == Action.OBSERVE else '≤ '}{step.seconds:g} s"
    return text


def parse_rate(value: str) -> tuple[float, float]:
    """``N`` (writes and reads per second) or ``W,R``; each above 0."""
    try:
        parts = [float(p) for p in value.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or not all(0 < p <= 1000 for p in parts):
        fail(f"--rate {value!r}: give writes/s,reads/s as 'W,R' (or one number), each in (0, 1000]", 2)
    return parts[0], parts[1]


@app.command("run")
def drill_run(
    scenario: Annotated[str, typer.Argument(help="a scenario of 'isthmus drill list'")],
    regions: Annotated[
        Path,
        typer.Option(
            "--regions",
            envvar="ISTHMUS_REGIONS_FILE",
            help="the regions file (TOML, with hooks); default: the one 'make regions-up' writes",
        ),
    ] = LOCAL_REGIONS,
    tenant: Annotated[
        str, typer.Option("--tenant", "-t", help="the drill's tenant", callback=tenant_id)
    ] = "drill",
    primary: Annotated[
        str | None, typer.Option(help="the region that fails (default: the tenant's primary)")
    ] = None,
    secondary: Annotated[
        str | None, typer.Option(help="the survivor (default: the first other region by name)")
    ] = None,
    rate: Annotated[str, typer.Option(help="writes/s,reads/s of the steady traffic")] = "2,5",
    ask: Annotated[bool, typer.Option("--ask", help="read with Ask instead of Search")] = False,
    as_json: AsJson = False,
    report: Annotated[
        Path | None, typer.Option(help="write DIR/report.json and DIR/report.html (timeline plot, table)")
    ] = None,
    rpo_max: Annotated[
        float | None, typer.Option(help="objective: at most this many seconds of writes lost at failover")
    ] = None,
    rto_max: Annotated[
        float | None, typer.Option(help="objective: first answer and error rate < 1 % within these seconds")
    ] = None,
    hook_timeout: Annotated[float, typer.Option(help="seconds a fault hook may take")] = 300.0,
    catch_up: Annotated[float, typer.Option(help="seconds the regions may take to converge")] = 120.0,
) -> None:
    """Run a drill: steady writes and reads through the region-aware client while the scenario's faults
    run; prints RPO/RTO, loss and duplicates. Exit 1 when the drill failed, wrote data off, or missed an
    objective; 2 for bad arguments."""
    from isthmus_cli.drill.executor import LocalExecutor, missing_hooks
    from isthmus_cli.drill.report import summary_rows, write_report
    from isthmus_cli.drill.runner import Drill, DrillOptions
    from isthmus_cli.regional import load_regions_or_fail
    from isthmus_core.drills.scenarios import scenario as find_scenario
    from isthmus_core.errors import InvalidArgument

    try:
        chosen = find_scenario(scenario)
    except InvalidArgument as exc:
        fail(str(exc), 2)
    config = load_regions_or_fail(regions)
    first = primary or config.primary_of(tenant)
    second = secondary or next((r for r in config.names if r != first), "")
    for flag, name in (("--primary", first), ("--secondary", second)):
        if not name:
            fail(f"{regions} describes one region ({first}): a drill needs two", 2)
        if name not in config.regions:
            known = ", ".join(config.names)
            fail(f"{flag} {name!r} is not a region of {regions}: the regions are {known}", 2)
    if first == second:
        fail(f"--primary and --secondary are both {first!r}: a drill needs two regions", 2)
    writes, reads = parse_rate(rate)
    missing = missing_hooks(config, chosen, first, second)
    if missing:
        fail(f"scenario {chosen.name} needs hooks that {regions} leaves empty: {', '.join(missing)}", 2)
    options = DrillOptions(
        scenario=chosen,
        tenant=tenant,
        primary=first,
        secondary=second,
        write_rate=writes,
        read_rate=reads,
        ask=ask,
        catch_up_s=catch_up,
        rpo_max_s=rpo_max,
        rto_max_s=rto_max,
    )
    if not as_json:
        err.print(f"drill {chosen.name}: primary {first}, secondary {second}, tenant {tenant} …")
    result = run(Drill(config, options, LocalExecutor(config, hook_timeout)).run())
    if report is not None:
        json_path, html_path = write_report(result, report)
        if not as_json:
            err.print(f"report: {html_path} ({json_path.name} beside it)")
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        table = Table("measure", "value", title=f"drill {chosen.name} ({result.run_id})")
        for k, v in summary_rows(result.measures):
            table.add_row(escape(k), escape(v))
        console.print(table)
        for note in result.notes:
            console.print(f"[dim]{escape(note)}[/dim]")
        if result.failure:
            console.print(f"[red]drill failed:[/red] {escape(result.failure)}")
        for problem in result.problems:
            console.print(f"[red]objective missed:[/red] {escape(problem)}")
        if result.ok:
            console.print("[green]objectives met[/green]")
    if not result.ok:
        raise typer.Exit(1)
