"""The rules across files (pure): merged roles, role references, unique accounts (also
case-insensitively) and emails, email part lengths (API 100-214), one policy and one
provisioning block, end dates that name a day. Each problem is a Pending: a path in a
file, located later.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Container, Iterator
from itertools import compress
from operator import ne

from reconciler.desired import dates, loading
from reconciler.desired.model import (
    DEFAULT_EXPIRY_NOTICE_DAYS,
    DEFAULT_TIMEZONE,
    DesiredState,
    Policy,
    Provisioning,
    Role,
    Source,
    User,
)
from reconciler.errors import Severity, excerpt
from reconciler.values import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

Path_ = tuple[str | int, ...]
_SHOWN_ROLES = 10  # "not defined" lists this many defined roles


@frozen
class Pending:
    """A problem before it is located in its file."""

    file: int  # index into the files
    path: Path_
    message: str
    on_key: bool = False
    rule: str = "rule"
    severity: Severity = Severity.ERROR


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def merge(files: tuple[loading.SourceFile, ...]) -> tuple[DesiredState, list[Pending]]:
    """The files merged into one desired state, and every problem of the rules."""
    problems: list[Pending] = []
    roles = _merge_roles(files, problems)
    policy, provisioning = _merge_settings(files, problems)
    _check_limited_roles(files, policy, roles, problems)
    users = _merge_users(files, roles, problems)
    merged = DesiredState(
        roles=roles,
        users=users,
        policy=policy,
        provisioning=provisioning,
        dated=tuple(a for a, u in users.items() if u.expires is not None or u.timed),
    )
    return merged, problems


def _merge_roles(files: tuple[loading.SourceFile, ...], problems: list[Pending]) -> dict[str, Role]:
    roles: dict[str, Role] = {}
    where: dict[str, int] = {}
    by_id: dict[str, tuple[str, int]] = {}
    for index, source in enumerate(files):
        for name, raw_spec in _dict(_dict(source.data).get("roles")).items():
            spec = _dict(raw_spec)
            role_id = spec.get("id")
            if not isinstance(name, str) or not isinstance(role_id, str):
                continue
            role = Role(
                name=name,
                id=role_id,
                description=str(spec.get("description") or ""),
                sensitive=spec.get("sensitive") is True,
            )
            if name in roles and roles[name] != role:
                other = files[where[name]].display
                problems.append(
                    Pending(
                        file=index,
                        path=("roles", name),
                        on_key=True,
                        message=f"role {excerpt(name)} is defined differently in {other}; "
                        "define each role once",
                    )
                )
                continue
            if role_id in by_id and by_id[role_id][0] != name:
                other_name, other_file = by_id[role_id]
                problems.append(
                    Pending(
                        file=index,
                        path=("roles", name, "id"),
                        message=f"role id {excerpt(role_id)} is also used by role "
                        f"{excerpt(other_name)} ({files[other_file].display}); one id, one role",
                    )
                )
                continue
            roles[name], where[name], by_id[role_id] = role, index, (name, index)
    return roles


def _merge_settings(
    files: tuple[loading.SourceFile, ...], problems: list[Pending]
) -> tuple[Policy, Provisioning]:
    policy, provisioning = Policy(), Provisioning()
    seen: dict[str, int] = {}
    for index, source in enumerate(files):
        data = _dict(source.data)
        for key in ("policy", "provisioning"):
            if key not in data:
                continue
            if key in seen:
                problems.append(
                    Pending(
                        file=index,
                        path=(key,),
                        on_key=True,
                        message=f"`{key}` is already set in {files[seen[key]].display}; "
                        "keep it in one file",
                    )
                )
                continue
            seen[key] = index
        if seen.get("policy") == index:
            policy = _policy(index, _dict(data["policy"]), problems)
        if seen.get("provisioning") == index:
            spec = _dict(data["provisioning"])
            attempts = _whole(spec.get("max_attempts"))
            provisioning = Provisioning(
                retry_failed=spec.get("retry_failed", True) is not False,
                max_attempts=Provisioning().max_attempts if attempts is None else attempts,
            )
    return policy, provisioning


def _whole(value: Any) -> int | None:
    """An integer the schema accepted (``5`` or ``5.0``) as an int; None for anything else."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _policy(index: int, spec: dict[Any, Any], problems: list[Pending]) -> Policy:
    limit = _dict(spec.get("max_disable"))
    percent = limit.get("percent")
    if isinstance(percent, float) and math.isnan(percent):
        # JSON Schema cannot refuse NaN: every comparison with it is false.
        problems.append(
            Pending(
                file=index,
                path=("policy", "max_disable", "percent"),
                message="percent must be a number from 0 to 100, not .nan",
            )
        )
    if isinstance(percent, bool) or not isinstance(percent, (int, float)):
        percent = None
    timezone = spec.get("timezone", DEFAULT_TIMEZONE)
    if isinstance(timezone, str) and timezone and dates.zone_of(timezone) is None:
        problems.append(
            Pending(
                file=index,
                path=("policy", "timezone"),
                message=f"timezone {excerpt(timezone)} is not a time zone this system knows: "
                "write an IANA name such as UTC or Europe/Berlin (install tzdata if it lacks "
                "a time zone database)",
            )
        )
    notice = _whole(spec.get("expiry_notice_days"))
    return Policy(
        max_disable_count=_whole(limit.get("count")),
        max_disable_percent=None if percent is None else float(percent),
        protected_accounts=frozenset(
            a for a in _list(spec.get("protected_accounts")) if isinstance(a, str)
        ),
        timezone=timezone if isinstance(timezone, str) and timezone else DEFAULT_TIMEZONE,
        expiry_notice_days=DEFAULT_EXPIRY_NOTICE_DAYS if notice is None else notice,
        max_grant_days={
            role: days
            for role, raw in _dict(spec.get("max_grant_days")).items()
            if isinstance(role, str) and (days := _whole(raw)) is not None
        },
    )


def _check_limited_roles(
    files: tuple[loading.SourceFile, ...],
    policy: Policy,
    roles: dict[str, Role],
    problems: list[Pending],
) -> None:
    """Each role of ``policy.max_grant_days`` must be defined: a typo must not lift a limit."""
    unknown = [role for role in policy.max_grant_days if role not in roles]
    if not unknown:
        return
    index = next(i for i, f in enumerate(files) if "policy" in _dict(f.data))
    for role in unknown:
        problems.append(
            Pending(
                file=index,
                path=("policy", "max_grant_days", role),
                on_key=True,
                message=f"max_grant_days names role {excerpt(role)}, which is not defined "
                "under `roles`",
            )
        )


def _email_problem(email: str) -> str | None:
    local, _, domain = email.rpartition("@")
    if len(local) > 64:
        return (
            f"email {excerpt(email)}: the part before @ is longer than 64 characters (API 100-214)"
        )
    if len(domain) > 255:
        return f"email {excerpt(email)}: the domain is longer than 255 characters (API 100-214)"
    if len(domain.split(".")[0]) > 63:
        return (
            f"email {excerpt(email)}: the first domain label is longer than 63 characters "
            "(API 100-214)"
        )
    return None


def _flag_both(
    problems: list[Pending],
    key: str,
    *,
    here: tuple[int, int],
    here_message: str,
    other: tuple[int, int],
    other_message: str,
) -> None:
    """Flag a duplicate ``key`` of two user entries at both places, each naming the other."""
    for (file, index), message in ((here, here_message), (other, other_message)):
        problems.append(Pending(file=file, path=("users", index, key), message=message))


def _merge_users(
    files: tuple[loading.SourceFile, ...], roles: dict[str, Role], problems: list[Pending]
) -> dict[str, User]:
    """The users by account (the first entry of each). Built without asking, user by user,
    whether an account or email was seen before; only when one was (or an email is long
    enough to check its parts) does a second, lighter pass flag them and drop the later
    entries (the problems come in another order; they are sorted once located)."""
    users, entries = _users(files, roles, problems)
    if not _all_distinct(users, entries):
        _drop_repeats(files, users, problems)  # the long emails' parts checked there too
    elif any(len(user.email) > 64 for user in users.values()):
        _check_long_emails(files, problems)
    return users


def _all_distinct(users: dict[str, User], entries: int) -> bool:
    """Each of ``entries`` its own account and email (case-folded): no repeat
    :class:`_FirstSeen` could report."""
    if len(users) != entries or not _apart_folded(users, users):
        return False
    emails = [user.email for user in users.values() if "@" in user.email]
    exact = set(emails)
    return len(exact) == len(emails) and _apart_folded(emails, exact)


def _check_long_emails(files: tuple[loading.SourceFile, ...], problems: list[Pending]) -> None:
    """Flag the parts too long in each email of over 64 characters (as ``_FirstSeen.email``
    does), when no entry repeats another: a long address is no reason for that pass."""
    for file_index, index, _, email in _text_entries(files):
        if len(email) > 64 and "@" in email and (message := _email_problem(email)) is not None:
            problems.append(
                Pending(file=file_index, path=("users", index, "email"), message=message)
            )


def _apart_folded(texts: Collection[str], exact: Container[str]) -> bool:
    """Whether ``texts`` (distinct, all in ``exact``) stay distinct in lower case.

    Without a set of the lower-case copies (a million users made two million of them on
    top of the desired state: the peak of its load): each copy is compared with its text
    and let go at once (in C), and only the texts that are not their own lower case are
    folded and kept, each checked against the rest and against the texts themselves.
    False may be said of texts that are apart (one folds to a text that is not its own
    lower case): the caller then checks them one by one.
    """
    others = compress(texts, map(ne, map(str.lower, texts), texts))
    folded: set[str] = set()
    for text in others:
        lower = text.lower()
        if lower in folded or (lower != text and lower in exact):
            return False
        folded.add(lower)
    return True


def _drop_repeats(
    files: tuple[loading.SourceFile, ...], users: dict[str, User], problems: list[Pending]
) -> None:
    """Flag repeated accounts and emails (and emails' parts) at both places, and drop from
    ``users`` each account whose first entry (case-folded) is spelt otherwise."""
    seen = _FirstSeen(files=files, problems=problems)
    for file_index, index, account, email in _text_entries(files):
        first = seen.account(file_index, index, account)
        if "@" in email:
            seen.email(file_index, index, email)
        if not first and seen.first_spelling(account) != account:
            users.pop(account, None)


def _text_entries(files: tuple[loading.SourceFile, ...]) -> Iterator[tuple[int, int, str, str]]:
    """(file, index, account, email) of each user entry with a text account, name, email."""
    for file_index, source in enumerate(files):
        for index, entry in enumerate(_list(_dict(source.data).get("users"))):
            if not isinstance(entry, dict):
                continue
            account, name, email = entry.get("account"), entry.get("name"), entry.get("email")
            if isinstance(account, str) and isinstance(name, str) and isinstance(email, str):
                yield file_index, index, account, email


def _users(
    files: tuple[loading.SourceFile, ...],
    roles: dict[str, Role],
    problems: list[Pending],
) -> tuple[dict[str, User], int]:
    """The users by account (an account's first entry), and how many entries had a text
    account, name and email. Repeats are :func:`_drop_repeats`'s."""
    users: dict[str, User] = {}
    entries = 0
    resolver = _RoleResolver(roles=roles, declared=_declared_roles(files), problems=problems)
    resolved = resolver.resolved
    shared: dict[tuple[str, ...], tuple[str, ...]] = {}
    for file_index, source in enumerate(files):
        display, listed = source.display, _list(_dict(source.data).get("users"))
        # Each entry's line, in order: one comparison each (desired.lines).
        lines = source.account_lines.lines_of(listed)
        for index, entry in enumerate(listed):
            if not isinstance(entry, dict):
                continue
            account, name, email = entry.get("account"), entry.get("name"), entry.get("email")
            if not (isinstance(account, str) and isinstance(name, str) and isinstance(email, str)):
                continue
            entries += 1
            raw_roles = _list(entry.get("roles"))
            names = tuple([r for r in raw_roles if isinstance(r, str)])
            names = shared.setdefault(names, names)  # users share a few combinations
            grants = None
            if len(names) != len(raw_roles):  # {role, until} grants (or what the schema refuses)
                grants = _read_grants(raw_roles, file_index, index, problems)
                names = grants.names
            role_ids = resolved.get(names) or resolver.role_ids(names, file_index, index)
            expires = None
            if "expires" in entry:
                expires = _read_expires(entry["expires"], file_index, index, problems)
            if account in users:
                continue  # a duplicate: reported by _drop_repeats, never planned
            users[account] = User(
                account=account,
                name=name,
                email=email,
                roles=names,
                role_ids=role_ids or (),
                enabled=entry.get("enabled", True) is not False,
                source=Source(file=display, line=lines[index] or 0),
                expires=expires,
                timed=grants.timed if grants is not None else (),
            )
    return users, entries


def _read_grants(
    raw_roles: list[Any], file_index: int, index: int, problems: list[Pending]
) -> dates.Grants:
    """The names and end dates of a roles list with mappings; impossible days reported."""
    grants = dates.read_grants(raw_roles)
    for role_index, text in grants.impossible:
        problems.append(
            Pending(
                file=file_index,
                path=("users", index, "roles", role_index, "until"),
                message=dates.impossible("until", text),
            )
        )
    return grants


def _read_expires(raw: Any, file_index: int, index: int, problems: list[Pending]) -> dt.date | None:
    """The user's ``expires`` date (None: one the schema or this reports)."""
    if not isinstance(raw, str):
        return None
    day = dates.read_date(raw)
    if day is None and dates.ISO_DATE.fullmatch(raw) is not None:
        problems.append(
            Pending(
                file=file_index,
                path=("users", index, "expires"),
                message=dates.impossible("expires", raw),
            )
        )
    return day


def _declared_roles(files: tuple[loading.SourceFile, ...]) -> set[str]:
    """Every role name written under `roles`, also those refused (bad id, conflict)."""
    return {name for source in files for name in _dict(_dict(source.data).get("roles"))}


def _folded(text: str) -> str:
    """``text`` in lower case; ``text`` itself when it already is (no second copy)."""
    lowered = text.lower()
    return text if lowered == text else lowered


class _FirstSeen:
    """Where each account and email (case-folded) first appeared; later ones are flagged.

    A place is one int (file << 32 | index): a million users keep a million ints, not a
    million tuples; the exact text there is read back from the file's data when needed.
    A working object of one merge, not a value: a plain class (creating a frozen dataclass
    was ~4M instructions of validate's start-up; a plain class costs nothing more).
    """

    __slots__ = ("accounts", "emails", "files", "problems")

    def __init__(self, *, files: tuple[loading.SourceFile, ...], problems: list[Pending]) -> None:
        self.files = files
        self.problems = problems
        self.accounts: dict[str, int] = {}
        self.emails: dict[str, int] = {}

    def _at(self, place: int, key: str) -> tuple[int, int, str]:
        """(file, index, the exact text of ``key``) of a recorded place."""
        file, index = place >> 32, place & 0xFFFFFFFF
        return file, index, self.files[file].data["users"][index][key]

    def account(self, file_index: int, index: int, account: str) -> bool:
        """Record ``account`` at users[index]; False (both places flagged) for a duplicate."""
        folded = _folded(account)
        first = self.accounts.get(folded)
        if first is None:
            self.accounts[folded] = file_index << 32 | index
            return True
        other_file, other_index, other_exact = self._at(first, "account")
        other = f"{self.files[other_file].display} (users[{other_index}])"
        same = "" if other_exact == account else " (accounts differ only in case)"
        _flag_both(
            self.problems,
            "account",
            here=(file_index, index),
            here_message=f"account {excerpt(account)} is also declared at {other}{same}",
            other=(other_file, other_index),
            other_message=f"account {excerpt(other_exact)} is also declared at "
            f"{self.files[file_index].display} (users[{index}]){same}",
        )
        return False

    def first_spelling(self, account: str) -> str:
        """The exact text of the first entry of ``account`` (case-folded), once recorded."""
        return self._at(self.accounts[_folded(account)], "account")[2]

    def email(self, file_index: int, index: int, email: str) -> None:
        """Check the parts of ``email`` and flag it at both places when used before."""
        # Any address of at most 64 characters has every part within the limits.
        if len(email) > 64 and (message := _email_problem(email)) is not None:
            self.problems.append(
                Pending(file=file_index, path=("users", index, "email"), message=message)
            )
        folded = _folded(email)
        first = self.emails.get(folded)
        if first is None:
            self.emails[folded] = file_index << 32 | index
            return
        other_file, other_index, other_email = self._at(first, "email")
        _flag_both(
            self.problems,
            "email",
            here=(file_index, index),
            here_message=f"email {excerpt(email)} is also used by "
            f"{self.files[other_file].display} (users[{other_index}])",
            other=(other_file, other_index),
            other_message=f"email {excerpt(other_email)} is also used by "
            f"{self.files[file_index].display} (users[{index}])",
        )


class _RoleResolver:
    """Role names to sorted role ids; each clean combination is resolved once. A working
    object of one merge, a plain class as :class:`_FirstSeen`."""

    __slots__ = ("declared", "problems", "resolved", "roles")

    def __init__(
        self, *, roles: dict[str, Role], declared: set[str], problems: list[Pending]
    ) -> None:
        self.roles = roles
        self.declared = declared  # a reference to a refused role must not add "not defined"
        self.problems = problems
        # Most users share a few role combinations.
        self.resolved: dict[tuple[str, ...], tuple[str, ...]] = {}

    def role_ids(
        self, names: tuple[str, ...], file_index: int, index: int
    ) -> tuple[str, ...] | None:
        """The role ids of ``names`` at users[index]; None (problems reported) if one is wrong."""
        resolved = self.resolved.get(names)
        if resolved is None:
            resolved = _resolve_roles(
                names,
                self.roles,
                declared=self.declared,
                file_index=file_index,
                here=("users", index),
                problems=self.problems,
            )
            if resolved is not None:
                self.resolved[names] = resolved
        return resolved


def _resolve_roles(
    names: tuple[str, ...],
    roles: dict[str, Role],
    *,
    declared: set[str],
    file_index: int,
    here: tuple[str | int, ...],
    problems: list[Pending],
) -> tuple[str, ...] | None:
    """The sorted role ids of ``names``; None (problems reported) when one is wrong."""
    role_ids: set[str] = set()
    clean = True
    for role_index, role_name in enumerate(names):
        role = roles.get(role_name)
        if role is None and role_name in declared:
            clean = False  # the role's own definition is reported
            continue
        if role is None:
            defined = sorted(roles)
            known = ", ".join(excerpt(n)[1:-1] for n in defined[:_SHOWN_ROLES]) or "none defined"
            if len(defined) > _SHOWN_ROLES:
                known += f", and {len(defined) - _SHOWN_ROLES} more"
            problems.append(
                Pending(
                    file=file_index,
                    path=(*here, "roles", role_index),
                    message=f"role {excerpt(role_name)} is not defined under `roles` "
                    f"(defined: {known})",
                )
            )
            clean = False
        elif role.id in role_ids:
            problems.append(
                Pending(
                    file=file_index,
                    path=(*here, "roles", role_index),
                    message=f"role {excerpt(role_name)} is listed twice",
                )
            )
            clean = False
        else:
            role_ids.add(role.id)
    return tuple(sorted(role_ids)) if clean else None
