"""gunicorn settings for the Procfile's ``web`` process (``-c python:gateway.gunicorn_conf``):
Prometheus multiprocess mode, so that ``/metrics`` sums every worker rather than showing the
one that happened to answer (gateway/metrics.py), and gunicorn's own logs redacted
(gateway/gunicorn_logging.py).

``PROMETHEUS_MULTIPROC_DIR`` may name the directory (the RQ worker's job counters join the
web's ``/metrics`` when it writes to the same one on the same machine); unset, the master makes
a directory of its own and removes it when it stops. This module is imported by the master
before any worker loads the app, which is when prometheus-client must see the variable. The
command line's options (bind, workers, threads, logs) stay in the Procfile.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# gunicorn's access and error logs without numbers, query secrets or forged lines.
logger_class = "gateway.gunicorn_logging.Logger"
_FILE = re.compile(r"[a-z_]+_(\d+)\.db")  # counter_<pid>.db, histogram_<pid>.db, gauge_*_<pid>.db

_made = None
if not os.environ.get(MULTIPROC_DIR):
    _made = tempfile.mkdtemp(prefix="workervoice-metrics-")
    os.environ[MULTIPROC_DIR] = _made


def on_starting(server) -> None:
    """Drop the files of processes that are gone (an earlier run's workers): prometheus-client
    asks for a clean directory at start. A live process's files (an RQ worker sharing the
    directory) are kept."""
    directory = os.environ[MULTIPROC_DIR]
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        match = _FILE.fullmatch(name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(directory, name))


def child_exit(server, worker) -> None:
    """A worker exited: its live gauges leave the sums (its counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _made is not None:
        shutil.rmtree(_made, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
