"""How the engine's events read as one SMS reply, for every SMS channel (Twilio, AT)."""

from __future__ import annotations

from ..engine.events import Ask, Event, Say


def render(events: tuple[Event, ...]) -> str:
    """Messages and prompts in order, a blank line apart; options numbered from 1, one a line."""
    parts: list[str] = []
    for event in events:
        if isinstance(event, Say):
            parts.append(event.text)
        elif isinstance(event, Ask):
            lines = [event.text] + [f"{n}. {text}" for n, text in enumerate(event.options, 1)]
            parts.append("\n".join(lines))
    return "\n\n".join(parts)
