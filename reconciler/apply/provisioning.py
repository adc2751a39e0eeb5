"""Provisioning drift: failed CloudIdentity events → plan decisions → retries on apply.

An event names a CloudIdentity user (``UserName``); reconciler takes that name to be
the federated account it manages (exact match first, then case-insensitive).
``decide`` is pure; listing and retrying happen at the edges below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, Self

from reconciler.apply.engine import Applier, ApplyReport
from reconciler.apply.ledger import EventRetry, Failure
from reconciler.desired.model import DesiredState
from reconciler.errors import CloudIdentityError, TransportError
from reconciler.plan.model import Decision, EventDecision, Plan
from reconciler.stores import revisions
from reconciler.stores.model import EventRecord, EventState, State
from reconciler.values import replace

EventsSource = Callable[[DesiredState, State | None], tuple[EventDecision, ...]]
NOT_FOUND = "UserProvisionEventNotFound"
CONFLICT = "UserProvisionEventRetryConflict"
NOT_CONFIGURED = (
    "CloudIdentity is not configured (set VOLCENGINE_ACCESS_KEY and VOLCENGINE_SECRET_KEY)"
)


class EventsApi(Protocol):
    """The CloudIdentity calls apply makes (``providers.cloudidentity.client``)."""

    def list_provisioning_events(self) -> tuple[Any, ...]:
        """Every failed provisioning event."""
        ...

    def retry_provisioning_event(self, event_id: str) -> None:
        """Ask CloudIdentity to retry one event."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...


# Opens a CloudIdentity client. The CLI builds it from the environment (None when
# CloudIdentity is not configured), so apply never reads the environment or imports httpx.
Connect = Callable[[], EventsApi]


def _account_of(user_name: str, known: Mapping[str, str]) -> str:
    return known.get(user_name) or known.get(user_name.lower()) or user_name


def decide(
    events: tuple[Any, ...], desired: DesiredState, recorded: State | None
) -> tuple[EventDecision, ...]:
    """What apply does with each failed event, and why (pure)."""
    exact = {a: a for a in (*desired.users, *(recorded.accounts if recorded else {}))}
    folded: dict[str, str] = {}
    for account in exact:
        folded.setdefault(account.lower(), account)
    names = {**folded, **exact}  # an exact name wins over another account's folded one
    settings = desired.provisioning
    known = recorded.events if recorded else {}
    decisions = []
    for event in sorted(events, key=lambda e: (e.created_time, e.event_id)):
        account = _account_of(event.user_name, names)
        attempts = known[event.event_id].attempts if event.event_id in known else 0
        user = desired.users.get(account)
        managed = account in desired.users or bool(recorded and account in recorded.accounts)
        if not managed:
            decision, why = Decision.REPORT, "account is not managed by reconciler"
        elif user is None:
            decision, why = Decision.REPORT, "account was removed from the desired state"
        elif not user.enabled:
            decision, why = Decision.REPORT, "account is disabled in the desired state"
        elif not settings.retry_failed:
            decision, why = Decision.REPORT, "provisioning.retry_failed is false"
        elif attempts >= settings.max_attempts:
            decision = Decision.REPORT
            why = f"attempts exhausted ({attempts}/{settings.max_attempts}); investigate the reason"
        else:
            decision = Decision.RETRY
            why = f"managed and enabled; attempt {attempts + 1} of {settings.max_attempts}"
        decisions.append(
            EventDecision(
                event_id=event.event_id,
                account=account,
                target=event.target_name or event.target_id,
                target_id=event.target_id,
                reason=event.failure_reason,
                created_at=event.created_time,
                updated_at=event.updated_time,
                attempts=attempts,
                decision=decision,
                why=why,
            )
        )
    return tuple(decisions)


def events_source(connect: Connect | None, notes: list[str]) -> EventsSource | None:
    """A function listing and deciding failed events; None (noted) when not configured."""
    if connect is None:
        notes.append(
            "provisioning events not refreshed: CloudIdentity is not configured "
            "(set VOLCENGINE_ACCESS_KEY and VOLCENGINE_SECRET_KEY, or pass --no-refresh)"
        )
        return None

    def source(desired: DesiredState, recorded: State | None) -> tuple[EventDecision, ...]:
        with connect() as client:
            events = client.list_provisioning_events()
        return decide(events, desired, recorded)

    return source


def _record(applier: Applier, event: EventDecision, status: EventState, **changes: Any) -> None:
    """Write what is now known of ``event``: its ``status``, and any other ``changes``."""
    state = applier.state
    current = state.events.get(event.event_id) or EventRecord(
        event_id=event.event_id, account=event.account, target_id=event.target_id or event.target
    )
    updated = {event.event_id: replace(current, status=status, **changes)}
    applier.write_state(replace(state, events=revisions.revise(state.events, updated)))


def _failure(event: EventDecision, code: str, message: str) -> Failure:
    return Failure(account=event.account, action=EventRetry.RETRY, code=code, message=message)


def retry_events(
    plan: Plan, applier: Applier, report: ApplyReport, connect: Connect | None
) -> None:
    """Retry the events the plan chose, one at a time, recording attempts durably."""
    if connect is None:
        report.failed.extend(_failure(event, "config", NOT_CONFIGURED) for event in plan.retries)
        return
    requested: list[EventDecision] = []
    with connect() as client:
        for event in plan.retries:
            if _retry(client, event, applier, report):
                requested.append(event)
        # The retry answers {} whether or not the provisioning then went through; the
        # outcome shows in the list: a resolved event is gone, a failed one stays.
        _settle_retried(client, requested, applier, report)


def _retry(client: EventsApi, event: EventDecision, applier: Applier, report: ApplyReport) -> bool:
    """Ask for one retry, recording the attempt; True when CloudIdentity accepted it."""
    previous = applier.state.events.get(event.event_id)
    attempts = (previous.attempts if previous else event.attempts) + 1
    now = applier.now()
    applier.store.fence()  # a run that lost its state lock sends nothing more
    try:
        client.retry_provisioning_event(event.event_id)
    except CloudIdentityError as error:
        if error.code == NOT_FOUND:
            _record(applier, event, EventState.RESOLVED, last_attempt_at=now)
            report.notes.append(f"event {event.event_id} ({event.account}): already resolved")
        elif error.code == CONFLICT:
            _record(applier, event, EventState.RETRYING, last_attempt_at=now)
            report.notes.append(
                f"event {event.event_id} ({event.account}): a retry is already under way"
            )
        else:
            reason = f"{error.code}: {error.message}"
            _record(
                applier,
                event,
                EventState.OPEN,
                attempts=attempts,
                last_attempt_at=now,
                last_reason=reason,
            )
            message = f"retry of event {event.event_id} failed: {error.message}"
            report.failed.append(_failure(event, error.code, message))
        return False
    except TransportError as error:
        # The request may have been accepted: not resent, and its attempt counts.
        _record(applier, event, EventState.UNKNOWN, attempts=attempts, last_attempt_at=now)
        message = f"retry of event {event.event_id}: {error.message}"
        report.failed.append(_failure(event, "transport", message))
        return False
    _record(applier, event, EventState.RETRIED, attempts=attempts, last_attempt_at=now)
    return True


def _settle_retried(
    client: EventsApi, requested: list[EventDecision], applier: Applier, report: ApplyReport
) -> None:
    """Check each requested retry against a fresh listing.

    Gone: resolved. Listed with a new reason or time: failed again (the spec's assumption
    for a failed retry). Listed unchanged: the retry is still under way.
    """
    if not requested:
        return
    try:
        listed = {e.event_id: e for e in client.list_provisioning_events()}
    except (CloudIdentityError, TransportError) as error:
        report.unresolved.append(
            f"{len(requested)} event retr{'y' if len(requested) == 1 else 'ies'} requested, but "
            f"their outcome could not be listed ({error.message}); run `reconciler refresh`"
        )
        return
    for event in requested:
        attempts = applier.state.events[event.event_id].attempts
        still = listed.get(event.event_id)
        if still is None:
            _record(applier, event, EventState.RESOLVED)
            report.notes.append(
                f"event {event.event_id} ({event.account} → {event.target}): retry succeeded "
                f"(attempt {attempts})"
            )
            continue
        if (still.failure_reason, still.updated_time) == (event.reason, event.updated_at):
            # Untouched since the plan listed it: the retry is still under way, not failed.
            _record(applier, event, EventState.RETRYING)
            report.notes.append(
                f"event {event.event_id} ({event.account}): retry requested, outcome not "
                "known yet; `reconciler refresh` or the next plan shows it"
            )
            continue
        _record(applier, event, EventState.OPEN, last_reason=still.failure_reason)
        message = (
            f"retry of event {event.event_id} (attempt {attempts}) failed: {still.failure_reason}"
        )
        report.failed.append(_failure(event, "RetryFailed", message))


def refresh_events(applier: Applier, report: ApplyReport, connect: Connect | None) -> None:
    """List current failed events and update what the state knows of them."""
    if connect is None:
        report.notes.append("provisioning events not refreshed: CloudIdentity is not configured")
        return
    with connect() as client:
        events = client.list_provisioning_events()
    state = applier.state
    now = applier.now()
    names = {a.lower(): a for a in state.accounts}
    updated: dict[str, EventRecord] = {}
    for event in events:
        account = _account_of(event.user_name, {**names, **{a: a for a in state.accounts}})
        known = state.events.get(event.event_id)
        base = known or EventRecord(event_id=event.event_id, account=account)
        updated[event.event_id] = replace(
            base,
            account=account,
            target_id=event.target_id,
            last_reason=event.failure_reason,
            status=EventState.OPEN,
            seen_at=now,
        )
    resolved = [e for e in state.events if e not in updated]
    if updated != dict(state.events):
        applier.write_state(replace(state, events=updated))
    report.notes.append(
        f"{len(events)} failed provisioning event(s) open"
        + (f"; {len(resolved)} no longer listed (resolved)" if resolved else "")
    )
