"""A job whose worker was SIGKILLed runs again within 30 s of another worker being up (RQ alone
waits for the job's heartbeat to expire and a maintenance pass: up to a quarter of an hour)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from redis import Redis
from rq import Queue, Retry
from rq.job import Job, JobStatus

from gateway.queues import PERSIST

from .jobs import stubborn

WORKER = """
import sys
from redis import Redis
from gateway.queues import Worker
Worker([sys.argv[2]], connection=Redis.from_url(sys.argv[1]), name=sys.argv[3]).work()
"""


def start_worker(url: str, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, url, PERSIST, name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )


def wait_for(condition, seconds: float) -> float:
    """Seconds until ``condition()`` held; fails past ``seconds``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "timed out"
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_killed_workers_job_runs_again_within_30_s(redis_url):
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    job = Queue(PERSIST, connection=redis).enqueue(
        stubborn, redis_url, "runs", retry=Retry(max=2), job_timeout=600
    )
    first = start_worker(redis_url, "recovery.first")
    second = None
    try:
        wait_for(lambda: redis.get("runs:pid") is not None, 20)
        first.send_signal(signal.SIGKILL)  # no chance to clean up: the job stays "started"
        first.wait(timeout=10)
        second = start_worker(redis_url, "recovery.second")
        took = wait_for(
            lambda: Job.fetch(job.id, connection=redis).get_status() == JobStatus.FINISHED, 30
        )
    finally:
        for child in (first, second):
            if child is not None and child.poll() is None:
                child.terminate()
                child.wait(timeout=10)
    assert int(redis.get("runs")) == 2
    assert took < 30
