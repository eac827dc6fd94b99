"""Helpers shared by the tests: signed provider requests, records, running queued jobs."""

from __future__ import annotations

import itertools
import re
from xml.etree import ElementTree

from rq import SimpleWorker
from twilio.request_validator import RequestValidator

from gateway.queues import QUEUES
from gateway.services import Services
from store import directory

from .conftest import AT_TOKEN, TWILIO_TOKEN

PUBLIC_URL = "https://gateway.example.org"
TWILIO_PATH = "/webhooks/twilio/sms"
_ids = itertools.count(1)


def message_id(prefix: str = "SM") -> str:
    return f"{prefix}{next(_ids):032x}"


def twilio_signature(
    form: dict, path: str = TWILIO_PATH, token: str = TWILIO_TOKEN, public_url: str = PUBLIC_URL
) -> str:
    return RequestValidator(token).compute_signature(public_url + path, form)


def twilio_sms_form(sender: str, body: str, sid: str | None = None, **extra: str) -> dict:
    """A Twilio inbound SMS as PROVIDERS.md §1.1 shows it."""
    sid = sid or message_id()
    form = {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": "+14155550100",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": "AC" + "e" * 32,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }
    form.update(extra)
    return form


def post_twilio(client, form: dict, signature: str | None = None):
    signature = twilio_signature(form) if signature is None else signature
    return client.post(TWILIO_PATH, data=form, headers={"X-Twilio-Signature": signature})


def twiml_text(response) -> str:
    """The text of the <Message> in a TwiML reply ('' for an empty <Response/>)."""
    root = ElementTree.fromstring(response.get_data())
    return "\n".join(m.text or "" for m in root.iter("Message"))


def at_sms_form(sender: str, text: str, msg_id: str | None = None, **extra: str) -> dict:
    """An Africa's Talking incoming SMS as PROVIDERS.md §5.1 shows it."""
    form = {
        "from": sender,
        "to": "28901",
        "text": text,
        "date": "2026-11-25T08:34:18.445Z",
        "id": msg_id or message_id("ATXid_"),
        "linkId": "SampleLinkId123",
        "networkCode": "63902",
    }
    form.update(extra)
    return form


def post_at_sms(client, form: dict, token: str | None = AT_TOKEN):
    query = f"?token={token}" if token is not None else ""
    return client.post("/webhooks/at/sms" + query, data=form)


def run_jobs(app) -> None:
    """Run every queued job now with a real RQ worker (no-op on the embedded default, where
    jobs ran as they were queued)."""
    services: Services = app.extensions["workervoice"]
    if services.config.embedded_redis:
        return
    with app.app_context():
        SimpleWorker(list(QUEUES), connection=services.redis).work(burst=True)


def add_workplace(
    services: Services,
    slug: str = "dhaka-knit",
    code: str = "4321",
    country: str = "BD",
    timezone: str = "Asia/Dhaka",
) -> str:
    """Create a workplace; return its token."""
    with services.db.session() as session:
        _, token = directory.add_workplace(
            session,
            slug,
            name=slug.replace("-", " ").title(),
            country=country,
            code=code,
            timezone=timezone,
        )
    return token


def add_brand(services: Services, slug: str = "brand-a", grants: tuple[str, ...] = ()) -> str:
    """Create a brand granted the given workplaces; return its token."""
    with services.db.session() as session:
        _, token = directory.add_brand(
            session, slug, name=slug.title(), email=f"{slug}@example.org"
        )
    with services.db.session() as session:
        for workplace in grants:
            directory.grant(session, workplace, slug)
    return token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def options(text: str) -> list[str]:
    """The numbered option texts of a rendered prompt, in order."""
    return re.findall(r"^\d+\. (.+)$", text, flags=re.MULTILINE)


class SmsWorker:
    """A worker texting the service over Twilio, for conversation-level tests."""

    def __init__(self, client, phone: str):
        self.client = client
        self.phone = phone

    def send(self, body: str) -> str:
        response = post_twilio(self.client, twilio_sms_form(self.phone, body))
        assert response.status_code == 200, response.get_data(as_text=True)
        return twiml_text(response)

    def enrol(self, code: str = "4321", language_choice: str = "2") -> str:
        """Say hello, pick a language (English is 2 for a Bangladeshi number), agree, give the
        code; return the first check-in question."""
        self.send("hello")
        self.send(language_choice)
        self.send("1")
        return self.send(code)
