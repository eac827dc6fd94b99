"""POST /webhooks/at/sms: Africa's Talking incoming SMS (PROVIDERS.md §5).

AT ignores the answer's body: the reply goes out through the AT SMS API from the outbox
(recorded by the harness as ``send_sms``), whose entry holds the recipient only sealed. The
harness checks every such reply (unsealed it is the sender; the number is nowhere in Redis).
"""

from __future__ import annotations

import dataclasses
import io
from urllib.parse import urlencode

import pytest

from gateway.outbound import RECIPIENT_PURPOSE
from gateway.outbox import OUTBOX_KEY, Reply
from gateway.persistence import FIELD

from ..conftest import AT_TOKEN
from ..leaks import find_number, redis_dump
from ..support import run_jobs
from .harness import (
    AT,
    Case,
    FakeAfricasTalking,
    Recorded,
    answers,
    checks,
    enrolled,
    forgotten,
    one_session,
    outbox_texts,
    replies,
    run_case,
    snapshot,
)

KE = "+254711283946"
BD = "+8801711283946"
MSG_ID = "ATXid_3b8c1ef55e2a4c6e9e1e2f7b8c9d0a1b"
NO_TOKEN = "invalid webhook token"


def at(sender: str = KE, text: str = "Hello", msg_id: str = MSG_ID, **extra: str) -> dict:
    """An incoming SMS in the shape of PROVIDERS.md §5.1."""
    form = {
        "from": sender,
        "to": "28901",
        "text": text,
        "date": "2026-11-25T08:34:18.445Z",
        "id": msg_id,
        "linkId": "SampleLinkId123",
        "networkCode": "63902",
    }
    form.update(extra)
    return form


def without(form: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in form.items() if k not in names}


def delivered(run) -> None:
    """Each reply job ran and sent its text (the test config has no AT key: the outbox)."""
    sent = [q.args[2] for q in run.queued if q.name == "send_sms"]
    new = [p for p in run.outbox() if p not in run.outbox_before]
    assert sorted(outbox_texts(new)) == sorted(sent)


def sent_once(run) -> None:
    """However often the message was delivered, its reply went out once."""
    sent = [q.args[2] for q in run.queued if q.name == "send_sms"]
    assert len(sent) == 1, sent


def still_enrolled(run) -> None:
    assert run.profile_exists()


CASES = [
    # -- accepted: real payload shapes ---------------------------------------------------------
    Case(
        "SMS as documented",
        at(),
        body="",
        recorded=Recorded(KE, "Hello", MSG_ID),
        jobs=("send_sms",),
        check=checks(one_session, replies("WorkerVoice"), delivered),
    ),
    Case(
        "unknown parameters are accepted",
        at(cost="KES 1.00", futureParameter="x"),
        recorded=Recorded(KE, "Hello", MSG_ID),
        jobs=("send_sms",),
        check=one_session,
    ),
    Case(
        "no linkId (not a premium message)",
        without(at(), "linkId"),
        recorded=Recorded(KE, "Hello", MSG_ID),
        jobs=("send_sms",),
    ),
    Case(
        "Bangla text",
        at(BD, "হ্যালো, আমি কাজ করি"),
        recorded=Recorded(BD, "হ্যালো, আমি কাজ করি", MSG_ID),
        jobs=("send_sms",),
        check=checks(one_session, replies("WorkerVoice-এ স্বাগতম")),
    ),
    Case(
        "empty text",
        at(text=""),
        recorded=Recorded(KE, "", MSG_ID),
        jobs=("send_sms",),
        check=one_session,
    ),
    Case(
        "from without the plus",
        at(sender="254711283946"),
        recorded=Recorded("+254711283946", "Hello", MSG_ID),  # read once, as E.164
        jobs=("send_sms",),
    ),
    Case(
        "a UUID id",
        at(msg_id="3b8c1ef5-5e2a-4c6e-9e1e-2f7b8c9d0a1b"),
        recorded=Recorded(KE, "Hello", "3b8c1ef5-5e2a-4c6e-9e1e-2f7b8c9d0a1b"),
        jobs=("send_sms",),
    ),
    Case(
        "text of exactly 1,600 characters",
        at(text="x" * 1600),
        recorded=Recorded(KE, "x" * 1600, MSG_ID),
        jobs=("send_sms",),
    ),
    # -- retries and opt-out ------------------------------------------------------------------
    Case(
        "a retry is recorded once, and its reply, already sent, is not sent again",
        at(text="1"),
        repeat=2,
        before=enrolled(KE),
        recorded=Recorded(KE, "1", MSG_ID),
        jobs=("events", "send_sms"),
        check=checks(answers(1), one_session, delivered, sent_once),
    ),
    Case(
        "STOP: a confirmation through a job, profile and session forgotten",
        at(text="STOP"),
        before=enrolled(KE),
        recorded=Recorded(KE, "STOP", MSG_ID),
        jobs=("events", "send_sms"),
        check=checks(forgotten, replies("You have left WorkerVoice"), delivered),
    ),
    Case(
        "stop in lower case",
        at(text=" stop"),
        before=enrolled(KE),
        recorded=Recorded(KE, " stop", MSG_ID),
        jobs=("events", "send_sms"),
        check=checks(forgotten, replies("You have left WorkerVoice")),
    ),
    # -- malformed: 400, nothing changes ------------------------------------------------------
    Case("missing from", without(at(), "from"), 400, "missing field 'from'"),
    Case("missing text", without(at(), "text"), 400, "missing field 'text'"),
    Case("missing id", without(at(), "id"), 400, "missing field 'id'"),
    Case("from 'anonymous'", at(sender="anonymous"), 400, "not a phone number"),
    Case("from 'abc'", at(sender="abc"), 400, "not a phone number"),
    Case("from empty", at(sender=""), 400, "not a phone number"),
    Case("from a placeholder", at(sender="+254711XXXYYY"), 400, "not a phone number"),
    Case("from a shortcode", at(sender="28901"), 400, "phone number"),
    Case(
        "from over 64 characters",
        at(sender="+" + "2" * 64),
        400,
        "field 'from' is longer than 64 characters",
    ),
    Case("id empty", at(msg_id=""), 400, "empty field 'id'"),
    Case("id with a line break", at(msg_id="ATXid_1\nATXid_2"), 400, "malformed field 'id'"),
    Case(
        "id over 100 characters",
        at(msg_id="ATXid_" + "a" * 95),
        400,
        "field 'id' is longer than 100 characters",
    ),
    Case(
        "text over 1,600 characters",
        at(text="x" * 1601),
        400,
        "field 'text' is longer than 1600 characters",
    ),
    Case("text with a NUL character", at(text="a\x00b"), 400, "field 'text' holds a NUL"),
    Case(
        "a JSON body",
        {},
        400,
        "missing field 'from'",
        raw=b'{"from": "+254711283946"}',
        content_type="application/json",
    ),
    Case(
        "a body that is not a form",
        {},
        400,
        "missing field",
        raw=b"\xff\xfe%%%&=&from",
        content_type="application/x-www-form-urlencoded",
    ),
    # -- authentication: 403, nothing changes -------------------------------------------------
    Case("no token", at(), 403, NO_TOKEN, token=None),
    Case("empty token", at(), 403, NO_TOKEN, token=""),
    Case("wrong token", at(), 403, NO_TOKEN, token="not-the-token"),
    Case("token in another case", at(), 403, NO_TOKEN, token="TEST-AT-WEBHOOK-TOKEN"),
    Case("token with a suffix", at(), 403, NO_TOKEN, token="test-at-webhook-token-x"),
    Case(
        "token in the form instead of the query",
        at(token="test-at-webhook-token"),
        403,
        NO_TOKEN,
        token=None,
    ),
    Case(
        "a forged STOP changes nothing",
        at(text="STOP"),
        403,
        NO_TOKEN,
        token="guess",
        before=enrolled(KE),
        check=still_enrolled,
    ),
    Case(
        "malformed without a token: authentication comes first",
        without(at(), "from"),
        403,
        NO_TOKEN,
        token=None,
    ),
    # -- not a webhook call at all ------------------------------------------------------------
    Case("GET", at(), 405, "not allowed", method="GET"),
    Case("a body over the size limit", at(text="x" * 300_000), 413, "exceeds"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label)
def test_at_sms(case, app, client, services, monkeypatch):
    run_case(AT, case, app, client, services, monkeypatch)


def test_case_labels_are_unique():
    assert len({case.label for case in CASES}) == len(CASES)


def test_the_reply_waits_in_the_outbox_with_the_recipient_only_sealed(
    app, client, services, queues
):
    """The outbox's entry as stored in Redis: (provider, sealed recipient, text, tries)."""
    response = client.post(f"/webhooks/at/sms?token={AT_TOKEN}", data=at(), headers={})
    assert response.status_code == 200
    [(_, fields)] = services.redis.xrange(OUTBOX_KEY)
    reply = Reply.decode(fields[FIELD.encode()])
    assert reply.provider == "at" and "WorkerVoice" in reply.text and reply.attempt == 0
    assert services.crypto.unseal(reply.sealed, RECIPIENT_PURPOSE) == KE
    assert not find_number(KE, redis_dump(services.redis))


def test_reply_reaches_the_at_api(app, client, services, monkeypatch):
    """With AT credentials the outbox posts the reply to the AT SMS API, to the sender."""
    fake = FakeAfricasTalking()
    try:
        monkeypatch.setattr(
            services,
            "config",
            dataclasses.replace(
                services.config, at_username="sandbox", at_api_key="test-key", at_api_url=fake.url
            ),
        )
        run = run_case(
            AT,
            Case(
                "reply via the API",
                at(),
                recorded=Recorded(KE, "Hello", MSG_ID),
                jobs=("send_sms",),
            ),
            app,
            client,
            services,
            monkeypatch,
        )
        run_jobs(app)
    finally:
        fake.close()
    assert len(fake.requests) == 1
    request = fake.requests[0]
    assert request["path"] == "/version1/messaging"
    assert request["headers"]["apiKey"] == "test-key"
    assert request["form"]["to"] == KE and request["form"]["username"] == "sandbox"
    assert request["form"]["message"] == run.queued[0].args[2]


LIMIT = 256 * 1024  # app.config["MAX_CONTENT_LENGTH"]


def padded(message_id: str, size: int) -> bytes:
    """A usable AT message padded with an unknown field to ``size`` bytes: cut anywhere in the
    padding it would still parse as a message."""
    body = urlencode(at(msg_id=message_id)).encode() + b"&pad="
    return body + b"x" * (size - len(body))


def post_body(client, stream: io.BytesIO, chunked: bool):
    """The body with a Content-Length, or chunked as gunicorn hands it on: a stream of unknown
    length that the server ends (``wsgi.input_terminated``)."""
    url = f"/webhooks/at/sms?token={AT_TOKEN}"
    content_type = "application/x-www-form-urlencoded"
    if not chunked:
        size = len(stream.getvalue())
        return client.post(url, input_stream=stream, content_length=size, content_type=content_type)
    return client.post(
        url,
        input_stream=stream,
        content_type=content_type,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_however_it_is_sent(client, services, chunked):
    before, outbox_before = (
        snapshot(services),
        sorted(services.config.instance_dir.glob("outbox/*")),
    )
    stream = io.BytesIO(padded(MSG_ID, 300_000))
    response = post_body(client, stream, chunked)
    text = response.get_data(as_text=True)
    assert response.status_code == 413, text
    assert response.mimetype == "text/plain" and "exceeds" in text
    assert text.endswith("\n") and "\n" not in text[:-1]
    assert snapshot(services) == before, "a refused request changed state"
    assert sorted(services.config.instance_dir.glob("outbox/*")) == outbox_before
    # read to its end and dropped: a server closing on unread data would reset the connection
    # and the caller would never see the 413
    assert stream.tell() == 300_000


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_is_handled_however_it_is_sent(client, services, chunked):
    response = post_body(client, io.BytesIO(padded(MSG_ID, LIMIT)), chunked)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert services.redis.keys("wv:session:*"), "the message was not handled"
