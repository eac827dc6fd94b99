"""A job that fails quoting a number: RQ keeps the failure (the job's exc_info, its result) in
Redis, redacted as every log line is."""

from __future__ import annotations

from rq import Queue, Retry
from rq.registry import FailedJobRegistry

from gateway.queues import PERSIST, Worker

from .e2e.jobs import leaky
from .leaks import find_number, redis_dump

NUMBER = "+8801711283946"


def test_a_failed_jobs_traceback_is_kept_without_the_number(app, services, caplog):
    queue = Queue(PERSIST, connection=services.redis, is_async=True)
    job = queue.enqueue(leaky, retry=Retry(max=1))
    with app.app_context():
        Worker([queue], connection=services.redis).work(burst=True)  # the try, and its retry
    assert FailedJobRegistry(queue=queue).get_job_ids() == [job.id]
    kept = job.latest_result().exc_string
    assert "RuntimeError" in kept and "[number]" in kept
    assert not find_number(NUMBER, kept, redis_dump(services.redis))
    assert not find_number(NUMBER, caplog.text)
