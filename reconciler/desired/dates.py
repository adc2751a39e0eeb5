"""End dates in the desired state: how they are written, read and told apart from today.

One rule for both kinds: ``expires: 2027-01-31`` on a user and ``until: 2026-12-15`` on a
grant name **the first day without access** — the account is disabled, the role removed,
from that day on; the day before is the last one with access. A date is an ISO calendar
date (``YYYY-MM-DD``); YAML reads an unquoted one as a date, a quoted one stays text, and
both mean the same. A time of day, an impossible day (``2026-02-30``) or anything else is
a located error.

"Today" is taken at the command line's edge: the ``--at`` date when given, else the
clock's instant in ``policy.timezone`` (an IANA name, default UTC). Nothing below the CLI
reads the clock: planning and validation get the date as an argument.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from reconciler.desired.model import TimedGrant
from reconciler.errors import excerpt
from reconciler.values import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Files of the zone database that name this machine's setting, not a zone: "today" would
# differ between the laptop that planned and the runner that applies.
_MACHINE_ZONES = frozenset({"localtime", "posixrules"})
_KEYS = ("expires", "until")  # what a file must contain for a date to be worth looking for


@frozen
class Today:
    """When end dates are evaluated: the given ``--at`` date, else the clock's instant."""

    now: dt.datetime  # an aware instant, read once at the edge
    given: dt.date | None = None

    def date(self, timezone: str) -> dt.date:
        """The date to evaluate at: the given one, else ``now`` in ``timezone``."""
        if self.given is not None:
            return self.given
        zone = zone_of(timezone)
        if zone is None:
            raise ValueError(f"unknown timezone {timezone!r}")  # validation refused it before
        return self.now.astimezone(zone).date()


def zone_of(name: str) -> dt.tzinfo | None:
    """The time zone an IANA ``name`` names (UTC without a database); None when unknown."""
    if name == "UTC":
        return dt.UTC
    if name in _MACHINE_ZONES:
        return None
    # Imported for a zone other than UTC (the default): zoneinfo loads sysconfig to find
    # the database, ~9M instructions of validate's start-up.
    import zoneinfo  # noqa: PLC0415

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: not a key at all ("../etc/passwd", ""); OSError: an unreadable file
        return None


def read_date(text: str) -> dt.date | None:
    """The calendar date ``YYYY-MM-DD`` in ``text``; None when there is no such day."""
    if ISO_DATE.fullmatch(text) is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def impossible(key: str, text: str) -> str:
    """The message for a ``YYYY-MM-DD`` that names no day of the calendar."""
    return f"{key} {excerpt(text)} is not a date: there is no such day (write YYYY-MM-DD)"


def as_text(data: Any, source: str) -> None:
    """Turn the dates YAML read at ``users[*].expires`` and ``users[*].roles[*].until``
    into their ISO text, in place, before the schema sees them.

    The schema (as JSON Schema, and as editors read it) knows strings, not dates: a YAML
    date becomes the text it was written as, which the schema's pattern accepts and
    :func:`read_date` reads back. A date and time becomes its ISO text, which the pattern
    refuses. Only a file whose text mentions a date key is walked; the values belong to
    this validation run, and turning a date into its text twice changes nothing.
    """
    if not isinstance(data, dict) or not any(key in source for key in _KEYS):
        return
    users = data.get("users")
    if not isinstance(users, list):
        return
    for entry in users:
        if type(entry) is not dict:
            continue
        if isinstance(entry.get("expires"), dt.date):
            entry["expires"] = entry["expires"].isoformat()
        roles = entry.get("roles")
        if type(roles) is list:
            for item in roles:
                if type(item) is dict and isinstance(item.get("until"), dt.date):
                    item["until"] = item["until"].isoformat()


@frozen
class Grants:
    """A user's ``roles`` list read: the role names in order, and those with an end date."""

    names: tuple[str, ...]
    timed: tuple[TimedGrant, ...]
    impossible: tuple[tuple[int, str], ...] = ()  # (index, text) of until values with no day


def read_grants(raw: Iterable[Any]) -> Grants:
    """The names and end dates of a ``roles`` list that holds ``{role, until}`` mappings.

    Items the schema refuses (numbers, mappings without a text ``role``) are left out:
    the schema reports them.
    """
    names: list[str] = []
    timed: list[TimedGrant] = []
    bad: list[tuple[int, str]] = []
    for index, item in enumerate(raw):
        if isinstance(item, str):
            names.append(item)
            continue
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            continue
        names.append(item["role"])
        until = item.get("until")
        if not isinstance(until, str):
            continue
        day = read_date(until)
        if day is None:
            if ISO_DATE.fullmatch(until) is not None:  # else the schema's pattern reports it
                bad.append((index, until))
            continue
        timed.append(TimedGrant(role=item["role"], until=day))
    return Grants(names=tuple(names), timed=tuple(timed), impossible=tuple(bad))


def days(count: int) -> str:
    """``1 day``, ``3 days``."""
    return f"{count} day{'s' if count != 1 else ''}"
