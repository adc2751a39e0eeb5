"""Commands that talk to the providers: plan (with refresh), show, apply, refresh, why."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from reconciler import jsontext
from reconciler.apply import engine, ledger, progress, provisioning
from reconciler.apply.engine import ApplyReport, ApplySettings
from reconciler.cli import commands, exiting, memory, saved_plan, signals
from reconciler.cli.choices import PlanFormat, ReportFormat
from reconciler.cli.commands import out
from reconciler.cli.options import (
    ApplyOptions,
    Common,
    PlanOptions,
    RefreshOptions,
    ShowOptions,
    WhyOptions,
)
from reconciler.desired.model import DesiredState
from reconciler.errors import (
    EXIT_BLOCKED,
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    ApplyIncomplete,
    ConfigError,
    Interrupted,
    PlanError,
    StateError,
    UsageError,
    printable,
)
from reconciler.plan import expiry, git, planfile, provenance, redaction
from reconciler.plan.model import Plan
from reconciler.providers.cloudidentity import client as cloudidentity
from reconciler.providers.federation import client as federation
from reconciler.stores import Store
from reconciler.stores.model import State
from reconciler.values import frozen, replace


def cloudidentity_connect(env: Mapping[str, str]) -> provisioning.Connect | None:
    """How to open a CloudIdentity client; None when no CloudIdentity credential is set.

    The settings are read and checked here, before anything is sent: one credential of
    the pair without the other is a ConfigError now, not halfway through an apply.
    """
    if not (env.get("VOLCENGINE_ACCESS_KEY") or env.get("VOLCENGINE_SECRET_KEY")):
        return None
    settings = cloudidentity.CloudIdentitySettings.from_env(env)
    return functools.partial(cloudidentity.CloudIdentityClient, settings)


def _events_source(notes: list[str]) -> provisioning.EventsSource | None:
    """The CloudIdentity refresher, or None (with a note) when it is not configured."""
    return provisioning.events_source(cloudidentity_connect(os.environ), notes)


def _redact(plan: Plan, spec: str) -> Plan:
    return redaction.redact(plan, spec) if spec else plan


def plan(options: PlanOptions, *, now: dt.datetime) -> int:
    """``reconciler plan``."""
    notes: list[str] = []
    if options.out is not None:
        saved_plan.check_out(options.out)  # before anything is read, written or shown
    source = _events_source(notes) if options.refresh else None
    if not options.refresh:
        notes.append("provisioning events not refreshed (--no-refresh): planned offline")
    path = options.path
    store = commands.store_for(path, options.common)
    # git blame runs beside the parse, on another core; collected by annotate.
    with git.blaming(path) as blames:
        made, _, desired = commands.make_plan(
            path,
            store,
            when=commands.today(options.at, now),
            allow_disables=options.allow_disables,
            events_source=source,
            cache=commands.parse_cache(path, options.common.cache, common=options.common),
        )
        made = provenance.annotate(_with_path(made, path, notes), path, desired, blames)
    # The changes are encoded once: their digest (shown in every format) and the lines
    # of the JSON, which is built once when it is both printed and saved.
    encoded = planfile.encode(made)
    made = planfile.with_digest(made, encoded)
    saved = planfile.dumps(made, encoded) if options.out is not None else None
    if options.fmt is PlanFormat.JSON and not options.redact:
        # Written in pieces when not saved: the whole text is never held (100k changes: 70 MB).
        sys.stdout.writelines((saved,) if saved is not None else planfile.pieces(made, encoded))
    else:
        shown = _redact(made, options.redact)
        sys.stdout.write(
            commands.render_plan(shown, fmt=options.fmt, show_batches=options.show_batches, now=now)
        )
    commands.check_guard(made)
    if saved is not None and options.out is not None:
        commands.write_atomic(options.out, saved)
        if options.fmt is PlanFormat.TEXT:
            out(
                f"Saved the plan to {options.out}. Apply exactly this plan with: "
                f"{saved_plan.apply_command(options.out, path, options.common)}"
            )
    if options.detailed_exitcode and made.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


def _with_path(made: Plan, path: Path, notes: list[str]) -> Plan:
    return replace(made, input_path=str(path), notes=(*made.notes, *notes))


def show(options: ShowOptions, *, now: dt.datetime) -> int:
    """``reconciler show FILE``."""
    saved = commands.read_plan(options.file)
    shown = _redact(saved, options.redact)
    sys.stdout.write(
        commands.render_plan(shown, fmt=options.fmt, show_batches=options.show_batches, now=now)
    )
    return EXIT_BLOCKED if saved.guard.blocked else EXIT_OK


def _progress(fmt: ReportFormat) -> engine.Progress:
    if fmt is ReportFormat.JSON:
        return progress.LineProgress(sys.stderr)
    if sys.stderr.isatty() and "NO_COLOR" not in os.environ:
        return progress.BarProgress(sys.stderr)
    return progress.LineProgress(sys.stderr)


ENV_TASK_TIMEOUT = "RECONCILER_TASK_TIMEOUT"
MAX_LISTED = 20  # accounts named per group of identical failures


def task_timeout_from_env(env: Mapping[str, str]) -> float | None:
    """``RECONCILER_TASK_TIMEOUT`` in seconds; None when unset (ConfigError when invalid)."""
    raw = env.get(ENV_TASK_TIMEOUT)
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise ConfigError(
            f"{ENV_TASK_TIMEOUT} must be a positive number of seconds, not {raw!r}",
            hint=f"e.g. {ENV_TASK_TIMEOUT}=3600 to wait up to an hour for each task",
        )
    return seconds


@frozen
class _Session:
    """What apply and refresh run with while they hold the state."""

    client: federation.FederationClient
    stop: signals.StopRequest  # set by SIGINT/SIGTERM
    task_timeout: float | None  # from the environment; the flag wins over it


def _confirm(plan_: Plan, auto_approve: bool) -> bool:
    if auto_approve:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            "apply needs confirmation, and there is no terminal to ask on",
            hint="review the plan, then pass --auto-approve (or apply a saved plan file)",
        )
    sys.stdout.write("\nDo you want to apply these changes? Only 'yes' will be accepted: ")
    sys.stdout.flush()
    return sys.stdin.readline().strip() == "yes"


def apply(options: ApplyOptions, *, now: dt.datetime) -> int:
    """``reconciler apply [PLANFILE [PATH] | PATH]``."""
    with memory.long_run() as loaded:
        if not saved_plan.is_desired_state(options.target):
            return _apply_saved(options, saved_plan.read(options.target), now=now, loaded=loaded)
        if options.path is not None:
            raise UsageError(
                f"apply takes one desired-state PATH ({options.target}), or a saved plan and "
                f"its PATH; {options.path} is one too many",
                hint=f"reconciler apply {shlex.quote(str(options.target))}",
            )
        return _apply_desired(options, now=now, loaded=loaded)


def _apply_desired(options: ApplyOptions, *, now: dt.datetime, loaded: Callable[[], None]) -> int:
    """``reconciler apply [PATH]``: plan, confirm, apply."""
    path = options.target
    notes: list[str] = []
    source = _events_source(notes) if options.refresh else None
    cache = commands.parse_cache(path, options.common.cache, common=options.common)
    desired = commands.load(path, commands.today(options.at, now), cache=cache)
    at = saved_plan.apply_date(desired, now)
    store = commands.store_for(path, options.common)
    with _client_and_lock(store, options.common, "apply") as client:
        applier = _applier(store, client, options)
        loaded()  # the desired and the recorded state: from here on the GC leaves them alone
        exiting.keep(desired, applier)  # a console run leaves them to the OS when it ends
        _refuse_unexplained(applier.state, desired, store)
        resumed = _settle_earlier(applier, options.fmt) if applier.state.pending else None
        events = source(desired, applier.state) if source else ()
        made = expiry.plan_at(
            desired,
            applier.state if applier.state.serial else None,
            at=at,
            allow_disables=options.allow_disables,
            events=events,
            events_refreshed=source is not None,
            input_path=str(path),
            state_location=store.describe(),
            workspace=commands.workspace_of(store),
        )
        commands.flush(cache)  # the desired and the recorded state checked out
        made = provenance.annotate(_with_path(made, path, notes), path, desired)
        exiting.keep(made)
        _show_text(made, options, now)
        commands.check_guard(made)
        if options.revocations_only:
            commands.check_revocations_only(made)
        if not made.has_changes:
            report = resumed or applier.report
            return _finish(report, options.fmt, made, nothing=True)
        if not _confirm(made, options.auto_approve):
            out("Apply cancelled.")
            return EXIT_ERROR
        report = applier.run(made, source_commit=git.head_commit(path))
        _retry_events(made, applier, report)
    return _finish(report, options.fmt, made)


def _refuse_unexplained(state: State, desired: DesiredState, store: Store) -> None:
    """StateError when settling would send entries the desired state does not account for.

    An interrupted apply's lost entries are resent as the state recorded them: a state
    edited by hand (or by anyone who can write it) must not carry grants past review.
    """
    found = ledger.unexplained(state, desired)
    if not found:
        return
    shown = "; ".join(printable(line) for line in found[:3])
    if len(found) > 3:
        shown += f"; … and {len(found) - 3} more"
    raise StateError(
        f"the state at {store.describe()} holds {len(found)} entr"
        f"{'y' if len(found) == 1 else 'ies'} of an interrupted apply that the desired "
        f"state does not account for ({shown}); settling them would send them unreviewed, "
        "so nothing was sent",
        hint="inspect them with `reconciler state pull`: if the state was edited, restore it "
        "(its .backup, or the last good copy, with `reconciler state push --force`); if the "
        "desired state changed since that apply, check out the reviewed one it was made from "
        "and run `reconciler refresh PATH`",
    )


def _settle_earlier(applier: engine.Applier, fmt: ReportFormat) -> ApplyReport:
    """Finish an earlier run's batches; stop (nothing new sent) if any stays unsettled.

    A plan made on top of unsettled work would send again what may already have been
    applied: a CREATE whose lost request did create the account, for instance.
    """
    report = applier.resume()
    if report.interrupted is not None or report.error is not None:
        _finish(report, fmt, None)  # raises: a signal or a dead end stops here, said once
    pending = applier.state.pending
    if not report.unresolved and not pending:
        return report
    _emit(report, fmt)
    raise ApplyIncomplete(
        f"an earlier apply left {len(pending)} batch(es) unsettled (the API may or may not "
        "have received them); nothing new was sent, as planning on top of them could "
        "send the same changes twice",
        hint="run `reconciler refresh` later to settle them, then plan and apply again",
    )


def _applier(
    store: Store, session: _Session, options: ApplyOptions | RefreshOptions
) -> engine.Applier:
    settings = ApplySettings()
    if isinstance(options, ApplyOptions) and options.parallel:
        settings = replace(settings, parallel=options.parallel)
    task_timeout = options.task_timeout or session.task_timeout
    if task_timeout is not None:
        settings = replace(settings, task_timeout=task_timeout)
    return engine.Applier(
        store,
        session.client,
        settings=settings,
        progress=_progress(options.fmt),
        stop=session.stop,
        sleep=session.stop.sleep,
    )


def _show_text(plan_: Plan, options: ApplyOptions, now: dt.datetime) -> None:
    """The plan as text before a text-format apply (the JSON report stands alone)."""
    if options.fmt is ReportFormat.TEXT:
        shown = commands.render_plan(
            plan_, fmt=PlanFormat.TEXT, show_batches=options.show_batches, now=now
        )
        sys.stdout.write(shown)


def _apply_saved(
    options: ApplyOptions, saved: Plan, *, now: dt.datetime, loaded: Callable[[], None]
) -> int:
    """Apply the plan made again now, if it is exactly the saved one (see ``integrity``)."""
    planfile.refuse_redacted(saved)
    path = saved_plan.input_path(saved, options.path, options.target)
    store = saved_plan.store(saved, path, options.common, options.target)
    cache = commands.parse_cache(path, options.common.cache, common=options.common)
    desired = commands.load(path, commands.today(options.at, now), cache=cache)
    at = saved_plan.apply_date(desired, now)
    connect = cloudidentity_connect(os.environ)
    with _client_and_lock(store, options.common, "apply") as client:
        # The applier reads the state once; the checks and the new plan use that same read.
        applier = _applier(store, client, options)
        loaded()  # the desired and the recorded state: from here on the GC leaves them alone
        exiting.keep(desired, applier)  # a console run leaves them to the OS when it ends
        current = applier.state
        if current.pending:
            raise PlanError(
                "the state has batches of an interrupted apply without recorded results",
                hint="run `reconciler refresh` to settle them, then plan again",
            )
        recorded = current if current.serial else None
        planfile.check_fresh(saved, recorded, desired.digest)
        made = saved_plan.plan_again(
            saved, desired, recorded, store, at=at, allow_disables=options.allow_disables
        )
        commands.flush(cache)  # the desired and the recorded state checked out
        made = saved_plan.with_retries(
            made,
            saved,
            source=provisioning.events_source(connect, []) if options.refresh else None,
            configured=connect is not None,
            desired=desired,
            recorded=recorded,
            report=applier.report,
        )
        made = provenance.annotate(made, path, desired)
        exiting.keep(made)
        _show_text(made, options, now)
        saved_plan.check_guard(made, saved)
        if options.revocations_only:
            commands.check_revocations_only(made)
        report = applier.run(made, source_commit=git.head_commit(path))
        _retry_events(made, applier, report)
    return _finish(report, options.fmt, made)


def _retry_events(plan_: Plan, applier: engine.Applier, report: ApplyReport) -> None:
    # After a stop request or a failure that stopped sending, nothing more is started.
    if plan_.retries and report.interrupted is None and report.error is None:
        provisioning.retry_events(plan_, applier, report, cloudidentity_connect(os.environ))


@contextlib.contextmanager
def _client_and_lock(store: Store, common: Common, operation: str) -> Iterator[_Session]:
    """Check every setting (one missing fails before anything is sent), lock, catch signals."""
    settings = federation.settings_from_env(os.environ)
    cloudidentity_connect(os.environ)  # checked now; opened when events are listed or retried
    task_timeout = task_timeout_from_env(os.environ)
    client = federation.FederationClient(settings)
    try:
        with store.lock(operation, timeout=common.lock_timeout), signals.caught() as stop:
            yield _Session(client=client, stop=stop, task_timeout=task_timeout)
    finally:
        client.close()


def _emit(
    report: ApplyReport, fmt: ReportFormat, plan_: Plan | None = None, *, nothing: bool = False
) -> None:
    """Print the report: JSON (with the state the plan used), or text."""
    if fmt is ReportFormat.JSON:
        # The accounts applied, one line each, laid out as their objects would be, without
        # building them: a 50,000-user report is printed after the last task is DONE.
        applied = jsontext.string_objects(("account", "action"), report.applied)
        document = _report_document(report, applied)
        if plan_ is not None:
            document["state"] = {"location": plan_.state_location, "workspace": plan_.workspace}
        out(jsontext.laid_out(document))
    else:
        if nothing and not report.applied and not report.failed:
            out("Nothing to apply.")
        _print_report(report)


def _finish(
    report: ApplyReport, fmt: ReportFormat, plan_: Plan | None, *, nothing: bool = False
) -> int:
    _emit(report, fmt, plan_, nothing=nothing)
    if report.interrupted is not None:
        raise _interrupted(report, report.interrupted)
    if report.error is not None:
        raise report.error  # said once, with its own hint, instead of once per account
    if not report.ok:
        raise ApplyIncomplete(
            f"apply incomplete: {len(report.failed)} failed, {len(report.unresolved)} unresolved",
            hint="fix what the failures say, then plan and apply again; applied changes are "
            "recorded in the state",
        )
    return EXIT_OK


def _interrupted(report: ApplyReport, name: str) -> Interrupted:
    """The error for a run a signal stopped: what was recorded and what settles the rest."""
    return Interrupted(
        f"interrupted by {name}: nothing more was sent, and what was in flight is recorded "
        "(listed above with `?`)",
        signal_number=signal.Signals[name].value,
        hint="run `reconciler refresh` (or `reconciler apply`): it follows the recorded tasks "
        "and settles any batch in flight, then plan and apply what is left",
    )


def report_json(report: ApplyReport) -> dict[str, Any]:
    """The machine-readable apply report."""
    return _report_document(report, [{"account": a, "action": act} for a, act in report.applied])


def _report_document(report: ApplyReport, applied: object) -> dict[str, Any]:
    """The apply report with ``applied`` as its list of accounts applied."""
    counters = report.counters
    error = report.error
    return {
        "ok": report.ok,
        "applied": applied,
        "failed": [
            {"account": f.account, "action": f.action, "code": f.code, "message": f.message}
            for f in report.failed
        ],
        "unresolved": report.unresolved,
        "notes": report.notes,
        "error": None if error is None else {"message": error.message, "hint": error.hint},
        "interrupted": report.interrupted,
        "counters": {
            "batches_total": counters.batches_total,
            "batches_sent": counters.batches_sent,
            "tasks_done": counters.tasks_done,
            "users_applied": counters.users_applied,
            "users_failed": counters.users_failed,
            "create_task_calls": counters.create_calls,
            "query_task_calls": counters.query_calls,
        },
    }


def _print_report(report: ApplyReport) -> None:
    # Account names may come from a hand-edited state, messages from the API: one line each.
    for account, action in report.applied:
        out(f"  ✓ {action:<7} {printable(account)}")
    for group in report.failure_groups():
        if len(group.failures) == 1:
            [failure] = group.failures
            out(
                f"  ✗ {failure.action:<7} {printable(failure.account)}: {printable(failure.code)} "
                f"{printable(failure.message)}"
            )
            continue
        accounts = [printable(failure.account) for failure in group.failures]
        listed = ", ".join(accounts[:MAX_LISTED])
        if len(accounts) > MAX_LISTED:
            listed += f", … and {len(accounts) - MAX_LISTED} more"
        out(
            f"  ✗ {printable(group.code)} {printable(group.message)}: {len(accounts)} accounts: "
            f"{listed}"
        )
    for message in report.unresolved:
        out(f"  ? {printable(message)}")
    for note in report.notes:
        out(f"  · {printable(note)}")
    counters = report.counters
    out(
        f"Apply {'complete' if report.ok else 'incomplete'}: {len(report.applied)} applied, "
        f"{len(report.failed)} failed; {counters.create_calls} createTask, "
        f"{counters.query_calls} queryTask calls."
    )


def refresh(options: RefreshOptions) -> int:
    """``reconciler refresh``: settle outstanding tasks; update known provisioning events."""
    fmt = options.fmt
    store = commands.store_for(options.path, options.common)
    with memory.long_run() as loaded, _client_and_lock(store, options.common, "refresh") as session:
        applier = _applier(store, session, options)
        loaded()  # from here on the GC leaves the recorded state alone
        exiting.keep(applier)  # a console run leaves it to the OS when it ends
        if applier.state.pending:
            _refuse_unexplained(applier.state, commands.load(options.path), store)
        if fmt is ReportFormat.TEXT:
            current = applier.state if applier.state.serial else None
            out(f"State: {commands.state_words(store, current)}")
        report = applier.resume()
        if report.interrupted is None:
            provisioning.refresh_events(applier, report, cloudidentity_connect(os.environ))
    if (
        fmt is ReportFormat.TEXT
        and not report.applied
        and not report.failed
        and not report.unresolved
    ):
        out("Nothing outstanding: every recorded task has its result.")
    return _finish(report, fmt, None)


def why(options: WhyOptions, *, now: dt.datetime) -> int:
    """``reconciler why ACCOUNT``: YAML entry → roles → planned change → batch → state."""
    path, account = options.path, options.account
    store = commands.store_for(path, options.common)
    made, recorded, desired = commands.make_plan(
        path,
        store,
        when=commands.today(None, now),
        allow_disables=None,
        cache=commands.parse_cache(path, options.common.cache, common=options.common),
    )
    user = desired.users.get(account)
    if user is None and (recorded is None or account not in recorded.accounts):
        raise UsageError(
            f"account {account!r} is neither in the desired state nor in the recorded state",
            hint="`reconciler state list` shows the managed accounts",
        )
    entry = provenance.locate(user.source, path) if user is not None else None
    for line in provenance.explain(account, made, desired, recorded, entry=entry):
        out(line)
    out(f"  state:    {commands.state_words(store, recorded)}")
    return EXIT_OK
