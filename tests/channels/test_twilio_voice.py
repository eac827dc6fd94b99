"""POST /webhooks/twilio/voice: Twilio Voice (PROVIDERS.md §2, §3).

Every request goes through the shared harness (tests/channels/harness.py): status and body,
what reached the shared handler, the jobs queued, nothing changed by a refusal, a retry answered
alike, and the caller's number nowhere. Walks through a whole call follow the TwiML's own
``action`` URLs, one harness case per turn, as Twilio would.
"""

from __future__ import annotations

import json
import shutil
import wave
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree

import pytest
from sqlalchemy import select

from gateway import callbacks, speech
from gateway.audio import AudioLibrary
from gateway.channels import twilio_voice, voice
from gateway.engine import words
from gateway.engine.texts import language_name
from gateway.engine.voices import TWILIO_TTS_LANGUAGES
from gateway.flows import FlowRegistry
from store import directory
from store.models import Worker

from ..conftest import ROOT
from ..support import PUBLIC_URL, add_workplace, twilio_signature
from .harness import (
    TWILIO_VOICE,
    WORKPLACE_CODE,
    Case,
    Recorded,
    Run,
    answers,
    checks,
    no_session,
    one_session,
    run_case,
    worker_keys,
)

BD = "+8801711283946"  # the caller most cases are about
SID = "CA0123456789abcdef0123456789abcdef"
OTHER_SID = "CAfedcba9876543210fedcba9876543210"
SERVICE = "+14155550100"  # the number the worker rings
CALLBACK = "+14155550199"  # a workplace's missed-call callback number
PATH = TWILIO_VOICE.path
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response />'
NOT_SIGNED = "invalid Twilio signature"
WELCOME_BN = "WorkerVoice-এ স্বাগতম"
CONSENT_EN = "Do you agree?"
NOT_HEARD = "We did not hear your answer."
WITHHELD = "Please call again with your number shown. WorkerVoice never stores it."
STAR_HINT = "Press the star key at any time to stop."
STAR_MENU = "Do you want to leave WorkerVoice? Any other key takes you back to your question."
STOPPED = "You have left WorkerVoice and your details are deleted. Send any message to join again."


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees its own once-per-process warnings (voice._warned), whatever ran first."""
    monkeypatch.setattr(voice, "_warned", set())


def call(sid: str = SID, caller: str = BD, status: str = "in-progress", **extra: str) -> dict:
    """A call request in the shape of PROVIDERS.md §2.1 (a Gather action adds ``Digits``)."""
    form = {
        "CallSid": sid,
        "AccountSid": "AC" + "e" * 32,
        "From": caller,
        "To": SERVICE,
        "CallStatus": status,
        "ApiVersion": "2010-04-01",
        "Direction": "inbound",
        "FromCountry": "BD",
        "ToCountry": "US",
        "ToState": "CA",
    }
    form.update(extra)
    return form


def keyed(digits: str, **extra: str) -> dict:
    return call(Digits=digits, **extra)


def hung_up(status: str = "completed", **extra: str) -> dict:
    """The status callback at the end of the call."""
    return call(status=status, CallDuration="42", **extra)


def without(form: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in form.items() if k not in names}


CAPTURED = {  # PROVIDERS.md §2.1, as shown
    "CallSid": "CA1234567890ABCDE1234567890ABCDE12",
    "AccountSid": "AC" + "0" * 32,
    "From": "+8801711000000",
    "To": "+14155550100",
    "CallStatus": "ringing",
    "ApiVersion": "2010-04-01",
    "Direction": "inbound",
    "FromCountry": "BD",
    "ToCountry": "US",
    "ToState": "CA",
}


def heard(digits: str, n: int, sid: str = SID, phone: str = BD) -> Recorded:
    """What the shared handler gets for turn ``n`` of the call."""
    return Recorded(phone, digits, f"{sid}:{n}", "voice", sid)


# -- reading TwiML ------------------------------------------------------------------------------


def twiml(run: Run, index: int = 0) -> ElementTree.Element:
    return ElementTree.fromstring(run.responses[index].get_data())


def spoken(root: ElementTree.Element) -> list[tuple[str, str, str]]:
    """(verb, language or URL, text) of every Say and Play, in order."""
    found = []
    for verb in root.iter():
        if verb.tag == "Say":
            found.append(("Say", verb.get("language", ""), verb.text or ""))
        elif verb.tag == "Play":
            found.append(("Play", verb.text or "", ""))
    return found


def after(url: str) -> str:
    """The query of one of our URLs, as the next request is sent to it."""
    assert url.startswith(PUBLIC_URL + PATH + "?"), url
    return url[len(PUBLIC_URL + PATH) :]


def next_turn(root: ElementTree.Element) -> str:
    gather = root.find("Gather")
    assert gather is not None, ElementTree.tostring(root)
    return after(gather.get("action", ""))


def answer_for(root: ElementTree.Element) -> str:
    """A valid answer to the question the Gather waits on: 1 on a menu, 3 for a number."""
    gather = root.find("Gather")
    assert gather is not None
    return "1" if gather.get("numDigits") == "1" else "3"


def waits(one_key: bool) -> Callable[[Run], None]:
    """The response waits on a Gather of one key, or of keys ended by #, then redirects on
    silence to the same turn's URL."""

    def check(run: Run) -> None:
        root = twiml(run)
        gather = root.find("Gather")
        assert gather is not None
        assert gather.get("input") == "dtmf" and gather.get("actionOnEmptyResult") == "true"
        if one_key:
            assert gather.get("numDigits") == "1" and gather.get("finishOnKey") is None
        else:
            assert gather.get("finishOnKey") == "#" and gather.get("numDigits") is None
        verbs = [child.tag for child in root]
        assert verbs == ["Gather", "Redirect"], verbs
        assert root.find("Redirect").text == gather.get("action") + "&noinput=1"

    return check


def hangs_up(run: Run) -> None:
    root = twiml(run)
    assert root.find("Gather") is None and [c.tag for c in root][-1] == "Hangup"


def language_menu(run: Run) -> None:
    """The first call of a Bangladeshi number: the prompt in Bangla, then each language's
    "press N for" in that language's voice; Swahili, with no voice and no recording, in
    English, and a warning names the missing clip."""
    voices = [(verb, language) for verb, language, _ in spoken(twiml(run))]
    expected = ["bn-IN", "bn-IN", "en-US", "hi-IN", "ms-MY", "en-US", "ta-IN"]
    assert voices == [("Say", language) for language in expected], voices
    says = twiml(run).findall("Gather/Say")
    assert says[5].text == "Press 5 for Swahili"
    assert says[1].text == "বাংলা হলে 1 চাপুন"
    assert all(say.get("voice", "").startswith("Google.") for say in says)
    assert any("sw/_service/" in record and "cannot be heard" in record for record in run.records)


def offers_resume(run: Run) -> None:
    texts = [text for _, _, text in spoken(twiml(run))]
    assert "Press 1 for Continue" in texts and "Press 2 for Start again" in texts, texts
    waits(one_key=True)(run)


def twiml_text(run: Run) -> str:
    return run.responses[0].get_data(as_text=True)


def star_menu(run: Run) -> None:
    """The star key's menu, the question the caller stood at kept aside."""
    texts = [text for _, _, text in spoken(twiml(run))]
    assert texts[1:] == ["Press 1 for Stop", "Press 2 for Stop and erase all your answers"], texts
    session = run.services.sessions.load(run.pseudonym())
    assert session is not None and session.current == "@star" and session.resume is not None


def no_dialog(run: Run) -> None:
    assert run.services.redis.keys("wv:dialog:*") == []


def dialog_state(run: Run) -> dict:
    """The state of the one call the case is about."""
    keys = run.services.redis.keys("wv:dialog:*")
    assert len(keys) == 1, keys
    return json.loads(run.services.redis.get(keys[0]))


def ended_dialog(run: Run) -> None:
    """The call's state is kept after its end (until it expires), marked ended."""
    assert dialog_state(run).get("ended") is True


def not_asked_again(run: Run) -> None:
    """After the call's end silence changes nothing: no silence counted, nothing said."""
    assert dialog_state(run)["silences"] == 0 and dialog_state(run)["ended"] is True
    assert run.responses[0].get_data(as_text=True) == EMPTY


def nothing_kept(run: Run) -> None:
    """No session, dialog, reply or anything else of the service's in Redis; no worker stored."""
    assert worker_keys(run.services.redis) == []
    with run.services.db.session() as db:
        assert db.scalars(select(Worker.pseudonym)).all() == []


def asked_to_show_number(run: Run) -> None:
    """In English (the caller's language is unknown), then the call ends."""
    root = twiml(run)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    say = root.find("Say")
    assert say.text == WITHHELD and say.get("language") == "en-US"
    assert say.get("voice", "").startswith("Google.en-US")


def session_kept(run: Run) -> None:
    """A hang-up keeps the session: the worker can resume within 24 hours."""
    assert run.pseudonym() in run.sessions()


# -- what happened earlier ----------------------------------------------------------------------


class Phone:
    """A Twilio call from one number, for ``before`` hooks: signed requests to the URLs the
    TwiML names, as Twilio sends them."""

    def __init__(self, client, phone: str = BD, sid: str = SID):
        self.client, self.phone, self.sid = client, phone, sid
        self.root: ElementTree.Element | None = None

    def post(self, query: str = "", **extra: str) -> ElementTree.Element:
        form = call(self.sid, self.phone, **extra)
        signature = twilio_signature(form, path=PATH + query)
        response = self.client.post(
            PATH + query, data=form, headers={"X-Twilio-Signature": signature}
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        self.root = ElementTree.fromstring(response.get_data())
        return self.root

    def dial(self) -> ElementTree.Element:
        return self.post()

    def press(self, digits: str | None = None) -> ElementTree.Element:
        assert self.root is not None
        digits = answer_for(self.root) if digits is None else digits
        return self.post(next_turn(self.root), Digits=digits)

    def hang_up(self) -> ElementTree.Element:
        return self.post(CallStatus="completed")


def dialled(*presses: str | None, sid: str = SID, phone: str = BD, hang_up: bool = False):
    """The worker rang (call ``sid``) and pressed these keys (None: a valid answer)."""

    def before(run: Run) -> None:
        if run.services.directory.slug_for_code(WORKPLACE_CODE) is None:
            add_workplace(run.services, code=WORKPLACE_CODE)
        phone_ = Phone(run.client, phone, sid)
        phone_.dial()
        for digits in presses:
            phone_.press(digits)
        if hang_up:
            phone_.hang_up()

    return before


ENROLLED = ("2", "1", WORKPLACE_CODE)  # English (2 for a Bangladeshi number), I agree, the code
CHECKIN_TURN = f"?n={len(ENROLLED) + 1}"  # the turn the first check-in question waits on


def enrolled_by_voice(*presses: str | None, sid: str = SID, hang_up: bool = False):
    return dialled(*ENROLLED, *presses, sid=sid, hang_up=hang_up)


CASES = [
    # -- the first call -----------------------------------------------------------------------
    Case(
        "first call of a new Bangladeshi number: the language menu in each language's voice",
        call(),
        body=WELCOME_BN,
        recorded=heard("", 0),
        check=checks(language_menu, waits(one_key=True), one_session),
    ),
    Case(
        "a call as PROVIDERS.md shows it (ringing)",
        CAPTURED,
        body=WELCOME_BN,
        recorded=heard("", 0, "CA1234567890ABCDE1234567890ABCDE12", "+8801711000000"),
        check=one_session,
    ),
    Case(
        "unknown parameters are accepted and signed over",
        call(CallToken="x", ForwardedFrom="+8801700000000", FutureParameter="1"),
        body=WELCOME_BN,
        recorded=heard("", 0),
    ),
    Case(
        "the first call's retry is answered again",
        call(),
        repeat=2,
        body=WELCOME_BN,
        recorded=heard("", 0),
        check=one_session,
    ),
    # -- keys ---------------------------------------------------------------------------------
    Case(
        "a key answers the menu: English",
        keyed("2"),
        query="?n=1",
        before=dialled(),
        body=CONSENT_EN,
        recorded=heard("2", 1),
        check=waits(one_key=True),
    ),
    Case(
        "the workplace code is keyed, ended by #",
        keyed("1"),
        query="?n=2",
        before=dialled("2"),
        body="Key the code, then press the hash key.",
        recorded=heard("1", 2),
        check=waits(one_key=False),
    ),
    Case(
        "a retry of one turn is answered alike and recorded once",
        keyed("1"),
        query=CHECKIN_TURN,
        repeat=2,
        before=enrolled_by_voice(),
        body="<Gather",
        recorded=heard("1", 4),
        jobs=("events",),
        check=answers(1),
    ),
    Case(
        "a key that is no option: the menu again",
        keyed("9"),
        query="?n=2",
        before=dialled("2"),
        body="Please press a key from 1 to 2.",
        recorded=heard("9", 2),
        check=waits(one_key=True),
    ),
    # -- the star key: its menu at any question, never an answer ------------------------------
    *[
        Case(
            f"the star key at a keyed question ({digits!r}): its menu, not an answer",
            keyed(digits),
            query="?n=3",
            before=dialled("2", "1"),
            body=STAR_MENU,
            recorded=heard(digits.removesuffix("#"), 3),
            check=checks(waits(one_key=True), star_menu),
        )
        for digits in ("*", "12*", "*#")
    ],
    Case(
        "the star key at a one-key menu: its menu",
        keyed("*"),
        query="?n=2",
        before=dialled("2"),
        body=STAR_MENU,
        recorded=heard("*", 2),
        check=checks(waits(one_key=True), star_menu),
    ),
    Case(
        "the star key at the first call's language menu: its menu in Bangla",
        keyed("*"),
        query="?n=1",
        before=dialled(),
        body="বন্ধ করুন হলে 1 চাপুন",
        recorded=heard("*", 1),
        check=waits(one_key=True),
    ),
    Case(
        "the star key's menu, any other key: the question again, as it was",
        keyed("3"),
        query="?n=4",
        before=dialled("2", "1", "*"),
        body="Key the code, then press the hash key.",
        recorded=heard("3", 4),
        check=checks(waits(one_key=False), lambda run: STAR_MENU not in twiml_text(run)),
    ),
    Case(
        "the star key's menu, 1: STOP's goodbye, the call ends, nothing kept",
        keyed("1"),
        query="?n=4",
        before=dialled("2", "1", "*"),
        body=STOPPED,
        recorded=heard("1", 4),
        jobs=("events",),
        check=checks(hangs_up, no_session),
    ),
    Case(
        "the star key after the call's end is no answer: nothing said, nothing forgotten",
        keyed("*"),
        query=CHECKIN_TURN,
        before=enrolled_by_voice(hang_up=True),
        body=EMPTY,
        recorded=heard("*", 4),
        check=checks(answers(0), session_kept),
    ),
    # -- silence ------------------------------------------------------------------------------
    Case(
        "silence (the Gather's action with empty Digits): asked again",
        keyed(""),
        query="?n=2",
        before=dialled("2"),
        body=NOT_HEARD,
        recorded=heard("", 2),
        check=waits(one_key=True),
    ),
    Case(
        "silence (the Gather's action without Digits): asked again",
        call(),
        query="?n=2",
        before=dialled("2"),
        body=NOT_HEARD,
        recorded=heard("", 2),
    ),
    Case(
        "silence (the no-input Redirect): asked again",
        call(),
        query="?n=2&noinput=1",
        before=dialled("2"),
        body=NOT_HEARD,
        recorded=heard("", 2),
    ),
    # -- hanging up ---------------------------------------------------------------------------
    Case(
        "a hang-up mid-flow keeps the answers given and the session",
        hung_up(),
        before=enrolled_by_voice(None),
        body=EMPTY,
        recorded=Recorded(BD, "", f"{SID}:end", "voice", SID),
        check=checks(answers(1), session_kept, ended_dialog),
    ),
    Case(
        "a new call after a hang-up offers Continue / Start again",
        call(OTHER_SID),
        before=enrolled_by_voice(None, hang_up=True),
        body="You did not finish last time.",
        recorded=heard("", 0, OTHER_SID),
        check=checks(offers_resume, answers(1)),
    ),
    Case(
        "Continue goes on at the first unanswered question",
        keyed("1", CallSid=OTHER_SID),
        query="?n=1",
        before=checks(enrolled_by_voice(None, hang_up=True), dialled(sid=OTHER_SID, phone=BD)),
        body="<Gather",
        recorded=heard("1", 1, OTHER_SID),
        check=checks(
            answers(1), lambda run: "Continue" not in run.responses[0].get_data(as_text=True)
        ),
    ),
    Case(
        "the status callback of a busy call ends nothing that was not begun",
        hung_up("busy"),
        body=EMPTY,
        recorded=Recorded(BD, "", f"{SID}:end", "voice", SID),
        check=checks(ended_dialog, no_session),
    ),
    Case(
        "a hang-up reported on a turn's action URL",
        hung_up("completed"),
        query="?n=2",
        before=dialled("2"),
        body=EMPTY,
        recorded=Recorded(BD, "", f"{SID}:end", "voice", SID),
        check=ended_dialog,
    ),
    *[
        Case(
            f"the call's last answer, {how}, still counts (once)",
            form,
            query=CHECKIN_TURN,
            repeat=2,
            before=before,
            body=EMPTY,
            recorded=heard("1", 4),
            jobs=("events",),
            check=checks(answers(1), session_kept, ended_dialog),
        )
        for how, form, before in (
            ("after the status callback", keyed("1"), enrolled_by_voice(hang_up=True)),
            (
                "reported with the call's end",
                keyed("1", CallStatus="completed"),
                enrolled_by_voice(),
            ),
        )
    ],
    Case(
        "silence reported after the call's end asks no one again",
        call(),
        query=CHECKIN_TURN,
        before=enrolled_by_voice(hang_up=True),
        body=EMPTY,
        recorded=heard("", 4),
        check=checks(answers(0), session_kept, not_asked_again),
    ),
    # -- a withheld number: asked to call again with it shown; nothing kept ---------------------
    *[
        Case(
            f"From {caller!r} (a withheld number{', retried' if repeat > 1 else ''})",
            call(caller=caller),
            repeat=repeat,
            body=WITHHELD,
            check=checks(asked_to_show_number, nothing_kept),
        )
        for caller, repeat in (
            ("anonymous", 1),
            ("unknown", 1),
            ("client:alice", 1),
            ("Anonymous", 2),
        )
    ],
    Case(
        "the status callback of a withheld number's call",
        hung_up(caller="anonymous"),
        body=EMPTY,
        check=nothing_kept,
    ),
    # -- a call we placed (the missed-call callback) ------------------------------------------
    Case(
        "a call we placed: the worker is the callee",
        call(caller=CALLBACK, To=BD, Direction="outbound-api"),
        body=WELCOME_BN,
        recorded=heard("", 0, phone=BD),
        check=lambda run: run.sessions() == [run.pseudonym(BD)],
    ),
    # -- malformed: 400, nothing changes ------------------------------------------------------
    Case("missing CallSid", without(call(), "CallSid"), 400, "missing field 'CallSid'"),
    Case("missing From", without(call(), "From"), 400, "missing field 'From'"),
    Case(
        "a call we placed without To",
        without(call(Direction="outbound-api"), "To"),
        400,
        "missing field 'To'",
    ),
    Case("From not a number", call(caller="Dhaka"), 400, "not a phone number"),
    Case(
        "a withheld number without CallSid",
        without(call(caller="anonymous"), "CallSid"),
        400,
        "missing field 'CallSid'",
    ),
    Case(
        "a withheld number with a malformed turn",
        keyed("1", From="anonymous"),
        400,
        "malformed parameter 'n'",
        query="?n=0",
    ),
    Case(
        "a withheld number on a turn it was never given",
        keyed("1", From="anonymous"),
        400,
        "not the call's current turn",
        query="?n=1",
    ),
    Case("CallSid not a call's", call(sid="SM" + "a" * 32), 400, "malformed field 'CallSid'"),
    Case("CallSid too short", call(sid="CA" + "a" * 31), 400, "malformed field 'CallSid'"),
    Case("CallSid over 64 characters", call(sid="CA" + "a" * 63), 400, "'CallSid' is longer"),
    Case("From over 64 characters", call(caller="+" + "1" * 64), 400, "'From' is longer"),
    Case("Digits over 64 keys", keyed("1" * 65), 400, "'Digits' is longer", query="?n=1"),
    Case("Digits not keys", keyed("12a"), 400, "malformed field 'Digits'", query="?n=1"),
    Case("Digits with a NUL", keyed("1\x00"), 400, "'Digits' holds a NUL", query="?n=1"),
    Case("n not a number", keyed("1"), 400, "malformed parameter 'n'", query="?n=one"),
    Case("n zero", keyed("1"), 400, "malformed parameter 'n'", query="?n=0"),
    Case("n negative", keyed("1"), 400, "malformed parameter 'n'", query="?n=-1"),
    Case("n beyond any call", keyed("1"), 400, "malformed parameter 'n'", query="?n=10000"),
    Case("n over 8 characters", keyed("1"), 400, "'n' is longer", query="?n=123456789"),
    Case("noinput not 1", call(), 400, "malformed parameter 'noinput'", query="?n=1&noinput=y"),
    Case("noinput without a turn", call(), 400, "'noinput' without a turn", query="?noinput=1"),
    Case(
        "a turn the call has not reached",
        keyed("1"),
        400,
        "not the call's current turn",
        query="?n=3",
        before=dialled("2"),
    ),
    Case(
        "a turn of a call never seen",
        keyed("1"),
        400,
        "not the call's current turn",
        query="?n=1",
    ),
    Case(
        "a JSON body",
        {},
        400,
        "missing field 'CallSid'",
        raw=b'{"CallSid": "CA0123456789abcdef0123456789abcdef"}',
        content_type="application/json",
    ),
    # -- authentication: 403, nothing changes -------------------------------------------------
    Case("no signature", call(), 403, NOT_SIGNED, signature=None),
    Case("empty signature", call(), 403, NOT_SIGNED, signature=""),
    Case("wrong signature", call(), 403, NOT_SIGNED, signature="bm90IGEgc2lnbmF0dXJl"),
    Case("signed with another token", call(), 403, NOT_SIGNED, signing_token="another-token"),
    Case(
        "signed over the SMS webhook",
        call(),
        403,
        NOT_SIGNED,
        signed_url=PUBLIC_URL + "/webhooks/twilio/sms",
    ),
    Case(
        "signed without the turn it was sent with",
        keyed("2"),
        403,
        NOT_SIGNED,
        query="?n=1",
        signed_url=PUBLIC_URL + PATH,
        before=dialled(),
    ),
    Case(
        "Digits tampered after signing",
        keyed("1"),
        403,
        NOT_SIGNED,
        query="?n=1",
        signed_form=keyed("2"),
        before=dialled(),
    ),
    Case(
        "a forged hang-up changes nothing",
        hung_up(),
        403,
        NOT_SIGNED,
        signing_token="another-token",
        before=dialled("2"),
    ),
    Case(
        "malformed and unsigned: authentication comes first",
        without(call(), "CallSid"),
        403,
        NOT_SIGNED,
        signature=None,
    ),
    Case("GET", call(), 405, "not allowed", method="GET", signature=None),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label)
def test_twilio_voice(case, app, client, services, monkeypatch):
    run_case(TWILIO_VOICE, case, app, client, services, monkeypatch)


def test_case_labels_are_unique():
    assert len({case.label for case in CASES}) == len(CASES)


def test_every_language_twilio_speaks_has_a_voice():
    """The voices here are the languages ``flows lint`` counts as spoken (engine/voices.py)."""
    assert set(twilio_voice.VOICES) == TWILIO_TTS_LANGUAGES


# -- whole calls --------------------------------------------------------------------------------


class Walk:
    """One call, turn by turn through the harness, each request sent to the URL the previous
    TwiML named."""

    def __init__(self, app, client, services, sid: str = SID, phone: str = BD):
        self.app, self.client, self.services = app, client, services
        self.sid, self.phone = sid, phone
        self.turn, self.query = 0, ""
        self.root: ElementTree.Element | None = None

    def send(self, form: dict, digits: str = "", body: str | None = None, **expected) -> Run:
        case = Case(
            f"turn {self.turn}",
            form,
            query=self.query,
            body=body,
            recorded=heard(digits, self.turn, self.sid, self.phone),
            **expected,
        )
        with pytest.MonkeyPatch.context() as patch:
            run = run_case(TWILIO_VOICE, case, self.app, self.client, self.services, patch)
        self.root = twiml(run)
        if self.root.find("Gather") is not None:
            self.query = next_turn(self.root)
            self.turn = int(self.query.split("n=")[1].split("&")[0])
        return run

    def dial(self, **expected) -> Run:
        return self.send(call(self.sid, self.phone), **expected)

    def press(self, digits: str | None = None, **expected) -> Run:
        assert self.root is not None
        digits = answer_for(self.root) if digits is None else digits
        return self.send(keyed(digits, CallSid=self.sid, From=self.phone), digits, **expected)

    def silence(self, **expected) -> Run:
        return self.send(call(self.sid, self.phone), **expected)

    def question(self) -> str | None:
        """The question the worker's session now waits on."""
        session = self.services.sessions.load(self.services.identity.pseudonymise(self.phone).value)
        return session.current if session is not None else None

    def said(self) -> list[str]:
        assert self.root is not None
        return [text for _, _, text in spoken(self.root)]


@pytest.mark.parametrize(
    "choice, language, voice, consent, finish",
    [
        ("2", "en", "en-US", "Press 1 for I agree", "Thank you. Your answers are anonymous."),
        ("1", "bn", "bn-IN", "চাপুন", "ধন্যবাদ। আপনার উত্তর"),
    ],
    ids=["English", "Bangla"],
)
def test_enrolment_and_check_in_by_keypad(
    choice, language, voice, consent, finish, app, client, services
):
    """A new worker enrols and answers the day's check-in by keypad alone, in the real flows,
    every turn in their language's voice; the answers land in the database."""
    add_workplace(services, code=WORKPLACE_CODE)
    walk = Walk(app, client, services)
    walk.dial(body=WELCOME_BN, check=waits(one_key=True))
    walk.press(choice, body=consent, check=waits(one_key=True))
    walk.press("1", check=waits(one_key=False))
    run = walk.press(WORKPLACE_CODE, jobs=("events",))
    assert {lang for verb, lang, _ in spoken(walk.root) if verb == "Say"} == {voice}
    given = 0
    while walk.root.find("Gather") is not None and given < 12:
        run = walk.press(jobs=("events",))
        given += 1
    assert given >= 1  # the check-in began at once after enrolment
    hangs_up(run)
    assert finish in run.responses[0].get_data(as_text=True)
    answers(given)(run)
    with services.db.session() as db:
        stored = db.scalar(select(Worker.language).where(Worker.pseudonym == run.pseudonym()))
    assert stored == language


def test_silence_asks_again_twice_then_moves_on(app, client, services):
    add_workplace(services, code=WORKPLACE_CODE)
    walk = Walk(app, client, services)
    walk.dial()
    for digits in ENROLLED:
        walk.press(digits, jobs=("events",) if digits == WORKPLACE_CODE else ())
    question, prompt = walk.question(), walk.said()
    assert prompt[1] == STAR_HINT  # after enrolment's thanks, before the first question
    for _ in range(2):
        run = walk.silence(body=NOT_HEARD)
        assert walk.said() == [NOT_HEARD, *prompt[2:]]  # the question again (not the thanks)
        assert walk.question() == question
    run = walk.silence()
    assert NOT_HEARD not in walk.said()
    assert walk.question() not in (None, question)  # gone on to the next one, unanswered
    answers(0)(run)


VOICE_FLOW = """\
title: Voice check
version: v1
default: true
questions:
  - id: intro
    type: info
    ask: A few questions by phone.
  - id: comment
    type: text
    ask: Tell us anything else.
  - id: days
    type: number
    ask: On how many days did you work late?
    min: 0
    max: 7
  - id: safe
    ask: Do you feel safe at work?
    options:
      yes: "Yes"
      no: "No"
finish: Thank you.
"""


def test_a_text_question_is_skipped_and_a_number_is_keyed(
    app, client, services, monkeypatch, tmp_path
):
    """Voice never asks a text question (a recording of a voice would identify the worker);
    a number question waits for keys ended by #."""
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(ROOT / "flows" / "enrol.yaml", flows / "enrol.yaml")
    (flows / "voice.yaml").write_text(VOICE_FLOW)
    monkeypatch.setattr(services, "registry", FlowRegistry(flows, ROOT / "locales"))
    add_workplace(services, code=WORKPLACE_CODE)
    walk = Walk(app, client, services)
    walk.dial()
    walk.press("2")
    walk.press("1")
    run = walk.press(WORKPLACE_CODE, jobs=("events",), check=waits(one_key=False))
    assert walk.said() == [
        "Thank you, you are enrolled.",
        STAR_HINT,
        "A few questions by phone.",
        "On how many days did you work late?",
        "Please key a number from 0 to 7, then press the hash key.",
    ]
    assert "Tell us anything else." not in run.responses[0].get_data(as_text=True)
    assert walk.question() == "days"
    walk.press("3", jobs=("events",), check=waits(one_key=True))
    run = walk.press("1", jobs=("events",), body="Thank you.", check=hangs_up)
    answers(2)(run)


def write_wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 80)


def test_a_recording_is_played_where_there_is_one(app, client, services, monkeypatch, tmp_path):
    """<Play> of the clip whenever one exists (the only way Swahili is heard); <Say> for the
    rest, and no warning for a language whose clip is there."""
    texts = services.registry.current()[1]
    swahili = speech.service_clip(
        texts.service("sw", words.PRESS_FOR).format(key=5, option=language_name("sw"))
    )
    write_wav(tmp_path / "bn" / "audio" / "enrol" / "language.wav")
    write_wav(tmp_path / "sw" / "audio" / f"{swahili}.wav")
    monkeypatch.setattr(services, "audio", AudioLibrary(tmp_path, PUBLIC_URL))

    def played(run: Run) -> None:
        verbs = spoken(twiml(run))
        assert verbs[0] == ("Play", f"{PUBLIC_URL}/audio/bn/enrol/language.wav", "")
        assert verbs[5] == ("Play", f"{PUBLIC_URL}/audio/sw/{swahili}.wav", "")
        assert [verb for verb, _, _ in verbs].count("Play") == 2
        assert not any("cannot be heard" in record for record in run.records)

    case = Case("clips", call(), body="<Play>", recorded=heard("", 0), check=played)
    run_case(TWILIO_VOICE, case, app, client, services, monkeypatch)


def callback_number(run: Run) -> None:
    if run.services.directory.slug_for_code(WORKPLACE_CODE) is None:
        add_workplace(run.services, code=WORKPLACE_CODE)
    with run.services.db.session() as db:
        directory.set_workplace(db, "dhaka-knit", callback_number=CALLBACK)


MISSED = [
    Case(
        "a call to a callback number is rejected unanswered, and the worker called back",
        call(To=CALLBACK),
        body="<Reject />",
        before=callback_number,
        jobs=("call_back",),
        check=checks(no_session, no_dialog),
    ),
    Case(
        "a withheld number ringing the callback number is rejected, no one called back",
        call(caller="anonymous", To=CALLBACK),
        body="<Reject />",
        before=callback_number,
        check=checks(no_session, no_dialog),
    ),
    Case(
        "a call to the service's own number is answered",
        call(),
        body="<Gather",
        before=callback_number,
        recorded=heard("", 0),
        check=one_session,
    ),
    Case(
        "only a call's first request can be a missed call",
        keyed("2", To=CALLBACK),
        query="?n=1",
        body=CONSENT_EN,
        before=checks(callback_number, dialled()),
        recorded=heard("2", 1),
    ),
]


@pytest.mark.parametrize("case", MISSED, ids=lambda case: case.label)
def test_missed_call(case, app, client, services, monkeypatch):
    monkeypatch.setattr(callbacks, "CALLBACK_DELAY_SECONDS", 0)  # queued at once, on any Redis
    run_case(TWILIO_VOICE, case, app, client, services, monkeypatch)
