"""Property: whatever way a worker types a phone number into a free-text answer (any grouping,
any separator, digits of any script, letters for digits, with or without the country code),
the scrubber leaves none of its digits, and it keeps the words around it."""

from __future__ import annotations

import unicodedata

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.identity import MIN_REAL_DIGITS, REDACTED, scrub

SEPARATORS = [
    " ", "  ", "-", " - ", ".", ",", "/", "_", "#", "*", "~", "|", ":", "'", ";", "x",
    "\u2013", "\u2014", "\u2212", "(", ")", ") ",
]  # fmt: skip
PREFIXES = ["", "+", "00", "0", "+880", "+254", "+91", "+60", "+44", "(+880) ", "+254 "]
SCRIPTS = {  # digit zero of each script (Python's \d, and so the scrubber, knows them all)
    "latin": "0",
    "bangla": "\u09e6",
    "devanagari": "\u0966",
    "tamil": "\u0be6",
    "arabic-indic": "\u0660",
    "fullwidth": "\uff10",
}
SWAPS = {"0": "oO", "1": "Il"}
WORDS = ["call", "me", "on", "boss", "said", "ring", "nambari", "yangu", "ni", "please", "now"]


@st.composite
def typed_numbers(draw) -> tuple[str, str]:
    """(the number as typed, its digits in ASCII)."""
    digits = draw(st.text("0123456789", min_size=7, max_size=12))
    groups, rest = [], digits
    while rest:
        size = draw(st.integers(1, 4))
        groups.append(rest[:size])
        rest = rest[size:]
    script = draw(st.sampled_from(sorted(SCRIPTS)))
    zero = ord(SCRIPTS[script])

    # Letters for digits, but never so many that fewer than MIN_REAL_DIGITS real digits are
    # left: the scrubber's promise stops there (below it "lool" or "Ollo" would be a number).
    swappable = [i for i, d in enumerate(digits) if d in SWAPS] if script == "latin" else []
    most = max(0, len(digits) - MIN_REAL_DIGITS)
    swapped: set[int] = set()
    if swappable:
        swapped = set(draw(st.lists(st.sampled_from(swappable), max_size=most, unique=True)))
    spelt = [draw(st.sampled_from(SWAPS[d])) if i in swapped else d for i, d in enumerate(digits)]

    def write(start: int, group: str) -> str:
        if script != "latin":
            return "".join(chr(zero + int(d)) for d in group)
        return "".join(spelt[start : start + len(group)])

    starts = [sum(map(len, groups[:i])) for i in range(len(groups))]
    written = [write(start, g) for start, g in zip(starts, groups, strict=True)]
    text = written[0]
    for group in written[1:]:
        text += draw(st.sampled_from(SEPARATORS)) + group
    return draw(st.sampled_from(PREFIXES)) + text, digits


def ascii_digits(text: str) -> str:
    return "".join(
        str(unicodedata.digit(c)) for c in text if unicodedata.digit(c, None) is not None
    )


@settings(max_examples=2000, deadline=None)
@given(
    typed_numbers(),
    st.lists(st.sampled_from(WORDS), max_size=3),
    st.lists(st.sampled_from(WORDS), max_size=3),
)
# Found by this property: groups of letters alone before or after the digits, or of four.
@example(("o o 2 2 222", "0022222"), [], [])
@example(("222 2 2 o o", "2222200"), ["call"], ["now"])
@example(("0 0 2 2222 oooo", "00222220000"), [], [])
def test_no_typed_number_survives_the_scrubber(number, before, after):
    typed, digits = number
    text = " ".join([*before, typed, *after])
    scrubbed = scrub(text, "BD")
    assert REDACTED in scrubbed, (text, scrubbed)
    left = ascii_digits(scrubbed)
    assert len(left) < 3, (text, scrubbed)  # at most a stray group, never a usable part
    # and no letters typed for digits either, once the words and the mark are taken away
    residue = " ".join(w for w in scrubbed.replace(REDACTED, " ").split() if w not in WORDS)
    assert len(ascii_digits(residue.translate(str.maketrans("oOIl", "0011")))) < 3, scrubbed
    assert digits[-4:] not in ascii_digits(residue)
    for word in [*before, *after]:
        assert word in scrubbed, (text, scrubbed)
