"""Recorded and synthesised voice prompts: where they are, and the URLs providers fetch them at.

A clip (gateway/speech.py names them) is a file under ``locales/<lang>/audio/``: ``<clip>.wav``
or ``<clip>.mp3`` (SPEC §5). A voice adapter plays a clip with ``<Play>`` whenever one exists, in
preference to text-to-speech, and falls back to ``<Say>`` where the provider has a voice for the
language. The app serves the files at stable URLs under ``/audio/`` (gateway/audio_routes.py).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

from .speech import Utterance

AUDIO_DIR = "audio"
EXTENSIONS = (".wav", ".mp3")  # .wav first: Twilio advises low-bitrate wav inside <Gather>
URL_PREFIX = "/audio"


class AudioLibrary:
    """The clips under a locales directory, and their public URLs."""

    def __init__(self, locales_dir: Path, public_url: str):
        self.locales_dir = locales_dir
        self.public_url = public_url.rstrip("/")

    def root(self, language: str) -> Path:
        return self.locales_dir / language / AUDIO_DIR

    def path(self, language: str, clip: str) -> Path | None:
        """The file recorded or synthesised for the clip, if there is one."""
        if not _safe(language) or not all(_safe(part) for part in clip.split("/")):
            return None
        for extension in EXTENSIONS:
            candidate = self.root(language) / f"{clip}{extension}"
            if candidate.is_file():
                return candidate
        return None

    def url(self, said: Utterance) -> str | None:
        """Where a provider fetches the utterance's clip; None when it has none."""
        found = self.path(said.language, said.clip)
        if found is None:
            return None
        return f"{self.public_url}{URL_PREFIX}/{said.language}/{said.clip}{found.suffix}"

    def sequence_url(self, said: Sequence[Utterance]) -> str | None:
        """One URL playing several clips of one language in order (Africa's Talking nests a
        single <Play> in <GetDigits>); None unless every utterance has a .wav clip."""
        if not said or len({s.language for s in said}) != 1:
            return None
        if any((p := self.path(s.language, s.clip)) is None or p.suffix != ".wav" for s in said):
            return None
        token = base64.urlsafe_b64encode("\n".join(s.clip for s in said).encode()).decode()
        return f"{self.public_url}{URL_PREFIX}/{said[0].language}/sequence/{token.rstrip('=')}.wav"


def _safe(part: str) -> bool:
    """A path part we may join under the audio directory (no '..', no separators)."""
    return bool(part) and part not in (".", "..") and "\\" not in part and "/" not in part
