"""The desired state as frozen values: what validation hands to the planner."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping

from reconciler.errors import printable
from reconciler.values import field, frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:  # only git provenance (plan, report) makes one: validate never loads it
    from reconciler.desired.commit import Commit
    from reconciler.problems import Problem  # created with the first problem found

DEFAULT_MAX_DISABLE_COUNT = 10
DEFAULT_MAX_DISABLE_PERCENT = 10.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_TIMEZONE = "UTC"
DEFAULT_EXPIRY_NOTICE_DAYS = 14


@frozen
class Source:
    """Where an entry was declared: ``file:line`` (line 0 when unknown), and its commit."""

    file: str
    line: int = 0
    commit: Commit | None = None  # None: not in a git work tree (or not looked up)

    def render(self) -> str:
        """``file:line``."""
        # A file name can hold anything but / and NUL: a newline must not start a line.
        return printable(f"{self.file}:{self.line}" if self.line else self.file)


@frozen
class Role:
    """A role of the tenant, by the name the YAML uses."""

    name: str
    id: str
    description: str = ""
    sensitive: bool = False


@frozen
class TimedGrant:
    """A role grant with an end date: ``until`` is the first day without the role."""

    role: str  # the role's name, as written
    until: dt.date


@frozen
class User:
    """A desired federated user."""

    account: str
    name: str
    email: str
    roles: tuple[str, ...]  # role names, as written (time-bound ones included)
    role_ids: tuple[str, ...]  # resolved and sorted
    enabled: bool
    source: Source
    # End dates, each the first day without access (``expires``: the account is disabled
    # from that day on). Evaluated against a date by ``plan.expiry``, never here.
    expires: dt.date | None = None
    timed: tuple[TimedGrant, ...] = ()  # the grants of ``roles`` that have an end date


@frozen
class Policy:
    """Guard rails."""

    max_disable_count: int | None = None
    max_disable_percent: float | None = None
    protected_accounts: frozenset[str] = frozenset()
    timezone: str = DEFAULT_TIMEZONE  # an IANA name: where "today" is taken for end dates
    expiry_notice_days: int = DEFAULT_EXPIRY_NOTICE_DAYS  # "expiring soon" window of a plan
    max_grant_days: Mapping[str, int] = field(default_factory=dict)  # role name -> days

    def disable_limit(self, managed: int) -> int:
        """How many disables one plan may carry, given ``managed`` enabled accounts."""
        count, percent = self.max_disable_count, self.max_disable_percent
        if count is None and percent is None:
            by_percent = math.floor(managed * DEFAULT_MAX_DISABLE_PERCENT / 100)
            return max(DEFAULT_MAX_DISABLE_COUNT, by_percent)
        limits = []
        if count is not None:
            limits.append(count)
        if percent is not None:
            limits.append(math.floor(managed * percent / 100))
        return min(limits)

    def describe_limit(self, managed: int) -> str:
        """The rule behind :meth:`disable_limit`, in words."""
        count, percent = self.max_disable_count, self.max_disable_percent
        if count is None and percent is None:
            return (
                f"default: {DEFAULT_MAX_DISABLE_COUNT} accounts or "
                f"{DEFAULT_MAX_DISABLE_PERCENT:g}% of {managed} managed, whichever is larger"
            )
        parts = []
        if count is not None:
            parts.append(f"count {count}")
        if percent is not None:
            parts.append(f"{percent:g}% of {managed} managed")
        return "policy.max_disable: " + " and ".join(parts)


@frozen
class Provisioning:
    """Settings for retrying failed provisioning events."""

    retry_failed: bool = True
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


@frozen
class DesiredState:
    """Everything the YAML asks for, merged across files."""

    roles: Mapping[str, Role] = field(default_factory=dict)  # by name
    users: Mapping[str, User] = field(default_factory=dict)  # by account
    policy: Policy = Policy()
    provisioning: Provisioning = Provisioning()
    digest: str = ""
    files: tuple[str, ...] = ()
    # Accounts whose entry carries an end date (``expires`` or a grant's ``until``): the
    # only ones the expiry step looks at, so it costs nothing when nobody has a date.
    dated: tuple[str, ...] = ()
    at: dt.date | None = None  # the date validation evaluated end dates at (None: it did not)
    warnings: tuple[Problem, ...] = ()  # problems that do not make the input invalid
