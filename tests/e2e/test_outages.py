"""End to end through outages: gunicorn, the RQ workers, the database and Redis, with one part
away.

A hop never touches the database: it appends its events to the Redis stream ``wv:events``, which
the persist workers drain (gateway/persistence.py). So while PostgreSQL refuses connections the
workers still get their next question at once, and every answer given meanwhile is stored
exactly once when it is back. And replies through a provider's send API have their own outbox,
queue and worker (gateway/outbox.py, gateway/queues.py): while the provider is unreachable and
every send fails and is tried again, answers are still stored within seconds.

As in test_sms_pipeline, the check-in's daily rotation (``sample``) is taken out of a copy of
the flows, so that every worker answers every question in order ("1" to each: long_hours "yes"
brings long_hours_days, which "1" also answers).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pytest
import requests
from redis import Redis
from rq import Worker as RqWorker
from sqlalchemy import make_url, select

from gateway.config import Config
from gateway.engine.definition import load_flows
from gateway.i18n import Texts
from gateway.outbox import OUTBOX_KEY, RETRY_KEY, Reply
from gateway.persistence import DEAD_KEY, FIELD, STREAM_KEY
from gateway.queues import GROUPS
from gateway.services import EXTENSION, Services
from store.models import Answer

from ..conftest import AT_TOKEN, ROOT
from ..leaks import assert_no_numbers
from ..support import add_workplace, message_id
from .processes import (
    FakeAfricasTalking,
    Processes,
    TcpProxy,
    flows_without_rotation,
    free_port,
    post_sms,
    stack_environ,
)

OUTAGE_SECONDS = 10.0
RECOVERY_SECONDS = 30.0  # every answer given in the outage is stored this soon after it
STORED_WITHIN_SECONDS = 10.0  # an answer is stored this soon after its hop, provider or not


# -- the stack --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Script:
    """The check-in as a worker answering "1" to everything reads it, in English."""

    questions: list[tuple[str, str]]  # (question id, its text)
    finish: str

    @classmethod
    def load(cls, flows: Path) -> Script:
        checkin, texts = load_flows(flows)["checkin"], Texts.load(ROOT / "locales")
        asked = [(q.id, texts.flow("en", q.ask)) for q in checkin.questions]
        return cls(asked, texts.flow("en", checkin.finish))

    def after(self, index: int) -> str:
        """What the reply to the answer to question ``index`` asks (or says, at the end)."""
        following = index + 1
        return self.questions[following][1] if following < len(self.questions) else self.finish


@contextmanager
def running_stack(
    tmp_path: Path, database_url: str, redis_url: str, at_api_url: str, stack_database_url: str
) -> Iterator[tuple[Processes, Services]]:
    """gunicorn + ``workervoice worker`` (the supervisor and its three workers) on
    ``stack_database_url``; and Services for the test, on ``database_url`` directly."""
    flows = flows_without_rotation(tmp_path)
    environ = stack_environ(tmp_path, flows, at_api_url, redis_url)
    services = Services(Config.from_env({**environ, "DATABASE_URL": database_url}))
    services.redis.flushdb()
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = Processes({**environ, "DATABASE_URL": stack_database_url}, logs)
    try:
        processes.start()
        wait_until(lambda: len(RqWorker.all(connection=services.redis)) >= len(GROUPS), 30)
        yield processes, services
    finally:
        processes.stop()
        services.db.dispose()


def wait_until(condition: Callable[[], bool], seconds: float, what: str = "a condition") -> float:
    """Seconds until ``condition()`` held; fails past ``seconds``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


# -- a worker's phone -------------------------------------------------------------------------
@dataclass
class Phone:
    """One worker texting the gateway over HTTP; the reply as the worker reads it (the TwiML
    answer, or the message the AT API stand-in received; None where the AT API is down)."""

    url: str
    address: str
    provider: str
    fake_at: FakeAfricasTalking | None = None
    at_replies: int = 0

    def send(self, text: str) -> str | None:
        if self.provider == "twilio":
            response = post_sms(self.url, "twilio", self.address, text, message_id("SM"))
            root = ElementTree.fromstring(response.content)
            return "\n".join(m.text or "" for m in root.iter("Message"))
        post_sms(self.url, "at", self.address, text, message_id("ATXid_"))
        if self.fake_at is None:
            return None
        self.at_replies += 1
        return self.fake_at.wait_for(self.address, self.at_replies)

    def enrol(self) -> str | None:
        """hello, English, I agree, the workplace code: the first question's reply."""
        for text in ("hello", "English", "1"):
            self.send(text)
        return self.send("4321")


def stored_pairs(services: Services) -> list[tuple[str, str]]:
    """Every stored answer as (pseudonym, question id), duplicates included."""
    with services.db.session() as session:
        return [tuple(row) for row in session.execute(select(Answer.pseudonym, Answer.question_id))]


def healthz(url: str) -> tuple[int, dict]:
    response = requests.get(url + "/healthz", timeout=10)
    return response.status_code, response.json()


# -- 1. PostgreSQL refuses connections ----------------------------------------------------------
OUTAGE_WORKERS = [
    ("+8801711200001", "twilio"),
    ("+8801711200002", "twilio"),
    ("+8801711200003", "twilio"),
    ("+8801711200004", "twilio"),
    ("+254711200005", "at"),
    ("+254711200006", "at"),
    ("+254711200007", "at"),
    ("+254711200008", "at"),
]


def test_answers_given_while_postgresql_refuses_connections_are_stored_exactly_once(
    tmp_path, app, redis_url
):
    database_url = app.extensions[EXTENSION].config.database_url
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        pytest.skip(
            "needs a database server to refuse connections (set DATABASE_URL to PostgreSQL): "
            "SQLite is a file in the process, there is no server to take away"
        )
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    fake_at = FakeAfricasTalking()
    script = Script.load(flows_without_rotation(tmp_path / "script"))
    try:
        with running_stack(tmp_path, database_url, redis_url, fake_at.url, proxied) as stack:
            processes, services = stack
            outage_test(processes, services, proxy, fake_at, script)
    finally:
        proxy.close()
        fake_at.close()


def outage_test(
    processes: Processes,
    services: Services,
    proxy: TcpProxy,
    fake_at: FakeAfricasTalking,
    script: Script,
) -> None:
    add_workplace(services, "dhaka-knit", "4321", "BD", "Asia/Dhaka")
    phones = [Phone(processes.url, a, p, fake_at) for a, p in OUTAGE_WORKERS]
    pseudonym = {p.address: services.identity.pseudonymise(p.address).value for p in phones}
    first_qid, first_text = script.questions[0]

    def before(phone: Phone) -> None:  # enrol and answer the first question
        assert first_text in (phone.enrol() or "")
        assert script.after(0) in (phone.send("1") or "")

    with ThreadPoolExecutor(len(phones)) as pool:
        list(pool.map(before, phones))
    expected_before = {(pseudonym[p.address], first_qid) for p in phones}
    wait_until(
        lambda: (
            set(stored_pairs(services)) == expected_before and services.redis.xlen(STREAM_KEY) == 0
        ),
        10,
        "the answers given before the outage",
    )
    assert healthz(processes.url)[0] == 200

    # -- the database goes away ---------------------------------------------------------------
    proxy.down()
    down_at = time.monotonic()
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2),
    ):
        pass
    hops = len(script.questions) - 1  # questions 2..n, spread over the outage
    pace = (OUTAGE_SECONDS - 2.0) / hops

    def during(phone: Phone) -> list[float]:
        took = []
        for index in range(1, len(script.questions)):
            time.sleep(max(0.0, down_at + 0.3 + (index - 1) * pace - time.monotonic()))
            sent = time.monotonic()
            reply = phone.send("1") or ""
            took.append(time.monotonic() - sent)
            assert script.after(index) in reply, f"question {index + 1}'s reply: {reply!r}"
        return took

    health: list[tuple[int, dict]] = []
    with ThreadPoolExecutor(len(phones)) as pool:
        running = [pool.submit(during, phone) for phone in phones]
        while not all(future.done() for future in running):
            health.append(healthz(processes.url))
            time.sleep(0.5)
        hop_seconds = [seconds for future in running for seconds in future.result()]
    health.append(healthz(processes.url))
    still_down = time.monotonic() - down_at
    assert still_down < OUTAGE_SECONDS, "the hops took longer than the outage"
    for status, body in health:
        assert status == 503, body
        assert body["checks"] == {"database": "failing", "redis": "ok"}, body
    # Nothing of the outage reached the database: it all waits in the stream, one entry a hop.
    assert set(stored_pairs(services)) == expected_before
    assert services.redis.xlen(STREAM_KEY) == hops * len(phones)
    time.sleep(max(0.0, down_at + OUTAGE_SECONDS - time.monotonic()))

    # -- back ------------------------------------------------------------------------------
    relayed = proxy.relayed
    proxy.up()
    up_at = time.monotonic()
    expected = Counter((pseudonym[p.address], qid) for p in phones for qid, _ in script.questions)

    def all_stored() -> bool:
        return Counter(stored_pairs(services)) == expected and services.redis.xlen(STREAM_KEY) == 0

    deadline = up_at + RECOVERY_SECONDS
    while not all_stored() and time.monotonic() < deadline:
        time.sleep(0.05)
    recovered = time.monotonic() - up_at
    stored = Counter(stored_pairs(services))
    print(
        f"\n{len(phones)} workers, {hops * len(phones)} answers in a "
        f"{OUTAGE_SECONDS:.0f} s outage (hops: max {max(hop_seconds) * 1000:.0f} ms, health "
        f"checks: {len(health)}); all stored {recovered:.2f} s after the database came back"
    )
    assert stored == expected, (
        f"missing: {sorted(expected - stored)}, duplicated: "
        f"{sorted(k for k, n in stored.items() if n > 1)}, unexpected: "
        f"{sorted(set(stored) - set(expected))}"
    )
    assert services.redis.xlen(STREAM_KEY) == 0
    assert recovered < RECOVERY_SECONDS
    for phone in phones:  # one row per question answered, no more
        rows = [qid for who, qid in stored.elements() if who == pseudonym[phone.address]]
        assert len(rows) == len(set(rows)) == len(script.questions)
    assert services.redis.xlen(DEAD_KEY) == 0
    assert proxy.relayed > relayed, "nothing reconnected through the proxy"
    wait_until(lambda: healthz(processes.url)[0] == 200, 10, "a healthy database again")

    processes.stop()
    logs = processes.log_text()
    assert_no_numbers([address for address, _ in OUTAGE_WORKERS], services, logs)
    assert AT_TOKEN not in logs, "the AT webhook token is in the logs"


# -- 2. The SMS provider is unreachable ------------------------------------------------------
class HangingProvider:
    """Takes every connection and never answers: the AT SDK gives up after its read timeout."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections.append(connection)
        self.listener.close()

    def close(self) -> None:
        """Stop, and drop the held connections: the hanging sends fail at once."""
        self.closed.set()
        self.thread.join(timeout=5)
        for connection in self.connections:
            connection.close()


def outbound_state(redis: Redis) -> dict[str, int]:
    """The outbox: replies waiting to be sent (in flight included) and waiting for a retry."""
    return {"waiting": int(redis.xlen(OUTBOX_KEY)), "retrying": int(redis.zcard(RETRY_KEY))}


def retried_sends(redis: Redis) -> int:
    """Replies that failed and are waiting for another try, or are back for it."""
    entries = [fields[FIELD.encode()] for _, fields in redis.xrange(OUTBOX_KEY)]
    later = redis.zrange(RETRY_KEY, 0, -1)
    return sum(1 for raw in [*entries, *later] if Reply.decode(raw).attempt > 0)


PROVIDER_WORKERS = [f"+2547112000{n:02d}" for n in range(11, 17)]


@pytest.mark.parametrize("provider", ["refused", "hanging"])
def test_answers_are_stored_within_10_s_while_the_sms_provider_is_unreachable(
    tmp_path, app, redis_url, provider
):
    """``refused``: nothing listens at the AT API's address; ``hanging``: it takes the
    connection and never answers, so the outbound worker sits in each send for the SDK's read
    timeout (9 s) while the sends queue up behind it."""
    database_url = app.extensions[EXTENSION].config.database_url
    hanging = HangingProvider() if provider == "hanging" else None
    at_api_url = hanging.url if hanging else f"http://127.0.0.1:{free_port()}"
    script = Script.load(flows_without_rotation(tmp_path / "script"))
    try:
        with running_stack(tmp_path, database_url, redis_url, at_api_url, database_url) as stack:
            processes, services = stack
            provider_test(processes, services, script, hanging)
    finally:
        if hanging:
            hanging.close()


def provider_test(
    processes: Processes, services: Services, script: Script, hanging: HangingProvider | None
) -> None:
    add_workplace(services, "nairobi-knit", "4321", "KE", "Africa/Nairobi")
    phones = [Phone(processes.url, address, "at") for address in PROVIDER_WORKERS]
    pseudonym = {p.address: services.identity.pseudonymise(p.address).value for p in phones}
    sent_at: dict[tuple[str, str], float] = {}  # (pseudonym, question) -> when its hop went
    seen_at: dict[tuple[str, str], float] = {}  # -> when the test first saw it stored
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            now = time.monotonic()
            for pair in set(stored_pairs(services)):
                seen_at.setdefault(pair, now)
            time.sleep(0.05)

    def converse(phone: Phone) -> None:
        for text in ("hello", "English", "1", "4321"):
            phone.send(text)
            time.sleep(0.1)
        for qid, _ in script.questions:
            sent_at[(pseudonym[phone.address], qid)] = time.monotonic()
            phone.send("1")
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(len(phones)) as pool:
            list(pool.map(converse, phones))
        wait_until(
            lambda: set(sent_at) <= set(seen_at),
            STORED_WITHIN_SECONDS + 5,
            "every answer in the database",
        )
        outbound = outbound_state(services.redis)  # as the last answer was stored
    finally:
        watching.set()
        watcher.join(timeout=5)
    delays = {pair: seen_at[pair] - sent_at[pair] for pair in sent_at}
    slowest = max(delays.values())
    print(
        f"\nAT API {'hanging' if hanging else 'refusing connections'}: {len(delays)} answers, "
        f"hop to stored: max {slowest:.2f} s, mean {sum(delays.values()) / len(delays):.2f} s; "
        f"all stored {max(seen_at.values()) - max(sent_at.values()):.2f} s after the last hop; "
        f"outbound then: {outbound}"
    )
    assert slowest < STORED_WITHIN_SECONDS, sorted(delays.values())[-5:]
    stored = Counter(stored_pairs(services))
    assert stored == Counter(sent_at.keys()), "an answer missing or stored twice"
    assert services.redis.xlen(STREAM_KEY) == 0
    assert services.redis.xlen(DEAD_KEY) == 0

    # The sends were failing all along: none went out, they wait in the outbox or for a retry.
    assert outbound["waiting"] + outbound["retrying"] > 0, outbound
    if hanging:  # sends held by the hung provider while the answers were stored
        assert hanging.connections, "no send reached the hanging AT API"
    retried = wait_until(lambda: retried_sends(services.redis) > 0, 30, "a retried send")
    print(f"a send retried {retried:.1f} s later; outbox: {outbound_state(services.redis)}")

    if hanging:
        hanging.close()  # the hung send fails at once: the worker stops without waiting for it
    processes.stop()
    logs = processes.log_text()
    assert_no_numbers(PROVIDER_WORKERS, services, logs)
    assert AT_TOKEN not in logs, "the AT webhook token is in the logs"
    assert "reply sent" not in logs, "a reply went out through an AT API that was down"
