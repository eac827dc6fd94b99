"""The request size limit through a real gunicorn: a body over MAX_CONTENT_LENGTH (256 KB) is
refused with 413 and one plain line whether it comes with a Content-Length or chunked
(``Transfer-Encoding: chunked``, where gunicorn hands the app a stream of unknown length), and
nothing is processed. A chunked body within the limit is handled as usual.

gunicorn runs one worker on the suite's database with the embedded Redis, so a handled Africa's
Talking message leaves its reply in the instance's outbox at once: an empty outbox after a
refusal shows that nothing was processed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode
from urllib.request import urlopen

import pytest

from ..conftest import AT_TOKEN, environ_for
from .processes import BIN, free_port

LIMIT = 256 * 1024
SENDER = "+254711283946"
PATH = f"/webhooks/at/sms?token={AT_TOKEN}"


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory, migrated):
    """One gunicorn worker serving the app factory; yields (port, outbox directory)."""
    tmp = tmp_path_factory.mktemp("limits")
    environ = environ_for(tmp, DATABASE_URL=migrated.database_url)
    environ.pop("REDIS_URL", None)  # the embedded Redis: jobs run as they are queued
    port = free_port()
    log = (tmp / "gunicorn.log").open("wb")
    child = subprocess.Popen(
        [
            shutil.which("gunicorn", path=str(BIN)) or "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "gateway:create_app()",
        ],
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_healthy(child, port, tmp / "gunicorn.log")
        yield port, tmp / "instance" / "outbox"
    finally:
        child.terminate()
        child.wait(timeout=10)
        log.close()


def _wait_healthy(child: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError("gunicorn exited: " + log.read_text(errors="replace")[-2000:])
        try:
            with urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not become healthy")


def form(message_id: str, padding: int = 0) -> bytes:
    """An AT incoming SMS; ``padding`` characters of an unknown field after the real ones, so
    that a body cut anywhere in the padding still parses as a usable message."""
    fields = {"from": SENDER, "text": "Hello", "id": message_id, "to": "28901"}
    if padding:
        fields["pad"] = "x" * padding
    return urlencode(fields).encode()


def post(port: int, body: bytes, chunked: bool) -> tuple[int, str]:
    """POST the body over a raw socket (chunked in 16 KB chunks, or with a Content-Length) and
    return the status and the body of the answer."""
    head = [
        f"POST {PATH} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/x-www-form-urlencoded",
        "Connection: close",
    ]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        step = 16 * 1024
        payload = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + step]), body[i : i + step])
            for i in range(0, len(body), step)
        )
        payload += b"0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(body)}")
        payload = body
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    headers, _, content = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in headers.lower():
        content = _dechunk(content)
    return int(status_line.split()[1]), content.decode()


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def outbox(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.exists() else []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_alike(gunicorn, chunked):
    port, box = gunicorn
    before = outbox(box)
    status, text = post(port, form("ATXid_over_" + str(chunked), padding=300_000), chunked)
    assert status == 413, text
    assert text.endswith("\n") and "\n" not in text[:-1], f"not one line: {text!r}"
    assert "exceeds" in text
    assert outbox(box) == before, "a refused request was processed"


def test_a_body_of_exactly_the_limit_is_accepted_alike(gunicorn):
    port, box = gunicorn
    for chunked in (False, True):
        body = form(f"ATXid_exact_{chunked}")
        body = form(f"ATXid_exact_{chunked}", padding=LIMIT - len(body) - len("&pad="))
        assert len(body) == LIMIT
        before = outbox(box)
        status, text = post(port, body, chunked)
        assert status == 200, text
        assert len(outbox(box)) == len(before) + 1, "the message was not handled"


def test_a_small_chunked_body_is_handled(gunicorn):
    port, box = gunicorn
    before = outbox(box)
    status, text = post(port, form("ATXid_small"), chunked=True)
    assert status == 200, text
    assert len(outbox(box)) == len(before) + 1, "the message was not handled"


def test_a_broken_chunked_body_is_one_line_400(gunicorn):
    """A chunk size that is not hexadecimal: the caller's fault, never a 500."""
    port, box = gunicorn
    before = outbox(box)
    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nfrom=\r\nzz\r\n+2547\r\n0\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b"\r\n", 1)[0].split()[1])
    text = answer.partition(b"\r\n\r\n")[2].decode()
    assert status == 400, answer
    assert text.endswith("\n") and "\n" not in text[:-1], f"not one line: {text!r}"
    assert outbox(box) == before
