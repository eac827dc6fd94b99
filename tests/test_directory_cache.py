"""No SQL in a hop (gateway/directory_cache.py): a whole conversation on every channel and
webhook path runs none, goes on while the database refuses connections (the answers are stored
once it is back), and leaves no phone number in Redis."""

from __future__ import annotations

import logging

import pytest

from gateway import directory_cache

from .channels.test_at_voice import at_call
from .channels.test_twilio_voice import call as twilio_call
from .conftest import AT_TOKEN
from .hops import (
    CALLBACK,
    CHANNELS,
    PHONES,
    add_callback_workplace,
    database_down,
    queued_answers,
    retry_now,
    scheduled_or_queued,
    statements,
    stored_answers,
    stored_profile,
    walk,
    work,
)
from .leaks import assert_no_numbers, dump_redis, number_forms
from .support import twilio_signature


@pytest.fixture
def workplace(services) -> str:
    return add_callback_workplace(services)


# -- no SQL in a hop ------------------------------------------------------------------------------
@pytest.mark.parametrize("channel", CHANNELS)
def test_a_whole_conversation_runs_no_sql(channel, app, client, services, workplace, queues):
    with statements(services) as seen:
        phone = walk(channel, client, services)
    assert seen == []
    expected = queued_answers(queues)
    assert expected >= 1
    work(app, queues)
    assert stored_answers(services, phone) == expected
    assert stored_profile(services, phone) == ("en", workplace)


@pytest.mark.parametrize("channel", CHANNELS)
def test_workers_answer_while_the_database_is_down(
    channel, app, client, services, workplace, queues
):
    """Hops go on; their jobs fail and wait to be retried; /healthz names the database; once
    it is back every answer is stored, once."""
    with database_down(services) as attempts:
        phone = walk(channel, client, services)
        assert attempts == []  # no hop even tried to connect
        health = client.get("/healthz")
        assert health.status_code == 503 and health.get_json()["checks"]["database"] == "failing"
        expected = queued_answers(queues)
        work(app, queues)  # every job fails, and is kept for a retry
        assert queued_answers(queues) == expected >= 1
    assert stored_answers(services, phone) == 0
    assert retry_now(queues) >= 1
    work(app, queues)
    assert stored_answers(services, phone) == expected
    assert stored_profile(services, phone) == ("en", workplace)
    assert retry_now(queues) == 0 and client.get("/healthz").status_code == 200


def test_missed_calls_to_a_callback_number_run_no_sql(client, services, workplace, queues):
    """The first request of a call to the callback number, on both voice webhooks: rejected
    unanswered (the callback is queued), from the directory in Redis alone."""
    twilio = twilio_call("CA" + "1" * 32, PHONES["twilio-voice"], To=CALLBACK)
    at = at_call("ATVId_missed", PHONES["at-voice"], destinationNumber=CALLBACK)
    with statements(services) as seen:
        signed = {"X-Twilio-Signature": twilio_signature(twilio, path="/webhooks/twilio/voice")}
        first = client.post("/webhooks/twilio/voice", data=twilio, headers=signed)
        second = client.post(f"/webhooks/at/voice?token={AT_TOKEN}", data=at)
    assert seen == []
    assert "<Reject" in first.get_data(as_text=True) and "<Reject" in second.get_data(as_text=True)
    assert len(scheduled_or_queued(queues)) == 2


# -- privacy ------------------------------------------------------------------------------------
def test_no_phone_number_anywhere_in_redis(app, client, services, workplace, queues, caplog):
    caplog.set_level(logging.INFO)
    phones = [walk(channel, client, services) for channel in CHANNELS]
    work(app, queues)
    redis = services.redis
    assert redis.hlen(directory_cache.DIRECTORY_KEY) == 3  # code, zone, callback number
    assert len(redis.keys("wv:profile:*")) == len(phones)
    assert_no_numbers(phones, services, caplog.text)
    assert not any(f.encode() in dump_redis(services) for f in number_forms(CALLBACK))
