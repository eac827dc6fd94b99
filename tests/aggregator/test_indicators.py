"""aggregator.indicators: windows, latest answer per respondent, means, k-suppression. Exact
figures from answers written straight into the table, with the clock frozen at NOW (15:00 on
25 November 2026 in Dhaka)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from aggregator.indicators import figure, indicators, window
from gateway.engine.definition import FlowSet, parse_flow
from store.models import Workplace

from ..api.helpers import NOW, add_answer, add_answers, by_id, dhaka, indicator_ids
from ..support import add_workplace

K = 5


def figures(
    services,
    cutoff: str = "day",
    days: int = 7,
    slug: str = "dhaka-knit",
    now: datetime = NOW,
    k: int = K,
) -> dict:
    flows, _texts = services.registry.current()
    with services.db.session() as session:
        place = session.scalar(select(Workplace).where(Workplace.slug == slug))
        return indicators(session, place, flows, window(cutoff, days, now, place.timezone), k)


# -- windows ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cutoff", "days", "zone", "start", "end"),
    [
        ("day", 7, "Asia/Dhaka", "2026-11-18T00:00:00+06:00", "2026-11-25T00:00:00+06:00"),
        ("day", 30, "Asia/Dhaka", "2026-10-26T00:00:00+06:00", "2026-11-25T00:00:00+06:00"),
        ("day", 7, "UTC", "2026-11-18T00:00:00+00:00", "2026-11-25T00:00:00+00:00"),
        ("now", 7, "Asia/Dhaka", "2026-11-18T15:00:00+06:00", "2026-11-25T15:00:00+06:00"),
        ("now", 90, "UTC", "2026-08-27T09:00:00+00:00", "2026-11-25T09:00:00+00:00"),
        # New York left daylight saving on 1 November: the window still runs midnight to midnight.
        ("day", 7, "America/New_York", "2026-10-29T00:00:00-04:00", "2026-11-05T00:00:00-05:00"),
    ],
)
def test_window_bounds(cutoff, days, zone, start, end):
    now = datetime(2026, 11, 5, 9, 0, tzinfo=UTC) if zone == "America/New_York" else NOW
    assert window(cutoff, days, now, zone).as_dict() == {"from": start, "to": end, "days": days}


def test_day_cutoff_is_the_start_of_today_in_the_workplace_zone():
    # 20:00 UTC on the 24th is already 02:00 on the 25th in Dhaka.
    late = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)
    assert window("day", 7, late, "Asia/Dhaka").end == datetime(
        2026, 11, 25, tzinfo=ZoneInfo("Asia/Dhaka")
    )
    assert window("day", 7, late, "UTC").end == datetime(2026, 11, 24, tzinfo=UTC)


# -- shares over each respondent's latest answer ------------------------------------------------
LONG_HOURS = {
    "a": [("yes", dhaka(12)), ("no", dhaka(20))],  # older answer outside the 7-day window
    "b": [("no", dhaka(19)), ("yes", dhaka(23))],  # changed their answer inside the window
    "c": [("yes", dhaka(22))],
    "d": [("yes", dhaka(21))],
    "e": [("no", dhaka(20))],
    "f": [("no", dhaka(24, 23, 30))],  # just before the day cutoff
    "g": [("yes", dhaka(10))],  # only in the 30-day window
    "h": [("yes", dhaka(25, 10))],  # today: only with cutoff "now"
    "i": [("yes", dhaka(24, 20)), ("no", dhaka(25, 9))],  # today's answer only with "now"
}


@pytest.mark.parametrize(
    ("cutoff", "days", "value", "respondents"),
    [
        ("day", 7, 0.5714, 7),  # a no, b yes, c yes, d yes, e no, f no, i yes: 4/7
        ("day", 30, 0.625, 8),  # and g yes: 5/8
        ("now", 7, 0.5, 8),  # a no, b yes, c yes, d yes, e no, f no, h yes, i no: 4/8
    ],
)
def test_share_counts_each_respondents_latest_answer_in_the_window(
    services, cutoff, days, value, respondents
):
    add_workplace(services)
    add_answers(services, "long_hours", LONG_HOURS)
    body = figures(services, cutoff, days)
    assert by_id(body)["checkin.long_hours"] == {
        "id": "checkin.long_hours",
        "label": "Workers reporting days over 10 hours",
        "value": value,
        "respondents": respondents,
        "suppressed": False,
    }
    assert body["respondents"] == respondents


def test_an_answer_on_the_window_edges(services):
    # [from, to): an answer exactly at the start counts, one exactly at the cutoff does not.
    add_workplace(services)
    edge = {f"r{n}": [("yes", dhaka(18, 0))] for n in range(5)}
    edge["late"] = [("no", dhaka(25, 0))]
    edge["early"] = [("no", dhaka(17, 23, 59))]
    add_answers(services, "overtime_forced", edge)
    item = by_id(figures(services))["checkin.overtime_forced"]
    assert (item["value"], item["respondents"]) == (1.0, 5)


def test_mean_of_latest_numbers(services):
    add_workplace(services)
    add_answers(
        services,
        "pay_fairness",
        {
            "m1": [(1, dhaka(19)), (5, dhaka(23))],
            "m2": [(2, dhaka(20))],
            "m3": [(4, dhaka(21))],
            "m4": [(4, dhaka(22))],
            "m5": [(5, dhaka(24))],
            "m6": [(1, dhaka(1))],  # outside 7 days, inside 30
        },
    )
    assert by_id(figures(services, days=7))["checkin.pay_fairness"] == {
        "id": "checkin.pay_fairness",
        "label": "Pay fairness (mean, 1-5)",
        "value": 4.0,
        "respondents": 5,
        "suppressed": False,
    }
    thirty = by_id(figures(services, days=30))["checkin.pay_fairness"]
    assert (thirty["value"], thirty["respondents"]) == (3.5, 6)


def test_a_mean_counts_only_respondents_with_a_number(services):
    # Five latest answers, but one is not a number (say, the question's type changed between
    # versions): the mean is drawn from four people, so it must be suppressed at k = 5.
    add_workplace(services)
    add_answers(services, "pay_fairness", {f"m{n}": [(3, dhaka(20))] for n in range(4)})
    add_answer(services, "odd", "pay_fairness", "3", dhaka(20))
    assert by_id(figures(services))["checkin.pay_fairness"] == {
        "id": "checkin.pay_fairness",
        "label": "Pay fairness (mean, 1-5)",
        "value": None,
        "respondents": None,
        "suppressed": True,
    }


def test_other_workplaces_and_flows_do_not_count(services):
    add_workplace(services)
    add_workplace(services, slug="other-mill", code="9999")
    add_answers(services, "respect", {f"w{n}": [("yes", dhaka(20))] for n in range(5)})
    add_answers(
        services,
        "respect",
        {f"x{n}": [("no", dhaka(20))] for n in range(5)},
        workplace="other-mill",
    )
    add_answers(
        services, "respect", {f"y{n}": [("no", dhaka(20))] for n in range(5)}, flow="retired"
    )
    item = by_id(figures(services))["checkin.respect"]
    assert (item["value"], item["respondents"]) == (1.0, 5)


# -- k-suppression -------------------------------------------------------------------------------
def test_four_respondents_are_suppressed_everywhere(services):
    add_workplace(services)
    add_answers(services, "paid_on_time", {f"p{n}": [("yes", dhaka(20))] for n in range(4)})
    body = figures(services)
    assert by_id(body)["checkin.paid_on_time"] == {
        "id": "checkin.paid_on_time",
        "label": "Workers paid in full and on time",
        "value": None,
        "respondents": None,
        "suppressed": True,
    }
    assert body["respondents"] is None


def test_exactly_five_respondents_are_shown(services):
    add_workplace(services)
    answers = {f"p{n}": [("yes", dhaka(20))] for n in range(4)}
    answers["p4"] = [("late", dhaka(21))]
    add_answers(services, "paid_on_time", answers)
    body = figures(services)
    assert by_id(body)["checkin.paid_on_time"] == {
        "id": "checkin.paid_on_time",
        "label": "Workers paid in full and on time",
        "value": 0.8,
        "respondents": 5,
        "suppressed": False,
    }
    assert body["respondents"] == 5


def test_a_figure_is_suppressed_even_when_the_workplace_total_is_shown(services):
    add_workplace(services)
    add_answers(services, "deductions", {f"d{n}": [("no", dhaka(20))] for n in range(3)})
    add_answers(services, "free_to_leave", {f"d{n}": [("yes", dhaka(20))] for n in range(3, 6)})
    body = figures(services)
    assert body["respondents"] == 6
    assert by_id(body)["checkin.deductions"]["suppressed"] is True
    assert by_id(body)["checkin.free_to_leave"]["value"] is None


def test_no_answers_publish_every_indicator_suppressed(services):
    add_workplace(services)
    body = figures(services)
    assert [item["id"] for item in body["indicators"]] == indicator_ids(services)
    assert all(
        item["suppressed"] and item["value"] is None and item["respondents"] is None
        for item in body["indicators"]
    )
    assert body["respondents"] is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], (None, None, True)),
        (["yes"] * 4, (None, None, True)),
        (["yes", "no", "no", "yes", "no"], (0.4, 5, False)),
        (["no"] * 6, (0.0, 6, False)),
    ],
)
def test_figure_share(values, expected):
    rows = [_Row(value_text=v) for v in values]
    result = figure("share", ("yes",), rows, K)
    assert (result["value"], result["respondents"], result["suppressed"]) == expected


class _Row:
    def __init__(self, value_text=None, value_number=None):
        self.value_text = value_text
        self.value_number = value_number


# -- follow-ups agree with their parents ---------------------------------------------------------
def follow_up_figures(services, days: int = 7) -> dict:
    return by_id(figures(services, days=days))["checkin.long_hours_days"]


def test_a_follow_up_counts_only_those_whose_latest_parent_answer_still_allows_it(services):
    # long_hours_days is asked only_if {long_hours: yes}: who later says "no" no longer counts.
    add_workplace(services)
    answers = {f"y{n}": [("yes", dhaka(20))] for n in range(5)}
    answers["changed"] = [("yes", dhaka(19)), ("no", dhaka(22))]
    answers["old"] = [("yes", dhaka(10))]  # outside the 7-day window, inside 30 days
    add_answers(services, "long_hours", answers)
    days = {f"y{n}": [(2, dhaka(20))] for n in range(5)}
    days["changed"] = [(7, dhaka(19))]
    days["old"] = [(7, dhaka(19))]
    days["elsewhere"] = [(7, dhaka(19))]  # its "yes" is in another flow
    add_answers(services, "long_hours_days", days)
    add_answer(services, "elsewhere", "long_hours", "yes", dhaka(19), flow="retired")
    assert follow_up_figures(services) == {
        "id": "checkin.long_hours_days",
        "label": "Days over 10 hours among those reporting them (mean)",
        "value": 2.0,
        "respondents": 5,
        "suppressed": False,
    }
    # Over 30 days the older "yes" is in the window: that respondent counts again.
    thirty = follow_up_figures(services, days=30)
    assert (thirty["value"], thirty["respondents"]) == (2.8333, 6)
    # The parent's own figure is unchanged: y0-y4 yes, changed no (old is outside 7 days).
    parent = by_id(figures(services))["checkin.long_hours"]
    assert (parent["value"], parent["respondents"]) == (0.8333, 6)


def test_k_applies_to_the_respondents_left_after_the_parent_check(services):
    add_workplace(services)
    add_answers(services, "long_hours", {f"y{n}": [("yes", dhaka(20))] for n in range(5)})
    add_answers(services, "long_hours_days", {f"y{n}": [(3, dhaka(20))] for n in range(5)})
    assert follow_up_figures(services)["respondents"] == 5
    add_answer(services, "y4", "long_hours", "no", dhaka(23))
    assert follow_up_figures(services) == {
        "id": "checkin.long_hours_days",
        "label": "Days over 10 hours among those reporting them (mean)",
        "value": None,
        "respondents": None,
        "suppressed": True,
    }


FAMILY = """\
title: Family
version: 1
questions:
  - id: children
    ask: How many children do you have?
    type: number
    min: 0
    max: 10
  - id: school
    ask: Do they go to school?
    options: {yes: "Yes", no: "No"}
    only_if: {children: [1, 2.0, 3]}
    indicator: {label: Children at school, positive: [yes]}
  - id: fees
    ask: School fees a month?
    type: number
    min: 0
    max: 10000
    only_if: {school: yes}
    indicator: {label: School fees (mean), measure: mean}
"""


def family_figures(services) -> dict:
    flow, found = parse_flow("family.yaml", FAMILY)
    assert flow is not None, found
    with services.db.session() as session:
        place = session.scalar(select(Workplace).where(Workplace.slug == "dhaka-knit"))
        body = indicators(
            session,
            place,
            FlowSet(flows={"family": flow}),
            window("day", 7, NOW, place.timezone),
            K,
        )
    return by_id(body)


def test_a_number_parent_is_compared_as_a_number_and_chains_must_hold_throughout(services):
    add_workplace(services)
    given = {
        # respondent: (children, school, fees), every answer on the 20th
        "c1": (1, "yes", 100),
        "c2": (2, "yes", 200),  # stored as 2.0, matches the condition's 2.0 (kept as "2")
        "c3": (3, "no", None),
        "c4": (2, "yes", 300),
        "c5": (1, "no", None),
        "c9": (2, "yes", 400),
        "cz": (1, "yes", 500),
        "c6": (2, "yes", 900),  # later 0 children: school and (through it) fees no longer count
        "c7": (2, "yes", 800),  # later 5 children: not a value school is asked for
        "c8": (3, "yes", 700),  # later "no" to school: the fees no longer count
    }
    for who, (children, school, fees) in given.items():
        add_answer(services, who, "children", children, dhaka(20), flow="family")
        add_answer(services, who, "school", school, dhaka(20), flow="family")
        if fees is not None:
            add_answer(services, who, "fees", fees, dhaka(20), flow="family")
    add_answer(services, "c6", "children", 0, dhaka(22), flow="family")
    add_answer(services, "c7", "children", 5, dhaka(22), flow="family")
    add_answer(services, "c8", "school", "no", dhaka(22), flow="family")
    items = family_figures(services)
    # school: c1 c2 c4 c9 cz yes, c3 c5 c8 no.
    assert (items["family.school"]["value"], items["family.school"]["respondents"]) == (0.625, 8)
    # fees: c1 c2 c4 c9 cz (c6 fails through children, c8 through school).
    assert (items["family.fees"]["value"], items["family.fees"]["respondents"]) == (300.0, 5)


def test_a_follow_up_without_any_parent_answer_in_the_window_is_not_counted(services):
    add_workplace(services)
    add_answers(
        services,
        "fees",
        {f"f{n}": [(100, dhaka(20))] for n in range(6)},
        flow="family",
    )
    assert family_figures(services)["family.fees"]["suppressed"] is True
