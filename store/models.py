"""SQLAlchemy 2 models. No column ever holds a worker's phone number (SPEC §6)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Workplace(Base):
    __tablename__ = "workplaces"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    code: Mapped[str] = mapped_column(String(8), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    languages: Mapped[list] = mapped_column(JSON, default=list)
    # The service's own number for free missed-call callbacks (E.164), never a worker's. A
    # unique index, not a constraint: SQLite adds one without rebuilding the table.
    callback_number: Mapped[str | None] = mapped_column(String(20), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    grants: Mapped[list[Grant]] = relationship(
        back_populates="workplace", cascade="all, delete-orphan"
    )


class Brand(Base):
    __tablename__ = "brands"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    locale: Mapped[str] = mapped_column(String(16), default="en")
    schedule: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Grant(Base):
    """The workplace lets this brand see its figures. Confidential (SPEC §6)."""

    __tablename__ = "grants"

    workplace_id: Mapped[int] = mapped_column(
        ForeignKey("workplaces.id", ondelete="CASCADE"), primary_key=True
    )
    brand_id: Mapped[int] = mapped_column(
        ForeignKey("brands.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    workplace: Mapped[Workplace] = relationship(back_populates="grants")


class ApiToken(Base):
    """A bearer token, stored only as its SHA-256 (tokens are 256-bit random, so no stretching)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # brand | workplace | operator
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    workplace_id: Mapped[int | None] = mapped_column(
        ForeignKey("workplaces.id", ondelete="CASCADE")
    )
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PseudonymKey(Base):
    """One key of the pseudonym key ring, AES-GCM encrypted under the master key."""

    __tablename__ = "pseudonym_keys"
    __table_args__ = (  # at most one current key, however many rotations race
        Index(
            "uq_pseudonym_keys_one_current",
            "status",
            unique=True,
            postgresql_where=text("status = 'current'"),
            sqlite_where=text("status = 'current'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # current | previous | destroyed
    secret: Mapped[bytes | None] = mapped_column(LargeBinary)  # None once destroyed
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When it takes over from the key before it: a few seconds after it is made, so that every
    # process holds it by then and they all change keys at the same instant (store/keyring.py).
    activates_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Which master key ``secret`` is encrypted under (gateway/crypto.master_key_id; never the
    # key). None: written before ids were recorded (``keys rotate-master`` finds out).
    master_key_id: Mapped[str | None] = mapped_column(String(16))


class Worker(Base):
    """A worker's profile under their pseudonym: language, workplace, consent. No number."""

    __tablename__ = "workers"

    pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("pseudonym_keys.id"))
    language: Mapped[str] = mapped_column(String(16))
    workplace_id: Mapped[int] = mapped_column(ForeignKey("workplaces.id", ondelete="CASCADE"))
    consented_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The daily question rotation's seed, kept when the profile moves to a new key's pseudonym
    # (None: the pseudonym's own, identity.Pseudonym.seed).
    seed: Mapped[int | None] = mapped_column(BigInteger)  # 32 bits, unsigned


class Answer(Base):
    """One worker's answer to one question on one day (a later answer that day replaces it)."""

    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint(
            "pseudonym",
            "workplace_id",
            "flow_id",
            "question_id",
            "answered_on",
            name="uq_answers_one_per_day",
        ),
        Index("ix_answers_figures", "workplace_id", "flow_id", "question_id", "answered_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[int] = mapped_column(Integer)
    workplace_id: Mapped[int] = mapped_column(ForeignKey("workplaces.id", ondelete="CASCADE"))
    flow_id: Mapped[str] = mapped_column(String(64))
    flow_version: Mapped[str] = mapped_column(String(32))
    question_id: Mapped[str] = mapped_column(String(64))
    value_text: Mapped[str | None] = mapped_column(Text)
    value_number: Mapped[float | None] = mapped_column(Float)
    answered_on: Mapped[date] = mapped_column(Date)  # the workplace's local day
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_id: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))
    # Left under a destroyed key's pseudonym whose worker had come back after the rotation
    # (their latest answer to the question moved on): counted only in windows ending before the
    # key retired (aggregator/indicators.py, docs/PRIVACY.md).
    superseded: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Moved to the new key's pseudonym when the old key was destroyed (the worker's latest
    # answer to its question in that period): counted only in windows ending after the new key
    # took over.
    carried: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class MigratedPseudonym(Base):
    """A retired key's pseudonym whose worker came back during the grace period, and the new
    pseudonym they came back under: while the old key lives, the figures count the two as one
    respondent (aggregator/indicators.py). Deleted with the old key, when the worker's latest
    answers move across for good (store/migration.py): after that nothing links the two."""

    __tablename__ = "migrated_pseudonyms"

    pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(Integer, index=True)
    moved_to: Mapped[str] = mapped_column(String(64))
    moved_to_key: Mapped[int] = mapped_column(Integer)
    migrated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Contact(Base):
    """The contact vault: a worker who opted in to be contacted (callbacks, reminders, prize
    draws, feedback) has their E.164 number here as AES-GCM ciphertext, bound to the pseudonym
    (gateway/vault.py). Deleted on STOP, moved at a grace migration, destroyed with its key's
    period (store/vault.py). The only column near a number, and it is ciphertext."""

    __tablename__ = "contacts"

    pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("pseudonym_keys.id"), index=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(16), index=True)
    purposes: Mapped[list] = mapped_column(JSON)  # what the worker agreed to be contacted for
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Consent(Base):
    """The consent ledger: one row per agreement a worker gave (at enrolment, and again each
    time the licence version changed), never changed afterwards, so what each worker agreed to
    and when stays on record. Moved with the worker at a grace migration, deleted by STOP,
    DELETE and with its key (store/consents.py)."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[int] = mapped_column(Integer, index=True)
    licence: Mapped[str] = mapped_column(String(32))  # WORKERVOICE_LICENCE_VERSION then
    agreed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    language: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    # The engine event it records: a batch drained twice writes it once.
    event_id: Mapped[str] = mapped_column(String(100), unique=True)


class Tombstone(Base):
    """A worker who sent STOP (``stopped_at``) or confirmed DELETE (``erased_at`` too), under
    one pseudonym: nothing from a request received before then is written again, however late
    its entry is drained (store/forget.py). No number, no answer; deleted with its key."""

    __tablename__ = "tombstones"

    pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(Integer, index=True)
    stopped_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
