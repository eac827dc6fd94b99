"""The consent ledger, STOP and DELETE in the event log's drain (store/jobs.py, store/forget.py,
store/consents.py): what is written, what goes, and what a late or retried entry can never bring
back. One request's events at a time through the real drain (the ``persist`` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from aggregator.indicators import indicators, window
from gateway.keys import KeyKeeper
from store import consents, keyring
from store.models import Answer, Consent, Tombstone, Workplace

from ..support import add_workplace
from .test_jobs import WHO, answer, enrolment, key_id, persist, profile, stored, utc

__all__ = ["key_id", "persist"]  # fixtures, used by name

EARLIER = "e" * 64  # the same worker under the previous key
OTHER = "b" * 64


def consent(at: datetime, event_id: str, licence: str = "1", language: str = "bn") -> dict:
    return {
        "kind": "consented",
        "licence": licence,
        "language": language,
        "channel": "ussd",
        "at": at.isoformat(),
        "event_id": event_id,
    }


def stop(*earlier: tuple[int, str]) -> dict:
    return {"kind": "opted_out", "earlier": [list(pair) for pair in earlier], "event_id": "s"}


def erase(*earlier: tuple[int, str]) -> list[dict]:
    return [stop(*earlier), {"kind": "erased", "event_id": "e"}]


def ledger(services, who: str = WHO) -> list[tuple]:
    with services.db.session() as session:
        return [
            (row.licence, row.agreed_at.astimezone(UTC), row.language, row.channel)
            for row in consents.ledger(session, who)
        ]


def tombstone(services, who: str = WHO) -> Tombstone | None:
    with services.db.session() as session:
        return session.get(Tombstone, who)


# -- the ledger -----------------------------------------------------------------------------------
def test_each_agreement_is_a_ledger_row_written_once(services, persist):
    add_workplace(services)
    first = persist(enrolment(utc(25, 3)), consent(utc(25, 3), "t:1:1"), received=utc(25, 3))
    again = persist(enrolment(utc(25, 3)), consent(utc(25, 3), "t:1:1"), received=utc(25, 3))
    persist(consent(utc(26, 8), "t:2:0", licence="2"), received=utc(26, 8))
    assert first["consents"] == again["consents"] == 1
    assert ledger(services) == [
        ("1", utc(25, 3), "bn", "ussd"),
        ("2", utc(26, 8), "bn", "ussd"),
    ]


def test_the_cache_rebuild_takes_the_newest_agreements_version(services, persist):
    add_workplace(services)
    persist(enrolment(utc(25, 3)), consent(utc(25, 3), "t:1:1"), received=utc(25, 3))
    persist(consent(utc(26, 8), "t:2:0", licence="2024-b"), received=utc(26, 8))
    persist(enrolment(utc(25, 3)), who=OTHER, received=utc(25, 3))  # enrolled before the ledger
    services.redis.flushdb()
    services.mirror.rebuild()
    assert services.profiles.load(WHO).licence == "2024-b"
    assert services.profiles.load(OTHER).licence is None  # taken as the first version


def test_a_grace_migration_moves_the_whole_ledger(services, persist, key_id):
    add_workplace(services)
    persist(enrolment(utc(25, 3)), consent(utc(25, 3), "t:1:1"), who=EARLIER)
    persist(consent(utc(25, 4), "t:2:0", licence="2"), who=EARLIER)
    moved = {
        "kind": "migrated",
        "from": EARLIER,
        "from_key": key_id,
        "at": utc(26, 9).isoformat(),
        "event_id": "",
    }
    persist(moved, received=utc(26, 9))
    persist(moved, received=utc(26, 9))  # the same entry drained twice
    assert ledger(services, EARLIER) == []
    assert [row[0] for row in ledger(services)] == ["1", "2"]
    assert profile(services) is not None and profile(services, EARLIER) is None


def test_destroying_a_key_takes_its_ledger_and_tombstones(services, persist, key_id):
    add_workplace(services)
    persist(enrolment(utc(25, 3)), consent(utc(25, 3), "t:1:1"), who=OTHER)
    persist(*erase(), received=utc(25, 5))
    keeper = KeyKeeper(services)
    keeper.rotate(datetime(2026, 11, 1, tzinfo=UTC))
    with services.db.session() as session:
        assert keyring.destroy(session, key_id, datetime(2026, 11, 30, tzinfo=UTC)) is not None
    with services.db.session() as session:
        assert session.scalars(select(Consent)).all() == []
        assert session.scalars(select(Tombstone)).all() == []


# -- STOP ---------------------------------------------------------------------------------------
def test_stop_forgets_profile_and_ledger_under_every_live_pseudonym(services, persist, key_id):
    add_workplace(services)
    persist(enrolment(utc(25, 3)), consent(utc(25, 3), "t:1:1"), received=utc(25, 3))
    persist(enrolment(utc(20, 3)), consent(utc(20, 3), "t:0:1"), who=EARLIER)
    persist(enrolment(utc(25, 3)), consent(utc(25, 3), "t:9:1"), who=OTHER)
    counts = persist(stop((key_id, EARLIER)), received=utc(25, 6))
    assert counts["forgotten"] == 1
    assert profile(services) is None and profile(services, EARLIER) is None
    assert ledger(services) == ledger(services, EARLIER) == []
    assert profile(services, OTHER) is not None and len(ledger(services, OTHER)) == 1
    mark = tombstone(services, EARLIER)
    assert mark.stopped_at.astimezone(UTC) == utc(25, 6) and mark.erased_at is None


def test_a_consent_retried_after_stop_is_not_written_even_once_the_day_mark_is_gone(
    services, persist
):
    add_workplace(services)
    persist(stop(), received=utc(25, 6))
    services.redis.flushdb()  # the hops' day-long mark has expired: the tombstone remains
    services.mirror.rebuild()
    persist(enrolment(utc(25, 5)), consent(utc(25, 5), "t:1:1"), received=utc(25, 5))
    assert profile(services) is None and ledger(services) == []
    persist(enrolment(utc(25, 7)), consent(utc(25, 7), "t:2:1"), received=utc(25, 7))  # again
    assert profile(services) is not None and len(ledger(services)) == 1


# -- DELETE -------------------------------------------------------------------------------------
def test_delete_erases_every_answer_that_can_still_be_linked(services, persist, key_id):
    add_workplace(services)
    persist(answer("long_hours", "yes", utc(25, 3), "t:1:0"), received=utc(25, 3))
    persist(answer("long_hours", "no", utc(20, 3), "t:0:0"), who=EARLIER, received=utc(20, 3))
    persist(answer("long_hours", "no", utc(25, 3), "t:9:0"), who=OTHER, received=utc(25, 3))
    persist(enrolment(utc(25, 3)), consent(utc(25, 3), "t:1:1"), received=utc(25, 3))
    counts = persist(*erase((key_id, EARLIER)), received=utc(25, 6))
    assert counts["erased"] == 1
    assert [(row.pseudonym, row.value_text) for row in stored(services)] == [(OTHER, "no")]
    assert profile(services) is None and ledger(services) == []
    for who in (WHO, EARLIER):
        assert tombstone(services, who).erased_at.astimezone(UTC) == utc(25, 6)


def test_entries_from_before_delete_drained_after_it_store_nothing(services, persist):
    """A batch still waiting in the event log at the DELETE (or a job retried after it), with
    its answers, enrolment and consent: nothing of it is written."""
    add_workplace(services)
    persist(*erase(), received=utc(25, 6))
    late = (
        answer("long_hours", "yes", utc(25, 5), "t:1:0"),
        answer("pay_fairness", 2, utc(25, 5), "t:1:1"),
        enrolment(utc(25, 5)),
        consent(utc(25, 5), "t:1:2"),
    )
    counts = persist(*late, received=utc(25, 5))
    again = persist(*late, received=utc(25, 5))  # retried
    assert counts["answers"] == again["answers"] == 0
    assert stored(services) == [] and profile(services) is None and ledger(services) == []


def test_a_delete_retried_after_the_worker_joined_again_keeps_the_new_answers(services, persist):
    add_workplace(services)
    persist(answer("long_hours", "yes", utc(25, 3), "t:1:0"), received=utc(25, 3))
    persist(*erase(), received=utc(25, 6))
    persist(enrolment(utc(25, 8)), consent(utc(25, 8), "t:3:1"), received=utc(25, 8))
    persist(answer("long_hours", "no", utc(25, 9), "t:4:0"), received=utc(25, 9))
    persist(*erase(), received=utc(25, 6))  # the DELETE's entry drained again
    assert [row.value_text for row in stored(services)] == ["no"]
    assert profile(services) is not None and len(ledger(services)) == 1


def test_answers_and_their_delete_in_one_drain_leave_nothing(app, services, key_id):
    """Entries before the DELETE, the DELETE, and a new worker's answer after it under the same
    number, all waiting together: one drain writes only the last."""
    from gateway import persistence
    from gateway.services import current

    add_workplace(services)

    def entry(received: datetime, *events: dict) -> dict:
        return {
            "pseudonym": WHO,
            "key_id": key_id,
            "channel": "sms",
            "received_at": received.isoformat(),
            "events": list(events),
        }

    with app.app_context():
        log = current().events
        log.append_for_tests(entry(utc(25, 3), answer("long_hours", "yes", utc(25, 3), "t:1:0")))
        log.append_for_tests(entry(utc(25, 6), *erase()))
        log.append_for_tests(entry(utc(25, 4), answer("pay_fairness", 2, utc(25, 4), "t:2:0")))
        log.append_for_tests(entry(utc(25, 9), answer("long_hours", "no", utc(25, 9), "t:3:0")))
        persistence.drain(0, 0.0)
    assert [(row.question_id, row.value_text) for row in stored(services)] == [("long_hours", "no")]


def test_figures_drop_the_erased_worker_at_the_next_cutoff(services, persist):
    """The aggregator reads answers from the table: with a DELETE's answers gone, the next
    published window has one respondent fewer (and, under k, is suppressed)."""
    add_workplace(services)
    workers = [WHO] + [f"{n:x}" * 64 for n in range(1, 5)]
    for n, who in enumerate(workers):
        event = answer("long_hours", "yes" if n % 2 else "no", utc(24, 3), f"t:{n}:0")
        persist(event, who=who, received=utc(24, 3))

    def published() -> dict:
        flows, _texts = services.registry.current()
        with services.db.session() as session:
            place = session.scalar(select(Workplace).where(Workplace.slug == "dhaka-knit"))
            span = window("day", 7, utc(25, 12), place.timezone)
            return indicators(session, place, flows, span, 4)

    before = published()
    assert before["respondents"] == 5
    persist(*erase(), received=utc(25, 6))
    after = published()
    assert after["respondents"] == 4
    [long_hours] = [i for i in after["indicators"] if i["id"] == "checkin.long_hours"]
    assert long_hours["respondents"] == 4 and long_hours["value"] == 0.5
    with services.db.session() as session:
        assert session.scalar(select(Answer).where(Answer.pseudonym == WHO)) is None
