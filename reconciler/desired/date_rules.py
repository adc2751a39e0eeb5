"""The rules that need a date (pure): end dates already past, and grants that run too long.

- An end date on or before the date evaluated at (``expires``, a grant's ``until``) is a
  **warning**: the plan already disables the account or removes the role; the entry is
  left-over text to clean up, not a mistake that makes the input invalid.
- ``policy.max_grant_days`` (role -> days) makes a grant of such a role without ``until``,
  or with an ``until`` more than that many days after the date, an **error**: sensitive
  access as code becomes just-in-time access. Nothing to check for an account that has
  already expired, nor for a grant already ended.

Only accounts with an end date, and (when the policy limits roles) those holding a limited
role, are looked at; their place in the files is found in one pass over each file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping

from reconciler.desired import dates, loading
from reconciler.desired.merging import Pending
from reconciler.desired.model import DesiredState, User
from reconciler.errors import Severity

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

RULE = "expiry"


def check(
    files: tuple[loading.SourceFile, ...], desired: DesiredState, at: dt.date
) -> list[Pending]:
    """Every date problem of ``desired`` evaluated at ``at``, located in ``files``."""
    limits = desired.policy.max_grant_days
    wanted = set(desired.dated)
    if limits:
        wanted.update(
            account
            for account, user in desired.users.items()
            if not limits.keys().isdisjoint(user.roles)
        )
    if not wanted:
        return []
    problems: list[Pending] = []
    for file_index, index, entry, line in _entries(files, wanted):
        user = desired.users[entry["account"]]
        if (user.source.file, user.source.line) != (files[file_index].display, line):
            continue  # a duplicate of the account: reported already, never planned
        problems.extend(_user_problems(user, (file_index, index), entry, limits, at))
    return problems


def _entries(
    files: tuple[loading.SourceFile, ...], wanted: set[str]
) -> Iterator[tuple[int, int, dict[Any, Any], int]]:
    """(file index, users index, entry, its line or 0) of each user entry whose account
    is ``wanted``."""
    for file_index, source in enumerate(files):
        data = source.data
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, list):
            continue
        lines: list[int | None] | None = None  # of the file's entries, once one is wanted
        for index, entry in enumerate(users):
            # Only a text account can be wanted (one written as a list or a mapping is the
            # schema's problem, and unhashable).
            if (
                type(entry) is dict
                and type(account := entry.get("account")) is str
                and account in wanted
            ):
                if lines is None:
                    lines = source.account_lines.lines_of(users)
                yield file_index, index, entry, lines[index] or 0


def _role_index(entry: dict[Any, Any], role: str) -> int:
    """Where ``role`` is written in the entry's roles list (as a name or a grant)."""
    for index, item in enumerate(entry.get("roles") or ()):
        if item == role or (isinstance(item, dict) and item.get("role") == role):
            return index
    return 0


def _user_problems(
    user: User,
    place: tuple[int, int],
    entry: dict[Any, Any],
    limits: Mapping[str, int],
    at: dt.date,
) -> list[Pending]:
    """The date problems of one user entry at ``place`` (file index, users index)."""
    file_index, index = place
    here = ("users", index)
    if user.expires is not None and user.expires <= at:
        return [
            Pending(
                file=file_index,
                path=(*here, "expires"),
                message=f"expires {user.expires} has passed ({_when(user.expires, at)}): "
                f"{user.account} is disabled from that day; remove the entry, or set a "
                "later date to keep the account",
                rule=RULE,
                severity=Severity.WARNING,
            )
        ]
    found: list[Pending] = []
    ends = {grant.role: grant.until for grant in user.timed}
    for role in user.roles:
        until = ends.get(role)
        where = (*here, "roles", _role_index(entry, role))
        if until is not None and until <= at:
            found.append(
                Pending(
                    file=file_index,
                    path=(*where, "until"),
                    message=f"the grant of {role} ended on {until} ({_when(until, at)}): "
                    f"{user.account} no longer has it; remove it from the list, or set a "
                    "later date to keep it",
                    rule=RULE,
                    severity=Severity.WARNING,
                )
            )
            continue
        limit = limits.get(role)
        if limit is None:
            continue
        if until is None:
            message = (
                f"{role} may be granted for at most {dates.days(limit)} "
                "(policy.max_grant_days) and this grant has no end date: write "
                f"{{role: {role}, until: {at + dt.timedelta(days=limit)}}} or earlier"
            )
            found.append(Pending(file=file_index, path=where, message=message, rule=RULE))
        elif (until - at).days > limit:
            message = (
                f"{role} may be granted for at most {dates.days(limit)} "
                f"(policy.max_grant_days), but until {until} is "
                f"{dates.days((until - at).days)} away: end it on "
                f"{at + dt.timedelta(days=limit)} or earlier"
            )
            found.append(
                Pending(file=file_index, path=(*where, "until"), message=message, rule=RULE)
            )
    return found


def _when(day: dt.date, at: dt.date) -> str:
    """``today`` or ``3 days ago``, seen from ``at``."""
    past = (at - day).days
    return "today" if past == 0 else f"{dates.days(past)} ago"
