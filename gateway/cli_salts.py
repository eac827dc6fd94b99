"""``workervoice salts status | rotate``, ``workervoice keys rotate-master`` and ``workervoice
clock`` (SPEC §2, §8): the pseudonym key ring seen and rotated by an operator, the master key
replaced under everything stored (gateway/master_rotation.py), and the process that rotates
and destroys keys on schedule (gateway/keys.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import click
from flask.cli import with_appcontext

from store import keyring as stored_keys
from store.db import as_utc

from .cli import main, services
from .keys import KeyKeeper, run_clock
from .master_rotation import (
    BATCH_SIZE,
    SEALED_TTL_SECONDS,
    Progress,
    RotationRefused,
    rotate_master,
)


@main.group()
def salts() -> None:
    """The pseudonym key ring (the HMAC keys pseudonyms are made under)."""


@salts.command("status")
@with_appcontext
def salts_status() -> None:
    """Each key: its id, status, when it was made, took over, retired and was destroyed."""
    svc = services()
    with svc.db.session() as session:
        keys = stored_keys.every_key(session)
    if not keys:
        raise click.ClickException("the key ring is empty: run 'workervoice db upgrade'")
    period, grace = svc.config.salt_period_days, svc.config.salt_grace_days
    click.echo(f"rotation every {period} day(s); a previous key survives {grace} day(s)")
    click.echo(
        f"{'id':>4}  {'status':<10} {'created':<20} {'took over':<20} "
        f"{'retired':<20} {'destroyed':<20}"
    )
    for key in keys:
        click.echo(
            f"{key.id:>4}  {key.status:<10} {_when(key.created_at):<20} "
            f"{_when(key.activates_at or key.created_at):<20} {_when(key.retired_at):<20} "
            f"{_when(key.destroyed_at):<20}"
        )
    for key in keys:
        if key.status == stored_keys.CURRENT:
            due = as_utc(key.activates_at or key.created_at) + timedelta(days=period)
            click.echo(f"next rotation: {_when(due)}")
        elif key.status == stored_keys.PREVIOUS and key.retired_at is not None:
            ends = as_utc(key.retired_at) + timedelta(days=grace)
            click.echo(f"key {key.id} destroyed at: {_when(ends)}")


@salts.command("rotate")
@with_appcontext
def salts_rotate() -> None:
    """Rotate now: a new key takes over in a few seconds, in every process at once. With
    WORKERVOICE_SALT_GRACE_DAYS=0 the old key is destroyed as it retires (this waits for it)."""
    svc = services()
    keeper = KeyKeeper(svc)
    rotated = keeper.rotate(svc.now())
    if rotated is None:
        raise click.ClickException("no current key to rotate: run 'workervoice db upgrade'")
    click.echo(
        f"key {rotated.new} made; it takes over from key {rotated.old} at "
        f"{_when(rotated.activates_at)}"
    )
    grace = svc.config.salt_grace_days
    if grace:
        ends = rotated.activates_at + timedelta(days=grace)
        click.echo(f"key {rotated.old} is destroyed after its grace period, at {_when(ends)}")
        return
    time.sleep(max(0.0, (rotated.activates_at - svc.now()).total_seconds()))
    destroyed = keeper.destroy_due(max(svc.now(), rotated.activates_at))
    for done in destroyed:
        click.echo(
            f"key {done.key_id} destroyed ({done.profiles} profile(s) of workers who had not "
            f"come back and {done.contacts} contact(s) deleted with it)"
        )


@main.group()
def keys() -> None:
    """The master key (WORKERVOICE_MASTER_KEY) that encrypts the key ring and the contact vault."""


@keys.command("rotate-master")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=BATCH_SIZE,
    show_default=True,
    help="rows re-encrypted per commit",
)
@with_appcontext
def keys_rotate_master(batch_size: int) -> None:
    """Re-encrypt the key ring and the contact vault under WORKERVOICE_MASTER_KEY, reading what
    is still under WORKERVOICE_MASTER_KEY_PREVIOUS. Every process must have been restarted with
    both first; the service keeps answering meanwhile. Run it again if it is interrupted: it
    carries on with what is left."""
    svc = services()

    def report(progress: Progress) -> None:
        click.echo(f"{progress.table.name}: {progress.done}/{progress.total} re-encrypted")

    try:
        rotated = rotate_master(svc, batch_size, report)
    except RotationRefused as refused:
        raise click.ClickException(str(refused)) from None
    done = ", ".join(f"{count} {name}" for name, count in rotated.done.items())
    click.echo(f"done: {done} re-encrypted; all is under master key {rotated.master_key_id}")
    if svc.config.master_key_previous is not None:
        click.echo(
            "keep WORKERVOICE_MASTER_KEY_PREVIOUS set for "
            f"{SEALED_TTL_SECONDS // 60} more minutes (replies and callbacks queued before may "
            "be sealed under it), then remove it and restart every process"
        )


@main.command()
@click.option("--once", is_flag=True, help="one tick, then exit")
@with_appcontext
def clock(once) -> None:
    """Run the clock (the Procfile's clock process): rotates the pseudonym key every
    WORKERVOICE_SALT_PERIOD_DAYS and destroys a previous key after its grace period. Safe to
    run more than once at a time."""
    run_clock(services(), once=once)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return as_utc(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
