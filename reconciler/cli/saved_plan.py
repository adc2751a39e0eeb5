"""``apply PLANFILE``: telling a saved plan apart, and what it needs to be planned again.

A saved plan names the desired-state path it was made from and the state it was made
against (its location with any password masked, and the PostgreSQL workspace). Apply
plans again from exactly those, so:

- the input must be at the path the plan names (paths are relative to where the plan
  was made);
- the state is the one the plan names. ``--state``, ``RECONCILER_STATE`` and
  ``--workspace`` may give it (they must, for PostgreSQL: the plan records no password),
  but the location they give must be the recorded one, or apply refuses naming both. A
  file state is used from the plan when nothing names one. A plan never applies to
  another state than the one it was reviewed against.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from reconciler.apply import provisioning
from reconciler.apply.engine import ApplyReport
from reconciler.cli import commands
from reconciler.cli.options import Common
from reconciler.desired import dates, loading
from reconciler.desired.model import DesiredState
from reconciler.errors import ConfigError, GuardRailBlocked, PlanError, UsageError
from reconciler.plan import integrity
from reconciler.plan.model import Plan
from reconciler.stores import STATE_ENV, Store, open_store
from reconciler.stores.location import Backend as LocationBackend
from reconciler.stores.location import classify
from reconciler.stores.model import State


def is_desired_state(target: Path) -> bool:
    """The rule for ``apply TARGET``: a directory or a .yaml/.yml file is the desired state.

    Anything else must be a saved plan. A path that does not exist counts as the desired
    state, whose loading then says it is missing. Never judged by content: a flow-style YAML
    file starts with ``{`` as a JSON plan does.
    """
    return not target.exists() or target.is_dir() or loading.is_yaml_name(target.name)


def read(target: Path) -> Plan:
    """``target``, not the desired state by :func:`is_desired_state`, read as a saved plan."""
    try:
        return commands.read_plan(target)
    except PlanError as exc:
        if _names_itself_a_plan(target):
            raise  # an old, edited or broken plan: its own message says which
        raise PlanError(
            f"{target} is neither a desired-state .yaml/.yml file nor a saved plan ({exc.message})",
            hint=exc.hint
            or "apply takes the desired-state directory or .yaml/.yml file, or a plan saved "
            "with `reconciler plan --out FILE`",
        ) from exc


def _names_itself_a_plan(target: Path) -> bool:
    """Whether ``target`` is a JSON object with a plan's ``format_version`` and ``changes``."""
    try:
        document = json.loads(target.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and {"format_version", "changes"} <= document.keys()


def input_path(saved: Plan) -> Path:
    """The desired-state path the plan was made from; PlanError when it is not there."""
    path = Path(saved.input_path)
    if not saved.input_path or not path.exists():
        raise PlanError(
            f"the plan was made from the desired state at {saved.input_path or '(none)'}, "
            f"which is not there (looked from {Path.cwd()}); apply plans again from it to "
            "check the saved plan, and nothing was sent",
            hint="run apply from the directory the plan was made in, with the same "
            "desired-state files checked out",
        )
    return path


def store(saved: Plan, common: Common, env: Mapping[str, str]) -> Store:
    """The store of the state the plan was made against (see the module docstring)."""
    recorded = saved.state_location
    location = common.state
    if location is None and STATE_ENV in env:
        location = env[STATE_ENV]  # an empty value is refused by open_store, never skipped
    if location is None:
        if classify(recorded, source="the saved plan's state") is LocationBackend.POSTGRES:
            raise PlanError(
                f"the plan was made against state {recorded}; a plan records no password, "
                "so apply needs that state's DSN",
                hint="pass --state 'postgresql://…' or set RECONCILER_STATE to the DSN the "
                "plan was made with (same host, database and workspace)",
            )
        location = recorded
    base = commands.base_dir(Path(saved.input_path or "."))
    record = commands.seal(common.cache, what="state check record")
    opened = functools.partial(open_store, environ=env, check_record=record)
    chosen = _open(opened, location, base, common.workspace, saved.workspace)
    if chosen.describe() != recorded:
        raise PlanError(
            f"the plan was made against state {recorded}, but this apply would use state "
            f"{chosen.describe()}; nothing was sent",
            hint="apply a plan to the state it was made against: give the same --state / "
            "RECONCILER_STATE and --workspace, or plan again against the other state",
        )
    return chosen


def _open(
    opened: Callable[..., Store],
    location: str,
    base: Path,
    given: str | None,
    recorded: str | None,
) -> Store:
    """Open ``location`` in the given workspace, else in the plan's own if the DSN allows."""
    if given is not None or recorded is None:
        return opened(location, base_dir=base, workspace=given)
    try:
        return opened(location, base_dir=base, workspace=recorded)
    except ConfigError:
        # The DSN names another workspace: open it as named; the comparison then refuses.
        return opened(location, base_dir=base, workspace=None)


def plan_again(
    saved: Plan,
    desired: DesiredState,
    recorded: State | None,
    store: Store,
    *,
    at: dt.date,
    allow_disables: int | None,
) -> Plan:
    """The plan of ``desired`` against ``recorded`` at ``at``; PlanError unless it is
    ``saved`` (StalePlan when only end dates passed since it was made)."""
    return integrity.replan(
        saved,
        desired,
        recorded,
        at=at,
        against=f"{saved.input_path} and state {store.describe()}",
        allow_disables=allow_disables,
        input_path=saved.input_path,
        state_location=store.describe(),
        workspace=commands.workspace_of(store),
    )


def apply_date(desired: DesiredState, now: dt.datetime) -> dt.date:
    """The date apply evaluates end dates at: ``--at`` / RECONCILER_AT or today, in the
    policy's timezone; never before today, which could give back access that has ended."""
    at = commands.evaluated_at(desired)
    clock = dates.Today(now=now).date(desired.policy.timezone)
    if at < clock:
        raise UsageError(
            f"apply evaluates end dates at {at}, before today ({clock} in "
            f"{desired.policy.timezone}): an earlier date could give back access that has "
            "ended; nothing was sent",
            hint="drop --at (and RECONCILER_AT) to apply at today's date, or give today or a "
            "later date",
        )
    return at


def with_retries(
    made: Plan,
    saved: Plan,
    *,
    source: provisioning.EventsSource | None,
    configured: bool,
    desired: DesiredState,
    recorded: State | None,
    report: ApplyReport,
) -> Plan:
    """``made`` with the saved plan's retries that a fresh listing still confirms.

    ``source`` lists events now (None with --no-refresh); ``configured`` says whether
    CloudIdentity is. Without it the saved retries stay: apply reports each as failed and
    calls nothing. Skipped retries are noted in ``report``.
    """
    if not saved.retries:
        return replace(made, events=(), events_refreshed=False)
    if not configured:
        return replace(made, events=saved.retries, events_refreshed=False)
    if source is None:
        count = len(saved.retries)
        report.notes.append(
            f"{count} provisioning retr{'y' if count == 1 else 'ies'} of the plan skipped: "
            "--no-refresh lists no events to check them against"
        )
        return replace(made, events=(), events_refreshed=False)
    kept, notes = integrity.recheck_retries(saved, source(desired, recorded))
    report.notes.extend(notes)
    return replace(made, events=kept, events_refreshed=True)


def check_guard(made: Plan, saved: Plan) -> None:
    """The guard rails on the plan made again; an override comes from apply's command line."""
    try:
        commands.check_guard(made)
    except GuardRailBlocked as blocked:
        override = saved.guard.override
        if override is None or made.guard.override is not None:
            raise
        raise GuardRailBlocked(
            blocked.message,
            hint=f"the plan was made with --allow-disables {override}; apply never takes an "
            "override from a file: pass it to apply as well if the disables are intended",
        ) from blocked
