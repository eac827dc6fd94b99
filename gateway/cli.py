"""The ``workervoice`` command line (SPEC §8). Every command builds the app through the factory."""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import phonenumbers
from babel import Locale, UnknownLocaleError
from babel.messages.catalog import Message
from babel.messages.pofile import PoFileError, read_po
from croniter import croniter
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from store import directory
from store.models import ApiToken, Brand, Workplace

from .audio import AudioLibrary, missing_audio
from .engine import words
from .engine.definition import Finding, FlowError, FlowSet, read_flows
from .engine.lint import Catalog, Entry, lint
from .i18n import SERVICE_LOCALES, CatalogError, Texts, read_domain
from .services import Services, current
from .timezones import zone_for_country


def _create_app():
    from . import create_app

    # A bad configuration exits with one line. Flows load only where a command needs them, so
    # an administrator can still migrate, grant or revoke while a flow file is being fixed.
    return create_app(load_flows=False)


@click.group(
    cls=FlaskGroup,
    create_app=_create_app,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
)
def main() -> None:
    """WorkerVoice gateway administration."""


def services() -> Services:
    return current()


def check_slug(_ctx, _param, value: str) -> str:
    if not directory.SLUG.fullmatch(value):
        raise click.BadParameter("use 2-63 lowercase letters, digits and dashes")
    return value


def check_name(_ctx, _param, value: str) -> str:
    value = value.strip()
    if not value or len(value) > directory.NAME_MAX:
        raise click.BadParameter(f"give 1 to {directory.NAME_MAX} characters")
    return value


def check_zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory like 'America'
        raise click.BadParameter(f"unknown time zone {value!r}", param_hint="--timezone") from None
    return value


def check_language(value: str, hint: str) -> str:
    """A language code Babel knows (``bn``, ``pt_BR``), as given."""
    try:
        Locale.parse(value.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        raise click.BadParameter(f"unknown language {value!r}", param_hint=hint) from None
    return value


# -- db ------------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@with_appcontext
def db_upgrade() -> None:
    """Run migrations to the newest schema and make sure the key ring has a current key."""
    services().db.upgrade()
    services().ensure_key_ring()
    click.echo("database is up to date")


# -- workplaces and brands -------------------------------------------------------------------
@main.group()
def workplace() -> None:
    """Workplaces."""


@workplace.command("add")
@click.argument("slug", callback=check_slug)
@click.option("--name", required=True, callback=check_name)
@click.option("--country", required=True, help="ISO 3166 code, e.g. BD")
@click.option("--code", required=True, help="4-8 digits workers type to enrol")
@click.option("--timezone", help="IANA zone; default: the country's main zone")
@click.option("--languages", default="", help="comma-separated, e.g. bn,en")
@with_appcontext
def workplace_add(slug, name, country, code, timezone, languages) -> None:
    """Add a workplace and print its token (shown once)."""
    country = country.upper()
    if country not in phonenumbers.SUPPORTED_REGIONS:
        raise click.BadParameter(f"unknown country {country!r}", param_hint="--country")
    if not (code.isascii() and code.isdigit() and 4 <= len(code) <= 8):
        raise click.BadParameter("must be 4 to 8 digits", param_hint="--code")
    zone = check_zone(timezone) or zone_for_country(country)
    langs = [
        check_language(part.strip(), "--languages") for part in languages.split(",") if part.strip()
    ]
    try:
        with services().db.session() as session:
            _, token = directory.add_workplace(
                session, slug, name=name, country=country, code=code, timezone=zone, languages=langs
            )
    except directory.DirectoryError as exc:
        raise click.ClickException(str(exc)) from None
    except IntegrityError:
        raise click.ClickException("a workplace with that slug or code already exists") from None
    click.echo(f"workplace {slug} added ({country}, {zone})")
    click.echo(f"token: {token}")


def check_callback_number(value: str | None) -> str | None:
    """A number in E.164 form (``+8801711000000``) that phonenumbers finds valid; "" as given
    (it removes the number)."""
    if not value:
        return value
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        number = None
    if (
        number is None
        or phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) != value
        or not phonenumbers.is_valid_number(number)
    ):
        raise click.BadParameter(
            "not a valid number in E.164 form like +8801711000000", param_hint="--callback-number"
        )
    return value


@workplace.command("set")
@click.argument("slug", callback=check_slug)
@click.option("--callback-number", help='E.164 number workers ring for a callback; "" removes it')
@click.option("--timezone", help="IANA zone")
@click.option("--languages", help="comma-separated, e.g. bn,en")
@with_appcontext
def workplace_set(slug, callback_number, timezone, languages) -> None:
    """Change a workplace's callback number, time zone or languages."""
    if callback_number is None and timezone is None and languages is None:
        raise click.UsageError(
            "nothing to change: give --callback-number, --timezone or --languages"
        )
    number = check_callback_number(callback_number)
    zone = check_zone(timezone)
    langs = None
    if languages is not None:
        parts = [part.strip() for part in languages.split(",") if part.strip()]
        langs = [check_language(part, "--languages") for part in parts]
    try:
        with services().db.session() as session:
            place = directory.set_workplace(
                session, slug, callback_number=number, timezone=zone, languages=langs
            )
            shown = (place.callback_number or "none", place.timezone, place.languages)
    except directory.DirectoryError as exc:
        raise click.ClickException(str(exc)) from None
    except IntegrityError:
        raise click.ClickException("another workplace already uses that callback number") from None
    click.echo(
        f"workplace {slug}: callback number {shown[0]}, time zone {shown[1]}, "
        f"languages {', '.join(shown[2]) or 'none'}"
    )


@main.group()
def brand() -> None:
    """Brands."""


@brand.command("add")
@click.argument("slug", callback=check_slug)
@click.option("--name", required=True, callback=check_name)
@click.option("--email", required=True)
@click.option("--locale", default="en")
@click.option("--schedule", help="cron expression for digests, e.g. '0 8 * * 1'")
@click.option("--timezone", default="UTC")
@with_appcontext
def brand_add(slug, name, email, locale, schedule, timezone) -> None:
    """Add a brand and print its token (shown once)."""
    if len(email) > directory.EMAIL_MAX or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        raise click.BadParameter("not an email address", param_hint="--email")
    if schedule is not None and (len(schedule.split()) != 5 or not croniter.is_valid(schedule)):
        raise click.BadParameter(
            "not a five-field cron expression like '0 8 * * 1'", param_hint="--schedule"
        )
    check_language(locale, "--locale")
    check_zone(timezone)
    try:
        with services().db.session() as session:
            _, token = directory.add_brand(
                session,
                slug,
                name=name,
                email=email,
                locale=locale,
                schedule=schedule,
                timezone=timezone,
            )
    except directory.DirectoryError as exc:
        raise click.ClickException(str(exc)) from None
    except IntegrityError:
        raise click.ClickException("a brand with that slug already exists") from None
    click.echo(f"brand {slug} added")
    click.echo(f"token: {token}")


@main.command()
@click.argument("workplace_slug")
@click.argument("brand_slug")
@with_appcontext
def grant(workplace_slug, brand_slug) -> None:
    """Let a brand see a workplace's figures."""
    try:
        with services().db.session() as session:
            changed = directory.grant(session, workplace_slug, brand_slug)
    except directory.DirectoryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{brand_slug} {'may now see' if changed else 'could already see'} {workplace_slug}")


@main.command()
@click.argument("workplace_slug")
@click.argument("brand_slug")
@with_appcontext
def revoke(workplace_slug, brand_slug) -> None:
    """Stop a brand seeing a workplace's figures."""
    try:
        with services().db.session() as session:
            changed = directory.revoke(session, workplace_slug, brand_slug)
    except directory.DirectoryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"{brand_slug} {'may no longer see' if changed else 'could not see'} {workplace_slug}"
    )


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
    return missing_audio(flows, texts, {code: library.clips(code) for code in texts.languages()})


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


# -- processes -------------------------------------------------------------------------------
@main.command()
@click.option("--burst", is_flag=True, help="exit when the queue is empty")
@with_appcontext
def worker(burst) -> None:
    """Run an RQ worker for the queue (the Procfile's worker process)."""
    from rq import SimpleWorker

    from .services import QUEUE_NAME

    svc = services()
    if svc.config.embedded_redis:
        raise click.ClickException(
            "REDIS_URL is not set: the embedded default runs jobs in the "
            "web process, no separate worker is needed"
        )
    # The scheduler moves retried jobs (tasks.PERSIST_RETRY, outbound.SEND_RETRY) back when due.
    # A readable name (rq's default is a uuid, whose digit runs log redaction would blank).
    name = f"workervoice.{socket.gethostname()}.{os.getpid()}"
    SimpleWorker([QUEUE_NAME], connection=svc.redis, name=name).work(
        burst=burst, logging_level="INFO", with_scheduler=True
    )


@main.command()
@click.option(
    "--workers",
    default=36,
    show_default=True,
    type=click.IntRange(0, 500),
    help="simulated workers who answer over the last days (0: none)",
)
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 90))
@with_appcontext
def demo(workers, days) -> None:
    """Seed a demo workplace and brand (idempotent), print fresh tokens for both, and walk
    simulated workers through real conversations on every channel over the last days, so the
    demo brand sees real figures at once."""
    from flask import current_app

    from .demo import walk

    try:
        workplace_token, brand_token = _seed_demo(services())
    except (IntegrityError, directory.DirectoryError):
        raise click.ClickException("another workplace already uses the demo code 4321") from None
    click.echo("demo workplace: demo-garments (enrolment code 4321)")
    click.echo(f"workplace token: {workplace_token}")
    click.echo("demo brand: demo-brand (granted demo-garments)")
    click.echo(f"brand token: {brand_token}")
    if workers:
        walked = walk(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            "4321",
            "Asia/Dhaka",
            workers=workers,
            days=days,
        )
        click.echo(
            f"{walked.workers} simulated workers answered in {walked.conversations} "
            f"conversations ({walked.hops} requests) over the last {days} days"
        )


def _seed_demo(svc: Services) -> tuple[str, str]:
    with svc.db.session() as session:
        place = session.scalar(select(Workplace).where(Workplace.slug == "demo-garments"))
        if place is None:
            place, _ = directory.add_workplace(
                session,
                "demo-garments",
                name="Demo Garments Ltd",
                country="BD",
                code="4321",
                timezone="Asia/Dhaka",
                languages=["bn", "en"],
            )
        buyer = session.scalar(select(Brand).where(Brand.slug == "demo-brand"))
        if buyer is None:
            buyer, _ = directory.add_brand(
                session, "demo-brand", name="Demo Brand", email="reports@example.org"
            )
        # every token of the demo records goes: only the fresh ones printed below work
        session.query(ApiToken).filter(
            (ApiToken.workplace_id == place.id) | (ApiToken.brand_id == buyer.id)
        ).delete()
        workplace_token = directory.new_token(session, "workplace", workplace=place, label="demo")
        brand_token = directory.new_token(session, "brand", brand=buyer, label="demo")
    with svc.db.session() as session:
        directory.grant(session, "demo-garments", "demo-brand")
    return workplace_token, brand_token


@main.command()
@click.argument("channel", type=click.Choice(["sms", "ussd", "voice"]))
@click.argument("phone")
@click.option(
    "--url",
    default="http://localhost:5000",
    show_default=True,
    help="where the service is listening",
)
@with_appcontext
def simulate(channel, phone, url) -> None:
    """Be the worker PHONE on a running service: text it (sms), dial its USSD code (ussd) or
    call it (voice), through the real webhooks, signed as the provider signs them."""
    from . import simulate as simulator

    config = services().config
    if channel == "ussd":
        if not config.at_webhook_token:
            raise click.ClickException("AT_WEBHOOK_TOKEN is not set: the simulator sends it")
        simulator.run_ussd(url, config.at_webhook_token, phone)
        return
    if not config.twilio_auth_token:
        raise click.ClickException("TWILIO_AUTH_TOKEN is not set: the simulator signs with it")
    if channel == "voice":
        simulator.run_voice(url, config.public_url, config.twilio_auth_token, phone)
    else:
        simulator.run(url, config.public_url, config.twilio_auth_token, phone)
