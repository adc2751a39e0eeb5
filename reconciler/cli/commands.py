"""One typed function per CLI command: parse nothing, print results, return an exit code.

Each takes its command's options value (``options``); apply-side commands live in
``apply_commands``; ``main`` dispatches both.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from reconciler.cli.choices import PlanFormat
from reconciler.cli.inputs import (
    AT_ENV,
    base_dir,
    evaluated_at,
    flush,
    load,
    max_bytes,
    out,
    parse_cache,
    seal,
    today,
)
from reconciler.cli.options import Common, ImportOptions
from reconciler.desired import dates
from reconciler.desired.cache import ParseCache
from reconciler.desired.model import DesiredState
from reconciler.errors import (
    EXIT_OK,
    GuardRailBlocked,
    InputError,
    PlanError,
    StateError,
    UsageError,
)
from reconciler.plan import expiry, planfile
from reconciler.plan.model import Plan
from reconciler.render import common, markdown, text
from reconciler.stores import Store, open_store
from reconciler.stores.location import mask
from reconciler.stores.model import AccountRecord, State, utc_now
from reconciler.values import replace

# The shared inputs, re-exported: the command modules use them as ``commands.X``.
__all__ = [
    "AT_ENV",
    "base_dir",
    "evaluated_at",
    "flush",
    "load",
    "max_bytes",
    "out",
    "parse_cache",
    "seal",
    "today",
]


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def store_for(path: Path, common: Common) -> Store:
    """The store selected by --state / RECONCILER_STATE or the default beside ``path``."""
    return open_store(
        common.state,
        base_dir=base_dir(path),
        workspace=common.workspace,
        environ=os.environ,
        check_record=seal(common.cache, what="state check record"),
    )


def command_line(words: Sequence[str], path: Path | None, common: Common | None) -> str:
    """A command to paste as is: ``words``, then the PATH (unless ``.``) and the
    ``--state``/``--workspace`` this run was given, so it acts on the same state (a DSN's
    password shown masked, as everywhere)."""
    line = [shlex.quote(word) for word in words]
    if path is not None and os.path.normpath(path) != ".":
        line.append(shlex.quote(str(path)))
    if common is not None and common.state is not None:
        line += ["--state", shlex.quote(mask(common.state))]
    if common is not None and common.workspace is not None:
        line += ["--workspace", shlex.quote(common.workspace)]
    return " ".join(line)


def workspace_of(store: Store) -> str | None:
    """The store's PostgreSQL workspace; None for a backend without workspaces (a file)."""
    return store.location.workspace


def state_words(store: Store, current: State | None) -> str:
    """``LOCATION (workspace W, lineage L, serial N)``, or that there is no state there."""
    workspace = workspace_of(store)
    facts = [f"workspace {workspace}"] if workspace else []
    if current is None or not current.serial:
        facts.insert(0, "no state yet")
    else:
        facts += [f"lineage {current.lineage}", f"serial {current.serial}"]
    return f"{store.describe()} ({', '.join(facts)})"


# -- plan / show ---------------------------------------------------------------------


def render_plan(
    plan: Plan,
    *,
    fmt: PlanFormat,
    show_batches: bool,
    now: dt.datetime,
    stream: TextIO | None = None,
) -> str:
    """The plan in ``fmt``; ``now`` dates the ages of provisioning events."""
    match fmt:
        case PlanFormat.JSON:
            return planfile.dumps(plan)
        case PlanFormat.MARKDOWN:
            return markdown.render(plan, now=now, show_batches=show_batches)
        case PlanFormat.TEXT:
            color = use_color(stream or sys.stdout)
            return text.render(plan, now=now, color=color, show_batches=show_batches)


def write_atomic(path: Path, content: str, *, mode: int = 0o600) -> None:
    """Write ``content`` to ``path`` via a temp file and rename (no partial file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc


def check_guard(plan: Plan) -> None:
    """Raise GuardRailBlocked when the plan breaks a guard rail."""
    messages = common.guard_messages(plan)
    if messages:
        raise GuardRailBlocked(
            "plan blocked by guard rail: " + "; ".join(messages),
            hint="review the disables; nothing was saved or applied",
        )


def check_revocations_only(plan: Plan) -> None:
    """``apply --revocations-only``: GuardRailBlocked (exit 3) unless every change only takes
    access away (role removals, disables); provisioning retries are allowed. A plan whose
    policy loosened since the last apply needs review whatever its changes are."""
    loosened = common.policy_message(plan)
    if loosened is not None:
        raise GuardRailBlocked(
            f"--revocations-only: {loosened}; nothing was sent",
            hint="a loosened policy goes through a reviewed apply (a pull request and its "
            "plan); run `reconciler plan` to see it, and apply without --revocations-only "
            "only after reviewing it",
        )
    others = [change for change in plan.changes if not change.revokes_only]
    if not others:
        return
    shown = ", ".join(
        f"{c.kind.value} {c.account}"
        + (f" (+{common.roles_text(plan, c.roles_added)})" if c.roles_added else "")
        for c in others[:5]
    )
    more = f" and {len(others) - 5} more" if len(others) > 5 else ""
    raise GuardRailBlocked(
        f"--revocations-only: the plan also grants or changes access ({len(others)} "
        f"change{'s' if len(others) != 1 else ''}: {shown}{more}); nothing was sent",
        hint="changes that grant access go through a reviewed apply (a pull request and "
        "its plan); run without --revocations-only only after reviewing this plan",
    )


def make_plan(
    path: Path,
    store: Store,
    *,
    when: dates.Today,
    allow_disables: int | None,
    events_source: Any = None,
    cache: ParseCache | None = None,
) -> tuple[Plan, State | None, DesiredState]:
    """Load (end dates at ``when``, through ``cache`` if given), read the state, list failed
    events when given a source, and plan."""
    desired = load(path, when, cache=cache)
    # The records take the desired users' strings where equal: one copy of each, not two.
    recorded = store.read(names=desired.users)
    plan = expiry.plan_at(
        desired,
        recorded,
        at=evaluated_at(desired),
        allow_disables=allow_disables,
        events=events_source(desired, recorded) if events_source is not None else (),
        events_refreshed=events_source is not None,
        state_location=store.describe(),
        workspace=workspace_of(store),
    )
    flush(cache)
    return plan, recorded, desired


def with_input_path(plan: Plan, path: Path) -> Plan:
    """``plan`` naming the desired-state path it was made from."""
    return replace(plan, input_path=str(path))


def read_plan(path: Path) -> Plan:
    """Read a saved plan file; PlanError for anything but a readable regular file (a FIFO
    or a device would block or never end)."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise PlanError(
                f"{path} is not a regular file, so it is not a saved plan (a FIFO or a device "
                "would block or never end); nothing was read",
                hint="give the file saved with `reconciler plan --out FILE`",
            )
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read plan {path}: {exc}") from exc
    return planfile.loads(content, where=str(path))


# -- import --------------------------------------------------------------------------


_NAMES_SHOWN = 5  # accounts named in import's output; the rest are counted


def import_accounts(options: ImportOptions) -> int:
    """``reconciler import``: record accounts as adopted; the next plan verifies them.

    The federation API cannot read accounts, so nothing is known of them here: each is
    recorded as adopted (attributes unverified) with the attributes the YAML declares, and
    the next plan adopts it: a MODIFY setting every attribute, which fails when the
    tenant has no such account (apply then records it as absent; the plan after creates it).
    """
    cache = parse_cache(options.path, options.common.cache, common=options.common)
    desired = load(options.path, cache=cache)
    store = store_for(options.path, options.common)
    with store.lock("import", timeout=options.common.lock_timeout):
        current = store.read() or State.empty()
        flush(cache)
        chosen = _to_import(options, desired, current)
        if not chosen:
            out(
                "Nothing to import: every declared account is already in "
                f"{state_words(store, current)}."
            )
            return EXIT_OK
        now = utc_now()
        adopted = dict(current.accounts)
        for account in chosen:
            user = desired.users[account]
            adopted[account] = AccountRecord(
                account=account,
                name=user.name,
                email=user.email,
                role_ids=user.role_ids,
                enabled=user.enabled,
                created_at=now,
                updated_at=now,
                adopted=True,
            )
        written = current.successor(accounts=adopted)
        store.write(written)
    out(f"Imported {len(chosen):,} account(s) into {state_words(store, written)}: {_few(chosen)}")
    out(
        "They are recorded as adopted, attributes unverified (the API cannot read accounts). "
        "The next plan adopts each one: a MODIFY setting every declared attribute. Applying "
        "it checks the account exists; one the tenant does not have is recorded as absent, "
        "and the plan after that creates it."
    )
    return EXIT_OK


def _few(accounts: list[str]) -> str:
    """A few account names and a count of the rest (import --all may adopt 100k)."""
    shown = ", ".join(accounts[:_NAMES_SHOWN])
    rest = len(accounts) - _NAMES_SHOWN
    return f"{shown} and {rest:,} more" if rest > 0 else shown


def _to_import(options: ImportOptions, desired: DesiredState, current: State) -> list[str]:
    """The accounts to adopt: every unmanaged one (--all), or exactly those named."""
    managed = current.accounts
    if options.all_accounts:
        return [a for a in sorted(desired.users) if a not in managed]
    unknown = [a for a in options.accounts if a not in desired.users]
    if unknown:
        raise InputError(
            f"not in the desired state: {', '.join(unknown)}",
            hint="import adopts accounts as the YAML declares them; add them first",
        )
    already = [a for a in options.accounts if a in managed]
    if already:
        raise StateError(
            f"already managed: {', '.join(already)}",
            hint="`reconciler state show ACCOUNT` shows what is recorded",
        )
    return sorted(set(options.accounts))
