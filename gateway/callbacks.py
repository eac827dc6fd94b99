"""The free missed-call callback (issue 5 item 5): a worker rings a workplace's callback number,
the call is rejected unanswered so it costs them nothing, and a job rings them back into the
voice flow.

The voice adapters call ``missed_call`` on the first request of every inbound call, and answer
``<Reject/>`` when it returns True. The hop reads the callback numbers from the directory cache
(gateway/directory_cache.py: Redis, and each process's copy at most ``CACHE_SECONDS`` old, named
there by an HMAC, never in clear), so it does no SQL. The job carries no number in
clear (SPEC §6): the worker's sealed, and the workplace's slug, its callback number looked up
when the job runs. A worker is called back at most once an hour, counted under their pseudonym.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from store.directory import DirectoryError, workplace_by_slug

from .calls import CallRefused, caller_for
from .identity import InvalidAddress, e164
from .outbound import SEND_RETRY
from .providers import SealedJob
from .queues import CALLS

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger(__name__)
PROVIDERS = ("twilio", "at")
CALLEE_PURPOSE = "job-callee"  # a sealed SMS recipient cannot be replayed as a callee
CALLEE_TTL_SECONDS = 3600  # longer than every retry of SEND_RETRY put together
ONCE_PER_SECONDS = 3600  # one callback per worker per hour
ONCE_KEY = "wv:callback:{}"  # per pseudonym, never per number
# The worker's phone must have hung up before it can ring again. 0 queues at once (the embedded
# single-process default always does: it has no scheduler to wait for).
CALLBACK_DELAY_SECONDS = 5
CALLBACK_JOB = SealedJob(CALLEE_PURPOSE, CallRefused, "callback", "placed", "call_id", log)


def callback_workplace(
    services: Services, called: str, clock: Callable[[], float] = time.monotonic
) -> str | None:
    """The slug of the workplace whose callback number ``called`` is (any address a provider
    sends), or None if it is no callback number. ``clock`` (monotonic) dates the directory's
    copy in memory."""
    try:
        number = e164(called)
    except InvalidAddress:  # client:..., a short code, nothing: not a callback number
        return None
    return services.directory.callback_workplace(number, at=clock())


def is_callback_number(
    services: Services, called: str, clock: Callable[[], float] = time.monotonic
) -> bool:
    """Whether ``called`` (any address a provider sends) is some workplace's callback number."""
    return callback_workplace(services, called, clock) is not None


def missed_call(
    services: Services,
    provider: str,
    caller: str,
    called: str,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """The first request of an inbound call: True if it rang a callback number, and then the
    adapter answers ``<Reject/>``. The caller is called back from that number by a job, unless
    they were called back in the past hour or withheld their number."""
    if provider not in PROVIDERS:
        raise ValueError(f"no callbacks through provider {provider!r}")
    workplace = callback_workplace(services, called, clock)
    if workplace is None:
        return False
    try:
        pseudonym = services.identity.pseudonymise(caller)
    except InvalidAddress:  # withheld ("anonymous") or not a number: no one to call back
        log.info("missed call from a withheld number: no callback", extra={"provider": provider})
        return True
    key = ONCE_KEY.format(pseudonym.value)
    if not services.redis.set(key, b"1", nx=True, ex=ONCE_PER_SECONDS):
        log.info("missed call: called back within the hour already", extra={"provider": provider})
        return True
    try:
        _enqueue(services, provider, e164(caller), workplace)
    except Exception:
        services.redis.delete(key)  # not queued: the next missed call may try again
        raise
    log.info("missed call: callback queued", extra={"provider": provider})
    return True


def _enqueue(services: Services, provider: str, number: str, workplace: str) -> None:
    """Queue the callback of ``number`` from ``workplace``'s callback number, in
    CALLBACK_DELAY_SECONDS when a scheduler will run it then."""
    sealed = services.crypto.seal(number, CALLEE_PURPOSE, CALLEE_TTL_SECONDS)
    options: dict[str, Any] = {
        "retry": SEND_RETRY,
        "result_ttl": 600,
        "failure_ttl": CALLEE_TTL_SECONDS,
        "description": "missed-call callback",
    }
    queue = services.queues[CALLS]
    if CALLBACK_DELAY_SECONDS and queue.is_async:
        delay = timedelta(seconds=CALLBACK_DELAY_SECONDS)
        queue.enqueue_in(delay, call_back, provider, sealed, workplace, **options)
    else:
        queue.enqueue(call_back, provider, sealed, workplace, **options)


def call_back(provider: str, sealed: str, workplace: str) -> str | None:
    """RQ job: open the sealed number and ring it from the callback number the workplace (slug)
    has now, into the voice flow. Retried on a transient failure; a final refusal, a seal that
    does not open, or a workplace that has no callback number any more is dropped. Returns the
    provider's call id."""
    from .services import current

    services = current()
    from_number = _callback_number(services, workplace)
    if from_number is None:
        log.warning("callback not placed: the workplace has no callback number any more")
        return None
    caller = caller_for(provider, services.config, workplace)
    return CALLBACK_JOB.run(services, provider, sealed, lambda to: caller.call(to, from_number))


def _callback_number(services: Services, workplace: str) -> str | None:
    """The workplace's callback number, or None if it has none or is gone."""
    with services.db.session() as session:
        try:
            return workplace_by_slug(session, workplace).callback_number
        except DirectoryError:
            return None
