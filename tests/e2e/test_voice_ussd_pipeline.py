"""End to end on USSD and voice through the real thing: gunicorn, an RQ worker, the database and
Redis, driven over HTTP exactly as the providers call (issue 5, item 8).

Six workers enrol and answer the whole daily check-in: on Africa's Talking USSD in English and in
Bangla (the cumulative text, every screen within SPEC §4's limits, the Bangla consent paged with
98 and back with 00, the last screen END), on Twilio Voice in English and in Bangla (signed over
WORKERVOICE_PUBLIC_URL, following each <Gather> action), on Africa's Talking Voice in English (the
token in the query, following each <GetDigits> callbackUrl and a silence's <Redirect>), and one
across channels: two answers on USSD, the session dropped, the rest in a Twilio call that offers
Continue / Start again. A USSD hop and a voice turn sent twice are answered alike and recorded
once; every answer is stored once, with its channel; the brand reads the figures computed here
from the answers given; afterwards no phone number is in the database, Redis, the logs or the
instance files, and the AT webhook token is in no log.

A Swahili caller, for whom Twilio has no voice, hears prompts made by the real ``workervoice
audio synth sw`` in a copy of locales/, which gunicorn then serves as cacheable WAV.

As in the SMS end-to-end test, the check-in's daily rotation (``sample``) is taken out of a copy
of the flows, so that every question is asked.
"""

from __future__ import annotations

import io
import re
import secrets
import shutil
import subprocess
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

import pytest
import requests
from sqlalchemy import select

from gateway.audio import AUDIO_DIR
from gateway.config import Config
from gateway.engine import words
from gateway.engine.definition import load_flows
from gateway.engine.model import NUMBER, Question
from gateway.engine.texts import language_name
from gateway.i18n import Texts
from gateway.services import Services
from store.models import Answer

from ..conftest import AT_TOKEN, ROOT, USED, environ_for
from ..leaks import assert_no_numbers
from ..support import PUBLIC_URL, add_brand, add_workplace, twilio_signature
from .processes import BIN, Processes, flows_without_rotation

CODE = "4321"
K = 5  # WORKERVOICE_MIN_RESPONDENTS in the test environment
TWILIO_PATH, AT_VOICE_PATH, USSD_PATH = (
    "/webhooks/twilio/voice",
    "/webhooks/at/voice",
    "/webhooks/at/ussd",
)
PLAYS = "♪"  # a <Play> as the test notes it: ♪ and the clip, e.g. ♪sw/checkin/respect
TWILIO_LANGUAGES = {"en": "en-US", "bn": "bn-IN"}  # PROVIDERS.md §2.4 (no bn-BD voice)
SYNTH_TOOLS = ("espeak-ng", "sox")
FLOWS, TEXTS = load_flows(ROOT / "flows"), Texts.load(ROOT / "locales")
CHECKIN, ENROL = FLOWS["checkin"], FLOWS.enrol
# PROVIDERS.md §7.1 and §7.2: the GSM-7 basic set (ESC aside) and its extension table.
GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
OPTION = re.compile(r"^(\d+)\. (.+)$", re.MULTILINE)
Stored = dict[str, tuple[str | float | None, str]]  # an answer per question: (value, channel)


@dataclass(frozen=True)
class Worker:
    address: str
    language: str


# The workers of the main test, one column each of ANSWERS.
USSD_EN, USSD_BN = Worker("+254711000301", "en"), Worker("+8801711000302", "bn")
TWILIO_EN, TWILIO_BN = Worker("+8801711000303", "en"), Worker("+8801711000304", "bn")
AT_VOICE_EN, ACROSS = Worker("+254711000305", "en"), Worker("+8801711000306", "bn")
WORKERS = [USSD_EN, USSD_BN, TWILIO_EN, TWILIO_BN, AT_VOICE_EN, ACROSS]
ANSWERS = {  # question -> the answer of each worker above (option value, or number)
    "long_hours": ["yes", "yes", "yes", "no", "yes", "yes"],
    "long_hours_days": [3, 2, 5, None, 4, 2],
    "overtime_forced": ["no", "yes", "no", "no", "no", "no"],
    "paid_on_time": ["yes", "late", "yes", "short", "yes", "yes"],
    "deductions": ["no", "no", "yes", "no", "no", "no"],
    "fire_exits": ["yes", "unsure", "no", "yes", "yes", "yes"],
    "respect": ["no", "no", "no", "yes", "no", "no"],
    "free_to_leave": ["yes", "yes", "no", "yes", "yes", "yes"],
    "documents_held": ["no", "no", "no", "no", "yes", "no"],
    "pay_fairness": [3, 4, 2, 5, 1, 4],
}
SWAHILI = Worker("+254711000307", "sw")
SWAHILI_ANSWERS = {
    q: v
    for q, v in zip(
        ANSWERS, ["no", None, "yes", "late", "no", "unsure", "no", "yes", "no", 2], strict=True
    )
}


def answers_of(worker: Worker) -> dict[str, str | int | None]:
    if worker == SWAHILI:
        return SWAHILI_ANSWERS
    return {qid: column[WORKERS.index(worker)] for qid, column in ANSWERS.items()}


def plain(text: str) -> str:
    """Any run of whitespace as one space: prose is split over lines and pages."""
    return " ".join(text.split())


def flow_text(lang: str, msgid: str) -> str:
    return plain(TEXTS.flow(lang, msgid))


def press_for(lang: str, key: int, option: str) -> str:
    return plain(TEXTS.service(lang, words.PRESS_FOR).format(key=key, option=option))


# -- Africa's Talking USSD ----------------------------------------------------------------------
def assert_screen(reply: str) -> None:
    """CON/END and a screen within SPEC §4: 182 GSM-7 characters, the extension characters
    counting two, else 80 UTF-16 units. Measured here, independently of gateway/engine/screens."""
    assert reply[:4] in ("CON ", "END "), reply
    screen = reply[4:]
    if set(screen) <= GSM7 | GSM7_EXTENSION:
        length, limit = len(screen) + sum(ch in GSM7_EXTENSION for ch in screen), 182
    else:
        length, limit = len(screen.encode("utf-16-le")) // 2, 80
    assert 0 < length <= limit, f"a USSD screen of {length} (limit {limit}): {reply!r}"


class Handset:
    """A feature phone dialling the service code: each key press posted with the whole text so
    far (PROVIDERS.md §4.1), every reply checked against the limits."""

    def __init__(self, url: str, worker: Worker):
        self.url, self.worker = url, worker
        self.session_id = ""
        self.inputs: list[str] = []
        self.screens: list[str] = []

    def dial(self) -> str:
        self.session_id, self.inputs = "ATUid_" + secrets.token_hex(16), []
        return self.send()

    def press(self, key: str) -> str:
        self.inputs.append(key)
        return self.send()

    def send(self) -> str:
        """The request for the text so far (sent again: AT retrying the same hop)."""
        form = {
            "sessionId": self.session_id,
            "serviceCode": "*384*1234#",
            "phoneNumber": self.worker.address,
            "networkCode": "63902",
            "text": "*".join(self.inputs),
        }
        response = requests.post(
            self.url + USSD_PATH, params={"token": AT_TOKEN}, data=form, timeout=10
        )
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/plain")
        assert_screen(response.text)
        self.screens.append(response.text)
        return response.text

    def read(self, reply: str) -> list[str]:
        """Every page of a screen: 98 while the page offers a next one."""
        pages = [reply]
        while "\n98. " in pages[-1]:
            pages.append(self.press("98"))
            assert len(pages) < 8, pages
        return pages

    def ended(self) -> None:
        """AT's end-of-session notification (PROVIDERS.md §4.4), after the END screen."""
        text = "*".join(self.inputs)
        form = {
            "date": "2026-11-25 12:00:00",
            "sessionId": self.session_id,
            "serviceCode": "*384*1234#",
            "networkCode": "63902",
            "phoneNumber": self.worker.address,
            "status": "Success",
            "cost": "KES 0.10",
            "durationInMillis": "41000",
            "hopsCount": str(len(self.inputs) + 1),
            "input": text,
            "lastAppResponse": self.screens[-1],
        }
        response = requests.post(
            self.url + USSD_PATH + "/events", params={"token": AT_TOKEN}, data=form, timeout=10
        )
        assert response.status_code == 200 and response.text == "", response.text


def shown(pages: list[str]) -> str:
    """What the pages say, paging lines and CON/END left out."""
    lines = [
        ln for page in pages for ln in page[4:].split("\n") if not ln.startswith(("98. ", "00. "))
    ]
    return plain(" ".join(lines))


def numbered(pages: list[str]) -> dict[str, int]:
    """Option text -> its number on the screen, over every page."""
    return {
        text: int(n) for page in pages for n, text in OPTION.findall(page) if n not in ("98", "00")
    }


def on_screen(content: str, prompts: dict[str, str]) -> str | None:
    """The question whose prompt comes last in what the screen (or call) says."""
    found = [(content.rfind(text), qid) for text, qid in prompts.items() if text in content]
    return max(found)[1] if found else None


def paged_back(handset: Handset, pages: list[str]) -> None:
    """From the last page of a screen of three or more: 00 shows the page before, 98 the last."""
    lang = handset.worker.language
    more, back = TEXTS.service(lang, words.PAGE_NEXT), TEXTS.service(lang, words.PAGE_BACK)
    assert len(pages) >= 3, pages
    assert pages[0].endswith(f"\n98. {more}") and f"\n00. {back}" not in pages[0]
    assert pages[1].endswith(f"\n98. {more}\n00. {back}")
    assert pages[-1].endswith(f"\n00. {back}") and "\n98. " not in pages[-1]
    assert handset.press("00") == pages[-2]
    assert handset.press("98") == pages[-1]


def ussd_enrol(handset: Handset, page_back: bool = False) -> list[str]:
    """Dial, choose the language by its name, agree, key the code: the pages that follow."""
    lang = handset.worker.language
    menu = handset.read(handset.dial())
    assert flow_text(guess(handset.worker), ENROL.question("language").ask) in shown(menu)
    pages = handset.read(handset.press(str(numbered(menu)[language_name(lang)])))
    assert flow_text(lang, ENROL.question("consent").ask) in shown(pages), pages
    if page_back:
        paged_back(handset, pages)
    agree = numbered(pages)[TEXTS.flow(lang, ENROL.question("consent").option("agree").text)]
    pages = handset.read(handset.press(str(agree)))
    assert flow_text(lang, ENROL.question("workplace").ask) in shown(pages), pages
    pages = handset.read(handset.press(CODE))
    assert flow_text(lang, ENROL.finish) in shown(pages), pages
    return pages


def guess(worker: Worker) -> str:
    """The language spoken before the worker chose one: their country's (SPEC §4)."""
    return "bn" if worker.address.startswith("+880") else "sw"


def ussd_checkin(
    handset: Handset, pages: list[str], stop_after: int | None = None, retry_first: bool = False
) -> list[str]:
    """Answer each question on screen as ANSWERS says, until the END screen (or leave after
    ``stop_after`` answers); the questions answered, in order."""
    lang, given = handset.worker.language, answers_of(handset.worker)
    prompts = {flow_text(lang, q.ask): q.id for q in CHECKIN.questions}
    answered: list[str] = []
    while pages[-1].startswith("CON ") and len(answered) != stop_after:
        qid = on_screen(shown(pages), prompts)
        assert qid is not None and qid not in answered, pages
        question = CHECKIN.question(qid)
        key = str(given[qid])
        if question.type != NUMBER:
            option = question.option(str(given[qid]))
            number = numbered(pages)[TEXTS.flow(lang, option.text)]
            assert number == question.options.index(option) + 1  # in file order (SPEC §4)
            key = str(number)
        reply = handset.press(key)
        if retry_first and not answered:
            assert handset.send() == reply, "a retried hop was answered differently"
        pages = handset.read(reply)
        answered.append(qid)
    if stop_after is None:
        assert all(s.startswith("CON ") for s in handset.screens[:-1]) and pages[-1].startswith(
            "END "
        )
        assert flow_text(lang, CHECKIN.finish) in shown(pages), pages
        handset.ended()
    return answered


# -- voice: Twilio and Africa's Talking ---------------------------------------------------------
@dataclass
class Heard:
    """One voice document as the caller takes it: each <Say> text, or ♪ and the clip a <Play>
    plays; what the keys go to (None: the call ends); where silence goes."""

    body: str
    heard: list[str] = field(default_factory=list)
    says: list[dict[str, str]] = field(default_factory=list)  # each <Say>'s attributes
    plays: list[str] = field(default_factory=list)  # the URLs played
    keys: dict[str, str] | None = None  # the <Gather>/<GetDigits>, its URL as "action"
    redirect: str | None = None

    @property
    def text(self) -> str:
        return plain(" ".join(self.heard))

    def hears(self, lang: str, clip: str, msgid: str) -> bool:
        """Whether the document says the flow text: its recording, else the text itself."""
        if lang == SWAHILI.language:
            return f"{PLAYS}{lang}/{clip}" in self.heard
        return flow_text(lang, msgid) in self.text


def heard(body: str, keys_tag: str, url_attribute: str) -> Heard:
    root = ElementTree.fromstring(body)
    gather = root.find(keys_tag)
    out = Heard(body)
    if gather is not None:
        out.keys = {**gather.attrib, "action": gather.attrib[url_attribute]}
    for verb in list(gather) if gather is not None else list(root):
        if verb.tag == "Say":
            out.heard.append(plain(verb.text or ""))
            out.says.append(verb.attrib)
        elif verb.tag == "Play":
            url = (verb.get("url") or verb.text or "").strip()
            assert url.startswith(PUBLIC_URL + "/audio/"), url
            out.plays.append(url)
            out.heard.append(PLAYS + url.removeprefix(PUBLIC_URL + "/audio/").rsplit(".", 1)[0])
    redirect = root.find("Redirect")
    out.redirect = redirect.text.strip() if redirect is not None and redirect.text else None
    return out


class Call:
    """A call into the service: the first request, then wherever the last document sends."""

    path = ""

    def __init__(self, url: str, worker: Worker):
        self.url, self.worker = url, worker
        self.turns: list[Heard] = []
        self.last_request: tuple[str, dict[str, str]] = ("", {})

    def ring(self) -> Heard:
        raise NotImplementedError

    def press(self, digits: str) -> Heard:
        raise NotImplementedError

    def silence(self) -> Heard:
        raise NotImplementedError

    def hang_up(self) -> None:
        raise NotImplementedError

    def again(self) -> Heard:
        """The provider sends its last request once more."""
        return self.post(*self.last_request)

    def post(self, target: str, form: dict[str, str]) -> Heard:
        assert target.startswith(PUBLIC_URL + self.path), target
        self.last_request = (target, form)
        response = self.send(target, form)
        assert response.status_code == 200, response.text
        assert "xml" in response.headers["Content-Type"], response.headers
        self.turns.append(self.parse(response.text))
        return self.turns[-1]

    def send(self, target: str, form: dict[str, str]) -> requests.Response:
        parts = urlsplit(target)
        local = self.url + parts.path + (f"?{parts.query}" if parts.query else "")
        return requests.post(local, data=form, timeout=10, headers=self.headers(target, form))

    def headers(self, target: str, form: dict[str, str]) -> dict[str, str]:
        return {}

    def parse(self, body: str) -> Heard:
        raise NotImplementedError


class TwilioCall(Call):
    """Twilio Voice (PROVIDERS.md §2-§3): signed over the public URL, TwiML followed."""

    path = TWILIO_PATH

    def __init__(self, url: str, worker: Worker):
        super().__init__(url, worker)
        self.sid = "CA" + secrets.token_hex(16)

    def form(self, status: str = "in-progress", **extra: str) -> dict[str, str]:
        return {
            "CallSid": self.sid,
            "AccountSid": "AC" + "e" * 32,
            "From": self.worker.address,
            "To": "+14155550100",
            "CallStatus": status,
            "ApiVersion": "2010-04-01",
            "Direction": "inbound",
            **extra,
        }

    def ring(self) -> Heard:
        return self.post(PUBLIC_URL + TWILIO_PATH, self.form("ringing"))

    def press(self, digits: str) -> Heard:
        keys = self.turns[-1].keys
        assert keys is not None, "no <Gather> to press keys at"
        return self.post(keys["action"], self.form(Digits=digits))

    def silence(self) -> Heard:
        """No key by the timeout: actionOnEmptyResult has Twilio call the action anyway."""
        keys = self.turns[-1].keys
        assert keys is not None and keys["actionOnEmptyResult"] == "true", keys
        return self.post(keys["action"], self.form())

    def hang_up(self) -> None:
        """The call's status callback once the caller is gone."""
        form = self.form("completed", CallDuration="95")
        response = self.send(PUBLIC_URL + TWILIO_PATH, form)
        assert response.status_code == 200, response.text
        assert ElementTree.fromstring(response.text).find("Gather") is None

    def headers(self, target: str, form: dict[str, str]) -> dict[str, str]:
        path = target.removeprefix(PUBLIC_URL)
        return {"X-Twilio-Signature": twilio_signature(form, path=path)}

    def parse(self, body: str) -> Heard:
        turn = heard(body, "Gather", "action")
        root = ElementTree.fromstring(body)
        assert turn.keys is not None or root.find("Hangup") is not None, body
        return turn


class AtCall(Call):
    """Africa's Talking Voice (PROVIDERS.md §6): the token in the number's URL, GetDigits'
    callbackUrl followed, silence reported by the <Redirect>."""

    path = AT_VOICE_PATH

    def __init__(self, url: str, worker: Worker):
        super().__init__(url, worker)
        self.session_id = "ATVId_" + secrets.token_hex(16)

    def form(self, active: str = "1", **extra: str) -> dict[str, str]:
        return {
            "isActive": active,
            "sessionId": self.session_id,
            "direction": "Inbound",
            "callerNumber": self.worker.address,
            "destinationNumber": "+254711082130",
            "callerCountryCode": "254",
            "callerCarrierName": "Safaricom",
            "callStartTime": "2026-11-25 05:12:57",
            **extra,
        }

    def ring(self) -> Heard:
        return self.post(f"{PUBLIC_URL}{AT_VOICE_PATH}?token={AT_TOKEN}", self.form())

    def press(self, digits: str) -> Heard:
        keys = self.turns[-1].keys
        assert keys is not None, "no <GetDigits> to press keys at"
        return self.post(keys["action"], self.form(dtmfDigits=digits))

    def silence(self) -> Heard:
        redirect = self.turns[-1].redirect
        assert redirect is not None, self.turns[-1].body
        return self.post(redirect, self.form())

    def hang_up(self) -> None:
        form = self.form(
            "0",
            durationInSeconds="95",
            callSessionState="Completed",
            status="Success",
            amount="0.40",
            currencyCode="KES",
        )
        response = self.send(f"{PUBLIC_URL}{AT_VOICE_PATH}?token={AT_TOKEN}", form)
        assert response.status_code == 200 and response.text == "", response.text

    def parse(self, body: str) -> Heard:
        turn = heard(body, "GetDigits", "callbackUrl")
        assert len(turn.heard) == 1, body  # GetDigits nests exactly one <Say> or <Play>
        return turn


def menu_key(turn: Heard, lang: str) -> str:
    """The key the language menu gives the language, each language said in its own voice; a
    language with only a recording (Swahili) has the one key no <Say> announces."""
    assert turn.keys is not None and turn.keys["numDigits"] == "1", turn.body
    count = len(TEXTS.languages())
    announced = {
        other: key
        for other in TEXTS.languages()
        for key in range(1, count + 1)
        if press_for(other, key, language_name(other)) in turn.text
    }
    if lang in announced:
        return str(announced[lang])
    assert any(h.startswith(f"{PLAYS}{lang}/_service/") for h in turn.heard), turn.body
    (key,) = set(range(1, count + 1)) - set(announced.values())
    return str(key)


def option_key(
    turn: Heard, lang: str, question: Question, value: str, flow: str = "checkin"
) -> str:
    """The key of the option (options are numbered in file order), checked against what the
    caller hears: "press N for <option>" in the language, or the option's recording."""
    assert turn.keys is not None and turn.keys["numDigits"] == "1", turn.body
    option = question.option(value)
    assert option is not None
    key = question.options.index(option) + 1
    if lang == SWAHILI.language:
        prompt = turn.heard.index(f"{PLAYS}{lang}/{flow}/{question.id}")
        assert turn.heard.index(f"{PLAYS}{lang}/{flow}/{question.id}.{value}") == prompt + key
    else:
        assert press_for(lang, key, TEXTS.flow(lang, option.text)) in turn.text, turn.body
    return str(key)


def voice_enrol(call: Call) -> Heard:
    """Choose the language, agree, key the code (ended by #): the turn that follows."""
    lang = call.worker.language
    consent = call.press(menu_key(call.ring(), lang))
    assert consent.hears(lang, "enrol/consent", ENROL.question("consent").ask), consent.body
    code = call.press(option_key(consent, lang, ENROL.question("consent"), "agree", ENROL.id))
    assert code.hears(lang, "enrol/workplace", ENROL.question("workplace").ask), code.body
    assert (
        code.keys is not None and code.keys["finishOnKey"] == "#" and "numDigits" not in code.keys
    )
    first = call.press(CODE)
    assert first.hears(lang, "enrol/_finish", ENROL.finish), first.body
    return first


def voice_question(turn: Heard, lang: str) -> str | None:
    if lang == SWAHILI.language:
        clips = [h for h in turn.heard if h.startswith(f"{PLAYS}{lang}/{CHECKIN.id}/")]
        names = {h.rsplit("/", 1)[1] for h in clips}
        asked = [q.id for q in CHECKIN.questions if q.id in names]
        return asked[-1] if asked else None
    return on_screen(turn.text, {flow_text(lang, q.ask): q.id for q in CHECKIN.questions})


def voice_checkin(
    call: Call, turn: Heard, retry_first: bool = False, silence_first: bool = False
) -> list[str]:
    """Answer each question asked as the worker's answers say, until the call ends; the
    questions answered, in order."""
    lang, given = call.worker.language, answers_of(call.worker)
    answered: list[str] = []
    while turn.keys is not None:
        qid = voice_question(turn, lang)
        assert qid is not None and qid not in answered, turn.body
        question = CHECKIN.question(qid)
        if silence_first and not answered:
            turn = call.silence()  # asked again, after saying it heard nothing
            assert voice_question(turn, lang) == qid, turn.body
            assert plain(TEXTS.service(lang, words.NOT_HEARD)) in turn.text, turn.body
        if question.type == NUMBER:
            assert turn.keys["finishOnKey"] == "#" and "numDigits" not in turn.keys, turn.body
            key = str(given[qid])
        else:
            key = option_key(turn, lang, question, str(given[qid]))
        reply = call.press(key)
        if retry_first and not answered:
            assert call.again().body == reply.body, "a retried turn was answered differently"
        turn = reply
        answered.append(qid)
    assert turn.hears(lang, f"{CHECKIN.id}/_finish", CHECKIN.finish), turn.body
    call.hang_up()
    return answered


def assert_voices(call: Call) -> None:
    """After the language menu, every <Say> in the worker's language and Twilio's voice for it."""
    language = TWILIO_LANGUAGES[call.worker.language]
    for turn in call.turns[1:]:
        for say in turn.says:
            assert say["language"] == language, turn.body
            assert say["voice"].startswith(f"Google.{language}-"), turn.body


# -- the stack --------------------------------------------------------------------------------
@pytest.fixture
def stack(tmp_path, app, redis_url):
    """gunicorn + RQ worker on the suite's database, with copies of the flows (every question
    asked) and of locales/ (no audio but what a test makes), and Services seeing what they see."""
    flows, locales = flows_without_rotation(tmp_path), tmp_path / "locales"
    shutil.copytree(ROOT / "locales", locales, ignore=shutil.ignore_patterns(AUDIO_DIR))
    environ = environ_for(
        tmp_path,
        WORKERVOICE_ENV="production",
        WORKERVOICE_FLOWS_DIR=str(flows),
        WORKERVOICE_LOCALES_DIR=str(locales),
        REDIS_URL=redis_url,
    )
    environ["DATABASE_URL"] = app.extensions["workervoice"].config.database_url
    services = Services(Config.from_env(environ))
    assert services.config.min_respondents == K
    services.redis.flushdb()
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = Processes(environ, logs)
    processes.start()
    add_workplace(services, "dhaka-knit", CODE, "BD", "Asia/Dhaka")
    yield processes, services
    processes.stop()
    services.db.dispose()


def stored(services: Services) -> dict[str, Stored]:
    """Every stored answer: pseudonym -> question -> (value, channel); none stored twice."""
    with services.db.session() as session:
        rows = session.execute(
            select(
                Answer.pseudonym,
                Answer.question_id,
                Answer.value_text,
                Answer.value_number,
                Answer.channel,
            )
        ).all()
    out: dict[str, Stored] = {}
    for pseudonym, qid, text, number, channel in rows:
        assert qid not in out.get(pseudonym, {}), f"{qid} is stored twice for one worker"
        out.setdefault(pseudonym, {})[qid] = (text if number is None else number, channel)
    return out


def wait_until(done: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def expected_answers(
    services: Services, worker: Worker, channels: dict[str, str]
) -> tuple[str, Stored]:
    """The worker's pseudonym and the answers they gave, each on its channel (voice unless
    ``channels`` names another)."""
    pseudonym = services.identity.pseudonymise(worker.address).value
    given = {q: v for q, v in answers_of(worker).items() if v is not None}
    return pseudonym, {q: (v, channels.get(q, "voice")) for q, v in given.items()}


def figures(columns: list[dict[str, str | int | None]]) -> dict[str, float | None]:
    """The published figures, computed from the answers given: share of respondents giving a
    positive value, or the mean; suppressed (None) below K respondents."""
    out: dict[str, float | None] = {}
    for question in CHECKIN.questions:
        if question.indicator is None:
            continue
        values = [c[question.id] for c in columns if c[question.id] is not None]
        if len(values) < K:
            value = None
        elif question.indicator.measure == "mean":
            value = round(sum(float(v) for v in values) / len(values), 4)
        else:
            value = round(sum(v in question.indicator.positive for v in values) / len(values), 4)
        out[f"{CHECKIN.id}.{question.id}"] = value
    return out


def leak_scan(processes: Processes, services: Services, workers: list[Worker]) -> None:
    processes.stop()
    logs = processes.log_text()
    instance = processes.environ["WORKERVOICE_INSTANCE_DIR"]
    files = [p for p in Path(instance).rglob("*") if p.is_file()]
    written = "\n".join(p.read_bytes().decode("utf-8", "replace") for p in files)
    assert_no_numbers([w.address for w in workers], services, logs + written)
    assert AT_TOKEN not in logs, "the AT webhook token is in the logs"


# -- the tests --------------------------------------------------------------------------------
def asked(worker: Worker, skipped: tuple[str, ...] = ()) -> list[str]:
    """The check-in questions the worker is asked, in order: all but the follow-ups that do not
    apply to their answers (and those answered before, on another channel)."""
    given = answers_of(worker)
    return [q.id for q in CHECKIN.questions if given[q.id] is not None and q.id not in skipped]


def dropped_on_ussd_finished_by_voice(url: str, services: Services) -> list[str]:
    """Two answers on USSD, then the session is dropped (no more hops, no end notification);
    later the worker calls, presses 1 to continue, and the call asks only the rest."""
    handset = Handset(url, ACROSS)
    on_ussd = ussd_checkin(handset, ussd_enrol(handset), stop_after=2)
    assert on_ussd == ["long_hours", "long_hours_days"]
    pseudonym = services.identity.pseudonymise(ACROSS.address).value
    wait_until(lambda: len(stored(services).get(pseudonym, {})) == 2, "the answers on USSD")
    call = TwilioCall(url, ACROSS)
    resume = call.ring()
    assert resume.keys is not None and resume.keys["numDigits"] == "1", resume.body
    assert plain(TEXTS.service("bn", words.RESUME)) in resume.text, resume.body
    for key, word in ((1, words.CONTINUE), (2, words.START_AGAIN)):
        assert press_for("bn", key, TEXTS.service("bn", word)) in resume.text, resume.body
    assert voice_checkin(call, call.press("1")) == asked(ACROSS, skipped=tuple(on_ussd))
    assert_voices(call)
    return on_ussd


def test_journeys_on_ussd_and_voice_land_in_one_set_of_figures(stack):
    """Six workers on five channel and language pairs, one of them across two channels: each
    asked every question once, each answer stored once with its channel, and the brand's figures
    those of the answers given."""
    processes, services = stack
    url = processes.url
    brand = add_brand(services, "brand-a", grants=("dhaka-knit",))

    handset = Handset(url, USSD_EN)
    assert ussd_checkin(handset, ussd_enrol(handset), retry_first=True) == asked(USSD_EN)
    handset = Handset(url, USSD_BN)
    assert ussd_checkin(handset, ussd_enrol(handset, page_back=True)) == asked(USSD_BN)
    call = TwilioCall(url, TWILIO_EN)
    assert voice_checkin(call, voice_enrol(call), retry_first=True) == asked(TWILIO_EN)
    assert_voices(call)
    call = TwilioCall(url, TWILIO_BN)
    assert voice_checkin(call, voice_enrol(call), silence_first=True) == asked(TWILIO_BN)
    assert_voices(call)
    call = AtCall(url, AT_VOICE_EN)
    assert voice_checkin(call, voice_enrol(call), silence_first=True) == asked(AT_VOICE_EN)
    on_ussd = dropped_on_ussd_finished_by_voice(url, services)

    everything = {q.id: "ussd" for q in CHECKIN.questions}
    want = dict(
        [expected_answers(services, w, everything) for w in (USSD_EN, USSD_BN)]
        + [expected_answers(services, w, {}) for w in (TWILIO_EN, TWILIO_BN, AT_VOICE_EN)]
        + [expected_answers(services, ACROSS, {q: "ussd" for q in on_ussd})]
    )
    total = sum(len(given) for given in want.values())
    wait_until(lambda: sum(map(len, stored(services).values())) >= total, "every answer")
    time.sleep(0.3)  # a duplicate persisted late would show now
    assert stored(services) == want

    response = requests.get(
        f"{url}/api/v1/workplaces/dhaka-knit/indicators?days=7",
        timeout=10,
        headers={"Authorization": f"Bearer {brand}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["respondents"] == len(WORKERS)
    published = {i["id"]: i["value"] for i in body["indicators"]}
    assert published == figures([answers_of(w) for w in WORKERS])
    leak_scan(processes, services, WORKERS)
    USED["e2e_voice_ussd"] = "gunicorn+rq-worker"


@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in SYNTH_TOOLS),
    reason="Swahili by voice needs prompts synthesised with espeak-ng and sox "
    "(apt-get install espeak-ng sox)",
)
def test_swahili_caller_hears_synthesised_prompts(stack):
    """Twilio has no Swahili voice: after ``workervoice audio synth sw`` (the real command, into
    the stack's copy of locales/) a Kenyan caller choosing Kiswahili hears every prompt as a
    <Play> of /audio/sw/..., which gunicorn serves as cacheable 8 kHz WAV."""
    processes, services = stack
    workervoice = shutil.which("workervoice", path=str(BIN)) or "workervoice"
    made = subprocess.run(
        [workervoice, "audio", "synth", "sw"],
        env=processes.environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    assert re.search(r"^sw: [1-9]\d* made", made.stdout, re.MULTILINE), made.stdout

    call = TwilioCall(processes.url, SWAHILI)
    answered = voice_checkin(call, voice_enrol(call))
    assert answered == [q for q, v in SWAHILI_ANSWERS.items() if v is not None]
    assert call.turns[0].heard[0] == f"{PLAYS}sw/enrol/language"  # the menu opens in Swahili
    for turn in call.turns[1:]:
        assert not turn.says and turn.plays, turn.body  # Twilio has no Swahili voice
        assert all(u.startswith(f"{PUBLIC_URL}/audio/sw/") for u in turn.plays), turn.body

    for played in sorted({u for turn in call.turns for u in turn.plays if "/audio/sw/" in u}):
        audio = requests.get(processes.url + played.removeprefix(PUBLIC_URL), timeout=10)
        assert audio.status_code == 200, played
        assert audio.headers["Content-Type"] == "audio/wav"
        assert "public" in audio.headers["Cache-Control"]
        assert "max-age=86400" in audio.headers["Cache-Control"]
        assert audio.headers["Last-Modified"] and audio.headers["ETag"]
        with wave.open(io.BytesIO(audio.content)) as clip:
            assert (clip.getframerate(), clip.getnchannels()) == (8000, 1)
            assert clip.getnframes() > 0
        cached = requests.get(
            processes.url + played.removeprefix(PUBLIC_URL),
            timeout=10,
            headers={"If-None-Match": audio.headers["ETag"]},
        )
        assert cached.status_code == 304

    pseudonym, want = expected_answers(services, SWAHILI, {})
    wait_until(lambda: len(stored(services).get(pseudonym, {})) >= len(want), "every answer")
    assert stored(services) == {pseudonym: want}
    leak_scan(processes, services, [SWAHILI])
    USED["e2e_voice_sw"] = "synthesised-audio"
