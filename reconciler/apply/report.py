"""What an apply did: running counters and the per-account report (plain data)."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.apply.ledger import Failure
from reconciler.errors import ReconcilerError
from reconciler.stores.model import Action
from reconciler.values import frozen


@dataclass(slots=True)
class Counters:
    """Running totals of an apply; the call counts are requests that reached the API."""

    batches_total: int = 0
    batches_sent: int = 0
    tasks_done: int = 0
    users_total: int = 0
    users_applied: int = 0
    users_failed: int = 0
    create_calls: int = 0
    query_calls: int = 0


@frozen
class FailureGroup:
    """Accounts that failed the same way: one code, one message."""

    code: str
    message: str
    failures: tuple[Failure, ...]


@dataclass(slots=True)
class ApplyReport:
    """What an apply did, per account."""

    applied: list[tuple[str, Action]] = field(default_factory=list)  # (account, action)
    failed: list[Failure] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)  # messages about batches left pending
    notes: list[str] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    # Why sending stopped for good (credentials, an unreachable API): said once, not per account.
    error: ReconcilerError | None = None
    # What asked the run to stop (e.g. "SIGTERM"): nothing more was sent, in-flight work recorded.
    interrupted: str | None = None

    @property
    def ok(self) -> bool:
        """Everything applied."""
        return (
            not self.failed
            and not self.unresolved
            and self.error is None
            and self.interrupted is None
        )

    def failure_groups(self) -> tuple[FailureGroup, ...]:
        """The failures grouped by (code, message), in order of first appearance."""
        groups: dict[tuple[str, str], list[Failure]] = {}
        for failure in self.failed:
            groups.setdefault((failure.code, failure.message), []).append(failure)
        return tuple(
            FailureGroup(code=code, message=message, failures=tuple(failures))
            for (code, message), failures in groups.items()
        )
