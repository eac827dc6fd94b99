"""The session: a plain value that round-trips through JSON (SPEC: sessions live in Redis)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass
class Profile:
    """What the service keeps about a worker: never the number, only these choices."""

    language: str | None = None
    workplace: str | None = None  # workplace slug
    country: str | None = None  # ISO 3166 region of the number, for language order and time zone
    enrolled: bool = False
    # The licence version the worker last agreed to (None: agreed before versions were kept,
    # which is FIRST_LICENCE): a worker behind the current one is asked again (runtime.py).
    licence: str | None = None


@dataclass
class Session:
    """Where a worker is in a flow. ``current`` is the question awaiting an answer."""

    profile: Profile = field(default_factory=Profile)
    flow: str | None = None
    version: str | None = None
    plan: list[str] = field(default_factory=list)
    current: str | None = None
    answers: dict[str, str | float] = field(default_factory=dict)
    tries: int = 0
    resume: str | None = None  # question to return to after LANG or the resume screen
    # The channel (sms, ussd, voice, whatsapp) the pending question was last put on: a worker who
    # comes back on another one begins a new dialog there (inputs.DialIn).
    channel: str | None = None

    def to_json(self) -> str:
        # Field by field rather than dataclasses.asdict, which deep-copies every value first:
        # a tenth of a hop's CPU (docs/PERFORMANCE.md). Every field is a str, number, list or
        # dict of those, or the profile.
        data = {**vars(self), "profile": vars(self.profile)}
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    def copy(self) -> Session:
        """A copy the engine may change without touching this one: the profile, plan and answers
        are copied, every other field is an immutable value (str, int, None)."""
        return replace(
            self, profile=replace(self.profile), plan=list(self.plan), answers=dict(self.answers)
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Session:
        """Read a session back. Fields this version does not know are dropped and missing ones
        take their defaults, so sessions stored in Redis survive a deploy either way."""
        data = _known(cls, json.loads(text))
        data["profile"] = Profile(**_known(Profile, data.get("profile") or {}))
        return cls(**data)

    @property
    def idle(self) -> bool:
        return self.current is None


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = _FIELDS[cls]
    return {key: value for key, value in data.items() if key in names}


_FIELDS: dict[type, frozenset[str]] = {
    cls: frozenset(f.name for f in fields(cls)) for cls in (Profile, Session)
}
