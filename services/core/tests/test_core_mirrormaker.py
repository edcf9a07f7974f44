"""The MirrorMaker 2 properties of one region's MM2, read back the way java.util.Properties reads them."""

from __future__ import annotations

import re

import pytest

from isthmus_core.errors import InvalidArgument
from isthmus_core.mirrormaker import mm2_properties
from isthmus_core.regions import REPLICATED_TOPICS, mirror_allowlist, parse_regions, remote_topic


def java_properties(text: str) -> dict[str, str]:
    """A java.util.Properties reader for the subset a properties file of key = value lines uses: comments,
    blank lines, the first unescaped '=' or ':' separates, whitespace around it is dropped, and a
    backslash escapes the next character (``\\\\`` is one backslash)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.lstrip()
        if not line or line[0] in "#!":
            continue
        key, value, i = [], [], 0
        while i < len(line) and line[i] not in "=:" and not line[i].isspace():
            if line[i] == "\\" and i + 1 < len(line):
                i += 1
            key.append(line[i])
            i += 1
        rest = line[i:].lstrip()
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip()
        j = 0
        while j < len(rest):
            if rest[j] == "\\" and j + 1 < len(rest):
                j += 1
            value.append(rest[j])
            j += 1
        assert "".join(key) not in out, f"duplicate key {''.join(key)!r}"
        out["".join(key)] = "".join(value)
    return out


def regions(*names: str, bootstrap: bool = True) -> dict[str, object]:
    return {
        "regions": {
            n: {
                "endpoint": f"127.0.0.1:{50161 + i}",
                "kafka_bootstrap": f"127.0.0.1:{19192 + 100 * i}" if bootstrap else "",
            }
            for i, n in enumerate(names)
        }
    }


def test_the_mm2_of_a_region_mirrors_every_peer_into_it_and_nothing_else() -> None:
    config = parse_regions(regions("a", "b", "c"))
    props = java_properties(mm2_properties(config, "b"))

    assert [c.strip() for c in props["clusters"].split(",")] == ["a", "b", "c"]
    for name in ("a", "b", "c"):
        assert props[f"{name}.bootstrap.servers"] == config.regions[name].kafka_bootstrap
    flows = {k.removesuffix(".enabled"): v for k, v in props.items() if re.fullmatch(r"\w+->\w+\.enabled", k)}
    assert flows == {f"{s}->{t}": "true" if t == "b" else "false" for s in "abc" for t in "abc" if s != t}
    assert props["a->b.topics"] == props["c->b.topics"] == mirror_allowlist()
    assert "b->a.topics" not in props and "a->c.topics" not in props


def test_the_topic_filter_matches_the_replicated_topics_never_a_mirrored_copy() -> None:
    props = java_properties(mm2_properties(parse_regions(regions("a", "b")), "a"))
    pattern = re.compile(props["b->a.topics"])  # MM2 matches a topic against the whole regex
    for spec in REPLICATED_TOPICS:
        assert pattern.fullmatch(spec.name)
        assert not pattern.fullmatch(remote_topic("b", spec.name)), "a mirrored copy would loop"
        assert not pattern.fullmatch(spec.dlq)
        assert not pattern.fullmatch(spec.name.replace(".", "x"))  # the dots are literal


def test_replication_policy_offsets_heartbeats_and_intervals() -> None:
    config = parse_regions(regions("a", "b"))
    props = java_properties(mm2_properties(config, "a", refresh_s=3, heartbeat_s=2, checkpoint_s=4))

    assert props["replication.policy.class"].endswith("DefaultReplicationPolicy")
    assert props["replication.policy.separator"] == "."
    assert remote_topic("b", "t") == "b" + props["replication.policy.separator"] + "t"
    assert props["sync.group.offsets.enabled"] == "true"
    assert props["emit.checkpoints.enabled"] == "true"
    assert props["emit.heartbeats.enabled"] == "true"
    assert props["refresh.topics.interval.seconds"] == props["refresh.groups.interval.seconds"] == "3"
    assert props["emit.heartbeats.interval.seconds"] == "2"
    assert props["emit.checkpoints.interval.seconds"] == "4"
    # this MM2 writes only into its own region: offset syncs too
    assert props["offset-syncs.topic.location"] == "target"


@pytest.mark.parametrize("rf", [1, 3])
def test_every_replication_factor_is_the_one_asked_for(rf: int) -> None:
    props = java_properties(mm2_properties(parse_regions(regions("a", "b")), "a", replication_factor=rf))
    factors = {k: v for k, v in props.items() if k.endswith("replication.factor")}
    assert {
        "replication.factor",
        "checkpoints.topic.replication.factor",
        "heartbeats.topic.replication.factor",
        "offset-syncs.topic.replication.factor",
        "offset.storage.replication.factor",
        "config.storage.replication.factor",
        "status.storage.replication.factor",
    } <= factors.keys()
    assert set(factors.values()) == {str(rf)}


def test_excluded_groups_keep_mm2_defaults_and_add_the_given_ones() -> None:
    props = java_properties(
        mm2_properties(parse_regions(regions("a", "b")), "a", groups_exclude=["retrieval(-.*)?"])
    )
    excluded = [g.strip() for g in props["groups.exclude"].split(",")]
    assert "retrieval(-.*)?" in excluded
    assert any(re.fullmatch(g, "connect-mirror") for g in excluded)  # MM2's own default stays


@pytest.mark.parametrize(
    ("config", "target", "kwargs", "words"),
    [
        (regions("a", "b"), "c", {}, ["unknown target region 'c'"]),
        (regions("a"), "a", {}, ["at least two regions"]),
        (regions("a", "b", bootstrap=False), "a", {}, ["'a'", "'b'", "kafka_bootstrap"]),
        (regions("a", "b"), "a", {"replication_factor": 0}, ["replication_factor"]),
        (regions("a", "b"), "a", {"refresh_s": 0}, ["refresh_s"]),
        (regions("a", "b"), "a", {"groups_exclude": ["("]}, ["groups_exclude"]),
    ],
)
def test_bad_inputs_are_invalid_arguments_that_say_why(
    config: dict[str, object], target: str, kwargs: dict[str, object], words: list[str]
) -> None:
    with pytest.raises(InvalidArgument) as err:
        mm2_properties(parse_regions(config), target, **kwargs)  # type: ignore[arg-type]
    for word in words:
        assert word in str(err.value)


def test_a_peer_without_kafka_bootstrap_is_named() -> None:
    data = regions("a", "b")
    data["regions"]["b"]["kafka_bootstrap"] = ""  # type: ignore[index]
    with pytest.raises(InvalidArgument, match=r"\['b'\] have no kafka_bootstrap"):
        mm2_properties(parse_regions(data), "a")
