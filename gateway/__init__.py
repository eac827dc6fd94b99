"""WorkerVoice gateway: the Flask app factory.

``create_app()`` reads and validates the configuration once, builds the shared services and
registers the webhooks, the reporting API and the operations endpoints. The web server, the RQ
worker and the CLI all build the app through it.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterable
from typing import IO, Any, NoReturn

from flask import Flask, request
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_set_header
from werkzeug.wsgi import get_content_length

from . import logs
from .config import Config, ConfigError
from .engine.definition import FlowError
from .errors import error_for, plain_error
from .i18n import CatalogError
from .services import EXTENSION, Services

log = logging.getLogger(__name__)


BOOT_ERROR = 3  # gunicorn's "worker failed to boot": the arbiter stops instead of respawning
MAX_BODY = 256 * 1024  # bytes; no provider request comes near it
DRAIN = 1024 * 1024  # bytes of a body over MAX_BODY read and dropped so the 413 reaches the caller


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
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.wsgi_app = BoundedBody(app.wsgi_app, MAX_BODY)  # type: ignore[method-assign]
    services = Services(config)
    if load_flows:
        services.registry  # load flows now: a bad set stops start-up  # noqa: B018
    app.extensions[EXTENSION] = services

    from . import metrics  # imported here, not above: gunicorn's config imports this package
    from .api import api
    from .audio_routes import audio
    from .channels import webhooks
    from .ops import ops

    metrics.install(app)  # first: every request is counted, whatever the others' hooks do
    app.register_blueprint(webhooks)
    app.register_blueprint(api)
    app.register_blueprint(ops)
    app.register_blueprint(audio)
    _register_errors(app)
    if load_flows:  # the web server: the hops answer from the cache, so make sure it is there
        from .directory_mirror import warm

        warm(services.mirror)
    return app


class BoundedBody:
    """WSGI middleware: a chunked request body is read here, at most one byte past ``limit``,
    and handed on as a body of known length. The size limit then applies to it as to a body
    with a Content-Length (413, nothing processed), where Werkzeug would cut the stream at the
    limit without a word and the request would be handled on what was left.

    A body over the limit is read on, up to DRAIN bytes, and dropped: a server closing the
    connection on unread data resets it, and the caller would never see the 413."""

    def __init__(self, app: Callable[..., Iterable[bytes]], limit: int):
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        length = get_content_length(environ)  # None when chunked
        try:
            if "chunked" in parse_set_header(environ.get("HTTP_TRANSFER_ENCODING")):
                body = _read(stream, self.limit + 1)
                if len(body) > self.limit:
                    _read(stream, DRAIN, keep=False)
                del environ["HTTP_TRANSFER_ENCODING"]
                environ["wsgi.input"] = io.BytesIO(body)
                environ["CONTENT_LENGTH"] = str(len(body))
            elif length is not None and length > self.limit:
                _read(stream, min(length, DRAIN), keep=False)  # never past the body's end
        except Exception:  # a broken chunk or a dropped connection: the caller's fault
            return plain_error(400, "malformed request body")(environ, start_response)
        return self.app(environ, start_response)


def _read(stream: IO[bytes], size: int, keep: bool = True) -> bytes:
    """Up to ``size`` bytes of the stream (fewer at its end); with ``keep=False`` read and
    dropped."""
    parts: list[bytes] = []
    while size > 0 and (data := stream.read(min(size, 64 * 1024))):
        if keep:
            parts.append(data)
        size -= len(data)
    return b"".join(parts)


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
