"""The processes bench/webhooks.py runs against, and their clean-up: the Procfile's web line
on loopback (serving the gateway or the bare ceiling app), the RQ worker, the CLI, the stand-in
for the AT send API, the load generator, py-spy; the bench database and Redis db made ready;
and the CPU the machine spent meanwhile on anything else.

Every process is started in a session of its own and stopped by its group id, newest first.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
TEST_DATABASE, TEST_REDIS_DB = "test", 15  # the test suite's: never touched here
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
APP, BARE_APP = "gateway:create_app()", "webhooks_stack:bare_app()"


def bare_app():
    """The ceiling: one POST endpoint reading the form and answering a short text."""
    from flask import Flask, request

    app = Flask("bare")

    @app.post("/webhooks/at/sms")
    def hook():
        request.form.get("text")
        return "OK", 200, {"Content-Type": "text/plain"}

    return app


class Children:
    """The processes this run started, each in its own session, stopped in reverse order;
    then the clean-ups in ``after``."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.running: list[subprocess.Popen] = []
        self.after: list[Callable[[], object]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("ab")
        kw.setdefault("stdout", log)
        child = subprocess.Popen(
            argv, env=env, cwd=kw.pop("cwd", ROOT), stderr=log, start_new_session=True, **kw
        )
        self.running.append(child)
        return child

    def stop(self, child: subprocess.Popen) -> None:
        if child.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=5)
        if child in self.running:
            self.running.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self.running)):
            self.stop(child)
        for clean_up in self.after:
            with suppress(Exception):
                clean_up()

    def run_cli(self, env: dict[str, str], *command: str) -> None:
        """``workervoice <command>``, its output (a workplace token) kept in cli.log only."""
        if self.start("cli", [str(BIN / "workervoice"), *command], env).wait(timeout=120):
            raise RuntimeError(f"workervoice {' '.join(command[:2])} failed (see cli.log)")


def checked_urls(database: str, redis: str) -> tuple[str, str]:
    """The URLs as psql and redis-py take them, or exit: PostgreSQL only, loopback only, and
    never the test suite's database or Redis db."""
    db, rd = urlsplit(database), urlsplit(redis)
    if db.scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
        sys.exit("DATABASE_URL: the benchmark needs PostgreSQL")
    if db.path.strip("/") == TEST_DATABASE:
        sys.exit(f"DATABASE_URL: {TEST_DATABASE!r} is the test suite's database")
    if int(rd.path.strip("/") or 0) == TEST_REDIS_DB:
        sys.exit(f"REDIS_URL: db {TEST_REDIS_DB} is the test suite's")
    for name, parts in (("DATABASE_URL", db), ("REDIS_URL", rd)):
        if (parts.hostname or "localhost") not in LOOPBACK:
            sys.exit(f"{name}: only a server on loopback")
    return urlunsplit(db._replace(scheme="postgresql")), redis


def _psql(url: str, sql: str) -> str:
    argv = ["psql", url, "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def prepare_database(url: str) -> None:
    """Create the database if missing (createdb), then wipe its schema for the CLI to migrate
    afresh; refused while another client is connected to it."""
    parts = urlsplit(url)
    name = parts.path.strip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    if not _psql(admin, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
        options = [f"--host={parts.hostname or 'localhost'}", f"--port={parts.port or 5432}"]
        if parts.username:
            options.append(f"--username={parts.username}")
        env = {**os.environ, **({"PGPASSWORD": parts.password} if parts.password else {})}
        subprocess.run(["createdb", *options, name], check=True, env=env)
    others = _psql(
        url,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    if others != "0":
        sys.exit(f"{others} other connection(s) to {name}: not wiping it")
    _psql(url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")


def web_line() -> str:
    """The Procfile's web line as it stands."""
    return next(
        line.split(":", 1)[1].strip()
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("web:")
    )


def web_argv(app: str) -> list[str]:
    """The web line bound to loopback only, serving ``app`` instead of the gateway."""
    line = web_line()
    if APP not in line:
        sys.exit(f"the Procfile's web line no longer serves {APP}: {line}")
    return ["sh", "-c", "exec " + line.replace("0.0.0.0:", "127.0.0.1:").replace(APP, app)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, child: subprocess.Popen, data: bytes | None = None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"{url.split('?')[0]}: the server exited (see its log)")
        with suppress(OSError), urllib.request.urlopen(url, data=data, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url.split('?')[0]}: no answer within 60 s")


def serve(children: Children, name: str, env: dict[str, str], app: str, token: str):
    """The web line serving ``app`` on a free loopback port, once it answers: (url, process)."""
    port = free_port()
    bare = app == BARE_APP
    path = f"{ROOT}{os.pathsep}{HERE}" if bare else str(ROOT)
    child = children.start(
        name, web_argv(app), {**env, "PORT": str(port), "PYTHONPATH": path}, cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    if bare:
        wait_http(f"{url}/webhooks/at/sms?token={token}", child, b"text=x")
    else:
        wait_http(f"{url}/healthz", child)
    return url, child


def fake_at(children: Children, api_key: str) -> str:
    """The AT send API stand-in's URL, once it listens."""
    child = children.start(
        "fake_at",
        [sys.executable, str(HERE / "fake_at.py"), "--api-key", api_key],
        dict(os.environ),
        stdout=subprocess.PIPE,
    )
    line = child.stdout.readline().decode().strip()  # type: ignore[union-attr]
    if not line.startswith("port="):
        raise RuntimeError("the AT stand-in did not start")
    return f"http://127.0.0.1:{line.split('=')[1]}"


def sent_to(fake_at_url: str, phone: str) -> dict:
    with urllib.request.urlopen(f"{fake_at_url}/sent?to={quote(phone)}", timeout=5) as response:
        return json.load(response)


def replies_sent(fake_at_url: str) -> int:
    with urllib.request.urlopen(f"{fake_at_url}/stats", timeout=5) as response:
        return json.load(response)["messages"]


def drive(children: Children, phase: dict) -> dict:
    """One phase from a load-generator process of its own (bench/webhooks_load.py)."""
    child = children.start(
        "load",
        [sys.executable, str(HERE / "webhooks_load.py")],
        dict(os.environ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    timeout = phase["warmup"] + phase["seconds"] + 60
    out, _ = child.communicate(json.dumps(phase).encode(), timeout=timeout)
    children.stop(child)
    if child.returncode != 0:
        raise RuntimeError("the load generator failed (see load.log)")
    return json.loads(out)


def spies(children: Children, web: subprocess.Popen, directory: Path, seconds: float):
    """py-spy on the web line's two gunicorn workers, which share the load alike, as raw
    stacks: the first with idle threads included (a hop waiting on PostgreSQL, Redis or a lock
    is idle to the OS) into ``wall.txt``, the second only the thread holding the GIL (Python
    running) into ``gil.txt``."""
    workers = Path(f"/proc/{web.pid}/task/{web.pid}/children").read_text().split()
    directory.mkdir(parents=True, exist_ok=True)
    started = []
    for pid, name, mode in zip(workers, ("wall", "gil"), ("--idle", "--gil"), strict=False):
        argv = [str(BIN / "py-spy"), "record", "--pid", pid, mode, "--nonblocking"]
        argv += ["--rate", "200", "--format", "raw", "--duration", str(int(seconds))]
        argv += ["--output", str(directory / f"{name}.txt")]
        started.append(children.start(f"py-spy-{name}", argv, dict(os.environ)))
    return started


def session_cpu(leader: subprocess.Popen) -> float:
    """CPU seconds used so far by the live processes of a child's session (gunicorn's master
    and workers, the RQ worker and its forks)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == leader.pid:
                total += sum(map(int, fields[11:13]))
    return total / tick


def server_pids(database: str, redis: str) -> list[int]:
    """The PostgreSQL postmaster and the redis-server this run uses (both on this machine)."""
    from redis import Redis

    admin = urlunsplit(urlsplit(database)._replace(path="/postgres"))
    directory = _psql(admin, "SHOW data_directory")
    postmaster = int((Path(directory) / "postmaster.pid").read_text().split()[0])
    return [postmaster, int(Redis.from_url(redis).info("server")["process_id"])]


def servers_cpu(servers: list[int]) -> float:
    """CPU seconds used so far by the PostgreSQL and Redis serving the run: each server's own
    time, its reaped children's, and its live children's (PostgreSQL's backends)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid, ppid = int(stat.parent.name), int(fields[1])
            if pid in servers:
                total += sum(map(int, fields[11:15]))
            elif ppid in servers:
                total += sum(map(int, fields[11:13]))
    return total / tick


class Cpu:
    """CPU seconds the machine spent, and how much of it went to processes that neither this
    run started nor are the PostgreSQL and Redis serving it: other jobs on the same cores."""

    def __init__(self, servers: list[int]) -> None:
        self.servers = servers
        self.start = self.sample()

    def sample(self) -> tuple[float, float, float, float]:
        tick = os.sysconf("SC_CLK_TCK")
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
        user, nice, system, _, _, irq, softirq, steal = map(int, first)
        busy = (user + nice + system + irq + softirq + steal) / tick
        mine = os.times()
        ours = mine.user + mine.system + mine.children_user + mine.children_system
        return busy, ours, servers_cpu(self.servers), steal / tick

    def shares(self, seconds: float) -> tuple[float, float, float]:
        """(busy, other, stolen) as shares of all cores over ``seconds``, stolen being what a
        virtual machine's host kept; call once the children have exited."""
        end = self.sample()
        busy, ours, servers, steal = (b - a for a, b in zip(self.start, end, strict=True))
        capacity = seconds * (os.cpu_count() or 1)
        return busy / capacity, max(0.0, busy - ours - servers - steal) / capacity, steal / capacity


# -- what every benchmark run does around its own phases -----------------------------------------
def run_settings() -> dict[str, object]:
    """The commit, how many files differ from it, the machine and its load before the run."""

    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True)
        return done.stdout.decode().strip() if done.returncode == 0 else "unknown"

    status = git("status", "--short")
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty_files": len(status.splitlines()) if status != "unknown" else "unknown",
        "machine": f"{os.cpu_count()} cores {platform.machine()} {platform.python_version()}",
        "load_average_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def measured(
    name: str,
    deadline_s: int,
    defaults: tuple[str, str],
    run: Callable[[str, str, Path, Children], dict],
    quiet_logs: tuple[str, ...] = (),
) -> dict[str, object]:
    """``run(database, redis, tmp, children)`` within ``deadline_s`` (SIGALRM), against the
    DATABASE_URL and REDIS_URL in the environment (else ``defaults``), its children stopped at
    the end, on Ctrl-C or on failure (then the tails of their logs, but ``quiet_logs``, go to
    stderr); its figures with the run's elapsed time and CPU shares."""

    def stopped(signum, frame):
        if signum == signal.SIGALRM:
            raise TimeoutError(f"the run took more than {deadline_s} s")
        raise KeyboardInterrupt

    for signum in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT):  # SIGINT: even if ignored
        signal.signal(signum, stopped)
    signal.alarm(deadline_s)
    database, redis = checked_urls(
        os.environ.get("DATABASE_URL", defaults[0]), os.environ.get("REDIS_URL", defaults[1])
    )
    started, cpu = time.monotonic(), Cpu(server_pids(database, redis))
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        children = Children(Path(tmp))
        try:
            out = run(database, redis, Path(tmp), children)
        except BaseException:
            for log in sorted(Path(tmp).glob("*.log")):
                if log.stem not in quiet_logs:
                    tail = log.read_text(errors="replace")[-1500:]
                    print(f"--- {log.name}\n{tail}", file=sys.stderr)
            raise
        finally:
            signal.alarm(0)
            children.stop_all()
    elapsed = time.monotonic() - started
    busy, other, stolen = cpu.shares(elapsed)
    out.update(elapsed_s=round(elapsed, 1), cpu_busy_share=round(busy, 3))
    out.update(other_cpu_share=round(other, 3), stolen_cpu_share=round(stolen, 3))
    return out
