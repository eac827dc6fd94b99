"""Loading and validating flow files (SPEC §4): the real flows load, and every structural error
is reported as ``file:line: message`` at the line an administrator has to fix."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from gateway.engine.definition import (
    MAX_FLOW_ID,
    MAX_QUESTION_ID,
    MAX_VERSION,
    Finding,
    FlowError,
    check_set,
    content_version,
    load_flows,
    parse_flow,
    read_flows,
)
from gateway.engine.extract import extract_flow
from gateway.engine.model import CHOICE, INFO, NUMBER, TEXT, Question
from store.models import Answer

ROOT = Path(__file__).resolve().parents[2]

ENROL = """\
title: Enrolment
questions:
  - id: language
    type: language
    ask: Choose your language.
  - id: consent
    type: consent
    ask: Do you agree?
    options: {agree: I agree, decline: I do not agree}
  - id: workplace
    type: workplace
    ask: Your workplace code?
"""
DAILY = """\
title: Daily
default: true
questions:
  - id: safe
    ask: Do you feel safe?
    options: {yes: "Yes", no: "No"}
"""


def write(directory: Path, **files: str) -> Path:
    for name, text in files.items():
        (directory / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


def findings(tmp_path: Path, **files: str | None) -> list[str]:
    """Every finding of a directory holding ``files`` (plus a good enrol and default flow unless
    given), as ``name.yaml:line: message`` lines."""
    files = {"enrol": ENROL, "daily": DAILY, **files}
    write(tmp_path, **{name: text for name, text in files.items() if text is not None})
    with pytest.raises(FlowError) as raised:
        load_flows(tmp_path)
    assert str(raised.value) == "\n".join(str(f) for f in raised.value.findings)
    return [str(f).replace(f"{tmp_path}/", "") for f in raised.value.findings]


def one_file(tmp_path: Path, text: str, name: str = "flow") -> list[str]:
    """The findings of one file on its own (parse_flow, as `flows lint` runs it)."""
    path = tmp_path / f"{name}.yaml"
    flow, found = parse_flow(str(path), textwrap.dedent(text))
    assert (flow is None) == bool(found)
    return [str(f).replace(f"{tmp_path}/", "") for f in found]


# -- the real flows ------------------------------------------------------------------------
def test_the_real_flows_load() -> None:
    flows = load_flows(ROOT / "flows")
    assert set(flows.flows) == {"enrol", "checkin"}
    assert flows.default.id == "checkin" and flows.enrol.id == "enrol"
    checkin = flows["checkin"]
    assert checkin.version == "1" and checkin.keywords == ("CHECK",) and checkin.sample == 3
    assert checkin.finish == "Thank you. Your answers are anonymous."
    long_hours = checkin.question("long_hours")
    assert long_hours.type == CHOICE
    assert [(o.value, o.text) for o in long_hours.options] == [("yes", "Yes"), ("no", "No")]
    assert long_hours.indicator is not None and long_hours.indicator.positive == ("yes",)
    days = checkin.question("long_hours_days")
    assert (days.type, days.min, days.max) == (NUMBER, 1, 7)
    assert dict(days.only_if) == {"long_hours": ("yes",)}
    pay = checkin.question("pay_fairness").indicator
    assert pay is not None and (pay.measure, pay.positive) == ("mean", ())
    assert [q.type for q in flows.enrol.questions] == ["language", "consent", "workplace"]


def test_the_real_flows_have_no_findings() -> None:
    loaded = []
    for path in sorted((ROOT / "flows").glob("*.yaml")):
        flow, found = parse_flow(str(path), path.read_text(encoding="utf-8"))
        assert found == [] and flow is not None
        loaded.append(flow)
    assert check_set(loaded) == []


def test_a_finding_prints_as_file_line_message() -> None:
    assert str(Finding("flows/a.yaml", 7, "min is above max")) == "flows/a.yaml:7: min is above max"


# -- YAML syntax ---------------------------------------------------------------------------
def test_yaml_syntax_error_at_its_line(tmp_path: Path) -> None:
    text = """\
    title: Broken
    questions:
      - id: a
        ask: A?
         options: {yes: "Yes"}
    """
    assert one_file(tmp_path, text) == [
        "flow.yaml:5: YAML syntax: mapping values are not allowed here"
    ]


def test_an_unclosed_quote_is_reported_where_it_opens(tmp_path: Path) -> None:
    text = """\
    title: Broken
    questions:
      - id: a
        ask: "Did you work late?
      - id: b
        ask: B?
    """
    assert one_file(tmp_path, text) == [
        "flow.yaml:4: YAML syntax: found unexpected end of stream "
        "(while scanning a quoted scalar here)"
    ]


def test_a_duplicate_key_is_a_syntax_error_at_the_second(tmp_path: Path) -> None:
    text = """\
    title: Twice
    questions:
      - id: a
        ask: A?
        type: text
        ask: Again?
    """
    [found] = one_file(tmp_path, text)
    assert found.startswith('flow.yaml:6: YAML syntax: found duplicate key "ask"')


def test_a_syntax_error_in_a_set_names_the_file(tmp_path: Path) -> None:
    found = findings(tmp_path, other="title: [unclosed\nquestions: []\n")
    assert found == [
        "other.yaml:2: YAML syntax: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence from line 1)"
    ]


# -- unknown keys --------------------------------------------------------------------------
def test_unknown_keys_in_flow_question_and_indicator(tmp_path: Path) -> None:
    text = """\
    title: Unknown keys
    defualt: true
    questions:
      - id: a
        ask: A?
        options: {yes: "Yes", no: "No"}
        hint: something
        indicator:
          label: A
          positive: [yes]
          colour: red
    """
    assert one_file(tmp_path, text) == [
        "flow.yaml:2: unknown key 'defualt' in flow",
        "flow.yaml:7: unknown key 'hint' in question",
        "flow.yaml:11: unknown key 'colour' in indicator",
    ]


# -- questions -----------------------------------------------------------------------------
def test_a_duplicate_question_id_is_reported_at_the_second(tmp_path: Path) -> None:
    text = """\
    title: Duplicates
    questions:
      - id: a
        ask: A?
        type: text
      - id: b
        ask: B?
        type: text
      - ask: A again?
        type: text
        id: a
    """
    assert one_file(tmp_path, text) == ["flow.yaml:11: duplicate question id 'a'"]


def test_a_choice_without_options(tmp_path: Path) -> None:
    text = """\
    title: No options
    questions:
      - id: a
        ask: A?
      - id: b
        ask: B?
        type: choice
      - id: c
        ask: C?
        options: {}
    """
    assert one_file(tmp_path, text) == [
        "flow.yaml:3: question 'a': a choice needs 'options' (or give a 'type')",
        "flow.yaml:7: question 'b': a choice needs 'options'",
        "flow.yaml:10: 'options' must map values to texts",
    ]


def test_min_above_max(tmp_path: Path) -> None:
    text = """\
    title: Limits
    questions:
      - id: n
        ask: How many?
        type: number
        min: 5
        max: 1
    """
    assert one_file(tmp_path, text) == ["flow.yaml:6: question 'n': min is above max"]


def test_types_and_their_keys(tmp_path: Path) -> None:
    text = """\
    title: Types
    questions:
      - id: a
        ask: A?
        type: scale
      - id: b
        ask: B?
        type: text
        options: {x: X}
      - id: c
        ask: C?
        options: {yes: "Yes"}
        max: 3
      - id: d
        ask: D?
        type: number
        min: one
      - id: e
    """
    assert one_file(tmp_path, text) == [
        "flow.yaml:5: question 'a': unknown type 'scale'",
        "flow.yaml:9: question 'b': a text takes no options",
        "flow.yaml:13: question 'c': 'max' is for numbers only",
        "flow.yaml:17: 'min' must be a number",
        "flow.yaml:18: missing 'ask'",
    ]


# -- only_if -------------------------------------------------------------------------------
def test_only_if_naming_an_unknown_or_later_question(tmp_path: Path) -> None:
    text = """\
    title: Conditions
    questions:
      - id: a
        ask: A?
        only_if: {b: "yes"}
        type: text
      - id: b
        ask: B?
        options: {yes: "Yes", no: "No"}
      - id: c
        ask: C?
        type: text
        only_if:
          b: "yes"
          nope: x
    """
    assert one_file(tmp_path, text) == [
        "flow.yaml:5: question 'a': only_if names unknown or later question 'b'",
        "flow.yaml:15: question 'c': only_if names unknown or later question 'nope'",
    ]


def test_only_if_with_an_impossible_value(tmp_path: Path) -> None:
    text = """\
    title: Impossible
    questions:
      - id: b
        ask: B?
        options: {yes: "Yes", no: "No"}
      - id: n
        ask: How many?
        type: number
        min: 1
        max: 7
      - id: i
        ask: Some words.
        type: info
      - id: c
        ask: C?
        type: text
        only_if: {b: maybe}
      - id: d
        ask: D?
        type: text
        only_if:
          n: 9
      - id: e
        ask: E?
        type: text
        only_if:
          n: [2, many]
      - id: f
        ask: F?
        type: text
        only_if: {i: seen}
    """
    never = "can never be an answer to"
    assert one_file(tmp_path, text) == [
        f"flow.yaml:17: question 'c': only_if value 'maybe' {never} 'b' (not one of its options)",
        f"flow.yaml:22: question 'd': only_if value '9' {never} 'n' (not a number it accepts)",
        f"flow.yaml:27: question 'e': only_if value 'many' {never} 'n' (not a number it accepts)",
        f"flow.yaml:31: question 'f': only_if value 'seen' {never} 'i' "
        "(an info question takes no answer)",
    ]


def test_only_if_values_are_kept_as_the_runtime_stores_answers(tmp_path: Path) -> None:
    text = """\
    title: Conditions
    questions:
      - id: b
        ask: B?
        options: {yes: "Yes", no: "No", off: "Day off"}
      - id: n
        ask: How many?
        type: number
      - id: c
        ask: C?
        type: text
        only_if: {b: [yes, off], n: 3.0}
    """
    flow, found = parse_flow("flow.yaml", textwrap.dedent(text))
    assert found == [] and flow is not None
    assert dict(flow.question("c").only_if) == {"b": ("yes", "off"), "n": ("3",)}


# -- indicators ----------------------------------------------------------------------------
def test_share_indicator_needs_positive_option_values(tmp_path: Path) -> None:
    text = """\
    title: Shares
    questions:
      - id: a
        ask: A?
        options: {yes: "Yes", no: "No"}
        indicator:
          label: A
      - id: b
        ask: B?
        options: {yes: "Yes", no: "No"}
        indicator:
          label: B
          positive:
            - yes
            - maybe
    """
    assert one_file(tmp_path, text) == [
        "flow.yaml:6: question 'a': a share indicator needs 'positive'",
        "flow.yaml:15: question 'b': positive value 'maybe' is not an option",
    ]


def test_indicator_measure_must_fit_the_question(tmp_path: Path) -> None:
    text = """\
    title: Measures
    questions:
      - id: a
        ask: A?
        options: {yes: "Yes", no: "No"}
        indicator: {label: A, measure: mean}
      - id: n
        ask: N?
        type: number
        indicator:
          label: N
      - id: m
        ask: M?
        type: number
        indicator:
          label: M
          measure: median
    """
    assert one_file(tmp_path, text) == [
        "flow.yaml:6: question 'a': no 'mean' indicator for type 'choice' "
        "(choice: share with positive; number: mean)",
        "flow.yaml:10: question 'n': no 'share' indicator for type 'number' "
        "(choice: share with positive; number: mean)",
        "flow.yaml:17: question 'm': unknown measure 'median'",
    ]


# -- across files --------------------------------------------------------------------------
def test_more_than_one_default_flow_is_reported_at_the_second(tmp_path: Path) -> None:
    other = """\
    title: Other
    # also the default, by mistake
    default: true
    questions:
      - id: q
        ask: Q?
        type: text
    """
    assert findings(tmp_path, other=other) == [
        "other.yaml:3: more than one default flow ('daily' and 'other')"
    ]


def test_clashing_keywords_across_flows(tmp_path: Path) -> None:
    pay = """\
    title: Pay
    keywords: [PAY, WAGES]
    questions:
      - id: q
        ask: Q?
        type: text
    """
    survey = """\
    title: Survey
    keywords:
      - hours
      - pay
    questions:
      - id: q
        ask: Q?
        type: text
    """
    assert findings(tmp_path, pay=pay, survey=survey) == [
        "survey.yaml:4: keyword 'PAY' clashes with flow 'pay'"
    ]


def test_reserved_words_cannot_be_keywords(tmp_path: Path) -> None:
    text = """\
    title: Reserved
    keywords: [HOURS, stop, Help, LANG, unsubscribe, Delete]
    questions:
      - id: q
        ask: Q?
        type: text
    """
    assert one_file(tmp_path, text) == [
        "flow.yaml:2: keyword 'STOP' is reserved for the service",
        "flow.yaml:2: keyword 'HELP' is reserved for the service",
        "flow.yaml:2: keyword 'LANG' is reserved for the service",
        "flow.yaml:2: keyword 'UNSUBSCRIBE' is reserved for the service",
        "flow.yaml:2: keyword 'DELETE' is reserved for the service",
    ]


def test_enrolment_types_belong_in_enrol_yaml(tmp_path: Path) -> None:
    text = """\
    title: Misplaced
    questions:
      - id: lang
        ask: Language?
        type: language
      - id: ok
        ask: OK?
        type: consent
        options: {agree: Agree, decline: Decline}
      - id: place
        ask: Code?
        type: workplace
    """
    assert one_file(tmp_path, text) == [
        "flow.yaml:5: question 'lang': type 'language' belongs in enrol.yaml only",
        "flow.yaml:8: question 'ok': type 'consent' belongs in enrol.yaml only",
        "flow.yaml:12: question 'place': type 'workplace' belongs in enrol.yaml only",
    ]


def test_the_enrolment_flow_asks_all_three_and_is_never_started_otherwise(tmp_path: Path) -> None:
    enrol = """\
    title: Enrolment
    default: true
    keywords: [JOIN]
    questions:
      - id: language
        type: language
        ask: Choose your language.
      - id: consent
        type: consent
        ask: Do you agree?
        options: {agree: I agree, no: I do not agree}
    """
    assert findings(tmp_path, enrol=enrol, daily=None) == [
        "enrol.yaml:2: the enrolment flow cannot be the default flow",
        "enrol.yaml:3: the enrolment flow cannot have keywords",
        "enrol.yaml:4: enrolment needs a 'workplace' question",
        "enrol.yaml:11: question 'consent': consent options must be 'agree' and 'decline'",
    ]


def test_the_enrolment_flow_asks_each_special_question_exactly_once(tmp_path: Path) -> None:
    enrol = ENROL + textwrap.indent(
        textwrap.dedent(
            """\
            - id: language_again
              type: language
              ask: Choose again.
            - id: workplace_again
              type: workplace
              ask: Your code again?
            """
        ),
        "  ",
    )
    assert findings(tmp_path, enrol=enrol) == [
        "enrol.yaml:13: question 'language_again': enrolment asks one 'language' question "
        "('language' already is one)",
        "enrol.yaml:16: question 'workplace_again': enrolment asks one 'workplace' question "
        "('workplace' already is one)",
    ]


def test_a_missing_enrolment_or_default_flow(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert findings(tmp_path / "a", enrol=None) == ["enrol.yaml:1: the enrolment flow is missing"]
    (tmp_path / "b").mkdir()
    assert findings(tmp_path / "b", daily=None) == [
        f"{tmp_path / 'b'}:1: no flow is marked 'default: true'"
    ]


def test_a_file_that_is_not_utf8_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    write(tmp_path, enrol=ENROL, daily=DAILY)
    (tmp_path / "latin1.yaml").write_bytes("title: Café\n".encode("latin-1"))
    flows, found = read_flows(tmp_path)
    assert set(flows) == {"enrol", "daily"}
    assert [str(f) for f in found] == [f"{tmp_path / 'latin1.yaml'}:1: not UTF-8 text (byte 10)"]
    with pytest.raises(FlowError) as raised:  # so start-up stops with one line, no traceback
        load_flows(tmp_path)
    assert raised.value.findings == found


def test_read_flows_gives_what_load_flows_accepts(tmp_path: Path) -> None:
    flows, found = read_flows(ROOT / "flows")
    assert found == []
    assert load_flows(ROOT / "flows").flows == flows
    assert read_flows(tmp_path) == ({}, [Finding(str(tmp_path / "enrol.yaml"), 1, MISSING)])


MISSING = "the enrolment flow is missing"


# -- YAML 1.2 ------------------------------------------------------------------------------
def test_yaml_1_2_yes_no_on_off_stay_strings(tmp_path: Path) -> None:
    text = """\
    title: Shifts
    questions:
      - id: shift
        ask: Were you on shift?
        options:
          yes: "Yes"
          no: "No"
          on: On shift
          off: Off shift
          y: Y
          n: N
        indicator:
          label: On shift
          positive: [yes, on]
      - id: why
        ask: Why not?
        type: text
        only_if: {shift: [no, off]}
    """
    flow, found = parse_flow("flow.yaml", textwrap.dedent(text))
    assert found == [] and flow is not None
    shift = flow.question("shift")
    assert [o.value for o in shift.options] == ["yes", "no", "on", "off", "y", "n"]
    assert shift.indicator is not None and shift.indicator.positive == ("yes", "on")
    assert dict(flow.question("why").only_if) == {"shift": ("no", "off")}


def test_yaml_1_2_yes_is_not_a_boolean(tmp_path: Path) -> None:
    text = """\
    title: Default
    default: yes
    questions:
      - id: q
        ask: Q?
        type: text
    """
    assert one_file(tmp_path, text) == ["flow.yaml:2: 'default' must be true or false"]


# -- versions ------------------------------------------------------------------------------
def test_an_explicit_version_is_kept(tmp_path: Path) -> None:
    for given, kept in (("7", "7"), ('"2024.1"', "2024.1"), ("b3", "b3")):
        text = f"version: {given}\nquestions:\n  - {{id: q, ask: Q?, type: {TEXT}}}\n"
        flow, found = parse_flow("flow.yaml", text)
        assert found == [] and flow is not None and flow.version == kept


def test_without_a_version_the_content_hash_is_the_version() -> None:
    text = "questions:\n  - {id: q, ask: Q?, type: text}\n"
    flow, _ = parse_flow("flow.yaml", text)
    expected = "sha-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    assert flow is not None and flow.version == expected == content_version(text)
    edited, _ = parse_flow("flow.yaml", text.replace("Q?", "Q again?"))
    same, _ = parse_flow("other.yaml", text)
    assert edited is not None and edited.version != flow.version
    assert same is not None and same.version == flow.version


def test_info_questions_take_no_answer_and_no_indicator(tmp_path: Path) -> None:
    text = """\
    title: Info
    questions:
      - id: intro
        ask: Some words.
        type: info
        indicator: {label: Intro}
    """
    assert one_file(tmp_path, text) == [
        "flow.yaml:6: question 'intro': no 'share' indicator for type 'info' "
        "(choice: share with positive; number: mean)"
    ]
    text = textwrap.dedent(text).replace("    indicator: {label: Intro}\n", "")
    flow, found = parse_flow("flow.yaml", text)
    assert found == [] and flow is not None and flow.question("intro").type == INFO


# -- lengths the answers table can hold ----------------------------------------------------
def test_the_limits_are_the_answer_columns() -> None:
    columns = Answer.__table__.c
    assert MAX_FLOW_ID == columns.flow_id.type.length == 64
    assert MAX_QUESTION_ID == columns.question_id.type.length == 64
    assert MAX_VERSION == columns.flow_version.type.length == 32


def test_a_question_id_longer_than_its_column(tmp_path: Path) -> None:
    long_id, longest = "q" * 65, "q" * 64
    text = f"""\
    title: Long
    questions:
      - id: ok
        ask: Fine?
        options: {{yes: "Yes", no: "No"}}
      - ask: Long?
        type: number
        id: {long_id}
      - id: follow
        ask: Then?
        type: text
        only_if: {{{long_id}: 3}}
      - id: {longest}
        ask: Just fits?
        type: text
    """
    assert one_file(tmp_path, text) == [
        f"flow.yaml:8: question id '{long_id}' is longer than 64 characters"
    ]
    # The same in a set: start-up refuses it.
    assert findings(tmp_path, long=text) == [
        f"long.yaml:8: question id '{long_id}' is longer than 64 characters"
    ]


def test_a_flow_id_longer_than_its_column(tmp_path: Path) -> None:
    text = """\
    # a comment first
    title: Named at length
    questions:
      - id: q
        ask: Q?
        type: text
    """
    name = "f" * 65
    assert one_file(tmp_path, text, name=name) == [
        f"{name}.yaml:1: flow id '{name}' (the file name) is longer than 64 characters"
    ]
    assert one_file(tmp_path, text, name="f" * 64) == []
    assert findings(tmp_path, **{name: text}) == [
        f"{name}.yaml:1: flow id '{name}' (the file name) is longer than 64 characters"
    ]


@pytest.mark.parametrize(
    ("given", "found"),
    [
        ('"' + "v" * 32 + '"', []),
        ('"' + "v" * 33 + '"', ["flow.yaml:3: 'version' is longer than 32 characters"]),
        ("2026.11.25-" + "1" * 22, ["flow.yaml:3: 'version' is longer than 32 characters"]),
        ("1" * 33, ["flow.yaml:3: 'version' is longer than 32 characters"]),
    ],
)
def test_a_version_longer_than_its_column(tmp_path: Path, given: str, found: list[str]) -> None:
    text = f"""\
    title: Versioned
    default: false
    version: {given}
    questions:
      - id: q
        ask: Q?
        type: text
    """
    assert one_file(tmp_path, text) == found


# -- what the model answers ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("low", "high", "taken", "refused"),
    [
        (1, 7, [1, 3.5, 7], [0, 7.5, -1]),
        (None, 5, [-100, 0, 5], [5.01]),
        (0, None, [0, 10**6], [-0.5]),
        (None, None, [-3, 0, 10**6], []),
    ],
)
def test_a_number_question_accepts_numbers_within_its_limits(
    low: float | None, high: float | None, taken: list[float], refused: list[float]
) -> None:
    question = Question("n", NUMBER, "How many?", min=low, max=high)
    assert all(question.accepts(n) for n in taken)
    assert not any(question.accepts(n) for n in refused)


def test_msgids_are_what_pybabel_extracts_at_the_same_lines() -> None:
    """Lint's warnings about a msgid point where the catalogs' ``#:`` references point."""
    for path in sorted((ROOT / "flows").glob("*.yaml")):
        flow = load_flows(ROOT / "flows")[path.stem]
        with path.open("rb") as handle:
            extracted = [(msgid, line) for line, _, msgid, _ in extract_flow(handle, [], [], {})]
        assert flow.msgids() == extracted
