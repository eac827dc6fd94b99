"""A grace migration, then the old key's destruction, in process: nothing the migration left
links a worker's answers under the destroyed key to them (SPEC §6), for an attacker holding the
database and the master key (tests/linkage.py). The end-to-end version runs against real
processes in tests/e2e/test_at_rest_audit.py."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import select

from gateway import identity
from gateway.keys import KeyKeeper
from store import keyring
from store.models import Answer, Worker

from ..linkage import link, stolen
from ..support import SmsWorker, add_workplace, run_jobs

PHONE = "+8801711000777"
FINISH = "Thank you. Your answers are anonymous."


def checkin(worker: SmsWorker, first: str) -> None:
    reply = worker.send(first) if first else worker.enrol()
    for _ in range(12):
        if FINISH in reply:
            return
        reply = worker.send("1")
    raise AssertionError(f"the check-in did not finish: {reply!r}")


def test_a_moved_workers_old_answers_cannot_be_linked_once_the_key_is_destroyed(
    app, client, services, monkeypatch
):
    monkeypatch.setattr(keyring, "LEAD_SECONDS", 0.0)  # the new key takes over at once
    monkeypatch.setattr(identity, "KEY_CACHE_SECONDS", 0.0)  # and this process sees it at once
    add_workplace(services)
    worker = SmsWorker(client, PHONE)
    checkin(worker, "")
    run_jobs(app)
    old = services.identity.pseudonymise(PHONE)
    with services.db.session() as session:  # those answers were yesterday's
        for answer in session.scalars(select(Answer).where(Answer.pseudonym == old.value)):
            answer.answered_on -= timedelta(days=1)
            answer.answered_at -= timedelta(days=1)
    checkin(worker, "CHECK")  # and today's: the older ones will stay behind, superseded
    run_jobs(app)

    keeper = KeyKeeper(services)
    assert keeper.rotate(services.now()) is not None
    checkin(worker, "CHECK")  # back in the grace period: profile and latest answers move
    run_jobs(app)
    new = services.identity.pseudonymise(PHONE)
    assert new.key_id != old.key_id
    with services.db.session() as session:
        assert session.get(Worker, new.value) is not None
        assert session.get(Worker, old.value) is None
    config = dataclasses.replace(services.config, salt_grace_days=0)
    monkeypatch.setattr(services, "config", config)
    assert [d.key_id for d in keeper.destroy_due(services.now())] == [old.key_id]

    database = stolen(services.db.engine)
    with database.connect() as connection:
        rows = connection.execute(select(Answer.id, Answer.key_id, Answer.superseded)).all()
    left = {r.id for r in rows if r.key_id == old.key_id}
    assert left and all(r.superseded for r in rows if r.id in left)
    found = link(database, services.config.master_key, [PHONE])[PHONE]
    assert not set(found.answers) & left, {a: found.pseudonyms[p] for a, p in found.answers.items()}
    assert set(found.answers) == {r.id for r in rows if r.key_id == new.key_id}  # the control
