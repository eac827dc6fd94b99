"""The contact vault (gateway/vault.py, store/vault.py): numbers sealed under their pseudonyms,
deleted on STOP through the real drain, moved and resealed at a grace migration, destroyed
with their key, and never in clear anywhere."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from gateway.crypto import Crypto, CryptoError
from gateway.identity import KEY_PURPOSE, Identity, KeyRing, context
from gateway.keys import KeyKeeper
from gateway.vault import PURPOSE, ContactVault
from store import keyring
from store import vault as stored
from store.keyring import LEAD_SECONDS
from store.models import Contact, Worker

from .hops import Clock
from .leaks import assert_no_numbers
from .support import SmsWorker, add_workplace, run_jobs
from .vaults import NEW_KEY, OLD_KEY, ring_restored

PHONE = "+8801711000123"
OTHER_PHONE = "+8801711000456"


def known(reply: str) -> bool:
    """The reply is the enrolled (English-speaking) worker's flow going on, not the language
    menu an unknown Bangladeshi number is greeted with (Bengali first)."""
    return bool(reply) and "বাংলা" not in reply and "Choose your language" not in reply


def unknown(reply: str) -> bool:
    return "বাংলা" in reply and "English" in reply


@pytest.fixture
def vault() -> ContactVault:
    return ContactVault(Crypto(OLD_KEY), database=None, clock=lambda: datetime.now(UTC))


def test_a_sealed_number_opens_for_its_own_pseudonym(vault):
    sealed = vault.seal("whatsapp:+880 1711-000123", "p" * 64)
    assert vault.open(sealed.ciphertext, "p" * 64, sealed.master_key_id) == PHONE
    assert sealed.master_key_id == vault.crypto.master_key_id
    assert PHONE.encode() not in sealed.ciphertext and b"1711000123" not in sealed.ciphertext


def test_a_sealed_number_does_not_open_for_another_pseudonym(vault):
    sealed = vault.seal(PHONE, "p" * 64)
    with pytest.raises(CryptoError):
        vault.open(sealed.ciphertext, "q" * 64, sealed.master_key_id)


def test_the_vault_key_is_its_own_not_the_key_rings_nor_a_seals(vault):
    sealed = vault.seal(PHONE, "p" * 64)
    crypto = vault.crypto
    for purpose in (KEY_PURPOSE, "job-recipient", "job-callee"):
        with pytest.raises(CryptoError):
            crypto.decrypt(sealed.ciphertext, purpose, b"contact:" + b"p" * 64)
    assert crypto.decrypt(sealed.ciphertext, PURPOSE, b"contact:" + b"p" * 64) == PHONE.encode()


def test_a_reseal_opens_for_the_new_pseudonym_under_the_new_master_key():
    old = ContactVault(Crypto(OLD_KEY), None, lambda: datetime.now(UTC))
    both = ContactVault(Crypto(NEW_KEY, OLD_KEY), None, lambda: datetime.now(UTC))
    sealed = old.seal(PHONE, "p" * 64)
    blob, master_key_id = both.reseal(sealed.ciphertext, sealed.master_key_id, "p" * 64, "n" * 64)
    assert master_key_id == both.crypto.master_key_id != sealed.master_key_id
    assert ContactVault(Crypto(NEW_KEY), None, None).open(blob, "n" * 64, master_key_id) == PHONE
    with pytest.raises(CryptoError):
        both.open(blob, "p" * 64, master_key_id)


def test_only_known_purposes_are_kept(services):
    with pytest.raises(ValueError, match="purposes"):
        services.vault.keep(PHONE, "p" * 64, current_key(services), ["marketing"])
    with pytest.raises(ValueError, match="purposes"):
        services.vault.keep(PHONE, "p" * 64, current_key(services), [])


def current_key(services) -> int:
    with services.db.session() as session:
        return keyring.live_keys(session)[0].id


def enrol(client, phone: str) -> SmsWorker:
    worker = SmsWorker(client, phone)
    assert "you are enrolled" in worker.enrol()
    return worker


def keep(services, phone: str, purposes=("reminders",)) -> str:
    """The worker's contact kept as a job would, for what they agreed to; their pseudonym."""
    who = services.identity.pseudonymise(phone)
    services.vault.keep(phone, who.value, who.key_id, purposes)
    return who.value


def contacts(services) -> dict[str, Contact]:
    with services.db.session() as session:
        rows = session.scalars(select(Contact)).all()
        session.expunge_all()
    return {row.pseudonym: row for row in rows}


def test_a_kept_contact_is_found_by_its_pseudonym_for_what_was_agreed(app, client, services):
    add_workplace(services)
    enrol(client, PHONE)
    run_jobs(app)
    who = keep(services, PHONE, ["reminders", "prize_draws"])
    assert services.vault.number_for(who) == PHONE
    assert services.vault.number_for(who, "prize_draws") == PHONE
    assert services.vault.number_for(who, "feedback") is None  # not agreed to
    assert services.vault.number_for("x" * 64) is None
    [row] = contacts(services).values()
    assert row.purposes == ["prize_draws", "reminders"]
    assert row.master_key_id == services.crypto.master_key_id
    assert services.vault.forget(who) and not services.vault.forget(who)
    assert services.vault.number_for(who) is None


def test_stop_deletes_the_contact_through_the_drain(app, client, services):
    add_workplace(services)
    stopping = enrol(client, PHONE)
    enrol(client, OTHER_PHONE)
    run_jobs(app)
    who, other = keep(services, PHONE), keep(services, OTHER_PHONE)
    stopping.send("STOP")
    run_jobs(app)
    assert services.events.waiting() == 0  # the drain ran
    assert set(contacts(services)) == {other}
    assert services.vault.number_for(who) is None
    assert services.vault.number_for(other) == OTHER_PHONE


def test_a_stop_drained_late_leaves_a_contact_kept_after_it(services):
    later = datetime.now(UTC)
    sealed = services.vault.seal(PHONE, "p" * 64)
    with services.db.session() as session:
        stored.keep(
            session,
            "p" * 64,
            current_key(services),
            sealed.ciphertext,
            sealed.master_key_id,
            ["reminders"],
            at=later,
        )
    with services.db.session() as session:
        assert stored.forget(session, "p" * 64, before=later - timedelta(seconds=1)) == 0
        assert stored.forget(session, "p" * 64, before=later) == 1


def rotated_in_force(services) -> KeyRing:
    """Rotate the pseudonym key, and give the app a ring that reads it at once and whose wall
    clock is past the moment the new key takes over."""
    KeyKeeper(services).rotate(datetime.now(UTC))
    ring = KeyRing(
        services.mirror.key_blobs,
        services.crypto,
        clock=Clock(),
        wall=lambda: time.time() + LEAD_SECONDS + 1,
    )
    services.identity = Identity(ring)
    return ring


def test_a_returning_worker_s_contact_moves_resealed_and_the_rest_go_with_their_key(
    app, client, services
):
    add_workplace(services)
    returning = enrol(client, PHONE)
    enrol(client, OTHER_PHONE)
    run_jobs(app)
    with ring_restored(services):
        old_who, gone_who = keep(services, PHONE), keep(services, OTHER_PHONE)
        old_key = contacts(services)[old_who].key_id
        rotated_in_force(services)
        assert known(returning.send("1"))  # found under the previous key's pseudonym
        run_jobs(app)
        new = services.identity.pseudonymise(PHONE)
        assert new.value != old_who and new.key_id != old_key
        kept = contacts(services)
        assert set(kept) == {new.value, gone_who}
        assert kept[new.value].key_id == new.key_id
        assert kept[new.value].purposes == ["reminders"]
        assert services.vault.number_for(new.value) == PHONE  # resealed for the new pseudonym
        with pytest.raises(CryptoError):  # the old ciphertext relabelled would not open
            services.vault.open(kept[new.value].ciphertext, old_who)

        grace = services.config.salt_grace_days
        [done] = KeyKeeper(services).destroy_due(datetime.now(UTC) + timedelta(days=grace + 1))
        assert done.key_id == old_key and done.contacts == 1
        assert set(contacts(services)) == {new.value}
        assert services.vault.number_for(gone_who) is None
        assert services.vault.number_for(new.value) == PHONE


def test_destroy_period_deletes_only_that_keys_contacts(services):
    key = current_key(services)
    sealed = services.vault.seal(PHONE, "p" * 64)
    with services.db.session() as session:
        stored.keep(session, "p" * 64, key, sealed.ciphertext, sealed.master_key_id, ["feedback"])
    with services.db.session() as session:
        assert stored.destroy_period(session, key + 1000) == 0
        assert stored.destroy_period(session, key) == 1
        assert stored.entry(session, "p" * 64) is None


def test_a_move_with_a_newer_contact_under_the_new_pseudonym_keeps_the_newer(services):
    key = current_key(services)
    with services.db.session() as session:
        for who, number in (("o" * 64, PHONE), ("n" * 64, OTHER_PHONE)):
            sealed = services.vault.seal(number, who)
            stored.keep(session, who, key, sealed.ciphertext, sealed.master_key_id, ["reminders"])
    with services.db.session() as session:
        assert stored.move(session, "o" * 64, "n" * 64, key, services.vault.reseal)
        assert not stored.move(session, "o" * 64, "n" * 64, key, services.vault.reseal)
    assert set(contacts(services)) == {"n" * 64}
    assert services.vault.number_for("n" * 64) == OTHER_PHONE


def test_no_number_is_in_the_database_redis_or_logs_in_clear(app, client, services, caplog):
    caplog.set_level(logging.DEBUG)
    add_workplace(services)
    enrol(client, PHONE)
    run_jobs(app)
    who = keep(services, PHONE, ["callbacks", "reminders"])
    assert services.vault.number_for(who) == PHONE
    with services.db.session() as session:
        assert session.scalar(select(Worker)) is not None and stored.entry(session, who)
    assert_no_numbers([PHONE], services, caplog.text)


def test_a_pseudonym_key_context_cannot_open_a_contact(vault):
    sealed = vault.seal(PHONE, "p" * 64)
    with pytest.raises(CryptoError):
        vault.crypto.decrypt(sealed.ciphertext, PURPOSE, context(1))
