"""``workervoice audio synth``: every prompt of a language rendered to telephone-quality WAV.

espeak-ng speaks each utterance ``gateway.speech.every_utterance`` lists into a temporary WAV;
sox turns it into 8 kHz mono 16-bit PCM at ``locales/<lang>/audio/<clip>.wav``. So voice works in
every shipped language, Swahili included, for which Twilio has no voice.

A human recording replaces a generated file one by one and is never overwritten. The directory's
``MANIFEST.tsv`` remembers, per clip, the SHA-256 of the text and of the file synth last wrote:
a file whose content differs from that (or that synth never wrote) is a recording. A generated
file whose text changed is made again; one no longer needed is removed. The directory's
``.gitignore`` lists every generated file (and the bookkeeping), so recordings are committed and
generated audio never is. A recording saved over a generated file is still listed there until
synth runs again: run it after recording, before committing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .audio import AudioLibrary, safe_clip
from .engine.model import FlowSet
from .engine.texts import Texts
from .speech import Utterance, every_utterance

# espeak-ng's voice per language (espeak-ng --voices): one entry per shipped language.
VOICES = {"bn": "bn", "en": "en", "hi": "hi", "ms": "ms", "sw": "sw", "ta": "ta"}
TOOLS = ("espeak-ng", "sox")
INSTALL_HINT = "on Debian: apt-get install espeak-ng sox"
SAMPLE_RATE = 8000  # telephone quality: what the phone network carries anyway
TIMEOUT_SECONDS = 60  # per subprocess; a prompt takes espeak-ng well under a second
MANIFEST = "MANIFEST.tsv"
GITIGNORE = ".gitignore"
GENERATED, RECORDED = "generated", "recorded"
HEADER = "clip\ttext_sha256\tfile_sha256\torigin\ttext"
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


class SynthError(Exception):
    """Synthesis could not run or failed; the message is one line for the operator."""


@dataclass(frozen=True)
class Entry:
    """One line of MANIFEST.tsv: a clip, the text it says, the file's hash and who made it."""

    clip: str
    text_sha: str
    file_sha: str
    origin: str  # GENERATED or RECORDED
    text: str


@dataclass
class Tally:
    """What one run did for a language."""

    made: int = 0
    kept: int = 0  # recordings, left as they are
    unchanged: int = 0
    removed: int = 0
    stale: list[str] = field(default_factory=list)  # recordings of a text that changed since

    def line(self, language: str) -> str:
        line = (
            f"{language}: {self.made} made, {self.kept} kept (recorded), {self.unchanged} unchanged"
        )
        if self.removed:
            line += f", {self.removed} removed"
        if self.stale:
            line += f"; recorded for an older text: {', '.join(sorted(self.stale))}"
        return line


def missing_tools() -> list[str]:
    """The programs synthesis needs that are not on PATH."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def synth_languages(
    flows: FlowSet, texts: Texts, library: AudioLibrary, language: str | None = None
) -> Iterator[str]:
    """Synthesise one language (None: every language a worker may choose), a line each."""
    available = texts.languages()
    if language is not None and language not in available:
        raise SynthError(f"no flows catalog for {language!r} (languages: {', '.join(available)})")
    chosen = [language] if language is not None else available
    unvoiced = [code for code in chosen if code not in VOICES]
    if unvoiced:
        raise SynthError(
            f"no espeak-ng voice for {', '.join(unvoiced)}: add one to VOICES in {__name__}"
        )
    for code in chosen:
        yield synth(library.root(code), code, every_utterance(flows, texts, code)).line(code)


def synth(root: Path, language: str, said: Iterable[Utterance]) -> Tally:
    """Bring ``root`` (a language's audio directory) up to date with the utterances: make what
    is missing or stale, keep every recording, remove generated clips no longer said."""
    voice = VOICES.get(language)
    if voice is None:
        raise SynthError(f"no espeak-ng voice for {language!r}: add one to VOICES in {__name__}")
    needed = {item.clip: item for item in said if item.text.strip()}
    unsafe = sorted(clip for clip in needed if not safe_clip(clip))
    if unsafe:
        raise SynthError(f"clip {unsafe[0]!r} is not a file name: rename its flow or question")
    old = read_manifest(root / MANIFEST)
    done: dict[str, Entry] = {}
    tally = Tally()
    complete = False
    try:
        for clip, item in needed.items():
            done[clip] = _update(root, item, old.get(clip), voice, tally)
        for clip, entry in old.items():
            if clip not in needed and (kept := _retire(root, entry, tally)) is not None:
                done[clip] = kept
        complete = True
    finally:  # what was written so far is remembered, so it is never taken for a recording
        entries = done if complete else {**old, **done}
        if entries or root.is_dir():
            write_manifest(root, entries.values())
    return tally


def _update(root: Path, item: Utterance, entry: Entry | None, voice: str, tally: Tally) -> Entry:
    """One needed clip: kept if recorded, left if generated for this text, else made."""
    text_sha = sha256(item.text.encode())
    wav, mp3 = root / f"{item.clip}.wav", root / f"{item.clip}.mp3"
    generated = (
        entry is not None
        and entry.origin == GENERATED
        and wav.is_file()
        and file_sha(wav) == entry.file_sha
    )
    recording = mp3 if mp3.is_file() else wav if wav.is_file() and not generated else None
    if recording is not None:
        if generated:
            wav.unlink()  # an .mp3 recording replaces the generated .wav (which players prefer)
        tally.kept += 1
        digest = file_sha(recording)
        if entry is not None and entry.origin == RECORDED and entry.file_sha == digest:
            if entry.text_sha != text_sha:
                tally.stale.append(item.clip)
            return entry
        return Entry(item.clip, text_sha, digest, RECORDED, item.text)
    if generated and entry is not None and entry.text_sha == text_sha:
        tally.unchanged += 1
        return entry
    digest = render(item.text, voice, wav)
    tally.made += 1
    return Entry(item.clip, text_sha, digest, GENERATED, item.text)


def _retire(root: Path, entry: Entry, tally: Tally) -> Entry | None:
    """A clip no longer said: its generated file goes; a recording stays (and stays listed)."""
    wav, mp3 = root / f"{entry.clip}.wav", root / f"{entry.clip}.mp3"
    if entry.origin == GENERATED:
        if not wav.is_file():
            return None
        digest = file_sha(wav)
        if digest != entry.file_sha:  # replaced by a recording since synth wrote it
            return Entry(entry.clip, entry.text_sha, digest, RECORDED, entry.text)
        wav.unlink()
        _prune(wav.parent, root)
        tally.removed += 1
        return None
    recording = mp3 if mp3.is_file() else wav if wav.is_file() else None
    if recording is None:
        return None
    return Entry(entry.clip, entry.text_sha, file_sha(recording), RECORDED, entry.text)


def _prune(directory: Path, root: Path) -> None:
    """Remove directories left empty under root, from ``directory`` up."""
    while directory != root and directory.is_relative_to(root):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


# -- rendering ------------------------------------------------------------------------------------


def render(text: str, voice: str, target: Path) -> str:
    """Speak ``text`` with espeak-ng's ``voice`` into ``target`` as 8 kHz mono 16-bit PCM WAV,
    replacing it atomically (a provider may be fetching it); the new file's SHA-256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.tmp")  # hidden: never served, never a clip
    with tempfile.TemporaryDirectory(prefix="workervoice-synth-") as scratch:
        spoken = Path(scratch) / "espeak.wav"
        # The text goes on stdin, never in argv: a prompt may start with '-'.
        _run(["espeak-ng", "-v", voice, "-b", "1", "--stdin", "-w", str(spoken)], text.encode())
        try:
            _run(
                ["sox", "-V1", str(spoken), "-t", "wav", "-r", str(SAMPLE_RATE), "-c", "1"]
                + ["-b", "16", "-e", "signed-integer", str(partial)]
            )
            digest = file_sha(partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return digest


def _run(command: list[str], stdin: bytes = b"") -> None:
    try:
        subprocess.run(
            command, input=stdin, capture_output=True, timeout=TIMEOUT_SECONDS, check=True
        )
    except FileNotFoundError:
        raise SynthError(f"{command[0]} is not installed ({INSTALL_HINT})") from None
    except subprocess.TimeoutExpired:
        raise SynthError(f"{command[0]} took over {TIMEOUT_SECONDS} s") from None
    except subprocess.CalledProcessError as exc:
        said = exc.stderr.decode(errors="replace").strip().splitlines()
        reason = said[-1] if said else f"exit status {exc.returncode}"
        raise SynthError(f"{command[0]} failed: {reason}") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha(path: Path) -> str:
    return sha256(path.read_bytes())


# -- bookkeeping ----------------------------------------------------------------------------------


def read_manifest(path: Path) -> dict[str, Entry]:
    """The manifest's entries by clip; a line that does not parse is left out, so its file
    counts as a recording (the safe side: never overwritten)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    entries: dict[str, Entry] = {}
    for line in lines:
        fields = line.split("\t")
        if line == HEADER or len(fields) != 5 or fields[3] not in (GENERATED, RECORDED):
            continue
        clip, text_sha, digest, origin, text = fields
        entries[clip] = Entry(clip, text_sha, digest, origin, _unescape(text))
    return entries


def write_manifest(root: Path, entries: Iterable[Entry]) -> None:
    """MANIFEST.tsv and .gitignore, both replaced atomically."""
    ordered = sorted(entries, key=lambda e: e.clip)
    rows = [f"{e.clip}\t{e.text_sha}\t{e.file_sha}\t{e.origin}\t{_escape(e.text)}" for e in ordered]
    _write(root / MANIFEST, "\n".join([HEADER, *rows]) + "\n")
    ignored = [f"/{GITIGNORE}", f"/{MANIFEST}"]
    ignored += [_ignore_pattern(f"{e.clip}.wav") for e in ordered if e.origin == GENERATED]
    comment = "# Written by 'workervoice audio synth': generated audio is never committed."
    _write(root / GITIGNORE, "\n".join([comment, *ignored]) + "\n")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _ignore_pattern(name: str) -> str:
    """A .gitignore line matching exactly this file under the directory."""
    escaped = "".join(f"\\{c}" if c in "\\*?[]!#" else c for c in name)
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return f"/{escaped}"


def _escape(text: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in text)


def _unescape(text: str) -> str:
    out, chars = [], iter(text)
    for c in chars:
        if c == "\\":
            following = next(chars, "")
            out.append({"t": "\t", "n": "\n", "r": "\r"}.get(following, following))
        else:
            out.append(c)
    return "".join(out)
