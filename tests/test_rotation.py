"""Pseudonym key rotation (issue 7, items 1-3; docs/PRIVACY.md): ``salts status | rotate`` and
the clock, a rotation and a destruction seen by every process, a returning worker moved to the
new pseudonym once with their profile (their daily rotation's seed, drawn at enrolment, and
nothing derived from the old pseudonym) and open session, and the figures counting each worker
once across a rotation, before and after the old key is destroyed."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from aggregator.indicators import Window, indicators, latest_answers
from gateway import identity
from gateway.directory_cache import KEYRING_KEY, CachedProfile
from gateway.identity import key_encrypter
from gateway.keys import KeyKeeper
from gateway.services import Services
from gateway.sessions import SESSION_KEY
from store import jobs, keyring
from store.models import Answer, Consent, MigratedPseudonym, PseudonymKey, Worker, Workplace

from .channels.test_at_ussd import UssdPhone
from .channels.test_at_voice import Phone as AtCall
from .channels.test_twilio_voice import Phone as TwilioCall
from .conftest import AT_TOKEN
from .hops import CHANNELS, add_callback_workplace, cached, logged_events, statements, walk, work
from .leaks import dump_redis
from .support import SmsWorker, add_workplace, at_sms_form, post_at_sms

PHONE = "+8801711283946"
OTHERS = ("+8801711283952", "+8801711283953", "+8801711283954")


@pytest.fixture
def quick(monkeypatch):
    """A rotation takes over in a moment, and every read of the ring sees the latest."""
    monkeypatch.setattr(keyring, "LEAD_SECONDS", 0.2)
    monkeypatch.setattr(identity, "KEY_CACHE_SECONDS", 0.0)


@pytest.fixture
def workplace(services) -> str:
    add_workplace(services)
    return "dhaka-knit"


@pytest.fixture
def cli(app):
    from gateway.cli import main

    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(main, list(args))


def no_grace(services: Services, monkeypatch) -> None:
    monkeypatch.setattr(services, "config", dataclasses.replace(services.config, salt_grace_days=0))


def rotate_and_take_over(services: Services) -> keyring.Rotated:
    rotated = KeyKeeper(services).rotate(services.now())
    assert rotated is not None
    time.sleep(max(0.0, rotated.activates_at.timestamp() - time.time()) + 0.01)
    return rotated


def keys(services: Services) -> dict[int, PseudonymKey]:
    with services.db.session() as session:
        return {key.id: key for key in keyring.every_key(session)}


def ring_in_redis(services: Services) -> list[tuple[int, str]]:
    return [(kid, status) for kid, status, *_ in json.loads(services.redis.get(KEYRING_KEY))]


# -- salts status | rotate, the clock ---------------------------------------------------------
def test_salts_status_shows_each_key_and_rotate_makes_its_successor(cli, services, quick):
    [first] = keys(services)
    result = cli("salts", "status")
    assert result.exit_code == 0, result.output
    assert "rotation every 90 day(s); a previous key survives 14 day(s)" in result.stdout
    assert re.search(rf"^\s+{first}  current\s+\d{{4}}-", result.stdout, re.M)
    assert "next rotation: " in result.stdout

    result = cli("salts", "rotate")
    assert result.exit_code == 0, result.output
    ring = keys(services)
    [new] = [kid for kid in ring if kid != first]
    assert f"key {new} made; it takes over from key {first} at " in result.stdout
    assert f"key {first} is destroyed after its grace period, at " in result.stdout
    assert ring[first].status == "previous" and ring[first].secret is not None
    assert ring[new].status == "current"

    status = cli("salts", "status").stdout
    old_line = next(line for line in status.splitlines() if re.match(rf"\s+{first}  ", line))
    assert old_line.split()[1] == "previous"
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", old_line)) == 3  # no destruction
    assert re.search(rf"^key {first} destroyed at: \d{{4}}-", status, re.M)


def test_rotate_with_no_grace_destroys_the_old_key_and_its_unreturned_profiles(
    app, cli, client, services, workplace, quick, monkeypatch
):
    SmsWorker(client, PHONE).enrol()
    old = services.identity.pseudonymise(PHONE).value
    work(app, services.queues)
    with services.db.session() as session:
        assert session.get(Worker, old) is not None
    [first] = keys(services)
    no_grace(services, monkeypatch)

    result = cli("salts", "rotate")

    assert result.exit_code == 0, result.output
    assert f"key {first} destroyed (1 profile(s) of workers who had not come back" in result.stdout
    destroyed = keys(services)[first]
    assert destroyed.status == "destroyed" and destroyed.secret is None
    assert destroyed.destroyed_at is not None
    assert first not in dict(ring_in_redis(services))
    with services.db.session() as session:
        assert session.get(Worker, old) is None
    assert services.profiles.load(old) is None and services.sessions.load(old) is None
    status = cli("salts", "status").stdout.splitlines()
    destroyed_line = next(line for line in status if line.startswith(f"{first:>4}"))
    assert destroyed_line.split()[1] == "destroyed"
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", destroyed_line)) == 4
    # the worker is a stranger now: nothing of theirs can be found under the new key
    assert services.identity.pseudonymise(PHONE).earlier == ()


def test_two_clocks_at_once_rotate_once_and_destroy_once(services, quick):
    [first] = keys(services)
    period, grace = services.config.salt_period_days, services.config.salt_grace_days
    made = keys(services)[first]
    due = (made.activates_at or made.created_at).replace(tzinfo=UTC) + timedelta(days=period)

    def both(now: datetime) -> list[keyring.Rotated | None | list]:
        barrier, results = threading.Barrier(2), []

        def tick() -> None:
            barrier.wait()
            results.append(KeyKeeper(services).maintain(now))

        threads = [threading.Thread(target=tick) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    early = both(due - timedelta(seconds=1))
    assert [m.rotated for m in early] == [None, None] and keys(services).keys() == {first}

    ticks = both(due)
    assert sorted(m.rotated is None for m in ticks) == [False, True]
    ring = keys(services)
    assert sorted(key.status for key in ring.values()) == ["current", "previous"]
    assert [m.rotated for m in both(due + timedelta(seconds=30))] == [None, None]

    ends = due + timedelta(days=grace, seconds=keyring.LEAD_SECONDS)
    ticks = both(ends)
    assert sorted(len(m.destroyed) for m in ticks) == [0, 1]
    assert all(m.rotated is None for m in ticks)
    ring = keys(services)
    assert ring[first].status == "destroyed" and ring[first].secret is None
    assert ring_in_redis(services) == [(k, "current") for k in ring if k != first]


def test_the_clock_command_rotates_when_the_period_is_over(cli, services):
    [first] = keys(services)
    with services.db.session() as session:
        long_ago = services.now() - timedelta(days=services.config.salt_period_days, minutes=1)
        session.execute(update(PseudonymKey).values(activates_at=long_ago, created_at=long_ago))
    result = cli("clock", "--once")
    assert result.exit_code == 0, result.output
    assert sorted(k.status for k in keys(services).values()) == ["current", "previous"]
    assert cli("clock", "--once").exit_code == 0
    assert len(keys(services)) == 2  # not due again


# -- every process sees a change within five seconds, without SQL ----------------------------
def test_a_rotation_and_a_destruction_reach_another_process_within_five_seconds(
    services, monkeypatch
):
    other = Services(services.config)
    other.redis = services.redis  # another web process on the same Redis
    try:
        before = other.identity.pseudonymise(PHONE)
        rotated = KeyKeeper(services).rotate(services.now())
        assert rotated is not None
        with statements(other) as seen:
            while (now := other.identity.pseudonymise(PHONE)).key_id == before.key_id:
                assert time.time() < rotated.activates_at.timestamp() + 5
                time.sleep(0.05)
            switched = time.time()
        assert switched >= rotated.activates_at.timestamp()  # at one instant, in every process
        assert now.key_id == rotated.new and now.earlier == ((before.key_id, before.value),)

        no_grace(services, monkeypatch)
        [done] = KeyKeeper(services).destroy_due(services.now())
        destroyed = time.time()
        with statements(other) as seen_after:
            while other.identity.pseudonymise(PHONE).earlier:
                assert time.time() < destroyed + 5
                time.sleep(0.05)
        assert done.key_id == before.key_id
        assert seen == [] and seen_after == []
        assert other.identity.pseudonymise(PHONE).value == now.value
    finally:
        other.db.dispose()


# -- a returning worker moves once --------------------------------------------------------------
def migrated_events(services: Services) -> list[dict]:
    return [e for e in logged_events(services.redis) if e["kind"] == "migrated"]


def test_a_returning_worker_moves_once_even_when_two_requests_race(
    app, client, services, workplace, queues, quick
):
    phones = (PHONE, *OTHERS)
    for phone in phones:
        SmsWorker(client, phone).enrol()
    olds = {phone: services.identity.pseudonymise(phone).value for phone in phones}
    seeds = {phone: cached(services, phone).seed for phone in phones}
    assert all(seed is not None for seed in seeds.values())  # drawn as they enrolled
    work(app, queues)
    with services.db.session() as session:
        assert {p: session.get(Worker, o).seed for p, o in olds.items()} == seeds
    rotate_and_take_over(services)

    replies: list[str] = []

    def text(phone: str) -> None:  # each request on its own connection, as Twilio sends them
        replies.append(SmsWorker(app.test_client(), phone).send("1"))

    threads = [threading.Thread(target=text, args=(p,)) for p in phones for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(replies) == 2 * len(phones) and all(replies)

    moves = migrated_events(services)
    assert sorted(m["from"] for m in moves) == sorted(olds.values())  # each worker once
    work(app, queues)
    with services.db.session() as session:
        for phone, old in olds.items():
            new = services.identity.pseudonymise(phone).value
            assert session.get(Worker, old) is None
            moved = session.get(Worker, new)
            assert (moved.language, moved.seed) == ("en", seeds[phone])
            assert moved.seed != int(old[:8], 16)  # drawn, not the old pseudonym's digits
            note = session.get(MigratedPseudonym, old)
            assert (note.moved_to, note.key_id) == (new, keys(services)[note.key_id].id)
            assert services.profiles.load(old) is None
            assert cached(services, phone).seed == seeds[phone]
            assert services.redis.get(SESSION_KEY.format(old)) is None
    # a third request of a worker moved already finds them at home: no second move
    assert migrated_events(services) == []  # drained
    assert SmsWorker(client, PHONE).send("1")
    assert migrated_events(services) == []


def test_an_open_session_carries_on_after_the_rotation(
    app, client, services, workplace, queues, quick
):
    worker = SmsWorker(client, PHONE)
    first_question = worker.enrol()
    old = services.identity.pseudonymise(PHONE).value
    asked = services.sessions.load(old).current
    assert asked is not None
    rotate_and_take_over(services)

    next_question = worker.send("1")

    new = services.identity.pseudonymise(PHONE)
    assert new.value != old and new.earlier[0][1] == old
    assert next_question != first_question  # the answer was taken: no enrolment again
    session = services.sessions.load(new.value)
    assert session is not None and session.current not in (None, asked)
    assert session.answers.get(asked) is not None  # the session came with its answers
    assert services.sessions.load(old) is None
    work(app, queues)
    with services.db.session() as db:
        stored = db.execute(select(Answer.pseudonym, Answer.question_id)).all()
    assert (new.value, asked) in {tuple(row) for row in stored}
    assert PHONE.encode() not in dump_redis(services)


# -- counting across a rotation -----------------------------------------------------------------
T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
ROTATED = T0 + timedelta(days=10)


def answer(key_id: int, who: str, question: str, value: str, at: datetime, *more) -> dict:
    return {
        "pseudonym": who,
        "key_id": key_id,
        "channel": "sms",
        "received_at": at.isoformat(),
        "events": [
            *more,
            {
                "kind": "answer_recorded",
                "flow": "checkin",
                "version": "1",
                "question": question,
                "value": value,
                "at": at.isoformat(),
                "workplace": "dhaka-knit",
                "event_id": f"twilio:{who[:8]}:{question}:{at:%Y%m%d%H}",
            },
        ],
    }


def moved(old: str, old_key: int, at: datetime) -> dict:
    return {"kind": "migrated", "from": old, "from_key": old_key, "at": at.isoformat()}


def figures(services: Services, start: datetime, end: datetime) -> tuple:
    """(respondents, {pseudonym: long_hours answer}, the indicators' values) of a window."""
    flows, _ = services.registry.current()
    win = Window(start, end, (end - start).days)
    with services.db.session() as session:
        place = session.scalar(select(Workplace).where(Workplace.slug == "dhaka-knit"))
        rows = latest_answers(session, place.id, win)
        published = indicators(session, place, flows, win, k=1)
    answers = {r.pseudonym: r.value_text for r in rows if r.question_id == "long_hours"}
    values = {i["id"]: i["value"] for i in published["indicators"]}
    return published["respondents"], answers, values


def test_a_worker_who_answers_either_side_of_a_rotation_counts_once_and_no_figure_jumps(
    services, workplace
):
    """Three workers answer under the first key; then it is rotated. A comes back and answers
    again, B comes back without answering, C never comes back. Every window (before, spanning,
    after the rotation) keeps its figures when they come back, and a window that spans the
    rotation keeps them when the old key is destroyed: each worker is one respondent."""
    [k1] = keys(services)
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    na, nb = "1" * 64, "2" * 64
    with services.db.session() as session:
        jobs.write_batches(
            session,
            [
                answer(k1, a, "long_hours", "no", T0 + timedelta(days=1)),
                answer(k1, a, "long_hours", "yes", T0 + timedelta(days=5)),
                answer(k1, b, "long_hours", "no", T0 + timedelta(days=2)),
                answer(k1, c, "long_hours", "yes", T0 + timedelta(days=3)),
                answer(k1, a, "overtime_forced", "yes", T0 + timedelta(days=6)),
            ],
        )
    with services.db.session() as session:
        k2 = keyring.rotate(session, key_encrypter(services.crypto), ROTATED).new
    windows = {
        "before": (T0, ROTATED - timedelta(days=1)),
        "spanning": (T0, ROTATED + timedelta(days=3)),
        "late start": (T0 + timedelta(days=4), ROTATED + timedelta(days=3)),
        "after": (ROTATED + timedelta(days=1), ROTATED + timedelta(days=3)),
    }
    # A's new answer is the only thing the returns add (after the first return, before B's).
    with services.db.session() as session:
        jobs.write_batches(
            session,
            [
                answer(
                    k2,
                    na,
                    "long_hours",
                    "no",
                    ROTATED + timedelta(days=1, hours=2),
                    moved(a, k1, ROTATED + timedelta(days=1)),
                )
            ],
        )
    seen = {name: figures(services, *span) for name, span in windows.items()}
    assert seen["spanning"][0] == 3
    assert seen["spanning"][1] == {na: "no", b: "no", c: "yes"}
    assert seen["before"][0] == 3 and seen["before"][1] == {na: "yes", b: "no", c: "yes"}
    assert seen["after"][0] == 1

    with services.db.session() as session:  # B comes back (their first request is not an answer)
        jobs.write_batches(
            session,
            [
                {
                    "pseudonym": nb,
                    "key_id": k2,
                    "channel": "sms",
                    "received_at": (ROTATED + timedelta(days=2)).isoformat(),
                    "events": [moved(b, k1, ROTATED + timedelta(days=2))],
                }
            ],
        )
    returned = {name: figures(services, *span) for name, span in windows.items()}
    for name in windows:  # a return moves nothing
        assert returned[name][0] == seen[name][0], name
        assert sorted(returned[name][1].values()) == sorted(seen[name][1].values()), name
        assert returned[name][2] == seen[name][2], name

    with services.db.session() as session:  # the grace period is over
        done = keyring.destroy(session, k1, ROTATED + timedelta(days=14))
    assert done is not None
    destroyed = {name: figures(services, *span) for name, span in windows.items()}
    for name in ("spanning", "late start", "after"):
        assert destroyed[name] == returned[name], name
    assert destroyed["spanning"][1] == {na: "no", nb: "no", c: "yes"}
    # A window that ended before the rotation keeps every worker, but loses the latest answers
    # that moved on (docs/PRIVACY.md): A's "yes" of day 5 went with them, their "no" of day 1
    # stays behind, and B, who answered once, is no longer in it.
    assert destroyed["before"][1] == {a: "no", c: "yes"}

    with services.db.session() as session:
        assert session.scalar(select(func.count()).select_from(MigratedPseudonym)) == 0
        left = session.execute(
            select(
                Answer.pseudonym, Answer.question_id, Answer.superseded, Answer.carried
            ).order_by(Answer.pseudonym, Answer.question_id, Answer.answered_at)
        ).all()
    assert [tuple(r) for r in left if r.pseudonym in (a, b)] == [
        (a, "long_hours", True, False)  # the worker's older answer stays, superseded
    ]
    assert {(r.pseudonym, r.question_id, r.carried) for r in left if r.pseudonym in (na, nb)} == {
        (na, "long_hours", False),  # answered after the rotation
        (na, "long_hours", True),  # the latest before it, moved on
        (na, "overtime_forced", True),
        (nb, "long_hours", True),
    }


def first_contact(channel: str, client, phone: str) -> None:
    """The worker's first request after the rotation, on their channel."""
    if channel == "at-ussd":
        UssdPhone(client, phone, session_id="ATUid_again").dial()
    elif channel == "twilio-voice":
        TwilioCall(client, phone, sid="CA" + "9" * 32).dial()
    elif channel == "at-voice":
        AtCall(client, phone, session="ATVId_again").post(f"?token={AT_TOKEN}")
    elif channel == "at-sms":
        assert post_at_sms(client, at_sms_form(phone, "hello")).status_code == 200
    else:
        SmsWorker(client, f"whatsapp:{phone}" if channel == "whatsapp" else phone).send("hello")


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_worker_is_moved_on_every_channel(app, client, services, queues, quick, channel):
    add_callback_workplace(services)
    phone = walk(channel, client, services)
    old = services.identity.pseudonymise(phone).value
    seed = cached(services, phone).seed
    work(app, queues)
    rotate_and_take_over(services)

    first_contact(channel, client, phone)

    new = services.identity.pseudonymise(phone).value
    assert cached(services, phone) == CachedProfile("en", "dhaka-knit", seed, "1")
    assert services.profiles.load(old) is None
    work(app, queues)
    with services.db.session() as session:
        assert session.get(Worker, old) is None
        assert session.get(Worker, new).workplace_id is not None
        assert session.get(MigratedPseudonym, old).moved_to == new
        ledger = session.execute(select(Consent.pseudonym, Consent.licence)).all()
        assert [tuple(row) for row in ledger] == [(new, "1")]  # the consent moved too
