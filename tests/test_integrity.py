"""The pure part of plan integrity: the first difference between saved and planned changes,
and which saved retries a fresh listing still confirms."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.errors import PlanError
from reconciler.plan import integrity, planfile, planner
from reconciler.plan.model import Decision, EventDecision
from reconciler.values import replace
from tests.support.builders import desired, record, state, user

SAVED = planner.plan(
    desired(user("alice", "agent", name="Alice Two"), user("bob", "agent")),
    state(record("alice", "agent")),
    state_location="state.json",
)


def _docs() -> list[dict[str, Any]]:
    """The saved plan's change documents as a file holds them."""
    return [planfile.change_json(change) for change in SAVED.changes]


def _edited(index: int, path: tuple[str | int, ...], value: Any) -> list[dict[str, Any]]:
    docs = _docs()
    target: Any = docs[index]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return docs


def _edited_in_many_places() -> list[dict[str, Any]]:
    """Change 1 edited in three places, change 2 in one."""
    docs = _edited(0, ("after", "role_ids"), ["109"])
    docs[0]["wire"]["roleIds"] = ["109"]
    docs[0]["roles_removed"] = ["101"]
    docs[1]["after"]["name"] = "Mallory"
    return docs


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        pytest.param(_docs(), None, id="identical"),
        pytest.param(
            [{**doc, "source": {"file": "x.yaml", "line": 99}} for doc in _docs()],
            None,
            id="source-is-not-compared",
        ),
        pytest.param(
            _edited(1, ("after", "role_ids"), ["101", "109"]),
            'change 2 (alice): after.role_ids is ["101", "109"] in the saved plan, '
            'but ["101"] when planned again',
            id="nested-value",
        ),
        pytest.param(
            _edited(0, ("after", "enabled"), 1),
            "change 1 (bob): after.enabled is 1 in the saved plan, but true when planned again",
            id="one-is-not-true",
        ),
        pytest.param(
            _edited(1, ("wire", "roleIds"), ["109"]),
            'change 2 (alice): wire.roleIds is ["109"] in the saved plan, but absent when '
            "planned again",
            id="key-only-in-the-file",
        ),
        pytest.param(
            _edited_in_many_places(),
            'change 1 (bob): after.role_ids[0] is "109" in the saved plan, but "101" when '
            "planned again; it also differs at roles_removed, wire.roleIds; 2 of 2 changes differ",
            id="more-differences-named",
        ),
        pytest.param(
            _edited(0, ("account",), "mallory"),
            "change 1 is for account mallory in the saved plan, but for bob when planned again",
            id="another-account",
        ),
        pytest.param(
            [*_docs(), {"action": "DISABLE", "account": "carol"}],
            "the saved plan has 3 changes, planning again gives 2: DISABLE carol is not planned",
            id="extra-change",
        ),
        pytest.param(
            _docs()[:1],
            "the saved plan has 1 changes, planning again gives 2: MODIFY alice is missing from it",
            id="missing-change",
        ),
    ],
)
def test_first_difference(written: list[dict[str, Any]], expected: str | None) -> None:
    """The first difference is named by change, account and JSON path, with both values."""
    assert integrity.first_difference(written, _docs()) == expected


def test_verify_refuses_a_plan_that_is_not_the_one_made_again() -> None:
    """verify passes the same plan and refuses another, saying that nothing was sent."""
    integrity.verify(SAVED, SAVED, against="desired/ and state s")
    other = planner.plan(desired(user("bob", "agent")), None, state_location="state.json")
    with pytest.raises(PlanError, match="the saved plan is not the plan desired/ and state s"):
        integrity.verify(SAVED, other, against="desired/ and state s")


def _event(event_id: str, account: str, decision: Decision = Decision.RETRY) -> EventDecision:
    return EventDecision(
        event_id=event_id,
        account=account,
        target="member",
        reason="rejected",
        created_at="2025-01-01T00:00:00Z",
        updated_at="2025-01-01T00:00:00Z",
        attempts=0,
        decision=decision,
        why="managed and enabled" if decision is Decision.RETRY else "attempts exhausted",
    )


def test_recheck_keeps_only_retries_still_failed_and_still_decided_retry() -> None:
    """Gone, re-decided or re-assigned events are skipped with a note; new ones ignored."""
    saved = replace(
        SAVED,
        events=(
            _event("e1", "alice"),
            _event("e2", "alice"),
            _event("e3", "bob"),
            _event("e4", "bob"),
            _event("e5", "bob", Decision.REPORT),
        ),
    )
    fresh_e1 = replace(_event("e1", "alice"), reason="rejected again")
    listed = (
        fresh_e1,
        _event("e3", "bob", Decision.REPORT),
        _event("e4", "carol"),
        _event("e5", "bob"),
        _event("e6", "alice"),
    )
    kept, notes = integrity.recheck_retries(saved, listed)
    assert kept == (fresh_e1,)
    assert notes == (
        "event e2 (alice): not failed any more; its retry is skipped",
        "event e3 (bob): no longer decided retry (attempts exhausted); its retry is skipped",
        "event e4 (bob): now listed for carol; its retry is skipped",
    )
