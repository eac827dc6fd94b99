"""How the engine's events read as one SMS reply, for every SMS channel (Twilio, AT)."""

from __future__ import annotations

from ..engine.events import Ask, Event, Say
from ..engine.segments import sms_prompt  # the layout lint measures, so the two agree


def render(events: tuple[Event, ...]) -> str:
    """Messages and prompts in order, a blank line apart; options numbered from 1, one a line."""
    parts: list[str] = []
    for event in events:
        if isinstance(event, Say):
            parts.append(event.text)
        elif isinstance(event, Ask):
            parts.append(sms_prompt(event.text, event.options))
    return "\n\n".join(parts)
