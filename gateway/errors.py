"""Error responses, one shape each: JSON ``{"error": ...}`` under /api/, one plain line elsewhere
(providers and operators read those). No traceback ever reaches a caller."""

from __future__ import annotations

from flask import Response, jsonify


def json_error(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


def plain_error(status: int, message: str) -> Response:
    return Response(
        message.splitlines()[0] + "\n" if message else "\n", status=status, mimetype="text/plain"
    )


def error_for(path: str, status: int, message: str) -> Response:
    """The error response in the shape the path's callers expect."""
    if path.startswith("/api/"):
        return json_error(status, message)
    return plain_error(status, message)
