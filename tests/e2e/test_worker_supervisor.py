"""``workervoice worker``: one RQ worker process per group of queues, a dead one restarted, all
stopped together; and ``--queues`` checked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from redis import Redis
from rq import Worker as RqWorker

from gateway.queues import GROUPS

from ..conftest import environ_for

BIN = Path(sys.executable).parent


def workers(redis: Redis) -> dict[str, tuple[str, ...]]:
    """Live RQ workers: name -> the queues each serves."""
    return {
        w.name: tuple(sorted(w.queue_names())) for w in RqWorker.all(connection=redis) if w.name
    }


def wait_for(condition, seconds: float):
    deadline = time.monotonic() + seconds
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped by whoever inherited it is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def pid_of(name: str) -> int:
    return int(name.rsplit(".", 1)[1])  # workervoice.<queues>.<host>.<pid>


def test_one_process_per_group_a_dead_one_restarted_all_stopped_together(
    tmp_path, migrated, redis_url
):
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    environ = {**os.environ, **environ_for(tmp_path, REDIS_URL=redis_url)}
    log = (tmp_path / "worker.log").open("wb")
    argv = [str(BIN / "workervoice"), "worker"]
    supervisor = subprocess.Popen(argv, env=environ, stdout=log, stderr=subprocess.STDOUT)
    try:
        expected = sorted(tuple(sorted(group)) for group in GROUPS)
        live = wait_for(lambda: sorted((w := workers(redis)).values()) == expected and w, 30)
        victim = next(name for name, queues in live.items() if queues == ("calls", "outbound"))
        os.kill(pid_of(victim), signal.SIGKILL)

        def replaced():
            now = workers(redis)
            names = [n for n, q in now.items() if q == ("calls", "outbound") and n != victim]
            return names and alive(pid_of(names[0])) and names

        wait_for(replaced, 30)  # restarted a second after it died
        children = [pid_of(n) for n in workers(redis) if n != victim]
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=40)
    assert supervisor.returncode == 0
    for pid in children:  # every child went with it
        wait_for(lambda pid=pid: not alive(pid), 10)
    # each said goodbye to RQ (the one killed outright stays listed until its TTL runs out)
    wait_for(lambda: set(workers(redis)) <= {victim}, 10)


def test_a_supervisor_killed_outright_takes_its_workers_with_it(tmp_path, migrated, redis_url):
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    environ = {**os.environ, **environ_for(tmp_path, REDIS_URL=redis_url)}
    argv = [str(BIN / "workervoice"), "worker"]
    supervisor = subprocess.Popen(
        argv, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    live = wait_for(lambda: len(w := workers(redis)) == len(GROUPS) and w, 30)
    children = [pid_of(name) for name in live]
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait(timeout=10)
    for pid in children:
        wait_for(lambda pid=pid: not alive(pid), 30)


def test_an_unknown_queue_is_refused(tmp_path, migrated, redis_url):
    environ = {**os.environ, **environ_for(tmp_path, REDIS_URL=redis_url)}
    done = subprocess.run(
        [str(BIN / "workervoice"), "worker", "--queues", "persist,emails"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown queue emails" in done.stderr and "Traceback" not in done.stderr


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_worker_killed_outright_takes_its_scheduler_with_it(tmp_path, migrated, redis_url):
    """RQ forks a scheduler from the worker (retries and delayed jobs); killed outright, the
    worker must not leave it running, holding the scheduler's lock for its queues."""
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    environ = {**os.environ, **environ_for(tmp_path, REDIS_URL=redis_url)}
    argv = [str(BIN / "workervoice"), "worker", "--queues", "outbound,calls"]
    worker = subprocess.Popen(
        argv, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        [scheduler] = wait_for(lambda: children_of(worker.pid), 30)
        wait_for(lambda: redis.exists("rq:scheduler-lock:outbound"), 30)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        wait_for(lambda: not alive(scheduler), 10)
        wait_for(lambda: not redis.exists("rq:scheduler-lock:outbound"), 10)  # given back
    finally:
        if worker.poll() is None:
            worker.kill()
