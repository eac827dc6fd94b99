"""Sending SMS to a worker through a provider API, from a job.

The job payload carries the recipient only as a sealed token (AES-GCM, expiring with the job);
the number is opened inside the job, handed to the provider SDK and forgotten. ``SmsSender`` is
the port; ``AfricasTalkingSender`` and ``OutboxSender`` implement it. ``send_many`` sends one
text to many recipients in one provider call and answers an ``Outcome`` per recipient (sent,
refused for good, failed); ``send`` is its one-recipient case, raising for anything but sent.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import requests
from rq import Retry

from .providers import at_request, write_note

if TYPE_CHECKING:
    from .config import Config
    from .services import Services

log = logging.getLogger(__name__)
RECIPIENT_PURPOSE = "job-recipient"
RECIPIENT_TTL_SECONDS = 3600  # longer than every retry (gateway/outbox.py) put together
SEND_RETRY = Retry(max=4, interval=[2, 10, 60, 300])  # the callbacks' (the outbox has its own)
AT_ACCEPTED = {100, 101, 102}  # Processed, Sent, Queued
AT_STATUS = {  # statusCode -> name (PROVIDERS.md §5.2)
    100: "Processed",
    101: "Sent",
    102: "Queued",
    401: "RiskHold",
    402: "InvalidSenderId",
    403: "InvalidPhoneNumber",
    404: "UnsupportedNumberType",
    405: "InsufficientBalance",
    406: "UserInBlacklist",
    407: "CouldNotRoute",
    409: "DoNotDisturbRejection",
    500: "InternalServerError",
    501: "GatewayError",
    502: "RejectedByGateway",
}
AT_RECIPIENT = re.compile(r"\+\d{1,3}\d{3,}")  # what the SDK accepts
AT_FINAL_REFUSALS = {403, 404, 406, 409}  # invalid, unsupported, blacklisted, do-not-disturb
AT_TIMEOUT_SECONDS = (3.05, 9.05)  # connect, read: the SDK's own


class SendError(Exception):
    """The provider did not accept the message; the job will be retried."""


class SendRefused(Exception):
    """The provider refused for good (opted out, invalid number): never retried."""


class Fate(StrEnum):
    SENT = "sent"
    REFUSED = "refused"  # for good: never tried again
    FAILED = "failed"  # worth another try


@dataclass(frozen=True)
class Outcome:
    """What became of one recipient's message. ``reason`` names only a status or a kind of
    failure, never a number nor anything the provider wrote."""

    fate: Fate
    message_id: str = ""  # the provider's, when sent
    reason: str = ""  # why not, when refused or failed

    @classmethod
    def sent(cls, message_id: str) -> Outcome:
        return cls(Fate.SENT, message_id=message_id)

    @classmethod
    def refused(cls, reason: str) -> Outcome:
        return cls(Fate.REFUSED, reason=reason)

    @classmethod
    def failed(cls, reason: str) -> Outcome:
        return cls(Fate.FAILED, reason=reason)

    def message_id_or_raise(self) -> str:
        """The message id if sent; else SendRefused or SendError naming the reason (raised
        here, outside any ``except``: no exception quoting a number is chained to it)."""
        if self.fate is Fate.SENT:
            return self.message_id
        raise (SendRefused if self.fate is Fate.REFUSED else SendError)(self.reason)


class SmsSender(Protocol):
    def send(self, to: str, text: str) -> str:
        """Send ``text`` to the E.164 number ``to``; return the provider's message id, or raise
        SendRefused (for good) or SendError (worth another try)."""

    def send_many(self, recipients: Sequence[str], text: str) -> list[Outcome]:
        """Send ``text`` to each of ``recipients`` (distinct E.164 numbers, as many as the
        caller lets one call take); one outcome per recipient, in their order. Never raises
        for a provider's failure: it is an outcome."""


_SESSION = threading.local()  # one pool of kept-alive connections per sending thread


def _http() -> requests.Session:
    session = getattr(_SESSION, "session", None)
    if session is None:
        session = _SESSION.session = requests.Session()
    return session


@functools.cache
def _pooled_sms_service_class() -> type:
    """The SDK's SMS service, its requests sent over a kept-alive connection pool. The SDK
    itself posts with ``requests.post``, a new session and connection (and in production a new
    TLS handshake) per message: about 2 ms of CPU per reply, measured (docs/PERFORMANCE.md).
    The SDK still builds every request (URL, headers, form) and its errors are the SDK's."""
    from africastalking.Service import AfricasTalkingException
    from africastalking.SMS import SMSService

    class PooledSMSService(SMSService):
        def _make_request(self, url, method, headers, data, params, callback=None, **options):
            if method.upper() != "POST" or callback is not None:
                return super()._make_request(
                    url, method, headers, data, params, callback, **options
                )
            timeout = options.get("timeout", AT_TIMEOUT_SECONDS)
            res = _http().post(url=url, headers=headers, params=params, data=data, timeout=timeout)
            if not 200 <= res.status_code < 300:
                raise AfricasTalkingException(res.text)
            if res.headers.get("content-type") == "application/json":
                return res.json()
            return res.text

    return PooledSMSService


class AfricasTalkingSender:
    """Africa's Talking SMS through its Python SDK (PROVIDERS.md §5.2), connections kept."""

    def __init__(self, username: str, api_key: str, api_url: str | None = None):
        self.service = _pooled_sms_service_class()(username, api_key)
        if api_url:  # a sandbox or test double speaking the same protocol
            self.service._baseUrl = api_url.rstrip("/") + "/version1"

    def send(self, to: str, text: str) -> str:
        return self.send_many([to], text)[0].message_id_or_raise()

    def send_many(self, recipients: Sequence[str], text: str) -> list[Outcome]:
        """One SDK call for every recipient it can take; a recipient in a format it cannot
        take is refused here, unsent, and one given twice is failed (the caller never does)."""
        outcomes: dict[int, Outcome] = {}
        taken: dict[str, int] = {}  # recipient -> its place in ``recipients``
        for index, to in enumerate(recipients):
            if not AT_RECIPIENT.fullmatch(to):  # the SDK's own refusal would quote the number
                outcomes[index] = Outcome.refused(UNTAKEABLE)
            elif to in taken:
                outcomes[index] = Outcome.failed("the recipient came twice in one call")
            else:
                taken[to] = index
        if taken:
            answered = self._call(list(taken), text)
            outcomes.update(zip(taken.values(), answered, strict=True))
        return [outcomes[index] for index in range(len(recipients))]

    def _call(self, recipients: list[str], text: str) -> list[Outcome]:
        response, failure = at_request(lambda: self.service.send(text, recipients))
        if failure:  # turned into outcomes outside the except: no exception is kept
            return [Outcome.failed(failure)] * len(recipients)
        return _at_outcomes(response, recipients)


UNTAKEABLE = "Africa's Talking cannot take the recipient's format"
NOT_JSON = "Africa's Talking answered with something other than JSON"
SHAPELESS = "Africa's Talking answered in an unexpected shape"


def _at_outcomes(response: object, recipients: list[str]) -> list[Outcome]:
    """Each recipient's outcome from its own ``Recipients[]`` entry, matched by number.

    Nothing from the answer but the status code goes into a reason: the provider's texts may
    quote the number. An answer that is not JSON or not shaped as documented fails every
    recipient; a recipient it has no entry for fails alone.
    """
    parsed = _json(response) if isinstance(response, str | bytes) else response
    entries = None if parsed is None else _entries(parsed)
    if entries is None:
        failure = Outcome.failed(NOT_JSON if parsed is None else SHAPELESS)
        return [failure] * len(recipients)
    return [_at_outcome(entries.get(_digits(to), _MISSING)) for to in recipients]


def _at_outcome(entry: tuple[int, str] | None | object) -> Outcome:
    """A recipient's outcome from its entry: (statusCode, messageId), None if the entry is not
    shaped as documented, _MISSING if the answer has none for it."""
    if entry is _MISSING:
        return Outcome.failed("Africa's Talking answered nothing for the recipient")
    if not isinstance(entry, tuple):
        return Outcome.failed(SHAPELESS)
    status, message_id = entry
    reason = f"Africa's Talking status {status} {AT_STATUS.get(status, 'unknown')}"
    if status in AT_FINAL_REFUSALS:
        return Outcome.refused(reason)
    if status not in AT_ACCEPTED:
        return Outcome.failed(reason)
    return Outcome.sent(message_id)


_MISSING = object()


def _json(text: str | bytes) -> object | None:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _entries(response: object) -> dict[str, tuple[int, str] | None] | None:
    """The answer's ``Recipients[]`` by number, told by its digits (AT answers E.164; were
    it to leave out the plus, a message it sent must not be sent again): (statusCode,
    messageId), or None for an entry whose status is not shaped as documented (an entry naming
    no number is left out: no recipient can be told by it). None if the answer itself is not
    shaped as documented. Returns rather than raises: the errors caught here may quote the
    answer, and an exception raised inside ``except`` would keep them as context."""
    try:
        listed = response["SMSMessageData"]["Recipients"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(listed, list):
        return None
    entries: dict[str, tuple[int, str] | None] = {}
    for entry in listed:
        number = entry.get("number") if isinstance(entry, dict) else None
        if isinstance(number, str):
            entries.setdefault(_digits(number), _entry(entry))
    return entries


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


def _entry(entry: dict) -> tuple[int, str] | None:
    try:
        status = int(entry["statusCode"])
        message_id = str(entry.get("messageId") or "")
    except (KeyError, TypeError, ValueError):
        return None
    if not 100 <= status <= 999:  # int() takes "+2547..." too: a status is three digits
        return None
    return status, message_id


class OutboxSender:
    """Development: writes the text (never the number) to instance/outbox/ for a person to read."""

    def __init__(self, directory: Path):
        self.directory = directory

    def send(self, to: str, text: str) -> str:
        return write_note(self.directory, "sms", text + "\n")

    def send_many(self, recipients: Sequence[str], text: str) -> list[Outcome]:
        """A note per recipient, each the text alone."""
        return [Outcome.sent(self.send(to, text)) for to in recipients]


def sender_for(provider: str, config: Config) -> SmsSender:
    if provider == "at" and config.at_api_key and config.at_username:
        return AfricasTalkingSender(config.at_username, config.at_api_key, config.at_api_url)
    return OutboxSender(config.instance_dir / "outbox")


def seal_recipient(services: Services, recipient_e164: str) -> str:
    """The recipient as an outbox entry carries it: AES-GCM, for RECIPIENT_TTL_SECONDS."""
    return services.crypto.seal(recipient_e164, RECIPIENT_PURPOSE, RECIPIENT_TTL_SECONDS)


def reply_by_api(services: Services, provider: str, recipient_e164: str, text: str) -> None:
    """Put a reply in the outbox (gateway/outbox.py), whose drain sends it, outside a hop (a
    hop's reply goes there in its commit: conversation.Inbound.sealed_sender)."""
    services.outbox.add(provider, seal_recipient(services, recipient_e164), text)
