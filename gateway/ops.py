"""Operations endpoints: GET /healthz and GET /metrics (SPEC §9)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from . import metrics
from .queues import QUEUES
from .services import current

ops = Blueprint("ops", __name__)
log = logging.getLogger(__name__)
REPORTED_QUEUES = QUEUES


@ops.get("/healthz")
def healthz():
    services = current()
    checks: dict[str, str] = {}
    try:
        services.db.ping()
        checks["database"] = "ok"
    except Exception as exc:  # any failure means unhealthy; name the part, not the secret
        log.warning("health: database failing: %s", type(exc).__name__)
        checks["database"] = "failing"
    waiting = None
    try:
        waiting = services.events.waiting()
        checks["redis"] = "ok"
    except Exception as exc:
        log.warning("health: redis failing: %s", type(exc).__name__)
        checks["redis"] = "failing"
    failing = [name for name, state in checks.items() if state != "ok"]
    body: dict[str, object] = {"status": "ok" if not failing else "failing", "checks": checks}
    if waiting is not None:
        body["events_waiting"] = waiting  # requests' events not yet in the database
    if failing:
        body["failing"] = failing
    return jsonify(body), 503 if failing else 200


@ops.get("/metrics")
def metrics_text():
    """Prometheus text format: every process's request and job counters, the queue gauges."""
    body, content_type = metrics.exposition(current().redis, REPORTED_QUEUES)
    return Response(body, content_type=content_type)
