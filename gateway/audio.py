"""Recorded and synthesised voice prompts: where they are, and the URLs providers fetch them at.

A clip (gateway/speech.py names them) is a file under ``locales/<lang>/audio/``: ``<clip>.wav``
or ``<clip>.mp3`` (SPEC §5). A voice adapter plays a clip with ``<Play>`` whenever one exists, in
preference to text-to-speech, and falls back to ``<Say>`` where the provider has a voice for the
language. The app serves the files at stable URLs under ``/audio/`` (gateway/audio_routes.py);
``workervoice audio synth`` fills the directories (gateway/audio_synth.py); ``flows lint`` warns
about a prompt a caller could not hear (``missing_audio``).
"""

from __future__ import annotations

import base64
import binascii
import wave
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

from .engine.model import TEXT, Finding, FlowSet
from .engine.texts import Texts
from .engine.voices import AT_TTS_LANGUAGES, TWILIO_TTS_LANGUAGES
from .i18n import SERVICE_LOCALES
from .speech import FINISH_CLIP, SERVICE_CLIPS, Utterance, every_utterance

AUDIO_DIR = "audio"
EXTENSIONS = (".wav", ".mp3")  # .wav first: Twilio advises low-bitrate wav inside <Gather>
URL_PREFIX = "/audio"
SEQUENCE = "sequence"  # /audio/<lang>/sequence/<token>.wav: several clips played as one
MAX_SEQUENCE_CLIPS = 32  # a turn says a prompt and at most a dozen options: more is not ours
MAX_TOKEN = 8192  # characters of a sequence token we decode at all
SHOWN_CLIPS = 3  # clip names quoted in a lint warning


class AudioLibrary:
    """The clips under a locales directory, and their public URLs."""

    def __init__(self, locales_dir: Path, public_url: str = ""):
        self.locales_dir = locales_dir
        self.public_url = public_url.rstrip("/")

    def root(self, language: str) -> Path:
        return self.locales_dir / language / AUDIO_DIR

    def path(self, language: str, clip: str) -> Path | None:
        """The file recorded or synthesised for the clip, if there is one."""
        for extension in EXTENSIONS:
            found = self.file(language, f"{clip}{extension}")
            if found is not None:
                return found
        return None

    def file(self, language: str, name: str) -> Path | None:
        """The audio file ``name`` (a clip with its extension) of a language, if it exists inside
        the language's audio directory: nothing else (no manifest, no path out of it)."""
        clip, dot, extension = name.rpartition(".")
        if not dot or f".{extension}" not in EXTENSIONS or not _safe(language):
            return None
        if not safe_clip(clip):
            return None
        root = self.root(language)
        candidate = root / name
        try:
            if not candidate.is_file():
                return None
            inside = candidate.resolve().is_relative_to(root.resolve())
        except (OSError, ValueError):
            return None
        return candidate if inside else None

    def clips(self, language: str) -> set[str]:
        """The name of every clip the language has a file for (what ``path`` would find)."""
        root = self.root(language)
        if not _safe(language) or not root.is_dir():
            return set()
        found = set()
        for candidate in root.rglob("*"):
            if candidate.suffix in EXTENSIONS:
                clip = candidate.relative_to(root).with_suffix("").as_posix()
                if self.file(language, f"{clip}{candidate.suffix}") is not None:
                    found.add(clip)
        return found

    def url(self, said: Utterance) -> str | None:
        """Where a provider fetches the utterance's clip; None when it has none."""
        found = self.path(said.language, said.clip)
        if found is None:
            return None
        return f"{self.public_url}{URL_PREFIX}/{said.language}/{said.clip}{found.suffix}"

    def sequence_url(self, said: Sequence[Utterance]) -> str | None:
        """One URL playing several clips in order (Africa's Talking nests a single <Play> in
        <GetDigits>); None unless every utterance has a .wav clip, all of one format (they are
        joined into one file: gateway/audio_routes.py). The clips may be of several languages
        (a language menu speaks each language in its own voice): the URL names the first
        language, and an entry of another language is written ``.<lang>/<clip>`` (no clip name
        starts with a dot, so the two cannot be confused)."""
        if not said or len(said) > MAX_SEQUENCE_CLIPS:
            return None
        paths = [self.path(s.language, s.clip) for s in said]
        if any(p is None or p.suffix != ".wav" for p in paths):
            return None
        formats = {wav_format(p) for p in paths if p is not None}
        if None in formats or len(formats) != 1:
            return None
        first = said[0].language
        entries = [s.clip if s.language == first else f".{s.language}/{s.clip}" for s in said]
        token = sequence_token(entries)
        return f"{self.public_url}{URL_PREFIX}/{first}/{SEQUENCE}/{token}.wav"

    def sequence(self, language: str, token: str) -> list[Path] | None:
        """The .wav files a sequence token names, in order; None if it names anything else."""
        entries = sequence_clips(token)
        if entries is None:
            return None
        paths = []
        for entry in entries:
            lang, clip = language, entry
            if entry.startswith("."):
                lang, _, clip = entry[1:].partition("/")
            paths.append(self.file(lang, f"{clip}.wav") if _safe(lang) else None)
        if any(p is None for p in paths):
            return None
        return [p for p in paths if p is not None]


def sequence_token(clips: Sequence[str]) -> str:
    """The URL-safe token naming clips in order (base64 of their names, one a line)."""
    return base64.urlsafe_b64encode("\n".join(clips).encode()).decode().rstrip("=")


def sequence_clips(token: str) -> list[str] | None:
    """The clips a token names; None unless it is exactly what ``sequence_token`` writes."""
    if not token or len(token) > MAX_TOKEN:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        clips = raw.decode("utf-8").split("\n")
    except (ValueError, binascii.Error):  # UnicodeDecodeError is a ValueError
        return None
    if len(clips) > MAX_SEQUENCE_CLIPS or sequence_token(clips) != token:
        return None
    return clips


def wav_format(path: Path) -> tuple[int, int, int, str] | None:
    """A WAV file's (channels, sample width, frame rate, compression); None if unreadable."""
    try:
        with wave.open(str(path), "rb") as reader:
            return (
                reader.getnchannels(),
                reader.getsampwidth(),
                reader.getframerate(),
                reader.getcomptype(),
            )
    except (OSError, EOFError, wave.Error):
        return None


def safe_clip(clip: str) -> bool:
    """Whether a clip name stays a file under the audio directory (question ids are free text)."""
    return bool(clip) and all(_safe(part) for part in clip.split("/"))


def _safe(part: str) -> bool:
    """A path part we may join under the audio directory (no '..', no separators, no hidden
    file such as a half-written clip)."""
    return (
        bool(part)
        and not part.startswith(".")
        and "\\" not in part
        and "/" not in part
        and "\0" not in part
    )


# -- flows lint: prompts a caller could not hear ------------------------------------------------


def missing_audio(
    flows: FlowSet,
    texts: Texts,
    clips: Mapping[str, AbstractSet[str]],
    voiced: AbstractSet[str] = TWILIO_TTS_LANGUAGES,
) -> list[Finding]:
    """A warning for each prompt that, in a language with no text-to-speech voice, has no clip:
    at the question's line (its prompt, its "press N for" options), at a flow's finish, and once
    per language for the service's own phrases. ``clips`` is the set of clip names on disk per
    language (``AudioLibrary.clips``); the clips needed are those ``every_utterance`` lists."""
    findings: list[Finding] = []
    for language in texts.languages():
        if language in voiced:
            continue
        have = clips.get(language, set())
        missing: dict[tuple[str, str], list[str]] = {}
        for said in every_utterance(flows, texts, language):
            if said.clip not in have:
                missing.setdefault(_owner(said.clip), []).append(said.clip)
        for (flow_id, part), names in missing.items():
            findings.extend(_missing(flows, language, flow_id, part, names))
    return sorted(findings, key=lambda f: (f.file, f.line))


def missing_for_africas_talking(
    flows: FlowSet,
    texts: Texts,
    clips: Mapping[str, AbstractSet[str]],
    where: Callable[[str], str],
) -> list[Finding]:
    """One warning per language that Twilio can speak but Africa's Talking cannot (its <Say>
    is English only), for the prompts that have no clip: AT callers hear those in English.
    ``where`` gives the file a language's finding points at (its flows.po)."""
    findings = []
    for language in texts.languages():
        if language in AT_TTS_LANGUAGES or language not in TWILIO_TTS_LANGUAGES:
            continue  # English is said; a language with no voice at all is warned per question
        needed = every_utterance(flows, texts, language)
        missing = [s for s in needed if s.clip not in clips.get(language, set())]
        if missing:
            findings.append(
                Finding(
                    where(language),
                    1,
                    f"in {language}: {len(missing)} of {len(needed)} voice prompts have no "
                    "audio, so Africa's Talking callers (whose <Say> is English only) hear them "
                    f"in English; record them or run 'workervoice audio synth {language}'",
                    warning=True,
                )
            )
    return findings


def _owner(clip: str) -> tuple[str, str]:
    """What a clip belongs to, by gateway/speech.py's naming: (flow, question or _finish), or
    (_service, "") for the service's phrases."""
    head, _, rest = clip.partition("/")
    if head == SERVICE_CLIPS:
        return SERVICE_CLIPS, ""
    return head, rest if rest == FINISH_CLIP else rest.split(".", 1)[0]


def _missing(
    flows: FlowSet, language: str, flow_id: str, part: str, names: list[str]
) -> Iterator[Finding]:
    shown = ", ".join(names[:SHOWN_CLIPS]) + (", ..." if len(names) > SHOWN_CLIPS else "")
    problem = (
        f"in {language}: no audio and no Twilio voice for {language}, {len(names)} clip(s) "
        f"missing ({shown}); record them or run 'workervoice audio synth {language}'"
    )
    if flow_id == SERVICE_CLIPS:
        catalog = SERVICE_LOCALES / language / "LC_MESSAGES" / "service.po"
        where = str(catalog) if catalog.is_file() else flows.enrol.path
        yield Finding(where, 1, f"the service's voice phrases {problem}", True)
        return
    flow = flows.flows.get(flow_id)
    if flow is None:
        return
    if part == FINISH_CLIP:
        message = f"the voice finish of {flow_id} {problem}"
        yield Finding(flow.path, flow.finish_line, message, True)
        return
    question = next((q for q in flow.questions if q.id == part), None)
    if question is not None and question.type != TEXT:  # voice never asks a text question
        message = f"the voice prompt for {flow_id}.{part} {problem}"
        yield Finding(flow.path, question.line, message, True)
