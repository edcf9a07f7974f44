"""Banned topics: a text is on a tenant's topic when its embedding is close enough to the topic's description.

:class:`EmbeddingTopicMatcher` embeds each topic's description once (vectors cached per ``(name,
description)``, so a new policy version re-embeds only the topics it changed) and the text in windows
(sentences packed to at most ``window_chars`` characters, so a long answer is judged part by part and the
encoder never truncates a topic away). A topic matches when the cosine similarity of its description to
the best window is at or above ``topic.threshold``: finding ``topic.<name>``, score = that similarity, span
= that window, the message naming the topic, the similarity, the threshold and the encoder.

Both sides are embedded as passages (no query instruction): matching a text to a description is a
symmetric similarity, which is how BGE models are meant to be used without their retrieval prefix.

On the bundled bge-small-en-v1.5 encoder, unrelated English texts already have cosine ~0.4-0.55 (the
encoder's vectors share a common direction), so thresholds live in 0.55-0.75; 0.6, the default, was
measured with ``services/guardrail/tests/test_guardrail_topics.py`` (see its docstring).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache

from isthmus_core.ports.embedder import Embedder
from isthmus_core.ports.guard import BannedTopic, Finding
from isthmus_guardrail.components import TOPIC_PREFIX

#: characters of text per window (~100 tokens: within the guardrail's encoder_max_tokens of 128)
WINDOW_CHARS = 400
#: topic description vectors kept
CACHE_SIZE = 1024

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n\s*\n")


@dataclass(frozen=True, slots=True)
class Window:
    start: int
    end: int
    text: str


def windows(text: str, limit: int = WINDOW_CHARS) -> list[Window]:
    """``text`` as windows of whole sentences packed up to ``limit`` characters (a longer sentence is cut
    at whitespace), with their offsets in ``text``; none for a blank text."""
    pieces: list[tuple[int, int]] = []
    cursor = 0
    for m in _SENTENCE_END.finditer(text):
        pieces.append((cursor, m.start()))
        cursor = m.end()
    pieces.append((cursor, len(text)))
    # cut sentences longer than the limit at whitespace
    cut: list[tuple[int, int]] = []
    for start, end in pieces:
        while end - start > limit:
            space = text.rfind(" ", start + 1, start + limit)
            stop = space if space > start else start + limit
            cut.append((start, stop))
            start = stop
        cut.append((start, end))
    out: list[Window] = []
    span: tuple[int, int] | None = None
    for start, end in cut:
        if not text[start:end].strip():
            continue
        if span is not None and end - span[0] <= limit:
            span = (span[0], end)
            continue
        if span is not None:
            out.append(_window(text, *span))
        span = (start, end)
    if span is not None:
        out.append(_window(text, *span))
    return out


def _window(text: str, start: int, end: int) -> Window:
    chunk = text[start:end]
    lead = len(chunk) - len(chunk.lstrip())
    trail = len(chunk.rstrip())
    return Window(start + lead, start + trail, chunk.strip())


class EmbeddingTopicMatcher:
    """:class:`~isthmus_guardrail.components.TopicMatcher` over an encoder (the bundled ``OnnxEmbedder``
    the guardrail shares with its injection model). Thread-safe."""

    def __init__(self, encoder: Embedder, *, window_chars: int = WINDOW_CHARS, cache_size: int = CACHE_SIZE):
        self._encoder = encoder
        self._window_chars = window_chars
        self._cache: LRUCache[tuple[str, str], npt.NDArray[np.float32]] = LRUCache(maxsize=cache_size)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._encoder.model_id

    def _topic_vectors(self, topics: Sequence[BannedTopic]) -> npt.NDArray[np.float32]:
        keys = [(t.name, t.description) for t in topics]
        with self._lock:
            known = {k: self._cache[k] for k in keys if k in self._cache}
        missing = list(dict.fromkeys(k for k in keys if k not in known))
        if missing:
            vectors = self._encoder.embed([description for _, description in missing], kind="passage").vectors
            fresh = dict(zip(missing, vectors, strict=True))
            with self._lock:
                self._cache.update(fresh)
            known.update(fresh)
        return np.stack([known[k] for k in keys])

    def similarities(
        self, text: str, topics: Sequence[BannedTopic]
    ) -> tuple[list[Window], npt.NDArray[np.float32]]:
        """The text's windows and the (windows x topics) cosine similarities."""
        parts = windows(text, self._window_chars)
        if not parts or not topics:
            return parts, np.zeros((len(parts), len(topics)), dtype=np.float32)
        texts = self._encoder.embed([w.text for w in parts], kind="passage").vectors
        return parts, texts @ self._topic_vectors(topics).T

    def findings(self, text: str, topics: Sequence[BannedTopic]) -> list[Finding]:
        """``topic.<name>`` for each topic whose description's similarity to the best window of ``text`` is
        at or above the topic's threshold (score = the similarity, span = the window)."""
        parts, sims = self.similarities(text, topics)
        if not parts:
            return []
        found = []
        for j, topic in enumerate(topics):
            i = int(np.argmax(sims[:, j]))
            similarity = float(sims[i, j])
            if similarity >= topic.threshold:
                found.append(
                    Finding(
                        code=TOPIC_PREFIX + topic.name,
                        message=f"banned topic {topic.name!r}: cosine similarity {similarity:.3f} to its "
                        f"description is at or above the topic's threshold {topic.threshold:.2f} "
                        f"({self.name})",
                        start=parts[i].start,
                        end=parts[i].end,
                        score=round(min(max(similarity, 0.0), 1.0), 4),
                    )
                )
        return found


def load_default(encoder: Embedder) -> EmbeddingTopicMatcher:
    """The topic matcher over ``encoder`` (the guardrail's shared bundled ``OnnxEmbedder``)."""
    return EmbeddingTopicMatcher(encoder)
