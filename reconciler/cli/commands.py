"""One typed function per CLI command: parse nothing, print results, return an exit code.

Apply-side commands live in ``commands_apply.py``; both are dispatched by ``cli.py``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from reconciler.desired import loading, validation
from reconciler.desired.model import DesiredState
from reconciler.errors import (
    EXIT_OK,
    GuardRailBlocked,
    InputError,
    PlanError,
    Problem,
    StateError,
    UsageError,
    ValidationFailed,
)
from reconciler.plan import planfile, planner
from reconciler.plan.model import Plan
from reconciler.render import common, markdown, text
from reconciler.stores import Store, open_store, transfer
from reconciler.stores import model as state_codec
from reconciler.stores.model import AccountRecord, State, utc_now


@dataclass(frozen=True, slots=True, kw_only=True)
class Common:
    """Options every state-touching command shares."""

    state: str | None = None
    workspace: str | None = None
    lock_timeout: float = 0.0


def out(line: str = "", *, stream: TextIO | None = None) -> None:
    """Write a line to stdout (or ``stream``)."""
    (stream or sys.stdout).write(line if line.endswith("\n") else line + "\n")


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def base_dir(path: Path) -> Path:
    """The directory whose ``.reconciler/state.json`` is the default state."""
    return path if path.is_dir() else path.parent


def store_for(path: Path, common: Common) -> Store:
    """The store selected by --state / RECONCILER_STATE or the default beside ``path``."""
    return open_store(common.state, base_dir=base_dir(path), workspace=common.workspace)


def max_bytes() -> int:
    """The per-file size limit (RECONCILER_MAX_FILE_BYTES overrides)."""
    raw = os.environ.get("RECONCILER_MAX_FILE_BYTES")
    if raw is None:
        return loading.DEFAULT_MAX_FILE_BYTES
    try:
        return int(raw)
    except ValueError:
        raise UsageError(
            f"RECONCILER_MAX_FILE_BYTES must be a number of bytes, not {raw!r}"
        ) from None


def load(path: Path) -> DesiredState:
    """Read and validate the desired state (problems printed to stderr by the caller)."""
    return validation.load_desired(path, max_bytes=max_bytes())


# -- validate ------------------------------------------------------------------------


def validate(path: Path, *, fmt: str) -> int:
    """``reconciler validate``: every problem, located; exit 1 if any."""
    if fmt in ("github", "sarif"):
        return _validate_for_review(path, fmt=fmt)
    try:
        desired = load(path)
    except ValidationFailed as failed:
        if fmt == "json":
            out(json.dumps(_problems_json(failed), indent=2))
        else:
            for problem in failed.problems:
                out(problem.render())
        raise
    if fmt == "json":
        out(json.dumps({"valid": True, "problems": [], "users": len(desired.users)}, indent=2))
    else:
        out(
            f"Valid: {len(desired.users)} users, {len(desired.roles)} roles "
            f"in {len(desired.files)} file(s)."
        )
    return EXIT_OK


def _validate_for_review(path: Path, *, fmt: str) -> int:
    """SARIF or GitHub annotations, with paths relative to the repository's top."""
    from reconciler.plan import provenance  # noqa: PLC0415 - git runs only for these formats
    from reconciler.render import findings  # noqa: PLC0415 - only these formats render findings

    def emit(problems: tuple[Problem, ...]) -> None:
        root = provenance.repo_root(path)
        if fmt == "sarif":
            out(json.dumps(findings.sarif(problems, root=root), indent=2, ensure_ascii=False))
        else:
            sys.stdout.write(findings.github(problems, root=root))

    try:
        load(path)
    except ValidationFailed as failed:
        emit(failed.problems)
        raise
    emit(())
    return EXIT_OK


def _problems_json(failed: ValidationFailed) -> dict[str, Any]:
    return {
        "valid": False,
        "problems": [
            {
                "file": p.file,
                "line": p.line,
                "col": p.col,
                "message": p.message,
                "rule": p.rule,
                "path": list(p.path),
            }
            for p in failed.problems
        ],
    }


# -- plan / show ---------------------------------------------------------------------


def render_plan(plan: Plan, *, fmt: str, show_batches: bool, stream: TextIO | None = None) -> str:
    """The plan in ``fmt`` (text, json, markdown)."""
    if fmt == "json":
        return planfile.dumps(plan)
    if fmt == "markdown":
        return markdown.render(plan, show_batches=show_batches)
    return text.render(plan, color=use_color(stream or sys.stdout), show_batches=show_batches)


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


def make_plan(
    path: Path,
    store: Store,
    *,
    allow_disables: int | None,
    events_source: Any = None,
) -> tuple[Plan, State | None, DesiredState]:
    """Load, read the state, list failed events when given a source, and plan."""
    desired = load(path)
    recorded = store.read()
    plan = planner.plan(
        desired,
        recorded,
        allow_disables=allow_disables,
        events=events_source(desired, recorded) if events_source is not None else (),
        events_refreshed=events_source is not None,
    )
    return plan, recorded, desired


def read_plan(path: Path) -> Plan:
    """Read a saved plan file."""
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read plan {path}: {exc}") from exc
    return planfile.loads(content, where=str(path))


# -- state ---------------------------------------------------------------------------


def state_list(path: Path, common: Common) -> int:
    """``reconciler state list``: managed accounts, one per line."""
    current = store_for(path, common).read()
    if current is None:
        out("No state yet.", stream=sys.stderr)
        return EXIT_OK
    for account in sorted(current.accounts):
        record = current.accounts[account]
        out(account if record.enabled else f"{account} (disabled)")
    if current.pending:
        out(
            f"{len(current.pending)} batch(es) awaiting results; run `reconciler refresh`",
            stream=sys.stderr,
        )
    return EXIT_OK


def state_show(path: Path, common: Common, account: str) -> int:
    """``reconciler state show ACCOUNT``."""
    current = store_for(path, common).read()
    if current is None or account not in current.accounts:
        raise StateError(
            f"account {account!r} is not in the recorded state",
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


def state_pull(path: Path, common: Common) -> int:
    """``reconciler state pull``: the state document on stdout."""
    document = transfer.pull(store_for(path, common))
    out(json.dumps(document, indent=1, ensure_ascii=False))
    return EXIT_OK


def state_push(path: Path, common: Common, source: Path, *, force: bool) -> int:
    """``reconciler state push FILE``."""
    try:
        document = json.loads(source.read_bytes())
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read {source} as a JSON state document: {exc}") from exc
    store = store_for(path, common)
    with store.lock("state push", timeout=common.lock_timeout):
        transfer.push(store, document, force=force)
    out(f"Pushed {source} to {store.describe()}.")
    return EXIT_OK


def force_unlock(path: Path, common: Common, lock_id: str) -> int:
    """``reconciler force-unlock LOCK_ID``."""
    store = store_for(path, common)
    store.force_unlock(lock_id)
    out(f"Lock {lock_id} released on {store.describe()}.")
    return EXIT_OK


def import_accounts(path: Path, common: Common, accounts: list[str], *, all_: bool) -> int:
    """``reconciler import``: adopt existing target accounts into the state as declared."""
    desired = load(path)
    if not accounts and not all_:
        raise UsageError("name the accounts to import, or pass --all")
    store = store_for(path, common)
    with store.lock("import", timeout=common.lock_timeout):
        current = store.read() or State.empty()
        managed = current.accounts
        if all_:
            chosen = [a for a in sorted(desired.users) if a not in managed]
        else:
            unknown = [a for a in accounts if a not in desired.users]
            if unknown:
                raise InputError(
                    f"not in the desired state: {', '.join(unknown)}",
                    hint="import adopts accounts as the YAML declares them; add them first",
                )
            already = [a for a in accounts if a in managed]
            if already:
                raise StateError(
                    f"already managed: {', '.join(already)}",
                    hint="`reconciler state show ACCOUNT` shows what is recorded",
                )
            chosen = sorted(set(accounts))
        if not chosen:
            out("Nothing to import: every declared account is already managed.")
            return EXIT_OK
        now = utc_now()
        adopted = dict(managed)
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
            )
        store.write(current.successor(accounts=adopted))
    out(f"Imported {len(chosen)} account(s) into {store.describe()}: {', '.join(chosen)}")
    out("They are recorded as declared; the next plan changes them only when the YAML does.")
    return EXIT_OK
