"""A worker opts in to the contact vault by answering a flow's contact question (``type:
contact``) over SMS: the hop seals the number into the event log's entry to expire, the drain
keeps it in the vault under the pseudonym, "No" deletes it again; no number in clear anywhere."""

from __future__ import annotations

import dataclasses
import logging
import shutil

import pytest
from sqlalchemy import select

from gateway import create_app
from gateway.services import EXTENSION
from gateway.vault import INTAKE_PURPOSE
from store.models import Contact

from .conftest import ROOT
from .engine.test_contact import REMIND
from .hops import logged_batches, wait_for_workers
from .leaks import assert_no_numbers, dump_redis, number_forms
from .support import SmsWorker, add_workplace, run_jobs

PHONE = "+8801711000777"


@pytest.fixture
def remind_app(app, migrated, tmp_path):
    """The app with the shipped flows and one with a contact question (over the database and
    Redis ``app`` has just emptied)."""
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", flows)
    (flows / "remind.yaml").write_text(REMIND, encoding="utf-8")
    remind = create_app(dataclasses.replace(migrated, flows_dir=flows))
    yield remind
    remind.extensions[EXTENSION].db.dispose()


def enrolled(client) -> SmsWorker:
    """A worker enrolled who has finished the day's check-in (a keyword starts a flow only
    between questions)."""
    worker = SmsWorker(client, PHONE)
    reply = worker.enrol()
    for _ in range(8):
        if "Your answers are anonymous" in reply:
            return worker
        reply = worker.send("1")
    raise AssertionError(f"the check-in did not finish: {reply!r}")


def stored_contacts(services) -> list[Contact]:
    with services.db.session() as session:
        rows = list(session.scalars(select(Contact)))
        session.expunge_all()
    return rows


def test_agreeing_keeps_the_number_in_the_vault_and_declining_deletes_it(
    remind_app, services, caplog
):
    caplog.set_level(logging.DEBUG)
    running = remind_app.extensions[EXTENSION]
    add_workplace(running)
    worker = enrolled(remind_app.test_client())
    assert "May we text you" in worker.send("REMIND")
    assert "Morning or evening?" in worker.send("1")
    assert "Thank you." in worker.send("2")
    run_jobs(remind_app)
    who = running.identity.pseudonymise(PHONE)
    [contact] = stored_contacts(running)
    assert (contact.pseudonym, contact.key_id, contact.purposes) == (
        who.value,
        who.key_id,
        ["prize_draws", "reminders"],
    )
    assert running.vault.number_for(who.value, "reminders") == PHONE
    assert running.vault.number_for(who.value, "feedback") is None
    assert_no_numbers([PHONE], running, caplog.text)

    worker.send("REMIND")
    assert "Thank you." in worker.send("2")
    run_jobs(remind_app)
    assert stored_contacts(running) == []
    assert running.vault.number_for(who.value) is None


def test_the_event_log_holds_the_number_only_sealed_to_expire(remind_app, monkeypatch):
    running = remind_app.extensions[EXTENSION]
    add_workplace(running)
    worker = enrolled(remind_app.test_client())
    run_jobs(remind_app)
    wait_for_workers(running, monkeypatch)  # the drain waits: the entry stays in Redis
    worker.send("REMIND")
    worker.send("1")
    [entry] = [
        batch
        for batch in logged_batches(running.redis)
        if any(event["kind"] == "contact_agreed" for event in batch["events"])
    ]
    [agreed] = [event for event in entry["events"] if event["kind"] == "contact_agreed"]
    assert running.crypto.unseal(agreed["sealed"], INTAKE_PURPOSE) == PHONE
    assert "ciphertext" not in agreed
    stored = dump_redis(running)
    for form in number_forms(PHONE):
        assert form.encode() not in stored


def test_a_token_that_no_longer_opens_keeps_no_contact(services, caplog):
    batch = {
        "pseudonym": "p" * 64,
        "key_id": 1,
        "events": [{"kind": "contact_agreed", "sealed": "not-a-token", "purposes": ["reminders"]}],
    }
    services.vault.admit([batch])
    assert "ciphertext" not in batch["events"][0] and "sealed" not in batch["events"][0]
    assert "not kept" in caplog.text
