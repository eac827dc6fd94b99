"""``workervoice simulate {sms,ussd,voice} PHONE``: use a running service as a worker's phone.

Each simulator drives the real webhooks exactly as the provider would and shows what the phone
would show or say; nothing here is stored (the service pseudonymises the number as usual).

- sms: each line typed is a Twilio SMS webhook, signed with this instance's Twilio token over
  WORKERVOICE_PUBLIC_URL; the TwiML reply is printed as the phone shows it.
- ussd: an Africa's Talking USSD session: the text sent is cumulative (inputs joined by ``*``),
  the screen after ``CON``/``END`` is printed; an END closes the session (Enter dials again).
- voice: a Twilio call: the TwiML is read aloud as text (``<Say>``), or as the clip it plays
  (``<Play>``); keys are typed at a ``<Gather>`` (an empty line is silence), ``<Redirect>`` is
  followed, ``h`` hangs up.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

import click
import requests
from twilio.request_validator import RequestValidator

from .audio_synth import MANIFEST, read_manifest

SMS_PATH = "/webhooks/twilio/sms"
USSD_PATH = "/webhooks/at/ussd"
VOICE_PATH = "/webhooks/twilio/voice"
SERVICE_NUMBER = "+15005550006"
TIMEOUT = 15


class Unreachable(click.ClickException):
    def __init__(self, url: str, exc: Exception):
        super().__init__(f"cannot reach {url}: {type(exc).__name__}")


def _lines(prompt: str) -> Callable[[], str | None]:
    def read() -> str | None:
        try:
            return input(prompt)
        except EOFError:
            return None

    return read


# -- SMS -------------------------------------------------------------------------------------


def send(url: str, public_url: str, token: str, phone: str, body: str) -> str:
    form = {
        "From": phone,
        "To": SERVICE_NUMBER,
        "Body": body,
        "MessageSid": "SM" + secrets.token_hex(16),
        "NumMedia": "0",
        "NumSegments": "1",
    }
    signature = RequestValidator(token).compute_signature(public_url + SMS_PATH, form)
    response = requests.post(
        url.rstrip("/") + SMS_PATH,
        data=form,
        timeout=TIMEOUT,
        headers={"X-Twilio-Signature": signature},
    )
    if response.status_code != 200:
        return f"[{response.status_code}] {response.text.strip()}"
    root = ElementTree.fromstring(response.content)
    messages = [m.text or "" for m in root.iter("Message")]
    return "\n".join(messages) if messages else "[no reply]"


def run(url: str, public_url: str, token: str, phone: str) -> None:
    click.echo(f"Texting {url} as a worker. Type a message, or an empty line to quit.")
    read = _lines("> ")
    while True:
        body = read()
        if body is None or not body.strip():
            return
        try:
            click.echo(send(url, public_url, token, phone, body))
        except requests.RequestException as exc:
            raise Unreachable(url, exc) from None


# -- USSD ------------------------------------------------------------------------------------


@dataclass
class UssdPhone:
    """One handset dialling the service code: the session id and the inputs so far."""

    url: str
    token: str
    phone: str
    service_code: str = "*384*1234#"
    session_id: str = ""
    inputs: list[str] = field(default_factory=list)

    def dial(self) -> str:
        self.session_id = "ATUid_" + secrets.token_hex(16)
        self.inputs = []
        return self._post()

    def reply(self, text: str) -> str:
        self.inputs.append(text)
        return self._post()

    def _post(self) -> str:
        form = {
            "sessionId": self.session_id,
            "serviceCode": self.service_code,
            "phoneNumber": self.phone,
            "networkCode": "63902",
            "text": "*".join(self.inputs),
        }
        response = requests.post(
            self.url.rstrip("/") + USSD_PATH,
            params={"token": self.token},
            data=form,
            timeout=TIMEOUT,
        )
        if response.status_code != 200:
            return f"END [{response.status_code}] {response.text.strip()}"
        return response.text


def run_ussd(url: str, token: str, phone: str) -> None:
    click.echo(f"Dialling {url} as a feature phone. Type a reply; Enter on an ended session")
    click.echo("dials again; an empty line during a session sends an empty reply; q quits.")
    handset = UssdPhone(url, token, phone)
    read = _lines("> ")
    try:
        screen = handset.dial()
        while True:
            kind, _, text = screen.partition(" ")
            click.echo(_boxed(text))
            line = read()
            if line is None or line.strip().lower() == "q":
                return
            if kind != "CON":
                click.echo("[session ended]")
                screen = handset.dial()
                continue
            screen = handset.reply(line.strip())
    except requests.RequestException as exc:
        raise Unreachable(url, exc) from None


def _boxed(text: str) -> str:
    rule = "-" * 32
    return f"{rule}\n{text}\n{rule}"


# -- voice -----------------------------------------------------------------------------------


@dataclass
class Call:
    """One Twilio call into the service: signed requests, TwiML read in order."""

    url: str
    public_url: str
    token: str
    phone: str
    sid: str = field(default_factory=lambda: "CA" + secrets.token_hex(16))

    def post(self, target: str, **extra: str) -> ElementTree.Element | str:
        """POST to a TwiML URL (absolute, under the public URL, or a path) as Twilio would."""
        public = target if "://" in target else self.public_url + target
        parts = urlsplit(public)
        local = self.url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
        form = {
            "CallSid": self.sid,
            "AccountSid": "AC" + "0" * 32,
            "From": self.phone,
            "To": SERVICE_NUMBER,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
            **extra,
        }
        signature = RequestValidator(self.token).compute_signature(public, form)
        response = requests.post(
            local, data=form, timeout=TIMEOUT, headers={"X-Twilio-Signature": signature}
        )
        if response.status_code != 200:
            return f"[{response.status_code}] {response.text.strip()}"
        return ElementTree.fromstring(response.content)


def spoken(element: ElementTree.Element, clips: Clips | None = None) -> list[str]:
    """What the caller hears from <Say> and <Play> elements, in order: a played clip by the
    text it says, where this instance's audio manifests know it."""
    heard = []
    for node in element.iter():
        if node.tag == "Say":
            heard.append(f"({node.get('language') or 'en'}) {(node.text or '').strip()}")
        elif node.tag == "Play":
            url = (node.text or node.get("url") or "").strip()
            said = clips.text(url) if clips is not None else None
            heard.append(f"[plays {urlsplit(url).path}] {said}" if said else f"[plays {url}]")
    return heard


class Clips:
    """What each clip says, from the audio manifests under a locales directory (written by
    ``workervoice audio synth``), so the simulator can show a played prompt as words."""

    def __init__(self, locales_dir: Path):
        self.locales_dir = locales_dir
        self._known: dict[str, dict[str, str]] = {}

    def text(self, url: str) -> str | None:
        path = urlsplit(url).path.removeprefix("/audio/")
        language, _, clip = path.partition("/")
        if language not in self._known:
            entries = read_manifest(self.locales_dir / language / "audio" / MANIFEST)
            self._known[language] = {name: entry.text for name, entry in entries.items()}
        return self._known[language].get(clip.rsplit(".", 1)[0])


def run_voice(
    url: str, public_url: str, token: str, phone: str, clips: Clips | None = None
) -> None:
    click.echo(f"Calling {url} as a worker. Type keys at a prompt (e.g. 1, or 4321#);")
    click.echo("an empty line is silence; h hangs up; q quits.")
    call = Call(url, public_url, token, phone)
    read = _lines("keys> ")
    try:
        document = call.post(VOICE_PATH, CallStatus="ringing")
        while True:
            if isinstance(document, str):
                click.echo(document)
                return
            next_document = _play(call, document, read, clips)
            if next_document is None:
                return
            document = next_document
    except requests.RequestException as exc:
        raise Unreachable(url, exc) from None


def _play(
    call: Call, document: ElementTree.Element, read, clips: Clips | None
) -> ElementTree.Element | str | None:
    """Read one TwiML document to the caller; the next document, or None when the call ends."""
    for verb in document:
        if verb.tag in ("Say", "Play"):
            for line in spoken(verb, clips):
                click.echo(line)
        elif verb.tag == "Gather":
            for line in spoken(verb, clips):
                click.echo(line)
            keys = read()
            if keys is None or keys.strip().lower() == "q":
                return None
            keys = keys.strip()
            if keys.lower() == "h":
                call.post(VOICE_PATH, CallStatus="completed")
                click.echo("[you hung up]")
                return None
            if not keys:
                click.echo("[silence]")
                if verb.get("actionOnEmptyResult") != "true":
                    continue  # Twilio goes on with the next verb
            digits = keys.rstrip("#") if verb.get("finishOnKey", "#") == "#" else keys
            return call.post(verb.get("action") or VOICE_PATH, Digits=digits)
        elif verb.tag == "Redirect":
            return call.post((verb.text or VOICE_PATH).strip())
        elif verb.tag == "Hangup":
            click.echo("[the service hung up]")
            return None
        elif verb.tag == "Reject":
            click.echo("[call rejected, free of charge: the service calls you back]")
            return None
    click.echo("[call ended]")
    return None
