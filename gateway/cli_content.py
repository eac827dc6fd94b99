"""``workervoice flows lint`` and ``workervoice audio synth``: what administrators edit (flow
files, catalogs, voice prompts), checked and rendered."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from babel.messages.catalog import Message
from babel.messages.pofile import PoFileError, read_po
from flask.cli import with_appcontext

from .audio import AudioLibrary, missing_audio, missing_for_africas_talking
from .cli import main, services
from .engine import words
from .engine.definition import Finding, FlowError, FlowSet, read_flows
from .engine.lint import Catalog, Entry, lint
from .i18n import SERVICE_LOCALES, CatalogError, Texts, read_domain


# -- flows ---------------------------------------------------------------------------------------
@main.group()
def flows() -> None:
    """Flow files."""


# No app context: lint is how an administrator finds out why the service refuses its flows.
@flows.command("lint", with_appcontext=False)
@click.argument(
    "directory_", metavar="[DIR]", required=False, type=click.Path(exists=True, file_okay=False)
)
@click.option(
    "--locales",
    type=click.Path(exists=True, file_okay=False),
    help="the flows' catalogs (default: WORKERVOICE_LOCALES_DIR, else locales/)",
)
@click.option("--strict", is_flag=True, help="treat warnings as errors")
def flows_lint(directory_, locales, strict) -> None:
    """Check every flow file (default: WORKERVOICE_FLOWS_DIR, else flows/) and its texts in
    every flows.po catalog; print each finding as file:line: message (a warning's message
    starts 'warning: '). Exit 1 on errors (on warnings too with --strict)."""
    root = Path(directory_ or os.environ.get("WORKERVOICE_FLOWS_DIR") or "flows")
    if not root.is_dir():
        raise click.ClickException(f"no flows directory {str(root)!r}")
    locales_dir = Path(locales or os.environ.get("WORKERVOICE_LOCALES_DIR") or "locales")
    findings, checked = lint_flows(root, locales_dir)
    for finding in findings:
        click.echo(
            f"{finding.file}:{finding.line}: warning: {finding.message}"
            if finding.warning
            else str(finding)
        )
    errors = [f for f in findings if not f.warning or strict]
    click.echo(f"{checked} flow file(s) checked, {len(findings)} finding(s)", err=True)
    sys.exit(1 if errors else 0)


def lint_flows(root: Path, locales_dir: Path) -> tuple[list[Finding], int]:
    """Every finding for the flow files in ``root`` and the number of files read: the
    errors the service would refuse the set for (a catalog that does not read included), then,
    when there are none, the content warnings against the catalogs in ``locales_dir``."""
    flows, findings = read_flows(root)
    catalogs, unreadable = read_flow_catalogs(locales_dir)
    findings += unreadable
    if not any(not f.warning for f in findings):
        findings += lint(flows, catalogs, page_labels())
        findings += voice_findings(FlowSet(flows=flows), locales_dir)
    return findings, len(list(root.glob("*.yaml")))


def page_labels() -> dict[str, tuple[str, str]]:
    """The USSD paging labels (More, Back) in each language of the service's own catalog, so
    lint measures the pages workers see."""
    return {
        language: (
            catalog.get(words.PAGE_NEXT, words.PAGE_NEXT),
            catalog.get(words.PAGE_BACK, words.PAGE_BACK),
        )
        for language, catalog in read_domain(SERVICE_LOCALES, "service").items()
    }


def read_flow_catalogs(locales_dir: Path) -> tuple[dict[str, Catalog], list[Finding]]:
    """Each language's ``<lang>/LC_MESSAGES/flows.po`` under ``locales_dir`` (none when it is
    not a directory), with a finding for each one that does not read."""
    catalogs: dict[str, Catalog] = {}
    findings: list[Finding] = []
    for path in sorted(locales_dir.glob("*/LC_MESSAGES/flows.po")):
        try:
            with path.open("rb") as handle:
                po = read_po(handle, abort_invalid=True)
        except UnicodeDecodeError as exc:
            findings.append(Finding(str(path), 1, f"not UTF-8 text (byte {exc.start})"))
            continue
        except PoFileError as exc:
            line = getattr(exc, "lineno", None) or 1
            findings.append(Finding(str(path), line, f"cannot read catalog: {exc}"))
            continue
        except (OSError, ValueError) as exc:
            findings.append(Finding(str(path), 1, f"cannot read catalog: {exc}"))
            continue
        entries = {m.id: _entry(m) for m in po if isinstance(m.id, str) and m.id}
        for message in po.obsolete.values():
            if isinstance(message.id, str) and message.id:
                entries.setdefault(message.id, _entry(message, obsolete=True))
        catalogs[path.parent.parent.name] = Catalog(str(path), entries)
    return catalogs, findings


def _entry(message: Message, obsolete: bool = False) -> Entry:
    string = message.string if isinstance(message.string, str) else ""
    return Entry(string, message.lineno or 1, fuzzy=message.fuzzy, obsolete=obsolete)


def voice_findings(flows: FlowSet, locales_dir: Path) -> list[Finding]:
    """A warning for each voice prompt a caller could not hear: no provider voice for the
    language and no clip under ``locales_dir`` (gateway/audio.py); an error for a catalog the
    service would refuse."""
    try:
        texts = Texts.load(locales_dir)
    except CatalogError as exc:
        file, _, reason = str(exc).partition(": ")
        return [Finding(file, 1, reason)]
    library = AudioLibrary(locales_dir)
    clips = {code: library.clips(code) for code in texts.languages()}
    flows_po = lambda language: str(locales_dir / language / "LC_MESSAGES" / "flows.po")  # noqa: E731
    return missing_audio(flows, texts, clips) + missing_for_africas_talking(
        flows, texts, clips, flows_po
    )


# -- audio ---------------------------------------------------------------------------------------
@main.group()
def audio() -> None:
    """Voice prompts: recorded and synthesised audio."""


@audio.command("synth")
@click.argument("language", metavar="[LANG]", required=False)
@with_appcontext
def audio_synth(language) -> None:
    """Render every prompt, option phrase and service text of LANG (default: every language)
    to 8 kHz mono WAV under locales/<lang>/audio/ with espeak-ng and sox. Recordings there are
    kept, never overwritten; MANIFEST.tsv and .gitignore say which files are generated."""
    from .audio_synth import INSTALL_HINT, SynthError, missing_tools, synth_languages

    missing = missing_tools()
    if missing:
        raise click.ClickException(f"{' and '.join(missing)} not installed ({INSTALL_HINT})")
    try:
        flow_set, texts = services().registry.current()
    except (FlowError, CatalogError) as exc:
        raise click.ClickException(
            f"flows or catalogs refused: {str(exc).splitlines()[0]} (see 'workervoice flows lint')"
        ) from None
    try:
        for line in synth_languages(flow_set, texts, services().audio, language):
            click.echo(line)
    except SynthError as exc:
        raise click.ClickException(str(exc)) from None
