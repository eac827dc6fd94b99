"""The ``workervoice`` command line (SPEC §8), run against the test app with flask's CLI runner."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import inspect, select, text

from gateway import create_app
from gateway.cli import main
from gateway.config import Config
from gateway.engine.definition import load_flows
from gateway.i18n import Texts
from gateway.speech import every_utterance
from store.models import ApiToken, Brand, Grant, PseudonymKey, Workplace

from .conftest import ROOT, environ_for
from .support import add_workplace, bearer

FLOWS = ROOT / "flows"
LOCALES = ROOT / "locales"
TOKEN_LINE = re.compile(r"^token: (\S+)$", re.MULTILINE)


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def run(*args: str):
        return runner.invoke(main, list(args))

    return run


def token_of(result) -> str:
    assert result.exit_code == 0, result.output
    [token] = TOKEN_LINE.findall(result.stdout)
    return token


def one_line_error(result, *words: str) -> str:
    """The command failed with one line on stderr naming what was wrong, and no traceback."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def workplaces(services) -> list[Workplace]:
    with services.db.session() as session:
        return list(session.scalars(select(Workplace).order_by(Workplace.slug)))


def add(cli, slug="dhaka-knit", code="4321", country="BD", *extra: str):
    return cli(
        "workplace",
        "add",
        slug,
        "--name",
        "Dhaka Knit Ltd",
        "--country",
        country,
        "--code",
        code,
        *extra,
    )


# -- workplace add -------------------------------------------------------------------------------
def test_workplace_add_prints_a_token_that_works_and_is_stored_only_as_a_hash(
    cli, client, services
):
    result = add(cli)
    token = token_of(result)
    assert "token: " + token in result.stdout.splitlines()
    response = client.get("/api/v1/workplaces", headers=bearer(token))
    assert response.get_json() == {
        "workplaces": [{"id": "dhaka-knit", "name": "Dhaka Knit Ltd", "country": "BD"}]
    }
    with services.db.session() as session:
        [row] = session.scalars(select(ApiToken)).all()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert row.kind == "workplace"
    with services.db.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for values in connection.execute(text(f'SELECT * FROM "{table}"')):
                assert not any(token in str(v) for v in values), f"{table} holds the token"


@pytest.mark.parametrize(
    ("country", "zone"),
    [("BD", "Asia/Dhaka"), ("bd", "Asia/Dhaka"), ("KE", "Africa/Nairobi"), ("IN", "Asia/Kolkata")],
)
def test_the_time_zone_defaults_to_the_countrys_main_zone(cli, services, country, zone):
    token_of(add(cli, "dhaka-knit", "4321", country))
    [place] = workplaces(services)
    assert (place.country, place.timezone) == (country.upper(), zone)


def test_a_given_time_zone_and_languages_are_kept(cli, services):
    token_of(
        add(cli, "dhaka-knit", "4321", "BD", "--timezone", "Asia/Kolkata", "--languages", "bn, en")
    )
    [place] = workplaces(services)
    assert (place.timezone, place.languages) == ("Asia/Kolkata", ["bn", "en"])


@pytest.mark.parametrize(
    ("slug", "code", "word"), [("dhaka-knit", "9999", "slug"), ("other-mill", "4321", "code")]
)
def test_a_duplicate_slug_or_code_is_one_clear_error(cli, services, slug, code, word):
    token_of(add(cli))
    result = add(cli, slug, code)
    one_line_error(result, word, "already exists")
    assert len(workplaces(services)) == 1
    assert "token:" not in result.stdout


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (("--country", "XX"), "country"),
        (("--country", "Bangladesh"), "country"),
        (("--code", "123"), "code"),
        (("--code", "123456789"), "code"),
        (("--code", "12a4"), "code"),
        (("--code", "\u09e7\u09e8\u09e9\u09ea"), "code"),  # Bengali digits: not keyable everywhere
        (("--timezone", "Mars/Olympus_Mons"), "timezone"),
        (("--timezone", "America"), "timezone"),  # a directory of zones, not a zone
        (("--timezone", "../../etc/passwd"), "timezone"),
        (("--languages", "bn,xx"), "languages"),
        (("--name", "   "), "name"),
        (("--name", "x" * 201), "name"),
    ],
)
def test_bad_workplace_values_are_refused(cli, services, args, word):
    base = {"--name": "Dhaka Knit", "--country": "BD", "--code": "4321"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    result = cli("workplace", "add", "dhaka-knit", *[x for pair in base.items() for x in pair])
    one_line_error(result, word)
    assert workplaces(services) == []


@pytest.mark.parametrize(
    "slug", ["Dhaka", "a", "_dhaka", "dhaka_knit", "dhaka knit", "dhaka\n", "x" * 64]
)
def test_bad_slugs_are_refused(cli, services, slug):
    result = add(cli, slug)
    one_line_error(result, "SLUG")
    assert workplaces(services) == []


# -- workplace set -------------------------------------------------------------------------------
CALLBACK = "+8809612345678"


def settings(services, slug="dhaka-knit") -> tuple:
    [place] = [p for p in workplaces(services) if p.slug == slug]
    return place.callback_number, place.timezone, place.languages


def test_workplace_set_sets_changes_and_clears_the_callback_number(cli, services):
    token_of(add(cli))
    result = cli("workplace", "set", "dhaka-knit", "--callback-number", CALLBACK)
    assert result.exit_code == 0, result.output
    assert f"callback number {CALLBACK}" in result.stdout
    assert settings(services) == (CALLBACK, "Asia/Dhaka", [])
    assert (
        cli("workplace", "set", "dhaka-knit", "--callback-number", "+8809612345679").exit_code == 0
    )
    assert settings(services)[0] == "+8809612345679"
    result = cli("workplace", "set", "dhaka-knit", "--callback-number", "")
    assert result.exit_code == 0, result.output
    assert "callback number none" in result.stdout
    assert settings(services) == (None, "Asia/Dhaka", [])


def test_workplace_set_changes_only_what_it_is_given(cli, services):
    token_of(add(cli))
    cli("workplace", "set", "dhaka-knit", "--callback-number", CALLBACK)
    result = cli("workplace", "set", "dhaka-knit", "--timezone", "Asia/Kolkata")
    assert result.exit_code == 0, result.output
    assert settings(services) == (CALLBACK, "Asia/Kolkata", [])
    assert cli("workplace", "set", "dhaka-knit", "--languages", "bn, en").exit_code == 0
    assert settings(services) == (CALLBACK, "Asia/Kolkata", ["bn", "en"])
    assert cli("workplace", "set", "dhaka-knit", "--languages", "").exit_code == 0
    assert settings(services) == (CALLBACK, "Asia/Kolkata", [])


def test_a_callback_number_set_is_a_callback_number_at_once(cli, services):
    from gateway import callbacks

    token_of(add(cli))
    assert not callbacks.is_callback_number(services, CALLBACK, lambda: 0.0)
    cli("workplace", "set", "dhaka-knit", "--callback-number", CALLBACK)
    # at once in this process (the same clock); every other's copy is at most five seconds old
    assert callbacks.is_callback_number(services, CALLBACK, lambda: 0.0)


@pytest.mark.parametrize(
    "number",
    [
        "01711283946",  # national form
        "8809612345678",  # no plus
        "+880 9612-345678",  # separators: E.164 has none
        "+88096123456789012",  # too long
        "+8801",  # too short
        "+441632960000",  # possible, but not a valid number
        "abc",
        "+",
    ],
)
def test_workplace_set_refuses_a_number_not_in_e164(cli, services, number):
    token_of(add(cli))
    one_line_error(cli("workplace", "set", "dhaka-knit", "--callback-number", number), "callback")
    assert settings(services)[0] is None


def test_workplace_set_refuses_a_number_another_workplace_uses(cli, services):
    token_of(add(cli))
    token_of(add(cli, "other-mill", "9999"))
    cli("workplace", "set", "other-mill", "--callback-number", CALLBACK)
    result = cli("workplace", "set", "dhaka-knit", "--callback-number", CALLBACK)
    one_line_error(result, "other-mill", "already uses")
    assert settings(services)[0] is None and settings(services, "other-mill")[0] == CALLBACK
    # setting a workplace's own number again is no clash
    assert cli("workplace", "set", "other-mill", "--callback-number", CALLBACK).exit_code == 0


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (("--timezone", "Mars/Olympus_Mons"), "timezone"),
        (("--timezone", "America"), "timezone"),
        (("--languages", "bn,xx"), "languages"),
        ((), "nothing to change"),
    ],
)
def test_workplace_set_refuses_bad_values(cli, services, args, word):
    token_of(add(cli))
    one_line_error(cli("workplace", "set", "dhaka-knit", *args), word)
    assert settings(services) == (None, "Asia/Dhaka", [])


@pytest.mark.parametrize("slug", ["no-such-place", "Dhaka", "dhaka\n"])
def test_workplace_set_on_an_unknown_workplace_is_one_clear_error(cli, services, slug):
    token_of(add(cli))
    result = cli("workplace", "set", slug, "--callback-number", CALLBACK)
    one_line_error(result, "no workplace" if slug == "no-such-place" else "SLUG")
    assert settings(services)[0] is None


# -- brand add -----------------------------------------------------------------------------------
def test_brand_add_prints_a_token_that_works(cli, client, services):
    result = cli(
        "brand",
        "add",
        "brand-a",
        "--name",
        "Brand A",
        "--email",
        "csr@brand-a.example",
        "--schedule",
        "0 8 * * 1",
        "--timezone",
        "Europe/Berlin",
        "--locale",
        "de",
    )
    token = token_of(result)
    response = client.get("/api/v1/workplaces", headers=bearer(token))
    assert response.get_json() == {"workplaces": []}
    with services.db.session() as session:
        brand = session.scalar(select(Brand))
        assert (brand.slug, brand.email, brand.schedule, brand.timezone, brand.locale) == (
            "brand-a",
            "csr@brand-a.example",
            "0 8 * * 1",
            "Europe/Berlin",
            "de",
        )
        [row] = session.scalars(select(ApiToken)).all()
        assert (row.kind, row.brand_id, row.token_hash) == (
            "brand",
            brand.id,
            hashlib.sha256(token.encode()).hexdigest(),
        )


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (("--email", "not-an-address"), "email"),
        (("--email", "a@b"), "email"),
        (("--email", "a b@c.org"), "email"),
        (("--email", "a@" + "b" * 320 + ".org"), "email"),
        (("--schedule", "every monday"), "schedule"),
        (("--schedule", "99 * * * *"), "schedule"),
        (("--schedule", "0 0 8 * * 1"), "schedule"),
        (("--timezone", "Nowhere/City"), "timezone"),
        (("--locale", "zz"), "locale"),
    ],
)
def test_bad_brand_values_are_refused(cli, services, args, word):
    result = cli(
        "brand", "add", "brand-a", "--name", "Brand A", "--email", "csr@brand-a.example", *args
    )
    one_line_error(result, word)
    with services.db.session() as session:
        assert session.scalar(select(Brand)) is None


def test_a_duplicate_brand_is_one_clear_error(cli):
    token_of(cli("brand", "add", "brand-a", "--name", "A", "--email", "a@a.example"))
    result = cli("brand", "add", "brand-a", "--name", "A", "--email", "a@a.example")
    one_line_error(result, "already exists")


# -- grant and revoke ----------------------------------------------------------------------------
def test_grant_and_revoke_change_what_the_brand_sees(cli, client, services):
    token_of(add(cli))
    brand = token_of(cli("brand", "add", "brand-a", "--name", "A", "--email", "a@a.example"))
    indicators = "/api/v1/workplaces/dhaka-knit/indicators"
    assert client.get(indicators, headers=bearer(brand)).status_code == 404

    result = cli("grant", "dhaka-knit", "brand-a")
    assert result.exit_code == 0 and "may now see" in result.stdout
    assert cli("grant", "dhaka-knit", "brand-a").exit_code == 0  # again: nothing changes
    with services.db.session() as session:
        assert len(session.scalars(select(Grant)).all()) == 1
    assert client.get(indicators, headers=bearer(brand)).status_code == 200

    result = cli("revoke", "dhaka-knit", "brand-a")
    assert result.exit_code == 0 and "may no longer see" in result.stdout
    assert client.get(indicators, headers=bearer(brand)).status_code == 404
    assert client.get("/api/v1/workplaces", headers=bearer(brand)).get_json() == {"workplaces": []}
    assert cli("revoke", "dhaka-knit", "brand-a").exit_code == 0


@pytest.mark.parametrize("command", ["grant", "revoke"])
@pytest.mark.parametrize(
    ("place", "brand", "word"),
    [("no-such-place", "brand-a", "workplace"), ("dhaka-knit", "no-such-brand", "brand")],
)
def test_unknown_slugs_are_errors(cli, command, place, brand, word):
    token_of(add(cli))
    token_of(cli("brand", "add", "brand-a", "--name", "A", "--email", "a@a.example"))
    one_line_error(cli(command, place, brand), word)


# -- flows lint ----------------------------------------------------------------------------------
def test_lint_passes_the_real_flows(cli):
    # No errors. The shipped texts do draw content warnings (prompts over one SMS segment, the
    # Bangla and Tamil ones above all; Swahili voice prompts until its audio is synthesised):
    # informative, and exit 0 without --strict.
    result = cli("flows", "lint", str(FLOWS), "--locales", str(LOCALES))
    assert result.exit_code == 0, result.output
    assert all(
        re.fullmatch(
            r"\S+\.(yaml|po):\d+: warning: "
            r"(the (SMS|USSD) prompt for \S+ .+|.+ in sw: no audio .+"
            r"|in (bn|hi|ta|ms): \d+ of \d+ voice prompts have no audio, so Africa's .+)",
            line,
        )
        for line in result.stdout.splitlines()
    ), result.stdout
    assert "2 flow file(s) checked" in result.stderr


@pytest.fixture
def broken(tmp_path) -> Path:
    """A copy of the real flows plus one file with an unknown key on line 5."""
    for path in FLOWS.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "broken.yaml").write_text(
        "title: Broken\nquestions:\n  - id: a\n    ask: Hello?\n    bogus: 1\n"
        "    options: {yes: 'Yes', no: 'No'}\n",
        encoding="utf-8",
    )
    return tmp_path


def test_lint_reports_file_line_message_and_exits_1(cli, broken):
    result = cli("flows", "lint", str(broken))
    assert result.exit_code == 1
    assert (
        f"{broken / 'broken.yaml'}:5: unknown key 'bogus' in question" in result.stdout.splitlines()
    )
    assert all(
        re.fullmatch(r"\S+\.yaml:\d+: (warning: )?.+", line) for line in result.stdout.splitlines()
    )


def test_lint_reports_what_the_service_would_refuse(cli, broken):
    (broken / "enrol.yaml").unlink()
    (broken / "broken.yaml").unlink()
    result = cli("flows", "lint", str(broken))
    assert result.exit_code == 1
    assert f"{broken / 'enrol.yaml'}:1: the enrolment flow is missing" in result.stdout


def test_lint_reports_a_file_that_is_not_utf8(cli, broken):
    (broken / "broken.yaml").write_bytes(b"title: \xff\xfe\n")
    result = cli("flows", "lint", str(broken))
    assert result.exit_code == 1
    assert re.search(r"broken\.yaml:1: not UTF-8", result.stdout), result.output


def test_lint_refuses_a_missing_directory(cli, tmp_path):
    result = cli("flows", "lint", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_lint_runs_when_the_configured_flows_would_stop_the_app(broken, monkeypatch):
    # No app is built for lint: it is how an administrator learns why the service refused.
    monkeypatch.setenv("WORKERVOICE_FLOWS_DIR", str(broken))
    monkeypatch.setenv("WORKERVOICE_MASTER_KEY", "too-short")  # would stop create_app() too
    result = CliRunner().invoke(main, ["flows", "lint"])
    assert result.exit_code == 1, result.output
    assert "unknown key 'bogus'" in result.stdout


def test_lint_reads_every_file_once(cli, broken, monkeypatch):
    """One read of the directory (definition.read_flows), not a second parse of every file."""
    from gateway.engine import definition

    calls: list[str] = []
    parse = definition.parse_flow
    monkeypatch.setattr(
        definition, "parse_flow", lambda path, text: calls.append(path) or parse(path, text)
    )
    (broken / "broken.yaml").unlink()
    result = cli("flows", "lint", str(broken), "--locales", str(LOCALES))
    assert result.exit_code == 0, result.output
    assert sorted(calls) == sorted(str(path) for path in broken.glob("*.yaml"))


PO_HEADER = """\
msgid ""
msgstr ""
"Language: sw\\n"
"Content-Type: text/plain; charset=UTF-8\\n"

"""


@pytest.fixture
def small(tmp_path) -> tuple[Path, Path]:
    """A flows directory whose texts fit one SMS, and a locales directory for Swahili."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "enrol.yaml").write_text(
        "questions:\n"
        "  - {id: language, type: language, ask: Language?}\n"
        "  - id: consent\n"
        "    type: consent\n"
        "    ask: Agree?\n"
        "    options: {agree: 'Yes', decline: 'No'}\n"
        "  - {id: workplace, type: workplace, ask: Code?}\n",
        encoding="utf-8",
    )
    (flows / "daily.yaml").write_text(
        "default: true\nquestions:\n  - id: safe\n    ask: Safe?\n"
        "    options: {yes: 'Yes', no: 'No'}\n",
        encoding="utf-8",
    )
    locales = tmp_path / "locales"
    (locales / "sw" / "LC_MESSAGES").mkdir(parents=True)
    write_po(locales, "")
    # Twilio has no Swahili voice: a clip for every voice prompt keeps lint's voice warning
    # (tests/test_audio.py) out of these tests.
    for said in every_utterance(load_flows(flows), Texts.load(locales), "sw"):
        clip = locales / "sw" / "audio" / f"{said.clip}.wav"
        clip.parent.mkdir(parents=True, exist_ok=True)
        clip.touch()
    return flows, locales


def write_po(locales: Path, body: str) -> Path:
    path = locales / "sw" / "LC_MESSAGES" / "flows.po"
    path.write_text(PO_HEADER + body, encoding="utf-8")
    return path


SW_COMPLETE = """\
msgid "Language?"
msgstr "Lugha?"

msgid "Agree?"
msgstr "Unakubali?"

msgid "Yes"
msgstr "Ndiyo"

msgid "No"
msgstr "Hapana"

msgid "Code?"
msgstr "Namba?"

msgid "Safe?"
msgstr "Salama?"
"""


def test_lint_is_silent_on_short_fully_translated_texts(cli, small):
    flows, locales = small
    write_po(locales, SW_COMPLETE)
    result = cli("flows", "lint", str(flows), "--locales", str(locales), "--strict")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_lint_warns_about_catalogs_and_strict_makes_it_fail(cli, small):
    flows, locales = small
    body = SW_COMPLETE.replace('msgid "Safe?"\nmsgstr "Salama?"\n', "")
    body = body.replace('msgid "No"', '#, fuzzy\nmsgid "No"')
    body += '\nmsgid "Gone?"\nmsgstr "Imeenda?"\n\n#~ msgid "Older?"\n#~ msgstr "Zamani?"\n'
    po = write_po(locales, body)
    lines = po.read_text(encoding="utf-8").splitlines()
    gone = lines.index('msgid "Gone?"') + 1
    older = lines.index('#~ msgid "Older?"') + 1
    fuzzy = lines.index('msgid "No"') + 1

    result = cli("flows", "lint", str(flows), "--locales", str(locales))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{flows / 'daily.yaml'}:4: warning: 'Safe?' is missing from {po}: workers choosing sw "
        "read the source text",
        f"{flows / 'daily.yaml'}:5: warning: 'No' is marked fuzzy in {po}:{fuzzy}: workers "
        "choosing sw read the source text",
        f"{po}:{gone}: warning: stale translation of 'Gone?': no flow uses it any more (extract "
        "and update the catalogs, TRANSLATING.md)",
        f"{po}:{older}: warning: stale translation of 'Older?': no flow uses it, delete it",
    ]
    strict = cli("flows", "lint", str(flows), "--locales", str(locales), "--strict")
    assert strict.exit_code == 1
    assert strict.stdout == result.stdout


def test_lint_warns_about_a_prompt_over_one_sms_segment(cli, small):
    flows, locales = small
    long_sw = "Je, unajisikia salama kazini kila siku ya wiki hii, hata usiku na mchana?"
    po = write_po(locales, SW_COMPLETE.replace('msgstr "Salama?"', f'msgstr "{long_sw}"'))
    line = po.read_text(encoding="utf-8").splitlines().index('msgid "Safe?"') + 1
    result = cli("flows", "lint", str(flows), "--locales", str(locales))
    assert result.exit_code == 0, result.output
    # 73 + len("\n1. Ndiyo\n2. Hapana") = 92 GSM-7 characters: one segment. Curly quotes make
    # the whole message UCS-2, where one segment holds 70.
    assert result.stdout == ""
    po.write_text(po.read_text(encoding="utf-8").replace("Je,", "“Je”,"), "utf-8")
    result = cli("flows", "lint", str(flows), "--locales", str(locales), "--strict")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{po}:{line}: warning: the SMS prompt for daily.safe in sw is 94 characters, over one "
        "SMS segment (70 when a character is outside GSM-7)"
    ]


def test_lint_reads_the_configured_locales_by_default(small, monkeypatch):
    flows, locales = small
    write_po(locales, SW_COMPLETE.replace('msgstr "Salama?"', 'msgstr ""'))
    monkeypatch.setenv("WORKERVOICE_FLOWS_DIR", str(flows))
    monkeypatch.setenv("WORKERVOICE_LOCALES_DIR", str(locales))
    result = CliRunner().invoke(main, ["flows", "lint"])
    assert result.exit_code == 0, result.output
    assert "'Safe?' is not translated in" in result.stdout


def test_lint_reports_a_catalog_the_service_would_refuse(cli, small):
    flows, locales = small
    po = write_po(locales, 'msgid "Safe?"\nmsgstr "Salama?\nnonsense\n')
    result = cli("flows", "lint", str(flows), "--locales", str(locales))
    assert result.exit_code == 1
    assert re.match(rf"{re.escape(str(po))}:\d+: cannot read catalog", result.stdout)
    po.write_bytes(PO_HEADER.encode() + b'msgid "Safe?"\nmsgstr "\xff"\n')
    result = cli("flows", "lint", str(flows), "--locales", str(locales))
    assert result.exit_code == 1
    assert f"{po}:1: not UTF-8 text" in result.stdout


# -- db upgrade and demo -------------------------------------------------------------------------
def test_db_upgrade_is_idempotent(cli, services):
    for _ in range(2):
        result = cli("db", "upgrade")
        assert result.exit_code == 0, result.output
        assert "database is up to date" in result.stdout
    with services.db.session() as session:
        version = session.scalar(text("SELECT version_num FROM alembic_version"))
        assert (
            version == ScriptDirectory.from_config(services.db.alembic_config()).get_current_head()
        )
        keys = session.scalars(select(PseudonymKey.status)).all()
    assert keys.count("current") == 1


def test_db_upgrade_builds_a_fresh_database_twice_over(tmp_path):
    config = Config.from_env(environ_for(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/new.db"))
    app = create_app(config)
    runner = app.test_cli_runner()
    for _ in range(2):
        result = runner.invoke(main, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
    services = app.extensions["workervoice"]
    with services.db.engine.connect() as connection:
        tables = set(inspect(connection).get_table_names())
        assert {"workplaces", "brands", "answers", "workers", "api_tokens"} <= tables
        assert connection.execute(text("SELECT count(*) FROM pseudonym_keys")).scalar() == 1
    services.db.dispose()


def demo_tokens(result) -> tuple[str, str]:
    assert result.exit_code == 0, result.output
    found = dict(re.findall(r"^(workplace|brand) token: (\S+)$", result.stdout, re.MULTILINE))
    return found["workplace"], found["brand"]


def test_demo_is_idempotent_and_prints_fresh_tokens(cli, client, services):
    first = demo_tokens(cli("demo", "--workers", "0"))  # the walk: tests/test_demo.py
    second = demo_tokens(cli("demo", "--workers", "0"))
    assert set(first).isdisjoint(second)
    for token in second:
        response = client.get("/api/v1/workplaces", headers=bearer(token))
        assert [w["id"] for w in response.get_json()["workplaces"]] == ["demo-garments"]
    with services.db.session() as session:
        assert session.scalars(select(Workplace.slug)).all() == ["demo-garments"]
        assert session.scalars(select(Brand.slug)).all() == ["demo-brand"]
        assert len(session.scalars(select(Grant)).all()) == 1
        assert len(session.scalars(select(ApiToken)).all()) == 2  # the old ones are gone


def test_demo_explains_a_clash_with_an_existing_workplace_code(cli, services):
    add_workplace(services, slug="real-mill", code="4321")
    one_line_error(cli("demo", "--workers", "0"), "4321")


def test_a_broken_flow_file_does_not_block_the_administrators_commands(tmp_path, broken):
    """Migrating, granting and revoking go on while a flow file is being fixed (the web server
    alone refuses to start on it)."""
    import subprocess
    import sys

    environ = {
        **environ_for(
            tmp_path,
            WORKERVOICE_FLOWS_DIR=str(broken),
            DATABASE_URL=f"sqlite:///{tmp_path}/admin.db",
        ),
        "PATH": "",
    }
    workervoice = str(Path(sys.executable).parent / "workervoice")
    done = subprocess.run(
        [workervoice, "db", "upgrade"], env=environ, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "database is up to date" in done.stdout


def test_demo_with_flows_that_do_not_load_is_one_clear_line(app, services, tmp_path, monkeypatch):
    """The walk needs the flows: with none, the demo says so before seeding anything."""
    empty = tmp_path / "no-flows"
    empty.mkdir()
    config = dataclasses.replace(services.config, flows_dir=empty)
    monkeypatch.setattr(services, "config", config)
    monkeypatch.delitem(services.__dict__, "registry", raising=False)
    result = app.test_cli_runner().invoke(main, ["demo", "--workers", "3"])
    one_line_error(result, "flows or catalogs refused", "enrolment flow is missing")
    with services.db.session() as session:
        assert session.scalars(select(Workplace.slug)).all() == []
