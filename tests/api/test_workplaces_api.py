"""GET /api/v1/workplaces: each token sees exactly the workplaces it may (SPEC §6, §7)."""

from __future__ import annotations

import pytest

from store import directory

from ..support import add_brand, add_workplace, bearer

LIST = "/api/v1/workplaces"


def slugs(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [w["id"] for w in response.get_json()["workplaces"]]


@pytest.fixture
def places(services) -> dict[str, str]:
    """Three workplaces and their tokens."""
    return {
        slug: add_workplace(services, slug=slug, code=code, country=country, timezone=zone)
        for slug, code, country, zone in [
            ("dhaka-knit", "4321", "BD", "Asia/Dhaka"),
            ("chennai-dye", "5678", "IN", "Asia/Kolkata"),
            ("nairobi-cut", "9012", "KE", "Africa/Nairobi"),
        ]
    }


def test_a_brand_lists_only_the_workplaces_granted_to_it(client, services, places):
    token = add_brand(services, grants=("nairobi-cut", "dhaka-knit"))
    add_brand(services, slug="brand-b", grants=("chennai-dye",))
    response = client.get(LIST, headers=bearer(token))
    assert response.get_json() == {
        "workplaces": [
            {"id": "dhaka-knit", "name": "Dhaka Knit", "country": "BD"},
            {"id": "nairobi-cut", "name": "Nairobi Cut", "country": "KE"},
        ]
    }


def test_a_brand_without_grants_sees_an_empty_list(client, services, places):
    assert slugs(client.get(LIST, headers=bearer(add_brand(services)))) == []


def test_a_workplace_lists_only_itself(client, places):
    for slug, token in places.items():
        assert slugs(client.get(LIST, headers=bearer(token))) == [slug]


def test_an_operator_lists_every_workplace(client, services, places):
    with services.db.session() as session:
        token = directory.new_token(session, "operator", label="ops")
    assert slugs(client.get(LIST, headers=bearer(token))) == sorted(places)


def test_revoking_a_grant_removes_the_workplace_from_the_list(client, services, places):
    token = add_brand(services, grants=("dhaka-knit", "chennai-dye"))
    with services.db.session() as session:
        assert directory.revoke(session, "dhaka-knit", "brand-a") is True
    assert slugs(client.get(LIST, headers=bearer(token))) == ["chennai-dye"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer   "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer wv_not-a-token-anyone-was-given"},
        {"Authorization": "Bearer \u00e9\u00e8"},
    ],
)
@pytest.mark.parametrize("path", [LIST, "/api/v1/workplaces/dhaka-knit/indicators"])
def test_a_missing_or_unknown_token_is_401_json(client, places, headers, path):
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/json"
    assert set(response.get_json()) == {"error"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_scheme_is_case_insensitive(client, places):
    token = places["dhaka-knit"]
    assert slugs(client.get(LIST, headers={"Authorization": f"bearer {token}"})) == ["dhaka-knit"]


def test_a_token_of_a_deleted_brand_no_longer_works(client, services, places):
    from sqlalchemy import delete

    from store.models import Brand

    token = add_brand(services, grants=("dhaka-knit",))
    with services.db.session() as session:
        session.execute(delete(Brand).where(Brand.slug == "brand-a"))
    assert client.get(LIST, headers=bearer(token)).status_code == 401
