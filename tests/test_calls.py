"""Outbound calls: the VoiceCaller port and its implementations (STYLE §8).

Every implementation runs through the same contract test. Twilio and Africa's Talking are
pointed at local fakes of their call APIs on 127.0.0.1 that answer, like the real ones, with
texts quoting the number: no exception, log record or note may carry it on.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import socket

import pytest

from gateway.calls import (
    AfricasTalkingCaller,
    CallError,
    CallRefused,
    OutboxCaller,
    TwilioCaller,
    VoiceCaller,
    caller_for,
)

from .channels.harness import FakeAfricasTalking, _capture_logs
from .leaks import find_number
from .test_outbound import NUMBER, assert_clean

CALLBACK_NUMBER = "+254709123456"  # the service's own number
WORKPLACE = "dhaka-knit"  # whose callback number it is
ACCOUNT_SID = "AC" + "ab" * 16
AUTH_TOKEN = "test-twilio-rest-token"
VOICE_URL = "https://gateway.example.org/webhooks/twilio/voice"
TWILIO_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"


# -- local call APIs (the harness's form-POST server, answering as each provider does) ----------


def twilio_answer(status: int = 201, body: object = None, content_type: str = "application/json"):
    """An ``answer`` for the fake: by default the call resource Twilio returns, which quotes the
    number in ``to`` and ``to_formatted``."""

    def answer(form: dict[str, str]) -> tuple[int, str, str]:
        data = body
        if data is None:
            data = {
                "sid": "CA" + "0f" * 16,
                "account_sid": ACCOUNT_SID,
                "to": form.get("To"),
                "to_formatted": form.get("To"),
                "from": form.get("From"),
                "status": "queued",
                "direction": "outbound-api",
                "date_created": None,
            }
        text = data if isinstance(data, str) else json.dumps(data)
        return status, content_type, text

    return answer


def twilio_error(status: int, code: int, message: str):
    """Twilio's legacy error body (what the Calls API sends)."""
    return twilio_answer(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


def at_answer(status: str = "Queued", session_id: str = "ATVId_5f0c1d", http_status: int = 200):
    """An AT Voice ``call`` answer for one callee (it quotes the number in phoneNumber)."""

    def answer(form: dict[str, str]) -> tuple[int, str, str]:
        entry = {"phoneNumber": form.get("to"), "status": status, "sessionId": session_id}
        if status != "Queued":
            entry["sessionId"] = "None"
        body = {"entries": [entry], "errorMessage": "None"}
        return http_status, "application/json", json.dumps(body)

    return answer


@pytest.fixture
def fake_twilio():
    fake = FakeAfricasTalking(answer=twilio_answer())
    yield fake
    fake.close()


@pytest.fixture
def fake_at():
    fake = FakeAfricasTalking(answer=at_answer())
    yield fake
    fake.close()


@pytest.fixture
def logs(caplog):
    """Every log record at any level, raw (before any redaction), as the harness captures them."""
    caplog.set_level(logging.DEBUG)
    records: list[str] = []
    with _capture_logs(records):
        yield records


def twilio_caller(fake) -> TwilioCaller:
    return TwilioCaller(ACCOUNT_SID, AUTH_TOKEN, VOICE_URL, fake.url)


def at_caller(fake) -> AfricasTalkingCaller:
    return AfricasTalkingCaller("workervoice", "test-key", fake.url)


# -- the contract: every VoiceCaller --------------------------------------------------------------


@dataclasses.dataclass
class Implementation:
    caller: VoiceCaller
    # () -> [(callee or None, where from, answer URL or None)] of the calls that were placed
    placed: object
    # where a call is placed from, as this caller hands it on or writes it down
    source: str = CALLBACK_NUMBER


def _twilio(fake_twilio, fake_at, tmp_path) -> Implementation:
    return Implementation(
        twilio_caller(fake_twilio),
        lambda: [
            (r["form"]["To"], r["form"]["From"], r["form"]["Url"]) for r in fake_twilio.requests
        ],
    )


def _africastalking(fake_twilio, fake_at, tmp_path) -> Implementation:
    # AT calls the number's configured callback URL: the request names none.
    return Implementation(
        at_caller(fake_at),
        lambda: [(r["form"]["to"], r["form"]["from"], None) for r in fake_at.requests],
    )


def _outbox(fake_twilio, fake_at, tmp_path) -> Implementation:
    directory = tmp_path / "outbox"

    def placed():
        notes = sorted(directory.iterdir()) if directory.exists() else []
        lines = [p.read_text(encoding="utf-8") for p in notes]
        prefix = "call placed from the callback number of workplace "
        return [(None, line.removeprefix(prefix).rstrip("\n"), None) for line in lines]

    # The outbox writes down no number, not even the service's own: it names the workplace.
    return Implementation(OutboxCaller(directory, WORKPLACE), placed, source=WORKPLACE)


IMPLEMENTATIONS = {"twilio": _twilio, "africastalking": _africastalking, "outbox": _outbox}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def implementation(request, fake_twilio, fake_at, tmp_path) -> Implementation:
    return IMPLEMENTATIONS[request.param](fake_twilio, fake_at, tmp_path)


def test_contract_call_rings_the_number_from_the_callback_number(implementation):
    call_id = implementation.caller.call(NUMBER, CALLBACK_NUMBER)
    assert isinstance(call_id, str) and call_id
    [(callee, from_, url)] = implementation.placed()
    assert callee in (NUMBER, None)  # None: this caller never keeps the number
    assert from_ == implementation.source
    assert url in (VOICE_URL, None)  # None: the provider calls the number's configured URL


def test_contract_each_call_is_its_own(implementation):
    ids = [implementation.caller.call(NUMBER, CALLBACK_NUMBER) for _ in range(3)]
    assert len(implementation.placed()) == 3
    assert all(ids)


def test_contract_no_log_record_holds_the_number(implementation, logs):
    call_id = implementation.caller.call(NUMBER, CALLBACK_NUMBER)
    assert logs or isinstance(implementation.caller, OutboxCaller)  # the SDKs log each request
    assert not find_number(NUMBER, logs, call_id)


# -- Twilio ---------------------------------------------------------------------------------------


def test_twilio_request_is_what_the_calls_api_documents(fake_twilio):
    assert twilio_caller(fake_twilio).call(NUMBER, CALLBACK_NUMBER) == "CA" + "0f" * 16
    [request] = fake_twilio.requests
    assert request["path"] == TWILIO_PATH
    assert request["form"] == {
        "To": NUMBER,
        "From": CALLBACK_NUMBER,
        "Url": VOICE_URL,
        "Method": "POST",
    }
    expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request["headers"]["Authorization"] == f"Basic {expected}"


TWILIO_FAILURES = [
    # (label, answer, exception): every answer quotes the number, as Twilio's messages do
    (
        "21211 invalid To is final",
        twilio_error(400, 21211, f"The 'To' number {NUMBER} is not a valid phone number."),
        CallRefused,
    ),
    (
        "21215 geo permission is final",
        twilio_error(400, 21215, f"Account not authorized to call {NUMBER}."),
        CallRefused,
    ),
    (
        "21216 blocked is final",
        twilio_error(400, 21216, f"Account not allowed to call {NUMBER}"),
        CallRefused,
    ),
    (
        "21217 not valid is final",
        twilio_error(400, 21217, f"Phone number {NUMBER} does not appear to be valid"),
        CallRefused,
    ),
    ("13224 unsupported is final", twilio_error(400, 13224, f"Cannot call {NUMBER}"), CallRefused),
    (
        "21210 unverified From is retried",
        twilio_error(400, 21210, f"'From' {CALLBACK_NUMBER} not verified (to {NUMBER})"),
        CallError,
    ),
    ("20003 bad credentials is retried", twilio_error(401, 20003, "Authenticate"), CallError),
    (
        "20429 too many requests is retried",
        twilio_error(429, 20429, f"Too many calls to {NUMBER}"),
        CallError,
    ),
    (
        "HTTP 500 not JSON is retried",
        twilio_answer(500, f"<h1>error calling {NUMBER}</h1>", "text/html"),
        CallError,
    ),
    (
        "RFC 9457 problem 21211 is final",
        twilio_answer(
            400,
            {
                "type": "about:blank",
                "title": f"bad {NUMBER}",
                "status": 400,
                "code": 21211,
                "detail": NUMBER,
            },
        ),
        CallRefused,
    ),
    (
        "RFC 9457 problem 20500 is retried",
        twilio_answer(
            500,
            {
                "type": "about:blank",
                "title": "Internal",
                "status": 500,
                "code": 20500,
                "detail": f"calling {NUMBER}",
            },
        ),
        CallError,
    ),
    ("201 not JSON is retried", twilio_answer(201, f"queued {NUMBER}", "text/plain"), CallError),
    ("201 JSON list is retried", twilio_answer(201, [NUMBER]), CallError),
    (
        "201 without a sid is retried",
        twilio_answer(201, {"to": NUMBER, "status": "queued"}),
        CallError,
    ),
]


@pytest.mark.parametrize(
    "answer,exception", [f[1:] for f in TWILIO_FAILURES], ids=[f[0] for f in TWILIO_FAILURES]
)
def test_twilio_failures_never_carry_the_number(fake_twilio, logs, answer, exception):
    fake_twilio.answer = answer
    with pytest.raises(exception) as caught:
        twilio_caller(fake_twilio).call(NUMBER, CALLBACK_NUMBER)
    assert_clean(caught.value)
    assert not find_number(NUMBER, logs)
    assert len(fake_twilio.requests) == 1  # tried once: retrying is the job's business


def test_twilio_unreachable_is_retried():
    with pytest.raises(CallError) as caught:
        TwilioCaller(ACCOUNT_SID, AUTH_TOKEN, VOICE_URL, f"http://127.0.0.1:{_free_port()}").call(
            NUMBER, CALLBACK_NUMBER
        )
    assert_clean(caught.value)


@pytest.mark.parametrize("callee", ["0711283946", "254711283946", "+254 711 283946", ""])
def test_twilio_callee_not_in_e164_is_refused_uncalled(fake_twilio, callee):
    with pytest.raises(CallRefused) as caught:
        twilio_caller(fake_twilio).call(callee, CALLBACK_NUMBER)
    assert fake_twilio.requests == []
    assert_clean(caught.value)


# -- Africa's Talking -----------------------------------------------------------------------------


def test_at_request_is_what_the_sdk_documents(fake_at):
    assert at_caller(fake_at).call(NUMBER, CALLBACK_NUMBER) == "ATVId_5f0c1d"
    [request] = fake_at.requests
    assert request["path"] == "/call"
    assert request["headers"]["apiKey"] == "test-key"
    assert request["form"] == {"username": "workervoice", "from": CALLBACK_NUMBER, "to": NUMBER}


def test_at_json_under_another_content_type_is_parsed(fake_at):
    """The SDK hands back a raw string unless the type is exactly application/json."""
    body = {"entries": [{"phoneNumber": NUMBER, "status": "Queued", "sessionId": "ATVId_t"}]}
    fake_at.answer = lambda form: (200, "text/plain; charset=utf-8", json.dumps(body))
    assert at_caller(fake_at).call(NUMBER, CALLBACK_NUMBER) == "ATVId_t"


def _at_body(data: object, http_status: int = 200, content_type: str = "application/json"):
    text = data if isinstance(data, str) else json.dumps(data)
    return lambda form: (http_status, content_type, text)


AT_FAILURES = [
    ("InvalidPhoneNumber is final", at_answer("InvalidPhoneNumber"), CallRefused),
    ("DestinationNotSupported is final", at_answer("DestinationNotSupported"), CallRefused),
    ("InsufficientCredit is retried", at_answer("InsufficientCredit"), CallError),
    ("a status quoting the number is retried", at_answer(NUMBER), CallError),
    ("Queued without a session id is retried", at_answer("Queued", ""), CallError),
    (
        "no entries",
        _at_body({"entries": [], "errorMessage": f"Invalid callerId for {NUMBER}"}),
        CallError,
    ),
    ("entries not a list", _at_body({"entries": NUMBER}), CallError),
    ("an entry not an object", _at_body({"entries": [NUMBER]}), CallError),
    ("a list", _at_body([NUMBER]), CallError),
    ("not JSON at all", _at_body(f"<p>calling {NUMBER}</p>", content_type="text/html"), CallError),
    ("not JSON under a JSON type", _at_body(f"to={NUMBER}"), CallError),
    ("HTTP 401", _at_body({"error": f"bad key calling {NUMBER}"}, 401), CallError),
    ("HTTP 500", _at_body(f"Internal error calling {NUMBER}", 500, "text/plain"), CallError),
]


@pytest.mark.parametrize(
    "answer,exception", [f[1:] for f in AT_FAILURES], ids=[f[0] for f in AT_FAILURES]
)
def test_at_failures_never_carry_the_number(fake_at, logs, answer, exception):
    fake_at.answer = answer
    with pytest.raises(exception) as caught:
        at_caller(fake_at).call(NUMBER, CALLBACK_NUMBER)
    assert_clean(caught.value)
    assert not find_number(NUMBER, logs)


def test_at_unreachable_is_retried():
    with pytest.raises(CallError) as caught:
        AfricasTalkingCaller("workervoice", "k", f"http://127.0.0.1:{_free_port()}").call(
            NUMBER, CALLBACK_NUMBER
        )
    assert_clean(caught.value)


@pytest.mark.parametrize("callee", ["0711283946", "254711283946", "+254 711 283946", ""])
def test_at_callee_the_sdk_cannot_take_is_refused_uncalled(fake_at, callee):
    with pytest.raises(CallRefused) as caught:
        at_caller(fake_at).call(callee, CALLBACK_NUMBER)
    assert fake_at.requests == []
    assert_clean(caught.value)


# -- the outbox and the choice of caller ----------------------------------------------------------


def test_outbox_notes_the_call_and_the_workplace_but_no_number(tmp_path):
    directory = tmp_path / "outbox"
    OutboxCaller(directory, WORKPLACE).call(NUMBER, CALLBACK_NUMBER)
    OutboxCaller(directory, WORKPLACE).call(NUMBER, CALLBACK_NUMBER)  # twice: two notes
    notes = sorted(directory.iterdir())
    assert len(notes) == 2
    for path in notes:
        assert path.name.startswith("call-") and path.suffix == ".txt"
        assert path.read_text(encoding="utf-8") == (
            "call placed from the callback number of workplace dhaka-knit\n"
        )
        for number in (NUMBER, CALLBACK_NUMBER):  # neither the worker's nor the service's
            assert not find_number(number, path.name, path.read_bytes())


def test_caller_for_each_provider_follows_its_credentials(base_config, tmp_path):
    bare = dataclasses.replace(
        base_config, twilio_account_sid=None, at_api_key=None, instance_dir=tmp_path
    )
    for provider in ("twilio", "at"):
        outbox = caller_for(provider, bare, WORKPLACE)
        assert isinstance(outbox, OutboxCaller) and outbox.directory == tmp_path / "outbox"
        assert outbox.workplace == WORKPLACE
    with_sid = dataclasses.replace(bare, twilio_account_sid=ACCOUNT_SID)
    twilio = caller_for("twilio", with_sid, WORKPLACE)
    assert isinstance(twilio, TwilioCaller)
    assert twilio.voice_url == base_config.public_url + "/webhooks/twilio/voice"
    at = caller_for(
        "at", dataclasses.replace(bare, at_username="sandbox", at_api_key="k"), WORKPLACE
    )
    assert isinstance(at, AfricasTalkingCaller)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens here once the socket closes
