"""What the federation sandbox holds per tenant, and how its tasks run.

A task is TODO until ``doing_at`` and DOING after; it becomes DONE when it is run
(``Tenant.run_due``, once ``done_at`` has passed, in creation order): its entries take
effect and its run-time failures are kept for queryTask's ``failDataList`` then, never
sooner. Not from the clock alone: a request reads the clock more than once, and one
handled while its task fell due answered DONE with failures not yet known.
Not thread-safe by itself: the sandbox holds its lock around every call.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.sandbox import federation_rules as rules
from reconciler.sandbox.federation_rules import Action, Code, FederationSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class FederatedUser:
    """One federated user of a tenant as the service holds it."""

    name: str
    email: str
    role_ids: tuple[str, ...] = ()
    enabled: bool = True

    def to_json(self) -> dict[str, Any]:
        """The user as the control endpoints show it."""
        return {
            "name": self.name,
            "email": self.email,
            "role_ids": list(self.role_ids),
            "enabled": self.enabled,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantSeed:
    """A tenant to create (or replace) in the sandbox."""

    app_key: str
    app_secret: str
    tenant_space_id: str | None = None
    role_ids: tuple[str, ...] = ()
    users: Mapping[str, FederatedUser] = field(default_factory=dict)


class TaskStatus(StrEnum):
    """queryTask's ``taskInfo.status``."""

    TODO = "TODO"
    DOING = "DOING"
    DONE = "DONE"


@dataclass(slots=True, kw_only=True)
class Task:
    """One accepted createTask; ``failures`` fills in when it runs (``ran``)."""

    task_id: str
    entries: tuple[rules.Entry, ...]  # deep copies of the entries as sent
    doing_at: float
    done_at: float
    failures: list[dict[str, Any]] = field(default_factory=list)
    ran: bool = False  # its entries took effect: DONE, and ``failures`` is complete

    def status(self, now: float) -> TaskStatus:
        """The status at ``now``: DONE only once it ran, whatever the clock says."""
        if self.ran:
            return TaskStatus.DONE
        if now < self.doing_at:
            return TaskStatus.TODO
        return TaskStatus.DOING

    def report(self, now: float) -> dict[str, Any]:
        """queryTask's ``taskInfo`` and ``failDataList`` at ``now``."""
        status = self.status(now)
        if status is not TaskStatus.DONE:
            remark = "waiting" if status is TaskStatus.TODO else "running"
            return {"taskInfo": {"status": status.value, "remark": remark}, "failDataList": []}
        failed = len(self.failures)
        remark = f"{len(self.entries) - failed} succeeded, {failed} failed"
        return {
            "taskInfo": {"status": status.value, "remark": remark},
            "failDataList": copy.deepcopy(self.failures),
        }


@dataclass(slots=True, kw_only=True)
class Tenant:
    """A tenant's credentials, role catalogue, users and tasks."""

    seed: TenantSeed
    roles: set[str]
    users: dict[str, FederatedUser]
    tasks: dict[str, Task] = field(default_factory=dict)
    # not yet run, in creation order; done_at never decreases along it
    unapplied: collections.deque[Task] = field(default_factory=collections.deque)

    @classmethod
    def from_seed(cls, seed: TenantSeed) -> Tenant:
        """A fresh tenant as seeded."""
        return cls(seed=seed, roles=set(seed.role_ids), users=dict(seed.users))

    def pending(self) -> int:
        """Tasks not yet DONE (TODO or DOING), once ``run_due`` has been called."""
        return len(self.unapplied)

    def accept(
        self,
        task_id: str,
        entries: tuple[rules.Entry, ...],
        *,
        now: float,
        settings: FederationSettings,
    ) -> Task:
        """Queue a validated batch as a new task."""
        doing_at = now + settings.todo_seconds
        previous_done = self.unapplied[-1].done_at if self.unapplied else now
        task = Task(
            task_id=task_id,
            entries=copy.deepcopy(entries),
            doing_at=doing_at,
            # timings may shrink at run time; a later task must never finish before an earlier one
            done_at=max(doing_at + settings.doing_seconds, previous_done),
        )
        self.tasks[task_id] = task
        self.unapplied.append(task)
        return task

    def run_due(self, now: float, settings: FederationSettings) -> list[str]:
        """Run every task DONE by ``now``, oldest first; the accounts that were created."""
        created: list[str] = []
        while self.unapplied and self.unapplied[0].done_at <= now:
            task = self.unapplied.popleft()
            for entry in task.entries:
                failure = self._execute(entry, settings)
                if failure is None:
                    if entry["action"] == Action.CREATE:
                        created.append(entry["userAccount"])
                    continue
                task.failures.append(
                    {
                        "federationUser": copy.deepcopy(dict(entry)),
                        "failCode": failure.value,
                        "failMessage": rules.message(failure, role_id=_missing_role(entry, self)),
                    }
                )
            task.ran = True
        return created

    def _execute(self, entry: rules.Entry, settings: FederationSettings) -> Code | None:
        account: str = entry["userAccount"]
        existing = self.users.get(account)
        action = Action(entry["action"])
        if action is Action.CREATE:
            reenable = existing is not None and not existing.enabled
            if existing is not None and not (reenable and settings.create_reenables_disabled):
                return Code.USER_EXISTS
        elif existing is None:
            return Code.USER_NOT_FOUND
        roles = entry.get("roleIds")
        # the catalogue may have lost a role since the task was accepted
        if action is not Action.DISABLE and _missing_role(entry, self):
            return Code.ROLE_NOT_IN_TENANT
        role_ids = tuple(dict.fromkeys(roles)) if roles is not None else None
        match action:
            case Action.CREATE:
                self.users[account] = FederatedUser(
                    name=entry["userName"], email=entry["email"], role_ids=role_ids or ()
                )
            case Action.MODIFY:
                assert existing is not None
                self.users[account] = dataclasses.replace(
                    existing,
                    name=entry.get("userName") or existing.name,
                    email=entry.get("email") or existing.email,
                    role_ids=existing.role_ids if role_ids is None else role_ids,
                )
            case Action.DISABLE:
                assert existing is not None
                self.users[account] = dataclasses.replace(existing, enabled=False)
        return None


def _missing_role(entry: rules.Entry, tenant: Tenant) -> str:
    return rules.first_unknown_role((entry,), tenant.roles) or ""
