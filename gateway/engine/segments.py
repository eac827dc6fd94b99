"""How much of an SMS a text takes (PROVIDERS.md §7): GSM-7 when every character allows it,
else UCS-2, where one SMS holds far less. Pure arithmetic on strings, for lint's warnings."""

from __future__ import annotations

from collections.abc import Iterable

# 3GPP TS 23.038 basic set (PROVIDERS.md §7.1), in code point order; ESC (0x1B) is left out.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table (§7.2): ESC plus a code, so each counts two.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
SMS_GSM7 = 160  # characters in one GSM-7 segment (§7.3)
SMS_UCS2 = 70  # UTF-16 code units in one UCS-2 segment


def gsm7_length(text: str) -> int | None:
    """Septets the text takes in GSM-7, or None when one character is outside GSM-7."""
    length = 0
    for ch in text:
        if ch in GSM7_BASIC:
            length += 1
        elif ch in GSM7_EXTENSION:
            length += 2
        else:
            return None
    return length


def sms_length(text: str) -> tuple[int, int]:
    """(length, what one segment holds): GSM-7 septets out of 160, or, when a single character
    is not GSM-7 and the whole message goes as UCS-2, UTF-16 code units out of 70 (an emoji
    outside the Basic Multilingual Plane counts two)."""
    septets = gsm7_length(text)
    if septets is not None:
        return septets, SMS_GSM7
    return len(text.encode("utf-16-le")) // 2, SMS_UCS2


def sms_prompt(text: str, options: Iterable[str]) -> str:
    """A question as an SMS shows it: the text, then the options numbered from 1, one a line
    (gateway/channels/sms.py renders with this, so lint measures what workers receive)."""
    return "\n".join([text, *(f"{n}. {option}" for n, option in enumerate(options, 1))])
