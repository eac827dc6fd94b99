"""Workplaces, brands, grants and API tokens: the administrator's records."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import ApiToken, Brand, Grant, Workplace

TOKEN_PREFIX = "wv_"
# What a workplace or brand slug may be. The CLI creates nothing else, and the API answers any
# other id 404 before a query (PostgreSQL refuses a NUL in text outright).
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
NAME_MAX = Workplace.name.type.length  # the name and email columns' sizes
EMAIL_MAX = Brand.email.type.length


class DirectoryError(Exception):
    """An administrator's request cannot be met (duplicate slug, unknown workplace ...)."""


def add_workplace(
    session: Session,
    slug: str,
    *,
    name: str,
    country: str,
    code: str,
    timezone: str,
    languages: list[str] | None = None,
) -> tuple[Workplace, str]:
    """Create a workplace (values already validated) and its token; DirectoryError if the slug
    or the enrolment code is taken."""
    taken = session.scalar(
        select(Workplace).where((Workplace.slug == slug) | (Workplace.code == code))
    )
    if taken is not None:
        what = "slug" if taken.slug == slug else "code"
        raise DirectoryError(f"a workplace with that {what} already exists")
    place = Workplace(
        slug=slug,
        name=name,
        country=country,
        code=code,
        timezone=timezone,
        languages=languages or [],
        created_at=datetime.now(UTC),
    )
    session.add(place)
    session.flush()
    return place, new_token(session, "workplace", workplace=place)


def set_workplace(
    session: Session,
    slug: str,
    *,
    callback_number: str | None = None,
    timezone: str | None = None,
    languages: list[str] | None = None,
) -> Workplace:
    """Change a workplace's settings (values already validated; None leaves one as it is, a
    callback number of "" removes it); DirectoryError if there is no such workplace or another
    one already uses the callback number."""
    place = workplace_by_slug(session, slug)
    if callback_number is not None:
        if callback_number:
            holder = session.scalar(
                select(Workplace.slug).where(
                    Workplace.callback_number == callback_number, Workplace.id != place.id
                )
            )
            if holder is not None:
                raise DirectoryError(f"workplace '{holder}' already uses that callback number")
        place.callback_number = callback_number or None
    if timezone is not None:
        place.timezone = timezone
    if languages is not None:
        place.languages = languages
    session.flush()
    return place


def directory_entries(session: Session) -> list[tuple[str, str, str, str | None]]:
    """(slug, code, time zone, callback number or None) of every workplace: what the hops'
    cache holds (gateway/directory_cache.py)."""
    query = select(Workplace.slug, Workplace.code, Workplace.timezone, Workplace.callback_number)
    rows = session.execute(query.order_by(Workplace.slug))
    return [(slug, code, zone, number) for slug, code, zone, number in rows]


def add_brand(
    session: Session,
    slug: str,
    *,
    name: str,
    email: str,
    locale: str = "en",
    schedule: str | None = None,
    timezone: str = "UTC",
) -> tuple[Brand, str]:
    """Create a brand (values already validated) and its token; DirectoryError if the slug is
    taken."""
    if session.scalar(select(Brand).where(Brand.slug == slug)) is not None:
        raise DirectoryError("a brand with that slug already exists")
    brand = Brand(
        slug=slug,
        name=name,
        email=email,
        locale=locale,
        schedule=schedule,
        timezone=timezone,
        created_at=datetime.now(UTC),
    )
    session.add(brand)
    session.flush()
    return brand, new_token(session, "brand", brand=brand)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(
    session: Session,
    kind: str,
    *,
    brand: Brand | None = None,
    workplace: Workplace | None = None,
    label: str | None = None,
) -> str:
    """Mint a token; only its hash is stored, so the caller must show it now or never."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            token_hash=hash_token(token),
            kind=kind,
            brand_id=brand.id if brand else None,
            workplace_id=workplace.id if workplace else None,
            label=label,
            created_at=datetime.now(UTC),
        )
    )
    return token


@dataclass(frozen=True)
class Principal:
    """Who holds a token: a brand, a workplace or an operator."""

    kind: str
    brand_id: int | None = None
    workplace_id: int | None = None


def principal_for(session: Session, token: str) -> Principal | None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None:
        return None
    return Principal(row.kind, row.brand_id, row.workplace_id)


def _visible(who: Principal):
    """The query for the workplaces this principal may see, or None for no workplace at all."""
    query = select(Workplace)
    if who.kind == "workplace":
        return query.where(Workplace.id == who.workplace_id)
    if who.kind == "brand":
        return query.join(Grant, Grant.workplace_id == Workplace.id).where(
            Grant.brand_id == who.brand_id
        )
    return query if who.kind == "operator" else None


def visible_workplaces(session: Session, who: Principal) -> list[Workplace]:
    """The workplaces this principal may see, by slug order."""
    query = _visible(who)
    return [] if query is None else list(session.scalars(query.order_by(Workplace.slug)))


def visible_workplace(session: Session, who: Principal, slug: str) -> Workplace | None:
    """The workplace if this principal may see it; None alike when it is hidden or absent."""
    query = _visible(who)
    return None if query is None else session.scalar(query.where(Workplace.slug == slug))


def workplace_by_slug(session: Session, slug: str) -> Workplace:
    workplace = session.scalar(select(Workplace).where(Workplace.slug == slug))
    if workplace is None:
        raise DirectoryError(f"no workplace '{slug}'")
    return workplace


def brand_by_slug(session: Session, slug: str) -> Brand:
    brand = session.scalar(select(Brand).where(Brand.slug == slug))
    if brand is None:
        raise DirectoryError(f"no brand '{slug}'")
    return brand


def grant(session: Session, workplace_slug: str, brand_slug: str) -> bool:
    """Let the brand see the workplace; False if it already could."""
    workplace = workplace_by_slug(session, workplace_slug)
    brand = brand_by_slug(session, brand_slug)
    if session.get(Grant, (workplace.id, brand.id)) is not None:
        return False
    session.add(Grant(workplace_id=workplace.id, brand_id=brand.id, created_at=datetime.now(UTC)))
    return True


def revoke(session: Session, workplace_slug: str, brand_slug: str) -> bool:
    """Stop the brand seeing the workplace; False if it could not see it anyway."""
    workplace = workplace_by_slug(session, workplace_slug)
    brand = brand_by_slug(session, brand_slug)
    existing = session.get(Grant, (workplace.id, brand.id))
    if existing is None:
        return False
    session.delete(existing)
    return True
