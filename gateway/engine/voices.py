"""Which languages a provider can speak with text-to-speech (PROVIDERS.md §2.4, §6).

A voice prompt in any other language is heard only as a recorded or synthesised clip
(gateway/audio.py), which is what ``flows lint`` checks. The voice names per language belong to
the voice adapters; this is only the set of languages they have one for.
"""

from __future__ import annotations

# Twilio <Say>: bn-IN, hi-IN, ta-IN, ms-MY and English; none for Swahili (sw-KE/sw-TZ exist for
# speech recognition only).
TWILIO_TTS_LANGUAGES = frozenset({"en", "bn", "hi", "ta", "ms"})
# Africa's Talking <Say>: English only (PROVIDERS.md §6.2); every other language needs clips.
AT_TTS_LANGUAGES = frozenset({"en"})
