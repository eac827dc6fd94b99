"""gunicorn's own logs, tried as an attacker would, through the Procfile's configuration: a
number in a URL path, a newline decoded from ``%0a`` in a path, and a malformed request line
carrying the Africa's Talking webhook token. None of it reaches the logs as sent."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.request import urlopen

import pytest

from ..conftest import AT_TOKEN, environ_for
from ..leaks import number_forms
from .processes import ACCESS_LOG_FORMAT, BIN, free_port

NUMBER = "+8801711283946"


@pytest.fixture(scope="module")
def server(tmp_path_factory, migrated):
    """gunicorn as the Procfile starts it (its config module and access log format), one
    worker; yields (port, the log file)."""
    tmp = tmp_path_factory.mktemp("server-logs")
    environ = environ_for(tmp, DATABASE_URL=migrated.database_url)
    environ.pop("REDIS_URL", None)
    port, log_path = free_port(), tmp / "gunicorn.log"
    log = log_path.open("wb")
    argv = [
        shutil.which("gunicorn", path=str(BIN)) or "gunicorn",
        *("-c", "python:gateway.gunicorn_conf", "--bind", f"127.0.0.1:{port}", "--workers", "1"),
        *("--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT),
        "gateway:create_app()",
    ]
    child = subprocess.Popen(argv, env=environ, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert child.poll() is None, log_path.read_text(errors="replace")[-2000:]
            try:
                with urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        yield port, log_path
    finally:
        child.terminate()
        child.wait(timeout=10)
        log.close()


def send(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def logged_after(log: Path, before: int, marker: str) -> list[str]:
    """The log's lines written since ``before`` bytes, once one holds ``marker``."""
    deadline = time.monotonic() + 10
    while True:
        lines = log.read_bytes()[before:].decode(errors="replace").splitlines()
        if any(marker in line for line in lines):
            return lines
        assert time.monotonic() < deadline, f"{marker!r} never logged: {lines}"
        time.sleep(0.05)


def test_an_ordinary_request_is_logged_whole(server):
    """Its status, size and time survive the redaction (run together they read as a number)."""
    port, log = server
    before = log.stat().st_size
    send(port, b"GET /ordinary?probe=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    [line] = [line for line in logged_after(log, before, "/ordinary") if "/ordinary" in line]
    assert re.search(r'"GET /ordinary" status=404 bytes=\d+ ms=\d+$', line), line
    assert "probe" not in line  # no query string


def test_a_number_in_a_path_is_not_logged(server):
    port, log = server
    before = log.stat().st_size
    reply = send(
        port, f"GET /webhooks/{NUMBER}/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()
    )
    assert reply.startswith(b"HTTP/1.1 404")
    lines = logged_after(log, before, '"GET /webhooks/')
    for form in number_forms(NUMBER):
        assert not any(form in line for line in lines), f"{form} logged: {lines}"


def test_a_newline_in_a_path_cannot_forge_a_line(server):
    port, log = server
    before = log.stat().st_size
    path = "/nowhere%0a127.0.0.1%20%22GET%20/forged%22%20200"
    send(port, f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
    lines = logged_after(log, before, "/nowhere")
    [line] = [line for line in lines if "/nowhere" in line]
    assert "\\x0a" in line and "/forged" in line  # on the same line, escaped
    assert not any(line.startswith('127.0.0.1 "GET /forged') for line in lines)


def test_a_malformed_request_line_does_not_log_the_webhook_token(server):
    port, log = server
    before = log.stat().st_size
    raw = f"GET /webhooks/at/sms?token={AT_TOKEN}\r\nHost: a\r\n\r\n"  # no HTTP version
    reply = send(port, raw.encode())
    assert reply.startswith(b"HTTP/1.1 400")
    lines = logged_after(log, before, "Invalid request")
    assert not any(AT_TOKEN in line for line in lines), lines
    assert any("token=[redacted]" in line for line in lines), lines
