"""The daily rotation (``sample:``): deterministic per (day, seed), complete over
ceil(groups / sample) days, follow-ups kept with their parent, workers spread by their seed."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import pytest

from gateway.engine.definition import load_flows
from gateway.engine.model import CHOICE, NUMBER, Flow, Option, Question
from gateway.engine.sampling import groups, todays_plan

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2024, 3, 4)
YES_NO = (Option("yes", "Yes"), Option("no", "No"))


def choice(qid: str, **only_if: str) -> Question:
    return Question(qid, CHOICE, f"{qid}?", YES_NO, only_if={k: (v,) for k, v in only_if.items()})


def flow(questions: Sequence[Question], sample: int | None) -> Flow:
    return Flow(id="f", title="F", version="1", questions=tuple(questions), sample=sample)


def plain(count: int, sample: int | None) -> Flow:
    return flow([choice(f"q{i}") for i in range(count)], sample)


CHECKIN = load_flows(ROOT / "flows")["checkin"]
SHAPES: list[tuple[int, Flow]] = [(CHECKIN.sample or 0, CHECKIN)] + [
    (sample, plain(count, sample)) for count, sample in [(7, 3), (5, 2), (10, 1), (6, 4), (4, 4)]
]


def asked_groups(f: Flow, day: date, seed: int) -> set[int]:
    plan = set(todays_plan(f, day, seed))
    return {i for i, unit in enumerate(groups(f)) if plan & set(unit)}


def test_the_real_checkin_groups_follow_ups_with_their_parent() -> None:
    assert groups(CHECKIN)[0] == ["long_hours", "long_hours_days"]
    assert len(groups(CHECKIN)) == 9 and CHECKIN.sample == 3


def test_same_day_and_seed_give_the_same_plan() -> None:
    for seed in (0, 1, 7, 123456789, -5):
        first = todays_plan(CHECKIN, DAY, seed)
        assert todays_plan(CHECKIN, DAY, seed) == first
        assert todays_plan(CHECKIN, date(2024, 3, 4), seed) == first


@pytest.mark.parametrize(
    ("sample", "f"), SHAPES, ids=[f"{len(groups(f))}-groups-sample-{s}" for s, f in SHAPES]
)
def test_every_group_is_asked_within_ceil_groups_over_sample_days(sample: int, f: Flow) -> None:
    count = len(groups(f))
    days = math.ceil(count / sample)
    for seed in range(count + 2):
        for offset in range(0, 40, 3):
            start = DAY + timedelta(days=offset)
            seen: set[int] = set()
            for n in range(days):
                today = asked_groups(f, start + timedelta(days=n), seed)
                assert len(today) == min(sample, count)
                seen |= today
            assert seen == set(range(count)), (seed, start)


def test_a_day_asks_exactly_sample_groups_in_file_order() -> None:
    order = [q.id for q in CHECKIN.questions]
    for n in range(30):
        plan = todays_plan(CHECKIN, DAY + timedelta(days=n), seed=3)
        assert plan == sorted(plan, key=order.index)
        assert len(asked_groups(CHECKIN, DAY + timedelta(days=n), 3)) == 3


def test_the_rotation_moves_on_by_sample_groups_a_day() -> None:
    f = plain(9, 3)
    assert todays_plan(f, DAY, 6) == ["q0", "q1", "q2"]  # (738949 * 3 + 6) % 9 == 0
    assert todays_plan(f, DAY + timedelta(days=1), 6) == ["q3", "q4", "q5"]
    assert todays_plan(f, DAY + timedelta(days=2), 6) == ["q6", "q7", "q8"]
    assert todays_plan(f, DAY + timedelta(days=3), 6) == ["q0", "q1", "q2"]
    # (738949 * 3 + 2) % 7 == 5: the window wraps round the circle, the plan stays in file order
    assert todays_plan(plain(7, 3), DAY, 2) == ["q0", "q5", "q6"]


def test_follow_ups_stay_with_their_parent() -> None:
    f = flow(
        [
            choice("a"),
            choice("a_more", a="yes"),
            choice("b"),
            choice("a_even_more", a_more="yes"),  # a follow-up of a follow-up
            choice("c"),
            choice("both", b="yes", c="yes"),  # two parents: kept with the first
            choice("d"),
        ],
        sample=1,
    )
    assert groups(f) == [["a", "a_more", "a_even_more"], ["b", "both"], ["c"], ["d"]]
    plans = {tuple(todays_plan(f, DAY + timedelta(days=n), 0)) for n in range(4)}
    assert plans == {("a", "a_more", "a_even_more"), ("b", "both"), ("c",), ("d",)}
    for n in range(60):
        plan = todays_plan(CHECKIN, DAY + timedelta(days=n), n)
        assert ("long_hours" in plan) == ("long_hours_days" in plan)
        if "long_hours" in plan:
            assert plan[plan.index("long_hours") + 1] == "long_hours_days"


def test_different_seeds_spread_workers_over_the_groups() -> None:
    count = len(groups(CHECKIN))
    plans = {tuple(todays_plan(CHECKIN, DAY, seed)) for seed in range(count)}
    assert len(plans) == count  # one seed per starting group: all different
    asked = Counter(g for seed in range(count) for g in asked_groups(CHECKIN, DAY, seed))
    assert asked == Counter({g: CHECKIN.sample for g in range(count)})  # evenly


def test_seeds_far_apart_spread_too() -> None:
    generator = random.Random(20240304)
    seeds = [generator.getrandbits(64) for _ in range(900)]
    asked = Counter(g for seed in seeds for g in asked_groups(CHECKIN, DAY, seed))
    assert set(asked) == set(range(9))
    assert min(asked.values()) > 0.5 * max(asked.values())


def test_without_sample_every_question_is_asked() -> None:
    f = flow([choice("a"), choice("a_more", a="yes"), Question("n", NUMBER, "n?")], sample=None)
    for n in range(5):
        assert todays_plan(f, DAY + timedelta(days=n), n) == ["a", "a_more", "n"]


def test_a_sample_as_large_as_the_groups_asks_everything() -> None:
    f = flow([choice("a"), choice("a_more", a="yes"), choice("b")], sample=2)
    assert todays_plan(f, DAY, 0) == ["a", "a_more", "b"]
    assert todays_plan(flow(f.questions, sample=5), DAY, 9) == ["a", "a_more", "b"]
