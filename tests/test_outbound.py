"""Outbound SMS: the SmsSender port and its implementations (SPEC §6); the outbox that sends
through them has tests/test_outbox.py.

Every implementation runs through the same contract test. Africa's Talking is pointed at a
local fake of its SMS API (PROVIDERS.md §5.2) that answers, like the real one, with texts that
quote the number: no exception, log line or stored failure may carry it on.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import traceback

import pytest

from gateway.outbound import (
    AfricasTalkingSender,
    Fate,
    OutboxSender,
    Outcome,
    SendError,
    SendRefused,
    SmsSender,
)

from .channels.harness import FakeAfricasTalking, at_answer, at_answer_of, at_entry
from .leaks import find_number

NUMBER = "+254711283946"
OTHERS = ["+254711283947", "+254722123456", "+255754123456"]  # other workers, distinct
TEXT = "Swali: Je, ulifanya kazi zaidi ya saa 10?\n1. Ndiyo\n2. Hapana"


@dataclasses.dataclass
class Implementation:
    sender: SmsSender
    delivered: object  # () -> list of (recipient or None, text) that reached the destination


def _africastalking(fake_at, tmp_path) -> Implementation:
    sender = AfricasTalkingSender("sandbox", "test-key", fake_at.url)
    return Implementation(
        sender,
        lambda: [
            (to, r["form"]["message"])
            for r in fake_at.requests
            for to in r["form"]["to"].split(",")
        ],
    )


def _outbox(fake_at, tmp_path) -> Implementation:
    directory = tmp_path / "outbox"
    return Implementation(
        OutboxSender(directory),
        lambda: (
            [
                (None, p.read_text(encoding="utf-8").rstrip("\n"))
                for p in sorted(directory.iterdir())
            ]
            if directory.exists()
            else []
        ),
    )


IMPLEMENTATIONS = {"africastalking": _africastalking, "outbox": _outbox}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def implementation(request, fake_at, tmp_path) -> Implementation:
    return IMPLEMENTATIONS[request.param](fake_at, tmp_path)


# -- the contract: every SmsSender ---------------------------------------------------------------


def test_contract_send_delivers_the_text_and_returns_an_id(implementation):
    message_id = implementation.sender.send(NUMBER, TEXT)
    assert isinstance(message_id, str) and message_id
    [(recipient, text)] = implementation.delivered()
    assert text == TEXT
    assert recipient in (NUMBER, None)  # None: this sender never keeps the number


@pytest.mark.parametrize(
    "text",
    ["আপনি কি এই সপ্তাহে ১০ ঘণ্টার বেশি কাজ করেছেন?", "x" * 1600, "quotes “ ” & <tags> and emoji 🙂"],
)
def test_contract_any_text_arrives_intact(implementation, text):
    implementation.sender.send(NUMBER, text)
    assert [t for _, t in implementation.delivered()] == [text]


def test_contract_each_send_is_its_own_message(implementation):
    ids = {implementation.sender.send(NUMBER, f"message {n}") for n in range(5)}
    texts = sorted(t for _, t in implementation.delivered())
    assert texts == [f"message {n}" for n in range(5)]
    assert all(ids)


def test_contract_send_many_answers_each_recipient_in_order(implementation):
    recipients = [NUMBER, *OTHERS]
    outcomes = implementation.sender.send_many(recipients, TEXT)
    assert [o.fate for o in outcomes] == [Fate.SENT] * len(recipients)
    assert all(o.message_id for o in outcomes)
    delivered = implementation.delivered()
    assert delivered in ([(to, TEXT) for to in recipients], [(None, TEXT)] * len(recipients))


def test_contract_send_many_to_no_one_sends_nothing(implementation):
    assert implementation.sender.send_many([], TEXT) == []
    assert implementation.delivered() == []


# -- Africa's Talking -----------------------------------------------------------------------------


def test_at_request_is_what_the_sdk_documents(fake_at):
    fake_at.answer = at_answer(101, "Success", NUMBER, "ATPid_SampleTxnId123")
    assert (
        AfricasTalkingSender("sandbox", "test-key", fake_at.url).send(NUMBER, TEXT)
        == "ATPid_SampleTxnId123"
    )
    [request] = fake_at.requests
    assert request["path"] == "/version1/messaging"
    assert request["headers"]["apiKey"] == "test-key"
    assert request["headers"]["Accept"] == "application/json"
    assert request["form"] == {
        "username": "sandbox",
        "to": NUMBER,
        "message": TEXT,
        "bulkSMSMode": "1",
    }


@pytest.mark.parametrize("code,status", [(100, "Processed"), (101, "Success"), (102, "Queued")])
def test_at_accepted_statuses(fake_at, code, status):
    fake_at.answer = at_answer(code, status, NUMBER, "ATPid_x")
    assert AfricasTalkingSender("sandbox", "k", fake_at.url).send(NUMBER, TEXT) == "ATPid_x"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/html; charset=UTF-8", "application/json; charset=utf-8"]
)
def test_at_json_under_another_content_type_is_parsed(fake_at, content_type):
    """The SDK hands back a raw string unless the type is exactly application/json."""
    fake_at.answer = at_answer(101, "Success", NUMBER, "ATPid_y", content_type=content_type)
    assert AfricasTalkingSender("sandbox", "k", fake_at.url).send(NUMBER, TEXT) == "ATPid_y"


def _body(data) -> tuple:
    return lambda form: (201, "application/json", json.dumps(data))


FAILURES = [
    # (label, answer, exception): every answer quotes the number, as the real API's texts do
    ("406 UserInBlacklist is final", at_answer(406, "UserInBlacklist", NUMBER), SendRefused),
    ("403 InvalidPhoneNumber is final", at_answer(403, "InvalidPhoneNumber", NUMBER), SendRefused),
    (
        "404 UnsupportedNumberType is final",
        at_answer(404, "UnsupportedNumberType", NUMBER),
        SendRefused,
    ),
    (
        "409 DoNotDisturbRejection is final",
        at_answer(409, "DoNotDisturbRejection", NUMBER),
        SendRefused,
    ),
    (
        "500 InternalServerError is retried",
        at_answer(500, "InternalServerError", NUMBER),
        SendError,
    ),
    ("501 GatewayError is retried", at_answer(501, "GatewayError", NUMBER), SendError),
    (
        "405 InsufficientBalance is retried",
        at_answer(405, "InsufficientBalance", NUMBER),
        SendError,
    ),
    ("an unknown status is retried", at_answer(499, NUMBER, NUMBER), SendError),
    (
        "HTTP 500",
        lambda form: (500, "text/plain", f"Internal error sending to {form['to']}"),
        SendError,
    ),
    (
        "HTTP 401",
        lambda form: (401, "application/json", '{"error": "bad key ' + NUMBER + '"}'),
        SendError,
    ),
    (
        "empty Recipients (InvalidSenderId)",
        _body({"SMSMessageData": {"Message": "InvalidSenderId", "Recipients": []}}),
        SendError,
    ),
    ("not JSON at all", lambda form: (201, "text/html", f"<p>queued {form['to']}</p>"), SendError),
    (
        "not JSON under a JSON type",
        lambda form: (201, "application/json", f"to={form['to']}"),
        SendError,
    ),
    (
        "statusCode not a number",
        _body({"SMSMessageData": {"Recipients": [{"statusCode": NUMBER, "number": NUMBER}]}}),
        SendError,
    ),
    ("no SMSMessageData", _body({"to": NUMBER}), SendError),
    ("a list", _body([NUMBER]), SendError),
]


@pytest.mark.parametrize(
    "answer,exception", [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
def test_at_failures_never_carry_the_number(fake_at, answer, exception):
    fake_at.answer = answer
    with pytest.raises(exception) as caught:
        AfricasTalkingSender("sandbox", "k", fake_at.url).send(NUMBER, TEXT)
    assert_clean(caught.value)


def test_at_unreachable_is_retried(fake_at):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the socket closes
    with pytest.raises(SendError) as caught:
        AfricasTalkingSender("sandbox", "k", f"http://127.0.0.1:{port}").send(NUMBER, TEXT)
    assert_clean(caught.value)


@pytest.mark.parametrize("recipient", ["0711283946", "254711283946", "+254 711 283946", ""])
def test_at_recipient_the_sdk_cannot_take_is_refused_unsent(fake_at, recipient):
    with pytest.raises(SendRefused) as caught:
        AfricasTalkingSender("sandbox", "k", fake_at.url).send(recipient, TEXT)
    assert fake_at.requests == []
    assert_clean(caught.value)


def at_sender(fake_at) -> AfricasTalkingSender:
    return AfricasTalkingSender("sandbox", "k", fake_at.url)


def test_at_send_many_is_one_call_for_all_recipients(fake_at):
    recipients = [NUMBER, *OTHERS]
    outcomes = at_sender(fake_at).send_many(recipients, TEXT)
    [request] = fake_at.requests
    assert request["form"]["to"] == ",".join(recipients)
    assert request["form"]["message"] == TEXT
    assert outcomes == [Outcome.sent(f"ATPid_{n}") for n in range(1, len(recipients) + 1)]


def test_at_each_recipient_has_the_outcome_of_its_own_entry(fake_at):
    """Matched by number, not by place: AT may list them in another order, or leave one out."""
    sent, blacklisted, missing, erring = [NUMBER, *OTHERS]
    fake_at.answer = at_answer_of(
        [
            at_entry(500, "InternalServerError", erring, "None"),
            at_entry(406, "UserInBlacklist", blacklisted, "None"),
            at_entry(101, "Success", sent, "ATPid_sent"),
        ]
    )
    outcomes = at_sender(fake_at).send_many([sent, blacklisted, missing, erring], TEXT)
    assert len(fake_at.requests) == 1
    assert outcomes == [
        Outcome.sent("ATPid_sent"),
        Outcome.refused("Africa's Talking status 406 UserInBlacklist"),
        Outcome.failed("Africa's Talking answered nothing for the recipient"),
        Outcome.failed("Africa's Talking status 500 InternalServerError"),
    ]
    assert_no_number_in(outcomes, sent, blacklisted, missing, erring)


def test_at_an_entry_is_told_by_the_digits_of_its_number(fake_at):
    """Were AT to answer a number without its plus, the message it sent is not sent again."""
    fake_at.answer = at_answer_of([at_entry(101, "Success", NUMBER[1:], "ATPid_x")])
    assert at_sender(fake_at).send_many([NUMBER], TEXT) == [Outcome.sent("ATPid_x")]


def test_at_an_entry_not_shaped_as_documented_fails_its_recipient_alone(fake_at):
    bad, good = NUMBER, OTHERS[0]
    fake_at.answer = at_answer_of(
        [
            {"number": bad, "statusCode": bad},  # int() would take it
            {"statusCode": 101},  # names no recipient
            "a string",
            at_entry(101, "Success", good, "ATPid_good"),
        ]
    )
    outcomes = at_sender(fake_at).send_many([bad, good], TEXT)
    assert outcomes == [
        Outcome.failed("Africa's Talking answered in an unexpected shape"),
        Outcome.sent("ATPid_good"),
    ]
    assert_no_number_in(outcomes, bad, good)


@pytest.mark.parametrize(
    "answer,reason",
    [
        (
            lambda form: (500, "text/plain", f"Internal error sending to {form['to']}"),
            "Africa's Talking answered with an error status",
        ),
        (
            lambda form: (201, "text/html", f"<p>queued {form['to']}</p>"),
            "Africa's Talking answered with something other than JSON",
        ),
        (
            _body({"SMSMessageData": {"Recipients": {"number": NUMBER}}}),
            "Africa's Talking answered in an unexpected shape",
        ),
        (_body([NUMBER]), "Africa's Talking answered in an unexpected shape"),
    ],
    ids=["HTTP 500", "not JSON", "Recipients not a list", "a list"],
)
def test_at_a_call_failing_outright_fails_every_recipient(fake_at, answer, reason):
    fake_at.answer = answer
    recipients = [NUMBER, *OTHERS]
    outcomes = at_sender(fake_at).send_many(recipients, TEXT)
    assert len(fake_at.requests) == 1
    assert outcomes == [Outcome.failed(reason)] * len(recipients)
    assert_no_number_in(outcomes, *recipients)


def test_at_a_recipient_in_a_format_it_cannot_take_is_refused_alone(fake_at):
    bad = "0711283946"
    outcomes = at_sender(fake_at).send_many([OTHERS[0], bad, NUMBER], TEXT)
    [request] = fake_at.requests
    assert request["form"]["to"] == f"{OTHERS[0]},{NUMBER}"
    assert [o.fate for o in outcomes] == [Fate.SENT, Fate.REFUSED, Fate.SENT]
    assert outcomes[1].reason == "Africa's Talking cannot take the recipient's format"


def test_at_no_recipient_it_can_take_makes_no_call(fake_at):
    outcomes = at_sender(fake_at).send_many(["0711283946", ""], TEXT)
    assert fake_at.requests == [] and [o.fate for o in outcomes] == [Fate.REFUSED] * 2


def test_at_a_recipient_given_twice_is_sent_once(fake_at):
    """The outbox never puts a number twice in one call; if it did, the second is failed
    (tried again later) rather than sent twice or left unanswered."""
    outcomes = at_sender(fake_at).send_many([NUMBER, OTHERS[0], NUMBER], TEXT)
    [request] = fake_at.requests
    assert request["form"]["to"] == f"{NUMBER},{OTHERS[0]}"
    assert [o.fate for o in outcomes] == [Fate.SENT, Fate.SENT, Fate.FAILED]
    assert_no_number_in(outcomes, NUMBER)


def test_at_unreachable_fails_every_recipient(fake_at):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = AfricasTalkingSender("sandbox", "k", f"http://127.0.0.1:{port}")
    outcomes = sender.send_many([NUMBER, *OTHERS], TEXT)
    assert [o.fate for o in outcomes] == [Fate.FAILED] * 4
    assert outcomes[0].reason.startswith("Africa's Talking unreachable: ")


def assert_no_number_in(outcomes: list[Outcome], *numbers: str) -> None:
    for number in numbers:
        assert not find_number(number, repr(outcomes)), outcomes


def assert_clean(exc: BaseException) -> None:
    """The exception as anyone could see it: message, repr, traceback, and every exception
    chained to it, even a suppressed context (an error reporter may walk it)."""
    chain, link = [], exc
    while link is not None:
        chain.append(link)
        link = link.__cause__ or link.__context__
    shown = "".join(traceback.format_exception(exc))
    shown += "".join(repr(e) + repr(e.args) + str(e) for e in chain)
    assert not find_number(NUMBER, shown), shown


# -- the outbox -----------------------------------------------------------------------------------


def test_outbox_writes_the_text_but_never_the_number(tmp_path):
    directory = tmp_path / "outbox"
    OutboxSender(directory).send(NUMBER, TEXT)
    OutboxSender(directory).send(NUMBER, TEXT)  # the same text twice: two files
    files = sorted(directory.iterdir())
    assert len(files) == 2
    for path in files:
        assert path.read_text(encoding="utf-8") == TEXT + "\n"
        assert not find_number(NUMBER, path.name, path.read_bytes())


def test_at_sends_reuse_their_connection():
    """The SDK alone opens a connection per message; the sender keeps one per thread."""
    fake = FakeAfricasTalking(keep_alive=True)
    try:
        sender = AfricasTalkingSender("sandbox", "test-key", fake.url)
        ids = [sender.send(NUMBER, f"{TEXT} {n}") for n in range(5)]
    finally:
        fake.close()
    assert len(ids) == 5 and len(fake.requests) == 5
    assert len({r["client_port"] for r in fake.requests}) == 1
