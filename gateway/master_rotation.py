"""Master key rotation (``workervoice keys rotate-master``, SPEC §8): everything stored under the
master key is re-encrypted under the new ``WORKERVOICE_MASTER_KEY``, the old one being
``WORKERVOICE_MASTER_KEY_PREVIOUS``, with no downtime.

Every process given both keys decrypts under either (a row names its master key) and encrypts
under the new one only, so the service keeps answering while this runs. It goes through the
pseudonym keys' material, then the vault's contacts, ``batch`` rows at a time, each batch its own
commit: interrupted, it is run again and carries on with what is left. Each row is replaced only
if it did not change meanwhile (a key destroyed, a contact forgotten or moved), so it is safe
next to the clock, the drain and another run. A re-encrypted key is the same key: the ring in
Redis gets its new ciphertext at each commit (gateway/directory_mirror.py), and each process's
KeyRing decrypts it to the same material, so no pseudonym changes.

Sealed job tokens (replies, callbacks) are not stored rows: those sealed under the previous key
open under it until they expire (an hour), so the previous key is kept that long afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from store import master_keys
from store.master_keys import CONTACTS, KEYS, Table

from .crypto import CryptoError
from .identity import KEY_PURPOSE, context
from .outbound import RECIPIENT_TTL_SECONDS

log = logging.getLogger(__name__)

BATCH_SIZE = 100  # rows per commit
SEALED_TTL_SECONDS = RECIPIENT_TTL_SECONDS  # how long a job token sealed before may still come


class RotationRefused(Exception):
    """Rows need a master key this process does not hold; the message says which to set."""


@dataclass
class Progress:
    table: Table
    done: int  # rows re-encrypted by this run so far
    total: int  # rows this run found to do


@dataclass
class Rotated:
    master_key_id: str  # everything is under this master key now
    done: dict[str, int] = field(default_factory=dict)  # rows re-encrypted, by table name


def rotate_master(
    services, batch: int = BATCH_SIZE, progress: Callable[[Progress], None] = lambda p: None
) -> Rotated:
    """Re-encrypt every stored row still under another master key; RotationRefused before
    changing anything if some are under a key this process does not hold."""
    if batch < 1:
        raise ValueError("the batch size must be at least 1")
    crypto = services.crypto
    totals = {table.name: _check(services, table) for table in master_keys.TABLES}
    rotated = Rotated(crypto.master_key_id)
    for table in master_keys.TABLES:
        rotated.done[table.name] = 0
        while True:
            with services.db.session() as session:
                rows = master_keys.pending(session, table, crypto.master_key_id, batch)
                for ident, blob, was_under in rows:
                    fresh = _reencrypt(services, table, ident, blob, was_under)
                    if master_keys.replace(
                        session, table, ident, blob, fresh, crypto.master_key_id
                    ):
                        rotated.done[table.name] += 1
            if not rows:
                break
            progress(Progress(table, rotated.done[table.name], totals[table.name]))
    # Callback numbers are named in Redis under both master keys from here on.
    services.mirror.publish_directory()
    log.info(
        "master key rotation done",
        extra={"master_key": crypto.master_key_id, "rows": sum(rotated.done.values())},
    )
    return rotated


def _check(services, table: Table) -> int:
    """How many rows of ``table`` are to do; RotationRefused if some are under a master key
    this process does not hold (rows naming none are tried under both, row by row)."""
    crypto = services.crypto
    with services.db.session() as session:
        counts = master_keys.count_pending(session, table, crypto.master_key_id)
    for name, count in counts.items():
        if name is None or crypto.holds(name):
            continue
        if crypto.previous_key_id is None:
            raise RotationRefused(
                f"{count} {table.name} are under master key {name}, and "
                "WORKERVOICE_MASTER_KEY_PREVIOUS is not set: set it to the key being replaced"
            )
        raise RotationRefused(
            f"{count} {table.name} are under master key {name}, which is neither "
            f"WORKERVOICE_MASTER_KEY ({crypto.master_key_id}) nor WORKERVOICE_MASTER_KEY_PREVIOUS "
            f"({crypto.previous_key_id})"
        )
    return sum(counts.values())


def _reencrypt(services, table: Table, ident, blob: bytes, was_under: str | None) -> bytes:
    """The row's plaintext under the new master key (never leaves this function in clear)."""
    crypto = services.crypto
    try:
        if table is KEYS:
            secret = crypto.decrypt(blob, KEY_PURPOSE, context(ident), was_under)
            return crypto.encrypt(secret, KEY_PURPOSE, context(ident))
        if table is CONTACTS:
            return services.vault.reseal(blob, was_under, ident, ident)[0]
    except CryptoError:
        raise RotationRefused(
            f"a row of the {table.name} opens under neither WORKERVOICE_MASTER_KEY nor "
            "WORKERVOICE_MASTER_KEY_PREVIOUS: set the previous variable to the key being replaced"
        ) from None
    raise ValueError(f"no re-encryption for {table.name}")
