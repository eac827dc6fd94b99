"""The load generator of bench/webhooks.py: simulated workers walking real conversations over
Africa's Talking SMS and USSD, posted from this process (asyncio + aiohttp, keep-alive) to a
server on loopback.

Run by bench/webhooks.py, one process per phase: it reads the phase as JSON on stdin and writes
what it measured as JSON on stdout. ``closed`` keeps ``concurrency`` requests in flight for
``warmup + seconds``; ``open`` starts hops at a fixed ``rate`` whatever the replies, and times
each from when it was due, so a slow server cannot hide its queueing (no coordinated omission).
Only hops completed after the warm-up count.

A pool of ``pool`` workers is in conversation at once; each request takes the worker who has
waited longest, so hops interleave as they do at shift change. A worker sends its next hop only
once the last one is answered. An SMS worker follows a script of the real flows (its replies go
out through the AT send API, asynchronously); a USSD worker reads each screen it gets and
answers whatever is asked.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlencode

import aiohttp

CODE = "4321"  # the enrolment code of the workplace bench/webhooks.py seeds
# Enrol, then today's check-in: language (English is 2 for a Kenyan number, after Kiswahili),
# consent, workplace code, then the three questions of the day's rotation. "2" is the second
# option of every question (never "Yes", so no follow-up is asked) and a valid number for both
# number questions (1-7 days, pay fairness 1-5): every worker of every seed gets exactly three.
SMS_SCRIPT = ("hello", "2", "1", CODE, "2", "2", "2")
FINISH = "Thank you. Your answers are anonymous."  # flows/checkin.yaml, in English
OPTION = re.compile(r"^(\d+)\. (.+)$", re.MULTILINE)
NEXT_PAGE, PREVIOUS_PAGE = "98", "00"
MAX_USSD_HOPS = 40  # a conversation still going after this many hops is abandoned (a bug)
SERVICE_CODE, NETWORK = "*384*4321#", "63902"


class Conversation(Protocol):
    channel: str
    done: bool

    def request(self) -> tuple[str, bytes]:
        """The path and urlencoded form of this worker's next hop."""

    def feed(self, status: int, body: str) -> None:
        """The answer to that hop."""


@dataclass
class Sms:
    """A worker texting the service: each hop an AT incoming-SMS webhook."""

    phone: str
    serial: str
    channel: str = "sms"
    done: bool = False
    sent: int = 0

    def request(self) -> tuple[str, bytes]:
        form = {
            "from": self.phone,
            "to": "28901",
            "text": SMS_SCRIPT[self.sent],
            "date": "2026-11-25T08:34:18.445Z",
            "id": f"ATXid_{self.serial}_{self.sent}",
            "linkId": "BenchLink",
            "networkCode": NETWORK,
        }
        return "/webhooks/at/sms", urlencode(form).encode()

    def feed(self, status: int, body: str) -> None:
        self.sent += 1
        self.done = status != 200 or self.sent == len(SMS_SCRIPT)


@dataclass
class Ussd:
    """A worker on a USSD session: the cumulative text, each screen read and answered, and
    AT's end-of-session notification after the END screen."""

    phone: str
    serial: str
    rng: random.Random
    channel: str = "ussd"
    done: bool = False
    finished: bool = False  # the END screen was the check-in's thanks
    abandoned: bool = False
    inputs: list[str] = field(default_factory=list)
    ended: str | None = None  # the END screen, once shown
    seen: dict[str, str] = field(default_factory=dict)  # options on the pages of this screen

    def request(self) -> tuple[str, bytes]:
        form = {
            "sessionId": f"ATUid_{self.serial}",
            "serviceCode": SERVICE_CODE,
            "phoneNumber": self.phone,
            "networkCode": NETWORK,
            "text": "*".join(self.inputs),
        }
        if self.ended is None:
            return "/webhooks/at/ussd", urlencode(form).encode()
        form.update(
            status="Success",
            input=form["text"],
            lastAppResponse=self.ended,
            hopsCount=str(len(self.inputs) + 1),
            durationInMillis="41000",
            date="2026-11-25 12:00:00",
            cost="KES 0.10",
        )
        return "/webhooks/at/ussd/events", urlencode(form).encode()

    def feed(self, status: int, body: str) -> None:
        if self.ended is not None or status != 200:
            self.done = True
            return
        if body.startswith("END "):
            self.ended = body
            self.finished = FINISH in body
            return
        if len(self.inputs) >= MAX_USSD_HOPS:
            self.done = self.abandoned = True
            return
        self.inputs.append(self.answer(body[4:]))

    def answer(self, screen: str) -> str:
        """What a worker presses on this screen: English, agreement, the next page while there
        is one, then any option of the question; the code or a number where none is listed."""
        shown = dict(OPTION.findall(screen))
        self.seen.update({k: v for k, v in shown.items() if k not in (NEXT_PAGE, PREVIOUS_PAGE)})
        for wanted in ("English", "I agree"):
            key = next((k for k, v in self.seen.items() if v == wanted), None)
            if key is not None:
                self.seen = {}
                return key
        if NEXT_PAGE in shown:
            return NEXT_PAGE
        options, self.seen = sorted(self.seen), {}
        if options:
            return self.rng.choice(options)
        return CODE if "code" in screen.lower() else "2"


@dataclass
class Phase:
    url: str
    token: str
    mode: str  # closed | open
    channels: list[str]  # conversations started in turn: ["sms"], ["ussd"], ["sms", "ussd"]
    seconds: float
    warmup: float
    concurrency: int = 16
    rate: float = 0.0  # hops per second, open loop
    pool: int = 256
    prefix: str = "+2547100"  # phone numbers of this phase: prefix + a 5-digit serial
    max_hops: int = 500_000
    max_inflight: int = 1024  # open loop: a hop due while this many wait is counted as late
    seed: int = 1


@dataclass
class Measured:
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    late: int = 0
    conversations: dict[str, int] = field(default_factory=dict)
    ussd_finished: int = 0
    ussd_abandoned: int = 0
    window_s: float = 0.0
    started: int = 0  # hops answered (or failed), the warm-up's included
    cpu_s: float = 0.0  # this load generator's own CPU seconds, the warm-up's included


class Driver:
    def __init__(self, phase: Phase, session: aiohttp.ClientSession):
        self.phase = phase
        self.session = session
        self.measured = Measured(latencies_ms={c: [] for c in phase.channels})
        self.started = self.serial = 0
        self.rng = random.Random(phase.seed)
        pool = max(phase.pool, phase.concurrency)  # a worker never has two hops in flight
        self.ready: deque[Conversation] = deque(self.new() for _ in range(pool))
        self.urls: dict[str, str] = {}
        self.count_from = self.stop = 0.0

    def new(self) -> Conversation:
        """The next worker, on the next channel in turn, with a number of their own."""
        index, self.serial = self.serial, self.serial + 1
        channel = self.phase.channels[index % len(self.phase.channels)]
        phone, serial = f"{self.phase.prefix}{index:05d}", f"{self.phase.seed}x{index}"
        if index >= 100_000:
            raise RuntimeError("more workers than the phase's numbering holds")
        if channel == "ussd":
            return Ussd(phone, serial, random.Random(self.rng.random()))
        return Sms(phone, serial)

    def done_with(self, conversation: Conversation) -> None:
        if not conversation.done:
            self.ready.append(conversation)
            return
        name = conversation.channel
        self.measured.conversations[name] = self.measured.conversations.get(name, 0) + 1
        if isinstance(conversation, Ussd):
            self.measured.ussd_finished += conversation.finished
            self.measured.ussd_abandoned += conversation.abandoned
        self.ready.append(self.new())

    async def hop(self, conversation: Conversation, due: float | None = None) -> None:
        path, body = conversation.request()
        url = self.urls.setdefault(path, f"{self.phase.url}{path}?token={self.phase.token}")
        started = time.perf_counter() if due is None else due
        status, text = 0, ""
        try:
            async with self.session.post(
                url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
            ) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError):
            conversation.done = True
        finished = time.perf_counter()
        self.started += 1
        conversation.feed(status, text)
        # Open loop: a hop counts by when it was due, so the slowest are never left out.
        if self.count_from <= (finished if due is None else due) <= self.stop:
            statuses = self.measured.statuses
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status == 200:
                latency = (finished - started) * 1000
                self.measured.latencies_ms[conversation.channel].append(latency)
            else:
                self.measured.errors += 1
        self.done_with(conversation)

    async def closed(self) -> None:
        async def slot() -> None:
            while time.perf_counter() < self.stop and self.started < self.phase.max_hops:
                await self.hop(self.ready.popleft())

        await asyncio.gather(*(slot() for _ in range(self.phase.concurrency)))

    async def open(self) -> None:
        interval, pending = 1.0 / self.phase.rate, set()
        begun = time.perf_counter()
        for k in range(self.phase.max_hops):
            due = begun + k * interval
            if due >= self.stop:
                break
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            if len(pending) >= self.phase.max_inflight:
                self.measured.late += 1
                continue
            conversation = self.ready.popleft() if self.ready else self.new()
            task = asyncio.create_task(self.hop(conversation, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending, timeout=30)  # the client's own timeout is 30 s too

    async def run(self) -> Measured:
        now = time.perf_counter()
        self.count_from = now + self.phase.warmup
        self.stop = self.count_from + self.phase.seconds
        await (self.closed() if self.phase.mode == "closed" else self.open())
        self.measured.window_s = self.phase.seconds
        self.measured.started = self.started
        return self.measured


async def drive(phase: Phase) -> Measured:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        return await Driver(phase, session).run()


def main(read: Callable[[], str] = sys.stdin.read) -> None:
    phase = Phase(**json.loads(read()))
    measured = asyncio.run(drive(phase))
    measured.cpu_s = time.process_time()
    json.dump(measured.__dict__, sys.stdout)


if __name__ == "__main__":
    main()
