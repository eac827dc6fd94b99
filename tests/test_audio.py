"""Voice prompts for every language (issue 5 item 6): ``workervoice audio synth`` with the real
espeak-ng and sox, its bookkeeping (recordings never overwritten, generated audio never
committed), the /audio/ endpoints, and the ``flows lint`` warning for a prompt nobody could hear.

Synthesis runs once per module, for Swahili over the real flows (the language Twilio has no
voice for); each test that changes something works on its own copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import subprocess
import wave
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from babel.messages.pofile import read_po, write_po
from click.testing import CliRunner

from gateway import create_app
from gateway.audio import AudioLibrary, sequence_token
from gateway.audio_synth import GITIGNORE, MANIFEST, missing_tools, read_manifest
from gateway.cli import main
from gateway.engine.definition import load_flows
from gateway.i18n import Texts
from gateway.speech import Utterance, every_utterance

from .conftest import ROOT

FLOWS = ROOT / "flows"
PUBLIC_URL = "https://gateway.example.org"
needs_tools = pytest.mark.skipif(
    bool(missing_tools()),
    reason=f"{' and '.join(missing_tools())} not installed (apt-get install espeak-ng sox)",
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def copy_locales(target: Path) -> Path:
    """The shipped catalogs without any audio a developer may have synthesised."""
    shutil.copytree(ROOT / "locales", target, ignore=shutil.ignore_patterns("audio"))
    return target


class Tree:
    """A flows and a locales directory, and the app and CLI over them."""

    def __init__(self, config, flows: Path, locales: Path):
        self.flows = flows
        self.locales = locales
        self.config = dataclasses.replace(config, flows_dir=flows, locales_dir=locales)

    @property
    def audio(self) -> Path:
        return self.locales / "sw" / "audio"

    def app(self):
        return create_app(self.config)

    def synth(self, *args: str):
        result = self.app().test_cli_runner().invoke(main, ["audio", "synth", *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    def said(self, language: str = "sw") -> list[Utterance]:
        return every_utterance(load_flows(self.flows), Texts.load(self.locales), language)

    def copy(self, target: Path) -> Tree:
        shutil.copytree(self.flows, target / "flows")
        shutil.copytree(self.locales, target / "locales")
        return Tree(self.config, target / "flows", target / "locales")


@pytest.fixture(scope="module")
def synthesised(tmp_path_factory, base_config) -> Tree:
    """Swahili synthesised once over the real flows, into a copy of the shipped locales."""
    if missing_tools():
        pytest.skip(
            f"{' and '.join(missing_tools())} not installed (apt-get install espeak-ng sox)"
        )
    root = tmp_path_factory.mktemp("audio")
    shutil.copytree(FLOWS, root / "flows")
    tree = Tree(base_config, root / "flows", copy_locales(root / "locales"))
    said = tree.synth("sw")
    assert said == f"sw: {len(tree.said())} made, 0 kept (recorded), 0 unchanged\n"
    return tree


@pytest.fixture
def tree(synthesised, tmp_path) -> Tree:
    return synthesised.copy(tmp_path)


def tone(path: Path, seconds: float = 0.5, rate: int = 8000) -> bytes:
    """A human recording stand-in: a WAV of silence-and-ramp samples, written to ``path``."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(bytes(range(256)) * int(seconds * rate * 2 / 256))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    return out.getvalue()


# -- synthesis -----------------------------------------------------------------------------------
@needs_tools
def test_every_utterance_becomes_an_8_khz_mono_16_bit_wav(synthesised):
    said = synthesised.said()
    assert {s.clip for s in said} >= {"enrol/consent", "checkin/respect.yes", "checkin/_finish"}
    for item in said:
        with wave.open(str(synthesised.audio / f"{item.clip}.wav"), "rb") as reader:
            assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (
                8000,
                1,
                2,
            )
            assert reader.getcomptype() == "NONE"
            assert reader.getnframes() > 800, item  # at least a tenth of a second of speech


@needs_tools
def test_a_second_run_changes_nothing(tree):
    before = {p: p.stat().st_mtime_ns for p in tree.audio.rglob("*.wav")}
    assert tree.synth("sw") == f"sw: 0 made, 0 kept (recorded), {len(before)} unchanged\n"
    assert {p: p.stat().st_mtime_ns for p in tree.audio.rglob("*.wav")} == before


@needs_tools
def test_the_manifest_and_gitignore_list_what_was_generated(synthesised):
    said = {s.clip: s.text for s in synthesised.said()}
    manifest = read_manifest(synthesised.audio / MANIFEST)
    assert set(manifest) == set(said)
    for clip, entry in manifest.items():
        assert entry.origin == "generated"
        assert entry.text == said[clip]
        assert entry.text_sha == sha(said[clip].encode())
        assert entry.file_sha == sha((synthesised.audio / f"{clip}.wav").read_bytes())
    lines = (synthesised.audio / MANIFEST).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "clip\ttext_sha256\tfile_sha256\torigin\ttext"
    ignored = (synthesised.audio / GITIGNORE).read_text(encoding="utf-8").splitlines()
    assert ignored[0].startswith("#")
    assert sorted(ignored[1:]) == sorted(
        ["/.gitignore", "/MANIFEST.tsv", *(f"/{clip}.wav" for clip in said)]
    )


@needs_tools
def test_a_recording_is_never_overwritten_and_replaces_the_generated_file(tree):
    recording = tone(tree.audio / "checkin" / "respect.wav")
    mp3 = b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb" * 64  # a recording in .mp3
    (tree.audio / "enrol" / "consent.mp3").write_bytes(mp3)
    total = len(tree.said())
    assert tree.synth("sw") == f"sw: 0 made, 2 kept (recorded), {total - 2} unchanged\n"
    assert (tree.audio / "checkin" / "respect.wav").read_bytes() == recording
    assert not (tree.audio / "enrol" / "consent.wav").exists()  # the recording is played now
    assert (
        AudioLibrary(tree.locales).path("sw", "enrol/consent") == tree.audio / "enrol/consent.mp3"
    )
    manifest = read_manifest(tree.audio / MANIFEST)
    assert manifest["checkin/respect"].origin == "recorded"
    assert manifest["checkin/respect"].file_sha == sha(recording)
    assert manifest["enrol/consent"].origin == "recorded"
    ignored = (tree.audio / GITIGNORE).read_text(encoding="utf-8").splitlines()
    assert "/checkin/respect.wav" not in ignored
    assert "/checkin/respect.yes.wav" in ignored
    # and again: still kept, still the human's file
    assert tree.synth("sw") == f"sw: 0 made, 2 kept (recorded), {total - 2} unchanged\n"
    assert (tree.audio / "checkin" / "respect.wav").read_bytes() == recording


@needs_tools
def test_git_commits_recordings_and_never_generated_audio(tree):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    tone(tree.audio / "checkin" / "respect.wav")
    tree.synth("sw")
    subprocess.run(["git", "init", "-q", str(tree.locales)], check=True, timeout=30)
    shown = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "sw/audio"],
        cwd=tree.locales,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.splitlines()
    assert shown == ["?? sw/audio/checkin/respect.wav"]


def set_translation(locales: Path, language: str, msgid: str, text: str) -> None:
    path = locales / language / "LC_MESSAGES" / "flows.po"
    with path.open("rb") as handle:
        catalog = read_po(handle)
    catalog[msgid].string = text
    with path.open("wb") as handle:
        write_po(handle, catalog, width=0)


@needs_tools
def test_a_changed_text_is_made_again_but_a_recording_of_it_is_kept(tree):
    respect = load_flows(tree.flows)["checkin"].question("respect").ask
    fire = load_flows(tree.flows)["checkin"].question("fire_exits").ask
    recording = tone(tree.audio / "checkin" / "respect.wav")
    tree.synth("sw")
    old = (tree.audio / "checkin" / "fire_exits.wav").read_bytes()
    set_translation(tree.locales, "sw", fire, "Milango ya moto iko wazi?")
    set_translation(tree.locales, "sw", respect, "Msimamizi alikuheshimu wiki hii?")
    total = len(tree.said())
    assert tree.synth("sw") == (
        f"sw: 1 made, 1 kept (recorded), {total - 2} unchanged; "
        "recorded for an older text: checkin/respect\n"
    )
    new = (tree.audio / "checkin" / "fire_exits.wav").read_bytes()
    assert new != old
    entry = read_manifest(tree.audio / MANIFEST)["checkin/fire_exits"]
    assert (entry.text, entry.file_sha) == ("Milango ya moto iko wazi?", sha(new))
    assert (tree.audio / "checkin" / "respect.wav").read_bytes() == recording


@needs_tools
def test_a_clip_no_longer_said_is_removed_unless_recorded(tree):
    text = (tree.flows / "checkin.yaml").read_text(encoding="utf-8")
    start = text.index("  - id: respect")
    end = text.index("  - id: free_to_leave")
    (tree.flows / "checkin.yaml").write_text(text[:start] + text[end:], encoding="utf-8")
    recording = tone(tree.audio / "checkin" / "respect.yes.wav")  # over a generated file
    out = tree.synth("sw")
    assert out.endswith(", 2 removed\n"), out  # respect.wav and respect.no.wav
    assert not (tree.audio / "checkin" / "respect.wav").exists()
    assert not (tree.audio / "checkin" / "respect.no.wav").exists()
    assert (tree.audio / "checkin" / "respect.yes.wav").read_bytes() == recording
    manifest = read_manifest(tree.audio / MANIFEST)
    assert "checkin/respect" not in manifest
    assert manifest["checkin/respect.yes"].origin == "recorded"


@needs_tools
def test_a_text_starting_with_a_dash_is_spoken_not_taken_for_an_option(tree):
    consent = load_flows(tree.flows)["enrol"].question("consent").ask
    set_translation(tree.locales, "sw", consent, "--version -w /tmp/x.wav")
    out = tree.synth("sw")
    assert out.startswith("sw: 1 made"), out
    with wave.open(str(tree.audio / "enrol" / "consent.wav"), "rb") as reader:
        assert reader.getnframes() > 8000  # spoken, well over a second


def test_synth_without_espeak_ng_or_sox_is_one_line_and_exit_1(base_config, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = create_app(base_config).test_cli_runner().invoke(main, ["audio", "synth", "sw"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: espeak-ng and sox not installed (on Debian: apt-get install espeak-ng sox)"
    ]


@needs_tools
def test_synth_refuses_a_language_without_a_catalog(synthesised):
    result = synthesised.app().test_cli_runner().invoke(main, ["audio", "synth", "fr"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no flows catalog for 'fr' (languages: bn, en, ")


# -- serving -------------------------------------------------------------------------------------
@pytest.fixture
def client(tree):
    return tree.app().test_client()


@needs_tools
def test_a_clip_is_served_with_cache_headers(tree, client):
    response = client.get("/audio/sw/enrol/consent.wav")
    assert response.status_code == 200
    assert response.mimetype == "audio/wav"
    assert response.get_data() == (tree.audio / "enrol" / "consent.wav").read_bytes()
    assert response.cache_control.public
    assert response.cache_control.max_age == 86400
    assert response.headers["ETag"] and response.headers["Last-Modified"]
    again = client.get(
        "/audio/sw/enrol/consent.wav", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert again.status_code == 304
    assert again.get_data() == b""
    since = client.get(
        "/audio/sw/enrol/consent.wav",
        headers={"If-Modified-Since": response.headers["Last-Modified"]},
    )
    assert since.status_code == 304


@needs_tools
def test_an_mp3_recording_is_served_as_audio_mpeg(tree, client):
    (tree.audio / "enrol" / "consent.mp3").write_bytes(b"ID3\x03" + b"\xff\xfb" * 64)
    response = client.get("/audio/sw/enrol/consent.mp3")
    assert response.status_code == 200
    assert response.mimetype == "audio/mpeg"
    assert response.get_data().startswith(b"ID3")


@needs_tools
@pytest.mark.parametrize(
    "path",
    [
        "/audio/sw/enrol/nothing.wav",
        "/audio/xx/enrol/consent.wav",
        "/audio/sw/enrol/consent.ogg",
        "/audio/sw/enrol/consent",
        "/audio/sw/MANIFEST.tsv",
        "/audio/sw/.gitignore",
        "/audio/sw/../LC_MESSAGES/flows.po",
        "/audio/sw/../../sw/audio/enrol/consent.wav",
        "/audio/sw/%2e%2e/%2e%2e/bn/LC_MESSAGES/flows.wav",
        "/audio/sw/enrol/..%2f..%2f..%2fsecret.wav",
        "/audio/../sw/audio/enrol/consent.wav",
        "/audio/sw/enrol/consent%00.wav",
        "/audio/sw/outside.wav",  # a symbolic link out of the audio directory
        "/audio/sw/sequence/bm90aGluZw.wav",  # names a clip that does not exist
        "/audio/sw/sequence/%%%.wav",
        "/audio/sw/sequence/.wav",
    ],
)
def test_missing_or_outside_files_are_404_one_line(tree, client, path):
    (tree.locales / "secret.wav").write_bytes(b"RIFF secret")
    (tree.audio / "outside.wav").symlink_to(tree.locales / "secret.wav")
    response = client.get(path)
    assert response.status_code == 404, response.get_data()
    assert response.mimetype == "text/plain"
    assert len(response.get_data(as_text=True).splitlines()) == 1
    assert b"secret" not in response.get_data()


def frames(data: bytes) -> tuple[int, tuple]:
    with wave.open(io.BytesIO(data), "rb") as reader:
        params = (reader.getframerate(), reader.getnchannels(), reader.getsampwidth())
        return reader.getnframes(), params


@needs_tools
def test_a_sequence_is_its_clips_joined_and_cached(tree, client):
    clips = ["checkin/respect", "checkin/respect.yes", "checkin/respect.no"]
    said = [Utterance("", "sw", clip) for clip in clips]
    url = AudioLibrary(tree.locales, PUBLIC_URL).sequence_url(said)
    assert url == f"{PUBLIC_URL}/audio/sw/sequence/{sequence_token(clips)}.wav"
    path = urlsplit(url).path
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "audio/wav"
    expected = sum(frames((tree.audio / f"{c}.wav").read_bytes())[0] for c in clips)
    assert frames(response.get_data()) == (expected, (8000, 1, 2))
    assert response.cache_control.public and response.cache_control.max_age == 86400
    again = client.get(path, headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    # a clip recorded again is joined again (the cache is keyed by the files' mtimes)
    tone(tree.audio / "checkin" / "respect.yes.wav", seconds=2.0)
    joined = client.get(path)
    longer = sum(frames((tree.audio / f"{c}.wav").read_bytes())[0] for c in clips)
    assert frames(joined.get_data())[0] == longer != expected
    assert joined.headers["ETag"] != response.headers["ETag"]


@needs_tools
def test_a_sequence_may_mix_languages_as_a_language_menu_does(tree, client):
    """Each language of a menu in its own voice: a Swahili clip, then an English one."""
    tone(tree.locales / "en" / "audio" / "_service" / "press2.wav", seconds=0.25)
    said = [Utterance("", "sw", "enrol/language"), Utterance("", "en", "_service/press2")]
    url = AudioLibrary(tree.locales, PUBLIC_URL).sequence_url(said)
    assert url is not None and url.startswith(f"{PUBLIC_URL}/audio/sw/sequence/")
    response = client.get(urlsplit(url).path)
    assert response.status_code == 200
    parts = [tree.audio / "enrol" / "language.wav", tree.locales / "en/audio/_service/press2.wav"]
    assert frames(response.get_data())[0] == sum(frames(p.read_bytes())[0] for p in parts)
    # an entry of another language still cannot leave that language's audio directory
    escape = sequence_token(["enrol/language", "./../../sw/audio/enrol/consent"])
    assert client.get(f"/audio/sw/sequence/{escape}.wav").status_code == 404


@needs_tools
def test_a_sequence_of_clips_in_different_formats_is_not_offered_nor_served(tree, client):
    tone(tree.audio / "checkin" / "respect.yes.wav", rate=16000)
    clips = ["checkin/respect", "checkin/respect.yes"]
    library = AudioLibrary(tree.locales, PUBLIC_URL)
    assert library.sequence_url([Utterance("", "sw", c) for c in clips]) is None
    response = client.get(f"/audio/sw/sequence/{sequence_token(clips)}.wav")
    assert response.status_code == 404


# -- flows lint ----------------------------------------------------------------------------------
def lint_lines(flows: Path, locales: Path) -> list[str]:
    result = CliRunner().invoke(main, ["flows", "lint", str(flows), "--locales", str(locales)])
    assert result.exit_code == 0, result.output
    return [line for line in result.stdout.splitlines() if "no audio" in line]


def test_lint_warns_about_swahili_prompts_without_audio(tmp_path):
    locales = copy_locales(tmp_path / "locales")
    found = lint_lines(FLOWS, locales)
    flows = load_flows(FLOWS)
    consent = flows["enrol"].question("consent")
    assert (
        f"{FLOWS / 'enrol.yaml'}:{consent.line}: warning: the voice prompt for enrol.consent in "
        "sw: no audio and no Twilio voice for sw, 3 clip(s) missing (enrol/consent, "
        "enrol/consent.agree, enrol/consent.decline); record them or run "
        "'workervoice audio synth sw'"
    ) in found
    # bn, hi, ta, ms and en have Twilio voices: only Africa's Talking, English only, lacks them
    twilio_voiced = [line for line in found if " in sw: " not in line]
    assert [line.split(": warning: ")[0] for line in twilio_voiced] == [
        f"{locales / lang / 'LC_MESSAGES/flows.po'}:1" for lang in ("bn", "hi", "ms", "ta")
    ]
    assert all("so Africa's Talking callers" in line for line in twilio_voiced), twilio_voiced
    service = [line for line in found if "the service's voice phrases in sw" in line]
    assert len(service) == 1
    assert service[0].startswith(f"{ROOT / 'gateway/locale/sw/LC_MESSAGES/service.po'}:1: ")


def swahili(lines: list[str]) -> list[str]:
    return [line for line in lines if " in sw: " in line]


@needs_tools
def test_lint_is_silent_once_the_audio_exists(synthesised, tree):
    assert swahili(lint_lines(synthesised.flows, synthesised.locales)) == []
    (tree.audio / "checkin" / "respect.no.wav").unlink()
    line = tree.flows / "checkin.yaml", load_flows(tree.flows)["checkin"].question("respect").line
    assert swahili(lint_lines(tree.flows, tree.locales)) == [
        f"{line[0]}:{line[1]}: warning: the voice prompt for checkin.respect in sw: no audio and "
        "no Twilio voice for sw, 1 clip(s) missing (checkin/respect.no); record them or run "
        "'workervoice audio synth sw'"
    ]


def test_lint_says_which_prompts_africas_talking_callers_hear_in_english(tmp_path):
    """Africa's Talking speaks English only: Bangla prompts without clips are heard in English
    there (Twilio has a Bangla voice), one warning for the language until every clip exists."""
    locales = copy_locales(tmp_path / "locales")
    flows = load_flows(FLOWS)
    needed = every_utterance(flows, Texts.load(locales), "bn")

    def bangla() -> list[str]:
        return [line for line in lint_lines(FLOWS, locales) if " in bn: " in line]

    [line] = bangla()
    assert f"in bn: {len(needed)} of {len(needed)} voice prompts have no audio" in line
    for said in needed[1:]:
        tone(locales / "bn" / "audio" / f"{said.clip}.wav", seconds=0.1)
    [line] = bangla()
    assert f"in bn: 1 of {len(needed)} voice prompts have no audio" in line
    tone(locales / "bn" / "audio" / f"{needed[0].clip}.wav", seconds=0.1)
    assert bangla() == []
