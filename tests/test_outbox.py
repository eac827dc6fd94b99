"""The outbox (gateway/outbox.py): SMS replies sent in batches by a drain of their own, the
recipient sealed all along; a seal that no longer opens and a refusal for good are dropped,
any other failure tried again after 2 s, 10 s, 1 min and 5 min, then given up; replies with
one text in one call of up to 100 recipients, several calls in flight at once, one worker's
replies in rounds, in order; never a number in Redis or a log line."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import pytest
from rq import SimpleWorker
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry

from gateway import metrics, outbox
from gateway.outbound import RECIPIENT_PURPOSE, reply_by_api
from gateway.outbox import OUTBOX_KEY, RETRY_KEY, RETRY_SECONDS, Reply
from gateway.queues import CALLS, GROUPS, OUTBOUND, Worker
from gateway.queues import make as make_queues

from .channels.harness import accepted, at_answer, at_answer_of, at_entry
from .hops import work
from .leaks import find_number, redis_dump
from .test_outbound import NUMBER, OTHERS, TEXT


@pytest.fixture
def at_services(services, fake_at, monkeypatch):
    """The app's services with Africa's Talking credentials pointing at the fake."""
    config = dataclasses.replace(
        services.config, at_username="sandbox", at_api_key="test-key", at_api_url=fake_at.url
    )
    monkeypatch.setattr(services, "config", config)
    return services


class Clock:
    def __init__(self):
        self.now = time.time()

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The outbox's clock, moved by the test (retries fall due without waiting)."""
    fake = Clock()
    monkeypatch.setattr(outbox, "time", fake)
    return fake


def drain(app) -> dict:
    with app.app_context():
        return outbox.send_waiting(0, 5.0)


def sent(fake_at) -> list[tuple[str, str]]:
    return [(r["form"]["to"], r["form"]["message"]) for r in fake_at.requests]


def put(services, sealed: str, text: str = TEXT) -> None:
    services.outbox.add("at", sealed, text)


def outcomes() -> dict[str, float]:
    return {
        outcome: metrics.SENDS.labels("at", outcome)._value.get()
        for outcome in ("sent", "dropped", "retried", "given_up")
    }


def moved(before: dict[str, float]) -> dict[str, float]:
    return {k: v - before[k] for k, v in outcomes().items() if v != before[k]}


def test_a_reply_is_sealed_sent_and_gone(app, at_services, fake_at, queues, caplog):
    before = outcomes()
    with app.app_context(), caplog.at_level(logging.DEBUG):
        reply_by_api(at_services, "at", NUMBER, TEXT)
        assert not find_number(NUMBER, redis_dump(at_services.redis))  # waiting: sealed only
        drain(app)
    assert sent(fake_at) == [(NUMBER, TEXT)]
    assert at_services.outbox.waiting() == 0 and at_services.outbox.retrying() == 0
    assert moved(before) == {"sent": 1}
    assert not find_number(NUMBER, caplog.text, [r.__dict__ for r in caplog.records])


def test_the_worker_sends_what_waits(app, at_services, fake_at, queues):
    with app.app_context():
        for n in range(3):
            reply_by_api(at_services, "at", NUMBER, f"{TEXT} {n}")
    assert [job.func_name for job in queues[OUTBOUND].get_jobs()] == [
        "gateway.outbox.send_waiting"
    ]  # one drain for the three, not a job each
    work(app, queues)
    assert sorted(sent(fake_at)) == [(NUMBER, f"{TEXT} {n}") for n in range(3)]


def test_an_expired_seal_is_dropped_unsent(app, at_services, fake_at, queues, caplog):
    before = outcomes()
    put(at_services, at_services.crypto.seal(NUMBER, RECIPIENT_PURPOSE, 60, now=time.time() - 120))
    with caplog.at_level(logging.INFO):
        drain(app)
    assert fake_at.requests == [] and "expired" in caplog.text
    assert at_services.outbox.waiting() == 0 and at_services.outbox.retrying() == 0
    assert moved(before) == {"dropped": 1}


@pytest.mark.parametrize("sealed", ["", "not-a-seal", "AQAAAAAAAAAA"])
def test_a_bad_seal_is_dropped_unsent(app, at_services, fake_at, queues, sealed):
    put(at_services, sealed)
    drain(app)
    assert fake_at.requests == [] and at_services.outbox.waiting() == 0


def test_a_seal_for_another_purpose_is_dropped_unsent(app, at_services, fake_at, queues):
    put(at_services, at_services.crypto.seal(NUMBER, "something-else", 60))
    drain(app)
    assert fake_at.requests == [] and at_services.outbox.retrying() == 0


def test_a_refusal_for_good_is_dropped_and_never_tried_again(
    app, at_services, fake_at, queues, caplog
):
    fake_at.answer = at_answer(406, "UserInBlacklist", NUMBER)
    with app.app_context(), caplog.at_level(logging.DEBUG):
        reply_by_api(at_services, "at", NUMBER, TEXT)
        drain(app)
    assert len(fake_at.requests) == 1 and at_services.outbox.retrying() == 0
    assert "406" in caplog.text
    assert not find_number(NUMBER, caplog.text, [r.__dict__ for r in caplog.records])


def test_a_failure_is_tried_again_on_schedule_then_given_up(
    app, at_services, fake_at, queues, clock, caplog
):
    fake_at.answer = lambda form: (500, "text/plain", f"gateway down for {form['to']}")
    before = outcomes()
    with app.app_context(), caplog.at_level(logging.DEBUG):
        reply_by_api(at_services, "at", NUMBER, TEXT)
        for attempt, delay in enumerate(RETRY_SECONDS, start=1):
            drain(app)
            assert len(fake_at.requests) == attempt
            [(raw, due)] = at_services.redis.zrange(RETRY_KEY, 0, -1, withscores=True)
            assert Reply.decode(raw).attempt == attempt and due == pytest.approx(clock.now + delay)
            clock.now += delay - 0.5
            drain(app)  # not due yet: nothing is tried
            assert len(fake_at.requests) == attempt
            clock.now += 0.5
        drain(app)  # the fifth try fails too: given up
    assert len(fake_at.requests) == len(RETRY_SECONDS) + 1
    assert at_services.outbox.retrying() == 0 and at_services.outbox.waiting() == 0
    assert moved(before) == {"retried": len(RETRY_SECONDS), "given_up": 1}
    assert not find_number(NUMBER, redis_dump(at_services.redis))
    assert not find_number(NUMBER, caplog.text, [r.__dict__ for r in caplog.records])


def test_a_retry_that_succeeds_is_sent_once(app, at_services, fake_at, queues, clock):
    answers = iter([(500, "text/plain", "down"), None])

    def flaky(form):
        answer = next(answers)
        return answer or at_answer(101, "Success", NUMBER)(form)

    fake_at.answer = flaky
    with app.app_context():
        reply_by_api(at_services, "at", NUMBER, TEXT)
    drain(app)
    clock.now += RETRY_SECONDS[0]
    drain(app)
    assert sent(fake_at) == [(NUMBER, TEXT)] * 2  # the failed try, then the one that went out
    assert at_services.outbox.retrying() == 0 and at_services.outbox.waiting() == 0


def test_a_drain_leaving_retries_queues_one_for_the_first_due(
    app, at_services, fake_at, queues, clock
):
    fake_at.answer = lambda form: (500, "text/plain", "down")
    with app.app_context():
        reply_by_api(at_services, "at", NUMBER, TEXT)
    queues[OUTBOUND].empty()  # the drain the reply queued: run it here instead
    drain(app)
    registry = ScheduledJobRegistry(queue=queues[OUTBOUND])
    [job_id] = registry.get_job_ids()
    due = registry.get_scheduled_time(job_id).timestamp()
    assert due == pytest.approx(time.time() + RETRY_SECONDS[0], abs=1.5)
    drain(app)  # a second drain finding only the same retry queues no second wake
    assert len(registry.get_job_ids()) == 1


def test_the_maintenance_pass_wakes_a_drain_for_due_retries(
    app, at_services, fake_at, queues, clock
):
    at_services.redis.zadd(RETRY_KEY, {Reply("at", "sealed", TEXT, 1).encode(): clock.now - 1})
    Worker([queues[OUTBOUND]], connection=at_services.redis).clean_registries()
    assert [j.func_name for j in queues[OUTBOUND].get_jobs()] == ["gateway.outbox.send_waiting"]


def slow_provider(fake_at, together: int = 1) -> list[int]:
    """The fake AT API answers after 0.2 s, its first ``together`` requests only once that
    many are in flight (or 5 s have passed: a slow machine cannot hide concurrency, nor fake
    it); [the most requests it had in flight at once]."""
    lock, in_flight, most = threading.Lock(), [0], [0]
    barrier = threading.Barrier(together, timeout=5)

    def slow(form):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            first = len(fake_at.requests) <= together
        if first and together > 1:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
        time.sleep(0.2)
        with lock:
            in_flight[0] -= 1
        return accepted(form)

    fake_at.answer = slow
    return most


def test_replies_go_out_several_at_once(app, at_services, fake_at, queues):
    """A slow provider is waited for by several senders at once (different texts' calls),
    not one call at a time."""
    most = slow_provider(fake_at, together=outbox.SENDERS)
    before = outcomes()
    with app.app_context():
        for n in range(16):
            reply_by_api(at_services, "at", f"+2547112839{n:02d}", f"{TEXT} {n}")
    drain(app)
    assert len(fake_at.requests) == 16
    assert most[0] == outbox.SENDERS
    assert moved(before) == {"sent": 16}


def test_one_workers_replies_go_out_in_order(app, at_services, fake_at, queues):
    most = slow_provider(fake_at)
    with app.app_context():
        for n in range(5):
            reply_by_api(at_services, "at", NUMBER, f"{TEXT} {n}")
    drain(app)
    assert sent(fake_at) == [(NUMBER, f"{TEXT} {n}") for n in range(5)]
    assert most[0] == 1


def test_the_embedded_default_tries_once(app, at_services, fake_at, caplog, monkeypatch):
    """No worker and no scheduler: the reply is sent as it is put in the outbox, and a failure
    is not kept for later."""
    monkeypatch.setitem(at_services.__dict__, "queues", make_queues(at_services.redis, False))
    monkeypatch.delitem(at_services.__dict__, "outbox", raising=False)
    fake_at.answer = lambda form: (500, "text/plain", "down")
    with app.app_context(), caplog.at_level(logging.INFO):
        reply_by_api(at_services, "at", NUMBER, TEXT)
    assert len(fake_at.requests) == 1
    assert at_services.outbox.retrying() == 0 and at_services.outbox.waiting() == 0
    assert "given up" in caplog.text


def test_an_entry_is_the_provider_the_seal_the_text_and_the_tries(app, at_services, queues):
    with app.app_context():
        reply_by_api(at_services, "at", NUMBER, TEXT)
    [(_, fields)] = at_services.redis.xrange(OUTBOX_KEY)
    reply = Reply.decode(fields[b"batch"])
    assert (reply.provider, reply.text, reply.attempt) == ("at", TEXT, 0)
    assert at_services.crypto.unseal(reply.sealed, RECIPIENT_PURPOSE) == NUMBER


def test_a_callback_is_taken_before_the_outbox_drains(app, services, queues):
    """The worker serving the outbox serves the callbacks too: between two drains it takes a
    callback first, so a busy outbox delays one by a drain's DRAIN_SECONDS at most."""
    [group] = [group for group in GROUPS if OUTBOUND in group]
    for _ in range(3):
        queues[OUTBOUND].enqueue(outbox.send_waiting, 0, 0.0)
    callback = queues[CALLS].enqueue("builtins.print", "a callback")
    worker = SimpleWorker([queues[name] for name in group], connection=services.redis)
    with app.app_context():
        worker.work(burst=True, max_jobs=1)
    assert callback.get_status(refresh=True) == JobStatus.FINISHED
    assert len(queues[OUTBOUND].get_jobs()) == 3


def test_a_drain_never_sends_what_another_holds_until_it_is_abandoned(
    app, at_services, fake_at, queues, monkeypatch
):
    """Replies read by a drain that has not acknowledged them (still sending, or killed) are
    left to it; once idle for CLAIM_IDLE_MS another drain sends them. A drain that ends
    cleanly leaves no consumer behind."""
    with app.app_context():
        reply_by_api(at_services, "at", NUMBER, TEXT)
    redis = at_services.redis
    redis.xgroup_create(OUTBOX_KEY, outbox.OUTBOX.group, id="0", mkstream=True)
    redis.xreadgroup(outbox.OUTBOX.group, "send-0-killed", {OUTBOX_KEY: ">"})
    drain(app)
    assert fake_at.requests == []  # not idle long enough: it may still be on its way
    monkeypatch.setattr(outbox, "OUTBOX", dataclasses.replace(outbox.OUTBOX, claim_idle_ms=0))
    monkeypatch.delitem(at_services.__dict__, "outbox")
    drain(app)
    assert sent(fake_at) == [(NUMBER, TEXT)]
    consumers = {c["name"] for c in redis.xinfo_consumers(OUTBOX_KEY, outbox.OUTBOX.group)}
    assert consumers == {b"send-0-killed"} or consumers == {"send-0-killed"}


# -- many recipients in one call ------------------------------------------------------------------


def calls(fake_at) -> list[tuple[list[str], str]]:
    """Each request to the fake AT API: its recipients and its text."""
    return [(r["form"]["to"].split(","), r["form"]["message"]) for r in fake_at.requests]


def test_one_text_for_several_workers_goes_in_one_call(app, at_services, fake_at, queues):
    before = outcomes()
    recipients = [NUMBER, *OTHERS]
    with app.app_context():
        for number in recipients:
            reply_by_api(at_services, "at", number, TEXT)
        drain(app)
    assert calls(fake_at) == [(recipients, TEXT)]
    assert moved(before) == {"sent": len(recipients)}


def test_one_call_per_text(app, at_services, fake_at, queues):
    texts = {NUMBER: "a", OTHERS[0]: "b", OTHERS[1]: "a", OTHERS[2]: "b"}
    with app.app_context():
        for number, text in texts.items():
            reply_by_api(at_services, "at", number, text)
        drain(app)
    assert sorted(calls(fake_at)) == [([NUMBER, OTHERS[1]], "a"), ([OTHERS[0], OTHERS[2]], "b")]


def test_one_workers_replies_go_out_in_rounds_in_order(app, at_services, fake_at, queues):
    """Round k carries each worker's k-th reply of the batch, and starts once round k-1 is
    answered: a worker never has two replies in one call, nor a later one before an earlier."""
    most = slow_provider(fake_at, together=2)
    with app.app_context():
        for text in ("first", "second", "first"):  # the same text twice: two rounds
            reply_by_api(at_services, "at", NUMBER, text)
        reply_by_api(at_services, "at", OTHERS[0], "first")
        reply_by_api(at_services, "at", OTHERS[1], "second")
        drain(app)
    assert calls(fake_at)[:2] in (
        [([NUMBER, OTHERS[0]], "first"), ([OTHERS[1]], "second")],
        [([OTHERS[1]], "second"), ([NUMBER, OTHERS[0]], "first")],
    )  # round 1: both texts at once
    assert calls(fake_at)[2:] == [([NUMBER], "second"), ([NUMBER], "first")]
    assert most[0] == 2  # round 1's two calls together; rounds 2 and 3 alone


def test_each_reply_has_the_outcome_of_its_own_recipient(app, at_services, fake_at, queues, caplog):
    """One answer for four workers: sent, refused for good (dropped), left out and status 500
    (both tried again); never a number in the logs or in Redis."""
    sent_to, blacklisted, missing, erring = [NUMBER, *OTHERS]
    fake_at.answer = at_answer_of(
        [
            at_entry(101, "Success", sent_to, "ATPid_sent"),
            at_entry(406, "UserInBlacklist", blacklisted, "None"),
            at_entry(500, "InternalServerError", erring, "None"),
        ]
    )
    before = outcomes()
    with app.app_context(), caplog.at_level(logging.DEBUG):
        for number in (sent_to, blacklisted, missing, erring):
            reply_by_api(at_services, "at", number, TEXT)
        drain(app)
    assert len(fake_at.requests) == 1
    assert moved(before) == {"sent": 1, "dropped": 1, "retried": 2}
    assert sorted(retried_recipients(at_services)) == sorted([missing, erring])
    [sent_line] = [r for r in caplog.records if r.getMessage() == "reply sent"]
    assert (sent_line.provider, sent_line.message_id) == ("at", "ATPid_sent")
    assert "406 UserInBlacklist" in caplog.text and "500 InternalServerError" in caplog.text
    assert "answered nothing for the recipient" in caplog.text
    for number in (sent_to, blacklisted, missing, erring):
        assert not find_number(number, redis_dump(at_services.redis))
        assert not find_number(number, caplog.text, [r.__dict__ for r in caplog.records])


def retried_recipients(services) -> list[str]:
    return [
        services.crypto.unseal(Reply.decode(raw).sealed, RECIPIENT_PURPOSE)
        for raw in services.redis.zrange(RETRY_KEY, 0, -1)
    ]


def test_a_call_failing_outright_retries_all_its_replies(app, at_services, fake_at, queues, caplog):
    fake_at.answer = lambda form: (500, "text/plain", f"gateway down for {form['to']}")
    before = outcomes()
    recipients = [NUMBER, *OTHERS]
    with app.app_context(), caplog.at_level(logging.DEBUG):
        for number in recipients:
            reply_by_api(at_services, "at", number, TEXT)
        drain(app)
    assert len(fake_at.requests) == 1
    assert moved(before) == {"retried": len(recipients)}
    assert sorted(retried_recipients(at_services)) == sorted(recipients)
    for number in recipients:
        assert not find_number(number, redis_dump(at_services.redis))
        assert not find_number(number, caplog.text, [r.__dict__ for r in caplog.records])


def test_a_recipient_at_cannot_take_is_dropped_alone(app, at_services, fake_at, queues):
    before = outcomes()
    with app.app_context():
        reply_by_api(at_services, "at", NUMBER, TEXT)
        reply_by_api(at_services, "at", "0711283947", TEXT)  # not E.164
        reply_by_api(at_services, "at", OTHERS[0], TEXT)
        drain(app)
    assert calls(fake_at) == [([NUMBER, OTHERS[0]], TEXT)]
    assert moved(before) == {"sent": 2, "dropped": 1}
    assert at_services.outbox.retrying() == 0


def test_more_than_a_call_takes_is_split_into_calls(app, at_services, fake_at, queues, monkeypatch):
    """A batch larger than PER_CALL with one text: calls of PER_CALL recipients at most, each
    recipient in exactly one."""
    monkeypatch.setattr(outbox, "OUTBOX", dataclasses.replace(outbox.OUTBOX, batch=250))
    monkeypatch.delitem(at_services.__dict__, "outbox", raising=False)
    recipients = [f"+254711{n:06d}" for n in range(250)]
    before = outcomes()
    with app.app_context():
        for number in recipients:
            reply_by_api(at_services, "at", number, TEXT)
        drain(app)
    sizes = sorted((len(to) for to, _ in calls(fake_at)), reverse=True)
    assert outbox.PER_CALL == 100 and sizes == [100, 100, 50]
    assert sorted(n for to, _ in calls(fake_at) for n in to) == sorted(recipients)
    assert moved(before) == {"sent": 250}
