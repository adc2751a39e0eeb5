"""The state commands: ``state list|show|pull|push`` and ``force-unlock``.

Each names the state it used — location (password masked), workspace, lineage, serial —
on stderr, so stdout stays the list or the document; a state that does not exist is
said loudly, never shown as an empty list and left at that.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import TextIO

from reconciler.cli.commands import out, store_for
from reconciler.cli.options import (
    ForceUnlockOptions,
    StateListOptions,
    StatePullOptions,
    StatePushOptions,
    StateShowOptions,
)
from reconciler.errors import EXIT_ERROR, EXIT_OK, StateError, UsageError
from reconciler.stores import LockInfo, Store, transfer
from reconciler.stores import model as state_codec
from reconciler.stores.model import State

_WHERE_HINT = "if a state was expected here, check --state / RECONCILER_STATE and --workspace"


def _announce(store: Store, state: State, verb: str = "State at") -> None:
    """Name the state on stderr: where, and which version of it."""
    out(
        f"{verb} {store.location.named()}: lineage {state.lineage}, serial {state.serial}, "
        f"{len(state.accounts)} account(s).",
        stream=sys.stderr,
    )


def _read(store: Store) -> State:
    """The stored state, announced; StateError naming the location when there is none."""
    current = store.read()
    if current is None:
        raise StateError(store.location.absent(), hint=_WHERE_HINT)
    _announce(store, current)
    return current


def state_list(options: StateListOptions) -> int:
    """``reconciler state list``: managed accounts, one per line (where from: on stderr)."""
    store = store_for(options.path, options.common)
    current = store.read()
    if current is None:
        out(f"warning: {store.location.absent()}: nothing was applied here", stream=sys.stderr)
        out(f"hint: {_WHERE_HINT}", stream=sys.stderr)
        return EXIT_OK
    _announce(store, current)
    for account in sorted(current.accounts):
        record = current.accounts[account]
        out(account if record.enabled else f"{account} (disabled)")
    if current.pending:
        out(
            f"{len(current.pending)} batch(es) awaiting results; run `reconciler refresh`",
            stream=sys.stderr,
        )
    return EXIT_OK


def state_show(options: StateShowOptions) -> int:
    """``reconciler state show ACCOUNT``."""
    account = options.account
    store = store_for(options.path, options.common)
    current = _read(store)
    if account not in current.accounts:
        raise StateError(
            f"account {account!r} is not in the state at {store.location.named()}",
            hint="`reconciler state list` shows the managed accounts",
        )
    record = current.accounts[account]
    document = {
        "account": account,
        **state_codec.to_json(
            State(lineage=current.lineage, serial=current.serial, accounts={account: record})
        )["accounts"][account],
    }
    out(json.dumps(document, indent=2, ensure_ascii=False))
    return EXIT_OK


def state_pull(options: StatePullOptions) -> int:
    """``reconciler state pull``: the state document on stdout."""
    store = store_for(options.path, options.common)
    document = transfer.pull(store)
    out(json.dumps(document, indent=1, ensure_ascii=False))
    out(
        f"Pulled the state at {store.location.named()}: lineage {document['lineage']}, "
        f"serial {document['serial']}.",
        stream=sys.stderr,
    )
    return EXIT_OK


def state_push(options: StatePushOptions) -> int:
    """``reconciler state push FILE``: under the lock, by the push rules (``transfer``)."""
    source, common = options.file, options.common
    try:
        document = json.loads(source.read_bytes())
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read {source} as a JSON state document: {exc}") from exc
    store = store_for(options.path, common)
    with store.lock("state push", timeout=common.lock_timeout):
        done = transfer.push(store, document, force=options.force)
    written, replaced = done.written, done.replaced
    before = (
        f"replacing lineage {replaced.lineage} serial {replaced.serial}"
        if replaced is not None
        else "it was empty"
    )
    out(
        f"Pushed {source} to {store.location.named()}: lineage {written.lineage}, "
        f"serial {written.serial} ({before})."
    )
    return EXIT_OK


def force_unlock(options: ForceUnlockOptions, *, stdin: TextIO | None = None) -> int:
    """``reconciler force-unlock LOCK_ID``: never a live local holder's, asked on a terminal."""
    store = store_for(options.path, options.common)
    holder = store.holder()
    # A wrong id or no holder at all: the store's own error says so, nothing to confirm.
    if holder is not None and holder.lock_id == options.lock_id and not options.force:
        if running_here(holder):
            raise StateError(
                f"{holder.describe()}: that process is still running on this host; "
                "unlocking would let a second run write the state and send changes beside it",
                hint=f"let it finish or stop it (kill {holder.pid}); if it is truly stuck: "
                f"reconciler force-unlock {holder.lock_id} [PATH] --force",
            )
        if not _confirmed(store, holder, stdin or sys.stdin):
            out("Force-unlock cancelled.")
            return EXIT_ERROR
    store.force_unlock(options.lock_id)
    out(f"Lock {options.lock_id} released on {store.location.named()}.")
    return EXIT_OK


def running_here(holder: LockInfo) -> bool:
    """Whether ``holder`` is a process of this host that is still running."""
    if holder.host != socket.gethostname() or holder.pid <= 0:
        return False
    try:
        os.kill(holder.pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's process
    return True


def _confirmed(store: Store, holder: LockInfo, stdin: TextIO) -> bool:
    """Ask on the terminal, as Terraform does; refuse (with the --force hint) without one."""
    if not stdin.isatty():
        raise UsageError(
            "force-unlock needs confirmation, and there is no terminal to ask on",
            hint="make sure its holder is gone, then add --force: "
            f"reconciler force-unlock {holder.lock_id} [PATH] --force",
        )
    sys.stdout.write(
        f"Do you really want to force-unlock the state at {store.location.named()}?\n"
        f"  {holder.describe()}\n"
        "If that run is still going, it stops at its next state write or createTask, and "
        "another run may start at once.\nOnly 'yes' will be accepted to confirm: "
    )
    sys.stdout.flush()
    return stdin.readline().strip() == "yes"
