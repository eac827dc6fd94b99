"""Sending SMS to a worker through a provider API, from a job.

The job payload carries the recipient only as a sealed token (AES-GCM, expiring with the job);
the number is opened inside the job, handed to the provider SDK and forgotten. ``SmsSender`` is
the port; ``AfricasTalkingSender`` and ``OutboxSender`` implement it.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
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


class SmsSender(Protocol):
    def send(self, to: str, text: str) -> str:
        """Send ``text`` to the E.164 number ``to``; return the provider's message id."""


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
        if not AT_RECIPIENT.fullmatch(to):  # the SDK's own refusal would quote the number
            raise SendRefused("Africa's Talking cannot take the recipient's format")
        response, failure = at_request(lambda: self.service.send(text, [to]))
        if failure:  # raised here, outside the except: no exception quoting the number is kept
            raise SendError(failure)
        return _at_message_id(response)


def _at_message_id(response: object) -> str:
    """The message id from a send answer, or SendError/SendRefused naming only the status.

    Nothing from the answer but the status code goes into the exception: the provider's texts
    may quote the number.
    """
    parsed = _json(response) if isinstance(response, str | bytes) else response
    if parsed is None:
        raise SendError("Africa's Talking answered with something other than JSON")
    first = _first_recipient(parsed)
    if first is _SHAPELESS:
        raise SendError("Africa's Talking answered in an unexpected shape")
    if first is None:
        raise SendError("Africa's Talking accepted no recipient")
    status, message_id = first
    name = AT_STATUS.get(status, "unknown")
    if status in AT_FINAL_REFUSALS:
        raise SendRefused(f"Africa's Talking status {status} {name}")
    if status not in AT_ACCEPTED:
        raise SendError(f"Africa's Talking status {status} {name}")
    return message_id


_SHAPELESS = object()


def _json(text: str | bytes) -> object | None:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _first_recipient(response: object):
    """(statusCode, messageId) of the first recipient; None if there is none; _SHAPELESS if the
    answer is not shaped as documented. Returns rather than raises: the errors caught here may
    quote the answer, and an exception raised inside ``except`` would keep them as context."""
    try:
        recipients = response["SMSMessageData"]["Recipients"]  # type: ignore[index]
        if not recipients:
            return None
        first = recipients[0]
        status = int(first["statusCode"])
        message_id = str(first.get("messageId") or "")
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return _SHAPELESS
    if not 100 <= status <= 999:  # int() takes "+2547..." too: a status is three digits
        return _SHAPELESS
    return status, message_id


class OutboxSender:
    """Development: writes the text (never the number) to instance/outbox/ for a person to read."""

    def __init__(self, directory: Path):
        self.directory = directory

    def send(self, to: str, text: str) -> str:
        return write_note(self.directory, "sms", text + "\n")


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
