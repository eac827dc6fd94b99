"""``workervoice simulate sms PHONE``: talk to a running service as a worker would.

Each line typed is sent as a Twilio SMS webhook, signed with this instance's Twilio token over
WORKERVOICE_PUBLIC_URL, to the service at ``--url``; the TwiML reply is printed as the worker's
phone would show it. Nothing here is stored: the service pseudonymises the number as usual.
"""

from __future__ import annotations

import secrets
from xml.etree import ElementTree

import click
import requests
from twilio.request_validator import RequestValidator

PATH = "/webhooks/twilio/sms"


def send(url: str, public_url: str, token: str, phone: str, body: str) -> str:
    form = {
        "From": phone,
        "To": "+15005550006",
        "Body": body,
        "MessageSid": "SM" + secrets.token_hex(16),
        "NumMedia": "0",
        "NumSegments": "1",
    }
    signature = RequestValidator(token).compute_signature(public_url + PATH, form)
    response = requests.post(
        url.rstrip("/") + PATH, data=form, timeout=15, headers={"X-Twilio-Signature": signature}
    )
    if response.status_code != 200:
        return f"[{response.status_code}] {response.text.strip()}"
    root = ElementTree.fromstring(response.content)
    messages = [m.text or "" for m in root.iter("Message")]
    return "\n".join(messages) if messages else "[no reply]"


def run(url: str, public_url: str, token: str, phone: str) -> None:
    click.echo(f"Texting {url} as a worker. Type a message, or an empty line to quit.")
    while True:
        try:
            body = input("> ")
        except EOFError:
            return
        if not body.strip():
            return
        try:
            click.echo(send(url, public_url, token, phone, body))
        except requests.RequestException as exc:
            raise click.ClickException(f"cannot reach {url}: {type(exc).__name__}") from None
