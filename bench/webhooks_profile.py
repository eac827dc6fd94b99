"""Where a hop's time goes, from py-spy's raw stacks of one gunicorn worker (bench/webhooks.py
``--profile DIR``): every sample of a thread inside a request is put in one category, the first
of CATEGORIES that its stack matches, so the shares add up to 100 %.

    .venv/bin/python bench/webhooks_profile.py DIR/wall.txt [DIR/gil.txt]

``wall.txt`` was recorded with idle threads (a hop waiting on PostgreSQL or Redis, or for the
worker's lock, is idle to the OS): the shares of a hop's time in the server. ``gil.txt`` holds
only the thread that held the GIL: the shares of the Python CPU a hop costs the process.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

IN_REQUEST = (
    "ThreadWorker.handle "  # gunicorn's gthread: one request (or keep-alive wait) on a thread
)
WAITING = "ThreadWorker._keepalive_after"  # between requests on a kept-alive connection: not a hop
# (category, marks): a stack is in the first category one of whose marks one of its frames
# has, so the specific come first. A frame is "Function (path/file.py:line)"; a mark with a
# slash is looked for in it as it is, one without in "Function (file.py" (py-spy shortens
# some paths and not others).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("SQL (none is expected in a hop)", ("sqlalchemy/", "psycopg/")),
    ("sealing the recipient", ("seal (crypto.py",)),
    ("RQ enqueue: reply job", ("enqueue_reply (outbound.py",)),
    (
        "Redis: open (reply cache, lock, session, dialog, profile)",
        ("SessionStore.open (sessions.py",),
    ),
    ("Redis: code tries", ("allow_code_try (sessions.py",)),
    (
        "Redis: commit (session, reply, dialog, profile, events, unlock)",
        ("SessionStore.commit (sessions.py",),
    ),
    ("queueing a drain of the event log", ("queue_drain (persistence.py",)),
    ("Redis: other", ("redis/",)),
    ("pseudonymisation", ("pseudonymise (identity.py",)),
    ("engine step", ("step (runtime.py",)),
    ("events to keep, as JSON", ("_events (conversation.py",)),
    ("USSD reserved words", ("_commands (at_ussd.py",)),
    ("turn: read + render", ("Turn.read (", "Turn.render (")),
    ("metrics (prometheus-client)", ("prometheus_client/", "metrics.py")),
    ("logging (the app's and gunicorn's access log)", ("logging/", "glogging.py", "logs.py")),
]
# What is left goes by the innermost frame of a known package.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("Flask + Werkzeug (form, routing, response)", ("flask/", "werkzeug/")),
    ("other gateway code", ("gateway/", "store/")),
    ("gunicorn (HTTP parsing, writing the response)", ("gunicorn/",)),
]


def read(path: Path) -> Counter[tuple[str, ...]]:
    """py-spy's raw format: ``frame;frame;...;leaf count`` a line, root first."""
    stacks: Counter[tuple[str, ...]] = Counter()
    with path.open(newline="\n", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if count.isdigit():
                stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def short(frame: str) -> str:
    """ "Function (path/to/file.py:12)" as "Function (file.py"."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].rsplit('/', 1)[-1]}"


def category(frames: tuple[str, ...]) -> str:
    shorts = [short(f) for f in frames]
    for name, marks in CATEGORIES:
        for mark in marks:
            if any(mark in f for f in (frames if "/" in mark else shorts)):
                return name
    for frame in reversed(frames):
        for name, marks in LAYERS:
            if any(mark in frame for mark in marks):
                return name
    return LAYERS[-1][0]


def categorise(stacks: Counter[tuple[str, ...]]) -> Counter[str]:
    shares: Counter[str] = Counter()
    for frames, count in stacks.items():
        if any(IN_REQUEST in f for f in frames) and not any(WAITING in f for f in frames):
            shares[category(frames)] += count
    return shares


def table(paths: list[Path]) -> list[str]:
    """A markdown table: a row per category, a column of percentages per file."""
    columns = [categorise(read(p)) for p in paths]
    totals = [sum(c.values()) or 1 for c in columns]
    head = "| where | " + " | ".join(p.stem for p in paths) + " |"
    rows = [head, "|---|" + "---:|" * len(paths)]
    for name, _ in CATEGORIES + LAYERS:
        if any(c[name] for c in columns):
            cells = " | ".join(
                f"{100 * c[name] / t:.1f} %" for c, t in zip(columns, totals, strict=True)
            )
            rows.append(f"| {name} | {cells} |")
    rows.append("| samples | " + " | ".join(str(sum(c.values())) for c in columns) + " |")
    return rows


if __name__ == "__main__":
    print("\n".join(table([Path(p) for p in sys.argv[1:]])))
