"""The state commands: ``state list|show|pull|push|rm`` and ``force-unlock``.

Each names the state it used — location (password masked), workspace, lineage, serial —
on stderr, so stdout stays the list or the document; a state that does not exist is
said loudly, never shown as an empty list and left at that.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import TextIO

from reconciler.cli import state_diff
from reconciler.cli.commands import command_line, flush, max_bytes, out, parse_cache, store_for
from reconciler.cli.options import (
    CacheOptions,
    ForceUnlockOptions,
    StateListOptions,
    StatePullOptions,
    StatePushOptions,
    StateRmOptions,
    StateShowOptions,
)
from reconciler.desired import validation
from reconciler.errors import (
    EXIT_ERROR,
    EXIT_OK,
    InputError,
    StateConflict,
    StateError,
    UsageError,
)
from reconciler.stores import LockInfo, Store, decoding, transfer
from reconciler.stores import model as state_codec
from reconciler.stores.model import State

_WHERE_HINT = "if a state was expected here, check --state / RECONCILER_STATE and --workspace"


StateOptions = (
    StateListOptions | StateShowOptions | StatePullOptions | StatePushOptions | StateRmOptions
)


def run(options: StateOptions) -> int:
    """Run one ``state`` subcommand."""
    match options:
        case StateListOptions():
            return state_list(options)
        case StateShowOptions():
            return state_show(options)
        case StatePullOptions():
            return state_pull(options)
        case StatePushOptions():
            return state_push(options)
        case StateRmOptions():
            return state_rm(options)


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


def state_push(options: StatePushOptions, *, stdin: TextIO | None = None) -> int:
    """``reconciler state push FILE``: under the lock, by the push rules (``transfer``).

    ``--force`` first shows what it replaces (accounts only in the stored state, only in
    the document, changed; lineage and serial), and on a terminal asks unless ``--yes``.
    Without a terminal it goes on: ``--force`` is the consent a pipeline gives.
    """
    source, common = options.file, options.common
    try:
        # NaN and the infinities are not JSON: a pushed state holds none (decoding.NotJson).
        raw = source.read_bytes()
        document = json.loads(raw, parse_constant=decoding.refuse_constant)
    except (OSError, ValueError) as exc:
        raise StateError(
            f"cannot read {source} as a JSON state document: {exc}",
            hint="push a file written by `reconciler state pull`",
        ) from exc
    if decoding.may_hold_surrogates(raw) and decoding.holds_surrogates(document):
        raise StateError(
            f"cannot push {source}: its text holds a lone surrogate (U+D800 to U+DFFF), "
            "which is not Unicode and no reconciler writes",
            hint="push a file written by `reconciler state pull`",
        )
    store = store_for(options.path, common)
    terminal = stdin or sys.stdin
    asking = options.force and not options.yes and terminal.isatty()
    asked: State | None = None
    if asking:
        pushed = transfer.parse(document)
        asked = store.read()
        if asked is not None:
            state_diff.write_lines(state_diff.overwrite_summary(store, asked, pushed))
            if not _push_confirmed(terminal):
                out("State push cancelled.")
                return EXIT_ERROR
    with store.lock("state push", timeout=common.lock_timeout):
        if options.force:
            current = store.read()
            if asking:
                # Nothing to replace was not asked about: a state written since is.
                _unchanged_since_asked(store, asked, current)
            elif current is not None:
                summary = state_diff.overwrite_summary(store, current, transfer.parse(document))
                state_diff.write_lines(summary)
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


def _push_confirmed(stdin: TextIO) -> bool:
    sys.stdout.write("Only 'yes' will be accepted to confirm: ")
    sys.stdout.flush()
    return stdin.readline().strip() == "yes"


def _unchanged_since_asked(store: Store, asked: State | None, current: State | None) -> None:
    """StateConflict when the state moved while a person read what it would replace (or
    was written since it was found empty, when there was nothing to ask about)."""
    if _version(asked) != _version(current):
        when = "while you were asked" if asked is not None else "since it was read"
        raise StateConflict(
            f"the state at {store.location.named()} changed {when} (it was "
            f"{_named(asked)}, now {_named(current)}); nothing was written",
            hint="run the push again to see what it would replace now",
        )


def _version(state: State | None) -> tuple[str, int] | None:
    return None if state is None else (state.lineage, state.serial)


def _named(state: State | None) -> str:
    return "empty" if state is None else f"lineage {state.lineage} serial {state.serial}"


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
                + _unlock(holder.lock_id, options),
            )
        if not _confirmed(store, holder, stdin or sys.stdin, options):
            out("Force-unlock cancelled.")
            return EXIT_ERROR
    store.force_unlock(options.lock_id)
    out(f"Lock {options.lock_id} released on {store.location.named()}.")
    return EXIT_OK


def _unlock(lock_id: str, options: ForceUnlockOptions) -> str:
    """The forced unlock of the same state, to paste as is."""
    words = ["reconciler", "force-unlock", lock_id]
    return command_line(words, options.path, options.common) + " --force"


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


def _confirmed(store: Store, holder: LockInfo, stdin: TextIO, options: ForceUnlockOptions) -> bool:
    """Ask on the terminal, as Terraform does; refuse (with the --force hint) without one."""
    if not stdin.isatty():
        raise UsageError(
            "force-unlock needs confirmation, and there is no terminal to ask on",
            hint="make sure its holder is gone, then add --force: "
            + _unlock(holder.lock_id, options),
        )
    sys.stdout.write(
        f"Do you really want to force-unlock the state at {store.location.named()}?\n"
        f"  {holder.describe()}\n"
        "If that run is still going, it stops at its next state write or createTask, and "
        "another run may start at once.\nOnly 'yes' will be accepted to confirm: "
    )
    sys.stdout.flush()
    return stdin.readline().strip() == "yes"


def state_rm(options: StateRmOptions, *, stdin: TextIO | None = None) -> int:
    """``reconciler state rm --account NAME…``: stop managing accounts, never disabling them.

    Checked before asking and again under the lock (the state may move while a person
    reads the question): every account must be in the state, none in a batch of an
    interrupted apply (forgetting it would lose what that batch did). The write is fenced
    like every write under the lock.
    """
    accounts = tuple(dict.fromkeys(options.accounts))
    store = store_for(options.path, options.common)
    _removable(store, _read(store), accounts)
    if not options.force and not _rm_confirmed(store, accounts, stdin or sys.stdin):
        out("State rm cancelled.")
        return EXIT_ERROR
    with store.lock("state rm", timeout=options.common.lock_timeout):
        current = store.read()
        if current is None:
            raise StateError(store.location.absent(), hint=_WHERE_HINT)
        _removable(store, current, accounts)
        kept = {a: r for a, r in current.accounts.items() if a not in accounts}
        written = current.successor(accounts=kept)
        store.write(written)
    out(
        f"Removed {len(accounts)} account(s) from the state at {store.location.named()} "
        f"(lineage {written.lineage}, serial {written.serial}): {', '.join(accounts)}. "
        "Nothing was sent: they stay as they are on the tenant, and reconciler no longer "
        "manages them."
    )
    for line in _still_declared(options.path, accounts, options.common.cache):
        out(line, stream=sys.stderr)
    return EXIT_OK


def _removable(store: Store, current: State, accounts: tuple[str, ...]) -> None:
    """StateError unless every account is in ``current`` and none awaits a batch's result."""
    unknown = [a for a in accounts if a not in current.accounts]
    if unknown:
        raise StateError(
            f"not in the state at {store.location.named()}: {', '.join(unknown)}; "
            "nothing was removed",
            hint="`reconciler state list` shows the managed accounts",
        )
    waiting = {
        entry.account: batch.batch_id
        for batch in current.pending
        for entry in batch.entries
        if entry.account in accounts
    }
    if waiting:
        named = ", ".join(f"{a} (batch {b})" for a, b in sorted(waiting.items()))
        raise StateError(
            f"cannot remove {named}: a batch of an interrupted apply holds a change of it "
            "without a recorded result, and forgetting the account would lose what that "
            "batch did; nothing was removed",
            hint="run `reconciler refresh` to settle the batch, then `reconciler state rm` again",
        )


def _rm_confirmed(store: Store, accounts: tuple[str, ...], stdin: TextIO) -> bool:
    """Ask on the terminal; refuse (with the --force hint) without one."""
    if not stdin.isatty():
        raise UsageError(
            "state rm needs confirmation, and there is no terminal to ask on",
            hint="check the accounts, then add --force",
        )
    sys.stdout.write(
        f"Stop managing {', '.join(accounts)} in the state at {store.location.named()}?\n"
        "They are not disabled; reconciler forgets them (a later plan would create one that "
        "is still declared).\nOnly 'yes' will be accepted to confirm: "
    )
    sys.stdout.flush()
    return stdin.readline().strip() == "yes"


def _still_declared(path: Path, accounts: tuple[str, ...], cache: CacheOptions) -> list[str]:
    """Warnings for removed accounts the desired state still declares."""
    try:
        parsed = parse_cache(path, cache)
        desired = validation.load_desired(path, max_bytes=max_bytes(), cache=parsed)
        flush(parsed)
    except InputError as exc:
        return [
            f"warning: could not check whether the desired state at {path} still declares "
            f"them ({exc.message}): remove them there before the next apply"
        ]
    return [
        f"warning: {account} is still declared in the desired state "
        f"({desired.users[account].source.render()}): remove it there before the next apply, "
        "or the plan creates it again (which the API refuses for an account that exists)"
        for account in accounts
        if account in desired.users
    ]
