"""The regions file, the replicated topics and the per-region version classes (isthmus_core.regions)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from isthmus_core.contracts import topics
from isthmus_core.drills.scenarios import SCENARIOS, Action, scenario
from isthmus_core.errors import InvalidArgument
from isthmus_core.regions import (
    REPLICATED_TOPICS,
    load_regions,
    mirror_allowlist,
    mirrored,
    next_version,
    parse_regions,
    remote_topic,
    source_region,
)


@pytest.mark.parametrize("regions", [("a", "b"), ("eu-west", "us-east", "ap-south")])
def test_versions_of_two_regions_never_tie_and_a_later_write_ranks_above(regions: tuple[str, ...]) -> None:
    for previous in range(0, 40):
        drawn = {r: next_version(previous, r, regions) for r in regions}
        assert all(v > previous for v in drawn.values())
        assert len(set(drawn.values())) == len(regions)  # concurrent writes from one version: no tie
        for r in regions:
            # a region writing after it saw another region's version ranks above that version
            for seen in drawn.values():
                assert next_version(seen, r, regions) > seen
    classes = {r: {next_version(p, r, regions) % len(regions) for p in range(30)} for r in regions}
    assert all(len(c) == 1 for c in classes.values())  # each region keeps to its own residue class


def test_one_region_counts_as_before() -> None:
    assert [next_version(p) for p in range(4)] == [1, 2, 3, 4]
    assert [next_version(p, "a", ["a"]) for p in range(4)] == [1, 2, 3, 4]
    with pytest.raises(InvalidArgument, match="not one of the regions"):
        next_version(1, "c", ["a", "b"])


def test_mirrored_topics_carry_the_source_alias_and_never_match_the_allowlist() -> None:
    allow = re.compile(mirror_allowlist())
    for spec in REPLICATED_TOPICS:
        copy = mirrored(spec, "a")
        assert copy.name == remote_topic("a", spec.name) == f"a.{spec.name}"
        assert (copy.payload, copy.partitions, copy.key) == (spec.payload, spec.partitions, spec.key)
        assert allow.fullmatch(spec.name)
        assert not allow.fullmatch(copy.name)  # MM2 never mirrors a copy back: no loop
        assert source_region(copy.name, "b") == "a" and source_region(spec.name, "b") == "b"
    assert not allow.fullmatch(topics.CHUNKS_CREATED.name)  # what a region rebuilds itself
    with pytest.raises(InvalidArgument, match="not replicated"):
        mirrored(topics.TENANTS_DELETED, "a")
    with pytest.raises(InvalidArgument, match="region name"):
        remote_topic("A/..", topics.CHUNKS_EMBEDDED.name)


def test_the_regions_file_reports_every_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "regions.toml"
    path.write_text(
        '[regions.a]\nendpoint = "127.0.0.1:1"\n[regions.B]\nendpoint = ""\n'
        '[regions.a.hooks]\nkill = "true"\nrestart = "x"\n[primaries]\nacme = "c"\n'
    )
    with pytest.raises(InvalidArgument) as exc:
        load_regions(path)
    message = str(exc.value)
    for expected in ("regions.B.endpoint", "restart", str(path)):
        assert expected in message
    path.write_text(
        '[regions.b]\nendpoint = "127.0.0.1:2"\n[regions.a]\nendpoint = "127.0.0.1:1"\n'
        '[primaries]\nacme = "b"\n'
    )
    config = load_regions(path)
    assert config.names == ["a", "b"]
    assert (config.primary_of("acme"), config.primary_of("other")) == ("b", "a")
    with pytest.raises(InvalidArgument, match="unknown region 'c'"):
        config.region("c")
    with pytest.raises(InvalidArgument, match=r"primaries\.acme"):
        parse_regions({"regions": {"a": {"endpoint": "x:1"}}, "primaries": {"acme": "z"}})
    with pytest.raises(InvalidArgument, match="cannot read"):
        load_regions(tmp_path / "missing.toml")


PAIRS = (
    (Action.KILL_REGION, Action.RESTORE_REGION),
    (Action.STOP_LINK, Action.START_LINK),
    (Action.KILL_BROKER, Action.RESTORE_BROKER),
)


def test_scenarios_are_well_formed() -> None:
    for s in SCENARIOS.values():
        assert s.steps and all(step.seconds >= 0 for step in s.steps)
        actions = [step.action for step in s.steps]
        # every fault a scenario injects is healed before it ends, so the regions can be compared
        for fault, heal in (
            (Action.KILL_REGION, Action.RESTORE_REGION),
            (Action.STOP_LINK, Action.START_LINK),
            (Action.KILL_BROKER, Action.RESTORE_BROKER),
        ):
            assert actions.count(fault) == actions.count(heal)
            if fault in actions:
                assert actions.index(fault) < actions.index(heal)
    with pytest.raises(InvalidArgument, match="region-loss"):
        scenario("meteor-strike")
