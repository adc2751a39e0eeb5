"""provisioning.decide as a pure function: every decision branch, name matching, ordering."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from reconciler.apply import provisioning
from reconciler.apply.ledger import EventRetry
from reconciler.cli import apply_commands
from reconciler.desired.model import DesiredState, Provisioning, Source, User
from reconciler.errors import CloudIdentityError, ConfigError, TransportError
from reconciler.plan.model import Decision
from reconciler.providers.cloudidentity.client import ProvisioningEvent
from reconciler.providers.federation.replies import CallCounts
from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord, EventRecord, EventState, State

RETRY, REPORT = Decision.RETRY, Decision.REPORT


def _event(
    user_name: str,
    event_id: str = "upe-1",
    *,
    created: str = "2025-03-10T10:00:00Z",
    target_id: str = "2100000001",
    target_name: str = "prod-account",
    reason: str = "member account quota exceeded",
) -> ProvisioningEvent:
    return ProvisioningEvent(
        event_id=event_id,
        provisioning_id=f"up-{event_id}",
        user_id=f"u-{event_id}",
        user_name=user_name,
        failure_reason=reason,
        target_id=target_id,
        target_name=target_name,
        description="",
        created_time=created,
        updated_time=created,
        principal_type="User",
        event_status="ProvisionFailed",
    )


def _user(account: str, enabled: bool = True) -> User:
    return User(
        account=account,
        name=account.title(),
        email=f"{account.lower()}@example.com",
        roles=("agent",),
        role_ids=("1",),
        enabled=enabled,
        source=Source(file="users.yaml", line=1),
    )


def _desired(
    users: Iterable[tuple[str, bool]] = (), *, retry_failed: bool = True, max_attempts: int = 3
) -> DesiredState:
    return DesiredState(
        users={account: _user(account, enabled) for account, enabled in users},
        provisioning=Provisioning(retry_failed=retry_failed, max_attempts=max_attempts),
    )


def _recorded(accounts: Iterable[str] = (), attempts: dict[str, int] | None = None) -> State:
    return State(
        lineage="lineage-1",
        serial=3,
        accounts={
            a: AccountRecord(account=a, name=a, email=f"{a}@example.com", role_ids=(), enabled=True)
            for a in accounts
        },
        events={
            event_id: EventRecord(event_id=event_id, account="alice", attempts=n)
            for event_id, n in (attempts or {}).items()
        },
    )


# One case per row reads as a table; the formatter would spread each over nine lines.
# fmt: off
CASES = [
    # id, desired users, recorded accounts, attempts of upe-1, settings, event user, expected
    ("managed enabled", [("alice", True)], ["alice"], 0, {}, "alice",
     (RETRY, "alice", "managed and enabled; attempt 1 of 3")),
    ("declared, not yet applied", [("alice", True)], None, 0, {}, "alice",
     (RETRY, "alice", "managed and enabled; attempt 1 of 3")),
    ("last attempt left", [("alice", True)], ["alice"], 2, {}, "alice",
     (RETRY, "alice", "managed and enabled; attempt 3 of 3")),
    ("attempts exhausted", [("alice", True)], ["alice"], 3, {}, "alice",
     (REPORT, "alice", "attempts exhausted (3/3); investigate the reason")),
    ("attempts beyond a lowered max", [("alice", True)], ["alice"], 5, {"max_attempts": 2},
     "alice", (REPORT, "alice", "attempts exhausted (5/2); investigate the reason")),
    ("max_attempts 1, never tried", [("alice", True)], ["alice"], 0, {"max_attempts": 1},
     "alice", (RETRY, "alice", "managed and enabled; attempt 1 of 1")),
    ("unmanaged account", [("alice", True)], ["alice"], 0, {}, "mallory",
     (REPORT, "mallory", "account is not managed by reconciler")),
    ("unmanaged, no state at all", [], None, 0, {}, "mallory",
     (REPORT, "mallory", "account is not managed by reconciler")),
    ("removed from the desired state", [], ["alice"], 0, {}, "alice",
     (REPORT, "alice", "account was removed from the desired state")),
    ("disabled in the desired state", [("alice", False)], ["alice"], 0, {}, "alice",
     (REPORT, "alice", "account is disabled in the desired state")),
    ("disabled, never applied", [("alice", False)], None, 0, {}, "alice",
     (REPORT, "alice", "account is disabled in the desired state")),
    ("retry_failed false", [("alice", True)], ["alice"], 0, {"retry_failed": False}, "alice",
     (REPORT, "alice", "provisioning.retry_failed is false")),
    ("disabled wins over retry_failed false", [("alice", False)], ["alice"], 0,
     {"retry_failed": False}, "alice",
     (REPORT, "alice", "account is disabled in the desired state")),
    ("retry_failed false wins over exhausted", [("alice", True)], ["alice"], 9,
     {"retry_failed": False}, "alice", (REPORT, "alice", "provisioning.retry_failed is false")),
    ("upper-case user name", [("alice", True)], ["alice"], 0, {}, "ALICE",
     (RETRY, "alice", "managed and enabled; attempt 1 of 3")),
    ("mixed-case user name, removed account", [], ["alice"], 0, {}, "Alice",
     (REPORT, "alice", "account was removed from the desired state")),
    ("mixed-case declared account", [("Li.Wei", True)], None, 0, {}, "li.wei",
     (RETRY, "Li.Wei", "managed and enabled; attempt 1 of 3")),
]
# fmt: on


@pytest.mark.parametrize(
    ("users", "accounts", "attempts", "settings", "user_name", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_decide_branches(
    *,
    users: list[tuple[str, bool]],
    accounts: list[str] | None,
    attempts: int,
    settings: dict[str, Any],
    user_name: str,
    expected: tuple[Decision, str, str],
) -> None:
    """Each branch of the decision table yields its decision, account and why."""
    recorded = None
    if accounts is not None:
        recorded = _recorded(accounts, {"upe-1": attempts} if attempts else None)
    (decision,) = provisioning.decide((_event(user_name),), _desired(users, **settings), recorded)
    assert (decision.decision, decision.account, decision.why) == expected
    assert decision.attempts == attempts


@pytest.mark.parametrize("order", [("alice", "Alice"), ("Alice", "alice")])
@pytest.mark.parametrize(("user_name", "account"), [("alice", "alice"), ("Alice", "Alice")])
def test_exact_name_wins_over_case_insensitive(
    order: tuple[str, str], user_name: str, account: str
) -> None:
    """With both ``alice`` and ``Alice`` managed, an exact match picks its own account."""
    desired = _desired([(name, True) for name in order])
    (decision,) = provisioning.decide((_event(user_name),), desired, None)
    assert decision.account == account


def test_folded_match_against_recorded_accounts() -> None:
    """A user name differing only in case finds an account known only to the state."""
    (decision,) = provisioning.decide(
        (_event("SAM.OKAFOR"),), _desired(), _recorded(["sam.okafor"])
    )
    assert (decision.account, decision.decision) == ("sam.okafor", REPORT)
    assert decision.why == "account was removed from the desired state"


def test_decision_carries_event_fields() -> None:
    """Target (name, else id), reason and times are copied from the event."""
    named = _event("alice", "upe-1", reason="quota", target_name="prod")
    unnamed = _event("alice", "upe-2", created="2025-03-11T00:00:00Z", target_name="")
    first, second = provisioning.decide((unnamed, named), _desired([("alice", True)]), None)
    assert (first.event_id, first.target, first.reason, first.created_at) == (
        "upe-1",
        "prod",
        "quota",
        "2025-03-10T10:00:00Z",
    )
    assert (second.event_id, second.target, second.updated_at) == (
        "upe-2",
        "2100000001",
        "2025-03-11T00:00:00Z",
    )


def test_decisions_sorted_by_creation_then_id() -> None:
    """Output order is stable: oldest first, ties broken by event id."""
    events = (
        _event("a", "upe-3", created="2025-03-10T10:00:00Z"),
        _event("a", "upe-1", created="2025-03-12T10:00:00Z"),
        _event("a", "upe-2", created="2025-03-10T10:00:00Z"),
    )
    ids = [d.event_id for d in provisioning.decide(events, _desired(), None)]
    assert ids == ["upe-2", "upe-3", "upe-1"]


def test_attempts_are_per_event() -> None:
    """Attempts come from the state's record of that event id only."""
    recorded = _recorded(["alice"], {"upe-1": 3})
    events = (_event("alice", "upe-1"), _event("alice", "upe-2"))
    decisions = provisioning.decide(events, _desired([("alice", True)]), recorded)
    assert [(d.event_id, d.decision, d.attempts) for d in decisions] == [
        ("upe-1", REPORT, 3),
        ("upe-2", RETRY, 0),
    ]


def test_no_events_no_decisions() -> None:
    """Nothing listed, nothing decided."""
    assert provisioning.decide((), _desired([("alice", True)]), _recorded(["alice"])) == ()


@pytest.mark.parametrize(
    ("env", "configured"),
    [
        ({}, False),
        ({"VOLCENGINE_ACCESS_KEY": ""}, False),
        ({"VOLCENGINE_ACCESS_KEY": "AKLT1", "VOLCENGINE_SECRET_KEY": "sk"}, True),
    ],
)
def test_configured(env: dict[str, str], configured: bool) -> None:
    """CloudIdentity counts as configured once a key is set; the CLI then builds the client."""
    assert (apply_commands.cloudidentity_connect(env) is not None) is configured


@pytest.mark.parametrize(
    "env", [{"VOLCENGINE_ACCESS_KEY": "AKLT1"}, {"VOLCENGINE_SECRET_KEY": "sk"}]
)
def test_half_configured_cloudidentity_fails_before_anything_is_sent(env: dict[str, str]) -> None:
    """One key of the pair without the other is a ConfigError naming the missing one, at once."""
    with pytest.raises(ConfigError) as caught:
        apply_commands.cloudidentity_connect(env)
    missing = {"VOLCENGINE_ACCESS_KEY", "VOLCENGINE_SECRET_KEY"} - set(env)
    assert missing.pop() in caught.value.message


def test_events_source_without_credentials_notes_why() -> None:
    """No credentials: no source, and a note that says how to fix or skip it."""
    notes: list[str] = []
    assert provisioning.events_source(None, notes) is None
    assert len(notes) == 1
    assert "--no-refresh" in notes[0]
    assert "VOLCENGINE_ACCESS_KEY" in notes[0]


class _Lister:
    """A CloudIdentity client stand-in that lists fixed events."""

    def __init__(self, *events: ProvisioningEvent) -> None:
        self.events = events

    def list_provisioning_events(self) -> tuple[ProvisioningEvent, ...]:
        """The fixed events."""
        return self.events


class _NoTasks:
    """The federation side is not used when only settling event retries."""

    def create_task(self, entries: Any) -> str:
        """Never called."""
        raise AssertionError("no createTask expected")

    def query_task(self, task_id: str) -> Any:
        """Never called."""
        raise AssertionError("no queryTask expected")

    def authenticate(self) -> None:
        """Never called."""
        raise AssertionError("no token expected")

    def reached(self) -> CallCounts:
        """Nothing was sent."""
        return CallCounts()


@pytest.mark.parametrize(
    ("listed", "failed", "status"),
    [
        pytest.param((), False, "resolved", id="gone-succeeded"),
        pytest.param((_event("alice"),), False, "retrying", id="unchanged-still-under-way"),
        pytest.param(
            (_event("alice", reason="target rejected the user"),), True, "open", id="new-reason"
        ),
        pytest.param(
            (_event("alice", created="2025-03-10T10:05:00Z"),), True, "open", id="new-time"
        ),
    ],
)
def test_a_requested_retry_is_judged_by_the_next_listing(
    tmp_path: Any, listed: tuple[ProvisioningEvent, ...], failed: bool, status: str
) -> None:
    """Gone: succeeded; unchanged: still under way; new reason or time: failed again."""
    # Only this test runs the engine over a store; the others are pure decisions.
    from reconciler.apply.engine import Applier, ApplyReport  # noqa: PLC0415 - see above
    from reconciler.stores.local import LocalStore  # noqa: PLC0415 - see above

    desired = _desired([("alice", True)])
    (decision,) = provisioning.decide((_event("alice"),), desired, None)
    applier = Applier(LocalStore(tmp_path / "state.json"), _NoTasks())
    report = ApplyReport()
    applier.write_state(
        applier.state.successor(
            events={decision.event_id: EventRecord(event_id=decision.event_id, account="alice")}
        )
    )
    provisioning._settle_retried(_Lister(*listed), [decision], applier, report)
    assert bool(report.failed) is failed
    assert applier.state.events[decision.event_id].status == status


class _Retrier:
    """A CloudIdentity client stand-in whose retry answers with ``error`` (or accepts)."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.retried: list[str] = []

    def retry_provisioning_event(self, event_id: str) -> None:
        """Record the call; raise the scripted error, if any."""
        self.retried.append(event_id)
        if self.error is not None:
            raise self.error


def _refused(code: str) -> CloudIdentityError:
    return CloudIdentityError("no", code=code, http_status=400)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(None, (True, EventState.RETRIED, 3, None), id="accepted"),
        pytest.param(
            _refused(provisioning.NOT_FOUND), (False, EventState.RESOLVED, 2, None), id="gone"
        ),
        pytest.param(
            _refused(provisioning.CONFLICT), (False, EventState.RETRYING, 2, None), id="conflict"
        ),
        pytest.param(
            _refused("UserProvisionEventStatusException"),
            (False, EventState.OPEN, 3, "UserProvisionEventStatusException"),
            id="refused",
        ),
        pytest.param(
            TransportError("reset", maybe_sent=True),
            (False, EventState.UNKNOWN, 3, "transport"),
            id="answer-lost",
        ),
    ],
)
def test_each_retry_answer_records_its_event_state(
    tmp_path: Any, error: Exception | None, expected: tuple[object, ...]
) -> None:
    """Accepted, gone, conflict, refused, lost: the state, attempts and failure each one means."""
    from reconciler.apply.engine import Applier, ApplyReport  # noqa: PLC0415

    desired = _desired([("alice", True)])
    (decision,) = provisioning.decide((_event("alice"),), desired, None)
    applier = Applier(LocalStore(tmp_path / "state.json"), _NoTasks())
    known = EventRecord(event_id=decision.event_id, account="alice", attempts=2)
    applier.write_state(applier.state.successor(events={decision.event_id: known}))
    report = ApplyReport()
    client = _Retrier(error)
    requested = provisioning._retry(client, decision, applier, report)
    recorded = LocalStore(tmp_path / "state.json").read()
    assert recorded is not None
    event = recorded.events[decision.event_id]
    failures = [(f.action, f.code) for f in report.failed]
    assert client.retried == [decision.event_id]
    assert (requested, event.status, event.attempts, failures[0][1] if failures else None) == (
        expected
    )
    assert all(action is EventRetry.RETRY for action, _ in failures)
