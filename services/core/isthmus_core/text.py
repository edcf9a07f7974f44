"""Text rules shared by ingestion (chunking) and the orchestrator (sentence splitting). Pure.

A single line break that only wraps a sentence — the line does not end with ``.``, ``!``, ``?``, ``:``,
``;`` or ``…`` and the next line goes on in lower case — is read as a space. Plain text and PDF text keep
the source's line wrapping, so without this rule a wrapped sentence would be cut in two. The replacement
has the same length, so character offsets still point into the original text.
"""

from __future__ import annotations

import re
from typing import Final

#: a single line break between a line that does not end a sentence and one that continues in lower case
WRAPPED_LINE_BREAK: Final = re.compile(r"(?<=[^\s.!?:;…])[^\S\n]*\n(?=[^\S\n]*[a-z])")


def unwrap_lines(text: str) -> str:
    """``text`` with each wrapped-line break replaced by spaces of the same length (offsets unchanged)."""
    return WRAPPED_LINE_BREAK.sub(lambda m: " " * len(m.group()), text)
