"""``workervoice worker``, ``demo`` and ``simulate``: running the service, seeding a demo, and
being a worker's phone."""

from __future__ import annotations

import os
import socket

import click
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from store import directory
from store.models import ApiToken, Brand, Workplace

from .cli import main, services
from .services import Services


# -- processes -------------------------------------------------------------------------------
@main.command()
@click.option("--burst", is_flag=True, help="exit when the queues are empty")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="serve the workers' job metrics on this port (when they do not share "
    "PROMETHEUS_MULTIPROC_DIR with the web on one machine)",
)
@click.option(
    "--queues",
    "queue_names",
    help="serve only these queues (comma-separated: persist, outbound, calls) in this one "
    "process; without it, one process per group of queues is started and kept running",
)
@with_appcontext
def worker(burst, metrics_port, queue_names) -> None:
    """Run the RQ workers (the Procfile's worker process): one gateway.queues.Worker process per
    group of queues (two for persist, one for outbound and calls), restarted if one dies; each
    hands back the jobs of workers that died within 20 s."""
    from . import queues

    svc = services()
    if svc.config.embedded_redis:
        raise click.ClickException(
            "REDIS_URL is not set: the embedded default runs jobs in the "
            "web process, no separate worker is needed"
        )
    if not queue_names:
        from .supervisor import supervise

        raise SystemExit(supervise(queues.GROUPS, burst=burst, metrics_port=metrics_port))
    names = [name.strip() for name in queue_names.split(",") if name.strip()]
    unknown = sorted(set(names) - set(queues.QUEUES))
    if unknown or not names:
        raise click.BadParameter(
            f"unknown queue {', '.join(unknown) or '(none)'}; the queues are "
            + ", ".join(queues.QUEUES),
            param_hint="--queues",
        )
    _work(svc, names, burst, metrics_port)


def _work(svc: Services, names: list[str], burst: bool, metrics_port: int | None) -> None:
    from . import directory_mirror, metrics
    from .queues import Worker

    # The scheduler moves retried and delayed jobs (outbound.SEND_RETRY, callbacks) back when
    # due. A readable name (rq's default is a uuid, whose digit runs log redaction would blank).
    name = f"workervoice.{'+'.join(names)}.{socket.gethostname()}.{os.getpid()}"
    directory_mirror.warm(svc.mirror)  # Redis lost the cache: put it back before the first job
    if metrics_port:
        metrics.serve(metrics_port)
    # metrics.job_failed counts each failure and retry, then lets RQ's own handling go on.
    rq_worker = Worker(
        names, connection=svc.redis, name=name, exception_handlers=[metrics.job_failed]
    )
    rq_worker.work(burst=burst, logging_level="INFO", with_scheduler=True)


@main.command()
@click.option(
    "--workers",
    default=36,
    show_default=True,
    type=click.IntRange(0, 500),
    help="simulated workers who answer over the last days (0: none)",
)
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 90))
@with_appcontext
def demo(workers, days) -> None:
    """Seed a demo workplace and brand (idempotent), print fresh tokens for both, and walk
    simulated workers through real conversations on every channel over the last days, so the
    demo brand sees real figures at once."""
    from flask import current_app

    from .demo import walk
    from .engine.definition import FlowError
    from .i18n import CatalogError

    if workers:  # the walk needs the flows: a flow set that does not load is one clear line
        try:
            services().registry.current()
        except (FlowError, CatalogError) as exc:
            raise click.ClickException(
                f"flows or catalogs refused: {str(exc).splitlines()[0]} "
                "(see 'workervoice flows lint')"
            ) from None
    try:
        workplace_token, brand_token = _seed_demo(services())
    except (IntegrityError, directory.DirectoryError):
        raise click.ClickException("another workplace already uses the demo code 4321") from None
    click.echo("demo workplace: demo-garments (enrolment code 4321)")
    click.echo(f"workplace token: {workplace_token}")
    click.echo("demo brand: demo-brand (granted demo-garments)")
    click.echo(f"brand token: {brand_token}")
    if workers:
        walked = walk(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            "4321",
            "Asia/Dhaka",
            workers=workers,
            days=days,
        )
        click.echo(
            f"{walked.workers} simulated workers answered in {walked.conversations} "
            f"conversations ({walked.hops} requests) over the last {days} days"
        )


def _seed_demo(svc: Services) -> tuple[str, str]:
    with svc.db.session() as session:
        place = session.scalar(select(Workplace).where(Workplace.slug == "demo-garments"))
        if place is None:
            place, _ = directory.add_workplace(
                session,
                "demo-garments",
                name="Demo Garments Ltd",
                country="BD",
                code="4321",
                timezone="Asia/Dhaka",
                languages=["bn", "en"],
            )
        buyer = session.scalar(select(Brand).where(Brand.slug == "demo-brand"))
        if buyer is None:
            buyer, _ = directory.add_brand(
                session, "demo-brand", name="Demo Brand", email="reports@example.org"
            )
        # every token of the demo records goes: only the fresh ones printed below work
        session.query(ApiToken).filter(
            (ApiToken.workplace_id == place.id) | (ApiToken.brand_id == buyer.id)
        ).delete()
        workplace_token = directory.new_token(session, "workplace", workplace=place, label="demo")
        brand_token = directory.new_token(session, "brand", brand=buyer, label="demo")
    with svc.db.session() as session:
        directory.grant(session, "demo-garments", "demo-brand")
    return workplace_token, brand_token


@main.command()
@click.argument("channel", type=click.Choice(["sms", "ussd", "voice"]))
@click.argument("phone")
@click.option(
    "--url",
    default="http://localhost:5000",
    show_default=True,
    help="where the service is listening",
)
@with_appcontext
def simulate(channel, phone, url) -> None:
    """Be the worker PHONE on a running service: text it (sms), dial its USSD code (ussd) or
    call it (voice), through the real webhooks, signed as the provider signs them."""
    from . import simulate as simulator

    config = services().config
    if channel == "ussd":
        if not config.at_webhook_token:
            raise click.ClickException("AT_WEBHOOK_TOKEN is not set: the simulator sends it")
        simulator.run_ussd(url, config.at_webhook_token, phone)
        return
    if not config.twilio_auth_token:
        raise click.ClickException("TWILIO_AUTH_TOKEN is not set: the simulator signs with it")
    if channel == "voice":
        simulator.run_voice(
            url,
            config.public_url,
            config.twilio_auth_token,
            phone,
            simulator.Clips(config.locales_dir),
        )
    else:
        simulator.run(url, config.public_url, config.twilio_auth_token, phone)
