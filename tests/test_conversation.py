"""The channel-neutral handler: what holds across channels and messages."""

from __future__ import annotations

from gateway.sessions import CODE_TRIES_PER_DAY

from .support import SmsWorker, add_workplace

UNKNOWN_CODE = "We do not know that workplace code"
GAVE_UP = "We could not find your workplace"


def start_enrolment(worker: SmsWorker) -> str:
    worker.send("hello")
    worker.send("2")  # English
    return worker.send("1")  # agree


def test_one_number_cannot_walk_through_the_workplace_codes(client, services):
    add_workplace(services, code="4321")
    worker = SmsWorker(client, "+8801711000077")
    tries = 0
    while tries < CODE_TRIES_PER_DAY:
        start_enrolment(worker)
        for _ in range(3):
            reply = worker.send(f"{1000 + tries}")
            tries += 1
        assert GAVE_UP in reply
    start_enrolment(worker)
    assert UNKNOWN_CODE in worker.send("4321")  # the right code, past the allowance


def test_the_allowance_is_per_number(client, services):
    add_workplace(services, code="4321")
    first = SmsWorker(client, "+8801711000077")
    for _ in range(CODE_TRIES_PER_DAY // 3):
        start_enrolment(first)
        for code in ("1111", "2222", "3333"):
            first.send(code)
    other = SmsWorker(client, "+8801711000078")
    start_enrolment(other)
    assert "Thank you, you are enrolled." in other.send("4321")
