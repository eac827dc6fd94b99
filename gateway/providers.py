"""What the jobs that reach a worker through a provider API share: the shape of such a job
(open the sealed number, hand it to the provider, forget it), the turning of Africa's Talking
SDK errors into reasons, and the development outbox that stands in for a provider.

Both keep to one rule (SPEC §6): the SDKs' own errors may quote the number (an invalid-number
message, an API body), so nothing from them goes into an exception or a log line, and a failure
is returned rather than raised inside the ``except`` that caught it, so no exception quoting
the number is chained to ours.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .crypto import CryptoError

if TYPE_CHECKING:
    from .services import Services


@dataclass(frozen=True)
class SealedJob:
    """One kind of job that delivers something to a sealed number: which seals it opens, which
    exception means the provider refused for good, and how its log lines name what it does
    (``thing`` is ``done``: "reply" "sent", the provider's id logged under ``id_field``)."""

    purpose: str
    refused: type[Exception]
    thing: str
    done: str
    id_field: str
    log: logging.Logger

    def run(
        self, services: Services, provider: str, sealed: str, deliver: Callable[[str], str]
    ) -> str | None:
        """Open ``sealed`` and hand the number to ``deliver``; return the provider's id. A seal
        that does not open (expired, tampered, another purpose) and a refusal for good are
        logged and dropped (None); any other failure propagates, so RQ retries the job."""
        try:
            number = services.crypto.unseal(sealed, self.purpose)
        except CryptoError as exc:
            self.log.warning("%s not %s: %s", self.thing, self.done, exc)
            return None
        try:
            provider_id = deliver(number)
        except self.refused as exc:
            self.log.warning("%s refused for good: %s", self.thing, exc)
            return None
        self.log.info(
            "%s %s", self.thing, self.done, extra={"provider": provider, self.id_field: provider_id}
        )
        return provider_id


def at_request(request: Callable[[], object]) -> tuple[object, str | None]:
    """Africa's Talking's answer to ``request()`` (an SDK call), or None and why there is none,
    naming only the kind of failure: the SDK's exceptions quote the API body."""
    from africastalking.Service import AfricasTalkingException

    try:
        return request(), None
    except AfricasTalkingException:
        return None, "Africa's Talking answered with an error status"
    except ValueError:  # a JSON content type over a body that is not JSON
        return None, "Africa's Talking answered with something other than JSON"
    except OSError as exc:  # requests' connection errors and timeouts
        return None, f"Africa's Talking unreachable: {type(exc).__name__}"


def write_note(directory: Path, kind: str, text: str) -> str:
    """Write ``text`` to a new file ``{kind}-{time}-{random}.txt`` in the development outbox
    (never over another note) and return its name. The caller writes no number into it."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = directory / f"{kind}-{stamp}-{secrets.token_hex(4)}.txt"
    with path.open("x", encoding="utf-8") as handle:
        handle.write(text)
    return path.name
