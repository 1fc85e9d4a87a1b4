"""SMS segments: how many parts a body is sent (and billed) as.

GSM-7 when every character is in the GSM 03.38 alphabet (the extension table's characters
take two septets, an escape and the character), otherwise UCS-2 (characters outside the
basic plane take two code units). One part holds 160 septets or 70 units; a multipart
message loses room to its header: 153 or 67 per part. A two-unit character never straddles
two parts, so parts are packed one character at a time.
"""

from __future__ import annotations

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
