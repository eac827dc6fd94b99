"""Placing a call to a worker through a provider API, from a job (the missed-call callback).

``VoiceCaller`` is the port; ``TwilioCaller``, ``AfricasTalkingCaller`` and ``OutboxCaller``
implement it. The number is handed to the provider SDK and forgotten: the SDKs' own errors may
quote it (an invalid-number message, an API body), so every failure here is turned into a reason
naming only a status or an error code, and raised outside the ``except`` that caught it, so no
exception quoting the number is chained to ours (gateway/providers.py does this for Africa's
Talking, for SMS and calls alike).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .outbound import AT_RECIPIENT
from .providers import at_request, write_note

if TYPE_CHECKING:
    from .config import Config

TWILIO_VOICE_PATH = "/webhooks/twilio/voice"  # where the answered call asks what to say
TWILIO_TIMEOUT_SECONDS = 10.0  # the SDK waits forever by default
TWILIO_NUMBER = re.compile(r"\+[1-9]\d{6,14}")  # E.164, what Twilio takes as To
# Twilio error codes that mean this number cannot be called, however often we try: invalid or
# unreachable number (21211, 21214, 21217, 13224), not permitted by the account's geographic or
# risk settings (21215, 21216, 13225), unverified on a trial account (21219).
TWILIO_FINAL_REFUSALS = {13224, 13225, 21211, 21214, 21215, 21216, 21217, 21219}
AT_QUEUED = "Queued"
# Statuses of an AT call entry that no retry changes (anything else, such as
# InsufficientCredit, may pass once the account is topped up).
AT_FINAL_REFUSALS = {"InvalidPhoneNumber", "DestinationNotSupported"}


class CallError(Exception):
    """The provider did not place the call; the job will be retried."""


class CallRefused(Exception):
    """The provider refused the call for good (invalid number, not allowed): never retried."""


class VoiceCaller(Protocol):
    def call(self, to: str, from_: str) -> str:
        """Ring the E.164 number ``to`` from the service's number ``from_``; when answered, the
        call enters the voice flow. Return the provider's call id."""


class TwilioCaller:
    """Twilio's Calls API through its Python SDK; the answered call fetches its TwiML from
    ``voice_url`` (PROVIDERS.md §2)."""

    def __init__(
        self, account_sid: str, auth_token: str, voice_url: str, api_url: str | None = None
    ):
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        http = TwilioHttpClient(timeout=TWILIO_TIMEOUT_SECONDS)
        self.client = Client(account_sid, auth_token, http_client=http)
        if api_url:  # a test double speaking the same protocol
            self.client.api.base_url = api_url.rstrip("/")
        self.voice_url = voice_url

    def call(self, to: str, from_: str) -> str:
        if not TWILIO_NUMBER.fullmatch(to):
            raise CallRefused("Twilio cannot take the callee's format")
        sid, failure, final = self._create(to, from_)
        if failure:  # raised here, outside the except: no exception quoting the number is kept
            raise (CallRefused if final else CallError)(failure)
        return sid

    def _create(self, to: str, from_: str) -> tuple[str, str | None, bool]:
        """(call sid, why there is none, whether that is final). Returns rather than raises:
        the SDK's exceptions carry Twilio's message, which quotes the number."""
        from twilio.base.exceptions import TwilioException, TwilioRestException

        try:
            placed = self.client.calls.create(to=to, from_=from_, url=self.voice_url, method="POST")
            sid = placed.sid
        except TwilioRestException as exc:
            return "", *_twilio_refusal(exc.status, exc.code)
        except TwilioException as exc:  # e.g. TwilioServiceException (RFC 9457 problem details)
            return "", *_twilio_refusal(getattr(exc, "status", None), getattr(exc, "code", None))
        except ValueError:  # a 2xx body that is not JSON
            return "", "Twilio answered with something other than JSON", False
        except (AttributeError, KeyError, TypeError):  # JSON, but not a call resource
            return "", "Twilio answered in an unexpected shape", False
        except OSError as exc:  # requests' connection errors and timeouts
            return "", f"Twilio unreachable: {type(exc).__name__}", False
        if not isinstance(sid, str) or not sid:
            return "", "Twilio answered without a call sid", False
        return sid, None, False


def _twilio_refusal(status: object, code: object) -> tuple[str, bool]:
    """Why Twilio did not place the call, naming only the HTTP status and the error code, and
    whether no retry can help."""
    status_ = status if isinstance(status, int) else "?"
    code_ = code if isinstance(code, int) else None
    reason = f"Twilio answered HTTP {status_} error {code_ if code_ else 'without a code'}"
    return reason, code_ in TWILIO_FINAL_REFUSALS


class AfricasTalkingCaller:
    """Africa's Talking Voice ``call`` through its Python SDK (PROVIDERS.md §6). The answered
    call then reaches the number's callback URL, /webhooks/at/voice, as an outbound session."""

    def __init__(self, username: str, api_key: str, api_url: str | None = None):
        from africastalking.Voice import VoiceService

        self.service = VoiceService(username, api_key)
        if api_url:  # a sandbox or test double speaking the same protocol
            self.service._baseUrl = api_url.rstrip("/")

    def call(self, to: str, from_: str) -> str:
        if not AT_RECIPIENT.fullmatch(to):  # the SDK's own refusal would quote the number
            raise CallRefused("Africa's Talking cannot take the callee's format")
        response, failure = at_request(lambda: self.service.call(callFrom=from_, callTo=[to]))
        if failure:
            raise CallError(failure)
        return _at_session_id(response)


def _at_session_id(response: object) -> str:
    """The call's session id from a call answer, or CallError/CallRefused naming only the status.

    The answer is ``{"entries": [{"phoneNumber", "status", "sessionId"}], "errorMessage"}``;
    nothing from it but a known status goes into the exception (the rest may quote the number).
    """
    if isinstance(response, str | bytes):
        response = _json(response)
        if response is None:
            raise CallError("Africa's Talking answered with something other than JSON")
    entry = _first_entry(response)
    if entry is None:
        raise CallError("Africa's Talking placed no call")
    status, session_id = entry
    if status == AT_QUEUED and session_id:
        return session_id
    if status in AT_FINAL_REFUSALS:
        raise CallRefused(f"Africa's Talking status {status}")
    known = status if status.isalpha() and len(status) <= 40 else "unknown"
    raise CallError(f"Africa's Talking status {known}")


def _json(text: str | bytes) -> object | None:
    """The parsed text, or None; returns rather than raises, as the error holds the text."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _first_entry(response: object) -> tuple[str, str] | None:
    """(status, sessionId) of the first entry, or None if there is none or the answer is not
    shaped as documented."""
    if not isinstance(response, dict):
        return None
    entries = response.get("entries")
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        return None
    status, session_id = entries[0].get("status"), entries[0].get("sessionId")
    if not isinstance(status, str):
        return None
    return status, session_id if isinstance(session_id, str) else ""


OUTBOX_NOTE = "call placed from the callback number of workplace {}\n"


class OutboxCaller:
    """Development: notes in instance/outbox/ that a call was placed, and for which workplace
    (whose callback number it rang from); no number at all, neither the callee nor the
    service's own (SPEC §6)."""

    def __init__(self, directory: Path, workplace: str):
        self.directory = directory
        self.workplace = workplace

    def call(self, to: str, from_: str) -> str:
        return write_note(self.directory, "call", OUTBOX_NOTE.format(self.workplace))


def caller_for(provider: str, config: Config, workplace: str) -> VoiceCaller:
    """The provider's caller when its credentials are configured, else the outbox, which names
    the call by the ``workplace`` (slug) whose callback number it is placed from."""
    if provider == "twilio" and config.twilio_account_sid and config.twilio_auth_token:
        return TwilioCaller(
            config.twilio_account_sid,
            config.twilio_auth_token,
            config.public_url + TWILIO_VOICE_PATH,
            config.twilio_api_url,
        )
    if provider == "at" and config.at_api_key and config.at_username:
        return AfricasTalkingCaller(config.at_username, config.at_api_key, config.at_api_url)
    return OutboxCaller(config.instance_dir / "outbox", workplace)
