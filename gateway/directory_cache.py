"""What a hop reads instead of the database (issue 6 item 1): the pseudonym key ring, the
workplaces' codes, time zones and callback numbers, and enrolled workers' profiles, all kept in
Redis, so that a webhook runs no SQL and goes on answering while PostgreSQL is down. What puts
them there is gateway/directory_mirror.py.

Redis keys (none holds a phone number, SPEC §6):

    wv:keyring              the live pseudonym keys as JSON ``[[id, status, base64,
                            activates_at], ...]`` (epoch seconds), still AES-GCM under the
                            master key (identity.KeyRing decrypts them); a destroyed key is
                            gone from it
    wv:directory            a hash: ``code:<code>`` -> slug, ``zone:<slug>`` -> IANA zone,
                            ``callback:<HMAC of the number>`` -> slug
    wv:profile:<pseudonym>  an enrolled worker: JSON ``{"language", "workplace"}`` (and
                            ``"seed"``: the daily rotation's, drawn at enrolment, ``"licence"``:
                            the licence version they last agreed to, absent for the first
                            one), no TTL
    wv:cache:built          the marker: when the cache was last rebuilt from the database
    wv:cache:generation     bumped by every write of the ring or the directory

Profiles are written by the hop that changes them (enrolment, LANG, consent to a new licence
version) and deleted by the hop that forgets them (STOP, DELETE), under the worker's lock, next
to the job that will persist the same change: the cache runs ahead of the database, never behind
it. The persistence job does not write them: it runs late and out of order (retries), and could
put back an older language. They have no
TTL: the cache is the hops' only source, and a profile that expired would turn a worker who was
silent for a while into a new one. A profile takes about 190 bytes of Redis memory, and Redis
must not evict keys (``maxmemory-policy noeviction``, as RQ needs anyway).

A hop that finds no marker (Redis lost its data) answers from what there is, and queues a
rebuild: until it has run, a returning worker whose session is gone too is taken for a new one
(they enrol again, which the database takes as a newer enrolment), and codes are unknown. The
ring alone is read from the database then, by the first process that needs it: no hop can
answer without it. In normal operation the marker is always there (``db upgrade`` and every
start-up set it), so none of this happens.

Each process keeps the ring (identity.KeyRing) and the directory (``DirectoryView``) in memory
for at most ``CACHE_SECONDS``, so a change reaches every process within that time (SPEC §6).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis import Redis

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0  # how old a process's memory of the ring or the directory may be
KEYRING_KEY = "wv:keyring"
DIRECTORY_KEY = "wv:directory"
PROFILE_KEY = "wv:profile:{}"
BUILT_KEY = "wv:cache:built"
GENERATION_KEY = "wv:cache:generation"
REBUILDING_KEY = "wv:cache:rebuilding"  # one start-up rebuild at a time
REBUILD_QUEUED_KEY = "wv:cache:rebuild-queued"  # one queued rebuild at a time
# The keys every worker shares (no one's data): all the others under wv: belong to a worker.
SHARED_KEYS = frozenset(
    {KEYRING_KEY, DIRECTORY_KEY, BUILT_KEY, GENERATION_KEY, REBUILDING_KEY, REBUILD_QUEUED_KEY}
)
NUMBER_INFO = b"workervoice:callback-number"  # the HKDF info of the callback-number HMAC key


def number_digest(master_key: bytes) -> Callable[[str], str]:
    """HMAC-SHA256 of an E.164 number under a key derived from the master key: how a callback
    number is named in Redis (a plain hash of a phone number is easily reversed)."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=NUMBER_INFO).derive(master_key)
    return lambda number: hmac.new(key, number.encode(), hashlib.sha256).hexdigest()


# -- what the hops read ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CachedProfile:
    language: str
    workplace: str  # slug
    seed: int | None = None  # the daily rotation's, drawn at enrolment (None: the pseudonym's)
    licence: str | None = None  # the licence version last agreed to (None: the first one)


class ProfileCache:
    """Enrolled workers' profiles by pseudonym (no TTL: see the module's docstring). A reading
    that finds no marker (in the same round trip) calls ``unbuilt``."""

    def __init__(self, redis: Redis, unbuilt: Callable[[], object] = lambda: None):
        self.redis = redis
        self._unbuilt = unbuilt

    def load(self, pseudonym: str) -> CachedProfile | None:
        """The worker's profile; None for a worker the cache does not know (a new one)."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(PROFILE_KEY.format(pseudonym))
            pipe.exists(BUILT_KEY)
            raw, built = pipe.execute()
        return self.found(raw, built)

    def found(self, raw: bytes | str | None, built: bool) -> CachedProfile | None:
        """The profile as read with the marker (here, or in the hop's first round trip)."""
        if not built:
            _call(self._unbuilt)
        return _profile(raw) if raw else None

    @staticmethod
    def key(pseudonym: str) -> str:
        return PROFILE_KEY.format(pseudonym)


def profile_json(
    language: str, workplace: str, seed: int | None = None, licence: str | None = None
) -> str:
    data: dict[str, str | int] = {"language": language, "workplace": workplace}
    if seed is not None:
        data["seed"] = seed
    if licence is not None:
        data["licence"] = licence
    return json.dumps(data, separators=(",", ":"))


def _profile(raw: bytes | str) -> CachedProfile | None:
    try:
        data = json.loads(raw)
        seed, licence = data.get("seed"), data.get("licence")
        return CachedProfile(
            str(data["language"]),
            str(data["workplace"]),
            seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            licence if isinstance(licence, str) else None,
        )
    except (ValueError, TypeError, KeyError):
        log.warning("a cached profile is unreadable: taken as no profile")
        return None


class DirectoryView:
    """The directory as one process's hops see it: the Redis hash, read again once the copy in
    memory is CACHE_SECONDS old on the clock it is asked with. A reading that finds no marker
    calls ``unbuilt`` (Services queues a rebuild)."""

    def __init__(
        self,
        redis: Redis,
        digest: Callable[[str], str],
        *,
        clock: Callable[[], float] = time.monotonic,
        unbuilt: Callable[[], object] = lambda: None,
        also: Sequence[Callable[[str], str]] = (),
    ):
        self.redis = redis
        # Under the previous master key too while one is being replaced: a process that has
        # not been given the new key yet may have written the directory.
        self._digests = (digest, *also)
        self._clock = clock
        self._unbuilt = unbuilt
        self._fields: Mapping[str, str] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def slug_for_code(self, code: str, at: float | None = None) -> str | None:
        """The slug of the workplace whose enrolment code this is, or None."""
        return self._read(at).get("code:" + code)

    def zone(self, slug: str, at: float | None = None) -> str | None:
        """The workplace's IANA time zone, or None for a workplace the cache does not know."""
        return self._read(at).get("zone:" + slug)

    def callback_workplace(self, number: str, at: float | None = None) -> str | None:
        """The slug of the workplace whose callback number ``number`` (E.164) is, or None."""
        fields = self._read(at)
        for digest in self._digests:
            slug = fields.get("callback:" + digest(number))
            if slug is not None:
                return slug
        return None

    def forget_memory(self) -> None:
        """Read Redis again at the next question (this process changed the directory)."""
        with self._lock:
            self._loaded_at = float("-inf")

    def _read(self, at: float | None) -> Mapping[str, str]:
        now = self._clock() if at is None else at
        with self._lock:
            if 0 <= now - self._loaded_at < CACHE_SECONDS:
                return self._fields
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(DIRECTORY_KEY)
                pipe.exists(BUILT_KEY)
                fields, built = pipe.execute()
            self._fields = {_text(k): _text(v) for k, v in fields.items()}
            self._loaded_at = now
            current = self._fields
        if not built:
            _call(self._unbuilt)
        return current


def _call(unbuilt: Callable[[], object]) -> None:
    try:
        unbuilt()
    except Exception:  # the hop answers from what there is all the same
        log.exception("a rebuild of the cache could not be queued")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
