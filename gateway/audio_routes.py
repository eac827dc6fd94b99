"""GET /audio/<lang>/<clip>.(wav|mp3) and /audio/<lang>/sequence/<token>.wav: the voice prompts
providers fetch for ``<Play>`` (PROVIDERS.md §2, §6).

No authentication: providers fetch these, and a prompt is no secret (every caller hears it).
Only files inside ``locales/<lang>/audio/`` are ever sent, with ETag, Last-Modified and a day's
public caching, since providers cache by those headers. A sequence (Africa's Talking plays one
URL per <GetDigits>) is its clips joined into one WAV, kept in a small in-memory cache.
"""

from __future__ import annotations

import hashlib
import io
import threading
import wave
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path

from flask import Blueprint, abort, send_file

from .audio import SEQUENCE, wav_format
from .services import current

audio = Blueprint("audio", __name__)

MAX_AGE_SECONDS = 86400  # a prompt changes only when its text does: providers may keep it a day
MIMETYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg"}
CACHE_ENTRIES = 64  # sequences joined and kept in memory, least recently used dropped first
CACHE_BYTES = 32 * 1024 * 1024  # ... and no more than this in all (8 kHz 16-bit: ~17 minutes)


@audio.get("/audio/<language>/<path:name>")
def clip(language: str, name: str):
    """A clip's file, or a sequence of clips joined (a real clip of that name comes first)."""
    library = current().audio
    found = library.file(language, name)
    if found is not None:
        return send_file(
            found,
            mimetype=MIMETYPES[found.suffix],
            conditional=True,
            etag=True,
            max_age=MAX_AGE_SECONDS,
        )
    head, _, rest = name.partition("/")
    if head == SEQUENCE and rest.endswith(".wav"):
        paths = library.sequence(language, rest.removesuffix(".wav"))
        joined = _sequences.get(paths) if paths else None
        if joined is not None:
            data, etag, modified = joined
            return send_file(
                io.BytesIO(data),
                mimetype=MIMETYPES[".wav"],
                conditional=True,
                etag=etag,
                last_modified=modified,
                max_age=MAX_AGE_SECONDS,
            )
    abort(404, "no such audio")


def join_wavs(paths: list[Path]) -> bytes | None:
    """The clips as one WAV file, in order; None unless all are readable WAVs of one format."""
    formats = {wav_format(path) for path in paths}
    if None in formats or len(formats) != 1:
        return None
    out = io.BytesIO()
    try:
        with wave.open(out, "wb") as writer:
            for index, path in enumerate(paths):
                with wave.open(str(path), "rb") as reader:
                    if index == 0:
                        writer.setparams(reader.getparams())
                    writer.writeframes(reader.readframes(reader.getnframes()))
    except (OSError, EOFError, wave.Error):  # a file changed under us: not served
        return None
    return out.getvalue()


class SequenceCache:
    """Joined sequences keyed by their files and the files' mtimes and sizes, so a clip made
    again is joined again; bounded in entries and bytes, least recently used out first."""

    def __init__(self, entries: int = CACHE_ENTRIES, size: int = CACHE_BYTES):
        self.entries = entries
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple, tuple[bytes, str, datetime]] = OrderedDict()
        self._bytes = 0

    def get(self, paths: list[Path]) -> tuple[bytes, str, datetime] | None:
        """(WAV bytes, ETag, Last-Modified) for the clips joined; None if they cannot be."""
        try:
            stats = [path.stat() for path in paths]
        except OSError:
            return None
        key = tuple((str(p), s.st_mtime_ns, s.st_size) for p, s in zip(paths, stats, strict=True))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = join_wavs(paths)
        if data is None:
            return None
        modified = datetime.fromtimestamp(max(s.st_mtime for s in stats), UTC)
        item = (data, hashlib.sha256(data).hexdigest()[:32], modified)
        with self._lock:
            if key not in self._items and len(data) <= self.size:
                self._items[key] = item
                self._bytes += len(data)
                while len(self._items) > self.entries or self._bytes > self.size:
                    _, (dropped, _, _) = self._items.popitem(last=False)
                    self._bytes -= len(dropped)
        return item


_sequences = SequenceCache()
