"""Text cleaning: each step a function, applied in a fixed order."""

from __future__ import annotations

import re
import unicodedata

_WHITESPACE = re.compile(r"\s+")
# Control characters (category C*) except the white space that the collapse step handles.
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn"}


def clean_text(text: str) -> str:
    """NFKC, invisible characters removed, white space collapsed.

    >>> clean_text("  Hi\\u200b  there\\n")
    'Hi there'
    """
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE)
    return _WHITESPACE.sub(" ", text).strip()


def normalize_label(label: str) -> str:
    return _WHITESPACE.sub(" ", label).strip()


def dedup_key(text: str) -> str:
    """Texts equal under this key count as duplicates."""
    return text.casefold()
