"""GET /metrics (SPEC §9): the Prometheus text format parses; requests are counted and timed per
channel and status; the queue gauges read what waits in Redis; job failures and retries are
counted by the worker; no label holds a number or a pseudonym; and several processes (gunicorn's
workers, the RQ worker) are summed in multiprocess mode."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue, Retry, SimpleWorker

from gateway import metrics, persistence
from gateway.config import ConfigError
from gateway.identity import PHONE_LIKE
from gateway.ops import REPORTED_QUEUES

from .conftest import AT_TOKEN, environ_for
from .e2e.processes import free_port, private_redis
from .hops import queued_answers, work
from .leaks import number_forms
from .support import SmsWorker, add_workplace, at_sms_form, post_at_sms

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
DRAIN = "gateway.persistence.drain"
HEX64 = re.compile(r"[0-9a-f]{64}", re.IGNORECASE)
BIN = Path(sys.executable).parent


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    return parse(response.get_data(as_text=True))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def ussd(client, session: str, phone: str, text: str) -> int:
    form = {
        "sessionId": session,
        "serviceCode": "*384*1234#",
        "phoneNumber": phone,
        "networkCode": "63902",
        "text": text,
    }
    return client.post(f"/webhooks/at/ussd?token={AT_TOKEN}", data=form).status_code


@pytest.fixture
def queued(monkeypatch) -> None:
    """Jobs wait in Redis for a worker, as in production, whatever the test backend (the
    embedded default would run them as they are queued)."""
    init = Queue.__init__

    def worker_queue(self, *args, **kwargs):
        kwargs["is_async"] = True
        init(self, *args, **kwargs)

    monkeypatch.setattr(Queue, "__init__", worker_queue)


# -- the format and the requests ----------------------------------------------------------------
def test_the_text_format_parses_with_every_family(client):
    body = client.get("/metrics").get_data(as_text=True)
    families = {family.name: family.type for family in text_string_to_metric_families(body)}
    assert families == {
        "workervoice_requests": "counter",
        "workervoice_request_seconds": "histogram",
        "workervoice_job_retries": "counter",
        "workervoice_job_failures": "counter",
        "workervoice_redis_up": "gauge",
        "workervoice_queue_depth": "gauge",
        "workervoice_queue_registry_jobs": "gauge",
        "workervoice_events_waiting": "gauge",
        "workervoice_events_dead": "gauge",
        "workervoice_replies_waiting": "gauge",
        "workervoice_sends": "counter",
    }
    samples = parse(body)
    assert value(samples, "workervoice_redis_up") == 1
    for queue in REPORTED_QUEUES:
        assert ("workervoice_queue_depth", (("queue", queue),)) in samples


def test_each_channel_is_counted_by_status_and_timed(client, services):
    add_workplace(services)
    before = scrape(client)
    sms = SmsWorker(client, "+8801711000501")
    sms.send("hello")
    sms.send("2")
    assert post_at_sms(client, at_sms_form("+254711000502", "hello")).status_code == 200
    assert post_at_sms(client, at_sms_form("+254711000502", "hi"), token="wrong").status_code == 403
    assert ussd(client, "ATUid_metrics1", "+254711000503", "") == 200
    assert client.post(f"/webhooks/at/ussd/events?token={AT_TOKEN}", data={}).status_code == 400
    assert client.post("/webhooks/twilio/voice", data={"CallSid": "CA1"}).status_code == 403
    call = {"sessionId": "ATVId_metrics1", "callerNumber": "+254711000504", "isActive": "1"}
    assert client.post(f"/webhooks/at/voice?token={AT_TOKEN}", data=call).status_code == 200
    assert client.get("/api/v1/workplaces").status_code == 401
    assert client.get("/audio/en/nothing.wav").status_code == 404
    assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/webhooks/at/sms").status_code == 405  # matches no route's method
    after = scrape(client)

    expected = {
        ("twilio_sms", "200"): 2,
        ("at_sms", "200"): 1,
        ("at_sms", "403"): 1,
        ("at_ussd", "200"): 1,
        ("at_ussd", "400"): 1,
        ("twilio_voice", "403"): 1,
        ("at_voice", "200"): 1,
        ("api", "401"): 1,
        ("audio", "404"): 1,
        ("ops", "200"): 2,  # /healthz and the first scrape
        ("other", "404"): 1,
        ("other", "405"): 1,
    }
    moved = {
        labels: value(after, "workervoice_requests_total", channel=labels[0], status=labels[1])
        - value(before, "workervoice_requests_total", channel=labels[0], status=labels[1])
        for labels in {
            (dict(key[1])["channel"], dict(key[1])["status"])
            for key in after
            if key[0] == "workervoice_requests_total"
        }
    }
    assert {labels: n for labels, n in moved.items() if n} == expected
    for channel in {labels[0] for labels in expected}:
        timed = sum(n for labels, n in expected.items() if labels[0] == channel)
        count = "workervoice_request_seconds_count"
        assert value(after, count, channel=channel) - value(before, count, channel=channel) == timed
        seconds = "workervoice_request_seconds_sum"
        assert value(after, seconds, channel=channel) > value(before, seconds, channel=channel)


def test_the_latency_lands_in_its_bucket(client, services, monkeypatch):
    """Two requests timed at 30 ms and 4 ms on a clock the test holds: one more in each bucket
    from 0.05 and 0.005 up, none below."""
    ticks = iter([100.0, 100.030, 200.0, 200.004])
    monkeypatch.setattr(metrics, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    before = parse(metrics.exposition(services.redis, REPORTED_QUEUES)[0].decode())  # not a request
    assert client.get("/nowhere").status_code == 404
    assert client.get("/nowhere").status_code == 404
    monkeypatch.undo()
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, channel="other", **labels) - value(
            before, name, channel="other", **labels
        )

    bounds = ("0.001", "0.0025", "0.005", "0.025", "0.05", "10.0", "+Inf")
    buckets = [moved("workervoice_request_seconds_bucket", le=le) for le in bounds]
    assert buckets == [0, 0, 1, 1, 2, 2, 2]
    total = moved("workervoice_request_seconds_sum")
    assert total == pytest.approx(0.034)


def test_the_channel_comes_from_the_route_only():
    assert metrics.channel_of("webhooks", "/webhooks/twilio/sms") == "twilio_sms"
    assert metrics.channel_of("webhooks", "/webhooks/at/ussd/events") == "at_ussd"
    assert metrics.channel_of("webhooks", "/webhooks/somebody/new") == "other"
    assert metrics.channel_of("api", "/api/v1/workplaces/<slug>/indicators") == "api"
    assert metrics.channel_of(None, None) == "other"


# -- the queues -----------------------------------------------------------------------------
def test_the_queue_gauges_count_what_waits_in_redis(client, services):
    redis = services.redis
    first, *others = REPORTED_QUEUES
    queue = Queue(first, connection=redis, is_async=True)
    for n in range(3):
        queue.enqueue(DRAIN, 0, job_id=f"drain-queued{n}")
    queue.enqueue("gateway.outbox.send_waiting", 0)
    queue.enqueue_in(timedelta(minutes=5), DRAIN, 0, job_id="drain-r")
    queue.enqueue_in(timedelta(minutes=5), "gateway.callbacks.call_back", "at", "sealed", "place")
    gone = queue.enqueue(DRAIN, 0, job_id="drain-failed")
    redis.lrem(queue.key, 1, gone.id)
    queue.failed_job_registry.add(gone, ttl=3600)
    for name in others:
        Queue(name, connection=redis, is_async=True).enqueue(DRAIN, 0, job_id=f"drain-{name}")
    for n in range(5):
        services.events.append_for_tests({"pseudonym": f"p{n}", "events": []})
    redis.xadd(persistence.DEAD_KEY, {persistence.FIELD: "{}", "error": "KeyError"})

    samples = scrape(client)
    assert value(samples, "workervoice_queue_depth", queue=first) == 4
    registry = "workervoice_queue_registry_jobs"
    assert value(samples, registry, queue=first, registry="scheduled") == 2
    assert value(samples, registry, queue=first, registry="failed") == 1
    assert value(samples, registry, queue=first, registry="started") == 0
    for name in others:
        assert value(samples, "workervoice_queue_depth", queue=name) == 1
    assert value(samples, "workervoice_events_waiting") == 5
    assert value(samples, "workervoice_events_dead") == 1


def test_events_waiting_are_the_requests_a_conversation_left_for_the_database(
    app, client, services, queues
):
    add_workplace(services)
    worker = SmsWorker(client, "+8801711000511")
    worker.enrol()
    worker.send("1")
    answers = queued_answers(queues)
    assert answers >= 1, "the conversation left no answer: nothing was checked"
    entries = services.redis.xrange(persistence.STREAM_KEY)
    assert value(scrape(client), "workervoice_events_waiting") == len(entries) >= 2
    work(app, queues)
    assert value(scrape(client), "workervoice_events_waiting") == 0


def test_redis_down_is_a_gauge_not_an_error(client, services, monkeypatch):
    monkeypatch.setattr(services, "redis", Redis(port=free_port(), socket_connect_timeout=0.2))
    samples = scrape(client)
    assert value(samples, "workervoice_redis_up") == 0
    assert not any(name == "workervoice_queue_depth" for name, _ in samples)


# -- jobs -----------------------------------------------------------------------------------
def test_job_kinds_are_our_job_functions(services):
    queue = Queue("kinds", connection=services.redis, is_async=True)
    kinds = [
        metrics.job_kind(queue.enqueue(name, job_id=f"kind-{n}"))
        for n, name in enumerate(
            (
                DRAIN,
                "gateway.outbox.send_waiting",
                "gateway.callbacks.call_back",
                "tests.test_metrics.parse",
                "builtins.print",
            )
        )
    ]
    assert kinds == ["drain", "send_waiting", "call_back", "other", "other"]


def test_a_failing_job_counts_its_retry_then_its_failure(app, client, services):
    """A persist job that raises (a drain given no time but a word) with one retry left: the
    worker counts a retry, runs it again, counts a failure, and RQ still records it failed."""
    queue = Queue(REPORTED_QUEUES[0], connection=services.redis, is_async=True)
    before = scrape(client)
    queue.enqueue(DRAIN, 0, "soon", job_id="drain-broken", retry=Retry(max=1))
    with app.app_context():
        SimpleWorker(
            [queue], connection=services.redis, exception_handlers=[metrics.job_failed]
        ).work(burst=True)
    after = scrape(client)

    def moved(name: str) -> float:
        return value(after, name, kind="drain") - value(before, name, kind="drain")

    assert moved("workervoice_job_retries_total") == 1
    assert moved("workervoice_job_failures_total") == 1
    failed = "workervoice_queue_registry_jobs"
    assert value(after, failed, queue=queue.name, registry="failed") == 1


# -- privacy --------------------------------------------------------------------------------
def test_no_label_holds_a_number_or_a_pseudonym(client, services, queued):
    """A whole enrolment and check-in by SMS, AT SMS and USSD, with numbers typed in free text:
    afterwards nothing in /metrics reads as a phone number, a pseudonym or a message id."""
    add_workplace(services)
    phones = ["+8801711000521", "+254711000522", "+254711000523"]
    typed = ["+8801711999888", "+254 722 000 111"]
    worker = SmsWorker(client, phones[0])
    worker.enrol()
    for text in (f"call me on {typed[0]}", "1", f"my boss is {typed[1]}", "1", "2", "1"):
        worker.send(text)
    for text in ("hello", "English", "1", "4321", f"ring {typed[0]}", "1"):
        post_at_sms(client, at_sms_form(phones[1], text))
    for text in ("", "1", "1*1", f"1*1*{typed[1]}"):
        ussd(client, "ATUid_metrics9", phones[2], text)
    body = client.get("/metrics").get_data(as_text=True)

    labels = {
        label
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        for label in sample.labels.items()
    }
    assert any(name == "channel" for name, _ in labels), "no label was checked"
    allowed = {
        "channel": set(metrics.CHANNELS),
        "queue": set(REPORTED_QUEUES),
        "registry": {"started", "scheduled", "failed"},
        "kind": {"drain", "send_waiting", "call_back", "other"},
        "provider": {"at", "twilio"},
        "outcome": {"sent", "dropped", "retried", "given_up"},
        "state": {"queued", "retrying"},
    }
    for name, text in labels:
        assert not PHONE_LIKE.search(text), f"{name}={text!r} looks like a phone number"
        assert not HEX64.search(text), f"{name}={text!r} looks like a pseudonym"
        if name == "status":
            assert re.fullmatch(r"[1-5]\d\d", text)
        elif name == "le":
            assert text == "+Inf" or float(text) in metrics.LATENCY_BUCKETS
        else:
            assert text in allowed[name], f"{name}={text!r} is not one of the fixed set"
    pseudonyms = {services.identity.pseudonymise(phone).value for phone in phones}
    for secret in pseudonyms | {f for address in phones + typed for f in number_forms(address)}:
        assert secret not in body


# -- start-up -------------------------------------------------------------------------------
def test_a_multiprocess_directory_set_too_late_stops_start_up(monkeypatch, tmp_path):
    monkeypatch.setenv(metrics.MULTIPROC_DIR, str(tmp_path))
    with pytest.raises(ConfigError, match="must be set before the process starts"):
        metrics.check()


def test_a_missing_multiprocess_directory_stops_start_up_with_one_line(tmp_path, migrated):
    environ = _environ(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "absent"))
    done = subprocess.run(
        [sys.executable, "-c", "from gateway import create_app; create_app()"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert done.stderr.strip().splitlines()[-1] == (
        "configuration error: PROMETHEUS_MULTIPROC_DIR is not a writable directory"
    )


# -- several processes ------------------------------------------------------------------------
def _environ(tmp: Path, **overrides: str) -> dict[str, str]:
    environ = {**os.environ, **environ_for(tmp), "TMPDIR": str(tmp), **overrides}
    if "PROMETHEUS_MULTIPROC_DIR" not in overrides:
        environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return environ


REQUESTS_IN_A_CHILD = """
import sys
from gateway import create_app
client = create_app().test_client()
for _ in range(int(sys.argv[1])):
    assert client.get("/healthz").status_code == 200
if len(sys.argv) > 2:
    sys.stdout.write(client.get("/metrics").get_data(as_text=True))
"""


def test_two_processes_are_summed_in_multiprocess_mode(tmp_path, migrated):
    directory = tmp_path / "metrics"
    directory.mkdir()
    environ = _environ(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(directory))

    def child(*args: str) -> str:
        argv = [sys.executable, "-c", REQUESTS_IN_A_CHILD, *args]
        done = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    child("3")
    body = child("4", "scrape")
    assert len(list(directory.glob("counter_*.db"))) == 2
    samples = parse(body)
    assert value(samples, "workervoice_requests_total", channel="ops", status="200") == 7
    assert value(samples, "workervoice_request_seconds_count", channel="ops") == 7


@pytest.fixture
def redis_server(tmp_path, migrated) -> Iterator[str]:
    """A Redis that separate processes share: the suite's, else a private redis-server."""
    if not migrated.embedded_redis:
        Redis.from_url(migrated.redis_url).flushdb()
        yield migrated.redis_url
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip(
            "needs a Redis server shared by processes: set REDIS_URL or install redis-server"
        )
    with private_redis(server, tmp_path) as url:
        yield url


def _get(url: str) -> str:
    try:
        with urlopen(url, timeout=5) as response:
            return response.read().decode()
    except HTTPError as exc:
        return exc.read().decode()


def _wait_for(url: str, child: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise AssertionError("exited early: " + log.read_text()[-2000:])
        try:
            _get(url)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("did not answer: " + log.read_text()[-2000:])


def _spawn(argv: list[str], environ: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, env=environ, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _stop(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=15)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _procfile_web() -> list[str]:
    """The Procfile's gunicorn options that matter here: its config module."""
    line = (Path(__file__).resolve().parent.parent / "Procfile").read_text().splitlines()[0]
    assert "-c python:gateway.gunicorn_conf" in line
    return ["-c", "python:gateway.gunicorn_conf"]


def _queue_broken_jobs(url: str) -> None:
    """A job that raises (a drain given no time but a word) on every queue, whichever worker
    serves it."""
    redis = Redis.from_url(url)
    for name in REPORTED_QUEUES:
        Queue(name, connection=redis).enqueue(DRAIN, 0, "soon", job_id=f"drain-broken-{name}")


def _failed_jobs(samples: Samples) -> float:
    return sum(
        value(samples, "workervoice_queue_registry_jobs", queue=name, registry="failed")
        for name in REPORTED_QUEUES
    )


def test_gunicorn_workers_and_the_rq_worker_are_summed(tmp_path, migrated, redis_server):
    """gunicorn with two workers, with the Procfile's config: every scrape, whichever worker
    answers it, reports every request either worker served; a worker's exit leaves its counts
    in; the RQ worker writing to the same directory has its failures in the web's /metrics;
    the directory gunicorn made for itself is gone when it stops."""
    port = free_port()
    environ = _environ(tmp_path, REDIS_URL=redis_server)
    log = tmp_path / "gunicorn.log"
    argv = [str(BIN / "gunicorn"), *_procfile_web(), "--bind", f"127.0.0.1:{port}"]
    web = _spawn([*argv, "--workers", "2", "--threads", "2", "gateway:create_app()"], environ, log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url + "/healthz", web, log)
        (directory,) = tmp_path.glob("workervoice-metrics-*")
        sent = 0
        with ThreadPoolExecutor(8) as pool:
            for _ in range(50):  # until both workers have served some
                list(pool.map(_get, [url + "/nowhere"] * 16))
                sent += 16
                if len({p.name.split("_")[-1] for p in directory.glob("counter_*.db")}) >= 2:
                    break
        pids = {p.name.split("_")[-1] for p in directory.glob("counter_*.db")}
        assert len(pids) == 2, "one gunicorn worker served every request: nothing was summed"
        for _ in range(6):
            samples = parse(_get(url + "/metrics"))
            counted = value(samples, "workervoice_requests_total", channel="other", status="404")
            assert counted == sent

        _queue_broken_jobs(redis_server)
        worker = subprocess.run(
            [str(BIN / "workervoice"), "worker", "--burst"],
            env={**environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
            capture_output=True,
            timeout=60,
        )
        assert worker.returncode == 0, worker.stderr[-2000:]
        samples = parse(_get(url + "/metrics"))
        failed = _failed_jobs(samples)
        assert failed >= 1, "the worker failed no job: nothing was counted"
        assert value(samples, "workervoice_job_failures_total", kind="drain") == failed
        assert value(samples, "workervoice_requests_total", channel="other", status="404") == sent
    finally:
        _stop(web)
    assert not list(tmp_path.glob("workervoice-metrics-*")), log.read_text()[-2000:]


def test_a_worker_serves_its_own_metrics_on_a_port(tmp_path, migrated, redis_server):
    port = free_port()
    _queue_broken_jobs(redis_server)
    log = tmp_path / "worker.log"
    argv = [str(BIN / "workervoice"), "worker", "--metrics-port", str(port)]
    worker = _spawn(argv, _environ(tmp_path, REDIS_URL=redis_server), log)
    try:
        _wait_for(f"http://127.0.0.1:{port}/", worker, log)
        deadline = time.monotonic() + 30
        while True:
            samples = parse(_get(f"http://127.0.0.1:{port}/"))
            if value(samples, "workervoice_job_failures_total", kind="drain") >= 1:
                break
            assert worker.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the job's failure was never counted"
            time.sleep(0.1)
    finally:
        _stop(worker)
