"""POST /webhooks/at/voice?token=...: Africa's Talking Voice (PROVIDERS.md §6).

AT nests exactly one <Say> or <Play> in <GetDigits>, and its <Say> speaks English only: every
turn is one element, a <Play> of the turn's recordings in sequence when all of them exist, else
one <Say>. Silence is reported by the <Redirect> after <GetDigits>; the call's end by a final
``isActive=0`` request, answered 200 and empty. Every request goes through the shared harness.
"""

from __future__ import annotations

import json
import wave
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit
from xml.etree import ElementTree

import pytest
from sqlalchemy import select

from gateway import callbacks
from gateway.audio import AudioLibrary, sequence_token
from gateway.channels import voice
from store import directory
from store.models import Worker

from ..conftest import AT_TOKEN
from ..leaks import redis_dump
from ..support import PUBLIC_URL, add_workplace
from .harness import (
    AT_VOICE,
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

KE = "+254711283946"  # the caller most cases are about
BD = "+8801711283946"
SESSION = "ATVId_aadedf81fb9437cabae902bb08d32b7b"
OTHER_SESSION = "ATVId_0c1d2e3f405162738495a6b7c8d9e0f1"
AT_NUMBER = "+254711082130"  # the service's AT number
CALLBACK = "+254711082199"  # a workplace's missed-call callback number
PATH = AT_VOICE.path
NO_TOKEN = "invalid webhook token"
CONSENT_EN = "Do you agree?"
NOT_HEARD = "We did not hear your answer."
WITHHELD = "Please call again with your number shown. WorkerVoice never stores it."
STAR_MENU = "Do you want to leave WorkerVoice? Any other key takes you back to your question."
STOPPED = "You have left WorkerVoice and your details are deleted. Send any message to join again."


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees its own once-per-process warnings (voice._warned), whatever ran first."""
    monkeypatch.setattr(voice, "_warned", set())


def at_call(session: str = SESSION, caller: str = KE, direction: str = "Inbound", **extra) -> dict:
    """A callback request in the shape of PROVIDERS.md §6.1 (GetDigits adds ``dtmfDigits``)."""
    form = {
        "isActive": "1",
        "sessionId": session,
        "direction": direction,
        "callerNumber": caller,
        "destinationNumber": AT_NUMBER,
        "callerCountryCode": "254",
        "callerCarrierName": "Safaricom",
        "callStartTime": "2026-11-25 05:12:57",
    }
    form.update(extra)
    return form


def keyed(digits: str, **extra: str) -> dict:
    return at_call(dtmfDigits=digits, **extra)


def final(**extra: str) -> dict:
    """The last request of a call: isActive=0 with its cost and duration."""
    return at_call(
        isActive="0",
        durationInSeconds="7",
        callSessionState="Completed",
        status="Success",
        amount="0.408333333333333345",
        currencyCode="KES",
        hangupCause="NORMAL_CLEARING",
        **extra,
    )


def without(form: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in form.items() if k not in names}


CAPTURED_FINAL = {  # PROVIDERS.md §6.1, as shown
    "isActive": "0",
    "sessionId": "ATVId_aadedf81fb9437cabae902bb08d32b7b",
    "direction": "Outbound",
    "destinationNumber": "+254711082130",
    "callerNumber": "+254794263043",
    "callerCountryCode": "254",
    "callerCarrierName": "Safaricom",
    "callStartTime": "2020-03-16 05:12:57",
    "durationInSeconds": "7",
    "callSessionState": "Completed",
    "status": "Success",
    "amount": "0.408333333333333345",
    "currencyCode": "KES",
}


def heard(digits: str, n: int, session: str = SESSION, phone: str = KE) -> Recorded:
    return Recorded(phone, digits, f"{session}:{n}", "voice", session)


def ended_call(session: str = SESSION, phone: str = KE) -> Recorded:
    return Recorded(phone, "", f"{session}:end", "voice", session)


# -- reading AT's XML ---------------------------------------------------------------------------


def document(run: Run, index: int = 0) -> ElementTree.Element:
    return ElementTree.fromstring(run.responses[index].get_data())


def callback_query(url: str, keep_token: bool = False) -> str:
    """The query of a callbackUrl we rendered (the harness adds the token itself)."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == PUBLIC_URL + PATH, url
    query = [(k, v) for k, v in parse_qsl(parts.query) if keep_token or k != "token"]
    return "?" + urlencode(query)


def one_element(root: ElementTree.Element) -> ElementTree.Element | None:
    """What the turn says: exactly one <Say> or <Play>, in <GetDigits> or alone."""
    digits = root.find("GetDigits")
    holder = digits if digits is not None else root
    said = [child for child in holder if child.tag in ("Say", "Play")]
    assert len(list(holder)) == len(said) <= 1, ElementTree.tostring(root)
    return said[0] if said else None


def waits(one_key: bool) -> Callable[[Run], None]:
    """<GetDigits> (one key, or keys ended by #) nesting exactly one <Say> or <Play>, sending
    keys to the next turn with the token, then a <Redirect> reporting silence."""

    def check(run: Run) -> None:
        root = document(run)
        assert [child.tag for child in root] == ["GetDigits", "Redirect"]
        digits = root.find("GetDigits")
        assert one_element(root) is not None
        assert digits.get("finishOnKey") == "#"
        assert digits.get("numDigits") == ("1" if one_key else None)
        url = digits.get("callbackUrl", "")
        assert dict(parse_qsl(urlsplit(url).query))["token"] == AT_TOKEN
        assert root.find("Redirect").text == url + "&noinput=1"

    return check


def ends(run: Run) -> None:
    """The last turn: what is left to say, and nothing else (the call ends)."""
    root = document(run)
    assert root.find("GetDigits") is None and root.find("Redirect") is None
    assert one_element(root) is not None


def empty(run: Run) -> None:
    for response in run.responses:
        assert response.get_data() == b""


def said_text(root: ElementTree.Element) -> str:
    element = one_element(root)
    assert element is not None and element.tag == "Say", ElementTree.tostring(root)
    assert element.get("voice") == "woman"
    return element.text or ""


def language_menu(run: Run) -> None:
    """A Kenyan number's first call: Swahili has no recording here and AT speaks English only,
    so the menu is said from the English source, and a warning names the missing clips."""
    text = said_text(document(run))
    assert text.startswith("Welcome to WorkerVoice. Choose your language. Press 1 for Swahili.")
    assert "Press 2 for English" in text and "Press 3 for Bangla" in text
    assert any("sw/enrol/language cannot be heard" in record for record in run.records)


def star_menu(run: Run) -> None:
    """The star key's menu as one <Say>, the question the caller stood at kept aside."""
    assert said_text(document(run)) == (
        f"{STAR_MENU} Press 1 for Stop. Press 2 for Stop and erase all your answers."
    )
    session = run.services.sessions.load(run.pseudonym())
    assert session is not None and session.current == "@star" and session.resume is not None


def no_dialog(run: Run) -> None:
    assert run.services.redis.keys("wv:dialog:*") == []


def ended_dialog(run: Run) -> None:
    """The call's state is kept after its end (until it expires), marked ended."""
    keys = run.services.redis.keys("wv:dialog:*")
    assert len(keys) == 1, keys
    assert json.loads(run.services.redis.get(keys[0])).get("ended") is True


def nothing_kept(run: Run) -> None:
    """No session, dialog, reply or anything else of the service's in Redis; no worker stored."""
    assert worker_keys(run.services.redis) == []
    with run.services.db.session() as db:
        assert db.scalars(select(Worker.pseudonym)).all() == []


def asked_to_show_number(run: Run) -> None:
    """In English (AT's <Say> speaks only English, and the language is unknown); the call
    ends after it."""
    root = document(run)
    assert [child.tag for child in root] == ["Say"]
    assert said_text(root) == WITHHELD


def tokens_in(run: Run, index: int) -> list[str]:
    """The webhook token of every URL the response names (callbackUrl, Redirect)."""
    root = document(run, index)
    urls = [root.find("GetDigits").get("callbackUrl", ""), root.find("Redirect").text or ""]
    return [dict(parse_qsl(urlsplit(url).query))["token"] for url in urls]


def token_only_in_responses(token: str) -> Callable[[Run], None]:
    """Every response names the real token; no Redis value holds it (the reply cache keeps
    documents for a day)."""

    def check(run: Run) -> None:
        for index in range(len(run.responses)):
            assert tokens_in(run, index) == [token, token]
        stored = repr(redis_dump(run.services.redis))
        for form in {token, quote(token, safe=""), quote_plus(token)}:
            assert form not in stored, f"the webhook token is in Redis as {form!r}"

    return check


def session_kept(run: Run) -> None:
    assert run.pseudonym() in run.sessions()


# -- what happened earlier ----------------------------------------------------------------------


class Phone:
    """An AT call from one number, for ``before`` hooks: each request to the URL the last
    document named, as AT sends it."""

    def __init__(self, client, phone: str = KE, session: str = SESSION):
        self.client, self.phone, self.session = client, phone, session
        self.root: ElementTree.Element | None = None

    def post(self, query: str, **extra: str) -> ElementTree.Element | None:
        response = self.client.post(PATH + query, data=at_call(self.session, self.phone, **extra))
        assert response.status_code == 200, response.get_data(as_text=True)
        self.root = ElementTree.fromstring(response.get_data()) if response.get_data() else None
        return self.root

    def press(self, digits: str | None = None) -> None:
        assert self.root is not None
        found = self.root.find("GetDigits")
        assert found is not None
        if digits is None:
            digits = "1" if found.get("numDigits") == "1" else "3"
        self.post(callback_query(found.get("callbackUrl", ""), keep_token=True), dtmfDigits=digits)


def dialled(*presses: str | None, session: str = SESSION, phone: str = KE, hang_up: bool = False):
    """The worker rang (session ``session``) and pressed these keys (None: a valid answer)."""

    def before(run: Run) -> None:
        if run.services.directory.slug_for_code(WORKPLACE_CODE) is None:
            add_workplace(run.services, code=WORKPLACE_CODE)
        phone_ = Phone(run.client, phone, session)
        phone_.post(f"?token={AT_TOKEN}")
        for digits in presses:
            phone_.press(digits)
        if hang_up:
            phone_.post(f"?token={AT_TOKEN}", isActive="0", durationInSeconds="30")

    return before


ENROLLED = ("2", "1", WORKPLACE_CODE)  # English (2 for a Kenyan number), I agree, the code
CHECKIN_TURN = f"?n={len(ENROLLED) + 1}"


def enrolled_by_voice(*presses: str | None, session: str = SESSION, hang_up: bool = False):
    return dialled(*ENROLLED, *presses, session=session, hang_up=hang_up)


CASES = [
    # -- the first call -----------------------------------------------------------------------
    Case(
        "first call of a new Kenyan number: the language menu, one nested <Say>",
        at_call(),
        body="<GetDigits",
        recorded=heard("", 0),
        check=checks(language_menu, waits(one_key=True), one_session),
    ),
    Case(
        "direction in lower case, as AT's docs write it",
        at_call(direction="inbound"),
        body="<GetDigits",
        recorded=heard("", 0),
    ),
    Case(
        "the first request's retry is answered again, the token in both, not in Redis",
        at_call(),
        repeat=2,
        body="<GetDigits",
        recorded=heard("", 0),
        check=checks(one_session, token_only_in_responses(AT_TOKEN)),
    ),
    # -- keys ---------------------------------------------------------------------------------
    Case(
        "dtmfDigits answer the menu: English, in one <Say>",
        keyed("2"),
        query="?n=1",
        before=dialled(),
        body=CONSENT_EN,
        recorded=heard("2", 1),
        check=checks(
            waits(one_key=True),
            lambda run: said_text(document(run)).endswith(
                "Press 1 for I agree. Press 2 for I do not agree."
            ),
            lambda run: not any("cannot be heard" in record for record in run.records),
        ),
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
        body="<GetDigits",
        recorded=heard("1", 4),
        jobs=("events",),
        check=answers(1),
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
        "the star key's menu, any other key: the question again, as it was",
        keyed("3"),
        query="?n=4",
        before=dialled("2", "1", "*"),
        body="Key the code, then press the hash key.",
        recorded=heard("3", 4),
        check=checks(waits(one_key=False), lambda run: STAR_MENU not in said_text(document(run))),
    ),
    Case(
        "the star key's menu, 1: STOP's goodbye, the call ends, nothing kept",
        keyed("1"),
        query="?n=4",
        before=dialled("2", "1", "*"),
        body=STOPPED,
        recorded=heard("1", 4),
        jobs=("events",),
        check=checks(ends, no_session),
    ),
    # -- silence ------------------------------------------------------------------------------
    Case(
        "silence (the no-input Redirect): asked again",
        at_call(),
        query="?n=2&noinput=1",
        before=dialled("2"),
        body=NOT_HEARD,
        recorded=heard("", 2),
        check=waits(one_key=True),
    ),
    Case(
        "# with no digits: asked again",
        keyed(""),
        query="?n=2",
        before=dialled("2"),
        body=NOT_HEARD,
        recorded=heard("", 2),
    ),
    # -- the end of the call ------------------------------------------------------------------
    Case(
        "isActive=0 mid-flow: 200 and empty; the answers given and the session kept",
        final(),
        before=enrolled_by_voice(None),
        recorded=ended_call(),
        check=checks(empty, answers(1), session_kept, ended_dialog),
    ),
    Case(
        "isActive=0 retried: one hang-up",
        final(),
        repeat=2,
        before=dialled("2"),
        recorded=ended_call(),
        check=checks(empty, ended_dialog),
    ),
    Case(
        "isActive=0 as PROVIDERS.md shows it, for a call never seen",
        CAPTURED_FINAL,
        recorded=ended_call(phone="+254794263043"),
        check=checks(empty, ended_dialog, no_session),
    ),
    *[
        Case(
            f"the call's last answer, {how}, still counts (once)",
            form,
            query=CHECKIN_TURN,
            repeat=2,
            before=before,
            recorded=heard("1", 4),
            jobs=("events",),
            check=checks(empty, answers(1), session_kept, ended_dialog),
        )
        for how, form, before in (
            ("its callback after isActive=0", keyed("1"), enrolled_by_voice(hang_up=True)),
            ("on the isActive=0 request", final(dtmfDigits="1"), enrolled_by_voice()),
        )
    ],
    Case(
        "silence reported after isActive=0 asks no one again",
        at_call(),
        query=CHECKIN_TURN + "&noinput=1",
        before=enrolled_by_voice(hang_up=True),
        recorded=heard("", 4),
        check=checks(empty, answers(0), session_kept, ended_dialog),
    ),
    # -- a withheld number: asked to call again with it shown; nothing kept ---------------------
    Case(
        "callerNumber empty",
        at_call(caller=""),
        body=WITHHELD,
        check=checks(asked_to_show_number, nothing_kept),
    ),
    Case(
        "callerNumber 'anonymous', retried",
        at_call(caller="anonymous"),
        repeat=2,
        body=WITHHELD,
        check=checks(asked_to_show_number, nothing_kept),
    ),
    Case(
        "isActive=0 of a withheld number's call",
        final(callerNumber=""),
        check=checks(empty, nothing_kept),
    ),
    Case(
        "a new call after a hang-up offers Continue / Start again",
        at_call(OTHER_SESSION),
        before=enrolled_by_voice(None, hang_up=True),
        body="Press 1 for Continue. Press 2 for Start again.",
        recorded=heard("", 0, OTHER_SESSION),
        check=checks(waits(one_key=True), answers(1)),
    ),
    # -- a call we placed (the missed-call callback) ------------------------------------------
    Case(
        "a call we placed: AT names the worker callerNumber, as on any call",
        at_call(direction="Outbound", destinationNumber=CALLBACK),
        body="<GetDigits",
        recorded=heard("", 0),
        check=one_session,
    ),
    # -- malformed: 400, nothing changes ------------------------------------------------------
    Case("missing sessionId", without(at_call(), "sessionId"), 400, "missing field 'sessionId'"),
    Case(
        "missing callerNumber",
        without(at_call(), "callerNumber"),
        400,
        "missing field 'callerNumber'",
    ),
    Case("missing isActive", without(at_call(), "isActive"), 400, "missing field 'isActive'"),
    Case("isActive neither 0 nor 1", at_call(isActive="2"), 400, "field 'isActive'"),
    Case("sessionId empty", at_call(session=""), 400, "empty field 'sessionId'"),
    Case("sessionId with a space", at_call(session="ATVId_ 1"), 400, "malformed field"),
    Case("sessionId over 100 characters", at_call(session="A" * 101), 400, "is longer than 100"),
    Case("callerNumber not a number", at_call(caller="Nairobi"), 400, "not a phone number"),
    Case(
        "callerNumber empty on a turn it was never given",
        keyed("1", callerNumber=""),
        400,
        "not the call's current turn",
        query="?n=1",
    ),
    Case(
        "callerNumber empty, sessionId missing",
        without(at_call(caller=""), "sessionId"),
        400,
        "missing field 'sessionId'",
    ),
    Case("callerNumber over 64 characters", at_call(caller="+" + "1" * 64), 400, "is longer"),
    Case("dtmfDigits not keys", keyed("1a"), 400, "malformed field 'dtmfDigits'", query="?n=1"),
    Case("dtmfDigits over 64 keys", keyed("1" * 65), 400, "is longer", query="?n=1"),
    Case("n not a number", keyed("1"), 400, "malformed parameter 'n'", query="?n=x"),
    Case("n zero", keyed("1"), 400, "malformed parameter 'n'", query="?n=0"),
    Case("noinput not 1", at_call(), 400, "malformed parameter 'noinput'", query="?n=1&noinput=2"),
    Case(
        "a turn the call has not reached",
        keyed("1"),
        400,
        "not the call's current turn",
        query="?n=3",
        before=dialled("2"),
    ),
    Case(
        "a JSON body",
        {},
        400,
        "missing field 'sessionId'",
        raw=b'{"sessionId": "ATVId_1"}',
        content_type="application/json",
    ),
    # -- authentication: 403, nothing changes -------------------------------------------------
    Case("no token", at_call(), 403, NO_TOKEN, token=None),
    Case("empty token", at_call(), 403, NO_TOKEN, token=""),
    Case("wrong token", at_call(), 403, NO_TOKEN, token="not-the-token"),
    Case(
        "a forged hang-up changes nothing",
        final(),
        403,
        NO_TOKEN,
        token="guess",
        before=dialled("2"),
    ),
    Case(
        "malformed without a token: authentication comes first",
        without(at_call(), "sessionId"),
        403,
        NO_TOKEN,
        token=None,
    ),
    Case("GET", at_call(), 405, "not allowed", method="GET"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label)
def test_at_voice(case, app, client, services, monkeypatch):
    run_case(AT_VOICE, case, app, client, services, monkeypatch)


def test_a_token_of_any_characters_is_escaped(app, client, services, monkeypatch):
    """The token goes into each URL quoted, and the document stays well-formed XML."""
    token = 'to&ken <"x"> +/%'
    monkeypatch.setattr(services, "config", replace(services.config, at_webhook_token=token))
    case = Case(
        "a token to escape",
        at_call(),
        repeat=2,
        token=token,
        body="<GetDigits",
        recorded=heard("", 0),
        check=checks(token_only_in_responses(token), waits_with(token)),
    )
    run_case(AT_VOICE, case, app, client, services, monkeypatch)


def waits_with(token: str) -> Callable[[Run], None]:
    """The next turn, sent to the callbackUrl as AT would, is accepted with that token."""

    def check(run: Run) -> None:
        url = document(run).find("GetDigits").get("callbackUrl", "")
        response = run.client.post(url[len(PUBLIC_URL) :], data=keyed("2"))
        assert response.status_code == 200, response.get_data(as_text=True)
        assert CONSENT_EN in response.get_data(as_text=True)

    return check


def test_case_labels_are_unique():
    assert len({case.label for case in CASES}) == len(CASES)


# -- whole calls --------------------------------------------------------------------------------


class Walk:
    """One call, turn by turn through the harness, each request sent to the callbackUrl the
    previous document named; every document obeys the one-nested-element rule."""

    def __init__(self, app, client, services, session: str = SESSION, phone: str = KE):
        self.app, self.client, self.services = app, client, services
        self.session, self.phone = session, phone
        self.turn, self.query = 0, ""
        self.root: ElementTree.Element | None = None

    def send(self, form: dict, digits: str = "", **expected) -> Run:
        case = Case(
            f"turn {self.turn}",
            form,
            query=self.query,
            # what the engine is handed: the keys without the # that ended them
            recorded=heard(digits.removesuffix("#"), self.turn, self.session, self.phone),
            **expected,
        )
        with pytest.MonkeyPatch.context() as patch:
            run = run_case(AT_VOICE, case, self.app, self.client, self.services, patch)
        self.root = document(run)
        one_element(self.root)
        found = self.root.find("GetDigits")
        if found is not None:
            self.query = callback_query(found.get("callbackUrl", ""))
            self.turn = int(dict(parse_qsl(self.query[1:]))["n"])
        return run

    def dial(self, **expected) -> Run:
        return self.send(at_call(self.session, self.phone), **expected)

    def press(self, digits: str | None = None, **expected) -> Run:
        assert self.root is not None
        found = self.root.find("GetDigits")
        assert found is not None
        if digits is None:
            digits = "1" if found.get("numDigits") == "1" else "3"
        form = keyed(digits, sessionId=self.session, callerNumber=self.phone)
        return self.send(form, digits, **expected)


@pytest.mark.parametrize(
    "phone, choice, language, consent, code",
    [
        # the code with the key that ended it, which AT may pass on (PROVIDERS.md §6.2)
        (KE, "2", "en", "Press 1 for I agree.", WORKPLACE_CODE + "#"),
        # no Bangla voice at AT: the English source
        (BD, "1", "bn", "Press 1 for I agree.", WORKPLACE_CODE),
    ],
    ids=["English", "Bangla"],
)
def test_enrolment_and_check_in_by_keypad(
    phone, choice, language, consent, code, app, client, services
):
    """A new worker enrols and answers the day's check-in by keypad on AT, in the real flows;
    every document nests one element; the answers land in the database."""
    add_workplace(services, code=WORKPLACE_CODE)
    walk = Walk(app, client, services, phone=phone)
    walk.dial(check=waits(one_key=True))
    walk.press(choice, body=consent, check=waits(one_key=True))
    walk.press("1", check=waits(one_key=False))
    run = walk.press(code, jobs=("events",))
    assert said_text(walk.root).startswith("Thank you, you are enrolled.")
    if language != "en":  # said from the English source, the clips named in a warning
        assert any(f"{language}/enrol/_finish cannot be heard" in r for r in run.records)
    given = 0
    while walk.root.find("GetDigits") is not None and given < 12:
        run = walk.press(jobs=("events",))
        given += 1
    assert given >= 1  # the check-in began at once after enrolment
    ends(run)
    assert said_text(walk.root).endswith("Thank you. Your answers are anonymous.")
    answers(given)(run)
    with services.db.session() as db:
        stored = db.scalar(select(Worker.language).where(Worker.pseudonym == run.pseudonym()))
    assert stored == language


def write_wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 80)


CONSENT_CLIPS = ("enrol/consent", "enrol/consent.agree", "enrol/consent.decline")


@pytest.mark.parametrize("recorded", [CONSENT_CLIPS, CONSENT_CLIPS[:2]], ids=["all", "some"])
def test_recordings_are_played_as_one_sequence(
    recorded, app, client, services, monkeypatch, tmp_path
):
    """Every utterance of the turn recorded: one <Play> of them in sequence. One missing: one
    <Say> of the whole turn (English here, so no warning)."""
    for clip in recorded:
        write_wav(tmp_path / "en" / "audio" / f"{clip}.wav")
    monkeypatch.setattr(services, "audio", AudioLibrary(tmp_path, PUBLIC_URL))

    def check(run: Run) -> None:
        element = one_element(document(run))
        assert element is not None
        if recorded == CONSENT_CLIPS:
            token = sequence_token(list(CONSENT_CLIPS))
            assert element.tag == "Play" and element.text is None
            assert element.get("url") == f"{PUBLIC_URL}/audio/en/sequence/{token}.wav"
        else:
            assert said_text(document(run)).startswith("WorkerVoice asks a few short questions")
        waits(one_key=True)(run)

    case = Case(
        "consent", keyed("2"), query="?n=1", before=dialled(), recorded=heard("2", 1), check=check
    )
    run_case(AT_VOICE, case, app, client, services, monkeypatch)


def callback_number(run: Run) -> None:
    if run.services.directory.slug_for_code(WORKPLACE_CODE) is None:
        add_workplace(run.services, code=WORKPLACE_CODE, country="KE", timezone="Africa/Nairobi")
    with run.services.db.session() as db:
        directory.set_workplace(db, "dhaka-knit", callback_number=CALLBACK)


MISSED = [
    Case(
        "a call to a callback number is rejected unanswered, and the worker called back",
        at_call(destinationNumber=CALLBACK),
        body="<Reject />",
        before=callback_number,
        jobs=("call_back",),
        check=checks(no_session, no_dialog),
    ),
    Case(
        "a call to the service's own number is answered",
        at_call(),
        body="<GetDigits",
        before=callback_number,
        recorded=heard("", 0),
        check=one_session,
    ),
]


@pytest.mark.parametrize("case", MISSED, ids=lambda case: case.label)
def test_missed_call(case, app, client, services, monkeypatch):
    monkeypatch.setattr(callbacks, "CALLBACK_DELAY_SECONDS", 0)  # queued at once, on any Redis
    run_case(AT_VOICE, case, app, client, services, monkeypatch)
