"""``reconciler state diff A B``, and the summary ``state push --force`` shows first.

A and B are each a state location, read-only: a path (a state file, or a document saved
by ``state pull``), a ``postgresql://`` URL (``?workspace=NAME`` picks the workspace), or
``workspace:NAME`` — that workspace of the PostgreSQL state ``--state`` or
``RECONCILER_STATE`` names, so a DSN with a password need not be typed twice. A location
that holds no state is an error, never an empty side: a typo must not read as "everything
was removed". Locations are shown with their passwords masked.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from reconciler.cli.choices import ReportFormat
from reconciler.cli.commands import out
from reconciler.cli.options import StateDiffOptions
from reconciler.errors import EXIT_CHANGES, EXIT_OK, ConfigError, StateError
from reconciler.stores import STATE_ENV, Store, comparing, open_store
from reconciler.stores.location import Backend, classify
from reconciler.stores.model import State

WORKSPACE_PREFIX = "workspace:"
LISTED = 20  # accounts named per kind in text; --format json names them all
_DETAILED = 5  # changed accounts whose differences are spelled out in a push summary


def state_diff(options: StateDiffOptions) -> int:
    """``reconciler state diff A B``: 0 the same (or without --detailed-exitcode), 2 not."""
    left_store, left = _read(options.left, options.state)
    right_store, right = _read(options.right, options.state)
    found = comparing.compare(left, right)
    if options.fmt is ReportFormat.JSON:
        out(json.dumps(_json(found, left_store, right_store), indent=2, ensure_ascii=False))
    else:
        out(f"A: {_version(left_store, left)}")
        out(f"B: {_version(right_store, right)}")
        for line in _text(found, listed=LISTED, detailed=LISTED):
            out(line)
    if options.detailed_exitcode and not found.same:
        return EXIT_CHANGES
    return EXIT_OK


def _read(operand: str, state: str | None) -> tuple[Store, State]:
    """The store an operand names, and its state (StateError when it holds none)."""
    workspace = None
    location = operand
    if operand.startswith(WORKSPACE_PREFIX):
        workspace = operand[len(WORKSPACE_PREFIX) :]
        location = _dsn(state, operand)
        if not workspace:
            raise ConfigError(
                f"{operand}: no workspace named after {WORKSPACE_PREFIX}",
                hint="write workspace:NAME, e.g. reconciler state diff workspace:staging "
                "workspace:prod",
            )
    _refuse_special_file(location)
    # Read only: no check record (stores.checked) is written beside a file compared.
    store = open_store(
        location, base_dir=Path.cwd(), workspace=workspace, environ=os.environ, check_record=None
    )
    current = store.read()
    if current is None:
        raise StateError(
            f"{store.location.absent()}: nothing to compare",
            hint="name a state file, a file from `reconciler state pull`, a postgresql:// "
            "URL (?workspace=NAME) or workspace:NAME; `reconciler state list --state "
            "LOCATION` shows what a location holds",
        )
    return store, current


def _refuse_special_file(location: str) -> None:
    """ConfigError when ``location`` is a path to something other than a file: a FIFO
    would block the read forever, a folder or a device holds no state."""
    try:
        mode = os.stat(location).st_mode  # through a symlink: a symlinked state is read so
    except (OSError, ValueError):
        return  # no such file, or a URL: the store says what it is
    if not stat.S_ISREG(mode):
        what = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "not a regular file"
        raise ConfigError(
            f"{location} is {what}: not a state; nothing was compared",
            hint="save the state first, e.g. reconciler state pull --state LOCATION > a.json; "
            "then reconciler state diff a.json B",
        )


def _dsn(state: str | None, operand: str) -> str:
    """The PostgreSQL URL a ``workspace:NAME`` operand refers to."""
    source = "--state" if state is not None else STATE_ENV
    location = state if state is not None else os.environ.get(STATE_ENV)
    if location is None or classify(location, source=source) is not Backend.POSTGRES:
        raise ConfigError(
            f"{operand} names a workspace of the PostgreSQL state, but neither --state nor "
            f"{STATE_ENV} is a postgresql:// URL",
            hint="give the URL once: reconciler state diff workspace:staging workspace:prod "
            "--state 'postgresql://user@host/db'",
        )
    return location


def _version(store: Store, state: State) -> str:
    return (
        f"{store.location.named()}: lineage {state.lineage}, serial {state.serial}, "
        f"{len(state.accounts)} account(s)"
    )


def _few(names: tuple[str, ...], listed: int) -> str:
    shown = ", ".join(names[:listed])
    return shown + (f" and {len(names) - listed} more" if len(names) > listed else "")


def _text(found: comparing.StateComparison, *, listed: int, detailed: int) -> list[str]:
    """The differences as lines: versions, accounts (changed ones spelled out), the rest."""
    left, right = found.left, found.right
    if found.same:
        return ["No differences: the same lineage, serial, accounts, batches, events and policy."]
    lines = []
    if left.lineage != right.lineage:
        lines.append(f"lineage: {left.lineage} (A) → {right.lineage} (B): another state")
    if left.serial != right.serial:
        lines.append(f"serial: {left.serial} (A) → {right.serial} (B)")
    accounts = found.accounts
    if accounts.removed:
        lines.append(f"- {len(accounts.removed)} only in A: {_few(accounts.removed, listed)}")
    if accounts.added:
        lines.append(f"+ {len(accounts.added)} only in B: {_few(accounts.added, listed)}")
    if accounts.changed:
        lines.append(f"~ {len(accounts.changed)} changed: {_few(accounts.changed, listed)}")
        for account in accounts.changed[:detailed]:
            lines.append(f"  ~ {account}")
            lines.extend(f"      {d.render()}" for d in found.account_differences(account))
    for what, keyed in (("batch(es) awaiting results", found.pending), ("event(s)", found.events)):
        if not keyed.same:
            counts = keyed.counts()
            lines.append(
                f"{what}: {counts['removed']} only in A, {counts['added']} only in B, "
                f"{counts['changed']} changed"
            )
    policy = found.policy_differences()
    if policy:
        lines.append("policy recorded at the last apply differs:")
        lines.extend(f"      {d.render()}" for d in policy)
    lines.append(
        f"Summary: {len(accounts.removed)} account(s) only in A, {len(accounts.added)} only "
        f"in B, {len(accounts.changed)} changed."
    )
    return lines


def _json(found: comparing.StateComparison, left: Store, right: Store) -> dict[str, Any]:
    def side(store: Store, state: State) -> dict[str, Any]:
        return {
            "location": store.location.describe(),
            "workspace": store.location.workspace,
            "lineage": state.lineage,
            "serial": state.serial,
            "accounts": len(state.accounts),
        }

    accounts = found.accounts
    return {
        "same": found.same,
        "a": side(left, found.left),
        "b": side(right, found.right),
        "accounts": {
            "only_in_a": list(accounts.removed),
            "only_in_b": list(accounts.added),
            "changed": [
                {
                    "account": account,
                    "differences": [
                        {"path": d.path, "a": d.left, "b": d.right}
                        for d in found.account_differences(account)
                    ],
                }
                for account in accounts.changed
            ],
        },
        "pending": _keyed_json(found.pending),
        "events": _keyed_json(found.events),
        "policy": [{"path": d.path, "a": d.left, "b": d.right} for d in found.policy_differences()],
    }


def _keyed_json(keyed: comparing.Keyed) -> dict[str, list[str]]:
    return {
        "only_in_a": list(keyed.removed),
        "only_in_b": list(keyed.added),
        "changed": list(keyed.changed),
    }


def overwrite_summary(store: Store, current: State, pushed: State) -> list[str]:
    """What ``state push --force`` replaces: the stored state (A) by the document (B)."""
    found = comparing.compare(current, pushed)
    lines = [
        f"state push --force replaces the state at {store.location.named()}:",
        f"  stored (A):   lineage {current.lineage}, serial {current.serial}, "
        f"{len(current.accounts)} account(s)",
        f"  document (B): lineage {pushed.lineage}, serial {pushed.serial}, "
        f"{len(pushed.accounts)} account(s)",
    ]
    lines.extend(f"  {line}" for line in _text(found, listed=LISTED, detailed=_DETAILED))
    if current.pending:
        lines.append(
            f"  warning: the stored state has {len(current.pending)} batch(es) of an "
            "interrupted apply awaiting results; replacing it forgets them"
        )
    return lines


def write_lines(lines: list[str]) -> None:
    """Lines on stdout, flushed (a question may follow)."""
    for line in lines:
        out(line)
    sys.stdout.flush()
