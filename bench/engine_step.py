"""Benchmark: the pure engine's cost per message, against the session's JSON round trip (what
every message pays to load and save its session) as the baseline.

    .venv/bin/python bench/engine_step.py [--conversations 2000]

Runs whole conversations (enrol + today's check-in) with the real flows and catalogs.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.engine.definition import load_flows  # noqa: E402
from gateway.engine.inputs import Message  # noqa: E402
from gateway.engine.runtime import Context, step  # noqa: E402
from gateway.engine.session import Profile, Session  # noqa: E402
from gateway.i18n import Texts  # noqa: E402

SCRIPT = ["hello", "2", "1", "4321", "1", "3", "1", "2", "1", "1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=2000)
    args = parser.parse_args()
    flows, texts = load_flows(ROOT / "flows"), Texts.load(ROOT / "locales")
    now = datetime(2026, 11, 25, 8, tzinfo=UTC)
    steps = 0
    started = time.perf_counter()
    for seed in range(args.conversations):
        ctx = Context(
            now=now,
            today=now.date(),
            seed=seed,
            texts=texts,
            workplaces={"4321": "demo"},
        )
        session: Session | None = Session(profile=Profile(country="BD"))
        for text in SCRIPT:
            result = step(flows, session, Message(text), ctx)
            session = Session.from_json(result.session.to_json()) if result.session else None
            steps += 1
    engine = (time.perf_counter() - started) / steps

    sample = Session(
        profile=Profile(language="bn", workplace="demo", country="BD", enrolled=True),
        flow="checkin",
        version="1",
        plan=["a", "b", "c"],
        current="long_hours",
        answers={"x": "yes"},
    )
    rounds = steps
    started = time.perf_counter()
    for _ in range(rounds):
        Session.from_json(sample.to_json())
    baseline = (time.perf_counter() - started) / rounds
    print(f"baseline session JSON round trip  {baseline * 1e6:8.1f} us/message")
    print(
        f"engine step + JSON round trip     {engine * 1e6:8.1f} us/message "
        f"({steps} messages, {engine / baseline:.1f}x baseline)"
    )


if __name__ == "__main__":
    main()
