"""The job queues, and the RQ worker that serves them.

Each kind of job has its own queue, so a slow or unreachable provider never holds back an
answer: ``persist`` (the event log's drains and cache rebuilds: the database), ``outbound``
(replies through a provider's SMS API) and ``calls`` (missed-call callbacks), each with its own
retry policy (set where its jobs are queued), and one worker process per group of queues
(``GROUPS``; ``workervoice worker`` starts them all).

Recovery of a job whose worker was killed (SIGKILL, a lost machine): RQ notices a dead worker's
job only when the job's own heartbeat expires (its timeout plus a minute for a SimpleWorker) and
the next maintenance pass runs (every 10 minutes by default), so such a job could wait a quarter
of an hour. Here every worker keeps a liveness key alive for ``ALIVE_SECONDS``; the maintenance
pass, every ``MAINTENANCE_SECONDS``, hands RQ's own cleanup every started job whose worker's key
is gone (RQ then retries it, or records it failed when no retry is left). A killed worker's job
is so run again within ``ALIVE_SECONDS + MAINTENANCE_SECONDS`` of another worker being up.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading

from redis import Redis
from rq import Queue, SimpleWorker
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler

log = logging.getLogger(__name__)

# The queues, and the worker groups serving them: one worker process per group, so persistence
# never waits behind a provider; two for persistence, so two drains write at once under load.
PERSIST, OUTBOUND, CALLS = "persist", "outbound", "calls"
QUEUES = (PERSIST, OUTBOUND, CALLS)
# Within a group RQ takes a job from the first queue that has one: callbacks (few, and a worker
# waiting on the phone) before the outbox's drains (each at most outbox.DRAIN_SECONDS long).
GROUPS = ((PERSIST,), (PERSIST,), (CALLS, OUTBOUND))
ALIVE_KEY = "wv:alive:{}"
ALIVE_SECONDS = 10
MAINTENANCE_SECONDS = 10
# An idle worker waits for a job at most WORKER_TTL - 15 s (RQ's dequeue timeout) before its
# next maintenance pass: 10 s, rather than RQ's default of almost 7 minutes.
WORKER_TTL = 25
SUPERVISOR_ENV = "WORKERVOICE_SUPERVISOR_PID"  # set by gateway/supervisor.py for its children


def make(connection: Redis, is_async: bool = True) -> dict[str, Queue]:
    """Every queue by name (``is_async=False`` runs each job as it is queued)."""
    return {name: Queue(name, connection=connection, is_async=is_async) for name in QUEUES}


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """This process gets SIGTERM when its parent dies (Linux; elsewhere a no-op)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Scheduler(RQScheduler):
    """RQ's scheduler process (forked by the worker: it moves retries and delayed jobs back to
    their queues when due), dying with its worker. RQ's own is left running when the worker is
    killed outright, still holding the scheduler's lock for its queues."""

    def work(self):
        die_with_parent()
        self._parent = os.getppid()
        return super().work()

    def heartbeat(self):
        if os.getppid() != getattr(self, "_parent", os.getppid()):
            self.request_stop()  # the worker is gone: stop (and give the locks back)
        return super().heartbeat()


class Worker(SimpleWorker):
    """RQ's SimpleWorker (no fork per job: a job is a few milliseconds of SQL, a fork costs more),
    with a liveness key and a maintenance pass that recovers the jobs of dead workers."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("maintenance_interval", MAINTENANCE_SECONDS)
        kwargs.setdefault("worker_ttl", WORKER_TTL)
        super().__init__(*args, **kwargs)
        self._alive = threading.Event()
        self._beating: threading.Thread | None = None

    # -- liveness ------------------------------------------------------------------------------
    def register_birth(self, *args, **kwargs):
        super().register_birth(*args, **kwargs)
        self._mark_alive()
        self._beating = threading.Thread(target=self._beat, name="alive", daemon=True)
        self._beating.start()

    def register_death(self, *args, **kwargs):
        self._alive.set()
        self.connection.delete(ALIVE_KEY.format(self.name))
        super().register_death(*args, **kwargs)

    def _mark_alive(self) -> None:
        self.connection.set(ALIVE_KEY.format(self.name), "1", ex=ALIVE_SECONDS)

    def _beat(self) -> None:
        while not self._alive.wait(ALIVE_SECONDS / 3):
            if _orphaned():
                log.warning("the supervisor is gone: this worker stops after its job")
                os.kill(os.getpid(), signal.SIGTERM)  # RQ's warm shutdown
                return
            try:
                self._mark_alive()
            except Exception as exc:  # Redis away for a moment: the next beat tries again
                log.warning("liveness key not refreshed: %s", type(exc).__name__)

    # -- failures --------------------------------------------------------------------------------
    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", **more):
        """As RQ's, with the traceback it keeps in Redis (the job's ``exc_info`` and its
        result) redacted as every log line is: an exception may quote a number."""
        from .identity import redact_phone_like
        from .logs import REDACTED

        exc_string = redact_phone_like(exc_string or "", REDACTED)
        return super().handle_job_failure(job, queue, started_job_registry, exc_string, **more)

    # -- the scheduler -------------------------------------------------------------------------
    def _start_scheduler(
        self, burst=False, logging_level="INFO", date_format=None, log_format=None
    ):
        """As RQ's own (rq 3.0 ``BaseWorker._start_scheduler``), with ``Scheduler``."""
        options = {"logging_level": logging_level or self.log.level}
        if date_format:
            options["date_format"] = date_format
        if log_format:
            options["log_format"] = log_format
        self.scheduler = Scheduler(
            self.queues, connection=self.connection, serializer=self.serializer, **options
        )
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if burst:
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()
                self.scheduler.register_death()
        else:
            self.scheduler.start()

    # -- maintenance ---------------------------------------------------------------------------
    def clean_registries(self):
        for queue in self.queues:
            recover_abandoned(self.connection, queue.name)
        super().clean_registries()
        names = {queue.name for queue in self.queues}
        if PERSIST in names:
            self._wake_drain()
        if OUTBOUND in names:
            self._wake_sender()

    def _wake_drain(self) -> None:
        """Entries waiting in the event log with no drain armed (a killed drain's mark expired,
        or the database was away past a drain's patience): queue one."""
        from .persistence import EventLog

        queue = Queue(PERSIST, connection=self.connection)
        if EventLog(self.connection, queue).wake_if_waiting():
            log.warning("event log entries waited with no drain: one is queued")

    def _wake_sender(self) -> None:
        """Replies waiting in the outbox, or retries due, with no drain armed: queue one."""
        from .outbox import Outbox

        Outbox(self.connection, Queue(OUTBOUND, connection=self.connection)).wake_if_waiting()


def _orphaned() -> bool:
    """Started by ``workervoice worker`` (gateway/supervisor.py), whose process is gone: a
    second guard beside the parent-death signal, which a process can miss."""
    parent = os.environ.get(SUPERVISOR_ENV, "")
    return parent.isdigit() and os.getppid() != int(parent)


def recover_abandoned(connection: Redis, queue_name: str) -> int:
    """Hand RQ's cleanup the started jobs of ``queue_name`` whose worker is no longer alive, as
    if their heartbeat had expired; the number of such jobs."""
    registry = StartedJobRegistry(queue_name, connection=connection)
    expired = 0
    entries: list[bytes] = connection.zrange(registry.key, 0, -1)  # type: ignore[assignment]
    for entry in entries:
        job_id = entry.decode().split(":", 1)[0]  # an entry is "<job id>:<execution id>"
        worker = connection.hget(f"rq:job:{job_id}", "worker_name")
        name = worker.decode() if isinstance(worker, bytes) else worker
        if name and connection.exists(ALIVE_KEY.format(name)):
            continue
        connection.zadd(registry.key, {entry: 0}, xx=True)
        expired += 1
    if expired:
        log.warning("%d job(s) of dead workers on queue %s handed back", expired, queue_name)
        registry.cleanup()
    return expired
