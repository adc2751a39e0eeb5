"""What an apply did: running counters and the per-account report (plain data)."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.apply.ledger import Failure
from reconciler.stores.model import Action


@dataclass(slots=True)
class Counters:
    """Running totals of an apply."""

    batches_total: int = 0
    batches_sent: int = 0
    tasks_done: int = 0
    users_total: int = 0
    users_applied: int = 0
    users_failed: int = 0
    create_calls: int = 0
    query_calls: int = 0


@dataclass(slots=True)
class ApplyReport:
    """What an apply did, per account."""

    applied: list[tuple[str, Action]] = field(default_factory=list)  # (account, action)
    failed: list[Failure] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)  # messages about batches left pending
    notes: list[str] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)

    @property
    def ok(self) -> bool:
        """Everything applied."""
        return not self.failed and not self.unresolved
