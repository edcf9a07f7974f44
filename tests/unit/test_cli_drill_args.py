"""`isthmus drill` and `--regions` argument errors: one clear line on stderr, exit 2, before any traffic;
the local executor's hooks (missing, failing, too slow, run)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from isthmus_cli.drill.executor import DrillFailed, LocalExecutor, missing_hooks
from isthmus_cli.main import app
from isthmus_core.drills.scenarios import SCENARIOS, Action, scenario
from isthmus_core.regions import parse_regions

runner = CliRunner()

REGIONS = """
[regions.a]
endpoint = "127.0.0.1:1"
[regions.a.hooks]
kill = "true"
restore = "true"
[regions.b]
endpoint = "127.0.0.1:2"
"""


def invoke(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args), env={"COLUMNS": "300"})
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def regions(tmp_path: Path) -> Path:
    path = tmp_path / "regions.toml"
    path.write_text(REGIONS)
    return path


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_drill_list_shows_every_shared_scenario() -> None:
    code, out, _ = invoke("drill", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [s["name"] for s in listed] == list(SCENARIOS)
    region_loss = next(s for s in listed if s["name"] == "region-loss")
    assert region_loss["steps"][1] == "kill-region primary"


def test_unknown_scenario(regions: Path) -> None:
    code, _, err = invoke("drill", "run", "region-gone", "--regions", str(regions))
    assert code == 2
    line = one_error_line(err)
    assert "unknown drill scenario 'region-gone'" in line and "region-loss" in line


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--primary", "c"), "--primary 'c' is not a region of"),
        (("--secondary", "z"), "--secondary 'z' is not a region of"),
        (("--primary", "a", "--secondary", "a"), "--primary and --secondary are both 'a'"),
        (("--rate", "0"), "--rate '0'"),
        (("--rate", "2,x"), "--rate '2,x'"),
    ],
)
def test_bad_regions_and_rates(regions: Path, flags: tuple[str, ...], expected: str) -> None:
    code, _, err = invoke("drill", "run", "region-loss", "--regions", str(regions), *flags)
    assert code == 2
    assert expected in one_error_line(err)


def test_missing_hook_is_named_before_anything_runs(regions: Path) -> None:
    # link-loss needs regions.b.hooks.stop_link and start_link: the file leaves them empty
    code, _, err = invoke("drill", "run", "link-loss", "--regions", str(regions))
    assert code == 2
    line = one_error_line(err)
    assert "regions.b.hooks.stop_link, regions.b.hooks.start_link" in line
    # with a and b swapped, region-loss needs b's kill and restore hooks
    code, _, err = invoke("drill", "run", "region-loss", "--regions", str(regions), "--primary", "b")
    assert code == 2 and "regions.b.hooks.kill, regions.b.hooks.restore" in one_error_line(err)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no regions file at"),
        ("[regions.a\n", "is not valid TOML"),
        ('[regions.A]\nendpoint = "x:1"\n', "regions.A"),
        ('[regions.a]\nendpoint = "x:1"\n[primaries]\nt = "c"\n', "primaries.t"),
    ],
)
def test_bad_regions_file(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "regions.toml"
    if content is not None:
        path.write_text(content)
    for args in (
        ("drill", "run", "failback", "--regions", str(path)),
        ("ask", "a question?", "--tenant", "t", "--regions", str(path)),
        ("ingest", str(tmp_path), "--tenant", "t", "--regions", str(path)),
    ):
        if args[0] == "ingest":
            (tmp_path / "doc.txt").write_text("text")
        code, _, err = invoke(*args)
        assert code == 2, (args, err)
        assert expected in one_error_line(err)


def test_a_one_region_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "regions.toml"
    path.write_text('[regions.a]\nendpoint = "127.0.0.1:1"\n[regions.a.hooks]\nkill = "true"\n')
    code, _, err = invoke("drill", "run", "region-loss", "--regions", str(path))
    assert code == 2 and "describes one region (a): a drill needs two" in one_error_line(err)


def test_missing_hooks_lists_each_once() -> None:
    cfg = parse_regions({"regions": {"a": {"endpoint": "x:1"}, "b": {"endpoint": "y:1"}}})
    assert missing_hooks(cfg, scenario("failback"), "a", "b") == [
        "regions.a.hooks.kill",
        "regions.a.hooks.restore",
    ]
    assert missing_hooks(cfg, scenario("tenant-move"), "a", "b") == []


async def test_local_executor_runs_hooks_and_reports_failures(tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    cfg = parse_regions(
        {
            "regions": {
                "a": {
                    "endpoint": "x:1",
                    "hooks": {
                        "kill": f"touch {marker}",
                        "restore": "echo starting; echo the port is taken >&2; exit 3",
                        "kill_broker": "sleep 30",
                        # a hook that leaves a daemon behind returns as soon as its shell does
                        "restore_broker": f"sleep 30 > /dev/null 2>&1 & echo $! > {tmp_path / 'pid'}",
                    },
                },
                "b": {"endpoint": "y:1"},
            }
        }
    )
    ex = LocalExecutor(cfg, timeout_s=5)
    await ex.run(Action.KILL_REGION, "a")
    assert marker.exists()
    with pytest.raises(
        DrillFailed, match=r"hook regions.a.hooks.restore exited with 3: starting \| the port is taken"
    ):
        await ex.run(Action.RESTORE_REGION, "a")
    with pytest.raises(DrillFailed, match=r"needs the hook regions\.b\.hooks\.kill: it is empty"):
        await ex.run(Action.KILL_REGION, "b")
    await ex.run(Action.RESTORE_BROKER, "a")  # returned while its daemon still runs
    daemon = int((tmp_path / "pid").read_text())
    os.kill(daemon, signal.SIGTERM)
    quick = LocalExecutor(cfg, timeout_s=0.5)
    with pytest.raises(DrillFailed, match=r"hook regions.a.hooks.kill_broker did not finish within 0.5 s"):
        await quick.run(Action.KILL_BROKER, "a")
