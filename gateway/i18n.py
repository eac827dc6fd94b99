"""Catalogs read with Babel: flow texts from WORKERVOICE_LOCALES_DIR, the service's own words
from the catalog shipped inside the package. Implements the engine's ``Texts`` protocol."""

from __future__ import annotations

import logging
from pathlib import Path

from babel.messages.pofile import PoFileError, read_po

from .engine.texts import SOURCE_LANGUAGE

log = logging.getLogger(__name__)
SERVICE_LOCALES = Path(__file__).parent / "locale"


class CatalogError(Exception):
    """A catalog that cannot be read: the whole set of flows and catalogs is refused."""


def read_catalog(path: Path) -> dict[str, str]:
    """msgid -> translation for every translated, non-fuzzy message of a .po file."""
    try:
        with path.open("rb") as handle:
            catalog = read_po(handle, abort_invalid=True)
    except (OSError, ValueError, PoFileError) as exc:  # UnicodeDecodeError is a ValueError
        raise CatalogError(f"{path}: cannot read catalog: {str(exc).splitlines()[0]}") from None
    return {
        m.id: m.string
        for m in catalog
        if isinstance(m.id, str) and m.id and isinstance(m.string, str) and m.string and not m.fuzzy
    }


def read_domain(root: Path, domain: str) -> dict[str, dict[str, str]]:
    """Every language's catalog of one domain under ``root/<lang>/LC_MESSAGES/<domain>.po``."""
    catalogs: dict[str, dict[str, str]] = {}
    for path in sorted(root.glob(f"*/LC_MESSAGES/{domain}.po")):
        catalogs[path.parent.parent.name] = read_catalog(path)
    return catalogs


class Texts:
    def __init__(
        self,
        flows: dict[str, dict[str, str]],
        service: dict[str, dict[str, str]],
        reports: dict[str, dict[str, str]] | None = None,
    ):
        self._flows = flows
        self._service = service
        self._reports = reports or {}
        self._languages = sorted(set(flows) | {SOURCE_LANGUAGE})

    @classmethod
    def load(cls, locales_dir: Path) -> Texts:
        return cls(
            read_domain(locales_dir, "flows"),
            read_domain(SERVICE_LOCALES, "service"),
            read_domain(locales_dir, "reports"),
        )

    def flow(self, language: str | None, msgid: str) -> str:
        return self._flows.get(language or "", {}).get(msgid, msgid)

    def service(self, language: str | None, msgid: str) -> str:
        return self._service.get(language or "", {}).get(msgid, msgid)

    def report(self, language: str | None, msgid: str) -> str:
        return self._reports.get(language or "", {}).get(msgid, msgid)

    def languages(self) -> list[str]:
        return list(self._languages)
