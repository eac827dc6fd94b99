"""End to end through the real thing: gunicorn, an RQ worker, the database and Redis.

Six workers (one in Bangla) enrol and answer the check-in over Twilio and Africa's Talking SMS;
the brand reads exact figures; with four respondents every figure is suppressed; another brand
sees nothing; afterwards no phone number, in any format, is in the database, Redis (RQ job
payloads decompressed) or the logs.

The check-in's daily rotation (``sample``) is taken out of a copy of the flows here, so that all
six answer every question and the figures are exact; the rotation has its own tests.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from gateway.config import Config
from gateway.engine.definition import load_flows
from gateway.i18n import Texts
from gateway.services import Services
from store.models import Answer

from ..conftest import AT_TOKEN, ROOT, USED
from ..leaks import assert_no_numbers
from ..support import (
    add_brand,
    add_workplace,
    message_id,
)
from .processes import (
    FakeAfricasTalking,
    Processes,
    flows_without_rotation,
    post_sms,
    stack_environ,
)

# question -> answer of workers 1..6 (option value, or number)
ANSWERS = {
    "long_hours": ["yes", "yes", "no", "yes", "no", "yes"],
    "long_hours_days": [3, 2, None, 5, None, 4],
    "overtime_forced": ["no", "no", "no", "yes", "no", "no"],
    "paid_on_time": ["yes", "late", "yes", "yes", "short", "yes"],
    "deductions": ["no", "no", "no", "no", "no", "yes"],
    "fire_exits": ["yes", "yes", "unsure", "no", "yes", "yes"],
    "respect": ["no", "no", "no", "no", "yes", "no"],
    "free_to_leave": ["yes", "yes", "yes", "yes", "yes", "yes"],
    "documents_held": ["no", "no", "no", "no", "no", "no"],
    "pay_fairness": [3, 4, 2, 5, 1, 3],
}
EXPECTED = {
    "checkin.long_hours": 0.6667,
    "checkin.long_hours_days": None,  # four respondents: suppressed
    "checkin.overtime_forced": 0.1667,
    "checkin.paid_on_time": 0.6667,
    "checkin.deductions": 0.1667,
    "checkin.fire_exits": 0.6667,
    "checkin.respect": 0.1667,
    "checkin.free_to_leave": 1.0,
    "checkin.documents_held": 0.0,
    "checkin.pay_fairness": 3.0,
}
# (address, provider, language menu choice, language code)
WORKERS = [
    ("+8801711000001", "twilio", "১", "bn"),  # Bangla, picked with a Bengali digit
    ("+8801711000002", "twilio", "English", "en"),
    ("whatsapp:+8801711000003", "twilio", "2", "en"),
    ("+254711000004", "at", "English", "en"),
    ("+254711000005", "at", "english", "en"),
    ("+8801711000006", "twilio", "2", "en"),
]
BENGALI_DIGITS = str.maketrans("0123456789", "০১২৩৪৫৬৭৮৯")
# Where a worker could type a phone number and have it kept: free text, an open number.
FEEDBACK_FLOW = """\
title: Feedback
version: 1
keywords: [TELL]
questions:
  - id: comment
    ask: Tell us anything else.
    type: text
  - id: roommates
    ask: How many people share your room?
    type: number
    min: 0
finish: Thank you for telling us.
"""


def tell_with_numbers(conversation: Conversation) -> None:
    """The worker types their own number into every answer that might keep it."""
    digits = conversation.address.split("+")[-1]
    assert "Tell us anything else." in conversation.send("TELL")
    reply = conversation.send(f"my boss has my number 0{digits[3:]}, or +{digits}")
    assert "How many people" in reply
    assert "Please reply with a number" in conversation.send(f"0{digits[3:]}")
    assert "Thank you for telling us" in conversation.send("4")


@pytest.fixture
def stack(tmp_path, app, redis_url):
    """gunicorn + RQ worker on the suite's database, and Services seeing what they see."""
    flows = flows_without_rotation(tmp_path)
    (flows / "feedback.yaml").write_text(FEEDBACK_FLOW)
    fake_at = FakeAfricasTalking()
    environ = stack_environ(tmp_path, flows, fake_at.url, redis_url)
    environ["DATABASE_URL"] = app.extensions["workervoice"].config.database_url
    services = Services(Config.from_env(environ))
    services.redis.flushdb()
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = Processes(environ, logs)
    processes.start()
    yield processes, fake_at, services
    processes.stop()
    fake_at.close()
    services.db.dispose()


class Conversation:
    """One worker texting the gateway over HTTP, reading replies where the provider would."""

    def __init__(self, url: str, fake_at: FakeAfricasTalking, address: str, provider: str):
        self.url, self.fake_at = url, fake_at
        self.address, self.provider = address, provider
        self.at_replies = 0

    def send(self, text: str, sid: str | None = None) -> str:
        response = post_sms(self.url, self.provider, self.address, text, sid)
        if self.provider == "twilio":
            return response.text
        self.at_replies += 1
        return self.fake_at.wait_for(self.address, self.at_replies)


def asked(reply: str, questions: dict[str, str]) -> str | None:
    """Which check-in question the reply ends with."""
    found = [(reply.rfind(text), qid) for text, qid in questions.items() if text in reply]
    return max(found)[1] if found else None


def answer_for(flow, qid: str, value, language: str, texts: Texts) -> str:
    question = flow.question(qid)
    if question.type == "number":
        return str(value).translate(BENGALI_DIGITS) if language == "bn" else str(value)
    option = question.option(value)
    if language == "bn":  # the option's text in Bangla, as the worker reads it
        return texts.flow("bn", option.text)
    return str(question.options.index(option) + 1)


def run_worker(conversation: Conversation, index: int, menu_choice: str, language: str) -> None:
    flows, texts = load_flows(ROOT / "flows"), Texts.load(ROOT / "locales")
    checkin = flows["checkin"]
    questions = {texts.flow(language, q.ask): q.id for q in checkin.questions}
    conversation.send("hello")
    conversation.send(menu_choice)
    conversation.send("1")  # consent: agree
    reply = conversation.send("4321")
    answered = 0
    while (qid := asked(reply, questions)) is not None:
        reply_text = answer_for(checkin, qid, ANSWERS[qid][index], language, texts)
        sid = message_id("SM" if conversation.provider == "twilio" else "ATXid_")
        reply = conversation.send(reply_text, sid=sid)
        if index == 1 and answered == 0:  # the provider retries one message: answered again
            assert conversation.send(reply_text, sid=sid) == reply
        answered += 1
    assert texts.flow(language, checkin.finish) in reply
    assert answered == sum(1 for values in ANSWERS.values() if values[index] is not None)


def instance_files(directory: Path) -> str:
    """Every file the service wrote (outbox, secrets, SQLite) as text, for the leak scan."""
    paths = [p for p in directory.rglob("*") if p.is_file()] if directory.exists() else []
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in paths)


def wait_for_answers(services: Services, expected: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with services.db.session() as session:
            count = len(session.scalars(select(Answer.id)).all())
        if count >= expected or time.monotonic() > deadline:
            assert count == expected
            return
        time.sleep(0.1)


def indicators(url: str, token: str, workplace: str = "dhaka-knit") -> requests.Response:
    return requests.get(
        f"{url}/api/v1/workplaces/{workplace}/indicators?days=7",
        timeout=10,
        headers={"Authorization": f"Bearer {token}"},
    )


def test_six_workers_over_twilio_and_at_to_brand_figures(stack):
    processes, fake_at, services = stack
    add_workplace(services, "dhaka-knit", "4321", "BD", "Asia/Dhaka")
    brand = add_brand(services, "brand-a", grants=("dhaka-knit",))
    other = add_brand(services, "brand-b")
    per_worker = [sum(1 for v in ANSWERS.values() if v[i] is not None) for i in range(6)]

    for index, (address, provider, choice, language) in enumerate(WORKERS[:4]):
        conversation = Conversation(processes.url, fake_at, address, provider)
        run_worker(conversation, index, choice, language)
        if index == 1:
            tell_with_numbers(conversation)
    wait_for_answers(services, sum(per_worker[:4]) + 2)
    four = indicators(processes.url, brand).json()
    assert four["respondents"] is None
    assert all(i["suppressed"] and i["value"] is None for i in four["indicators"])

    for index, (address, provider, choice, language) in enumerate(WORKERS[4:], start=4):
        run_worker(Conversation(processes.url, fake_at, address, provider), index, choice, language)
    wait_for_answers(services, sum(per_worker) + 2)
    six = indicators(processes.url, brand).json()
    assert six["respondents"] == 6
    assert {i["id"]: i["value"] for i in six["indicators"]} == EXPECTED
    with services.db.session() as session:
        versions = set(session.scalars(select(Answer.flow_version)))
        comment = session.scalar(select(Answer.value_text).where(Answer.question_id == "comment"))
    assert versions == {"1"}
    assert comment == "my boss has my number [number removed], or [number removed]"

    listed = requests.get(
        processes.url + "/api/v1/workplaces",
        timeout=10,
        headers={"Authorization": f"Bearer {other}"},
    )
    assert listed.json() == {"workplaces": []}
    hidden, missing = indicators(processes.url, other), indicators(processes.url, other, "nope")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content
    assert hidden.json() == {"error": "not found"}

    processes.stop()
    logs = processes.log_text()
    files = instance_files(Path(processes.environ["WORKERVOICE_INSTANCE_DIR"]))
    assert_no_numbers([address for address, *_ in WORKERS], services, logs + files)
    assert AT_TOKEN not in logs, "the AT webhook token is in the logs"
    USED["e2e"] = "gunicorn+rq-worker"
