"""A country's main time zone, from CLDR data shipped with Babel."""

from __future__ import annotations

from functools import cache

from babel.core import get_global

FALLBACK = "UTC"
# CLDR lists several zones for these countries without naming a main one: the capital's zone.
MAIN_ZONES = {
    "AU": "Australia/Sydney",
    "BR": "America/Sao_Paulo",
    "CA": "America/Toronto",
    "CN": "Asia/Shanghai",
    "ID": "Asia/Jakarta",
    "MX": "America/Mexico_City",
    "MY": "Asia/Kuala_Lumpur",
    "RU": "Europe/Moscow",
    "US": "America/New_York",
}


@cache
def zone_for_country(country: str | None) -> str:
    """The zone a workplace in this country uses unless told otherwise (e.g. BD -> Asia/Dhaka)."""
    country = (country or "").upper()
    if country in MAIN_ZONES:
        return MAIN_ZONES[country]
    zones = get_global("territory_zones").get(country, [])
    if not zones:
        return FALLBACK
    primary = set(get_global("windows_zone_mapping").values())
    return next((z for z in zones if z in primary), zones[0])
