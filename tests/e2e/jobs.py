"""Jobs for the worker tests, importable by a worker process (RQ imports a job by name)."""

from __future__ import annotations

import os
import time

from redis import Redis


def stubborn(url: str, key: str) -> int:
    """Counts its runs under ``key``; the first run hangs (until its worker is killed)."""
    redis = Redis.from_url(url)
    runs = int(redis.incr(key))
    if runs == 1:
        redis.set(key + ":pid", os.getpid())
        time.sleep(120)
    return runs


def leaky() -> None:
    """Fails quoting a number, as a library's exception may."""
    raise RuntimeError("could not reach +8801711283946 (01711-283946)")
