"""SMS segments: how many parts a body is sent (and billed) as.

GSM-7 when every character is in the GSM 03.38 alphabet (the extension table's characters
take two septets, an escape and the character), otherwise UCS-2 (characters outside the
basic plane take two code units). One part holds 160 septets or 70 units; a multipart
message loses room to its header: 153 or 67 per part. A two-unit character never straddles
two parts, so parts are packed one character at a time.

`transliterate` is the opt-in look-alike step (Twilio's Smart Encoding, Infobip's
transliteration): smart quotes, dashes, Unicode spaces, fullwidth forms and accented Latin
letters become GSM-7 characters, so a body typed in a word processor goes out in 160-septet
parts instead of 70-unit ones.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Final

GSM_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED: Final = frozenset("^{}\\[~]|€\f")


def is_gsm7(body: str) -> bool:
    return all(ch in GSM_BASIC or ch in GSM_EXTENDED for ch in body)


def num_segments(body: str) -> int:
    if is_gsm7(body):
        units = [2 if ch in GSM_EXTENDED else 1 for ch in body]
        single, multi = 160, 153
    else:
        units = [2 if ord(ch) > 0xFFFF else 1 for ch in body]
        single, multi = 70, 67
    if sum(units) <= single:
        return 1
    parts, used = 1, 0
    for size in units:
        if used + size > multi:
            parts += 1
            used = 0
        used += size
    return parts


# Look-alikes with no Unicode decomposition to a GSM-7 character, grouped by what they become
# (after Twilio's Smart Encoding list). Keys are single characters.
_LOOKALIKES: Final[Mapping[str, str]] = {
    # Double quotes, guillemets, double primes.
    **dict.fromkeys("«»“”„‟″‶ʺˮ❝❞〝〞〟", '"'),
    # Single quotes, apostrophes, primes, spacing acute and grave accents.
    **dict.fromkeys("‘’‚‛′‵ʹʻʼʽˈˊˋ´`❛❜", "'"),
    # Hyphens, dashes (en, em, figure, bar) and the minus sign.
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043", "-"),
    **dict.fromkeys("\u2044\u2215÷", "/"),  # fraction slash, division slash, division sign
    "‹": "<",
    "›": ">",
    "ˆ": "^",
    "˜": "~",
    "∼": "~",
    "∗": "*",
    "\t": " ",
    "\u2028": "\n",  # line separator
    "\u2029": "\n",  # paragraph separator
    # Invisible: soft hyphen, zero-width space, word joiner, byte order mark.
    **dict.fromkeys("\u00ad\u200b\u2060\ufeff", ""),
    # Latin letters that do not decompose to a base letter.
    "œ": "oe",
    "Œ": "OE",
    "ł": "l",
    "Ł": "L",
    "đ": "d",
    "Đ": "D",
    "ð": "d",
    "Ð": "D",
    "þ": "th",
    "Þ": "Th",
    "ı": "i",
}

# Compatibility decompositions that keep a character's look: fullwidth and small forms,
# mathematical letters, ligatures and the ellipsis, no-break forms, vulgar fractions. Others
# change the meaning (superscripts: m² is not m2; circled digits), so they stay.
_LOOKALIKE_DECOMPOSITIONS: Final = frozenset(
    {"<wide>", "<small>", "<font>", "<compat>", "<noBreak>", "<fraction>"}
)


def _gsm_char(ch: str) -> bool:
    return ch in GSM_BASIC or ch in GSM_EXTENDED


def _lookalike(ch: str) -> str | None:
    """GSM-7 text that looks like one character, or None."""
    if _gsm_char(ch):
        return ch
    if ch in _LOOKALIKES:
        return _LOOKALIKES[ch]
    if unicodedata.category(ch) == "Zs":  # no-break, en, em, thin, hair, ideographic spaces
        return " "
    decomposition = unicodedata.decomposition(ch)
    if not decomposition:
        return None
    tag = decomposition.split()[0]
    if tag.startswith("<") and tag not in _LOOKALIKE_DECOMPOSITIONS:
        return None
    text = unicodedata.normalize("NFKD", ch)
    if " " in text:  # a spacing accent (¨, ¸) decomposes to a space and its mark
        return None
    # Accents go, the last first, until GSM-7 has the letter: È becomes E, ą becomes a, and
    # ǘ (pinyin) becomes ü rather than u.
    while True:
        parts = [
            c if _gsm_char(c) else _LOOKALIKES.get(c) for c in unicodedata.normalize("NFC", text)
        ]
        if all(p is not None for p in parts):
            return "".join(p for p in parts if p is not None) or None
        marks = [i for i, c in enumerate(text) if unicodedata.combining(c)]
        if not marks:
            return None
        text = text[: marks[-1]] + text[marks[-1] + 1 :]


def transliterate(body: str) -> str:
    """The body with look-alike GSM-7 characters for those outside GSM-7, or the body
    unchanged when any character has none (an emoji, CJK, Cyrillic): it goes as UCS-2 then,
    and its own smart quotes and accents are kept, as Twilio's Smart Encoding does."""
    if is_gsm7(body):
        return body
    out = []
    for ch in body:
        replaced = _lookalike(ch)
        if replaced is None:
            return body
        out.append(replaced)
    return "".join(out)
