"""The session: a plain value that round-trips through JSON (SPEC: sessions live in Redis)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class Profile:
    """What the service keeps about a worker: never the number, only these choices."""

    language: str | None = None
    workplace: str | None = None  # workplace slug
    country: str | None = None  # ISO 3166 region of the number, for language order and time zone
    enrolled: bool = False


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
    resume: str | None = None  # question to return to after LANG

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Session:
        data = json.loads(text)
        data["profile"] = Profile(**data.get("profile", {}))
        return cls(**data)

    @property
    def idle(self) -> bool:
        return self.current is None
