"""Identity: numbers normalised to E.164, turned into HMAC pseudonyms under the key ring's
current key, and scrubbed from free text (SPEC §6)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from gateway.crypto import Crypto
from gateway.identity import (
    KEY_CACHE_SECONDS,
    KEY_PURPOSE,
    REDACTED,
    Identity,
    InvalidAddress,
    KeyRing,
    context,
    e164,
    normalise,
    parse,
    redact_phone_like,
    scoped_id,
    scrub,
)

from .conftest import TEST_MASTER_KEY

CRYPTO = Crypto(base64.urlsafe_b64decode(TEST_MASTER_KEY))
SECRET_A = bytes(range(32))
SECRET_B = bytes(range(100, 132))


class Ring:
    """A stand-in for the database's key ring, and a clock the test moves by hand."""

    def __init__(self, *keys: tuple[int, str, bytes]):
        self.keys = list(keys)
        self.loads = 0
        self.now = 1000.0

    def load(self) -> list[tuple[int, str, bytes]]:
        self.loads += 1
        return [
            (kid, status, CRYPTO.encrypt(secret, KEY_PURPOSE, context(kid)))
            for kid, status, secret in self.keys
        ]

    def clock(self) -> float:
        return self.now

    def identity(self) -> Identity:
        return Identity(KeyRing(self.load, CRYPTO, clock=self.clock))


def expected(secret: bytes, number: str) -> str:
    return hmac.new(secret, number.encode(), hashlib.sha256).hexdigest()


# -- normalisation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "+8801711283946",
        "8801711283946",
        "whatsapp:+8801711283946",
        "WhatsApp:+8801711283946",
        "whatsapp:8801711283946",
        " +880 1711 283946 ",
        "+880 1711-283946",
        "+880 (1711) 283.946",
        "tel:+8801711283946",
        "sms:+8801711283946",
        "+880１７১১283946",
    ],
)
def test_e164_normalises_every_way_a_provider_writes_a_number(address):
    assert e164(address) == "+8801711283946"


@pytest.mark.parametrize(
    "address",
    [
        "",
        "   ",
        "anonymous",
        "unknown",
        "abc",
        "+",
        "whatsapp:",
        "client:alice",
        "+1800FLOWERS",
        "+254711XXXYYY",
        "+12",
        "12345",
        "+123456789012345678",
        "+8801711283946;ext=5",
        "+880\n1711283946",
        "00 800",
        "sip:alice@example.org",
    ],
)
def test_invalid_addresses_are_refused(address):
    with pytest.raises(InvalidAddress) as caught:
        e164(address)
    assert address.strip() not in str(caught.value) or not address.strip()


def test_invalid_address_is_a_value_error_without_the_address():
    with pytest.raises(ValueError, match="phone number") as caught:
        e164("+12 345")
    assert "345" not in str(caught.value)


# -- pseudonyms ---------------------------------------------------------------------------------


def test_pseudonym_is_hmac_sha256_of_e164_under_the_current_key():
    ring = Ring((2, "current", SECRET_B), (1, "previous", SECRET_A))
    who = ring.identity().pseudonymise("whatsapp:+8801711283946")
    assert who.value == expected(SECRET_B, "+8801711283946")
    assert who.key_id == 2
    assert who.country == "BD"
    assert "8801711283946" not in repr(who)


def test_pseudonym_is_stable_across_formats_and_calls():
    identity = Ring((1, "current", SECRET_A)).identity()
    values = {
        identity.pseudonymise(a).value
        for a in ("+8801711283946", "8801711283946", "whatsapp:+8801711283946", "+880 1711 283946")
    }
    assert len(values) == 1


def test_different_numbers_different_pseudonyms():
    identity = Ring((1, "current", SECRET_A)).identity()
    assert (
        identity.pseudonymise("+8801711283946").value
        != identity.pseudonymise("+8801711283947").value
    )


def test_different_key_different_pseudonym():
    under_a = Ring((1, "current", SECRET_A)).identity().pseudonymise("+8801711283946")
    under_b = Ring((1, "current", SECRET_B)).identity().pseudonymise("+8801711283946")
    assert under_a.value != under_b.value


def test_seed_is_stable_per_worker():
    identity = Ring((1, "current", SECRET_A)).identity()
    assert (
        identity.pseudonymise("+8801711283946").seed
        == identity.pseudonymise("whatsapp:+8801711283946").seed
    )


@pytest.mark.parametrize(
    "number,country",
    [
        ("+254711283946", "KE"),
        ("+17067815146", "US"),
        ("+8801711283946", "BD"),
        ("+881612345678", None),  # satellite: no country ("001" is not one)
        ("+80012345678", None),  # international freephone
    ],
)
def test_country_of_the_number(number, country):
    assert Ring((1, "current", SECRET_A)).identity().pseudonymise(number).country == country


@pytest.mark.parametrize(
    "address", ["+8801711283946", "8801711283946", "whatsapp:+880 1711 283946"]
)
def test_a_number_read_once_is_pseudonymised_as_its_address(address):
    """An adapter that needs the number (to seal its reply's recipient) reads it once and
    hands on what it read: the same pseudonym and country as the address itself gives."""
    identity = Ring((1, "current", SECRET_A)).identity()
    number = parse(address)
    assert number.e164 == "+8801711283946" and number.country == "BD"
    assert identity.pseudonymise(number) == identity.pseudonymise(address)
    assert "1711283946" not in repr(number) and "1711283946" not in repr([number])


def test_no_current_key_is_an_error():
    with pytest.raises(LookupError, match="no current key"):
        Ring((1, "previous", SECRET_A)).identity().pseudonymise("+8801711283946")


# -- WhatsApp users known by a business-scoped id (no phone number) ------------------------------

BSUID = "US.13491208655302741918"


def test_a_business_scoped_id_is_pseudonymised_like_a_number():
    """HMAC-SHA256 under the current key of the address as sent; no country to go by."""
    ring = Ring((2, "current", SECRET_B), (1, "previous", SECRET_A))
    who = ring.identity().pseudonymise(f"whatsapp:{BSUID}")
    assert who.value == expected(SECRET_B, f"whatsapp:{BSUID}")
    assert (who.key_id, who.country) == (2, None)
    assert "13491208655302741918" not in repr(who)


def test_a_business_scoped_id_keeps_its_pseudonym_and_its_case():
    identity = Ring((1, "current", SECRET_A)).identity()
    values = {identity.pseudonymise(a).value for a in (f"whatsapp:{BSUID}", f"WhatsApp:{BSUID}")}
    assert len(values) == 1
    assert identity.pseudonymise("whatsapp:US.abc1").value != (
        identity.pseudonymise("whatsapp:US.ABC1").value
    )


def test_a_business_scoped_id_never_shares_a_phone_numbers_pseudonym():
    """Even an id whose digits are a real number is another worker than that number."""
    identity = Ring((1, "current", SECRET_A)).identity()
    numbers = {identity.pseudonymise(n).value for n in ("+8801711283946", "8801711283946")}
    for user_id in ("BD.8801711283946", "BD.ENT.8801711283946", "bd.8801711283946"):
        assert identity.pseudonymise(f"whatsapp:{user_id}").value not in numbers


@pytest.mark.parametrize(
    "user_id", [BSUID, "US.ENT.11815799212886844830", "BR.1502576394655843", "IN.a1B2"]
)
def test_business_scoped_ids_are_no_phone_numbers(user_id):
    """normalise and e164 stay strict: only pseudonymise takes such an id."""
    assert scoped_id(f"whatsapp:{user_id}") == user_id
    for strict in (normalise, e164):
        with pytest.raises(InvalidAddress):
            strict(f"whatsapp:{user_id}")


@pytest.mark.parametrize(
    "address",
    [
        BSUID,  # no channel: an SMS sender cannot be one
        f"sms:{BSUID}",
        f"tel:{BSUID}",
        "whatsapp:US.",
        "whatsapp:.1349",
        "whatsapp:U.1349",
        "whatsapp:US.1 349",
        "whatsapp:US.13-49",
        "whatsapp:US.A.B.C",
        "whatsapp:US." + "1" * 129,
        "whatsapp:client:alice",
        "whatsapp:anonymous",
        "whatsapp:+1800FLOWERS",
        f"whatsapp: {BSUID}\n",
    ],
)
def test_other_addresses_are_no_business_scoped_ids(address):
    assert scoped_id(address) is None
    with pytest.raises(InvalidAddress):
        Ring((1, "current", SECRET_A)).identity().pseudonymise(address)


def test_key_encrypted_for_another_id_is_refused():
    """A key row cannot be swapped for another: its id is bound into the ciphertext."""
    from gateway.crypto import CryptoError

    blob = CRYPTO.encrypt(SECRET_A, KEY_PURPOSE, context(1))
    ring = KeyRing(lambda: [(2, "current", blob)], CRYPTO, clock=lambda: 0.0)
    with pytest.raises(CryptoError):
        ring.current()


def test_key_ring_change_takes_effect_within_the_cache_window():
    """Rotation in another process: this one sees the new key within 5 s, never later."""
    assert KEY_CACHE_SECONDS <= 5
    ring = Ring((1, "current", SECRET_A))
    identity = ring.identity()
    before = identity.pseudonymise("+8801711283946")
    assert ring.loads == 1

    ring.keys = [(2, "current", SECRET_B), (1, "previous", SECRET_A)]  # rotated elsewhere
    ring.now += KEY_CACHE_SECONDS - 0.01
    assert identity.pseudonymise("+8801711283946") == before  # cached: no database read
    assert ring.loads == 1

    ring.now += 0.01
    after = identity.pseudonymise("+8801711283946")
    assert ring.loads == 2
    assert (after.key_id, after.value) == (2, expected(SECRET_B, "+8801711283946"))


def test_key_ring_destruction_takes_effect_within_the_cache_window():
    ring = Ring((2, "current", SECRET_B), (1, "previous", SECRET_A))
    keyring = KeyRing(ring.load, CRYPTO, clock=ring.clock)
    assert [k.id for k in keyring.keys()] == [2, 1]
    ring.keys = [(2, "current", SECRET_B)]  # key 1 destroyed
    ring.now += KEY_CACHE_SECONDS
    assert [k.id for k in keyring.keys()] == [2]


def test_key_ring_reads_once_per_window_under_load():
    ring = Ring((1, "current", SECRET_A))
    identity = ring.identity()
    for n in range(50):
        identity.pseudonymise(f"+88017112839{n:02d}")
        ring.now += KEY_CACHE_SECONDS / 60  # 50 requests within one window
    assert ring.loads == 1


def test_services_key_ring_uses_the_database(services):
    """The app's identity reads the real ring and is stable across calls."""
    first = services.identity.pseudonymise("+8801711283946")
    second = services.identity.pseudonymise("whatsapp:+8801711283946")
    assert first == second and len(first.value) == 64


# -- scrub --------------------------------------------------------------------------------------

NUMBER_TEXTS = [
    ("call me on +8801711283946", "BD"),
    ("call me on +880 1711-283946 please", "BD"),
    ("(+880) 1711 283 946", "BD"),
    ("my number 01711283946", "BD"),
    ("my number 01711-283946", "BD"),
    ("00880 1711 283946", "BD"),
    ("8801711283946", "BD"),
    ("whatsapp:+8801711283946", None),
    ("০১৭১১২৮৩৯৪৬", "BD"),  # Bangla digits
    ("+৮৮০১৭১১২৮৩৯৪৬", None),
    ("nambari yangu ni 0711 283 946", "KE"),
    ("nambari yangu ni 0711 283 946", None),  # no region: still goes
    ("+254.711.283.946", None),
    ("boss: 0711283946, me: +8801711283946", "KE"),
]


@pytest.mark.parametrize("text,region", NUMBER_TEXTS)
def test_scrub_removes_numbers_in_every_format(text, region):
    scrubbed = scrub(text, region)
    assert REDACTED in scrubbed
    assert sum(c.isdigit() for c in scrubbed) < 7, scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "I worked 12 hours on 6 days",
        "pay was 8000 taka, late by 3 days",
        "",
        "ok",
        "সপ্তাহে ৬ দিন",
        "shift 08:00-20:00",
    ],
)
def test_scrub_leaves_text_without_numbers_alone(text):
    assert scrub(text, "BD") == text


def test_scrub_keeps_the_words_around_a_number():
    assert scrub("call +8801711283946 now", "BD") == f"call {REDACTED} now"


@pytest.mark.parametrize(
    "text,kept",
    [
        ("at 2026-11-25T08:34:18.445Z ok", "at 2026-11-25T08:34:18.445Z ok"),
        ("2026-11-25 08:34:18,123 done", "2026-11-25 08:34:18,123 done"),
        ("from 2026-11-01 to 2026-11-25", "from 2026-11-01 to 2026-11-25"),
        ("2026-11-25T18:52:01.123456+00:00", "2026-11-25T18:52:01.123456+00:00"),
    ],
)
def test_redact_phone_like_keeps_timestamps(text, kept):
    assert redact_phone_like(text, "[n]") == kept


@pytest.mark.parametrize(
    "text",
    [
        "+880 2012-11-25",  # a date glued to a country code is a number
        "2026-11-25 08:34:18 +8801711283946",
        "call +880 1711-00-00-01",
    ],
)
def test_redact_phone_like_a_date_shape_does_not_hide_a_number(text):
    redacted = redact_phone_like(text, "[n]")
    assert "[n]" in redacted
    digits_left = "".join(c for c in redacted.replace("2026-11-25 08:34:18", "") if c.isdigit())
    assert len(digits_left) < 7, redacted


@pytest.mark.parametrize(
    "typed",
    [
        "01711,000,001",
        "01711#000001",
        "01711,000001",
        "01711/000/001",
        "01711_000_001",
        "01711*000*001",
    ],
)
def test_scrub_takes_numbers_grouped_with_any_separator(typed):
    assert scrub(f"call {typed} now", "BD") == "call [number removed] now"


def test_scrub_leaves_dates_and_small_numbers():
    text = "on 2026-11-25 I worked 7, 8, 9 hours"
    assert scrub(text, "BD") == text


@pytest.mark.parametrize(
    "text,scrubbed",
    [
        ("call o o 2 2 222 now", f"call {REDACTED} now"),  # 7 digit characters, 5 real
        ("call 222 2 2 o o now", f"call {REDACTED} now"),
        ("call 0171 28 oooo now", f"call {REDACTED} now"),  # a group of four in letters
        ("call o 2 2 222 now", "call o 2 2 222 now"),  # 6: below MIN_PHONE_DIGITS
        ("call oo o 222 now", "call oo o 222 now"),  # 3 real digits: below MIN_REAL_DIGITS
        ("I am so o 2 2 222", "I am so o 2 2 222"),  # a word's o is not a zero
    ],
)
def test_scrub_takes_groups_of_letters_alone_at_either_end(text, scrubbed):
    assert scrub(text, "BD") == scrubbed
