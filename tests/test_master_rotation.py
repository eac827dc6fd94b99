"""``workervoice keys rotate-master`` (gateway/master_rotation.py) end to end through the CLI:
the key ring and the vault re-encrypted under the new master key, resumable after an
interruption, refused without the previous key, the ring unchanged to every process, and the
service answering throughout."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, update

from gateway import master_rotation
from gateway.cli import main
from gateway.crypto import Crypto
from gateway.identity import KEY_CACHE_SECONDS, KEY_PURPOSE, Identity, KeyRing, context
from gateway.services import EXTENSION
from store import keyring
from store.models import Contact, PseudonymKey

from .hops import Clock
from .support import SmsWorker, add_workplace, run_jobs
from .test_cli import one_line_error
from .test_vault import enrol, keep, known, unknown
from .vaults import NEW_KEY, OLD_KEY, OTHER_KEY, app_with, ring_restored

PHONES = ("+8801711000201", "+8801711000202", "+8801711000203")
NEW_ID, OLD_ID = Crypto(NEW_KEY).master_key_id, Crypto(OLD_KEY).master_key_id
PROGRESS = re.compile(r"^(pseudonym key\(s\)|contact\(s\)): (\d+)/(\d+) re-encrypted$", re.M)


@pytest.fixture
def stored(app, client, services):
    """Three enrolled workers with contacts, and a second pseudonym key (a rotation), all under
    the tests' master key; the ring is put back afterwards. The workers' pseudonyms."""
    add_workplace(services)
    for phone in PHONES:
        enrol(client, phone)
    run_jobs(app)
    with ring_restored(services):
        who = [keep(services, phone) for phone in PHONES]
        with services.db.session() as session:
            keyring.rotate(
                session,
                lambda s, kid: (
                    services.crypto.encrypt(s, KEY_PURPOSE, context(kid)),
                    services.crypto.master_key_id,
                ),
                services.now(),
            )
        yield who


def rotate(app, *args: str):
    return app.test_cli_runner().invoke(main, ["keys", "rotate-master", *args])


def rows(services) -> tuple[dict[int, tuple], dict[str, tuple]]:
    """(key id -> (ciphertext, master key id), pseudonym -> (ciphertext, master key id))."""
    with services.db.session() as session:
        keys = {
            k.id: (k.secret, k.master_key_id)
            for k in session.scalars(select(PseudonymKey))
            if k.secret is not None
        }
        contacts = {
            c.pseudonym: (c.ciphertext, c.master_key_id) for c in session.scalars(select(Contact))
        }
    return keys, contacts


def secrets_under(crypto: Crypto, keys: dict[int, tuple]) -> dict[int, bytes]:
    return {
        kid: crypto.decrypt(blob, KEY_PURPOSE, context(kid), mk) for kid, (blob, mk) in keys.items()
    }


def test_rotate_master_re_encrypts_the_ring_and_the_vault(migrated, services, stored):
    keys_before, contacts_before = rows(services)
    assert {mk for _, mk in keys_before.values()} == {OLD_ID}
    assert {mk for _, mk in contacts_before.values()} == {OLD_ID}
    with app_with(migrated, NEW_KEY, OLD_KEY) as app:
        result = rotate(app, "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert PROGRESS.findall(result.output) == [
        ("pseudonym key(s)", "2", "2"),
        ("contact(s)", "2", "3"),
        ("contact(s)", "3", "3"),
    ]
    assert (
        f"done: 2 pseudonym key(s), 3 contact(s) re-encrypted; all is under master key {NEW_ID}"
        in result.output
    )
    assert "keep WORKERVOICE_MASTER_KEY_PREVIOUS set for 60 more minutes" in result.output

    keys_after, contacts_after = rows(services)
    assert {mk for _, mk in keys_after.values()} == {NEW_ID}
    assert {mk for _, mk in contacts_after.values()} == {NEW_ID}
    assert all(keys_after[k][0] != keys_before[k][0] for k in keys_before)
    # The same key material, now opened with the new master key alone.
    assert secrets_under(Crypto(NEW_KEY), keys_after) == secrets_under(Crypto(OLD_KEY), keys_before)
    with app_with(migrated, NEW_KEY, None) as app:
        new_only = app.extensions[EXTENSION]
        for who, phone in zip(stored, PHONES, strict=True):
            assert new_only.vault.number_for(who) == phone
        assert (
            new_only.identity.pseudonymise(PHONES[0]).value
            == services.identity.pseudonymise(PHONES[0]).value
        )
        again = rotate(app)
    assert again.exit_code == 0, again.output
    assert "done: 0 pseudonym key(s), 0 contact(s) re-encrypted" in again.output
    assert PROGRESS.findall(again.output) == []


def test_an_interrupted_rotation_carries_on_with_what_is_left(
    migrated, services, stored, monkeypatch
):
    real, calls = master_rotation._reencrypt, []

    def failing(*args):
        calls.append(args[1].name)
        if len(calls) == 4:  # the second contact: the first batches are committed
            raise RuntimeError("killed")
        return real(*args)

    monkeypatch.setattr(master_rotation, "_reencrypt", failing)
    with app_with(migrated, NEW_KEY, OLD_KEY) as app:
        first = rotate(app, "--batch-size", "1")
        assert isinstance(first.exception, RuntimeError)
        assert PROGRESS.findall(first.output) == [
            ("pseudonym key(s)", "1", "2"),
            ("pseudonym key(s)", "2", "2"),
            ("contact(s)", "1", "3"),
        ]
        keys, contacts = rows(services)
        assert {mk for _, mk in keys.values()} == {NEW_ID}
        assert sorted(mk for _, mk in contacts.values()) == sorted([NEW_ID, OLD_ID, OLD_ID])

        monkeypatch.setattr(master_rotation, "_reencrypt", real)
        second = rotate(app, "--batch-size", "1")
        assert second.exit_code == 0, second.output
        assert PROGRESS.findall(second.output) == [
            ("contact(s)", "1", "2"),
            ("contact(s)", "2", "2"),
        ]
        assert "done: 0 pseudonym key(s), 2 contact(s) re-encrypted" in second.output
        both = app.extensions[EXTENSION]
        assert [both.vault.number_for(who) for who in stored] == list(PHONES)
    keys, contacts = rows(services)
    assert {mk for _, mk in (*keys.values(), *contacts.values())} == {NEW_ID}


def test_refused_without_the_previous_key_and_nothing_changes(migrated, services, stored):
    before = rows(services)
    with app_with(migrated, NEW_KEY, None) as app:
        error = one_line_error(rotate(app), "WORKERVOICE_MASTER_KEY_PREVIOUS is not set", OLD_ID)
    assert "2 pseudonym key(s)" in error
    with app_with(migrated, NEW_KEY, OTHER_KEY) as app:
        one_line_error(rotate(app), "neither", OLD_ID)
    assert rows(services) == before


def test_keys_recorded_under_no_master_key_are_found_out(migrated, services, stored):
    with services.db.session() as session:
        session.execute(update(PseudonymKey).values(master_key_id=None))
    with app_with(migrated, NEW_KEY, OLD_KEY) as app:
        result = rotate(app)
    assert result.exit_code == 0, result.output
    assert "done: 2 pseudonym key(s), 3 contact(s)" in result.output
    keys, _ = rows(services)
    assert {mk for _, mk in keys.values()} == {NEW_ID}


def test_the_service_keeps_answering_throughout(migrated, services, stored, monkeypatch):
    """A process restarted with both keys answers known workers (same pseudonyms) and new ones
    between every batch, its ring read again from Redis each time: the re-encrypted keys are the
    same keys to it, and the ring in Redis follows each commit."""
    with app_with(migrated, NEW_KEY, OLD_KEY) as app:
        running = app.extensions[EXTENSION]
        clock = Clock()
        ring = KeyRing(running.mirror.key_blobs, running.crypto, clock=clock)
        running.identity = Identity(ring)
        keys_at_start = ring.keys()
        client = app.test_client()
        enrolled = [SmsWorker(client, phone) for phone in PHONES]
        newcomers = iter(f"+88017110003{n:02d}" for n in range(10))
        answered, real = [], master_rotation._reencrypt

        def hop_then(*args):
            clock.now += KEY_CACHE_SECONDS  # the ring is read again from Redis
            assert ring.keys() == keys_at_start  # same ids, material, status, times
            worker = enrolled[len(answered) % len(enrolled)]
            assert known(worker.send("1"))  # still known: the same pseudonym
            assert unknown(SmsWorker(client, next(newcomers)).send("hello"))
            run_jobs(app)
            answered.append(args[2])
            return real(*args)

        monkeypatch.setattr(master_rotation, "_reencrypt", hop_then)
        result = rotate(app, "--batch-size", "1")
        assert result.exit_code == 0, result.output
        assert len(answered) == 5  # two keys, three contacts
        clock.now += KEY_CACHE_SECONDS
        assert ring.keys() == keys_at_start
        assert {entry[4] for entry in running.mirror.key_blobs()} == {NEW_ID}  # Redis followed
        assert running.events.waiting() == 0


def test_callback_numbers_are_found_by_processes_on_either_key(migrated, app, services, stored):
    callback = "+8809612345678"
    result = app.test_cli_runner().invoke(
        main, ["workplace", "set", "dhaka-knit", "--callback-number", callback]
    )
    assert result.exit_code == 0, result.output  # written by a process on the old key
    with app_with(migrated, NEW_KEY, OLD_KEY) as both:
        assert (
            both.extensions[EXTENSION].directory.callback_workplace(callback, at=0) == "dhaka-knit"
        )
        assert rotate(both).exit_code == 0
    with app_with(migrated, NEW_KEY, None) as new_only:
        assert (
            new_only.extensions[EXTENSION].directory.callback_workplace(callback, at=0)
            == "dhaka-knit"
        )
    assert services.directory.callback_workplace(callback, at=1e9) == "dhaka-knit"
