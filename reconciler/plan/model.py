"""The plan as a value: a closed set of change types, batches, guard-rail verdict.

A plan is data. It is rendered (text, JSON, Markdown), saved (JSON), and executed by
apply; nothing here talks to the outside world.
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
import operator
from collections.abc import Mapping
from typing import Any

from reconciler.desired.model import Source
from reconciler.stores.model import AccountRecord, Action
from reconciler.stores.recorded_policy import PolicyRecord
from reconciler.values import field, frozen

# Action is defined with the state (a recorded batch entry carries it) and exported here.
__all__ = [
    "BATCH_SIZE",
    "PLAN_FORMAT_VERSION",
    "Action",
    "Change",
    "Decision",
    "EventDecision",
    "Expired",
    "Expiring",
    "Field",
    "FieldChange",
    "Guard",
    "Kind",
    "Plan",
    "PolicyChange",
    "PolicyReview",
    "PolicyUse",
    "Reason",
    "RoleInfo",
    "batch",
]

# 2: changes digest, state location, adopt; 3: the date it was made at, expired and
# expiring-soon grants (a plan is a function of the date now); 4: the policy against the
# one recorded at the last apply (``policy``), which a policy-only change is a change of
PLAN_FORMAT_VERSION = 4
BATCH_SIZE = 100
_ACTION_OF = operator.attrgetter("action")


class Reason(enum.Enum):
    """Why a change is planned."""

    NEW = "new account"
    REENABLE = "re-enable: CREATE of a disabled account"
    CHANGED = "attributes changed"
    ADOPT = "imported: the tenant's account is unverified"
    DISABLED_IN_YAML = "enabled: false in the desired state"
    REMOVED = "removed from the desired state"
    EXPIRED = "expired: its end date has passed"
    GRANT_EXPIRED = "a grant's end date has passed"


class Field(enum.StrEnum):
    """An account attribute a MODIFY can change on its own (roles are added/removed apart)."""

    NAME = "name"
    EMAIL = "email"

    @property
    def wire_key(self) -> str:
        """The attribute's key in a createTask entry."""
        match self:
            case Field.NAME:
                return "userName"
            case Field.EMAIL:
                return "email"


class Kind(enum.Enum):
    """How a change is counted and shown: its action, but an adopting MODIFY is its own kind."""

    CREATE = "create"
    ADOPT = "adopt"
    MODIFY = "modify"
    DISABLE = "disable"


@frozen
class FieldChange:
    """One attribute's before → after."""

    field: Field
    before: Any
    after: Any


@frozen
class Expired:
    """An end date that has passed, carried out by a change: a role removed, or a disable."""

    role_id: str | None  # None: the account's own end date (``expires``)
    on: dt.date  # the first day without access


@frozen
class Expiring:
    """A grant, or an account, that ends within ``policy.expiry_notice_days``."""

    account: str
    role_id: str | None  # None: the account itself (``expires``)
    on: dt.date  # the first day without access
    days_left: int  # days from the plan's date to ``on`` (at least 1)
    source: Source


@frozen
class Change:
    """One account's change."""

    action: Action
    account: str
    reason: Reason
    before: AccountRecord | None  # recorded state (None: never managed)
    after: AccountRecord  # the record apply stores when the change succeeds
    fields: tuple[FieldChange, ...] = ()  # name/email changes (MODIFY)
    roles_added: tuple[str, ...] = ()  # role ids
    roles_removed: tuple[str, ...] = ()
    source: Source | None = None  # where the desired entry is (None for removed accounts)
    expired: tuple[Expired, ...] = ()  # end dates this change carries out

    @property
    def revokes_only(self) -> bool:
        """Whether the change only takes access away: a disable, or a MODIFY that only
        removes roles (never an adopt, which sets every attribute)."""
        match self.action:
            case Action.DISABLE:
                return True
            case Action.MODIFY:
                return (
                    self.reason is not Reason.ADOPT
                    and not self.fields
                    and not self.roles_added
                    and bool(self.roles_removed)
                )
            case Action.CREATE:
                return False

    @property
    def kind(self) -> Kind:
        """How the change is counted: an adopting MODIFY apart from other MODIFYs."""
        match self.action:
            case Action.CREATE:
                return Kind.CREATE
            case Action.MODIFY:
                return Kind.ADOPT if self.reason is Reason.ADOPT else Kind.MODIFY
            case Action.DISABLE:
                return Kind.DISABLE

    def wire(self) -> dict[str, Any]:
        """The ``federationUserList`` entry for createTask."""
        entry: dict[str, Any] = {"action": self.action.value, "userAccount": self.account}
        match self.action:
            case Action.CREATE:
                entry["userName"] = self.after.name
                entry["email"] = self.after.email
                entry["roleIds"] = list(self.after.role_ids)
            case Action.MODIFY if self.reason is Reason.ADOPT:
                # Nothing of the tenant's account is known: every attribute is set.
                entry["userName"] = self.after.name
                entry["email"] = self.after.email
                entry["roleIds"] = list(self.after.role_ids)
            case Action.MODIFY:
                for change in self.fields:
                    entry[change.field.wire_key] = change.after
                if self.roles_added or self.roles_removed:
                    entry["roleIds"] = list(self.after.role_ids)
            case Action.DISABLE:
                pass
        return entry

    def as_tuple(self) -> tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """A plain tuple for tests: action, account, changed fields, roles +, roles -."""
        return (
            self.action.value,
            self.account,
            tuple(f.field for f in self.fields),
            self.roles_added,
            self.roles_removed,
        )


@frozen
class RoleInfo:
    """How a role id is shown."""

    id: str
    name: str
    sensitive: bool = False


@frozen
class Guard:
    """The guard-rail verdict of a plan."""

    disables: int
    limit: int
    rule: str
    protected_hits: tuple[str, ...] = ()
    override: int | None = None  # --allow-disables N, recorded so apply honours it
    default_limit: int | None = None  # the limit without policy.max_disable (None: unknown)

    @property
    def loosened(self) -> bool:
        """The disables pass only because policy.max_disable is looser than the default.

        The policy is YAML like the users: a change that loosens it and disables many
        accounts at once would otherwise pass its own guard rail unnoticed.
        """
        limit = self.default_limit
        return limit is not None and self.disables > limit and not self.over_limit

    @property
    def over_limit(self) -> bool:
        """More disables than the policy allows (and no matching override)."""
        return self.disables > self.limit and self.override != self.disables

    @property
    def blocked(self) -> bool:
        """Whether apply must refuse this plan."""
        return self.over_limit or bool(self.protected_hits)


@frozen
class PolicyChange:
    """One policy setting that differs from the one recorded at the last apply."""

    setting: str  # ``max_disable``, ``protected_accounts[alice]``, ``max_grant_days[role]``…
    before: str
    after: str
    loosened: bool  # a guard rail is weaker than at the last apply

    @property
    def message(self) -> str:
        """``policy.max_disable: count 2 -> count 50 (loosened)``."""
        mark = " (loosened)" if self.loosened else ""
        return f"policy.{self.setting}: {self.before} -> {self.after}{mark}"


@frozen
class PolicyUse:
    """A change of the plan that passes only because the policy loosened since the last apply."""

    account: str
    why: str


@frozen
class PolicyReview:
    """The desired policy against the one recorded at the last apply."""

    desired: PolicyRecord  # what apply records
    recorded: PolicyRecord | None  # None: the state records none (new, or an older format)
    changes: tuple[PolicyChange, ...] = ()
    uses: tuple[PolicyUse, ...] = ()

    @property
    def loosened(self) -> bool:
        """Whether any guard rail is weaker than at the last apply."""
        return any(change.loosened for change in self.changes)

    def uses_of(self, account: str) -> tuple[str, ...]:
        """Why ``account``'s change passes only because of the loosening (empty: it does not)."""
        return tuple(use.why for use in self.uses if use.account == account)

    @property
    def dependent(self) -> int:
        """How many changes of the plan pass only because of the loosening."""
        return len({use.account for use in self.uses})


class Decision(enum.Enum):
    """What apply will do with a failed provisioning event."""

    RETRY = "retry"
    REPORT = "report only"


@frozen
class EventDecision:
    """One failed provisioning event and what the plan decided for it."""

    event_id: str
    account: str
    target: str  # the member account's name (its id when it has none)
    reason: str
    created_at: str
    updated_at: str
    attempts: int
    decision: Decision
    why: str
    target_id: str = ""  # the member account's id


@frozen
class Plan:
    """A complete, saveable plan."""

    lineage: str | None  # None: no state written yet
    serial: int
    state_location: str = ""  # where the state was read: ``Store.describe()``, no password
    workspace: str | None = None  # the PostgreSQL workspace (None: a file has none)
    input_digest: str
    changes: tuple[Change, ...]
    batches: tuple[tuple[str, ...], ...]  # accounts per createTask, in send order
    roles: Mapping[str, RoleInfo]  # by id
    managed: int  # enabled, verified (not adopted) accounts in the recorded state
    guard: Guard
    events: tuple[EventDecision, ...] = ()
    events_refreshed: bool = False
    outstanding: tuple[str, ...] = ()  # batch ids of unfinished tasks in the state
    notes: tuple[str, ...] = ()
    input_path: str = ""  # the desired-state path the plan was made from
    at: dt.date | None = None  # the date end dates were evaluated at (None: not evaluated)
    timezone: str = "UTC"  # whose calendar day ``at`` is (policy.timezone)
    notice_days: int = 0  # the "expiring soon" window (policy.expiry_notice_days)
    expiring: tuple[Expiring, ...] = ()  # grants and accounts ending within the window
    policy: PolicyReview | None = None  # None: not reviewed (a plan made without a date)
    format_version: int = PLAN_FORMAT_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    def count(self, action: Action) -> int:
        """How many changes of ``action``."""
        return sum(1 for change in self.changes if change.action is action)

    def tally(self, kind: Kind) -> int:
        """How many changes of ``kind`` (adopts apart from other modifies)."""
        return self.tallies()[kind]

    def tallies(self) -> dict[Kind, int]:
        """How many changes of each kind, in one pass: counted by action in C (an Action
        hashes as its string; ``kind`` is a property and a Kind hashes in Python, 0.2 s
        over 100k changes), the adopts apart."""
        actions = collections.Counter(map(_ACTION_OF, self.changes))
        adopt, modify = Reason.ADOPT, Action.MODIFY
        adopts = sum(1 for c in self.changes if c.reason is adopt and c.action is modify)
        return {
            Kind.CREATE: actions[Action.CREATE],
            Kind.ADOPT: adopts,
            Kind.MODIFY: actions[modify] - adopts,
            Kind.DISABLE: actions[Action.DISABLE],
        }

    @property
    def state_exists(self) -> bool:
        """Whether the plan was made against a state that had been written."""
        return self.lineage is not None

    @property
    def retries(self) -> tuple[EventDecision, ...]:
        """Events apply will retry."""
        return tuple(e for e in self.events if e.decision is Decision.RETRY)

    @property
    def policy_changed(self) -> bool:
        """Whether apply records a policy: it differs from the one recorded at the last
        apply, or a state that exists records none yet (written before format 3)."""
        review = self.policy
        if review is None:
            return False
        return bool(review.changes) or (review.recorded is None and self.state_exists)

    @property
    def has_changes(self) -> bool:
        """Whether apply would do anything (recording a changed policy is something)."""
        return bool(self.changes) or bool(self.retries) or self.policy_changed

    def role_name(self, role_id: str) -> str:
        """The YAML name of ``role_id`` (the id itself when unknown)."""
        info = self.roles.get(role_id)
        return info.name if info else role_id

    def why(self, change: Change) -> tuple[str, ...]:
        """The end dates ``change`` carries out, in words: ``expired on 2026-12-15
        (team.yaml:12)``, or ``tenant-admin expired on …`` for a grant."""
        where = f" ({change.source.render()})" if change.source is not None else ""
        return tuple(
            (f"{self.role_name(e.role_id)} " if e.role_id is not None else "")
            + f"expired on {e.on}{where}"
            for e in change.expired
        )

    def change_for(self, account: str) -> Change | None:
        """The change of ``account``, if any."""
        for change in self.changes:
            if change.account == account:
                return change
        return None


def batch(changes: tuple[Change, ...], size: int = BATCH_SIZE) -> tuple[tuple[str, ...], ...]:
    """Group changes, in order, into createTask batches of at most ``size`` accounts."""
    accounts = [change.account for change in changes]
    return tuple(tuple(accounts[i : i + size]) for i in range(0, len(accounts), size))
