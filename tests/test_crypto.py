"""AES-GCM under subkeys of the master key: sealed tokens for job payloads, encrypted keys."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from gateway.crypto import Crypto, CryptoError, master_key_id

MASTER = bytes(range(32))
NUMBER = "+8801711283946"
NOW = 1_800_000_000.0


@pytest.fixture
def crypto() -> Crypto:
    return Crypto(MASTER)


def _flip(token: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def test_seal_roundtrip(crypto):
    token = crypto.seal(NUMBER, "job-recipient", 60, now=NOW)
    assert crypto.unseal(token, "job-recipient", now=NOW + 59) == NUMBER


def test_seal_is_url_safe_and_hides_the_text(crypto):
    token = crypto.seal(NUMBER, "job-recipient", 60, now=NOW)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert "8801711283946" not in token
    assert b"8801711283946" not in base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def test_seal_is_randomised(crypto):
    assert crypto.seal(NUMBER, "p", 60, now=NOW) != crypto.seal(NUMBER, "p", 60, now=NOW)


def test_seal_unicode_roundtrip(crypto):
    text = "আপনার নম্বর"
    assert crypto.unseal(crypto.seal(text, "p", 60, now=NOW), "p", now=NOW) == text


def test_unseal_at_the_expiry_second_and_after(crypto):
    token = crypto.seal(NUMBER, "p", 60, now=NOW)
    assert crypto.unseal(token, "p", now=NOW + 60) == NUMBER
    with pytest.raises(CryptoError, match="expired"):
        crypto.unseal(token, "p", now=NOW + 61)


def test_unseal_uses_the_real_clock_by_default(crypto):
    assert crypto.unseal(crypto.seal(NUMBER, "p", 60), "p") == NUMBER
    with pytest.raises(CryptoError, match="expired"):
        crypto.unseal(crypto.seal(NUMBER, "p", -1), "p")


def test_unseal_wrong_purpose(crypto):
    token = crypto.seal(NUMBER, "job-recipient", 60, now=NOW)
    with pytest.raises(CryptoError):
        crypto.unseal(token, "contact-vault", now=NOW)


def test_unseal_wrong_master_key(crypto):
    token = crypto.seal(NUMBER, "p", 60, now=NOW)
    with pytest.raises(CryptoError):
        Crypto(bytes(32)).unseal(token, "p", now=NOW)


@pytest.mark.parametrize("index", [0, 1, 8, 9, 20, -1])
def test_unseal_tampered(crypto, index):
    """Any flipped bit fails: version, expiry (authenticated), nonce, ciphertext, tag."""
    token = crypto.seal(NUMBER, "p", 60, now=NOW)
    with pytest.raises(CryptoError):
        crypto.unseal(_flip(token, index), "p", now=NOW)


def test_unseal_expiry_cannot_be_extended(crypto):
    token = crypto.seal(NUMBER, "p", 60, now=NOW)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[1:9] = (2**63).to_bytes(8, "big")  # expiry far in the future
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(CryptoError):
        crypto.unseal(forged, "p", now=NOW + 3600)


@pytest.mark.parametrize(
    "token", ["", "x", "not a token!", "AQAAAAAAAAAA", "é", "====", "AQ" * 200]
)
def test_unseal_malformed(crypto, token):
    with pytest.raises(CryptoError):
        crypto.unseal(token, "p", now=NOW)


def test_encrypt_roundtrip_and_context_binding(crypto):
    blob = crypto.encrypt(b"secret key", "pseudonym-key", b"key:1")
    assert crypto.decrypt(blob, "pseudonym-key", b"key:1") == b"secret key"
    with pytest.raises(CryptoError):
        crypto.decrypt(blob, "pseudonym-key", b"key:2")
    with pytest.raises(CryptoError):
        crypto.decrypt(blob, "job-recipient", b"key:1")
    with pytest.raises(CryptoError):
        crypto.decrypt(blob[:5], "pseudonym-key", b"key:1")


def test_error_never_holds_the_plaintext(crypto):
    token = crypto.seal(NUMBER, "p", 60, now=NOW)
    with pytest.raises(CryptoError) as caught:
        crypto.unseal(token, "p", now=NOW + 3600)
    assert "8801711283946" not in str(caught.value)


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(31), bytes(33)])
def test_master_key_must_be_32_bytes(key):
    with pytest.raises(ValueError):
        Crypto(key)


# -- two master keys during a rotation -------------------------------------------------------
NEW = bytes(range(100, 132))


def test_a_master_key_id_names_the_key_without_showing_it():
    ident = master_key_id(MASTER)
    assert re.fullmatch(r"[0-9a-f]{16}", ident)
    assert ident == master_key_id(MASTER) != master_key_id(NEW)
    assert ident not in (MASTER.hex(), hashlib.sha256(MASTER).hexdigest()[:16])
    assert Crypto(MASTER).master_key_id == ident


def test_with_a_previous_key_new_data_is_under_the_new_one_and_old_data_still_opens():
    old, both, new = Crypto(MASTER), Crypto(NEW, MASTER), Crypto(NEW)
    assert (both.master_key_id, both.previous_key_id) == (master_key_id(NEW), old.master_key_id)
    blob = old.encrypt(b"secret", "pseudonym-key", b"key:1")
    assert both.decrypt(blob, "pseudonym-key", b"key:1", old.master_key_id) == b"secret"
    assert both.decrypt(blob, "pseudonym-key", b"key:1") == b"secret"  # no id: either key
    fresh = both.encrypt(b"secret", "pseudonym-key", b"key:1")
    assert new.decrypt(fresh, "pseudonym-key", b"key:1", new.master_key_id) == b"secret"
    with pytest.raises(CryptoError):
        old.decrypt(fresh, "pseudonym-key", b"key:1")
    with pytest.raises(CryptoError):  # the row says which key: the other is not tried
        both.decrypt(blob, "pseudonym-key", b"key:1", both.master_key_id)


def test_data_under_a_master_key_not_held_is_refused_naming_the_variable():
    blob = Crypto(MASTER).encrypt(b"secret", "pseudonym-key")
    with pytest.raises(CryptoError, match="WORKERVOICE_MASTER_KEY_PREVIOUS"):
        Crypto(NEW).decrypt(blob, "pseudonym-key", b"", master_key_id(MASTER))
    assert not Crypto(NEW).holds(master_key_id(MASTER))
    assert Crypto(NEW, MASTER).holds(master_key_id(MASTER))


def test_a_token_sealed_under_the_previous_key_still_unseals(crypto):
    token = crypto.seal(NUMBER, "job-recipient", 60, now=NOW)
    assert Crypto(NEW, MASTER).unseal(token, "job-recipient", now=NOW + 1) == NUMBER
    with pytest.raises(CryptoError):
        Crypto(NEW).unseal(token, "job-recipient", now=NOW + 1)
