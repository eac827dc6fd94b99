"""Reporting API v1 (SPEC §7): what brands and workplaces see.

A workplace the caller may not see answers exactly like one that does not exist:
404 ``{"error": "not found"}``, whatever was asked.
"""

from __future__ import annotations

import csv
import io
import re
from functools import wraps

from flask import Blueprint, Response, g, jsonify, request

from aggregator.indicators import WINDOW_DAYS, indicators, window
from store.directory import SLUG, principal_for, visible_workplace, visible_workplaces
from store.models import Workplace

from ..errors import json_error
from ..services import current

api = Blueprint("api", __name__, url_prefix="/api/v1")


def authenticated(view):
    """Resolve the bearer token into ``g.principal``; 401 when absent or unknown."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _unauthorized("a bearer token is required")
        with current().db.session() as session:
            principal = principal_for(session, token.strip())
        if principal is None:
            return _unauthorized("unknown token")
        g.principal = principal
        return view(*args, **kwargs)

    return wrapper


def _unauthorized(message: str) -> Response:
    response = json_error(401, message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="workervoice"'
    return response


def describe(workplace: Workplace) -> dict:
    return {"id": workplace.slug, "name": workplace.name, "country": workplace.country}


@api.get("/workplaces")
@authenticated
def list_workplaces():
    with current().db.session() as session:
        workplaces = [describe(w) for w in visible_workplaces(session, g.principal)]
    return jsonify({"workplaces": workplaces})


@api.get("/workplaces/<slug>/indicators")
@authenticated
def workplace_indicators(slug: str):
    if not SLUG.fullmatch(slug):
        return json_error(404, "not found")
    services = current()
    with services.db.session() as session:
        workplace = visible_workplace(session, g.principal, slug)
        if workplace is None:
            return json_error(404, "not found")
        days = _days(request.args.get("days", "30"))
        if days is None:
            return json_error(400, "days must be one of " + ", ".join(map(str, WINDOW_DAYS)))
        output = request.args.get("format", "json")
        if output not in ("json", "csv"):
            return json_error(400, "format must be json or csv")
        flows, texts = services.registry.current()
        language = request.args.get("lang")
        win = window(services.config.report_cutoff, days, services.now(), workplace.timezone)
        body = {
            "workplace": describe(workplace),
            **indicators(
                session,
                workplace,
                flows,
                win,
                services.config.min_respondents,
                label=lambda text: texts.report(language, text),
            ),
        }
    if output == "csv":
        return _csv(body)
    return jsonify(body)


def _days(text: str) -> int | None:
    """The window length asked for, or None unless it is one we publish. ASCII digits only:
    ``str.isdigit`` also accepts characters like '²' that ``int`` then refuses."""
    if not re.fullmatch(r"[0-9]{1,3}", text):
        return None
    days = int(text)
    return days if days in WINDOW_DAYS else None


def _csv(body: dict) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "workplace",
            "from",
            "to",
            "days",
            "indicator",
            "label",
            "value",
            "respondents",
            "suppressed",
        ]
    )
    win = body["window"]
    for item in body["indicators"]:
        writer.writerow(
            [
                body["workplace"]["id"],
                win["from"],
                win["to"],
                win["days"],
                item["id"],
                item["label"],
                "" if item["value"] is None else item["value"],
                "" if item["respondents"] is None else item["respondents"],
                "true" if item["suppressed"] else "false",
            ]
        )
    filename = f"{body['workplace']['id']}-indicators-{win['days']}d.csv"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
