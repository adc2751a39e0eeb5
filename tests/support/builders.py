"""Small constructors of frozen values for table-driven tests of the pure layers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from reconciler.desired import loading, validation
from reconciler.desired.model import DesiredState, Policy, Role, Source, TimedGrant, User
from reconciler.errors import ValidationFailed
from reconciler.problems import Problem
from reconciler.stores.model import (
    AccountRecord,
    Action,
    EventRecord,
    EventState,
    PendingBatch,
    PendingEntry,
    State,
)

LINEAGE = "0f0e0d0c-0b0a-4909-8807-060504030201"
DIGEST = "sha256:" + "ab" * 32
ROLES = {
    "agent": Role(name="agent", id="101"),
    "supervisor": Role(name="supervisor", id="102"),
    "reporting": Role(name="reporting", id="103"),
    "admin": Role(name="admin", id="109", sensitive=True),
}


def user(
    account: str,
    *roles: str,
    name: str | None = None,
    email: str | None = None,
    enabled: bool = True,
    line: int = 1,
    expires: dt.date | None = None,
    until: Mapping[str, dt.date] | None = None,
) -> User:
    """A desired user holding ``roles`` (names from ROLES); ``until`` gives some of them an
    end date, ``expires`` the account."""
    return User(
        account=account,
        name=name or account.title(),
        email=email or f"{account}@example.com",
        roles=roles,
        role_ids=tuple(sorted(ROLES[r].id for r in roles)),
        enabled=enabled,
        source=Source(file="users.yaml", line=line),
        expires=expires,
        timed=tuple(TimedGrant(role=r, until=d) for r, d in (until or {}).items()),
    )


def record(
    account: str,
    *roles: str,
    name: str | None = None,
    email: str | None = None,
    enabled: bool = True,
) -> AccountRecord:
    """A recorded account holding ``roles`` (names from ROLES)."""
    return AccountRecord(
        account=account,
        name=name or account.title(),
        email=email or f"{account}@example.com",
        role_ids=tuple(sorted(ROLES[r].id for r in roles)),
        enabled=enabled,
    )


def desired(*users: User, policy: Policy | None = None) -> DesiredState:
    """A desired state of ``users`` with the standard roles."""
    return DesiredState(
        roles=ROLES,
        users={u.account: u for u in users},
        policy=policy or Policy(),
        digest=DIGEST,
        files=("users.yaml",),
        dated=tuple(u.account for u in users if u.expires is not None or u.timed),
    )


def state(*records: AccountRecord, serial: int = 3) -> State:
    """A recorded state of ``records``."""
    return State(lineage=LINEAGE, serial=serial, accounts={r.account: r for r in records})


def problems_of(path: Path, *, max_bytes: int = loading.DEFAULT_MAX_FILE_BYTES) -> list[Problem]:
    """Every problem validation reports for ``path`` (empty when it is valid)."""
    try:
        validation.load_desired(path, max_bytes=max_bytes)
    except ValidationFailed as failed:
        return list(failed.problems)
    return []


def rendered(problems: list[Problem]) -> list[str]:
    """Problems as ``file:line:col: message`` with the file reduced to its name."""
    return [f"{Path(p.file).name}:{p.line}:{p.col}: {p.message}" for p in problems]


def sample_state() -> State:
    """A first-write state using every part of the document (for the store tests)."""
    alice = AccountRecord(
        account="alice",
        name="Alice",
        email="alice@example.com",
        role_ids=("1001", "1002"),
        enabled=True,
        last_task_id="t-1",
    )
    batch = PendingBatch(
        batch_id="b-1",
        entries=(
            PendingEntry(
                action=Action.CREATE, account="alice", wire={"userName": "alice"}, target=alice
            ),
        ),
        recorded_at="2024-01-01T00:00:00Z",
    )
    event = EventRecord(event_id="e-1", account="alice", attempts=2, status=EventState.OPEN)
    return State.empty().successor(
        accounts={"alice": alice}, pending=(batch,), events={"e-1": event}
    )
