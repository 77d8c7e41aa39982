import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sft.config import CleanConfig
from sft.data.clean import clean_text

ALL_ON = CleanConfig(mask_urls=True, mask_emails=True, mask_numbers=True)
NOTHING = CleanConfig(repair_cp1252=False, html=False, nfkc=False, remove_invisible=False, collapse_whitespace=False)


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("  Ｈｉ\u200b there\u0007,\n\tfriend  ", "Hi there, friend"),  # NFKC, zero-width, control, white space
        ("It\u0092s \u0093fine\u0094 \u0096 ok\u0085", "It’s “fine” – ok..."),  # Windows-1252 read as Latin-1
        ("<p>Hello <b>there</b></p><!-- note -->", "Hello there"),
        ("Fish &amp; chips &lt;3 &#8364;5 &#x41;", "Fish & chips <3 €5 A"),
        ("caf\u00e9 \ufeffdone\u200e", "café done"),  # BOM and bidi marks are invisible
        ("line one\r\nline two", "line one line two"),
    ],
)
def test_default_cleaning(raw, clean):
    assert clean_text(raw) == clean


@pytest.mark.parametrize(
    "text",
    [
        "I <3 you",  # a heart, no tag
        "if a < b and c > d",
        "&notice the ampersand",  # html.unescape alone would read "&not" as "¬"
        "Tom & Jerry; R&D",
        "In & Out & In, Again.",
    ],
)
def test_text_that_only_looks_like_html_is_kept(text):
    assert clean_text(text) == text


def test_masks_are_off_by_default_and_replace_urls_emails_and_numbers():
    text = "Mail bob.smith+x@example.co.uk or see https://example.com/a?b=1 and www.bank.com, call 0800 123,45"
    assert clean_text(text) == text
    assert clean_text(text, ALL_ON) == "Mail [EMAIL] or see [URL] and [URL] call [NUMBER] [NUMBER]"


@pytest.mark.parametrize(
    "switch, raw, kept",
    [
        ("repair_cp1252", "It\u0092s", "Its"),  # not repaired: the control character is removed instead
        ("html", "<b>bold</b> &amp;", "<b>bold</b> &amp;"),
        ("nfkc", "Ｈｉ…", "Ｈｉ…"),
        ("remove_invisible", "a\u200bb", "a\u200bb"),
        ("collapse_whitespace", " a \n b ", " a \n b "),
    ],
)
def test_each_step_can_be_switched_off(switch, raw, kept):
    assert clean_text(raw, CleanConfig(**{switch: False})) == kept


def test_everything_off_leaves_text_as_it_is():
    assert clean_text(" <b>Ｈｉ</b>\u0092\u200b ", NOTHING) == " <b>Ｈｉ</b>\u0092\u200b "


def test_nested_entities_and_pieces_joined_by_cleaning_reach_a_fixed_point():
    assert clean_text("&amp;lt;b&amp;gt;bold") == "bold"
    assert clean_text("&am\u200bp;") == "&"
    assert clean_text("＜b＞x") == "x"  # full-width brackets become a tag under NFKC


# Text from anywhere in Unicode, surrogates and controls included, mixed with
# the characters that cleaning steps react to, so that steps meet each other.
TRICKY = "<>&;#x/ab1 \t\n\r\u0092\u0085\u200b\ufeff＜＞＆\u00a0\u0301é@.:"
any_text = st.text(st.characters(exclude_categories=[]) | st.sampled_from(TRICKY), max_size=60)


@settings(max_examples=400, deadline=None)
@given(any_text, st.sampled_from([CleanConfig(), ALL_ON, CleanConfig(nfkc=False), CleanConfig(html=False)]))
def test_cleaning_is_idempotent(text, config):
    once = clean_text(text, config)
    assert clean_text(once, config) == once


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_default_cleaning_leaves_no_control_or_invisible_characters(text):
    cleaned = clean_text(text)
    assert not [ch for ch in cleaned if unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"}]
    assert cleaned == cleaned.strip() and "  " not in cleaned
