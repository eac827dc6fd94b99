"""``workervoice worker`` without ``--queues``: one worker process per group of queues
(gateway/queues.GROUPS), each ``workervoice worker --queues ...``, restarted when it dies, all
stopped together.

The children die with the supervisor (Linux's parent-death signal, and each child's own check
that its parent is still the supervisor), so a supervisor killed outright leaves no worker
behind; their jobs are then handed back by the next worker's
maintenance pass (gateway/queues.py). With ``--metrics-port``, the supervisor serves every
child's job metrics, summed through a PROMETHEUS_MULTIPROC_DIR they share (a private one when
none is set).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from .queues import SUPERVISOR_ENV, die_with_parent

log = logging.getLogger(__name__)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
RESTART_SECONDS = (1, 2, 5, 10, 30)  # between restarts of a child that keeps dying
STOP_SECONDS = 30  # a child finishing its job after SIGTERM, before it is killed
_ENTRY = "from gateway.cli import main; main()"


def supervise(
    groups: Sequence[Sequence[str]], burst: bool = False, metrics_port: int | None = None
) -> int:
    """Run one child per group until stopped (or, with ``burst``, until each has emptied its
    queues); the exit status: 0, or with ``burst`` the first failing child's."""
    env = {**os.environ, SUPERVISOR_ENV: str(os.getpid())}
    made = None
    if metrics_port and not env.get(MULTIPROC_DIR):
        made = env[MULTIPROC_DIR] = tempfile.mkdtemp(prefix="workervoice-metrics-")
    stopping = False

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = [_Child(group, burst, env) for group in groups]
    try:
        if metrics_port:
            _serve_metrics(metrics_port, env[MULTIPROC_DIR])
        for child in children:
            child.start()
        while not stopping:
            running = False
            for child in children:
                if child.poll() is None:
                    running = True
                elif not burst and child.due():
                    child.start()
                    running = True
            if burst and not running:
                break
            time.sleep(0.2)
    finally:
        for child in children:
            child.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for child in children:
            child.wait(max(0.1, deadline - time.monotonic()))
        if made:
            shutil.rmtree(made, ignore_errors=True)
    if not burst:
        return 0  # stopped as asked (a child that died meanwhile was restarted)
    return next((c.status for c in children if c.status), 0)


class _Child:
    def __init__(self, group: Sequence[str], burst: bool, env: dict[str, str]):
        self.argv = [sys.executable, "-c", _ENTRY, "worker", "--queues", ",".join(group)]
        if burst:
            self.argv.append("--burst")
        self.env = env
        self.name = "+".join(group)
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.died_at = 0.0
        self.status = 0

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, preexec_fn=die_with_parent)
        log.info("worker for %s started (pid %d)", self.name, self.process.pid)

    def poll(self) -> int | None:
        if self.process is None:
            return 0
        code = self.process.poll()
        if code is not None and self.died_at == 0.0:
            self.died_at = time.monotonic()
            self.status = self.status or code
            _forget_metrics(self.env, self.process.pid)
            if code:
                log.warning("worker for %s exited with status %d", self.name, code)
        return code

    def due(self) -> bool:
        """Whether a dead child's next start is due (later after each restart)."""
        wait = RESTART_SECONDS[min(self.restarts, len(RESTART_SECONDS) - 1)]
        if time.monotonic() - self.died_at < wait:
            return False
        self.restarts += 1
        self.died_at = 0.0
        return True

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def wait(self, seconds: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _serve_metrics(port: int, directory: str) -> None:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=directory)
    start_http_server(port, registry=registry)


def _forget_metrics(env: dict[str, str], pid: int) -> None:
    directory = env.get(MULTIPROC_DIR)
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path=directory)
