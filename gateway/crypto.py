"""AES-GCM under keys derived from WORKERVOICE_MASTER_KEY.

Three uses: the pseudonym key ring and the contact vault are stored encrypted
(``encrypt``/``decrypt``), and a job that must reach a worker carries the number only as a sealed
token that expires with the job (``seal``). Each purpose gets its own subkey (HKDF), and the
purpose is bound as associated data.

During a master key rotation (``workervoice keys rotate-master``, gateway/master_rotation.py) a
process holds two master keys: it encrypts under the new one only, and decrypts under the one a
stored row names by its id (``master_key_id``), or, for ciphertext that names none (sealed job
tokens), under each in turn. A master key id is a short HKDF output of the key: it tells keys
apart and says nothing about them.
"""

from __future__ import annotations

import base64
import os
import struct
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE = 12
_SEAL_VERSION = 1
_ID_INFO = b"workervoice:master-key-id"
MASTER_KEY_ID_LENGTH = 16  # hex characters (8 bytes): a name for the key, not the key


class CryptoError(Exception):
    """Ciphertext could not be opened: wrong key, tampered, or expired."""


def master_key_id(master_key: bytes) -> str:
    """The name stored next to what a master key encrypted (never the key, nor a plain hash
    of it)."""
    derived = HKDF(algorithm=hashes.SHA256(), length=8, salt=None, info=_ID_INFO)
    return derived.derive(master_key).hex()


class _Subkeys:
    """One master key's AES-GCM subkeys, one per purpose (HKDF)."""

    def __init__(self, master_key: bytes):
        if len(master_key) != 32:
            raise ValueError("master key must be 32 bytes")
        self._master = master_key
        self._aeads: dict[str, AESGCM] = {}

    def aead(self, purpose: str) -> AESGCM:
        if purpose not in self._aeads:
            key = HKDF(
                algorithm=hashes.SHA256(),
                length=32,
                salt=None,
                info=b"workervoice:" + purpose.encode(),
            ).derive(self._master)
            self._aeads[purpose] = AESGCM(key)
        return self._aeads[purpose]


class Crypto:
    """AES-GCM under the master key, and under the previous one while a rotation is under way."""

    def __init__(self, master_key: bytes, previous: bytes | None = None):
        self.master_key_id = master_key_id(master_key)
        self._keys = {self.master_key_id: _Subkeys(master_key)}
        self.previous_key_id: str | None = None
        if previous is not None and previous != master_key:
            self.previous_key_id = master_key_id(previous)
            self._keys[self.previous_key_id] = _Subkeys(previous)

    def holds(self, key_id: str | None) -> bool:
        """Whether this process can decrypt what the master key ``key_id`` encrypted."""
        return key_id in self._keys

    def encrypt(self, plaintext: bytes, purpose: str, context: bytes = b"") -> bytes:
        """Ciphertext under the (new) master key, whose id is ``master_key_id``."""
        nonce = os.urandom(_NONCE)
        aead = self._keys[self.master_key_id].aead(purpose)
        return nonce + aead.encrypt(nonce, plaintext, context)

    def decrypt(
        self, blob: bytes, purpose: str, context: bytes = b"", master_key_id: str | None = None
    ) -> bytes:
        """The plaintext of ``blob``, under the master key ``master_key_id`` names, or when it
        names none (older rows, sealed tokens) under each key this process holds."""
        if master_key_id is not None and master_key_id not in self._keys:
            raise CryptoError(
                f"{purpose} data is under master key {master_key_id}, which this process does not "
                "hold (set WORKERVOICE_MASTER_KEY_PREVIOUS to it)"
            )
        return self._open(blob, purpose, context, master_key_id)[1]

    def which(self, blob: bytes, purpose: str, context: bytes = b"") -> str:
        """The id of the master key ``blob`` opens under (rows written before ids were
        recorded); CryptoError if none."""
        return self._open(blob, purpose, context, None)[0]

    def _open(
        self, blob: bytes, purpose: str, context: bytes, only: str | None
    ) -> tuple[str, bytes]:
        for key_id, subkeys in self._keys.items():
            if only is not None and key_id != only:
                continue
            try:
                return key_id, subkeys.aead(purpose).decrypt(blob[:_NONCE], blob[_NONCE:], context)
            except (InvalidTag, ValueError):
                continue
        raise CryptoError(f"cannot decrypt {purpose} data")

    def seal(self, text: str, purpose: str, ttl_seconds: int, now: float | None = None) -> str:
        """Encrypt text into a url-safe token that cannot be opened after ttl_seconds."""
        expires = int((time.time() if now is None else now) + ttl_seconds)
        header = struct.pack(">BQ", _SEAL_VERSION, expires)
        blob = self.encrypt(text.encode(), purpose, header)
        return base64.urlsafe_b64encode(header + blob).decode().rstrip("=")

    def unseal(self, token: str, purpose: str, now: float | None = None) -> str:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            version, expires = struct.unpack(">BQ", raw[:9])
        except (ValueError, struct.error) as exc:
            raise CryptoError("malformed sealed token") from exc
        if version != _SEAL_VERSION:
            raise CryptoError("unknown sealed token version")
        if (time.time() if now is None else now) > expires:
            raise CryptoError("sealed token has expired")
        return self.decrypt(raw[9:], purpose, raw[:9]).decode()
