"""GET /api/v1/workplaces/<id>/indicators: figures, windows, CSV, and the 404 that says nothing.

The test config uses WORKERVOICE_REPORT_CUTOFF=now and k=5; the clock is frozen at NOW.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re

import pytest

from gateway.engine.definition import FlowSet
from store import directory

from ..support import SmsWorker, add_brand, add_workplace, bearer, run_jobs
from .helpers import NOW, add_answers, by_id, dhaka, freeze, indicator_ids

NOT_FOUND = {"error": "not found"}


def path(slug: str = "dhaka-knit", query: str = "") -> str:
    return f"/api/v1/workplaces/{slug}/indicators" + (f"?{query}" if query else "")


@pytest.fixture
def brand(services, monkeypatch) -> str:
    """A brand granted dhaka-knit but not hidden-mill; the clock frozen at NOW."""
    freeze(monkeypatch, services)
    add_workplace(services)
    add_workplace(services, slug="hidden-mill", code="8765")
    return add_brand(services, grants=("dhaka-knit",))


def seed(services) -> None:
    """Six respondents on long_hours (4 yes), five on pay_fairness (mean 3.4), three on respect."""
    add_answers(
        services,
        "long_hours",
        {
            "a": [("yes", dhaka(10)), ("no", dhaka(24))],  # latest in 7 days: no; the yes is older
            "b": [("yes", dhaka(24))],
            "c": [("yes", dhaka(23))],
            "d": [("yes", dhaka(22))],
            "e": [("yes", dhaka(21))],
            "f": [("no", dhaka(20))],
            "g": [("yes", dhaka(1))],  # only in the 30-day window
        },
    )
    add_answers(
        services,
        "pay_fairness",
        {
            "a": [(2, dhaka(24))],
            "b": [(3, dhaka(24))],
            "c": [(3, dhaka(24))],
            "d": [(4, dhaka(24))],
            "e": [(5, dhaka(24))],
        },
    )
    add_answers(
        services,
        "respect",
        {"a": [("yes", dhaka(24))], "b": [("no", dhaka(24))], "c": [("no", dhaka(24))]},
    )


# -- figures ------------------------------------------------------------------------------------
def test_figures_for_seven_days(client, services, brand):
    seed(services)
    response = client.get(path(query="days=7"), headers=bearer(brand))
    assert response.status_code == 200
    body = response.get_json()
    assert body["workplace"] == {"id": "dhaka-knit", "name": "Dhaka Knit", "country": "BD"}
    assert body["window"] == {
        "from": "2026-11-18T15:00:00+06:00",
        "to": "2026-11-25T15:00:00+06:00",
        "days": 7,
    }
    assert body["respondents"] == 6
    items = by_id(body)
    assert items["checkin.long_hours"] == {
        "id": "checkin.long_hours",
        "label": "Workers reporting days over 10 hours",
        "value": 0.6667,
        "respondents": 6,
        "suppressed": False,
    }
    assert items["checkin.pay_fairness"] == {
        "id": "checkin.pay_fairness",
        "label": "Pay fairness (mean, 1-5)",
        "value": 3.4,
        "respondents": 5,
        "suppressed": False,
    }
    assert items["checkin.respect"] == {
        "id": "checkin.respect",
        "label": "Workers reporting abuse or harassment by a supervisor",
        "value": None,
        "respondents": None,
        "suppressed": True,
    }


@pytest.mark.parametrize(
    ("query", "days", "start", "long_hours"),
    [
        ("", 30, "2026-10-26T15:00:00+06:00", (0.7143, 7)),
        ("days=7", 7, "2026-11-18T15:00:00+06:00", (0.6667, 6)),
        ("days=30", 30, "2026-10-26T15:00:00+06:00", (0.7143, 7)),
        ("days=90", 90, "2026-08-27T15:00:00+06:00", (0.7143, 7)),
    ],
)
def test_each_published_window(client, services, brand, query, days, start, long_hours):
    seed(services)
    body = client.get(path(query=query), headers=bearer(brand)).get_json()
    assert body["window"] == {"from": start, "to": NOW.isoformat(), "days": days}
    item = by_id(body)["checkin.long_hours"]
    assert (item["value"], item["respondents"]) == long_hours


def test_indicator_ids_are_flow_dot_question(client, services, brand):
    body = client.get(path(), headers=bearer(brand)).get_json()
    ids = [item["id"] for item in body["indicators"]]
    assert ids == indicator_ids(services)
    assert "checkin.long_hours" in ids and "checkin.pay_fairness" in ids
    assert all(re.fullmatch(r"[a-z0-9_-]+\.[a-z0-9_]+", i) for i in ids)
    assert body["respondents"] is None  # nobody has answered


def test_a_workplace_token_reads_its_own_figures(client, services, brand):
    seed(services)
    with services.db.session() as session:
        place = directory.workplace_by_slug(session, "dhaka-knit")
        token = directory.new_token(session, "workplace", workplace=place)
    body = client.get(path(query="days=7"), headers=bearer(token)).get_json()
    assert by_id(body)["checkin.long_hours"]["value"] == 0.6667


def test_csv_has_the_same_figures(client, services, brand):
    seed(services)
    body = client.get(path(query="days=7"), headers=bearer(brand)).get_json()
    response = client.get(path(query="days=7&format=csv"), headers=bearer(brand))
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "dhaka-knit-indicators-7d.csv" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["indicator"] for r in rows] == [i["id"] for i in body["indicators"]]
    for row, item in zip(rows, body["indicators"], strict=True):
        assert row["workplace"] == "dhaka-knit"
        assert (row["from"], row["to"], row["days"]) == (
            body["window"]["from"],
            body["window"]["to"],
            "7",
        )
        assert row["label"] == item["label"]
        assert row["value"] == ("" if item["value"] is None else str(item["value"]))
        assert row["respondents"] == (
            "" if item["respondents"] is None else str(item["respondents"])
        )
        assert row["suppressed"] == ("true" if item["suppressed"] else "false")
    by_indicator = {r["indicator"]: r for r in rows}
    assert by_indicator["checkin.long_hours"]["value"] == "0.6667"
    assert by_indicator["checkin.respect"]["value"] == ""


# -- bad requests, but only about a workplace the caller may see --------------------------------
@pytest.mark.parametrize(
    "query",
    [
        "days=14",
        "days=0",
        "days=-7",
        "days=7.0",
        "days=abc",
        "days=",
        "days=%C2%B2",
        "days=%D9%A3%D9%A0",
        "days=1e1",
        "days=" + "9" * 30,
        "format=xml",
        "format=CSV",
    ],
)
def test_other_windows_and_formats_are_400(client, brand, query):
    response = client.get(path(query=query), headers=bearer(brand))
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert set(response.get_json()) == {"error"}


QUERIES = [
    "",
    "days=7",
    "days=14",
    "days=abc",
    "days=%C2%B2",
    "format=csv",
    "format=xml",
    "days=90&format=csv",
    "lang=bn",
]


@pytest.mark.parametrize("query", QUERIES)
def test_hidden_and_missing_workplaces_answer_the_same_404(client, brand, query):
    hidden = client.get(path("hidden-mill", query), headers=bearer(brand))
    missing = client.get(path("no-such-place", query), headers=bearer(brand))
    for response in (hidden, missing):
        assert response.status_code == 404
        assert response.get_json() == NOT_FOUND
    assert hidden.get_data() == missing.get_data()
    assert hidden.headers["Content-Type"] == missing.headers["Content-Type"]
    assert hidden.headers["Content-Length"] == missing.headers["Content-Length"]


@pytest.mark.parametrize("query", QUERIES)
def test_a_workplace_cannot_see_another_workplace(client, services, brand, query):
    with services.db.session() as session:
        place = directory.workplace_by_slug(session, "dhaka-knit")
        token = directory.new_token(session, "workplace", workplace=place)
    hidden = client.get(path("hidden-mill", query), headers=bearer(token))
    missing = client.get(path("no-such-place", query), headers=bearer(token))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.get_data() == missing.get_data()
    assert hidden.get_json() == NOT_FOUND


BAD_SLUGS = [
    "a%00b",  # NUL: PostgreSQL refuses it in any text value
    "%00",
    "dhaka-knit%00",
    "a" * 64,  # one over the longest slug the CLI accepts
    "a" * 5000,
    "%C3%A9t%C3%A9",  # été
    "%E0%A6%A2%E0%A6%BE%E0%A6%95%E0%A6%BE",  # ঢাকা
    "dhaka%E2%80%90knit",  # a Unicode hyphen
    "Dhaka-Knit",
    "-dhaka-knit",
    "dhaka-knit%0A",
    "dhaka%20knit",
    "x",
]


@pytest.mark.parametrize("slug", BAD_SLUGS)
@pytest.mark.parametrize("query", ["", "days=14", "format=csv"])
def test_a_slug_that_cannot_be_a_workplace_is_the_same_404(client, brand, monkeypatch, slug, query):
    missing = client.get(path("no-such-place", query), headers=bearer(brand))

    def no_query(*_args, **_kwargs):
        raise AssertionError("an impossible slug reached the database")

    monkeypatch.setattr("gateway.api.visible_workplace", no_query)
    response = client.get(path(slug, query), headers=bearer(brand))
    assert response.status_code == 404
    assert response.get_json() == NOT_FOUND
    assert response.get_data() == missing.get_data()
    assert response.headers["Content-Type"] == missing.headers["Content-Type"]
    assert response.headers["Content-Length"] == missing.headers["Content-Length"]


def test_an_impossible_slug_without_a_token_is_still_401(client, brand):
    response = client.get(path("a%00b"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_longest_slug_the_cli_accepts_is_looked_up(client, services, brand):
    longest = "a" + "b" * 62
    add_workplace(services, slug=longest, code="5555")
    with services.db.session() as session:
        directory.grant(session, longest, "brand-a")
    response = client.get(path(longest), headers=bearer(brand))
    assert response.status_code == 200
    assert response.get_json()["workplace"]["id"] == longest


def test_revoking_removes_access_to_the_figures(client, services, brand):
    assert client.get(path(), headers=bearer(brand)).status_code == 200
    with services.db.session() as session:
        directory.revoke(session, "dhaka-knit", "brand-a")
    response = client.get(path(), headers=bearer(brand))
    missing = client.get(path("no-such-place"), headers=bearer(brand))
    assert response.status_code == 404
    assert response.get_data() == missing.get_data()


# -- end to end: answers by SMS count within the window ------------------------------------------
def test_answers_given_by_sms_count_with_cutoff_now(app, client, services, monkeypatch):
    # Ask every question today (no daily sample), so five workers reach k on every indicator.
    flows = services.registry.flows
    every_question = dataclasses.replace(flows["checkin"], sample=None)
    monkeypatch.setattr(
        services.registry, "flows", FlowSet(flows={**flows.flows, "checkin": every_question})
    )
    add_workplace(services)
    token = add_brand(services, grants=("dhaka-knit",))
    for n in range(5):
        worker = SmsWorker(client, f"+88017110001{n:02d}")
        reply = worker.enrol()
        for _ in range(12):
            if "Your answers are anonymous" in reply:
                break
            reply = worker.send("1")  # "Yes" to every choice, 1 to every number
        else:
            raise AssertionError(f"the check-in did not finish: {reply!r}")
    run_jobs(app)
    body = client.get(path(query="days=7"), headers=bearer(token)).get_json()
    assert body["respondents"] == 5
    assert [(i["id"], i["value"], i["respondents"]) for i in body["indicators"]] == [
        (indicator, 1.0, 5) for indicator in indicator_ids(services)
    ]
