"""Benchmark: SMS webhook latency and throughput through a real gunicorn, RQ worker, PostgreSQL
and Redis, against GET /healthz on the same server as the baseline (one database and one Redis
round trip, no conversation).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench REDIS_URL=redis://127.0.0.1:6379/9 \
        .venv/bin/python bench/sms_webhook.py [--workers 60] [--concurrency 8]

The database named by DATABASE_URL is wiped. Prints one line per measurement.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import requests
from sqlalchemy import func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import Config  # noqa: E402
from gateway.services import Services  # noqa: E402
from store.models import Answer, Workplace  # noqa: E402
from tests.e2e.processes import Processes  # noqa: E402
from tests.support import twilio_signature, twilio_sms_form  # noqa: E402

TOKEN = "bench-twilio-token"


def environ(tmp: Path) -> dict[str, str]:
    return {
        "WORKERVOICE_ENV": "production",
        "WORKERVOICE_INSTANCE_DIR": str(tmp),
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "WORKERVOICE_MASTER_KEY": base64.urlsafe_b64encode(bytes(32)).decode(),
        "WORKERVOICE_PUBLIC_URL": "https://gateway.example.org",
        "WORKERVOICE_FLOWS_DIR": str(ROOT / "flows"),
        "WORKERVOICE_LOCALES_DIR": str(ROOT / "locales"),
        "TWILIO_AUTH_TOKEN": TOKEN,
        "AT_WEBHOOK_TOKEN": "bench",
        "WORKERVOICE_REPORT_CUTOFF": "now",
    }


def prepare(env: dict[str, str]) -> Services:
    services = Services(Config.from_env(env))
    if services.db.dialect == "postgresql":
        with services.db.engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    services.db.upgrade()
    services.ensure_key_ring()
    services.redis.flushdb()
    with services.db.session() as session:
        session.add(
            Workplace(
                slug="bench",
                name="Bench",
                country="BD",
                code="4321",
                timezone="Asia/Dhaka",
                languages=[],
                created_at=datetime.now(UTC),
            )
        )
    return services


def conversation(url: str, index: int) -> list[float]:
    """One worker enrols and answers today's questions; returns each request's latency."""
    phone = f"+88017{index:08d}"
    latencies = []
    script = ["hello", "2", "1", "4321"] + ["1"] * 8
    for body in script:
        form = twilio_sms_form(phone, body)
        headers = {"X-Twilio-Signature": twilio_signature(form, token=TOKEN)}
        started = time.perf_counter()
        response = requests.post(
            url + "/webhooks/twilio/sms", data=form, headers=headers, timeout=30
        )
        latencies.append(time.perf_counter() - started)
        response.raise_for_status()
    return latencies


def health(url: str, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        requests.get(url + "/healthz", timeout=30).raise_for_status()
        latencies.append(time.perf_counter() - started)
    return latencies


def report(name: str, latencies: list[float], seconds: float) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[int(len(ms) * 0.95) - 1]
    print(
        f"{name:<28} n={len(ms):>5}  {len(ms) / seconds:8.1f} req/s  "
        f"p50={statistics.median(ms):6.1f} ms  p95={p95:6.1f} ms  max={ms[-1]:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=60, help="simulated workers")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        sys.exit("set DATABASE_URL and REDIS_URL (real PostgreSQL and Redis)")
    with tempfile.TemporaryDirectory() as tmp:
        env = environ(Path(tmp))
        services = prepare(env)
        processes = Processes(env, Path(tmp))
        processes.start()
        try:
            per_thread = args.workers * 12 // args.concurrency
            with ThreadPoolExecutor(args.concurrency) as pool:
                started = time.perf_counter()
                baseline = [
                    x
                    for r in pool.map(
                        lambda _: health(processes.url, per_thread), range(args.concurrency)
                    )
                    for x in r
                ]
                report("baseline GET /healthz", baseline, time.perf_counter() - started)
                started = time.perf_counter()
                sms = [
                    x
                    for r in pool.map(lambda i: conversation(processes.url, i), range(args.workers))
                    for x in r
                ]
                report("POST /webhooks/twilio/sms", sms, time.perf_counter() - started)
            drain_started = time.perf_counter()
            while services.events.waiting() and time.perf_counter() - drain_started < 120:
                time.sleep(0.05)
            with services.db.session() as session:
                stored = session.scalar(select(func.count(Answer.id)))
            print(
                f"event log drained {time.perf_counter() - drain_started:.2f} s after the last "
                f"reply; {stored} answers stored from {args.workers} workers"
            )
        finally:
            processes.stop()


if __name__ == "__main__":
    main()
