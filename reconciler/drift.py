"""Provisioning drift: failed CloudIdentity events → plan decisions → retries on apply."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler.applying import Applier, ApplyReport
from reconciler.changes import Plan
from reconciler.desired import DesiredState
from reconciler.state import State

EventsSource = Callable[[DesiredState, State | None], tuple[Any, ...]]


def configured(env: Mapping[str, str]) -> bool:
    """Whether CloudIdentity credentials are set."""
    return bool(env.get("VOLCENGINE_ACCESS_KEY") or env.get("VOLCENGINE_SECRET_KEY"))


def events_source(env: Mapping[str, str], notes: list[str]) -> EventsSource | None:
    """A function listing failed events, or None (noted) when CloudIdentity is not configured."""
    if not configured(env):
        notes.append(
            "provisioning events not refreshed: CloudIdentity is not configured "
            "(set VOLCENGINE_ACCESS_KEY and VOLCENGINE_SECRET_KEY)"
        )
        return None
    return None


def retry_events(plan: Plan, applier: Applier, report: ApplyReport, env: Mapping[str, str]) -> None:
    """Retry the events the plan chose, one at a time."""


def refresh_events(applier: Applier, report: ApplyReport, env: Mapping[str, str]) -> None:
    """Update what the state knows of failed events."""
