"""Benchmark: webhook hops (Africa's Talking SMS and USSD) through the Procfile's web process,
with the real PostgreSQL and Redis and the Procfile's worker processes, against a bare Flask
POST endpoint served by the same gunicorn command line (the ceiling), in the same run.

    .venv/bin/python bench/webhooks.py [--seconds 20] [--concurrency 16] [--latency-seconds 30]

DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/bench, created if missing) is WIPED,
then migrated and seeded with one workplace through the CLI; REDIS_URL (default
redis://127.0.0.1:6379/9) is flushed, before and after. The test suite's database ``test`` and
Redis db 15 are refused, and so is any host but loopback. The web line runs as the Procfile
has it, with PORT and WEB_CONCURRENCY=2, bound to 127.0.0.1 instead of 0.0.0.0.

Phases, each from a load-generator process of its own (bench/webhooks_load.py): the ceiling,
SMS hops, USSD hops, both mixed, each keeping ``--concurrency`` requests in flight; the mixed
hops open loop at half the mixed maximum, for ``p50_ms`` and ``p99_ms``; the ceiling again once
the stack has stopped. ``ceiling_per_s`` is the mean of four quarter-phase runs, two before and
two after (``ceiling_runs_per_s``). Before the load, one worker's SMS conversation is walked
with every reply awaited, to check that the script the load follows still reaches the
check-in's thanks. SMS replies go out through the RQ worker to a stand-in for the AT send API
(bench/fake_at.py, answering 101).

Prints one ``key=value`` per line: the figures, the settings, the commit and how many files
differ from it, ``other_cpu_share`` (the share of the cores that went to processes outside this
run and its PostgreSQL and Redis: another job on the machine lowers the figures, and the run is
worth repeating) and ``stolen_cpu_share`` (what a virtual machine's host kept). The CPU per
hop of the mixed phase is split into gunicorn, the RQ workers, PostgreSQL and Redis, and the
load generator (``all_cpu_ms_per_hop`` their sum), beside the ceiling's per request (the bare
app and its load generators, ``ceiling_all_cpu_ms_per_request``): with every core busy, the
ratio is about the second over the first.
Every process it starts is stopped at the end, on Ctrl-C or on failure. With ``--profile
DIR``, py-spy records both gunicorn workers during the mixed phase (bench/webhooks_profile.py
turns the stacks into DIR/profile.md); the figures of such a run are not comparable with a
plain one.
"""

from __future__ import annotations

import argparse
import base64
import math
import os
import secrets
import sys
import time
from pathlib import Path

from redis import Redis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import webhooks_profile  # noqa: E402
import webhooks_stack as stack  # noqa: E402
from webhooks_load import FINISH, SMS_SCRIPT, Sms  # noqa: E402

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/9"
WEB_CONCURRENCY = 2
AT_API_KEY = "bench-at-key"
PROBE_PHONE = "+254799000001"
RUN_LOCK = "bench:webhooks:running"  # in the bench's Redis db: one run at a time
DEADLINE_S = 570  # the whole run, set-up included, stays under 10 minutes
PREFIXES = {  # each phase's workers have numbers of their own: +2547d00 and a 5-digit serial
    "ceiling": "+2547000",
    "ceiling-again": "+2547500",
    "sms": "+2547100",
    "ussd": "+2547200",
    "mixed": "+2547300",
    "half": "+2547400",
}


def stack_env(tmp: Path, database: str, redis: str, token: str, fake_at: str) -> dict[str, str]:
    (tmp / "metrics").mkdir(exist_ok=True)
    return {
        **os.environ,
        "PATH": f"{stack.BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(stack.ROOT),  # this tree's code, whatever the venv has installed
        "WEB_CONCURRENCY": str(WEB_CONCURRENCY),
        "WORKERVOICE_ENV": "production",
        "WORKERVOICE_INSTANCE_DIR": str(tmp / "instance"),
        "DATABASE_URL": database,
        "REDIS_URL": redis,
        "WORKERVOICE_MASTER_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "WORKERVOICE_FLOWS_DIR": str(stack.ROOT / "flows"),
        "WORKERVOICE_LOCALES_DIR": str(stack.ROOT / "locales"),
        "AT_USERNAME": "bench",
        "AT_API_KEY": AT_API_KEY,
        "AT_WEBHOOK_TOKEN": token,
        "WORKERVOICE_AT_API_URL": fake_at,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
    }


def probe_sms(url: str, token: str, fake_at: str) -> None:
    """One worker's whole SMS conversation, each reply awaited at the AT stand-in."""
    import urllib.request

    worker = Sms(PROBE_PHONE, "probe")
    sent = {"count": 0, "last": ""}
    for count in range(1, len(SMS_SCRIPT) + 1):
        path, body = worker.request()
        urllib.request.urlopen(f"{url}{path}?token={token}", data=body, timeout=10).close()
        worker.feed(200, "")
        deadline = time.monotonic() + 20
        while sent["count"] < count and time.monotonic() < deadline:
            time.sleep(0.05)
            sent = stack.sent_to(fake_at, PROBE_PHONE)
        if sent["count"] < count:
            raise RuntimeError(f"SMS probe: reply {count} never reached the AT stand-in")
    if FINISH not in sent["last"]:
        raise RuntimeError("SMS probe: the script no longer ends with the check-in's thanks")


def rate(measured: dict) -> float:
    return sum(map(len, measured["latencies_ms"].values())) / measured["window_s"]


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (NaN of nothing)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def run(
    args: argparse.Namespace, database: str, redis_url: str, tmp: Path, children: stack.Children
) -> dict[str, object]:
    redis = Redis.from_url(redis_url)
    if not redis.set(RUN_LOCK, "1", nx=True, ex=DEADLINE_S + 60):
        sys.exit(f"another run holds {RUN_LOCK} in {redis_url}")
    children.after.append(redis.flushdb)  # once every process has stopped; the lock goes too
    redis.flushdb()
    redis.set(RUN_LOCK, "1", ex=DEADLINE_S + 60)
    stack.prepare_database(database)
    token = secrets.token_urlsafe(16)
    fake_at = stack.fake_at(children, AT_API_KEY)
    env = stack_env(tmp, database, redis_url, token, fake_at)
    phase = dict(token=token, seconds=args.seconds, warmup=args.warmup)
    phase.update(concurrency=args.concurrency, pool=args.pool, mode="closed")

    def drive(name: str, url: str, channels: list[str], **more: object) -> dict:
        spec = {**phase, "url": url, "channels": channels, "prefix": PREFIXES[name], **more}
        return stack.drive(children, spec)

    cpu_s: dict[str, float] = {}  # the bare app's CPU seconds, per ceiling

    def ceiling(name: str) -> list[dict]:
        """The bare app on the same command line, sent the SMS phase's requests: before the
        stack starts and after it stops, each time as two load processes of a quarter phase
        (gunicorn shares a client's kept-alive connections between its two processes as they
        happen to be accepted, and a lopsided share moves the figure by up to a third)."""
        url, bare = stack.serve(children, name, env, stack.BARE_APP, token)
        booted = stack.session_cpu(bare)
        measured = [drive(name, url, ["sms"], seconds=args.seconds / 4) for _ in range(2)]
        cpu_s[name] = stack.session_cpu(bare) - booted
        children.stop(bare)
        return measured

    first = ceiling("ceiling")

    children.run_cli(env, "db", "upgrade")
    children.run_cli(
        env, *("workplace", "add", "bench", "--name", "Bench", "--country", "KE"),
        *("--code", "4321", "--timezone", "Africa/Nairobi"),
    )  # fmt: skip
    url, web = stack.serve(children, "web", env, stack.APP, token)
    worker = children.start("worker", [str(stack.BIN / "workervoice"), "worker"], env)
    probe_sms(url, token, fake_at)
    sms = drive("sms", url, ["sms"])
    ussd = drive("ussd", url, ["ussd"])
    seconds = args.warmup + args.seconds
    spies = stack.spies(children, web, Path(args.profile), seconds) if args.profile else []
    servers = stack.server_pids(database, redis_url)
    before = stack.session_cpu(web), stack.session_cpu(worker), stack.servers_cpu(servers)
    mixed = drive("mixed", url, ["sms", "ussd"])
    after = stack.session_cpu(web), stack.session_cpu(worker), stack.servers_cpu(servers)
    web_s, worker_s, servers_s = (a - b for a, b in zip(after, before, strict=True))
    for spy in spies:
        spy.wait(timeout=60)
    hops = rate(mixed)
    half = drive("half", url, ["sms", "ussd"], mode="open", rate=hops / 2,
                 seconds=args.latency_seconds)  # fmt: skip
    waiting = sum(redis.llen(k) for k in redis.scan_iter("rq:queue:*") if redis.type(k) == b"list")
    events_waiting = redis.xlen("wv:events") if redis.exists("wv:events") else 0
    replies_waiting = (redis.xlen("wv:outbox") if redis.exists("wv:outbox") else 0) + int(
        redis.zcard("wv:outbox:retry")
    )
    sent = stack.replies_sent(fake_at)
    children.stop(web)
    children.stop(worker)
    last = ceiling("ceiling-again")

    ceilings = [rate(m) for m in first + last]
    ceiling_rate, phases = sum(ceilings) / len(ceilings), (*first, *last, sms, ussd, mixed, half)
    half_all = [x for v in half["latencies_ms"].values() for x in v]
    ceiling_requests = sum(m["started"] for m in first)
    ceiling_load_s = sum(m["cpu_s"] for m in first)
    mixed_all = [x for v in mixed["latencies_ms"].values() for x in v]
    return {
        "hops_per_s": round(hops, 1),
        "ceiling_per_s": round(ceiling_rate, 1),
        "ratio": round(hops / ceiling_rate, 3),
        "p50_ms": round(percentile(half_all, 0.50), 1),
        "p99_ms": round(percentile(half_all, 0.99), 1),
        "p95_ms": round(percentile(half_all, 0.95), 1),
        "sms_hops_per_s": round(rate(sms), 1),
        "sms_ratio": round(rate(sms) / ceiling_rate, 3),
        "ussd_hops_per_s": round(rate(ussd), 1),
        "ussd_ratio": round(rate(ussd) / ceiling_rate, 3),
        "half_rate_target_per_s": round(hops / 2, 1),
        "half_rate_per_s": round(rate(half), 1),
        "sms_p99_ms": round(percentile(half["latencies_ms"]["sms"], 0.99), 1),
        "ussd_p99_ms": round(percentile(half["latencies_ms"]["ussd"], 0.99), 1),
        "max_load_p50_ms": round(percentile(mixed_all, 0.50), 1),
        "max_load_p99_ms": round(percentile(mixed_all, 0.99), 1),
        "ceiling_runs_per_s": " ".join(f"{c:.0f}" for c in ceilings),
        "ceiling_p99_ms": round(percentile(first[0]["latencies_ms"]["sms"], 0.99), 1),
        # CPU per hop answered in the mixed phase, warm-up included: gunicorn (master and
        # workers), and the RQ worker, which takes what the cores leave it for its backlog
        "web_cpu_ms_per_hop": round(1000 * web_s / mixed["started"], 2),
        "rq_worker_cpu_ms_per_hop": round(1000 * worker_s / mixed["started"], 2),
        "ceiling_cpu_ms_per_request": round(1000 * cpu_s["ceiling"] / ceiling_requests, 2),
        # and the rest of the machine's budget: PostgreSQL and Redis, and the load generator
        # (the ceiling's load generators alike); a hop's whole cost against a bare request's
        "servers_cpu_ms_per_hop": round(1000 * servers_s / mixed["started"], 2),
        "load_cpu_ms_per_hop": round(1000 * mixed["cpu_s"] / mixed["started"], 2),
        "ceiling_load_cpu_ms_per_request": round(1000 * ceiling_load_s / ceiling_requests, 2),
        "all_cpu_ms_per_hop": round(
            1000 * (web_s + worker_s + servers_s + mixed["cpu_s"]) / mixed["started"], 2
        ),
        "ceiling_all_cpu_ms_per_request": round(
            1000 * (cpu_s["ceiling"] + ceiling_load_s) / ceiling_requests, 2
        ),
        "mixed_sms_share": round(len(mixed["latencies_ms"]["sms"]) / max(1, len(mixed_all)), 3),
        "errors": sum(m["errors"] for m in phases),
        "late": half["late"],
        "ussd_sessions_finished": sum(m["ussd_finished"] for m in phases),
        "ussd_sessions_abandoned": sum(m["ussd_abandoned"] for m in phases),
        "sms_replies_sent": sent,
        "jobs_waiting": waiting,
        "events_waiting": events_waiting,
        "replies_waiting": replies_waiting,
    }


def settings(args: argparse.Namespace) -> dict[str, object]:
    return {
        **stack.run_settings(),
        "web": stack.web_line(),
        "web_concurrency": WEB_CONCURRENCY,
        "rq_workers": "workervoice worker: 2 persist, 1 outbound+calls",
        "concurrency": args.concurrency,
        "pool": args.pool,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "latency_seconds": args.latency_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured, per phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="discarded, per phase")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="half-rate phase")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--pool", type=int, default=256, help="workers in conversation at once")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the web workers, mixed phase")
    args = parser.parse_args()
    load = 4 * args.seconds + 8 * args.warmup + args.latency_seconds  # phases' own seconds
    if load > DEADLINE_S - 150:
        sys.exit("those phases would not end within 10 minutes")
    out = settings(args)
    out.update(
        stack.measured(
            "webhooks",
            DEADLINE_S,
            (DEFAULT_DATABASE, DEFAULT_REDIS),
            lambda database, redis, tmp, children: run(args, database, redis, tmp, children),
            quiet_logs=("web", "ceiling", "ceiling-again"),  # access logs
        )
    )
    if args.profile:
        profile = Path(args.profile)
        table = webhooks_profile.table([profile / "wall.txt", profile / "gil.txt"])
        (profile / "profile.md").write_text("\n".join(table) + "\n")
        out["profile"] = profile / "profile.md"
    for key, value in out.items():
        print(f"{key}={value}")


if __name__ == "__main__":
    main()
