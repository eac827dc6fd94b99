"""The flows and catalogs a running service uses, reloaded when their files change.

Changed files are picked up within RELOAD_SECONDS. A set that fails to load is refused and the
last good set keeps serving (SPEC §4); at start-up a bad set stops the service.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from .engine.definition import FlowError, FlowSet, load_flows
from .i18n import CatalogError, Texts

log = logging.getLogger(__name__)
RELOAD_SECONDS = 5.0


def _fingerprint(*roots: Path) -> tuple:
    files = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix in (".yaml", ".po") and path.is_file():
                stat = path.stat()
                files.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(files)


class FlowRegistry:
    def __init__(self, flows_dir: Path, locales_dir: Path):
        self.flows_dir = flows_dir
        self.locales_dir = locales_dir
        self._lock = threading.Lock()
        self._checked_at = time.monotonic()
        self._fingerprint = _fingerprint(flows_dir, locales_dir)
        self.flows: FlowSet = load_flows(flows_dir)  # raises FlowError: start-up refused
        self.texts: Texts = Texts.load(locales_dir)

    def current(self) -> tuple[FlowSet, Texts]:
        """The flows and texts to use now, reloading first if files changed."""
        if time.monotonic() - self._checked_at >= RELOAD_SECONDS:
            with self._lock:
                self._reload_if_changed()
        return self.flows, self.texts

    def _reload_if_changed(self) -> None:
        self._checked_at = time.monotonic()
        fingerprint = _fingerprint(self.flows_dir, self.locales_dir)
        if fingerprint == self._fingerprint:
            return
        self._fingerprint = fingerprint
        try:
            flows, texts = load_flows(self.flows_dir), Texts.load(self.locales_dir)
        except (FlowError, CatalogError) as exc:
            log.error("flow files refused, the last good set keeps serving: %s", exc)
            return
        self.flows, self.texts = flows, texts
        log.info("flows reloaded: %s", ", ".join(sorted(flows.flows)))
