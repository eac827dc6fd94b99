"""Reading what a worker typed: digits in any script, numbers, options by number or text."""

from __future__ import annotations

import pytest

from gateway.engine.parsing import as_number_text, ascii_digits, clean, parse_number, pick_option

YES_NO = [("হ্যাঁ", "Yes", "yes"), ("না", "No", "no")]  # (translated, source text, value)


@pytest.mark.parametrize(
    ("typed", "digits"),
    [
        ("3", "3"),
        ("৩", "3"),  # Bengali
        ("३", "3"),  # Devanagari
        ("௩", "3"),  # Tamil
        ("٣", "3"),  # Arabic-Indic
        ("３", "3"),  # full width
        ("৪৩২১", "4321"),
        ("४३२१", "4321"),
        ("௪௩௨௧", "4321"),
        ("1২३௪", "1234"),  # mixed scripts still read digit by digit
        (" 07 ", "07"),
    ],
)
def test_ascii_digits_in_any_script(typed: str, digits: str) -> None:
    assert ascii_digits(typed) == digits


@pytest.mark.parametrize("typed", ["", "  ", "3a", "৩.৫", "1 2", "²", "-1", "three"])
def test_ascii_digits_refuses_anything_else(typed: str) -> None:
    assert ascii_digits(typed) is None


@pytest.mark.parametrize(
    ("typed", "number"),
    [
        ("7", 7),
        (" 7 ", 7),
        ("০", 0),
        ("৩", 3),
        ("३", 3),
        ("௩", 3),
        ("12", 12),
        ("2.5", 2.5),
        ("2,5", 2.5),  # a comma works as the decimal mark too
        ("৩.৫", 3.5),
        ("३,५", 3.5),
        ("௧௦.௨௫", 10.25),
        (".5", 0.5),
        ("5.", 5),
        ("-2", -2),
        ("-0.5", -0.5),
    ],
)
def test_parse_number(typed: str, number: float) -> None:
    assert parse_number(typed) == number


@pytest.mark.parametrize(
    "typed", ["", " ", "-", ".", "-.", "abc", "1.2.3", "--5", "3 days", "৩ দিন", "1e3", "½"]
)
def test_parse_number_refuses_what_is_not_a_number(typed: str) -> None:
    assert parse_number(typed) is None


def test_as_number_text_keeps_whole_numbers_whole() -> None:
    assert as_number_text(3.0) == 3 and isinstance(as_number_text(3.0), int)
    assert as_number_text(2.5) == 2.5
    assert as_number_text(-1.0) == -1 and isinstance(as_number_text(-1.0), int)


@pytest.mark.parametrize(
    ("typed", "index"),
    [
        ("1", 0),
        ("2", 1),
        ("১", 0),
        ("২", 1),
        ("१", 0),
        ("२", 1),
        ("௧", 0),
        ("௨", 1),
        (" 2 ", 1),
        ("2.", 1),
        ("(1)", 0),
        ("02", 1),
        ("হ্যাঁ", 0),
        ("না", 1),
        ("yes", 0),
        ("YES", 0),
        ("No!", 1),
        ("  nO ", 1),
        ("হ্যাঁ।", 0),
        ("না!", 1),
    ],
)
def test_pick_option_by_number_or_name(typed: str, index: int) -> None:
    assert pick_option(typed, YES_NO) == index


@pytest.mark.parametrize("typed", ["", "0", "3", "৩", "99", "1-2", "maybe", "1 2", "yes no", "?"])
def test_pick_option_refuses_what_names_no_option(typed: str) -> None:
    assert pick_option(typed, YES_NO) is None


def test_pick_option_by_text_in_the_workers_language_ignores_case() -> None:
    options = [("Ndiyo", "Yes", "yes"), ("Hapana", "No", "no"), ("Sina uhakika", "Not sure", "u")]
    assert pick_option("NDIYO", options) == 0
    assert pick_option("hapana.", options) == 1
    assert pick_option("sina   UHAKIKA", options) == 2
    assert pick_option("not sure", options) == 2


def test_pick_option_matches_bengali_however_it_is_encoded() -> None:
    composed, decomposed = "নিশ্চ\u09df", "নিশ্চ\u09af\u09bc"  # য় as one code point or two
    assert pick_option(decomposed, [("না", "No"), (composed, "Sure")]) == 1


def test_pick_option_digits_mean_a_position_even_if_a_name_is_a_digit() -> None:
    assert pick_option("2", [("5", "five"), ("2", "two")]) == 1
    assert pick_option("5", [("5", "five"), ("2", "two")]) is None


@pytest.mark.parametrize(
    ("typed", "cleaned"),
    [
        ("  Yes!  ", "yes"),
        ("NOT   SURE", "not sure"),
        ("not\tsure\n", "not sure"),
        ("(1)", "1"),
        ('"stop."', "stop"),
        ("Straße", "strasse"),
        ("হ্যাঁ।", "হ্যাঁ"),  # the Bengali full stop (danda) is punctuation like "."
        ("हां।", "हां"),
        ("¡Sí!", "sí"),
        ("( ( 1 ) )", "1"),
        ("- 1", "1"),
        ("", ""),
    ],
)
def test_clean(typed: str, cleaned: str) -> None:
    assert clean(typed) == cleaned


def test_clean_normalises_to_nfc() -> None:
    assert clean("\u0995\u09c7\u09be") == clean("\u0995\u09cb") == "\u0995\u09cb"
