"""Where a hop's CPU goes, in-process: the web app called as WSGI (no gunicorn, no HTTP), the
same conversations as bench/webhooks.py (its load generator's SMS and USSD workers), each part
of a hop timed on the process's CPU clock, beside the bare endpoint of bench/webhooks.py's
ceiling called the same way.

    .venv/bin/python bench/hop_budget.py [--conversations 200]

REDIS_URL (default redis://127.0.0.1:6379/7) is flushed, before and after; db 15, the test
suite's, is refused. The database is SQLite in a temporary directory, used by the CLI's
set-up only (a hop reads none). Prints one ``key=value`` per line per channel: the CPU per hop
(``<channel>_hop_ms``), the bare endpoint's per request (``bare_ms``), Redis round trips per hop,
then each part's CPU per hop (``<channel>_<part>_ms``), exclusive of the parts it calls, and
``<channel>_rest_ms``: Flask, Werkzeug, the adapter, the turn and the WSGI environ built here
(which the bare endpoint pays too). The timers cost a few microseconds per call: the parts add
up to a little more than a hop costs without them.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

DEFAULT_REDIS = "redis://127.0.0.1:6379/7"
TOKEN = "budget-token"
UNUSED_AT = "http://127.0.0.1:9"  # nothing drains the outbox here: no reply is sent


class Parts:
    """CPU seconds per labelled part, each exclusive of the labelled parts it calls."""

    def __init__(self) -> None:
        self.spent: collections.Counter[str] = collections.Counter()
        self.round_trips = 0
        self._inner: list[float] = []

    def timed(self, label: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.process_time()
            self._inner.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                took = time.process_time() - start
                self.spent[label] += took - self._inner.pop()
                if self._inner:
                    self._inner[-1] += took

        return timed

    def wrap(self, owner: object, name: str, label: str) -> None:
        setattr(owner, name, self.timed(label, getattr(owner, name)))


def instrument(app, parts: Parts) -> None:
    """Time the parts of a hop in place (the app is built; its hooks are wrapped where Flask
    keeps them)."""
    from redis import Redis

    from gateway import conversation, identity, sessions
    from gateway.crypto import Crypto
    from gateway.engine import runtime
    from gateway.engine.session import Session

    execute = Redis.execute_command

    def counted(self, *args, **options):
        parts.round_trips += 1
        return execute(self, *args, **options)

    Redis.execute_command = parts.timed("redis", counted)  # type: ignore[method-assign]
    parts.wrap(sessions.SessionStore, "open", "sessions")
    parts.wrap(sessions.SessionStore, "commit", "sessions")
    parts.wrap(identity, "normalise", "phonenumbers")
    parts.wrap(identity.Identity, "_pseudonym", "hmac")
    parts.wrap(runtime, "step", "engine")
    parts.wrap(conversation, "_converse", "conversation")
    parts.wrap(Session, "to_json", "session_json")
    parts.wrap(Session, "from_json", "session_json")
    parts.wrap(Crypto, "seal", "seal")
    for hooks in (app.before_request_funcs, app.after_request_funcs):
        for funcs in hooks.values():
            for at, hook in enumerate(funcs):
                if hook.__module__ == "gateway.metrics":
                    funcs[at] = parts.timed("metrics", hook)


def caller(app):
    from werkzeug.test import EnvironBuilder

    def call(path: str, body: bytes) -> tuple[int, str]:
        environ = EnvironBuilder(
            path=path,
            method="POST",
            data=body,
            content_type="application/x-www-form-urlencoded",
            query_string=f"token={TOKEN}",
        ).get_environ()
        status: list[str] = []
        chunks = app(environ, lambda s, headers, exc_info=None: status.append(s))
        text = b"".join(chunks).decode()
        return int(status[0].split()[0]), text

    return call


def walker(call, channel: str):
    """A function walking one whole conversation of ``channel``; it returns the hops made."""
    from webhooks_load import Sms, Ussd

    serial = iter(range(10**6))
    rng = random.Random(7)

    def walk() -> int:
        n = next(serial)
        worker = (
            Sms(f"+25471{n:07d}", f"b{n}")
            if channel == "sms"
            else Ussd(f"+25472{n:07d}", f"b{n}", rng)
        )
        hops = 0
        while not worker.done:
            status, text = call(*worker.request())
            if status != 200:
                raise RuntimeError(f"{channel} hop answered {status}: {text[:200]}")
            worker.feed(status, text)
            hops += 1
        return hops

    return walk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=200, help="measured, per channel")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS)
    if int(redis_url.rsplit("/", 1)[-1] or 0) == 15:
        sys.exit("REDIS_URL: db 15 is the test suite's")
    with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:
        from webhooks import stack_env

        # bench/webhooks.py's settings; SQLite for the set-up, and an AT API never called
        os.environ.update(
            stack_env(Path(tmp), f"sqlite:///{tmp}/budget.sqlite", redis_url, TOKEN, UNUSED_AT)
        )
        from redis import Redis

        redis = Redis.from_url(redis_url)
        redis.flushdb()
        try:
            run(args, tmp)
        finally:
            redis.flushdb()


def run(args: argparse.Namespace, tmp: str) -> None:
    cli = str(Path(sys.executable).parent / "workervoice")
    for argv in (
        ("db", "upgrade"),
        ("workplace", "add", "bench", "--name", "Bench", "--country", "KE", "--code", "4321"),
    ):
        subprocess.run([cli, *argv], check=True, capture_output=True, env=os.environ)
    from webhooks_stack import bare_app

    from gateway import create_app

    app, bare = create_app(), caller(bare_app())
    parts = Parts()
    instrument(app, parts)
    call = caller(app)

    for _ in range(1000):  # warm
        bare("/webhooks/at/sms", b"text=hello&from=x")
    start = time.process_time()
    for _ in range(5000):
        bare("/webhooks/at/sms", b"text=hello&from=x")
    print(f"bare_ms={(time.process_time() - start) / 5000 * 1000:.3f}")

    for channel in ("sms", "ussd"):
        walk = walker(call, channel)
        for _ in range(30):  # warm: translations, flows, caches
            walk()
        parts.spent.clear()
        parts.round_trips = 0
        start = time.process_time()
        hops = sum(walk() for _ in range(args.conversations))
        spent = time.process_time() - start
        print(f"{channel}_hops={hops}")
        print(f"{channel}_hop_ms={spent / hops * 1000:.3f}")
        print(f"{channel}_redis_round_trips_per_hop={parts.round_trips / hops:.2f}")
        for label, seconds in parts.spent.most_common():
            print(f"{channel}_{label}_ms={seconds / hops * 1000:.3f}")
        rest = spent - sum(parts.spent.values())
        print(f"{channel}_rest_ms={rest / hops * 1000:.3f}")


if __name__ == "__main__":
    main()
