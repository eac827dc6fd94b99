"""Prometheus metrics for ``GET /metrics`` (SPEC §9): requests and latency per channel and
status, RQ queue depth, job failures and retries, events waiting for the database.

Every label value comes from a small fixed set written in the code (a channel named by its
route, an HTTP status code, a queue name, a job function's name): never a pseudonym, a number,
a message id, a token or a slug.

Two modes, as prometheus-client chooses them when it is first imported:

- one process (the embedded default, the tests, ``make run``): the counters live in this
  process and ``/metrics`` shows them;
- multiprocess, when ``PROMETHEUS_MULTIPROC_DIR`` names a directory: every process writes its
  counters to files there and ``/metrics`` sums them all. gunicorn runs so with the Procfile's
  ``-c python:gateway.gunicorn_conf`` (which makes a directory of its own when none is set).
  The RQ worker's job counters appear in the web's ``/metrics`` only when the worker runs on the
  same machine with the same ``PROMETHEUS_MULTIPROC_DIR``; otherwise scrape the worker itself
  (``workervoice worker --metrics-port N``).

The queue gauges are read from Redis when scraped, so they are the same whichever process
answers, and cost nothing between scrapes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from rq import Queue

from .config import ConfigError
from .persistence import DEAD_KEY, STREAM_KEY

if TYPE_CHECKING:
    from flask import Flask, Response
    from redis import Redis
    from rq.job import Job

log = logging.getLogger(__name__)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# A request is named by its route, not by what it carries: an SMS and a WhatsApp message reach
# the same Twilio endpoint, and nothing is parsed before the answer to tell them apart.
CHANNELS = (
    "twilio_sms",
    "twilio_voice",
    "at_sms",
    "at_ussd",
    "at_voice",
    "api",
    "audio",
    "ops",
    "other",
)
BLUEPRINT_CHANNELS = {"api": "api", "audio": "audio", "ops": "ops"}
# 1 ms to 10 s, finer around the 50 ms a hop's p99 must stay under (issue 6).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
JOB_MODULES = ("gateway.", "store.")  # a job kind is the name of a job function of ours
_STARTED = "workervoice.metrics.started"  # request.environ key: when the request began

# No ``*_created`` series: multiprocess mode has none, and both modes then read the same.
disable_created_metrics()
# This process's own metrics; in multiprocess mode they are written to PROMETHEUS_MULTIPROC_DIR
# and read back from there, summed over every process.
PROCESS = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "workervoice_requests",
    "HTTP requests answered, by channel (the route) and HTTP status code",
    ["channel", "status"],
    registry=PROCESS,
)
LATENCY = Histogram(
    "workervoice_request_seconds",
    "Time from routing a request to its response, by channel",
    ["channel"],
    buckets=LATENCY_BUCKETS,
    registry=PROCESS,
)
JOB_RETRIES = Counter(
    "workervoice_job_retries",
    "Jobs that raised and were queued again for a retry, by job kind",
    ["kind"],
    registry=PROCESS,
)
JOB_FAILURES = Counter(
    "workervoice_job_failures",
    "Jobs that raised with no retry left (moved to RQ's failed registry), by job kind",
    ["kind"],
    registry=PROCESS,
)
# outcome: sent, dropped (the seal no longer opened, or refused for good), retried, given_up
SENDS = Counter(
    "workervoice_sends",
    "SMS replies the outbox tried to send, by provider and outcome",
    ["provider", "outcome"],
    registry=PROCESS,
)


# -- start-up -----------------------------------------------------------------------------------
def multiprocess() -> bool:
    """Whether prometheus-client writes this process's metrics to PROMETHEUS_MULTIPROC_DIR (it
    decides once, when first imported)."""
    return values.ValueClass is not values.MutexValue


def check() -> None:
    """ConfigError unless the metrics can be written and read: a PROMETHEUS_MULTIPROC_DIR that is
    not a writable directory would otherwise fail every request, and one set after
    prometheus-client was imported would serve figures of one process as if of all."""
    path = os.environ.get(MULTIPROC_DIR)
    if bool(path) != multiprocess():
        raise ConfigError(
            f"{MULTIPROC_DIR} must be set before the process starts (it was "
            f"{'set' if path else 'unset'} after the metrics were set up)"
        )
    if path and not (os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)):
        raise ConfigError(f"{MULTIPROC_DIR} is not a writable directory")


def install(app: Flask) -> None:
    """Count and time every request the app answers."""
    check()
    app.before_request(_started)
    app.after_request(_finished)


# -- requests -----------------------------------------------------------------------------------
def channel_of(blueprint: str | None, rule: str | None) -> str:
    """The channel label of a request, from its route only: ``/webhooks/at/ussd/events`` is
    ``at_ussd``; a request matching no route is ``other``."""
    if rule is None:
        return "other"
    if blueprint == "webhooks":
        name = "_".join(rule.split("/")[2:4])
        return name if name in CHANNELS else "other"
    return BLUEPRINT_CHANNELS.get(blueprint or "", "other")


def _started() -> None:
    from flask import request

    request.environ[_STARTED] = time.perf_counter()


def _finished(response: Response) -> Response:
    """Count the response. A metric that cannot be written is logged, never the caller's 500."""
    from flask import request

    try:
        rule = request.url_rule.rule if request.url_rule is not None else None
        channel = channel_of(request.blueprint, rule)
        REQUESTS.labels(channel, str(response.status_code)).inc()
        started = request.environ.get(_STARTED)
        if started is not None:
            LATENCY.labels(channel).observe(time.perf_counter() - started)
    except Exception as exc:  # a full disk under PROMETHEUS_MULTIPROC_DIR, say
        log.warning("request not counted in the metrics: %s", type(exc).__name__)
    return response


# -- jobs ---------------------------------------------------------------------------------------
def job_kind(job: Job) -> str:
    """``drain``, ``send_waiting``, ``call_back``...: the job function's name, or ``other``
    for a job that is not one of ours or cannot be read."""
    try:
        name = job.func_name or ""
    except Exception:  # rq's DeserializationError: the payload cannot be read
        return "other"
    module, _, function = name.rpartition(".")
    if not (name.startswith(JOB_MODULES) and function.isidentifier()):
        return "other"
    return function


def job_failed(job: Job, *exc_info: Any) -> bool:
    """RQ exception handler (the worker runs it when a job raises, before deciding on a retry):
    count a retry or a final failure. Returns True so that the next handler, RQ's own, still
    moves a final failure to the failed registry."""
    try:
        (JOB_RETRIES if job.should_retry else JOB_FAILURES).labels(job_kind(job)).inc()
    except Exception as exc:
        log.warning("job failure not counted in the metrics: %s", type(exc).__name__)
    return True


# -- Redis: queues and waiting events ---------------------------------------------------------
class RedisCollector(Collector):
    """Gauges read from Redis at each scrape: jobs in each queue and in its registries, and the
    event log's entries still waiting for the database. Redis down: only
    ``workervoice_redis_up 0``."""

    def __init__(self, redis: Redis, queues: Sequence[str]):
        self.redis = redis
        self.queues = [Queue(name, connection=redis) for name in queues]

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("workervoice_redis_up", "Whether Redis answered this scrape")
        try:
            metrics = self._read()
        except RedisError as exc:
            log.warning("metrics: redis failing: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _read(self) -> list[Metric]:
        depth = GaugeMetricFamily(
            "workervoice_queue_depth", "Jobs waiting in each RQ queue", labels=["queue"]
        )
        held = GaugeMetricFamily(
            "workervoice_queue_registry_jobs",
            "Jobs in each queue's RQ registries: started (running), scheduled (a retry or a "
            "delayed job), failed (kept for inspection)",
            labels=["queue", "registry"],
        )
        registries = ("started", "scheduled", "failed")
        with self.redis.pipeline(transaction=False) as pipe:
            for queue in self.queues:
                pipe.llen(queue.key)
                for registry in registries:
                    pipe.zcard(getattr(queue, f"{registry}_job_registry").key)
            counts = iter(pipe.execute())
        for queue in self.queues:
            depth.add_metric([queue.name], next(counts))
            for registry in registries:
                held.add_metric([queue.name, registry], next(counts))
        from .outbox import OUTBOX_KEY, RETRY_KEY  # which imports this module

        with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(STREAM_KEY)
            pipe.xlen(DEAD_KEY)
            pipe.xlen(OUTBOX_KEY)
            pipe.zcard(RETRY_KEY)
            waiting_entries, dead_entries, replies, retrying = pipe.execute()
        waiting = GaugeMetricFamily(
            "workervoice_events_waiting",
            "Requests' events in the event log waiting to be written to the database",
        )
        waiting.add_metric([], waiting_entries)
        dead = GaugeMetricFamily(
            "workervoice_events_dead",
            "Event log entries that could not be written and are kept for inspection",
        )
        dead.add_metric([], dead_entries)
        outbox = GaugeMetricFamily(
            "workervoice_replies_waiting",
            "SMS replies in the outbox: to send now (state=queued) or to try again later "
            "(state=retrying)",
            labels=["state"],
        )
        outbox.add_metric(["queued"], replies)
        outbox.add_metric(["retrying"], retrying)
        return [depth, held, waiting, dead, outbox]


class _Own(Collector):
    """This process's metrics (one-process mode)."""

    def collect(self) -> Iterable[Metric]:
        return PROCESS.collect()


def _own_metrics(registry: CollectorRegistry) -> None:
    if multiprocess():
        MultiProcessCollector(registry)
    else:
        registry.register(_Own())


def exposition(redis: Redis, queues: Sequence[str]) -> tuple[bytes, str]:
    """The body and content type of ``/metrics``: every process's counters, the Redis gauges."""
    registry = CollectorRegistry(auto_describe=False)
    _own_metrics(registry)
    registry.register(RedisCollector(redis, queues))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def serve(port: int) -> None:
    """Serve this process's metrics (in multiprocess mode, those of every process writing to
    the same directory) on ``port`` from a background thread: the RQ worker's, for a worker
    that does not share PROMETHEUS_MULTIPROC_DIR with the web."""
    registry = CollectorRegistry(auto_describe=False)
    _own_metrics(registry)
    start_http_server(port, registry=registry)
