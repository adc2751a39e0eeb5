"""One format_version rule for every reader: saved plans and states answer the same table.

The table (``tests/support/format_versions.py``) is also run over both state backends in
``test_store_contract.py``. A state is at format 2, a saved plan at format 3; below that they
part: a version-1 state is migrated on read, a plan of an older format is refused (plan again).
"""

from __future__ import annotations

import json

import pytest

from reconciler import formats
from reconciler.errors import PlanError, StateCorrupt
from reconciler.formats import Verdict
from reconciler.plan import planfile, planner
from reconciler.stores import model as state_codec
from reconciler.stores.recorded_policy import PolicyRecord
from reconciler.values import replace
from tests.support.builders import desired, record, state, user
from tests.support.format_versions import PLAN_VERSIONS, VERSIONS, Mutate, check_answer

_PLAN = json.loads(
    planfile.dumps(
        planner.plan(
            desired(user("new", "agent"), user("changed", "agent", name="Changed")),
            state(record("changed", "reporting")),
            state_location=".reconciler/state.json",
        )
    )
)
_STATE = state_codec.to_json(state(record("alice", "agent")))


@pytest.mark.parametrize(("mutate", "verdict", "tail"), VERSIONS)
def test_classify_gives_the_verdict(mutate: Mutate, verdict: Verdict, tail: str) -> None:
    """The pure classifier gives each row's verdict for a document whose newest is 3."""
    assert formats.classify(mutate(_STATE), newest=3).verdict is verdict


@pytest.mark.parametrize(("mutate", "verdict", "tail"), PLAN_VERSIONS)
def test_a_saved_plan_follows_the_rule(mutate: Mutate, verdict: Verdict, tail: str) -> None:
    """A saved plan is read, refused as newer (upgrade) or refused as invalid: PlanError."""
    caught: PlanError | None = None
    try:
        planfile.loads(json.dumps(mutate(_PLAN)), where="p.json")
    except PlanError as exc:
        caught = exc
    check_answer(caught, verdict, tail, subject="p.json", kind="saved plan")


@pytest.mark.parametrize(("mutate", "verdict", "tail"), VERSIONS)
def test_a_state_follows_the_rule(mutate: Mutate, verdict: Verdict, tail: str) -> None:
    """A state document is read, refused as newer (upgrade) or refused as corrupt."""
    caught: StateCorrupt | None = None
    try:
        state_codec.from_json(mutate(_STATE), where="s.json")
    except StateCorrupt as exc:
        caught = exc
    check_answer(caught, verdict, tail, subject="state s.json", kind="state")


@pytest.mark.parametrize("old", [1, 2, 3])
def test_an_older_plan_is_refused_as_made_by_an_older_reconciler(old: int) -> None:
    """A saved plan of format 1 (no changes digest), 2 (no date: its end dates were never
    evaluated) or 3 (no policy review: a loosened policy was never shown) is never applied."""
    older = {**_PLAN, "format_version": old}
    with pytest.raises(PlanError) as caught:
        planfile.loads(json.dumps(older), where="p.json")
    assert caught.value.message == (
        f"p.json was made by an older reconciler (format_version {old}; this reconciler reads 4 "
        "and later)"
    )
    assert (caught.value.hint or "").startswith("plan again with `reconciler plan --out FILE`")


def test_a_saved_plan_read_as_a_state_is_named_for_what_it_is() -> None:
    """``--state plan.json``: a saved plan, not "written by a newer reconciler" (whose hint,
    upgrade, would be wrong); nothing about its version."""
    with pytest.raises(StateCorrupt) as caught:
        state_codec.from_json(_PLAN, where="plan.json")
    assert caught.value.message == "state plan.json is a saved plan, not a state"
    assert "upgrade" not in (caught.value.hint or "")


def test_a_state_read_as_a_saved_plan_is_named_for_what_it_is() -> None:
    """``apply state.json``: a state, not "made by an older reconciler" (plan again)."""
    with pytest.raises(PlanError) as caught:
        planfile.loads(json.dumps(_STATE), where="state.json")
    assert caught.value.message == "state.json is a state, not a saved plan"
    assert "reconciler state diff" in (caught.value.hint or "")


def test_a_version_1_state_is_read_with_no_adopted_account() -> None:
    """A format-1 state (written before ``adopted`` existed) reads, every account verified."""
    document = {**_STATE, "format_version": 1}
    read = state_codec.from_json(document, where="s.json")
    assert read.accounts["alice"].adopted is False
    assert read.policy is None
    assert state_codec.to_json(read)["format_version"] == 3


def test_a_version_2_state_is_read_with_no_recorded_policy() -> None:
    """A format-2 state (written before the policy was recorded) reads as format 3 without
    one, and a recorded policy survives the round trip through JSON."""
    read = state_codec.from_json({**_STATE, "format_version": 2}, where="s.json")
    assert read.policy is None
    assert "policy" not in state_codec.to_json(read)
    recorded = PolicyRecord(
        max_disable_count=2,
        max_disable_percent=12.5,
        protected_accounts=("alice",),
        max_grant_days={"tenant-admin": 30},
        sensitive_roles={"1672380646005741609": "tenant-admin"},
        timezone="Europe/Berlin",
        expiry_notice_days=7,
    )
    document = state_codec.to_json(replace(read, policy=recorded))
    assert document["policy"]["max_disable"] == {"count": 2, "percent": 12.5}
    back = state_codec.from_json(json.loads(json.dumps(document)), where="s.json")
    assert back.policy == recorded


def test_an_adopted_account_survives_the_state_round_trip() -> None:
    """``adopted`` is written only when true and read back."""
    adopted = replace(record("olga", "agent"), adopted=True)
    document = state_codec.to_json(state(adopted, record("alice", "agent")))
    assert document["accounts"]["olga"]["adopted"] is True
    assert "adopted" not in document["accounts"]["alice"]
    read = state_codec.from_json(json.loads(json.dumps(document)), where="s.json")
    assert (read.accounts["olga"].adopted, read.accounts["alice"].adopted) == (True, False)
