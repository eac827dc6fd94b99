"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import shutil

import pytest

from .processes import private_redis


@pytest.fixture
def redis_url(tmp_path, migrated):
    """The suite's Redis server; without one (a laptop), a private redis-server if installed."""
    if not migrated.embedded_redis:
        yield migrated.redis_url
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip(
            "needs a Redis server shared by gunicorn and the RQ worker: set REDIS_URL "
            "or install redis-server"
        )
    with private_redis(server, tmp_path) as url:
        yield url
