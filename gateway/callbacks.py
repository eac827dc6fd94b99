"""The free missed-call callback (issue 5 item 5): a worker rings a workplace's callback number,
the call is rejected unanswered so it costs them nothing, and a job rings them back into the
voice flow.

The voice adapters call ``missed_call`` on the first request of every inbound call, and answer
``<Reject/>`` when it returns True. The hop reads the callback numbers from a per-process cache
(at most ``NUMBERS_CACHE_SECONDS`` old), so it normally does no SQL; the job carries the worker's
number only sealed (SPEC §6), and a worker is called back at most once an hour, counted under
their pseudonym.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from store.directory import callback_numbers

from .calls import CallRefused, caller_for
from .crypto import CryptoError
from .identity import InvalidAddress, e164
from .outbound import SEND_RETRY

if TYPE_CHECKING:
    from store.db import Database

    from .services import Services

log = logging.getLogger(__name__)
PROVIDERS = ("twilio", "at")
CALLEE_PURPOSE = "job-callee"  # a sealed SMS recipient cannot be replayed as a callee
CALLEE_TTL_SECONDS = 3600  # longer than every retry of SEND_RETRY put together
NUMBERS_CACHE_SECONDS = 5.0  # a new or changed callback number works everywhere within this
ONCE_PER_SECONDS = 3600  # one callback per worker per hour
ONCE_KEY = "wv:callback:{}"  # per pseudonym, never per number
# The worker's phone must have hung up before it can ring again. 0 queues at once (the embedded
# single-process default always does: it has no scheduler to wait for).
CALLBACK_DELAY_SECONDS = 5


class NumberCache:
    """The set of callback numbers of one database, loaded again once it is older than
    NUMBERS_CACHE_SECONDS on the clock it is asked with."""

    def __init__(self, load: Callable[[], set[str]]):
        self._load = load
        self._numbers: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def numbers(self, now: float) -> frozenset[str]:
        with self._lock:
            if not 0 <= now - self._loaded_at < NUMBERS_CACHE_SECONDS:
                self._numbers = frozenset(self._load())
                self._loaded_at = now
            return self._numbers


# One cache per database handle (each app has its own), gone with it.
_caches: weakref.WeakKeyDictionary[Database, NumberCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache_for(services: Services) -> NumberCache:
    database = services.db
    with _caches_lock:
        cache = _caches.get(database)
        if cache is None:
            cache = _caches[database] = NumberCache(lambda: _load_numbers(database))
        return cache


def _load_numbers(database: Database) -> set[str]:
    with database.session() as session:
        return callback_numbers(session)


def is_callback_number(
    services: Services, called: str, clock: Callable[[], float] = time.monotonic
) -> bool:
    """Whether ``called`` (any address a provider sends) is some workplace's callback number."""
    try:
        number = e164(called)
    except InvalidAddress:  # client:..., a short code, nothing: not a callback number
        return False
    return number in _cache_for(services).numbers(clock())


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
    if not is_callback_number(services, called, clock):
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
        _enqueue(services, provider, e164(caller), e164(called))
    except Exception:
        services.redis.delete(key)  # not queued: the next missed call may try again
        raise
    log.info("missed call: callback queued", extra={"provider": provider})
    return True


def _enqueue(services: Services, provider: str, number: str, callback_number: str) -> None:
    """Queue the callback, in CALLBACK_DELAY_SECONDS when a scheduler will run it then."""
    sealed = services.crypto.seal(number, CALLEE_PURPOSE, CALLEE_TTL_SECONDS)
    options: dict[str, Any] = {
        "retry": SEND_RETRY,
        "result_ttl": 600,
        "failure_ttl": CALLEE_TTL_SECONDS,
        "description": "missed-call callback",
    }
    queue = services.queue
    if CALLBACK_DELAY_SECONDS and queue.is_async:
        delay = timedelta(seconds=CALLBACK_DELAY_SECONDS)
        queue.enqueue_in(delay, call_back, provider, sealed, callback_number, **options)
    else:
        queue.enqueue(call_back, provider, sealed, callback_number, **options)


def call_back(provider: str, sealed: str, from_number: str) -> str | None:
    """RQ job: open the sealed number and ring it from the callback number ``from_number``,
    into the voice flow. Retried on a transient failure; a final refusal or a seal that does not
    open is dropped. Returns the provider's call id."""
    from .services import current

    services = current()
    try:
        to = services.crypto.unseal(sealed, CALLEE_PURPOSE)
    except CryptoError as exc:
        log.warning("callback not placed: %s", exc)
        return None
    try:
        call_id = caller_for(provider, services.config).call(to, from_number)
    except CallRefused as exc:
        log.warning("callback refused for good: %s", exc)
        return None
    log.info("callback placed", extra={"provider": provider, "call_id": call_id})
    return call_id
