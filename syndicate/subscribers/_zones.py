"""Which time zones a subscriber may have: geographic IANA zones (Europe/Paris), never `Factory`,
`localtime`, `posixrules`, `Etc/GMT+5` or other names that are not a place.

Aliases of a place (US/Eastern, Asia/Calcutta) are accepted and stored as their canonical name
(America/New_York, Asia/Kolkata), read from the tz database's own `tzdata.zi` link lines.
"""

from __future__ import annotations

import functools
import logging
from importlib import resources
from pathlib import Path
from zoneinfo import TZPATH, ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)

# The tz database's continent and ocean areas: a name under one of them is a place.
AREAS = ("Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific")
UTC_NAMES = ("UTC",)  # the one non-geographic name kept: the default where nothing else is known


class NotAPlaceError(ValueError):
    """The name is not a geographic time zone; `message` says why, for the person who typed it."""


@functools.cache
def _tzdata() -> tuple[frozenset[str], dict[str, str]]:
    """(canonical zone names, alias -> canonical name) from tzdata.zi, if one can be found."""
    text = None
    try:
        text = resources.files("tzdata").joinpath("zoneinfo", "tzdata.zi").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        for folder in TZPATH:
            try:
                text = (Path(folder) / "tzdata.zi").read_text(encoding="utf-8")
                break
            except OSError:
                continue
    if text is None:
        log.warning("no tzdata.zi found: time zone aliases are not mapped to their canonical names")
        return frozenset(), {}
    zones, links = set(), {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "Z":
            zones.add(fields[1])
        elif len(fields) >= 3 and fields[0] == "L":
            links[fields[2]] = fields[1]
    return frozenset(zones), links


def _is_place(name: str) -> bool:
    return name.split("/", 1)[0] in AREAS and "/" in name


def geographic_zone(value: str) -> str:
    """`value` as a canonical geographic zone name (or "UTC"); NotAPlaceError otherwise."""
    name = value.strip()
    if name in UTC_NAMES:
        return name
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of the database ("Europe"), a name too long
        raise NotAPlaceError(f"unknown timezone {value!r} (expected an IANA name of a place, such as Europe/Paris)") from None
    zones, links = _tzdata()
    canonical = links.get(name, name)
    if not _is_place(canonical):
        if name.startswith("Etc/") or canonical.startswith("Etc/"):
            raise NotAPlaceError(f"{value!r} is a fixed offset, not a place: choose the city whose time you keep "
                                 "(such as Europe/Paris), or UTC")
        raise NotAPlaceError(f"{value!r} is not a place's time zone: choose a city such as Europe/Paris, or UTC")
    return canonical


@functools.cache
def canonical_zones() -> tuple[str, ...]:
    """Every canonical geographic zone, sorted (the signup form's list when the browser cannot tell)."""
    zones, _ = _tzdata()
    if not zones:
        from zoneinfo import available_timezones

        zones = frozenset(available_timezones())
    return tuple(sorted(z for z in zones if _is_place(z)))
