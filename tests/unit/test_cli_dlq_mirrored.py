"""``isthmus dlq list|replay`` names the dead letters of a copy mirrored from another region too."""

from __future__ import annotations

import pytest
import typer

from isthmus_cli.commands.dlq import _dlq_topic


def test_registry_and_mirrored_topics_have_dead_letter_topics() -> None:
    assert _dlq_topic("chunks.created.v1") == "isthmus.chunks.created.v1.dlq"
    assert _dlq_topic("a.isthmus.chunks.embedded.v1") == "a.isthmus.chunks.embedded.v1.dlq"
    assert _dlq_topic("eu-west.isthmus.answers.produced.v1.dlq") == "eu-west.isthmus.answers.produced.v1.dlq"


@pytest.mark.parametrize("topic", ["a.isthmus.chunks.created.v1", "A.isthmus.chunks.embedded.v1", "nope"])
def test_a_topic_no_region_mirrors_is_refused(topic: str) -> None:
    with pytest.raises(typer.Exit):
        _dlq_topic(topic)
