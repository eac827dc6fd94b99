"""The contact vault (SPEC §6): for a worker who opted in to be contacted later (callbacks,
reminders, prize draws, feedback), their E.164 number as AES-GCM ciphertext, kept under their
pseudonym in the database (store/vault.py holds the rows and their lifecycle).

- The key is its own HKDF subkey of the master key (purpose ``contact-vault``), apart from the
  key ring's and the sealed job tokens'.
- The pseudonym is the associated data: a row copied under another worker's pseudonym does not
  open, so a grace migration reseals the number for the new pseudonym (``reseal``).
- Each row names the master key it is under (``master_key_id``); ``keys rotate-master``
  re-encrypts what is still under the previous one (gateway/master_rotation.py).
- A job that must reach a worker later carries the pseudonym as the vault reference and calls
  ``number_for`` when it runs; the number is never in its payload, Redis or a log line.

How a number gets in: a worker answers "agree" to a flow's contact question (``type:
contact``). The hop, which has the number and runs no SQL, seals it into the event log's entry
as a token that expires (``seal_intake``: AES-GCM, purpose ``contact-intake``,
INTAKE_TTL_SECONDS); the drain opens it and seals it for the vault under the pseudonym
(``admit``), and store/jobs.py keeps it. A token whose drain came too late is dropped, never
opened: the worker is asked again next time they are asked.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from store import vault as stored
from store.db import Database

from .crypto import Crypto, CryptoError
from .engine.events import ContactAgreed
from .engine.model import CONTACT_PURPOSES
from .identity import InvalidAddress, Number, e164

log = logging.getLogger(__name__)

PURPOSE = "contact-vault"
INTAKE_PURPOSE = "contact-intake"  # the hop's token in the event log, opened by the drain only
# Longer than any drain waits (an outage of the database keeps entries in the log); an entry
# kept for inspection (gateway/persistence.DEAD_KEY) holds a token that no longer opens.
INTAKE_TTL_SECONDS = 7 * 86400
PURPOSES = frozenset(CONTACT_PURPOSES)  # what a worker may agree to be contacted for


@dataclass(frozen=True)
class Sealed:
    ciphertext: bytes
    master_key_id: str  # the master key it is under


def _context(pseudonym: str) -> bytes:
    return b"contact:" + pseudonym.encode()


class ContactVault:
    """Seals and opens numbers bound to their pseudonyms, and keeps them in the database."""

    def __init__(self, crypto: Crypto, database: Database, clock: Callable[[], datetime]):
        self.crypto = crypto
        self.database = database
        self.clock = clock

    def seal(self, address: str, pseudonym: str) -> Sealed:
        """The number (any provider format, made E.164) sealed for ``pseudonym``."""
        blob = self.crypto.encrypt(e164(address).encode(), PURPOSE, _context(pseudonym))
        return Sealed(blob, self.crypto.master_key_id)

    def open(self, ciphertext: bytes, pseudonym: str, master_key_id: str | None = None) -> str:
        """The E.164 number; CryptoError if the ciphertext is not ``pseudonym``'s."""
        return self.crypto.decrypt(ciphertext, PURPOSE, _context(pseudonym), master_key_id).decode()

    def reseal(
        self, ciphertext: bytes, master_key_id: str, old: str, new: str
    ) -> tuple[bytes, str]:
        """The number sealed for ``old`` sealed again for ``new`` under the current master key
        (store/vault.Reseal: grace migration, and ``rotate-master`` with old == new)."""
        number = self.open(ciphertext, old, master_key_id)
        blob = self.crypto.encrypt(number.encode(), PURPOSE, _context(new))
        return blob, self.crypto.master_key_id

    def seal_intake(self, address: str | Number) -> str | None:
        """The hop's token for a worker who agreed to be contacted: their number (as sent, or
        already read), sealed to expire (None if the address is no phone number, e.g. a
        WhatsApp username)."""
        try:
            number = e164(address)
        except InvalidAddress:
            return None
        return self.crypto.seal(number, INTAKE_PURPOSE, INTAKE_TTL_SECONDS)

    def admit(self, batches: list[dict]) -> None:
        """The drain's step before the database: each agreement's token (``sealed``) replaced
        by the vault's ciphertext for the entry's pseudonym (``ciphertext``, base64, and
        ``master_key_id``), or by nothing when it no longer opens (store/jobs.py then keeps no
        contact)."""
        for batch in batches:
            for event in batch["events"]:
                if event.get("kind") != ContactAgreed.kind:
                    continue
                token = event.pop("sealed", None)
                try:
                    number = self.crypto.unseal(token, INTAKE_PURPOSE) if token else None
                except CryptoError:
                    number = None
                if number is None:
                    log.warning("a contact agreement came without a number that opens: not kept")
                    continue
                sealed = self.seal(number, batch["pseudonym"])
                event["ciphertext"] = base64.b64encode(sealed.ciphertext).decode()
                event["master_key_id"] = sealed.master_key_id

    def keep(self, address: str, pseudonym: str, key_id: int, purposes: Iterable[str]) -> None:
        """Store the worker's number for what they agreed to (a subset of PURPOSES), replacing
        what they had. ``address`` is the number they are pseudonymised from."""
        chosen = sorted(set(purposes))
        unknown = set(chosen) - PURPOSES
        if not chosen or unknown:
            raise ValueError(f"contact purposes must be some of {sorted(PURPOSES)}")
        sealed = self.seal(address, pseudonym)
        with self.database.session() as session:
            stored.keep(
                session,
                pseudonym,
                key_id,
                sealed.ciphertext,
                sealed.master_key_id,
                chosen,
                at=self.clock(),
            )

    def number_for(self, pseudonym: str, purpose: str | None = None) -> str | None:
        """The number of the worker under ``pseudonym`` (the vault reference a job carries), or
        None if they have no contact (never opted in, stopped, or their key was destroyed), or
        did not agree to ``purpose``."""
        with self.database.session() as session:
            contact = stored.entry(session, pseudonym)
            if contact is None or (purpose is not None and purpose not in contact.purposes):
                return None
            ciphertext, master_key_id = contact.ciphertext, contact.master_key_id
        return self.open(ciphertext, pseudonym, master_key_id)

    def forget(self, pseudonym: str) -> bool:
        """Delete the worker's contact (they withdrew); whether there was one."""
        with self.database.session() as session:
            return stored.forget(session, pseudonym) > 0
