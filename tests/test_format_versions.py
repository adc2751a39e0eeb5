"""One format_version rule for every reader: saved plans and states answer the same table.

The table (``tests/support/format_versions.py``) is also run over both state backends in
``test_store_contract.py``.
"""

from __future__ import annotations

import json

import pytest

from reconciler import formats
from reconciler.errors import PlanError, StateCorrupt
from reconciler.formats import Verdict
from reconciler.plan import planfile, planner
from reconciler.stores import model as state_codec
from tests.support.builders import desired, record, state, user
from tests.support.format_versions import VERSIONS, Mutate, check_answer

_PLAN = json.loads(
    planfile.dumps(
        planner.plan(
            desired(user("new", "agent"), user("changed", "agent", name="Changed")),
            state(record("changed", "reporting")),
        )
    )
)
_STATE = state_codec.to_json(state(record("alice", "agent")))


@pytest.mark.parametrize(("mutate", "verdict", "tail"), VERSIONS)
def test_classify_gives_the_verdict(mutate: Mutate, verdict: Verdict, tail: str) -> None:
    """The pure classifier gives each row's verdict for a document whose newest is 1."""
    assert formats.classify(mutate(_STATE), newest=1).verdict is verdict


@pytest.mark.parametrize(("mutate", "verdict", "tail"), VERSIONS)
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
