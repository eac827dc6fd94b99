"""Table-driven webhook tests (after nyaruka/courier's handler test harness).

An adapter's test file is a list of ``Case`` values; ``run_case`` sends each one as the provider
would and checks the answer, what the adapter handed to ``gateway.conversation.handle``, which
jobs were queued, and the rules every request obeys whatever the case:

- no answer is a 500; a refusal (4xx) is one plain-text line and changes nothing at all (the
  whole of Redis and the database are compared before and after);
- a provider retry gets the same answer as the first delivery;
- a reply job carries the recipient only sealed;
- the sender's number, in any format, ends up nowhere: not in Redis (job payloads included,
  decompressed), not in the database, not in the outbox, not in a log record.

Also here: ``FakeAfricasTalking``, a local stand-in for the AT SMS API (PROVIDERS.md §5.2).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, quote

from sqlalchemy import select
from twilio.request_validator import RequestValidator

from gateway import directory_cache, outbox, persistence
from gateway.channels import at_sms, at_ussd, at_voice, twilio_sms, twilio_voice
from gateway.conversation import Inbound
from gateway.identity import InvalidAddress, Number, e164
from gateway.outbound import RECIPIENT_PURPOSE
from gateway.services import Services
from store.models import Worker

from ..conftest import AT_TOKEN, TWILIO_TOKEN
from ..leaks import db_dump, find_number, redis_dump
from ..support import PUBLIC_URL, SmsWorker, add_workplace, options, run_jobs

SIGNED = "<sign correctly>"  # Case.signature: sign the request as Twilio would
WORKPLACE_CODE = "4321"


@dataclass(frozen=True)
class Recorded:
    """What the adapter hands to the shared handler (the provider comes from Channel)."""

    address: str
    text: str
    message_id: str
    channel: str = ""  # "" means "sms", or "whatsapp" for a whatsapp: address
    dialog: str | None = None  # the provider's session id (USSD sessionId), if any

    @property
    def channel_name(self) -> str:
        if self.channel:
            return self.channel
        return "whatsapp" if self.address.lower().startswith("whatsapp:") else "sms"


@dataclass(frozen=True)
class Case:
    """One provider request and everything expected of it."""

    label: str
    form: dict[str, str]
    status: int = 200
    body: str | None = None  # a fragment every answer's body holds
    recorded: Recorded | None = None  # None: the handler is never reached with a usable input
    # what the request hands on, in order: "events" (appended to the event log) and the names
    # of the job functions queued
    jobs: tuple[str, ...] = ()
    repeat: int = 1  # the provider delivers it this many times (retries)
    # Twilio: the X-Twilio-Signature header (SIGNED = correct, None = absent, else sent as is),
    # and what a correct-looking signature is computed over instead of the real request.
    signature: str | None = SIGNED
    signed_url: str | None = None
    signed_form: dict[str, str] | None = None
    signing_token: str = TWILIO_TOKEN
    # AT: the webhook token in the query (None = no token).
    token: str | None = AT_TOKEN
    query: str = ""  # extra query string, e.g. "?src=1"
    method: str = "POST"
    raw: bytes | None = None  # sent instead of the form, with content_type
    content_type: str = "application/x-www-form-urlencoded"
    before: Callable[[Run], None] | None = None  # what happened earlier (enrolment ...)
    check: Callable[[Run], None] | None = None  # further assertions


@dataclass(frozen=True)
class Channel:
    """A provider channel: its webhook, its form field names and how it authenticates."""

    provider: str
    path: str
    module: ModuleType
    sender_field: str
    text_field: str
    id_field: str


TWILIO = Channel("twilio", "/webhooks/twilio/sms", twilio_sms, "From", "Body", "MessageSid")
AT = Channel("at", "/webhooks/at/sms", at_sms, "from", "text", "id")
AT_USSD = Channel("at", "/webhooks/at/ussd", at_ussd, "phoneNumber", "text", "sessionId")
TWILIO_VOICE = Channel(
    "twilio", "/webhooks/twilio/voice", twilio_voice, "From", "Digits", "CallSid"
)
AT_VOICE = Channel("at", "/webhooks/at/voice", at_voice, "callerNumber", "dtmfDigits", "sessionId")


@dataclass
class Queued:
    name: str
    args: tuple
    kwargs: dict
    job: Any


@dataclass
class Run:
    """One case in progress: what tests and ``before``/``check`` hooks get to look at."""

    app: Any
    client: Any
    services: Services
    channel: Channel
    case: Case
    phone: str | None  # the sender in E.164, if it is a phone number
    responses: list = field(default_factory=list)
    inbounds: list[tuple[Inbound, str]] = field(default_factory=list)  # and the text read
    queued: list[Queued] = field(default_factory=list)
    records: list[str] = field(default_factory=list)  # every log record, as logged
    outbox_before: set[Path] = field(default_factory=set)

    def pseudonym(self, phone: str | None = None) -> str:
        return self.services.identity.pseudonymise(phone or self.phone).value

    def sessions(self) -> list[str]:
        """Pseudonyms that have a session in Redis."""
        return sorted(
            k.decode().rsplit(":", 1)[1] for k in self.services.redis.keys("wv:session:*")
        )

    def outbox(self) -> list[Path]:
        return _outbox(self.services)

    def profile_exists(self, phone: str | None = None) -> bool:
        with self.services.db.session() as db:
            found = db.scalar(
                select(Worker.pseudonym).where(Worker.pseudonym == self.pseudonym(phone))
            )
        return found is not None


def run_case(channel: Channel, case: Case, app, client, services: Services, monkeypatch) -> Run:
    """Send the case as the provider would and check everything expected of it."""
    run = Run(app, client, services, channel, case, _phone(case.form.get(channel.sender_field)))
    if case.before:
        case.before(run)
        run_jobs(app)
    _spy(run, monkeypatch)
    state_before = snapshot(services)
    run.outbox_before = outbox_before = set(_outbox(services))
    with _capture_logs(run.records):
        for _ in range(case.repeat):
            run.responses.append(_send(channel, case, client))
        state_after = snapshot(services)  # before a worker runs: it keeps books of its own
        run_jobs(app)

    texts = [r.get_data(as_text=True) for r in run.responses]
    for response, text in zip(run.responses, texts, strict=True):
        assert response.status_code == case.status, f"{case.label}: {response.status_code} {text}"
        assert response.status_code < 500 and "Traceback" not in text
        if case.body is not None:
            assert case.body in text, f"{case.label}: {case.body!r} not in {text!r}"
    assert len(set(texts)) == 1, f"{case.label}: a retry was answered differently: {texts}"

    if case.status >= 400:
        assert texts[0].endswith("\n") and "\n" not in texts[0][:-1], f"not one line: {texts[0]!r}"
        assert run.responses[0].mimetype == "text/plain"
        assert state_after == state_before, f"{case.label}: a refusal changed state: " + ", ".join(
            _changed(state_before, state_after)
        )
        assert set(_outbox(services)) == outbox_before
    expected = (
        []
        if case.recorded is None
        else [
            (
                Inbound(
                    channel.provider,
                    case.recorded.channel_name,
                    case.recorded.address,
                    case.recorded.message_id,
                    case.recorded.dialog,
                ),
                case.recorded.text,
            )
        ]
        * case.repeat
    )
    assert run.inbounds == expected, f"{case.label}: handed on {run.inbounds}"
    assert tuple(q.name for q in run.queued) == case.jobs, f"{case.label}: queued {run.queued}"
    for queued in run.queued:
        if queued.name == "send_sms":
            _check_sealed(run, queued)
    if run.phone:
        _check_no_number(run, set(_outbox(services)) - outbox_before)
    if case.check:
        case.check(run)
    return run


# -- sending ------------------------------------------------------------------------------------


def _send(channel: Channel, case: Case, client):
    url, headers = channel.path + case.query, {}
    if channel.provider == "twilio" and case.signature is not None:
        headers["X-Twilio-Signature"] = case.signature
        if case.signature == SIGNED:
            signed_url = case.signed_url or PUBLIC_URL + url
            headers["X-Twilio-Signature"] = RequestValidator(case.signing_token).compute_signature(
                signed_url, case.signed_form if case.signed_form is not None else case.form
            )
    if channel.provider == "at" and case.token is not None:
        url += ("&" if "?" in url else "?") + "token=" + quote(case.token)
    if case.raw is not None:
        return client.open(
            url, method=case.method, data=case.raw, content_type=case.content_type, headers=headers
        )
    return client.open(url, method=case.method, data=case.form, headers=headers)


def _phone(address: str | None) -> str | None:
    try:
        return e164(address or "")
    except InvalidAddress:
        return None


def _spy(run: Run, monkeypatch) -> None:
    """Record what the adapter hands on: the events its hop appends to the event log (as
    "events"), the replies it puts in the outbox (as "send_sms", in the hop's commit or
    outside it) and the jobs it queues (by function name; the drains of both aside). All of it
    still runs for real."""
    real_handle = run.channel.module.handle
    real_commit = run.services.sessions.commit

    def handle(services, inbound, turn):
        handled = real_handle(services, inbound, turn)
        if isinstance(inbound.address, Number):  # read by the adapter: compared as E.164
            inbound = dataclasses.replace(inbound, address=inbound.address.e164)
        if inbound.sealed_sender is not None:  # a reply by API: the sender, sealed
            opened = services.crypto.unseal(inbound.sealed_sender, RECIPIENT_PURPOSE)
            assert opened == e164(inbound.address)
            inbound = dataclasses.replace(inbound, sealed_sender=None)
        run.inbounds.append((inbound, getattr(turn, "text", "")))
        return handled

    def commit(*args, **kwargs):
        armed = real_commit(*args, **kwargs)
        if kwargs.get("events"):
            run.queued.append(Queued("events", (json.loads(kwargs["events"]),), {}, None))
        if kwargs.get("outbox"):
            reply = outbox.Reply.decode(kwargs["outbox"])
            run.queued.append(
                Queued("send_sms", (reply.provider, reply.sealed, reply.text), {}, None)
            )
        return armed

    real_add = run.services.outbox.add

    def add(provider, sealed, text):
        real_add(provider, sealed, text)
        run.queued.append(Queued("send_sms", (provider, sealed, text), {}, None))

    def spied(real_enqueue):
        def enqueue(function, *args, **kwargs):
            job = real_enqueue(function, *args, **kwargs)
            if function not in (persistence.drain, outbox.send_waiting):
                run.queued.append(Queued(function.__name__, args, kwargs, job))
            return job

        return enqueue

    monkeypatch.setattr(run.channel.module, "handle", handle)
    monkeypatch.setattr(run.services.sessions, "commit", commit)
    monkeypatch.setattr(run.services.outbox, "add", add)
    for queue in run.services.queues.values():
        monkeypatch.setattr(queue, "enqueue", spied(queue.enqueue))


class _ListHandler(logging.Handler):
    def __init__(self, records: list):
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        # Everything the record holds, as it was logged (before any redaction filter).
        text = record.getMessage() + " " + repr(record.__dict__)
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.records.append(text)


@contextmanager
def _capture_logs(records: list) -> Iterator[None]:
    """Every log record, first in line on the root logger, so it sees the raw record."""
    handler = _ListHandler(records)
    logging.getLogger().handlers.insert(0, handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)


# -- state and privacy --------------------------------------------------------------------------


def worker_keys(redis) -> list[bytes]:
    """The service's Redis keys, but the cache every worker shares (the key ring, the
    directory): what a worker has left in Redis."""
    return [k for k in redis.keys("wv:*") if k.decode() not in directory_cache.SHARED_KEYS]


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The Redis keys and tables whose contents differ between two snapshots."""
    changed = []
    for part in ("redis", "db"):
        keys = set(before[part]) | set(after[part])
        changed += [f"{part}:{k!r}" for k in keys if before[part].get(k) != after[part].get(k)]
    return sorted(changed)


def snapshot(services: Services) -> dict[str, Any]:
    """The whole of Redis and of the database, as plain comparable values."""
    return {"redis": redis_dump(services.redis), "db": db_dump(services)}


def _outbox(services: Services) -> list[Path]:
    directory = services.config.instance_dir / "outbox"
    return sorted(directory.iterdir()) if directory.exists() else []


def outbox_texts(paths) -> list[str]:
    return [path.read_text(encoding="utf-8").rstrip("\n") for path in sorted(paths)]


def _check_no_number(run: Run, new_outbox: set[Path]) -> None:
    outbox = [(p.name, p.read_bytes()) for p in new_outbox]
    for where, haystack in (
        ("redis", redis_dump(run.services.redis)),
        ("database", db_dump(run.services)),
        ("outbox", outbox),
        ("logs", run.records),
    ):
        assert not find_number(run.phone, haystack), (
            f"{run.case.label}: the number is in {where}: {find_number(run.phone, haystack)}"
        )


def _check_sealed(run: Run, queued: Queued) -> None:
    """A reply in the outbox holds the provider, the sealed recipient and the text: never the
    number."""
    provider, sealed, text = queued.args
    assert provider == run.channel.provider and text
    assert run.services.crypto.unseal(sealed, RECIPIENT_PURPOSE) == run.phone
    assert not find_number(run.phone, queued.args, redis_dump(run.services.redis))


# -- before / check hooks -----------------------------------------------------------------------


def enrolled(phone: str) -> Callable[[Run], None]:
    """The worker at ``phone`` has enrolled (over Twilio SMS, in English) and has been asked
    the first check-in question."""

    def before(run: Run) -> None:
        if run.services.directory.slug_for_code(WORKPLACE_CODE) is None:
            add_workplace(run.services, code=WORKPLACE_CODE)
        worker = SmsWorker(run.client, phone)
        english = options(worker.send("hello")).index("English") + 1
        worker.send(str(english))
        worker.send("1")  # I agree
        assert "1." in worker.send(WORKPLACE_CODE)
        run_jobs(run.app)
        assert run.profile_exists(phone)

    return before


def started(phone: str, text: str = "hello") -> Callable[[Run], None]:
    """The worker at ``phone`` sent one message over Twilio SMS (and was asked a language)."""

    def before(run: Run) -> None:
        SmsWorker(run.client, phone).send(text)

    return before


def checks(*hooks: Callable[[Run], None]) -> Callable[[Run], None]:
    def check(run: Run) -> None:
        for hook in hooks:
            hook(run)

    return check


def forgotten(run: Run) -> None:
    """STOP: the profile (stored and cached) and the session are gone."""
    assert not run.profile_exists()
    assert run.services.profiles.load(run.pseudonym()) is None
    assert run.pseudonym() not in run.sessions()


def one_session(run: Run) -> None:
    """Exactly one worker is in conversation: the sender's pseudonym."""
    assert run.sessions() == [run.pseudonym()]


def no_session(run: Run) -> None:
    assert run.sessions() == []


def answers(count: int) -> Callable[[Run], None]:
    def check(run: Run) -> None:
        from store.models import Answer

        with run.services.db.session() as db:
            rows = db.scalars(select(Answer.pseudonym)).all()
        assert rows == [run.pseudonym()] * count

    return check


def replies(*fragments: str) -> Callable[[Run], None]:
    """The replies put in the outbox carry these texts (one fragment per reply, in order)."""

    def check(run: Run) -> None:
        sent = [q.args[2] for q in run.queued if q.name == "send_sms"]
        assert len(sent) == len(fragments), sent
        for text, fragment in zip(sent, fragments, strict=True):
            assert fragment in text, (fragment, text)

    return check


# -- a local Africa's Talking SMS API -----------------------------------------------------------


@dataclass
class FakeAfricasTalking:
    """POST /version1/messaging on 127.0.0.1, answering as PROVIDERS.md §5.2 shows.

    ``answer(form) -> (http_status, content_type, body)`` decides each answer; the default
    accepts every recipient with statusCode 101. Requests are kept in ``requests``.
    """

    answer: Callable[[dict[str, str]], tuple[int, str, str]] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    keep_alive: bool = False  # HTTP/1.1: a connection serves many requests

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if fake.keep_alive else "HTTP/1.0"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
                fake.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "form": form,
                        "client_port": self.client_address[1],
                    }
                )
                status, content_type, text = (fake.answer or accepted)(form)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def at_answer(
    status_code: int,
    status: str,
    number: str,
    message_id: str = "ATPid_1",
    http_status: int = 201,
    content_type: str = "application/json",
):
    """An ``answer`` for FakeAfricasTalking giving one recipient this statusCode."""
    entry = at_entry(status_code, status, number, message_id)
    return at_answer_of([entry], http_status, content_type)


def at_entry(status_code: int, status: str, number: str, message_id: str) -> dict[str, Any]:
    """One ``Recipients[]`` entry of a send answer (PROVIDERS.md §5.2)."""
    return {
        "statusCode": status_code,
        "number": number,
        "status": status,
        "cost": "KES 0.8000",
        "messageId": message_id,
    }


def at_answer_of(
    entries: list[Any], http_status: int = 201, content_type: str = "application/json"
):
    """An ``answer`` for FakeAfricasTalking listing these ``Recipients[]`` entries; its
    ``Message`` quotes the numbers, as the real API's may."""
    numbers = ", ".join(str(e.get("number")) for e in entries if isinstance(e, dict))
    message = f"Sent to {len(entries)}/{len(entries)} Total Cost: KES 0.8000 ({numbers})"
    body = json.dumps({"SMSMessageData": {"Message": message, "Recipients": entries}})
    return lambda form: (http_status, content_type, body)


def accepted(form: dict[str, str]) -> tuple[int, str, str]:
    """Every recipient of the comma-joined ``to`` accepted (101), each with its own id."""
    numbers = [n for n in form.get("to", "").split(",") if n]
    entries = [at_entry(101, "Success", n, f"ATPid_{i}") for i, n in enumerate(numbers, 1)]
    return at_answer_of(entries)(form)
