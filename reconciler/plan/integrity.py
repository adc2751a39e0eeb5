"""A saved plan is a proof, not a command: apply makes the plan again and compares.

What apply sends and records comes from the plan it makes again, at apply time, from the
desired input and the state the saved plan names. The saved plan only proves what was
reviewed: its changes, exactly as written in the file (every field, ``wire`` included,
``source`` aside), must be the changes planned again, or apply refuses naming the first
difference. Everything else in the file (summary, guard, access, batches, roles, notes)
is derived from the changes or from the policy and is never read by apply.

Provisioning retries are checked the same way against a fresh listing: an event of the
saved plan is retried only if it is still failed and still decided "retry".
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from reconciler.desired.model import DesiredState
from reconciler.errors import PlanError, StalePlan
from reconciler.plan import expiry, planfile
from reconciler.plan.model import Decision, EventDecision, Plan
from reconciler.stores import comparing
from reconciler.stores.model import State

_SHOWN = 120  # characters of a value shown in a difference
_ENDS_SHOWN = 5  # end dates named in a stale-by-date refusal; the rest are counted


def replan(
    saved: Plan,
    desired: DesiredState,
    recorded: State | None,
    *,
    at: dt.date,
    against: str,
    **options: Any,
) -> Plan:
    """The plan made again at ``at``, if its changes are exactly those of ``saved``.

    When they differ only because an end date passed between the saved plan's date and
    ``at`` (planned again at the saved date, the changes are the saved ones), StalePlan
    says so in those words; any other difference is refused by :func:`verify`.
    ``options`` are the planner's.
    """
    made = expiry.plan_at(desired, recorded, at=at, **options)
    found = difference(saved, made)
    if found is None:
        return made
    if saved.at is not None and saved.at != at:
        then = expiry.plan_at(desired, recorded, at=saved.at, **options)
        ended = expiry.ended_between(desired, saved.at, at)
        if ended and difference(saved, then) is None:
            raise StalePlan(_passed(saved.at, at, ended), hint=_STALE_HINT)
    return raise_different(found, against=against)


_STALE_HINT = (
    "plan again (`reconciler plan --out FILE`) and review the new plan; the scheduled "
    "`reconciler apply --revocations-only` run carries out end dates without a review"
)


def _passed(made_at: dt.date, at: dt.date, ended: tuple[expiry.Ended, ...]) -> str:
    """Why a saved plan is stale by date: which end dates lie between its date and ``at``."""
    named = ", ".join(expiry.describe(e) for e in ended[:_ENDS_SHOWN])
    if len(ended) > _ENDS_SHOWN:
        named += f" and {len(ended) - _ENDS_SHOWN} more"
    what = expiry.counted(ended)
    if made_at < at:
        return (
            f"stale plan: {what} expired since the plan was made ({made_at} → {at}): "
            f"{named}; nothing was sent"
        )
    return (
        f"stale plan: it was made for {made_at}, a later date than this apply's {at}, and "
        f"{what} it carries out {'has' if len(ended) == 1 else 'have'} not ended yet: "
        f"{named}; nothing was sent"
    )


def verify(saved: Plan, derived: Plan, *, against: str) -> None:
    """Refuse ``saved`` unless its changes are exactly those of ``derived``.

    ``against`` says what ``derived`` was made from, for the message.
    """
    found = difference(saved, derived)
    if found is not None:
        raise_different(found, against=against)


def difference(saved: Plan, derived: Plan) -> str | None:
    """The first difference between the changes of ``saved`` (as written) and ``derived``."""
    written = saved.extra.get("changes")
    if written is None:  # a plan value that was never a file: compare what it holds
        written = tuple(planfile.change_json(change) for change in saved.changes)
    planned = [planfile.change_json(change) for change in derived.changes]
    if planfile.digest(written) == planfile.digest(planned):
        return None  # canonical JSON, so `1` is not `true`: identical, without walking 100k
    # As the file would hold them: JSON types only (a str enum is not a str to compare).
    return first_difference(written, json.loads(json.dumps(planned)))


def raise_different(difference: str, *, against: str) -> NoReturn:
    """The refusal of a saved plan whose changes are not the ones planned again."""
    raise PlanError(
        f"the saved plan is not the plan {against} gives: {difference}; nothing was sent",
        hint="the file was edited, or made from another input or by another reconciler "
        "version: plan again with `reconciler plan --out FILE`, review it, and apply that",
    )


def first_difference(
    written: Sequence[Mapping[str, Any]], planned: Sequence[Mapping[str, Any]]
) -> str | None:
    """The first difference between two lists of change documents (None: identical)."""
    for index, (mine, theirs) in enumerate(zip(written, planned, strict=False), start=1):
        account, again = mine.get("account"), theirs.get("account")
        if account != again:
            return (
                f"change {index} is for account {account} in the saved plan, "
                f"but for {again} when planned again"
            )
        found = _walk("", planfile.reviewed(mine), planfile.reviewed(theirs))
        if found is not None:
            path, value, other = found
            return (
                f"change {index} ({account}): {path} is {value} in the saved plan, "
                f"but {other} when planned again"
                + _also(path, mine, theirs)
                + _how_many(written, planned)
            )
    if len(written) > len(planned):
        extra = written[len(planned)]
        return (
            f"the saved plan has {len(written)} changes, planning again gives "
            f"{len(planned)}: {extra.get('action')} {extra.get('account')} "
            "is not planned"
        )
    if len(planned) > len(written):
        missing = planned[len(written)]
        return (
            f"the saved plan has {len(written)} changes, planning again gives "
            f"{len(planned)}: {missing['action']} {missing['account']} is missing from it"
        )
    return None


_ALSO_SHOWN = 3  # further differing paths of the first differing change


def _also(first: str, mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> str:
    """The other places the first differing change differs (DeepDiff: only on refusal)."""
    others = [
        found.path
        for found in comparing.differences(planfile.reviewed(mine), planfile.reviewed(theirs))
        if not (first == found.path or first.startswith((found.path + ".", found.path + "[")))
    ]
    if not others:
        return ""
    named = ", ".join(others[:_ALSO_SHOWN])
    if len(others) > _ALSO_SHOWN:
        named += f" and {len(others) - _ALSO_SHOWN} more"
    return f"; it also differs at {named}"


def _how_many(written: Sequence[Mapping[str, Any]], planned: Sequence[Mapping[str, Any]]) -> str:
    """How many changes differ in all, when more than the first one does."""
    differing = sum(
        1
        for mine, theirs in zip(written, planned, strict=False)
        if planfile.reviewed(mine) != planfile.reviewed(theirs)
    )
    return f"; {differing} of {len(written)} changes differ" if differing > 1 else ""


def _walk(path: str, mine: Any, theirs: Any) -> tuple[str, str, str] | None:
    """The first (path, saved value, planned value) where two JSON values differ."""
    if isinstance(mine, dict) and isinstance(theirs, dict):
        for key in sorted(mine.keys() | theirs.keys()):
            inner = f"{path}.{key}" if path else key
            if key not in mine or key not in theirs:
                return inner, _shown_at(mine, key), _shown_at(theirs, key)
            found = _walk(inner, mine[key], theirs[key])
            if found is not None:
                return found
        return None
    if isinstance(mine, list) and isinstance(theirs, list) and len(mine) == len(theirs):
        for index, (left, right) in enumerate(zip(mine, theirs, strict=True)):
            found = _walk(f"{path}[{index}]", left, right)
            if found is not None:
                return found
        return None
    # bool is an int to Python: compare types too, so `true` never equals 1
    if type(mine) is type(theirs) and mine == theirs:
        return None
    return path, _shown(mine), _shown(theirs)


def _shown_at(document: Mapping[str, Any], key: str) -> str:
    return _shown(document[key]) if key in document else "absent"


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def recheck_retries(
    saved: Plan, listed: Sequence[EventDecision]
) -> tuple[tuple[EventDecision, ...], tuple[str, ...]]:
    """The saved plan's retries that a fresh listing still shows failed and decided "retry".

    Returns those events as listed now (their current reason and times), and a note for
    each one skipped. Events listed now but not in the saved plan are not retried: they
    were not reviewed.
    """
    now = {event.event_id: event for event in listed}
    kept: list[EventDecision] = []
    notes: list[str] = []
    for event in saved.retries:
        fresh = now.get(event.event_id)
        if fresh is None:
            notes.append(
                f"event {event.event_id} ({event.account}): not failed any more; its retry "
                "is skipped"
            )
        elif fresh.account != event.account:
            notes.append(
                f"event {event.event_id} ({event.account}): now listed for {fresh.account}; "
                "its retry is skipped"
            )
        elif fresh.decision is not Decision.RETRY:
            notes.append(
                f"event {event.event_id} ({event.account}): no longer decided retry "
                f"({fresh.why}); its retry is skipped"
            )
        else:
            kept.append(fresh)
    return tuple(kept), tuple(notes)
