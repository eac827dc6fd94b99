"""The ``workervoice`` command line (SPEC §8). Every command builds the app through the factory."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import phonenumbers
from babel import Locale, UnknownLocaleError
from croniter import croniter
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy.exc import IntegrityError

from store import directory

from . import directory_mirror
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
    """Run migrations to the newest schema, make sure the key ring has a current key, and
    build the Redis cache the webhooks answer from if it is missing."""
    services().db.upgrade()
    services().ensure_key_ring()
    directory_mirror.warm(services().mirror)  # a Redis that is down only warns here
    click.echo("database is up to date")


# -- cache -----------------------------------------------------------------------------------
@main.group()
def cache() -> None:
    """The Redis cache the webhooks answer from (gateway/directory_cache.py)."""


@cache.command("rebuild")
@with_appcontext
def cache_rebuild() -> None:
    """Read the key ring, the workplaces and the worker profiles from the database back into
    Redis (after Redis lost its data, or a change that could not reach it)."""
    rebuilt = services().mirror.rebuild()
    click.echo(
        f"cache rebuilt: {rebuilt.keys} key(s), {rebuilt.workplaces} workplace(s), "
        f"{rebuilt.profiles} profile(s) ({rebuilt.added} were missing)"
    )


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


# The other commands register themselves on ``main`` when imported.
from . import cli_content, cli_processes, cli_salts  # noqa: E402,F401
