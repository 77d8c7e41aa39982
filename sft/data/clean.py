"""Text cleaning: each step a function, run in a fixed order until the text stops changing.

One pass is not always a fixed point: decoding `&amp;lt;` yields an entity,
NFKC turns full-width `＜` into a tag opener, removing a zero-width space can
join two halves of an entity. Repeating the pass (twice for almost every text)
makes cleaning idempotent, which the property tests check.
"""

from __future__ import annotations

import html
import re
import unicodedata

from sft.config import CleanConfig

_WHITESPACE = re.compile(r"\s+")
# Tags look like <b>, </div>, <br/>, <a href="...">, or comments; "I <3 you" and "a < b" are no tags.
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>", re.DOTALL)
# Only entities closed by ';': html.unescape alone reads "&notice" as "¬ice".
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_URL = re.compile(r"(?:\b[A-Za-z][A-Za-z0-9+.-]*://|\bwww\.)\S+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
# Control, format (zero-width, bidi marks, BOM), surrogate, private-use and unassigned code points;
# control characters that are white space (tab, newline, \x1c-\x1f) are left to the collapse step.
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn"}
_ASCII_INVISIBLE = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")


def _cp1252_table() -> dict[int, str]:
    table = {}
    for code in range(0x80, 0xA0):
        try:
            table[code] = bytes([code]).decode("cp1252")
        except UnicodeDecodeError:
            pass  # 0x81, 0x8D, 0x8F, 0x90, 0x9D are unassigned in Windows-1252: left for remove_invisible
    return table


_CP1252 = _cp1252_table()
_C1 = re.compile("[\x80-\x9f]")
_MAX_PASSES = 8


def clean_text(text: str, config: CleanConfig = CleanConfig()) -> str:
    """The text with every enabled step applied, repeated until nothing changes.

    >>> clean_text("  It\\u0092s  <b>10&nbsp;%</b>\\u200b off\\n")
    'It’s 10 % off'
    """
    for _ in range(_MAX_PASSES):
        cleaned = _clean_once(text, config)
        if cleaned == text:
            break
        text = cleaned
    return text


def _clean_once(text: str, config: CleanConfig) -> str:
    if config.repair_cp1252:
        text = repair_cp1252(text)
    if config.html:
        text = strip_html(text)
    if config.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if config.remove_invisible:
        text = remove_invisible(text)
    if config.mask_urls:
        text = _URL.sub("[URL]", text)
    if config.mask_emails:
        text = _EMAIL.sub("[EMAIL]", text)
    if config.mask_numbers:
        text = _NUMBER.sub("[NUMBER]", text)
    if config.collapse_whitespace:
        text = _WHITESPACE.sub(" ", text).strip()
    return text


def repair_cp1252(text: str) -> str:
    """U+0080-U+009F to the Windows-1252 characters those bytes stand for.

    Text saved as Windows-1252 and read as Latin-1 (or re-encoded that way, as
    MELD's 2019 files were) carries C1 controls where it meant curly quotes and dashes.

    >>> repair_cp1252("It\\u0092s \\u0093fine\\u0094")
    'It’s “fine”'
    """
    return text.translate(_CP1252) if _C1.search(text) else text


def strip_html(text: str) -> str:
    """Tags replaced by a space, entities closed by ';' decoded."""
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = _ENTITY.sub(lambda m: html.unescape(m.group()), text)
    return text


def remove_invisible(text: str) -> str:
    """Control and format characters removed, except those that are white space."""
    if text.isascii():
        return _ASCII_INVISIBLE.sub("", text)
    return "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE)


def dedup_key(text: str) -> str:
    """Texts equal under this key count as duplicates: cleaned text, case folded."""
    return text.casefold()
