"""Benchmark: answers persisted per second by two persist workers draining the event log in
batches (gateway/persistence.py), against a naive job-per-answer baseline on the same two
workers, in the same run.

    .venv/bin/python bench/ingest.py [--answers 100000] [--baseline-answers 6000]

DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/bench_ingest, created if missing)
is WIPED, then migrated and seeded with one workplace through the CLI; REDIS_URL (default
redis://127.0.0.1:6379/8) is flushed, before and after. The test suite's database ``test`` and
Redis db 15 are refused, and so is any host but loopback.

Two ``workervoice worker --queues persist`` processes (what the Procfile's ``worker`` starts
for persistence) serve both phases:

- baseline: the first slice's way, one RQ job per answer (bench/ingest_jobs.persist_one: one
  message's events, one transaction, one upsert per answer), ``--baseline-answers`` jobs
  queued at once;
- batched: ``--answers`` entries appended to the event log at once, as hops append them (one
  request's events each: one answer), and one drain woken, as a hop's commit wakes it.

Each phase is timed from the first job or entry queued until every answer is in the database
(counted there). Every answer is a different (worker, question) of the same day, so each is a
row of its own. Prints one ``key=value`` per line: ``answers_per_s``, ``baseline_per_s``,
``ratio``, then the settings, the commit and how many files differ from it, and
``other_cpu_share`` (the share of the cores that went to processes outside this run and its
PostgreSQL and Redis: another job on the machine lowers the figures).
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from redis import Redis
from rq import Queue
from sqlalchemy import create_engine, func, select, text

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import webhooks_stack as stack  # noqa: E402

from gateway.persistence import ARMED_KEY, FIELD, STREAM_KEY, EventLog, encode  # noqa: E402
from gateway.queues import PERSIST  # noqa: E402
from store.models import Answer  # noqa: E402

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/bench_ingest"
DEFAULT_REDIS = "redis://127.0.0.1:6379/8"
RUN_LOCK = "bench:ingest:running"
DEADLINE_S = 600
WORKERS = 2
QUESTIONS = (
    "long_hours",
    "overtime_forced",
    "paid_on_time",
    "deductions",
    "fire_exits",
    "respect",
    "free_to_leave",
    "documents_held",
    "pay_fairness",
    "long_hours_days",
)
APPEND_CHUNK = 5000  # entries per Redis pipeline while filling the log


def request(key_id: int, n: int, at: datetime) -> dict:
    """One request's events, as a hop appends them: one answer of worker n // 10."""
    who = f"{n // len(QUESTIONS):064x}"
    return {
        "pseudonym": who,
        "key_id": key_id,
        "channel": "sms",
        "received_at": at.isoformat(),
        "events": [
            {
                "kind": "answer_recorded",
                "flow": "checkin",
                "version": "1",
                "question": QUESTIONS[n % len(QUESTIONS)],
                "value": "yes",
                "at": at.isoformat(),
                "workplace": "bench",
                "event_id": f"at:{n:040x}:0",
            }
        ],
    }


def environment(tmp: Path, database: str, redis: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{stack.BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join((str(stack.ROOT), str(HERE))),  # bench/ingest_jobs.py too
        "WORKERVOICE_ENV": "production",
        "WORKERVOICE_INSTANCE_DIR": str(tmp / "instance"),
        "DATABASE_URL": database,
        "REDIS_URL": redis,
        "WORKERVOICE_MASTER_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "WORKERVOICE_FLOWS_DIR": str(stack.ROOT / "flows"),
        "WORKERVOICE_LOCALES_DIR": str(stack.ROOT / "locales"),
        "AT_WEBHOOK_TOKEN": secrets.token_urlsafe(16),
    }


def stored(engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(Answer)) or 0


def wait_stored(engine, expected: int, started: float, workers: list) -> float:
    """Seconds from ``started`` until ``expected`` answers are stored."""
    while True:
        count = stored(engine)
        if count >= expected:
            return time.monotonic() - started
        for worker in workers:
            if worker.poll() is not None:
                raise RuntimeError("a persist worker exited (see its log)")
        if time.monotonic() - started > DEADLINE_S / 2:
            raise TimeoutError(f"only {count} of {expected} answers stored")
        time.sleep(0.05)


def empty_answers(engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM answers"))


def baseline(redis: Redis, engine, key_id: int, count: int, workers: list) -> float:
    queue = Queue(PERSIST, connection=redis)
    at = datetime.now(UTC)
    started = time.monotonic()
    for first in range(0, count, APPEND_CHUNK):
        with redis.pipeline() as pipe:
            for n in range(first, min(count, first + APPEND_CHUNK)):
                queue.enqueue("ingest_jobs.persist_one", request(key_id, n, at), pipeline=pipe,
                              result_ttl=0)  # fmt: skip
            pipe.execute()
    return count / wait_stored(engine, count, started, workers)


def batched(redis: Redis, engine, key_id: int, count: int, workers: list) -> float:
    at = datetime.now(UTC)
    events = EventLog(redis, Queue(PERSIST, connection=redis))
    started = time.monotonic()
    for first in range(0, count, APPEND_CHUNK):
        with redis.pipeline(transaction=False) as pipe:
            for n in range(first, min(count, first + APPEND_CHUNK)):
                pipe.xadd(STREAM_KEY, {FIELD: encode(request(key_id, n, at))})
            pipe.execute()
        if first == 0:
            events.wake(0)  # as the first hop's commit after an idle spell
    took = wait_stored(engine, count, started, workers)
    if events.waiting() or events.dead():
        raise RuntimeError(f"{events.waiting()} entries left, {events.dead()} set aside")
    return count / took


def settings(args: argparse.Namespace) -> dict[str, object]:
    return {
        **stack.run_settings(),
        "persist_workers": WORKERS,
        "answers": args.answers,
        "baseline_answers": args.baseline_answers,
    }


def run(args, database: str, redis_url: str, tmp: Path, children: stack.Children) -> dict:
    redis = Redis.from_url(redis_url)
    if not redis.set(RUN_LOCK, "1", nx=True, ex=DEADLINE_S + 60):
        sys.exit(f"another run holds {RUN_LOCK} in {redis_url}")
    children.after.append(redis.flushdb)
    redis.flushdb()
    redis.set(RUN_LOCK, "1", ex=DEADLINE_S + 60)
    stack.prepare_database(database)
    env = environment(tmp, database, redis_url)
    children.run_cli(env, "db", "upgrade")
    children.run_cli(
        env, *("workplace", "add", "bench", "--name", "Bench", "--country", "KE"),
        *("--code", "4321", "--timezone", "Africa/Nairobi"),
    )  # fmt: skip
    engine = create_engine(database.replace("postgresql://", "postgresql+psycopg://", 1))
    children.after.append(engine.dispose)
    with engine.connect() as connection:
        key_id = connection.scalar(text("SELECT min(id) FROM pseudonym_keys"))
    argv = [str(stack.BIN / "workervoice"), "worker", "--queues", PERSIST]
    workers = [children.start(f"worker-{n}", argv, env) for n in range(WORKERS)]
    deadline = time.monotonic() + 60
    while len(redis.smembers("rq:workers")) < WORKERS:  # both up before the clock starts
        if time.monotonic() > deadline:
            raise RuntimeError("the persist workers did not start (see their logs)")
        time.sleep(0.1)

    base = baseline(redis, engine, key_id, args.baseline_answers, workers)
    empty_answers(engine)
    fast = batched(redis, engine, key_id, args.answers, workers)
    jobs = sum(1 for _ in redis.scan_iter("rq:job:*"))
    return {
        "answers_per_s": round(fast),
        "baseline_per_s": round(base),
        "ratio": round(fast / base, 1),
        "rq_jobs_left_in_redis": jobs,
        "drain_jobs_armed_at_end": sum(
            1 for slot in range(WORKERS) if redis.exists(ARMED_KEY.format(slot))
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=100_000, help="batched phase")
    parser.add_argument("--baseline-answers", type=int, default=6_000, help="job per answer")
    args = parser.parse_args()
    out = settings(args)
    out.update(
        stack.measured(
            "ingest",
            DEADLINE_S,
            (DEFAULT_DATABASE, DEFAULT_REDIS),
            lambda database, redis, tmp, children: run(args, database, redis, tmp, children),
        )
    )
    for key, value in out.items():
        print(f"{key}={value}")


if __name__ == "__main__":
    main()
