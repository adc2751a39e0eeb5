"""Commands that talk to the providers: plan (with refresh), show, apply, refresh, why, sandbox."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from reconciler.apply import engine, progress, provisioning
from reconciler.apply.engine import ApplyReport, ApplySettings
from reconciler.cli import commands
from reconciler.cli.commands import Common, out
from reconciler.desired import loading
from reconciler.errors import (
    EXIT_ERROR,
    EXIT_OK,
    ApplyIncomplete,
    PlanError,
    UsageError,
)
from reconciler.plan import planfile, planner, provenance, redaction
from reconciler.plan.model import Plan
from reconciler.providers.federation import client as federation
from reconciler.stores import Store


def _events_source(notes: list[str]) -> provisioning.EventsSource | None:
    """The CloudIdentity refresher, or None (with a note) when it is not configured."""
    return provisioning.events_source(os.environ, notes)


def _redact(plan: Plan, spec: str) -> Plan:
    return redaction.redact(plan, spec) if spec else plan


def plan(args: argparse.Namespace, common: Common) -> int:
    """``reconciler plan``."""
    notes: list[str] = []
    source = _events_source(notes) if args.refresh else None
    if not args.refresh:
        notes.append("provisioning events not refreshed (--refresh=false): planned offline")
    store = commands.store_for(args.path, common)
    made, _, desired = commands.make_plan(
        args.path,
        store,
        allow_disables=args.allow_disables,
        events_source=source,
    )
    made = provenance.annotate(_with_path(made, args.path, notes), args.path, desired)
    shown = _redact(made, args.redact)
    sys.stdout.write(commands.render_plan(shown, fmt=args.format, show_batches=args.show_batches))
    commands.check_guard(made)
    if args.out is not None:
        commands.write_atomic(args.out, planfile.dumps(made))
        if args.format == "text":
            out(
                f"Saved the plan to {args.out}. Apply exactly this plan with: "
                f"reconciler apply {args.out}"
            )
    if args.detailed_exitcode and made.has_changes:
        return 2
    return EXIT_OK


def _with_path(made: Plan, path: Path, notes: list[str]) -> Plan:
    return replace(made, input_path=str(path), notes=(*made.notes, *notes))


def show(args: argparse.Namespace) -> int:
    """``reconciler show FILE``."""
    saved = commands.read_plan(args.file)
    shown = _redact(saved, args.redact)
    sys.stdout.write(commands.render_plan(shown, fmt=args.format, show_batches=args.show_batches))
    return 3 if saved.guard.blocked else EXIT_OK


def _progress(fmt: str) -> engine.Progress:
    if fmt == "json":
        return progress.LineProgress(sys.stderr)
    if sys.stderr.isatty() and "NO_COLOR" not in os.environ:
        return progress.BarProgress(sys.stderr)
    return progress.LineProgress(sys.stderr)


def _federation_client() -> federation.FederationClient:
    return federation.FederationClient(federation.settings_from_env(os.environ))


def _is_plan_file(target: Path) -> bool:
    if not target.is_file():
        return False
    with target.open("rb") as handle:
        head = handle.read(64).lstrip()
    return head.startswith(b"{")


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


def apply(args: argparse.Namespace, common: Common) -> int:
    """``reconciler apply [PLANFILE | PATH]``."""
    settings = ApplySettings(parallel=args.parallel) if args.parallel else ApplySettings()
    if _is_plan_file(args.target):
        return _apply_saved(args, common, settings)
    path = args.target
    notes: list[str] = []
    source = _events_source(notes) if args.refresh else None
    desired = commands.load(path)
    store = commands.store_for(path, common)
    with _client_and_lock(store, common, "apply") as client:
        applier = engine.Applier(store, client, settings=settings, progress=_progress(args.format))
        resumed = applier.resume() if applier.state.pending else None
        events = source(desired, applier.state) if source else ()
        made = planner.plan(
            desired,
            applier.state if applier.state.serial else None,
            allow_disables=args.allow_disables,
            events=events,
            events_refreshed=source is not None,
            input_path=str(path),
        )
        made = provenance.annotate(_with_path(made, path, notes), path, desired)
        if args.format == "text":
            sys.stdout.write(commands.render_plan(made, fmt="text", show_batches=args.show_batches))
        commands.check_guard(made)
        if not made.has_changes:
            report = resumed or applier.report
            return _finish(report, args.format, made, nothing=True)
        if not _confirm(made, args.auto_approve):
            out("Apply cancelled.")
            return EXIT_ERROR
        report = applier.run(made, source_commit=provenance.head_commit(path))
        _retry_events(made, applier, report)
    return _finish(report, args.format, made)


def _apply_saved(args: argparse.Namespace, common: Common, settings: ApplySettings) -> int:
    saved = commands.read_plan(args.target)
    path = Path(saved.input_path or ".")
    raw = loading.read_files(path, max_bytes=commands.max_bytes())
    store = commands.store_for(path, common)
    commands.check_guard(saved)
    with _client_and_lock(store, common, "apply") as client:
        # The applier reads the state once; the checks use that same read.
        applier = engine.Applier(store, client, settings=settings, progress=_progress(args.format))
        current = applier.state
        if current.pending:
            raise PlanError(
                "the state has batches of an interrupted apply without recorded results",
                hint="run `reconciler refresh` to settle them, then plan again",
            )
        planfile.check_fresh(saved, current if current.serial else None, loading.digest(raw))
        if args.format == "text":
            sys.stdout.write(
                commands.render_plan(saved, fmt="text", show_batches=args.show_batches)
            )
        report = applier.run(saved, source_commit=provenance.head_commit(path))
        _retry_events(saved, applier, report)
    return _finish(report, args.format, saved)


def _retry_events(plan_: Plan, applier: engine.Applier, report: ApplyReport) -> None:
    if plan_.retries:
        provisioning.retry_events(plan_, applier, report, os.environ)


@contextlib.contextmanager
def _client_and_lock(
    store: Store, common: Common, operation: str
) -> Iterator[federation.FederationClient]:
    """Open the federation client (a missing setting fails before the lock), then lock."""
    client = _federation_client()
    try:
        with store.lock(operation, timeout=common.lock_timeout):
            yield client
    finally:
        client.close()


def _finish(report: ApplyReport, fmt: str, plan_: Plan | None, *, nothing: bool = False) -> int:
    if fmt == "json":
        out(json.dumps(report_json(report), indent=2, ensure_ascii=False))
    else:
        if nothing and not report.applied and not report.failed:
            out("Nothing to apply.")
        _print_report(report)
    if not report.ok:
        raise ApplyIncomplete(
            f"apply incomplete: {len(report.failed)} failed, {len(report.unresolved)} unresolved",
            hint="fix what the failures say, then plan and apply again; applied changes are "
            "recorded in the state",
        )
    return EXIT_OK


def report_json(report: ApplyReport) -> dict[str, Any]:
    """The machine-readable apply report."""
    counters = report.counters
    return {
        "ok": report.ok,
        "applied": [{"account": a, "action": act} for a, act in report.applied],
        "failed": [
            {"account": f.account, "action": f.action, "code": f.code, "message": f.message}
            for f in report.failed
        ],
        "unresolved": report.unresolved,
        "notes": report.notes,
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
    for account, action in report.applied:
        out(f"  ✓ {action:<7} {account}")
    for failure in report.failed:
        out(f"  ✗ {failure.action:<7} {failure.account}: {failure.code} {failure.message}")
    for message in report.unresolved:
        out(f"  ? {message}")
    for note in report.notes:
        out(f"  · {note}")
    counters = report.counters
    out(
        f"Apply {'complete' if report.ok else 'incomplete'}: {len(report.applied)} applied, "
        f"{len(report.failed)} failed; {counters.create_calls} createTask, "
        f"{counters.query_calls} queryTask calls."
    )


def refresh(path: Path, common: Common, *, fmt: str) -> int:
    """``reconciler refresh``: settle outstanding tasks; update known provisioning events."""
    store = commands.store_for(path, common)
    with _client_and_lock(store, common, "refresh") as client:
        applier = engine.Applier(store, client, progress=_progress(fmt))
        report = applier.resume()
        provisioning.refresh_events(applier, report, os.environ)
    if fmt == "text" and not report.applied and not report.failed and not report.unresolved:
        out("Nothing outstanding: every recorded task has its result.")
    return _finish(report, fmt, None)


def why(args: argparse.Namespace, common: Common) -> int:
    """``reconciler why ACCOUNT``: YAML entry → roles → planned change → batch → state."""
    store = commands.store_for(args.path, common)
    made, recorded, desired = commands.make_plan(args.path, store, allow_disables=None)
    user = desired.users.get(args.account)
    if user is None and (recorded is None or args.account not in recorded.accounts):
        raise UsageError(
            f"account {args.account!r} is neither in the desired state nor in the recorded state",
            hint="`reconciler state list` shows the managed accounts",
        )
    entry = provenance.locate(user.source, args.path) if user is not None else None
    for line in provenance.explain(args.account, made, desired, recorded, entry=entry):
        out(line)
    return EXIT_OK


def sandbox(host: str, port: int, roles_from: Path | None = None) -> int:
    """``reconciler sandbox``: serve the fake APIs until interrupted."""
    from reconciler.sandbox import app  # noqa: PLC0415 - the sandbox loads only for this command

    role_ids: list[str] = []
    if roles_from is not None:
        role_ids = [role.id for role in commands.load(roles_from).roles.values()]
    box = app.build(role_ids=role_ids)
    server = app.serve(box, host, port)
    out(f"reconciler sandbox listening on {server.url}", stream=sys.stdout)
    out(f"  RECONCILER_FEDERATION_URL={server.url}")
    out(f"  RECONCILER_FEDERATION_APP_KEY={app.SANDBOX_APP_KEY}")
    out("  RECONCILER_FEDERATION_APP_SECRET=<the sandbox secret, see README>")
    out(f"  RECONCILER_CLOUDIDENTITY_URL={server.url}")
    out(f"  VOLCENGINE_ACCESS_KEY={app.SANDBOX_ACCESS_KEY}")
    out(f"  roles seeded: {len(role_ids)}; control endpoints under {server.url}/_sandbox/")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return EXIT_OK
