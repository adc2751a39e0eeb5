"""``apply PLANFILE [PATH]``: telling a saved plan apart, and what it needs to be planned again.

A saved plan is an artifact (a CI run's download, say): nothing that decides *where* apply
reads or writes is taken from it. The desired state is PATH (default ``.``) and the state
is chosen as every command chooses it (``--state``, ``RECONCILER_STATE``, ``--workspace``,
else the default beside PATH). The plan records what it was made from; when the input
path or the state differs from the recorded one, apply refuses, naming both, and sends
nothing. A plan never applies to another input or state than the one it was reviewed
against, and a plan file cannot point apply at another one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
from pathlib import Path

from reconciler.apply import provisioning
from reconciler.apply.engine import ApplyReport
from reconciler.cli import commands
from reconciler.cli.options import Common
from reconciler.desired import dates, loading
from reconciler.desired.model import DesiredState
from reconciler.errors import GuardRailBlocked, PlanError, UsageError
from reconciler.plan import integrity
from reconciler.plan.model import Plan
from reconciler.stores import Store
from reconciler.stores.location import Backend as LocationBackend
from reconciler.stores.model import State
from reconciler.values import replace


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
    if not target.is_file():  # never open a FIFO or a device
        return False
    try:
        document = json.loads(target.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and {"format_version", "changes"} <= document.keys()


def input_path(saved: Plan, given: Path | None, plan_file: Path) -> Path:
    """PATH of ``apply PLANFILE [PATH]`` (default ``.``); PlanError unless the plan was
    made from it (the same path as written, or the same directory seen from here)."""
    path = given if given is not None else Path(".")
    if not _same_path(saved.input_path, path):
        raise PlanError(
            f"the plan was made from the desired state at {saved.input_path or '(none)'}, "
            f"but this apply reads {path}; nothing was sent",
            hint=f"reconciler apply {_quote(plan_file)} {_quote(saved.input_path or '.')}"
            f"{_state_flags(saved)} (from the directory the plan was made in, with the "
            "reviewed files checked out)",
        )
    return path


def _state_flags(saved: Plan) -> str:
    """`` --state …`` (and ``--workspace``) of the state ``saved`` was made against: a
    hint that named PATH alone would fail next on the state."""
    if not saved.state_location:
        return ""
    flags = f" --state {_quote(saved.state_location)}"
    if saved.workspace is not None:
        flags += f" --workspace {_quote(saved.workspace)}"
    if "://" in saved.state_location:
        flags += " (with the DSN's password: a plan never records one)"
    return flags


def store(saved: Plan, path: Path, common: Common, plan_file: Path) -> Store:
    """The store ``apply`` would use for ``path`` anyway; PlanError unless it is the
    state the plan was made against (location, PostgreSQL workspace)."""
    chosen = commands.store_for(path, common)
    recorded = saved.state_location
    if not _same_state(chosen, recorded):
        hint = f"reconciler apply {_quote(plan_file)} {_quote(path)} --state {_quote(recorded)}"
        if chosen.location.backend is LocationBackend.POSTGRES or "://" in recorded:
            hint += " (with the DSN's password: a plan never records one)"
        raise PlanError(
            f"the plan was made against state {recorded}, but this apply would use state "
            f"{chosen.describe()}; nothing was sent",
            hint=hint,
        )
    return chosen


def check_out(out: Path) -> None:
    """UsageError for a ``plan --out`` that apply would not read back as a plan: a
    .yaml/.yml name (it is the desired state to apply, and may be one of its files) or a
    directory."""
    if loading.is_yaml_name(out.name) or out.is_dir():
        what = "a directory" if out.is_dir() else "a .yaml/.yml name"
        raise UsageError(
            f"--out {out} is {what}: apply reads such a PATH as the desired state, and the "
            "plan would overwrite it; nothing was written",
            hint="save the plan under another name, e.g. --out plan.json",
        )


def apply_command(out: Path, path: Path, common: Common) -> str:
    """The command that applies the plan saved at ``out`` (the same PATH and state flags)."""
    return commands.command_line(["reconciler", "apply", str(out)], path, common)


def _same_path(recorded: str, path: Path) -> bool:
    if not recorded:
        return False
    if os.path.normpath(recorded) == os.path.normpath(path):
        return True
    return Path(recorded).resolve() == path.resolve()


def _same_state(chosen: Store, recorded: str) -> bool:
    if chosen.location.backend is LocationBackend.POSTGRES:
        return chosen.describe() == recorded
    return _same_path(recorded, Path(chosen.describe()))


def _quote(value: object) -> str:
    return shlex.quote(str(value))


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
