"""Answer from the parent section (pure): a chunk indexed by ingestion's ``parent-child`` chunking names
its parent section in its metadata (text and offsets in the document); the answer is built from the
parent's text, each parent once.

Small children find the passage; the generator and the output guardrail then read the whole section
around it. The context keeps the child's ``chunk_id`` (what retrieval found) with the parent's text and
offsets, so citations point at document offsets inside the parent section — the span the generator quoted,
which may lie outside the child. A parent named twice (two of its children retrieved) is kept once, at
the rank of its best child. Metadata that does not describe a parent holding the child (offsets that are
not numbers, a text whose length disagrees with them, a child outside it) is ignored: the child's own
text is answered from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from isthmus_core.ports.generator import PARENT_END_KEY, PARENT_START_KEY, PARENT_TEXT_KEY, Context


def answer_context(context: Context, metadata: Mapping[str, str]) -> Context:
    """``context`` with its parent section's text and offsets when its metadata names one."""
    text = metadata.get(PARENT_TEXT_KEY)
    raw_start, raw_end = metadata.get(PARENT_START_KEY, ""), metadata.get(PARENT_END_KEY, "")
    if not text or not (raw_start.isdigit() and raw_end.isdigit()):
        return context
    start, end = int(raw_start), int(raw_end)
    child_end = context.end or context.start + len(context.text)
    if end - start != len(text) or not (start <= context.start and child_end <= end):
        return context
    return replace(context, text=text, start=start, end=end, continues_sentence=False)


def distinct_contexts(contexts: Iterable[Context]) -> list[Context]:
    """``contexts`` in order, each passage (document, offsets, text) once: its first (best) occurrence."""
    seen: set[tuple[str, int, int, str]] = set()
    out: list[Context] = []
    for c in contexts:
        key = (c.document_id, c.start, c.end, c.text)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
