"""Configuration (SPEC §2): defaults, and every bad value refused with one line naming it."""

from __future__ import annotations

import base64
import stat

import pytest

from gateway.config import Config, ConfigError

KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A minimal environment in an empty working directory; returns a reader."""
    monkeypatch.chdir(tmp_path)

    def read(**values: str) -> Config:
        return Config.from_env({"WORKERVOICE_INSTANCE_DIR": str(tmp_path / "instance"), **values})

    return read


def test_defaults(env, tmp_path):
    config = env()
    assert config.env == "development" and not config.production
    assert config.database_url == f"sqlite:///{tmp_path / 'instance' / 'workervoice.sqlite3'}"
    assert config.redis_url is None and config.embedded_redis
    assert config.public_url == "http://localhost:5000"
    assert config.flows_dir == tmp_path / "flows"
    assert config.locales_dir == tmp_path / "locales"
    assert config.min_respondents == 10
    assert config.report_cutoff == "day"
    assert config.licence_version == "1"
    assert (config.salt_period_days, config.salt_grace_days) == (90, 14)
    assert config.smtp_url is None
    assert len(config.master_key) == 32
    assert config.twilio_auth_token and config.at_webhook_token  # generated for development


def test_instance_dir_defaults_to_instance_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Config.from_env({})
    assert config.instance_dir == tmp_path / "instance"
    assert (tmp_path / "instance" / "master.key").exists()


def test_values_are_read(env, tmp_path):
    config = env(
        DATABASE_URL="postgresql://wv:secret@db.internal:5433/workervoice",
        REDIS_URL="redis://cache:6380/2",
        WORKERVOICE_ENV="production",
        WORKERVOICE_MASTER_KEY=KEY,
        WORKERVOICE_PUBLIC_URL="https://wv.example.org/",
        WORKERVOICE_MIN_RESPONDENTS="5",
        WORKERVOICE_REPORT_CUTOFF="now",
        WORKERVOICE_SALT_PERIOD_DAYS="30",
        WORKERVOICE_SALT_GRACE_DAYS="0",
        WORKERVOICE_LICENCE_VERSION="2026-06_b.1",
        TWILIO_AUTH_TOKEN="tw",
        AT_WEBHOOK_TOKEN="at",
        AT_USERNAME="wv",
        AT_API_KEY="key",
        SMTP_URL="smtps://u:p@mail.example.org:465",
    )
    assert config.production
    assert config.database_url == "postgresql+psycopg://wv:secret@db.internal:5433/workervoice"
    assert config.redis_url == "redis://cache:6380/2"
    assert config.master_key == bytes(range(32))
    assert config.public_url == "https://wv.example.org"  # no trailing slash: path follows
    assert (config.min_respondents, config.report_cutoff) == (5, "now")
    assert (config.salt_period_days, config.salt_grace_days) == (30, 0)
    assert config.licence_version == "2026-06_b.1"
    assert (config.twilio_auth_token, config.at_webhook_token) == ("tw", "at")
    assert not (tmp_path / "instance" / "master.key").exists()  # nothing generated


@pytest.mark.parametrize(
    "url", ["postgres://u@h/db", "postgresql://u@h/db", "postgresql+psycopg://u@h/db"]
)
def test_postgres_urls_are_accepted_as_given(env, url):
    assert env(DATABASE_URL=url).database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql:///workervoice",
        "postgresql://u@h:5432/db?sslmode=require",
        "sqlite:////var/lib/wv.sqlite3",
        "sqlite:///relative.db",
    ],
)
def test_other_good_database_urls(env, url):
    assert env(DATABASE_URL=url).database_url.endswith(url.split("://", 1)[1])


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "redis://localhost",
        "redis://h:1/",
        "rediss://:pw@h:6380/15",
        "unix:///run/redis.sock?db=3",
    ],
)
def test_good_redis_urls(env, url):
    assert env(REDIS_URL=url).redis_url == url


def test_blank_values_mean_unset(env):
    config = env(REDIS_URL="  ", WORKERVOICE_MIN_RESPONDENTS="", WORKERVOICE_ENV=" ")
    assert config.redis_url is None and config.min_respondents == 10
    assert config.env == "development"


def test_surrounding_spaces_are_ignored(env):
    assert env(WORKERVOICE_MIN_RESPONDENTS=" 7 ").min_respondents == 7


BAD = [
    ("DATABASE_URL", "not a url"),
    ("DATABASE_URL", "postgresql://"),
    ("DATABASE_URL", "postgresql://u@h:notaport/db"),
    ("DATABASE_URL", "postgresql://u:secret@h:99999999/db"),
    ("DATABASE_URL", "postgresql://u@h"),
    ("DATABASE_URL", "mysql://u@h/db"),
    ("DATABASE_URL", "sqlite://"),
    ("DATABASE_URL", "localhost:5432/db"),
    ("DATABASE_URL", "postgresql://u:pw@[::1/db"),  # urlsplit itself fails on these
    ("REDIS_URL", "localhost:6379"),
    ("REDIS_URL", "http://localhost:6379/0"),
    ("REDIS_URL", "redis://"),
    ("REDIS_URL", "redis://localhost:notaport/0"),
    ("REDIS_URL", "redis://localhost:6379/db0"),
    ("REDIS_URL", "redis://localhost:6379/0/1"),
    ("REDIS_URL", "unix://"),
    ("REDIS_URL", "redis://[::1:6379/0"),
    ("WORKERVOICE_PUBLIC_URL", "gateway.example.org"),
    ("WORKERVOICE_PUBLIC_URL", "ftp://gateway.example.org"),
    ("WORKERVOICE_PUBLIC_URL", "https://"),
    ("WORKERVOICE_PUBLIC_URL", "https://gateway.example.org:port"),
    ("WORKERVOICE_PUBLIC_URL", "https://gateway.example.org/?x=1"),
    ("WORKERVOICE_PUBLIC_URL", "https://gateway.example.org/#top"),
    ("WORKERVOICE_PUBLIC_URL", "localhost:5000"),
    ("WORKERVOICE_PUBLIC_URL", "https://[::1"),
    ("WORKERVOICE_AT_API_URL", "api.africastalking.com"),
    ("WORKERVOICE_MASTER_KEY", "short"),
    ("WORKERVOICE_MASTER_KEY", base64.urlsafe_b64encode(bytes(31)).decode()),
    ("WORKERVOICE_MASTER_KEY", base64.urlsafe_b64encode(bytes(33)).decode()),
    ("WORKERVOICE_MASTER_KEY", "!" * 44),
    ("WORKERVOICE_MASTER_KEY_PREVIOUS", "short"),
    ("WORKERVOICE_MASTER_KEY_PREVIOUS", base64.urlsafe_b64encode(bytes(31)).decode()),
    ("WORKERVOICE_MASTER_KEY_PREVIOUS", "!" * 44),
    ("WORKERVOICE_MIN_RESPONDENTS", "4"),
    ("WORKERVOICE_MIN_RESPONDENTS", "0"),
    ("WORKERVOICE_MIN_RESPONDENTS", "-10"),
    ("WORKERVOICE_MIN_RESPONDENTS", "ten"),
    ("WORKERVOICE_MIN_RESPONDENTS", "10.5"),
    ("WORKERVOICE_REPORT_CUTOFF", "week"),
    ("WORKERVOICE_REPORT_CUTOFF", "DAY"),
    ("WORKERVOICE_LICENCE_VERSION", "version 2"),
    ("WORKERVOICE_LICENCE_VERSION", "2\n3"),
    ("WORKERVOICE_LICENCE_VERSION", "v" * 33),
    ("WORKERVOICE_LICENCE_VERSION", "२"),
    ("WORKERVOICE_ENV", "staging"),
    ("WORKERVOICE_ENV", "prod\nuction"),
    ("WORKERVOICE_SALT_PERIOD_DAYS", "ninety"),
    ("WORKERVOICE_SALT_PERIOD_DAYS", "0"),
    ("WORKERVOICE_SALT_PERIOD_DAYS", "1e3"),
    ("WORKERVOICE_SALT_GRACE_DAYS", "-1"),
    ("WORKERVOICE_SALT_GRACE_DAYS", "two weeks"),
    ("SMTP_URL", "mail.example.org"),
    ("SMTP_URL", "http://mail.example.org"),
    ("SMTP_URL", "smtp://[::1"),
    ("SMTP_URL", "smtp://mail.example.org:port"),
]


@pytest.mark.parametrize("name,value", BAD, ids=[f"{n}={v!r}" for n, v in BAD])
def test_bad_value_stops_start_up_with_one_line_naming_it(env, name, value):
    with pytest.raises(ConfigError) as caught:
        env(**{name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}: "), message
    assert "\n" not in message


def test_production_without_master_key_is_refused(env, tmp_path):
    with pytest.raises(ConfigError) as caught:
        env(WORKERVOICE_ENV="production")
    assert str(caught.value).startswith("WORKERVOICE_MASTER_KEY: ")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "instance" / "master.key").exists()  # never generated in production


def test_production_generates_no_secrets(env, tmp_path):
    config = env(WORKERVOICE_ENV="production", WORKERVOICE_MASTER_KEY=KEY)
    assert config.twilio_auth_token is None and config.at_webhook_token is None
    assert config.at_username is None
    instance = tmp_path / "instance"
    assert not instance.exists() or not any(instance.iterdir())


@pytest.mark.parametrize(
    "name,value",
    [
        ("DATABASE_URL", "postgresql://wv:s3cret-pw@h:notaport/db"),
        ("DATABASE_URL", "postgresql://wv:s3cret@pw@h:notaport/db"),
        ("DATABASE_URL", "postgresql://wv:s3cret-pw@[::1/db"),
        ("DATABASE_URL", "mysql://wv:s3cret-pw@h/db"),
        ("REDIS_URL", "redis://:s3cret-pw@h:6379/x"),
        ("WORKERVOICE_PUBLIC_URL", "https://wv:s3cret-pw@h:port"),
        ("SMTP_URL", "smtp://wv:s3cret-pw@[::1"),
    ],
)
def test_error_never_shows_a_password(env, name, value):
    with pytest.raises(ConfigError) as caught:
        env(**{name: value})
    assert "s3cret" not in str(caught.value) and "pw" not in str(caught.value)


def test_ipv6_hosts_are_accepted(env):
    assert (
        env(DATABASE_URL="postgresql://u@[::1]:5432/db").database_url
        == "postgresql+psycopg://u@[::1]:5432/db"
    )
    assert env(REDIS_URL="redis://[::1]:6379/0").redis_url == "redis://[::1]:6379/0"


def test_error_never_shows_the_master_key(env):
    bad = base64.urlsafe_b64encode(b"k" * 31).decode()
    with pytest.raises(ConfigError) as caught:
        env(WORKERVOICE_MASTER_KEY=bad)
    assert bad not in str(caught.value)


def test_development_master_key_generated_once_with_mode_0600(env, tmp_path):
    first = env()
    path = tmp_path / "instance" / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.read_text()
    assert len(base64.urlsafe_b64decode(written.strip())) == 32
    second = env()
    assert second.master_key == first.master_key
    assert path.read_text() == written  # reused, not regenerated


def test_development_webhook_tokens_generated_once_with_mode_0600(env, tmp_path):
    first = env()
    for name in ("twilio_auth_token", "at_webhook_token"):
        assert stat.S_IMODE((tmp_path / "instance" / name).stat().st_mode) == 0o600
    second = env()
    assert (second.twilio_auth_token, second.at_webhook_token) == (
        first.twilio_auth_token,
        first.at_webhook_token,
    )
    assert first.twilio_auth_token != first.at_webhook_token


def test_environment_master_key_wins_over_the_file(env, tmp_path):
    env()  # generates instance/master.key
    assert env(WORKERVOICE_MASTER_KEY=KEY).master_key == bytes(range(32))


def test_unpadded_master_key_is_accepted(env):
    assert env(WORKERVOICE_MASTER_KEY=KEY.rstrip("=")).master_key == bytes(range(32))


def test_from_env_reads_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKERVOICE_INSTANCE_DIR", str(tmp_path / "instance"))
    monkeypatch.setenv("WORKERVOICE_MIN_RESPONDENTS", "3")
    with pytest.raises(ConfigError, match="^WORKERVOICE_MIN_RESPONDENTS: "):
        Config.from_env()


def test_a_bad_value_stops_a_real_process_with_one_line(tmp_path):
    """What an operator sees: the process exits at start with one line naming the variable."""
    import subprocess
    import sys
    from pathlib import Path

    from .conftest import environ_for

    environ = {**environ_for(tmp_path), "WORKERVOICE_MIN_RESPONDENTS": "3", "PATH": ""}
    workervoice = str(Path(sys.executable).parent / "workervoice")
    done = subprocess.run(
        [workervoice, "db", "upgrade"], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        "configuration error: WORKERVOICE_MIN_RESPONDENTS: must be at least 5, not 3"
    ]


def test_the_previous_master_key_is_optional_and_read_like_the_master_key(env):
    assert env(WORKERVOICE_MASTER_KEY=KEY).master_key_previous is None
    previous = bytes(range(100, 132))
    unpadded = base64.urlsafe_b64encode(previous).decode().rstrip("=")
    config = env(WORKERVOICE_MASTER_KEY=KEY, WORKERVOICE_MASTER_KEY_PREVIOUS=unpadded)
    assert config.master_key_previous == previous
    assert config.master_key == bytes(range(32))


def test_the_previous_master_key_cannot_be_the_master_key(env):
    with pytest.raises(ConfigError) as caught:
        env(WORKERVOICE_MASTER_KEY=KEY, WORKERVOICE_MASTER_KEY_PREVIOUS=KEY)
    message = str(caught.value)
    assert message.startswith("WORKERVOICE_MASTER_KEY_PREVIOUS: ") and "\n" not in message
    assert KEY not in message


def test_an_error_never_shows_the_previous_master_key(env):
    bad = base64.urlsafe_b64encode(b"k" * 31).decode()
    with pytest.raises(ConfigError) as caught:
        env(WORKERVOICE_MASTER_KEY=KEY, WORKERVOICE_MASTER_KEY_PREVIOUS=bad)
    assert bad not in str(caught.value)
