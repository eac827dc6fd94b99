"""Test fixtures: the real PostgreSQL and Redis named by DATABASE_URL / REDIS_URL when set (CI
always sets them), else SQLite and the embedded Redis emulation (a fresh laptop).

With ``WORKERVOICE_REQUIRE_SERVICES=1`` (set by .ci/run) the suite refuses to fall back, and the
backends actually used are written to ``WORKERVOICE_BACKENDS_REPORT`` for .ci/run to check.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text

from gateway import create_app
from gateway.config import Config
from gateway.services import EXTENSION, Services
from store.models import Base, PseudonymKey

ROOT = Path(__file__).resolve().parent.parent
TEST_MASTER_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()
TWILIO_TOKEN = "test-twilio-auth-token"
AT_TOKEN = "test-at-webhook-token"
USED: dict[str, str] = {}


def _backends() -> tuple[str | None, str | None]:
    database_url = os.environ.get("DATABASE_URL") or None
    redis_url = os.environ.get("REDIS_URL") or None
    if os.environ.get("WORKERVOICE_REQUIRE_SERVICES") == "1":
        if not database_url or not database_url.startswith(("postgres", "postgresql")):
            raise pytest.UsageError(
                "WORKERVOICE_REQUIRE_SERVICES=1 but DATABASE_URL is not PostgreSQL"
            )
        if not redis_url:
            raise pytest.UsageError("WORKERVOICE_REQUIRE_SERVICES=1 but REDIS_URL is not set")
    return database_url, redis_url


@cache
def catalogs() -> Path:
    """The shipped catalogs without any voice prompts: a developer's synthesised or recorded
    audio under locales/ must not change what the tests hear (tests that want audio make it)."""
    root = Path(tempfile.mkdtemp(prefix="workervoice-locales-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    shutil.copytree(ROOT / "locales", root / "locales", ignore=shutil.ignore_patterns("audio"))
    return root / "locales"


def environ_for(tmp: Path, **overrides: str) -> dict[str, str]:
    """The environment a test app (or a test gunicorn / rq worker) runs with."""
    database_url, redis_url = _backends()
    environ = {
        "WORKERVOICE_ENV": "development",
        "WORKERVOICE_INSTANCE_DIR": str(tmp / "instance"),
        "DATABASE_URL": database_url or f"sqlite:///{tmp / 'test.sqlite3'}",
        "WORKERVOICE_MASTER_KEY": TEST_MASTER_KEY,
        "WORKERVOICE_PUBLIC_URL": "https://gateway.example.org",
        "WORKERVOICE_FLOWS_DIR": str(ROOT / "flows"),
        "WORKERVOICE_LOCALES_DIR": str(catalogs()),
        "WORKERVOICE_MIN_RESPONDENTS": "5",
        "WORKERVOICE_REPORT_CUTOFF": "now",
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "AT_WEBHOOK_TOKEN": AT_TOKEN,
    }
    if redis_url:
        environ["REDIS_URL"] = redis_url
    environ.update(overrides)
    return environ


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("workervoice")


@pytest.fixture(scope="session")
def base_config(session_tmp) -> Config:
    return Config.from_env(environ_for(session_tmp))


@pytest.fixture(scope="session")
def migrated(base_config) -> Config:
    """A database at the newest schema, built by the real migrations (once per run)."""
    services = Services(base_config)
    if services.db.dialect == "postgresql":
        with services.db.engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    services.db.upgrade()
    services.ensure_key_ring()
    USED["database"] = services.db.dialect
    if base_config.embedded_redis:
        services.redis.ping()
        USED["redis"] = "fakeredis"
    else:
        USED["redis"] = f"redis {services.redis.info('server')['redis_version']}"
    services.db.dispose()
    return base_config


def _clean(services: Services) -> None:
    """Every table emptied but the key ring, which keeps its one key unless a test rotated it
    (then it is made afresh, as a new database's)."""
    keep = {"pseudonym_keys"}
    with services.db.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in keep:
                connection.execute(table.delete())
        ring = connection.execute(select(PseudonymKey.status)).scalars().all()
        if ring != ["current"]:
            connection.execute(delete(PseudonymKey))
    if ring != ["current"]:
        services.ensure_key_ring()
    services.redis.flushdb()
    services.mirror.rebuild()  # as every start-up leaves it: the key ring and the marker


@pytest.fixture
def app(migrated):
    application = create_app(migrated)
    services: Services = application.extensions[EXTENSION]
    _clean(services)
    yield application
    services.db.dispose()


@pytest.fixture
def services(app) -> Services:
    return app.extensions[EXTENSION]


@pytest.fixture
def client(app):
    return app.test_client()


def pytest_sessionfinish(session, exitstatus):
    report = os.environ.get("WORKERVOICE_BACKENDS_REPORT")
    if report and USED:
        Path(report).write_text(json.dumps(USED) + "\n")


@pytest.fixture
def queues(services, monkeypatch):
    """The app's job queues as in production, whatever the test backend: their jobs (the event
    log's drains among them) wait for a worker (the embedded default would run them inside the
    request, and their SQL with it)."""
    from .hops import wait_for_workers

    return wait_for_workers(services, monkeypatch)


@pytest.fixture
def fake_at():
    """A stand-in for the Africa's Talking SMS API on loopback (tests/channels/harness.py)."""
    from .channels.harness import FakeAfricasTalking

    fake = FakeAfricasTalking()
    yield fake
    fake.close()
