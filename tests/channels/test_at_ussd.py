"""POST /webhooks/at/ussd: Africa's Talking USSD (PROVIDERS.md §4), and its end-of-session
notification at /webhooks/at/ussd/events.

Each request carries the whole session's input so far (``text``, joined by ``*``) and is
answered at once with ``CON <screen>`` or ``END <screen>``. ``UssdPhone`` below is a handset
posting cumulative texts exactly as AT does; every screen it receives is checked against
SPEC §4's limits. The cases go through the shared harness (tests/channels/harness.py): a 4xx
changes nothing, a retry is answered the same, the number ends up nowhere.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from gateway.channels import ussd
from gateway.engine import words
from gateway.engine.sampling import groups, todays_plan
from gateway.engine.screens import fits, paginate, prompt_lines
from gateway.engine.session import Session
from gateway.engine.texts import language_name, languages_for
from gateway.i18n import Texts
from gateway.sessions import DIALOG_SECONDS
from store.models import Answer

from ..conftest import AT_TOKEN
from ..support import add_workplace, run_jobs
from .harness import (
    AT_USSD,
    WORKPLACE_CODE,
    Case,
    Channel,
    Recorded,
    answers,
    checks,
    forgotten,
    no_session,
    one_session,
    run_case,
)

KE = "+254711283946"
BD = "+8801711283946"
SID = "ATUid_5d3b4c2bc589f4811820a7184eed4df5"
SID2 = "ATUid_0f9e8d7c6b5a49382716a5b4c3d2e1f0"
NO_TOKEN = "invalid webhook token"
ROOT = Path(__file__).resolve().parents[2]
TEXTS = Texts.load(ROOT / "locales")
WELCOME = "Welcome to WorkerVoice. Choose your language."
CONSENT = (
    "WorkerVoice asks a few short questions about your work. Your phone number is never stored "
    "and no one at your workplace sees who answered. Do you agree?"
)
CODE_PROMPT = "Type the code of your workplace. It is on the WorkerVoice poster."
FINISH = "Thank you. Your answers are anonymous."
EVENTS = Channel(
    "at", "/webhooks/at/ussd/events", AT_USSD.module, "phoneNumber", "input", "sessionId"
)


def form(text: str = "", session_id: str = SID, phone: str = KE, **extra: str) -> dict:
    """A USSD request in the shape of PROVIDERS.md §4.1."""
    fields = {
        "sessionId": session_id,
        "serviceCode": "*384*1234#",
        "phoneNumber": phone,
        "networkCode": "63902",
        "text": text,
    }
    fields.update(extra)
    return fields


def without(fields: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k not in names}


def recorded(text: str, session_id: str = SID, phone: str = KE) -> Recorded:
    return Recorded(phone, text, ussd.message_id(session_id, text), "ussd", session_id)


# -- a handset ---------------------------------------------------------------------------------
def check_screen(reply: str) -> str:
    """A reply as AT takes it: ``CON``/``END`` then a screen within SPEC §4's limits."""
    assert reply.startswith(("CON ", "END ")), reply
    assert fits(reply[4:]), f"over the USSD limit: {reply!r}"
    return reply


class UssdPhone:
    """A handset in one USSD session: every key press posted as AT would (the whole text)."""

    def __init__(self, client, phone: str, session_id: str = SID):
        self.client, self.phone, self.session_id = client, phone, session_id
        self.inputs: list[str] = []
        self.replies: list[str] = []

    @property
    def text(self) -> str:
        return "*".join(self.inputs)

    def dial(self) -> str:
        self.inputs = []
        return self._post()

    def press(self, key: str) -> str:
        self.inputs.append(key)
        return self._post()

    def read(self, reply: str) -> list[str]:
        """Every page of a screen: ``98`` pressed while the page offers a next one."""
        pages = [reply]
        while "\n98. " in pages[-1]:
            pages.append(self.press("98"))
            assert len(pages) < 10, pages
        return pages

    def _post(self) -> str:
        response = self.client.post(
            f"/webhooks/at/ussd?token={AT_TOKEN}",
            data=form(self.text, self.session_id, self.phone),
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == "text/plain"
        reply = check_screen(response.get_data(as_text=True))
        self.replies.append(reply)
        return reply


OPTION = re.compile(r"^(\d+)\. (.+)$", re.MULTILINE)


def options(pages: list[str]) -> dict[str, str]:
    """Option text -> its number, over every page (the paging keys left out)."""
    found = {}
    for page in pages:
        for number, text in OPTION.findall(page):
            if number not in ("98", "00"):
                found[text] = number
    return found


def content(pages: list[str]) -> str:
    """What the pages say, labels and CON/END dropped, with any whitespace as one space."""
    lines = [
        line
        for page in pages
        for line in page[4:].split("\n")
        if not line.startswith(("98. ", "00. "))
    ]
    return " ".join(" ".join(lines).split())


def says(pages: list[str], text: str) -> bool:
    return " ".join(text.split()) in content(pages)


def enrol(handset: UssdPhone, language: str, lang: str) -> list[str]:
    """Dial, read every page of each screen, choose the language, agree, give the code; the
    pages of the screen that follows (the enrolment's finish and the first question)."""
    menu = handset.read(handset.dial())
    pages = handset.read(handset.press(options(menu)[language]))
    assert says(pages, TEXTS.flow(lang, CONSENT)), pages
    pages = handset.read(handset.press(options(pages)[TEXTS.flow(lang, "I agree")]))
    assert says(pages, TEXTS.flow(lang, CODE_PROMPT)), pages
    pages = handset.read(handset.press(WORKPLACE_CODE))
    assert says(pages, TEXTS.flow(lang, "Thank you, you are enrolled.")), pages
    return pages


def answer_key(pages: list[str]) -> str:
    """Yes (1) to a menu, so every follow-up question applies; 3 to a number question."""
    return "1" if options(pages) else "3"


def session_of(services, phone: str) -> Session:
    session = services.sessions.load(services.identity.pseudonymise(phone).value)
    assert session is not None
    return session


def answer_rows(services) -> int:
    with services.db.session() as db:
        return len(db.scalars(Answer.__table__.select()).all())


# -- before / check hooks ----------------------------------------------------------------------
def dialled(phone: str, *keys: str, session_id: str = SID):
    """The worker dialled in (session_id) and pressed these keys, no paging in between."""

    def before(run) -> None:
        handset = UssdPhone(run.client, phone, session_id)
        handset.dial()
        for key in keys:
            handset.press(key)

    return before


def enrolled_over_ussd(phone: str, *keys: str):
    """A worker enrolled in English over USSD under SID, keys pressed directly: 2 (English,
    second for a Kenyan or Bangladeshi number), 1 (agree), the code; then ``keys``."""

    def before(run) -> None:
        if run.services.directory.slug_for_code(WORKPLACE_CODE) is None:
            add_workplace(run.services, code=WORKPLACE_CODE)
        country = run.services.identity.pseudonymise(phone).country
        assert languages_for(country, TEXTS.languages()).index("en") == 1
        handset = UssdPhone(run.client, phone)
        handset.dial()
        for key in ("2", "1", WORKPLACE_CODE, *keys):
            handset.press(key)
        run_jobs(run.app)  # beside a real Redis the enrolment waits for the worker
        assert run.profile_exists(phone)

    return before


def reply_of(run) -> str:
    return run.responses[0].get_data(as_text=True)


def menu_pages(lang: str, country: str) -> list[str]:
    """The first screen for a new worker, as the pager lays it out."""
    names = [language_name(c) for c in languages_for(country, TEXTS.languages())]
    more = TEXTS.service(lang, words.PAGE_NEXT)
    back = TEXTS.service(lang, words.PAGE_BACK)
    return paginate(prompt_lines(TEXTS.flow(lang, WELCOME), names), more, back)


def consent_pages(lang: str = "bn") -> list[str]:
    """The consent screen as the pager lays it out (three pages in Bangla, the options on the
    third)."""
    agree = [TEXTS.flow(lang, "I agree"), TEXTS.flow(lang, "I do not agree")]
    more = TEXTS.service(lang, words.PAGE_NEXT)
    back = TEXTS.service(lang, words.PAGE_BACK)
    return paginate(prompt_lines(TEXTS.flow(lang, CONSENT), agree), more, back)


def shows_page(index: int, lang: str = "bn", country: str = "BD"):
    def check(run) -> None:
        assert reply_of(run) == "CON " + menu_pages(lang, country)[index]

    return check


def still_on_language_menu(run) -> None:
    assert session_of(run.services, run.phone).current == "language"


def continued_after_stop(run) -> None:
    """A closing screen over two pages: any key shows the next one, and the last ENDs."""
    assert reply_of(run).startswith("CON ")
    response = run.client.post(
        f"/webhooks/at/ussd?token={AT_TOKEN}", data=form("1*STOP*7", phone=BD)
    )
    last = check_screen(response.get_data(as_text=True))
    assert last.startswith("END ") and "\n00. " in last
    assert says([reply_of(run), last], TEXTS.service("bn", words.STOPPED))


def rebased(run) -> None:
    """After a text that did not extend the previous one, the next one extends it: its key,
    pressed on the consent's first page (no option shown), shows the next page."""
    response = run.client.post(f"/webhooks/at/ussd?token={AT_TOKEN}", data=form("1*1", phone=BD))
    assert check_screen(response.get_data(as_text=True)) == "CON " + consent_pages()[1]
    consent_pending(run)


def question_next(run) -> None:
    """Splitting the question after the message saves a page (it would take two of its own),
    so 98 shows the rest of it with both options."""
    response = run.client.post(f"/webhooks/at/ussd?token={AT_TOKEN}", data=form("2**98"))
    reply = check_screen(response.get_data(as_text=True))
    assert reply.endswith("Do you agree?\n1. I agree\n2. I do not agree\n00. Back"), reply
    assert says([reply_of(run), reply], CONSENT)


def consent_pending(run) -> None:
    """Nothing was agreed: the consent is still the question, no profile was made."""
    assert session_of(run.services, BD).current == "consent"
    assert not run.profile_exists(BD)


def post(run, text: str, phone: str = BD) -> str:
    response = run.client.post(f"/webhooks/at/ussd?token={AT_TOKEN}", data=form(text, phone=phone))
    return check_screen(response.get_data(as_text=True))


def agrees_only_from_the_options_page(run) -> None:
    """Another key on the second page shows the third, with the options; only there does 1
    agree (and the code is asked for)."""
    assert post(run, "1*1*1") == "CON " + consent_pages()[2]
    consent_pending(run)
    assert says([post(run, "1*1*1*1")], TEXTS.flow("bn", CODE_PROMPT))
    assert session_of(run.services, BD).current == "workplace"


BN_ENROLMENT = ("1", "98", "98", "1", WORKPLACE_CODE)  # Bangla, the consent read, agreed, code


def long_hours_day(run) -> datetime:
    """Noon (UTC; evening in Dhaka) of a day whose check-in begins, for BD, with long_hours: a
    question too long to share a Bangla page with the enrolment's thanks. The rotation moves
    with the date and the worker's seed (drawn as they enrol: here, a known one)."""
    flow = run.services.registry.current()[0]["checkin"]
    seed = 0x5EED
    run.services.draw_seed = lambda: seed
    days = (date(2025, 3, 1) + timedelta(days=n) for n in range(len(groups(flow))))
    day = next(d for d in days if todays_plan(flow, d, seed)[0] == "long_hours")
    return datetime.combine(day, time(12), UTC)


def enrolled_in_bangla(run) -> None:
    """A Bangladeshi worker enrolled in Bangla over USSD (reading the consent to its options);
    the screen on the phone: the enrolment's thanks, then 98 for the first question."""
    day = long_hours_day(run)
    run.services.clock = lambda: day
    add_workplace(run.services, code=WORKPLACE_CODE)
    handset = UssdPhone(run.client, BD)
    handset.dial()
    for key in BN_ENROLMENT:
        handset.press(key)
    run_jobs(run.app)
    thanks = TEXTS.flow("bn", "Thank you, you are enrolled.")
    more = TEXTS.service("bn", words.PAGE_NEXT)
    assert handset.replies[-1] == f"CON {thanks}\n98. {more}", handset.replies[-1]
    assert run.profile_exists(BD) and session_of(run.services, BD).current == "long_hours"


def question_shown_not_answered(run) -> None:
    """The key showed the first question with its options and answered nothing; 1 on that
    page then answers it (yes), and its follow-up comes."""
    session = session_of(run.services, BD)
    assert session.current == "long_hours" and not session.answers
    ask = TEXTS.flow("bn", "Did you work more than 10 hours on any day this week?")
    yes, no = TEXTS.flow("bn", "Yes"), TEXTS.flow("bn", "No")
    back = TEXTS.service("bn", words.PAGE_BACK)
    assert reply_of(run) == f"CON {ask}\n1. {yes}\n2. {no}\n00. {back}"
    assert post(run, "*".join([*BN_ENROLMENT, "1", "1"])).startswith("CON ")
    run_jobs(run.app)
    assert answer_rows(run.services) == 1
    after = session_of(run.services, BD)
    assert "long_hours" in after.answers and after.current == "long_hours_days"


def dialog_over(run) -> None:
    """The session ended: the worker's session is kept for a resume, and the dialog's own
    state expires on its own (a late request of the session still finds it)."""
    [key] = run.services.redis.keys("wv:dialog:*")
    assert 0 < run.services.redis.ttl(key) <= DIALOG_SECONDS
    session = session_of(run.services, run.phone)
    assert session.current is not None and session.answers  # kept for a resume


def resumes():
    """(before, continue check, restart check) sharing what the first session asked."""
    asked: dict[str, str] = {}

    def before(run) -> None:
        enrolled_over_ussd(KE)(run)
        asked["first"] = session_of(run.services, KE).current or ""
        handset = UssdPhone(run.client, KE)
        handset.inputs = ["2", "1", WORKPLACE_CODE]
        handset.press("1")  # answers the first question, then the worker drops
        asked["second"] = session_of(run.services, KE).current or ""
        handset = UssdPhone(run.client, KE, SID2)
        offer = handset.dial()
        assert "1. Continue\n2. Start again" in offer

    def goes_on(run) -> None:
        session = session_of(run.services, KE)
        assert session.current == asked["second"] != asked["first"]
        assert asked["first"] in session.answers
        prompt = next(q.ask for q in flows(run).questions if q.id == asked["second"])
        assert prompt in reply_of(run)

    def starts_again(run) -> None:
        session = session_of(run.services, KE)
        assert session.current == asked["first"] and not session.answers
        prompt = next(q.ask for q in flows(run).questions if q.id == asked["first"])
        assert prompt in reply_of(run)

    return before, goes_on, starts_again


def flows(run):
    return run.services.registry.current()[0].default


RESUME_BEFORE, RESUME_GOES_ON, RESUME_STARTS_AGAIN = resumes()

CASES = [
    # -- dialling in ------------------------------------------------------------------------
    Case(
        "a new Bangladeshi worker: the language menu in Bangla",
        form(phone=BD),
        body="CON " + TEXTS.flow("bn", WELCOME),
        recorded=recorded("", phone=BD),
        check=checks(one_session, shows_page(0), still_on_language_menu),
    ),
    Case(
        "a new Kenyan worker: the menu in Swahili, English second",
        form(),
        body="2. English",
        recorded=recorded(""),
        check=checks(one_session, shows_page(0, "sw", "KE")),
    ),
    Case(
        "a retried dial-in is answered the same",
        form(phone=BD),
        repeat=2,
        body="CON ",
        recorded=recorded("", phone=BD),
        check=one_session,
    ),
    Case(
        "unknown parameters, no networkCode or serviceCode",
        without(form(futureParameter="x"), "networkCode", "serviceCode"),
        body="CON ",
        recorded=recorded(""),
    ),
    # -- paging -----------------------------------------------------------------------------
    Case(
        "98 shows the next page, with no step",
        form("98", phone=BD),
        before=dialled(BD),
        body="\n00. " + TEXTS.service("bn", words.PAGE_BACK),
        recorded=recorded("98", phone=BD),
        check=checks(shows_page(1), still_on_language_menu),
    ),
    Case(
        "00 shows the previous page",
        form("98*00", phone=BD),
        before=dialled(BD, "98"),
        recorded=recorded("98*00", phone=BD),
        check=shows_page(0),
    ),
    Case(
        "98 on the last page is an ordinary answer",
        form("98*98", phone=BD),
        before=dialled(BD, "98"),
        body=TEXTS.service("bn", words.CHOOSE_NUMBER).format(count=6),
        recorded=recorded("98*98", phone=BD),
        check=still_on_language_menu,
    ),
    Case(
        "00 on the first page is an ordinary answer",
        form("00", phone=BD),
        before=dialled(BD),
        body=TEXTS.service("bn", words.CHOOSE_NUMBER).format(count=6),
        recorded=recorded("00", phone=BD),
    ),
    Case(
        "an option answered from a later page",
        form("98*2", phone=BD),
        before=dialled(BD, "98"),
        body="CON WorkerVoice asks a few short questions",
        recorded=recorded("98*2", phone=BD),
    ),
    # -- a waiting screen's pages before its question: any key shows the next page --------
    Case(
        "Bangla consent: 1 on a page without the options shows the next page, agrees nothing",
        form("1*1", phone=BD),
        before=dialled(BD, "1"),
        body="CON " + consent_pages()[1],
        recorded=recorded("1*1", phone=BD),
        check=checks(consent_pending, agrees_only_from_the_options_page),
    ),
    Case(
        "Bangla consent: 2 on a page without the options declines nothing",
        form("1*2", phone=BD),
        before=dialled(BD, "1"),
        body="CON " + consent_pages()[1],
        recorded=recorded("1*2", phone=BD),
        check=checks(consent_pending, one_session),
    ),
    Case(
        "00 on the first page of a question not yet shown: the next page",
        form("1*00", phone=BD),
        before=dialled(BD, "1"),
        body="CON " + consent_pages()[1],
        recorded=recorded("1*00", phone=BD),
        check=consent_pending,
    ),
    Case(
        "HELP on a page without the options is applied: it answers no question",
        form("1*HELP", phone=BD),
        before=dialled(BD, "1"),
        body="CON " + TEXTS.service("bn", words.HELP).split()[0],
        recorded=recorded("1*HELP", phone=BD),
        check=consent_pending,
    ),
    Case(
        "after enrolment in Bangla: 1 on the thanks shows the first question, answers nothing",
        form("*".join([*BN_ENROLMENT, "1"]), phone=BD),
        before=enrolled_in_bangla,
        body="\n00. " + TEXTS.service("bn", words.PAGE_BACK),
        recorded=recorded("*".join([*BN_ENROLMENT, "1"]), phone=BD),
        check=checks(one_session, question_shown_not_answered),
    ),
    Case(  # STOP is applied from a page without the options too: a worker never pages to leave
        "a closing screen over two pages: CON, then END",
        form("1*STOP", phone=BD),
        before=dialled(BD, "1"),
        body="\n98. " + TEXTS.service("bn", words.PAGE_NEXT),
        recorded=recorded("1*STOP", phone=BD),
        jobs=("events",),
        check=checks(forgotten, continued_after_stop),
    ),
    # -- reading the cumulative text --------------------------------------------------------
    Case(
        "a text that does not extend the previous one: its last part, re-based",
        form("1", phone=BD),
        before=dialled(BD, "98"),
        body="CON " + TEXTS.flow("bn", CONSENT)[:20],
        recorded=recorded("1", phone=BD),
        check=rebased,
    ),
    Case(
        "98 in a text that does not extend the previous one is an ordinary answer",
        form("5*98", phone=BD),
        before=dialled(BD, "98"),
        body=TEXTS.service("bn", words.CHOOSE_NUMBER).format(count=6),
        recorded=recorded("5*98", phone=BD),
        check=still_on_language_menu,
    ),
    Case(
        "several new parts: only the last is applied",
        form("5*2", phone=BD),
        before=dialled(BD),
        body="CON WorkerVoice asks a few short questions",
        recorded=recorded("5*2", phone=BD),
    ),
    Case(
        "a trailing star: an empty answer, asked again",
        form("2*"),
        before=dialled(KE, "2"),
        body="CON Please reply with a number from 1 to 2.\nWorkerVoice asks a few short",
        recorded=recorded("2*"),
        check=question_next,
    ),
    Case(
        "a retried answer is answered the same and recorded once",
        form("2*1*4321*1"),
        repeat=3,
        before=enrolled_over_ussd(KE),
        body="CON ",
        recorded=recorded("2*1*4321*1"),
        jobs=("events",),
        check=checks(answers(1), one_session),
    ),
    Case(
        "declining ends the session: END",
        form("2*2"),
        before=dialled(KE, "2"),
        body="END You did not agree, so nothing about you was kept.",
        recorded=recorded("2*2"),
        check=no_session,
    ),
    # -- drop and resume --------------------------------------------------------------------
    Case(
        "a new session after a drop offers to resume",
        form("", SID2),
        before=enrolled_over_ussd(KE, "1"),
        body="CON You did not finish last time. Your answers so far are kept.\n"
        "1. Continue\n2. Start again",
        recorded=recorded("", SID2),
        check=one_session,
    ),
    Case(
        "Continue goes on at the first unanswered question",
        form("1", SID2),
        before=RESUME_BEFORE,
        body="CON ",
        recorded=recorded("1", SID2),
        check=RESUME_GOES_ON,
    ),
    Case(
        "Start again asks the first question again",
        form("2", SID2),
        before=RESUME_BEFORE,
        body="CON ",
        recorded=recorded("2", SID2),
        check=RESUME_STARTS_AGAIN,
    ),
    # -- malformed: 400, nothing changes ----------------------------------------------------
    Case("missing sessionId", without(form(), "sessionId"), 400, "missing field 'sessionId'"),
    Case("missing phoneNumber", without(form(), "phoneNumber"), 400, "missing field 'phoneNumber'"),
    Case("missing text", without(form(), "text"), 400, "missing field 'text'"),
    Case(
        "missing phoneNumber mid-session",
        without(form("2*1"), "phoneNumber"),
        400,
        "missing field 'phoneNumber'",
        before=dialled(KE, "2"),
    ),
    Case("sessionId empty", form(session_id=""), 400, "empty field 'sessionId'"),
    Case("sessionId with a line break", form(session_id="ATUid_1\nx"), 400, "malformed field"),
    Case(
        "sessionId over 100 characters",
        form(session_id="ATUid_" + "a" * 95),
        400,
        "field 'sessionId' is longer than 100 characters",
    ),
    Case("phoneNumber a placeholder", form(phone="+254711XXXYYY"), 400, "not a phone number"),
    Case("phoneNumber empty", form(phone=""), 400, "not a phone number"),
    Case(
        "text over 4,000 characters",
        form("1*" * 2000 + "1"),
        400,
        "field 'text' is longer than 4000 characters",
    ),
    Case("text with a NUL character", form("1\x00"), 400, "field 'text' holds a NUL"),
    Case("networkCode over 16 characters", form(networkCode="6" * 17), 400, "'networkCode'"),
    Case(
        "a JSON body",
        {},
        400,
        "missing field 'sessionId'",
        raw=b'{"sessionId": "ATUid_1", "phoneNumber": "+254711283946", "text": ""}',
        content_type="application/json",
    ),
    # -- authentication: 403, nothing changes -----------------------------------------------
    Case("no token", form(), 403, NO_TOKEN, token=None),
    Case("wrong token", form(), 403, NO_TOKEN, token="not-the-token"),
    Case(
        "a forged answer changes nothing",
        form("2*1*4321*1"),
        403,
        NO_TOKEN,
        token="guess",
        before=enrolled_over_ussd(KE),
    ),
    Case(
        "malformed without a token: authentication comes first",
        without(form(), "sessionId"),
        403,
        NO_TOKEN,
        token=None,
    ),
    # -- not a webhook call at all ----------------------------------------------------------
    Case("GET", form(), 405, "not allowed", method="GET"),
    Case("a body over the size limit", form("1" * 300_000), 413, "exceeds"),
]


def ended(text: str = "", session_id: str = SID, phone: str = KE, **extra: str) -> dict:
    """AT's end-of-session notification (PROVIDERS.md §4.4)."""
    fields = {
        "date": "2025-09-29 12:00:00",
        "sessionId": session_id,
        "serviceCode": "*384*1234#",
        "networkCode": "63902",
        "phoneNumber": phone,
        "status": "Incomplete",
        "cost": "KES 0.10",
        "durationInMillis": "31204",
        "hopsCount": "5",
        "input": text,
        "lastAppResponse": "CON Were you paid in full and on time on your last pay day?",
    }
    fields.update(extra)
    return fields


EVENT_CASES = [
    Case(
        "end of session: the dialog is over, the answers are kept",
        ended("2*1*4321*1"),
        body="",
        before=enrolled_over_ussd(KE, "1"),
        recorded=Recorded(KE, "", ussd.end_id(SID), "ussd", SID),
        check=checks(dialog_over, one_session),
    ),
    Case(
        "a retried notification",
        ended("2*1*4321*1", status="Failed", errorMessage="Timeout"),
        repeat=2,
        before=enrolled_over_ussd(KE, "1"),
        recorded=Recorded(KE, "", ussd.end_id(SID), "ussd", SID),
        check=dialog_over,
    ),
    Case("end: missing sessionId", without(ended(), "sessionId"), 400, "missing field"),
    Case("end: a placeholder number", ended(phone="+254711XXXYYY"), 400, "not a phone number"),
    Case("end: no token", ended(), 403, NO_TOKEN, token=None),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label)
def test_at_ussd(case, app, client, services, monkeypatch):
    run_case(AT_USSD, case, app, client, services, monkeypatch)


@pytest.mark.parametrize("case", EVENT_CASES, ids=lambda case: case.label)
def test_at_ussd_events(case, app, client, services, monkeypatch):
    run = run_case(EVENTS, case, app, client, services, monkeypatch)
    if case.status == 200:
        assert all(r.get_data() == b"" for r in run.responses)


def test_case_labels_are_unique():
    labels = [case.label for case in CASES + EVENT_CASES]
    assert len(set(labels)) == len(labels)


# -- whole sessions ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("phone", "language", "lang"),
    [(KE, "English", "en"), (BD, "বাংলা", "bn")],
    ids=["English", "Bangla"],
)
def test_enrolment_and_check_in_end_to_end(
    phone, language, lang, app, client, services, monkeypatch
):
    """A new worker enrols and answers the day's check-in over USSD, reading every page of
    every screen; the last answer, sent through the harness, gets the finish with END."""
    add_workplace(services, code=WORKPLACE_CODE)
    handset = UssdPhone(client, phone)
    pages = enrol(handset, language, lang)
    assert session_of(services, phone).profile.language == lang
    given = 0
    while session_of(services, phone).plan:  # until the question on screen is the last one
        question = session_of(services, phone).current
        prompt = next(
            q.ask for q in services.registry.current()[0].default.questions if q.id == question
        )
        assert says(pages, TEXTS.flow(lang, prompt)), pages
        pages = handset.read(handset.press(answer_key(pages)))
        given += 1
        assert given < 12
    run_jobs(app)
    assert answer_rows(services) == given
    text = "*".join([*handset.inputs, answer_key(pages)])

    def finished(run) -> None:
        reply = reply_of(run)
        assert reply.startswith("END ") and says([reply], TEXTS.flow(lang, FINISH)), reply
        assert session_of(run.services, phone).current is None

    run_case(
        AT_USSD,
        Case(
            "the last answer",
            form(text, phone=phone),
            body="END ",
            recorded=recorded(text, phone=phone),
            jobs=("events",),
            check=checks(answers(given + 1), finished),
        ),
        app,
        client,
        services,
        monkeypatch,
    )
    assert len(handset.replies) > 6 and all(check_screen(r) for r in handset.replies)


def test_paging_forward_and_back_through_the_bangla_consent(client, services):
    """The consent takes three pages in Bangla: forward, back, forward again, then agree."""
    add_workplace(services, code=WORKPLACE_CODE)
    handset = UssdPhone(client, BD)
    handset.dial()
    first = handset.press("1")  # বাংলা
    second = handset.press("98")
    third = handset.press("98")
    assert handset.press("00") == second
    assert handset.press("00") == first
    assert handset.press("98") == second
    more = TEXTS.service("bn", words.PAGE_NEXT)
    back = TEXTS.service("bn", words.PAGE_BACK)
    assert first.endswith(f"\n98. {more}") and f"00. {back}" not in first
    assert second.endswith(f"\n98. {more}\n00. {back}")
    assert third.endswith(f"\n00. {back}") and "98. " not in third
    assert says([first, second, third], TEXTS.flow("bn", CONSENT))
    assert options([third]) == {
        TEXTS.flow("bn", "I agree"): "1",
        TEXTS.flow("bn", "I do not agree"): "2",
    }
    assert handset.press("1") == third  # the second page shows no option: 1 turns the page
    code = handset.press("1")  # agreed from the third page, which shows the options
    assert says([code], TEXTS.flow("bn", CODE_PROMPT))
    assert handset.text == "1*98*98*00*00*98*1*1"
