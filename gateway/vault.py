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

The hops never call this (they run no SQL): the vault is written and read by jobs and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from store import vault as stored
from store.db import Database

from .crypto import Crypto
from .identity import e164

PURPOSE = "contact-vault"
# What a worker may agree to be contacted for.
CALLBACKS, REMINDERS, PRIZE_DRAWS, FEEDBACK = "callbacks", "reminders", "prize_draws", "feedback"
PURPOSES = frozenset({CALLBACKS, REMINDERS, PRIZE_DRAWS, FEEDBACK})


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
