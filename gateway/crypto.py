"""AES-GCM under keys derived from WORKERVOICE_MASTER_KEY.

Two uses: the pseudonym key ring is stored encrypted (``encrypt``/``decrypt``), and a job that must
reach a worker carries the number only as a sealed token that expires with the job (``seal``).
Each purpose gets its own subkey (HKDF), and the purpose is bound as associated data.
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


class CryptoError(Exception):
    """Ciphertext could not be opened: wrong key, tampered, or expired."""


class Crypto:
    def __init__(self, master_key: bytes):
        if len(master_key) != 32:
            raise ValueError("master key must be 32 bytes")
        self._master = master_key
        self._subkeys: dict[str, AESGCM] = {}

    def _aead(self, purpose: str) -> AESGCM:
        if purpose not in self._subkeys:
            key = HKDF(
                algorithm=hashes.SHA256(),
                length=32,
                salt=None,
                info=b"workervoice:" + purpose.encode(),
            ).derive(self._master)
            self._subkeys[purpose] = AESGCM(key)
        return self._subkeys[purpose]

    def encrypt(self, plaintext: bytes, purpose: str, context: bytes = b"") -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead(purpose).encrypt(nonce, plaintext, context)

    def decrypt(self, blob: bytes, purpose: str, context: bytes = b"") -> bytes:
        try:
            return self._aead(purpose).decrypt(blob[:_NONCE], blob[_NONCE:], context)
        except (InvalidTag, ValueError) as exc:
            raise CryptoError(f"cannot decrypt {purpose} data") from exc

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
