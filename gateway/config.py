"""One config object, read from the environment and validated once, at start-up (SPEC §2).

A bad value raises ConfigError with one line naming the variable; nothing falls back silently.
In development, missing secrets are generated once into ``instance/`` (mode 0600).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

log = logging.getLogger(__name__)

DEVELOPMENT, PRODUCTION = "development", "production"
MIN_K = 5
SESSION_TTL_SECONDS = 24 * 3600  # an unfinished flow is offered for resume this long
REPLY_CACHE_SECONDS = 24 * 3600  # provider retries of one message are answered from this cache
_PASSWORD = re.compile(r"(://[^/@:]*:)[^/]*@")  # user:password@ up to the last @
LICENCE_VERSION = re.compile(r"[A-Za-z0-9._-]{1,32}")  # stored with each consent (String(32))
REDIS_DB_PATH = re.compile(r"/?|/\d+")  # redis://host:port, redis://host:port/ or .../<db number>


class ConfigError(Exception):
    """A configuration value is missing or wrong; the message names the variable."""


@dataclass(frozen=True)
class Config:
    env: str
    database_url: str
    redis_url: str | None
    master_key: bytes
    public_url: str
    flows_dir: Path
    locales_dir: Path
    min_respondents: int
    report_cutoff: str
    salt_period_days: int
    salt_grace_days: int
    twilio_account_sid: str | None
    twilio_auth_token: str | None
    twilio_api_url: str | None
    at_username: str | None
    at_api_key: str | None
    at_webhook_token: str | None
    at_api_url: str | None
    smtp_url: str | None
    mail_from: str
    instance_dir: Path
    session_ttl: int = SESSION_TTL_SECONDS
    # The master key being replaced, while ``keys rotate-master`` runs (gateway/crypto.py).
    master_key_previous: bytes | None = None
    # The licence (terms workers consent to) in force: a worker who agreed to another version
    # is asked again at their next contact.
    licence_version: str = "1"

    @property
    def production(self) -> bool:
        return self.env == PRODUCTION

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        return _Reader(os.environ if environ is None else environ).read()


class _Reader:
    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def get(self, name: str) -> str | None:
        value = self.environ.get(name)
        return value.strip() if value and value.strip() else None

    def read(self) -> Config:
        env = self.get("WORKERVOICE_ENV") or DEVELOPMENT
        if env not in (DEVELOPMENT, PRODUCTION):
            raise ConfigError(
                f"WORKERVOICE_ENV: must be 'development' or 'production', not {env!r}"
            )
        production = env == PRODUCTION
        instance = Path(self.get("WORKERVOICE_INSTANCE_DIR") or "instance").resolve()
        secrets_ = _InstanceSecrets(instance, enabled=not production)
        cutoff = self.get("WORKERVOICE_REPORT_CUTOFF") or "day"
        if cutoff not in ("day", "now"):
            raise ConfigError(f"WORKERVOICE_REPORT_CUTOFF: must be 'day' or 'now', not {cutoff!r}")
        k = self.integer("WORKERVOICE_MIN_RESPONDENTS", 10)
        if k < MIN_K:
            raise ConfigError(f"WORKERVOICE_MIN_RESPONDENTS: must be at least {MIN_K}, not {k}")
        master_key = self.master_key(secrets_, production)
        previous = self.previous_master_key()
        if previous == master_key:
            raise ConfigError(
                "WORKERVOICE_MASTER_KEY_PREVIOUS: is WORKERVOICE_MASTER_KEY itself "
                "(it names the key being replaced)"
            )
        return Config(
            env=env,
            database_url=self.database_url(instance),
            redis_url=self.redis_url(),
            master_key=master_key,
            public_url=self.url("WORKERVOICE_PUBLIC_URL", "http://localhost:5000").rstrip("/"),
            flows_dir=Path(self.get("WORKERVOICE_FLOWS_DIR") or "flows").resolve(),
            locales_dir=Path(self.get("WORKERVOICE_LOCALES_DIR") or "locales").resolve(),
            min_respondents=k,
            report_cutoff=cutoff,
            salt_period_days=self.integer("WORKERVOICE_SALT_PERIOD_DAYS", 90, minimum=1),
            salt_grace_days=self.integer("WORKERVOICE_SALT_GRACE_DAYS", 14, minimum=0),
            twilio_account_sid=self.get("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=self.get("TWILIO_AUTH_TOKEN") or secrets_.get("twilio_auth_token"),
            twilio_api_url=self.optional_url("WORKERVOICE_TWILIO_API_URL"),
            at_username=self.get("AT_USERNAME") or ("sandbox" if not production else None),
            at_api_key=self.get("AT_API_KEY"),
            at_webhook_token=self.get("AT_WEBHOOK_TOKEN") or secrets_.get("at_webhook_token"),
            at_api_url=self.optional_url("WORKERVOICE_AT_API_URL"),
            smtp_url=self.smtp_url(),
            mail_from=self.get("WORKERVOICE_MAIL_FROM") or "WorkerVoice <reports@localhost>",
            instance_dir=instance,
            master_key_previous=previous,
            licence_version=self.licence_version(),
        )

    def licence_version(self) -> str:
        raw = self.get("WORKERVOICE_LICENCE_VERSION") or "1"
        if not LICENCE_VERSION.fullmatch(raw):
            raise ConfigError(
                "WORKERVOICE_LICENCE_VERSION: must be 1 to 32 letters, digits, dots, dashes or "
                f"underscores, not {raw[:40]!r}"
            )
        return raw

    def integer(self, name: str, default: int, minimum: int | None = None) -> int:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}: must be a whole number, not {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name}: must be at least {minimum}, not {value}")
        return value

    def url(self, name: str, default: str) -> str:
        """A base URL: http(s), a host, a valid port, no query or fragment (signatures are
        computed over base + path + query, so a base holding either could never match)."""
        value = self.get(name) or default
        parts = _split(value)
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or not _port_ok(parts)
            or parts.query
            or parts.fragment
            or "?" in value
            or "#" in value
        ):
            raise ConfigError(
                f"{name}: must be an http(s) URL like https://example.org, "
                f"not {_redact_url(value)!r}"
            )
        return value

    def optional_url(self, name: str) -> str | None:
        return self.url(name, "") if self.get(name) else None

    def database_url(self, instance: Path) -> str:
        raw = self.get("DATABASE_URL")
        if raw is None:
            instance.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{instance / 'workervoice.sqlite3'}"
        scheme, sep, rest = raw.partition("://")
        if not sep or not rest:
            raise ConfigError(f"DATABASE_URL: not a database URL: {_redact_url(raw)!r}")
        if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
            url = f"postgresql+psycopg://{rest}"
        elif scheme == "sqlite":
            url = raw
        else:
            raise ConfigError(
                f"DATABASE_URL: unsupported scheme {scheme!r} (use postgresql:// or sqlite://)"
            )
        try:
            make_url(url)  # the port must be a number, the host well formed
        except (ArgumentError, ValueError):
            parts = None
        else:
            parts = _split(url)
        if parts is None or not _port_ok(parts):
            raise ConfigError(f"DATABASE_URL: malformed URL {_redact_url(raw)!r}")
        if scheme != "sqlite" and not parts.path.strip("/"):
            raise ConfigError(f"DATABASE_URL: names no database: {_redact_url(raw)!r}")
        return url

    def redis_url(self) -> str | None:
        raw = self.get("REDIS_URL")
        if raw is None:
            return None
        parts = _split(raw)
        if parts is None:
            ok = False
        elif parts.scheme == "unix":
            ok = "://" in raw and bool(parts.path)
        else:
            ok = (
                parts.scheme in ("redis", "rediss")
                and "://" in raw
                and bool(parts.hostname)
                and _port_ok(parts)
                and REDIS_DB_PATH.fullmatch(parts.path) is not None
            )
        if not ok:
            raise ConfigError(f"REDIS_URL: must be redis://host:port/db, not {_redact_url(raw)!r}")
        return raw

    def smtp_url(self) -> str | None:
        raw = self.get("SMTP_URL")
        parts = _split(raw) if raw is not None else None
        if raw is not None and (
            parts is None
            or parts.scheme not in ("smtp", "smtps")
            or not parts.hostname
            or not _port_ok(parts)
        ):
            raise ConfigError("SMTP_URL: must be smtp://user:pass@host:port or smtps://...")
        return raw

    def master_key(self, secrets_: _InstanceSecrets, production: bool) -> bytes:
        raw = self.get("WORKERVOICE_MASTER_KEY")
        if raw is None:
            if production:
                raise ConfigError(
                    "WORKERVOICE_MASTER_KEY: required in production "
                    "(url-safe base64 of 32 random bytes)"
                )
            raw = secrets_.get(
                "master.key",
                generate=lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            )
        if raw is None:  # secrets_ only returns None in production, handled above
            raise ConfigError("WORKERVOICE_MASTER_KEY: required")
        return _key("WORKERVOICE_MASTER_KEY", raw)

    def previous_master_key(self) -> bytes | None:
        """The master key a rotation replaces (optional; set only while one is under way)."""
        raw = self.get("WORKERVOICE_MASTER_KEY_PREVIOUS")
        return None if raw is None else _key("WORKERVOICE_MASTER_KEY_PREVIOUS", raw)


def _key(name: str, raw: str) -> bytes:
    """32 bytes from url-safe base64 (padding optional), or one line naming the variable."""
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (ValueError, TypeError):
        key = b""
    if len(key) != 32:
        raise ConfigError(f"{name}: must be url-safe base64 of exactly 32 bytes")
    return key


class _InstanceSecrets:
    """Development secrets generated once into instance/ with mode 0600."""

    def __init__(self, directory: Path, enabled: bool):
        self.directory = directory
        self.enabled = enabled

    def get(self, name: str, generate=lambda: secrets.token_urlsafe(24)) -> str | None:
        if not self.enabled:
            return None
        path = self.directory / name
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return path.read_text().strip()
            with os.fdopen(fd, "w") as handle:
                handle.write(generate() + "\n")
        return path.read_text().strip()


def _split(url: str) -> SplitResult | None:
    """The URL's parts, or None if it cannot even be split (e.g. an unclosed IPv6 bracket)."""
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 - raises ValueError for a malformed host
    except ValueError:
        return None
    return parts


def _port_ok(parts: SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    except ValueError:
        return False
    return True


def _redact_url(url: str) -> str:
    """The URL with any password masked (works on URLs too malformed to parse)."""
    return _PASSWORD.sub(r"\1***@", url)
