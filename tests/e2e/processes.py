"""Real processes for end-to-end tests: gunicorn serving the app factory, an RQ worker built
through the same factory, a private redis-server where the suite has none, and a stand-in for
the Africa's Talking SMS API on loopback."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs
from urllib.request import urlopen

from redis import Redis
from redis.exceptions import RedisError

BIN = Path(sys.executable).parent
PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


def _procfile_option(name: str) -> str:
    web = next(line for line in PROCFILE.read_text().splitlines() if line.startswith("web:"))
    words = shlex.split(web.removeprefix("web:"))
    return words[words.index(name) + 1]


# The Procfile's: no query string, and each figure named (a status, a size and a time side by
# side would read as a 7-digit number to the logs' redaction).
ACCESS_LOG_FORMAT = _procfile_option("--access-logformat")


def flows_without_rotation(tmp: Path) -> Path:
    """A copy of flows/ in ``tmp`` whose check-in asks every question every time (its daily
    rotation, ``sample``, taken out: the rotation has tests of its own)."""
    from ..conftest import ROOT

    flows = tmp / "flows"
    shutil.copytree(ROOT / "flows", flows)
    checkin = flows / "checkin.yaml"
    checkin.write_text(checkin.read_text().replace("sample: 3\n", ""))
    return flows


def stack_environ(
    tmp: Path, flows: Path, at_api_url: str, redis_url: str, **more: str
) -> dict[str, str]:
    """The environment of a stack in production mode on ``flows``, sending AT SMS to the API
    (stand-in) at ``at_api_url`` with the credentials the stand-in takes."""
    from ..conftest import environ_for

    return environ_for(
        tmp,
        WORKERVOICE_ENV="production",
        WORKERVOICE_FLOWS_DIR=str(flows),
        AT_USERNAME="workervoice",
        AT_API_KEY="at-key",
        WORKERVOICE_AT_API_URL=at_api_url,
        REDIS_URL=redis_url,
        **more,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def private_redis(server: str, directory: Path) -> Iterator[str]:
    """A redis-server of our own on loopback (no persistence), for a run without REDIS_URL:
    gunicorn and the RQ worker are separate processes, so the embedded emulation cannot serve.
    Yields its URL once it answers; stops it afterwards."""
    port = free_port()
    options = {"port": str(port), "bind": "127.0.0.1", "save": "", "appendonly": "no"}
    argv = [server, *(arg for name, value in options.items() for arg in (f"--{name}", value))]
    child = subprocess.Popen(
        [*argv, "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                Redis.from_url(url).ping()
                break
            except RedisError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError("the private redis-server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        child.terminate()
        child.wait(timeout=10)


class FakeAfricasTalking:
    """Speaks the AT SMS send API (PROVIDERS.md §5.2): records each message by recipient."""

    def __init__(self):
        self.sent: dict[str, list[str]] = defaultdict(list)
        self.requests = 0
        self.lock = threading.Condition()
        # Recipients answered with status 500 (InternalServerError), as an outage would: a
        # call for them alone gets an HTTP 500; one shared with others, their entries' status.
        self.failing: set[str] = set()
        self.open = threading.Event()  # cleared: requests are held until it is set again
        self.open.set()
        self.held = 0  # requests held so far
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                ok = self.path == "/version1/messaging" and self.headers.get("apiKey") == "at-key"
                recipients = form.get("to", [""])[0].split(",")
                if not outer.open.is_set():
                    with outer.lock:
                        outer.held += 1
                        outer.lock.notify_all()
                    outer.open.wait(60)
                if set(recipients) <= outer.failing:
                    self.send_error(500)
                    return
                entries = [
                    outer.entry(r, f"ATXid_{outer.requests}_{i}") for i, r in enumerate(recipients)
                ]
                body = {"SMSMessageData": {"Message": "Sent", "Recipients": entries}}
                with outer.lock:
                    outer.requests += 1
                    if ok:
                        for recipient in recipients:
                            if recipient not in outer.failing:
                                outer.sent[recipient].append(form.get("message", [""])[0])
                    outer.lock.notify_all()
                data = json.dumps(body).encode()
                self.send_response(201 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output (and numbers) out of stderr
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def entry(self, recipient: str, message_id: str) -> dict:
        """The recipient's ``Recipients[]`` entry (PROVIDERS.md §5.2)."""
        if recipient in self.failing:
            return {"statusCode": 500, "number": recipient, "status": "InternalServerError"}
        return {
            "statusCode": 101,
            "number": recipient,
            "status": "Success",
            "cost": "KES 0.8000",
            "messageId": message_id,
        }

    def wait_for(self, recipient: str, count: int, timeout: float = 15.0) -> str:
        """The ``count``-th message sent to the recipient, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.sent[recipient]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no reply #{count} from the AT API stand-in")
                self.lock.wait(left)
            return self.sent[recipient][count - 1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Processes:
    """gunicorn + RQ worker with their output captured in log files."""

    def __init__(self, environ: dict[str, str], logs: Path):
        self.environ = {**os.environ, **environ}
        self.logs = logs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.children: list[subprocess.Popen] = []

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.children.append(
            subprocess.Popen(argv, env=self.environ, stdout=log, stderr=subprocess.STDOUT)
        )

    def start(self) -> None:
        gunicorn = shutil.which("gunicorn", path=str(BIN)) or "gunicorn"
        workervoice = shutil.which("workervoice", path=str(BIN)) or "workervoice"
        self._spawn(
            "gunicorn",
            [
                gunicorn,
                *("-c", "python:gateway.gunicorn_conf"),  # as the Procfile: its logs redacted
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--threads",
                "2",
                "--access-logfile",
                "-",
                "--access-logformat",
                ACCESS_LOG_FORMAT,
                "gateway:create_app()",
            ],
        )
        self._spawn("worker", [workervoice, "worker"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for child in self.children:
                if child.poll() is not None:
                    raise RuntimeError(f"a process exited early: {self.log_text()[-2000:]}")
            try:
                with urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not become healthy: " + self.log_text()[-2000:])

    def run(self, name: str, args: list[str], **environ: str) -> str:
        """One ``workervoice`` command (the CLI, ``clock --once``) in this environment, its
        output appended to ``<name>.log`` with the other processes' logs; its output."""
        workervoice = shutil.which("workervoice", path=str(BIN)) or "workervoice"
        done = subprocess.run(
            [workervoice, *args],
            env={**self.environ, **environ},
            capture_output=True,
            timeout=60,
            check=False,
        )
        output = done.stdout + done.stderr
        with (self.logs / f"{name}.log").open("ab") as log:
            log.write(output)
        assert done.returncode == 0, output.decode(errors="replace")
        return output.decode(errors="replace")

    def stop(self) -> None:
        for child in self.children:
            child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))


class TcpProxy:
    """A TCP relay on loopback in front of ``upstream`` (host, port) that can go down, as a
    database server does: ``down()`` closes every relayed connection and stops listening (new
    connections are refused), ``up()`` listens on the same port again."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.port = 0
        self.relayed = 0  # connections relayed so far
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.stopping: threading.Event | None = None
        self.accepting: threading.Thread | None = None
        self.up()

    @property
    def is_up(self) -> bool:
        return self.accepting is not None

    def up(self) -> None:
        if self.is_up:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))  # the same port again after the first time
        listener.listen(128)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self.stopping = threading.Event()
        self.accepting = threading.Thread(
            target=self._accept, args=(listener, self.stopping), daemon=True
        )
        self.accepting.start()

    def down(self) -> None:
        if not self.is_up:
            return
        assert self.stopping is not None and self.accepting is not None
        self.stopping.set()
        self.accepting.join(timeout=5)  # it closes the listener: connections are refused
        self.accepting = self.stopping = None
        with self.lock:
            relayed, self.sockets = self.sockets, set()
        for sock in relayed:
            _close(sock)

    close = down

    def _accept(self, listener: socket.socket, stopping: threading.Event) -> None:
        try:
            while not stopping.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                client.settimeout(None)
                try:
                    server = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    _close(client)
                    continue
                server.settimeout(None)
                with self.lock:
                    if stopping.is_set():
                        _close(client)
                        _close(server)
                        break
                    self.sockets |= {client, server}
                    self.relayed += 1
                for source, sink in ((client, server), (server, client)):
                    threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()
        finally:
            listener.close()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self.lock:
                self.sockets.discard(source)
                self.sockets.discard(sink)
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def post_sms(url: str, provider: str, address: str, text: str, sid: str | None = None):
    """One SMS from ``address`` to the gateway at ``url``, as Twilio (signed) or Africa's
    Talking (with the webhook token) delivers it; the response, checked to be 200."""
    import requests

    from ..conftest import AT_TOKEN
    from ..support import at_sms_form, twilio_signature, twilio_sms_form

    if provider == "twilio":
        form = twilio_sms_form(address, text, sid=sid)
        response = requests.post(
            url + "/webhooks/twilio/sms",
            data=form,
            timeout=10,
            headers={"X-Twilio-Signature": twilio_signature(form)},
        )
    else:
        form = at_sms_form(address, text, msg_id=sid)
        response = requests.post(f"{url}/webhooks/at/sms?token={AT_TOKEN}", data=form, timeout=10)
    assert response.status_code == 200, response.text
    return response
