"""WorkerVoice gateway: the Flask app factory.

``create_app()`` reads and validates the configuration once, builds the shared services and
registers the webhooks, the reporting API and the operations endpoints. The web server, the RQ
worker and the CLI all build the app through it.
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

from flask import Flask, request
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from . import logs
from .config import Config, ConfigError
from .engine.definition import FlowError
from .errors import error_for
from .i18n import CatalogError
from .services import EXTENSION, Services

log = logging.getLogger(__name__)


BOOT_ERROR = 3  # gunicorn's "worker failed to boot": the arbiter stops instead of respawning


def create_app(config: Config | None = None, *, load_flows: bool = True) -> Flask:
    """The app for ``config``; without one, read from the environment, where a bad value or a
    flow set that does not load stops the process with one clear line (SPEC §2, §4).

    The web server loads the flows at once; the CLI and the worker pass ``load_flows=False``:
    granting a brand or persisting answers must not wait on a typo in a flow file."""
    if config is not None:
        return _build(config, load_flows)
    try:
        return _build(Config.from_env(), load_flows)
    except ConfigError as exc:
        _refuse(f"configuration error: {exc}")
    except CatalogError as exc:
        _refuse(f"catalog refused: {exc}")
    except FlowError as exc:
        _refuse(
            f"flow files refused ({len(exc.findings)} error(s), first {exc.findings[0]}); "
            "run 'workervoice flows lint' to see them all"
        )


def _refuse(line: str) -> NoReturn:
    print(line, file=sys.stderr, flush=True)
    raise SystemExit(BOOT_ERROR)


def _build(config: Config, load_flows: bool = True) -> Flask:
    logs.configure(config.production)
    if config.report_cutoff == "now":
        log.warning(
            "WORKERVOICE_REPORT_CUTOFF=now: published figures move with every answer "
            "(demos and tests only)"
        )
    if config.embedded_redis:
        log.warning(
            "REDIS_URL is not set: using the embedded in-process Redis emulation "
            "(single-process demo only)"
        )
    app = Flask(__name__, instance_path=str(config.instance_dir))
    app.config["MAX_CONTENT_LENGTH"] = 256 * 1024
    services = Services(config)
    if load_flows:
        services.registry  # load flows now: a bad set stops start-up  # noqa: B018
    app.extensions[EXTENSION] = services

    from .api import api
    from .channels import webhooks
    from .ops import ops

    app.register_blueprint(webhooks)
    app.register_blueprint(api)
    app.register_blueprint(ops)
    _register_errors(app)
    return app


def _register_errors(app: Flask) -> None:
    """No request ever produces a traceback to the caller: errors are one line."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        message = (exc.description or exc.name).split("\n")[0]
        if exc.code == 404 and request.path.startswith("/api/"):
            message = "not found"  # one 404 body for everything the caller may not see
        return error_for(request.path, exc.code or 500, message)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        unavailable = isinstance(exc, OperationalError | RedisError)
        if unavailable:  # the database or Redis is down: the caller may retry
            log.error(
                "%s on %s %s: %s",
                type(exc).__name__,
                request.method,
                request.path,
                str(exc).splitlines()[0][:200],
            )
        else:
            log.exception("unhandled error on %s %s", request.method, request.path)
        message = "temporarily unavailable" if unavailable else "internal error"
        return error_for(request.path, 503 if unavailable else 500, message)
