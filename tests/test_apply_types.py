"""The closed sets of apply and the state as types: send outcomes, actions, event states."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from reconciler import jsontext, schemas
from reconciler.apply import tasks
from reconciler.apply.engine import ApplyReport
from reconciler.apply.ledger import EventRetry, Failure
from reconciler.apply.tasks import NotSent, Refused, SendOutcome, Sent
from reconciler.cli import apply_commands
from reconciler.cli.apply_commands import report_json
from reconciler.cli.choices import ReportFormat
from reconciler.errors import StateCorrupt
from reconciler.providers.federation.replies import TaskFailure, TaskState, TaskStatus
from reconciler.stores import model as state_codec
from reconciler.stores.model import (
    AccountRecord,
    Action,
    EventRecord,
    EventState,
    PendingBatch,
    PendingEntry,
    State,
)

LOST, LIMIT, HALT, REFUSED = NotSent.LOST, NotSent.LIMIT, NotSent.HALT, Refused()


def _record(account: str) -> AccountRecord:
    return AccountRecord(account=account, name=account, email="", role_ids=(), enabled=True)


def _batch(batch_id: str, *entries: tuple[str, Action]) -> PendingBatch:
    return PendingBatch(
        batch_id=batch_id,
        entries=tuple(
            PendingEntry(
                action=action,
                account=account,
                wire={"action": action.value, "userAccount": account},
                target=_record(account),
            )
            for account, action in entries
        ),
    )


def _scripted(
    outcomes: Mapping[str, SendOutcome], called: list[str]
) -> Callable[[PendingBatch], SendOutcome]:
    def send(batch: PendingBatch) -> SendOutcome:
        called.append(batch.batch_id)
        return outcomes[batch.batch_id]

    return send


def _sent(**task_ids: str) -> dict[str, Sent]:
    return {batch_id: Sent(task_id=task_id) for batch_id, task_id in task_ids.items()}


# Batches a, b and c in one round: what each send comes to → which were sent (batch → task),
# which intents go, which go back to the queue, which was lost, whether the limit or a halt
# ended it.
@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        pytest.param(
            _sent(a="t-a", b="t-b", c="t-c"),
            ("abc", {"a": "t-a", "b": "t-b", "c": "t-c"}, "", "", None, False, False),
            id="all-sent",
        ),
        pytest.param(
            {**_sent(a="t-a", c="t-c"), "b": REFUSED},
            ("abc", {"a": "t-a", "c": "t-c"}, "b", "", None, False, False),
            id="refused-is-forgotten-and-the-round-goes-on",
        ),
        pytest.param(
            {**_sent(a="t-a", c="t-c"), "b": LOST},
            ("ab", {"a": "t-a"}, "c", "c", "b", False, False),
            id="lost-keeps-its-intent-and-stops-the-round",
        ),
        pytest.param(
            {**_sent(c="t-c"), "a": REFUSED, "b": LIMIT},
            ("ab", {}, "abc", "bc", None, True, False),
            id="limit-puts-itself-and-the-rest-back",
        ),
        pytest.param(
            {**_sent(b="t-b", c="t-c"), "a": LOST},
            ("a", {}, "bc", "bc", "a", False, False),
            id="lost-first-sends-nothing-else",
        ),
        pytest.param(
            {**_sent(a="t-a", b="t-b"), "c": LIMIT},
            ("abc", {"a": "t-a", "b": "t-b"}, "c", "c", None, True, False),
            id="limit-last",
        ),
        pytest.param(
            {**_sent(a="t-a", c="t-c"), "b": HALT},
            ("ab", {"a": "t-a"}, "bc", "bc", None, False, True),
            id="halt-puts-itself-and-the-rest-back",
        ),
    ],
)
def test_a_round_dispatches_each_send_outcome(
    outcomes: Mapping[str, SendOutcome], expected: tuple[object, ...]
) -> None:
    """Sent goes in flight, Refused is forgotten, LOST, LIMIT and HALT stop the round."""
    batches = [_batch(batch_id, (f"user-{batch_id}", Action.CREATE)) for batch_id in "abc"]
    calls: list[str] = []
    round_ = tasks.send_round(batches, _scripted(outcomes, calls))
    assert (
        "".join(calls),
        {batch.batch_id: task_id for batch, task_id in round_.sent},
        "".join(round_.forget),
        "".join(b.batch_id for b in round_.unsent),
        round_.lost.batch_id if round_.lost else None,
        round_.limited,
        round_.halted,
    ) == expected


def test_a_refused_batch_is_replaced_by_its_resends() -> None:
    """Refused with resends: the batch's intent goes, the new batches come back to the queue."""
    batches = [_batch(batch_id, (f"user-{batch_id}", Action.CREATE)) for batch_id in "ab"]
    again = _batch("a2", ("user-a", Action.CREATE))
    outcomes: dict[str, SendOutcome] = {"a": Refused(resend=(again,)), **_sent(b="t-b")}
    round_ = tasks.send_round(batches, _scripted(outcomes, []))
    assert (round_.forget, round_.resend, round_.unsent) == (("a",), (again,), ())


def test_a_stop_request_sends_nothing_more_in_the_round() -> None:
    """Once stop() holds, the rest of the round goes back unsent, as after a halt."""
    batches = [_batch(batch_id, (f"user-{batch_id}", Action.CREATE)) for batch_id in "abc"]
    calls: list[str] = []
    round_ = tasks.send_round(
        batches, _scripted(_sent(a="t-a", b="t-b", c="t-c"), calls), stop=lambda: bool(calls)
    )
    assert (calls, "".join(b.batch_id for b in round_.unsent), round_.halted) == (
        ["a"],
        "bc",
        True,
    )


def test_a_round_of_nothing_sends_nothing() -> None:
    """No batches: no call, nothing to record."""
    assert tasks.send_round([], _scripted({}, [])) == tasks.Round()


def test_failures_keep_the_action_sent_and_only_the_batch_accounts() -> None:
    """A DONE task's failures carry the entry's own action; other accounts are not its own."""
    batch = _batch("b", ("alice", Action.CREATE), ("bob", Action.DISABLE), ("carol", Action.MODIFY))
    status = TaskStatus(
        task_id="t",
        status=TaskState.DONE,
        remark="",
        failures=tuple(
            TaskFailure(account=account, fail_code="100-301", fail_message="no", entry={})
            for account in ("bob", "mallory", "carol")
        ),
    )
    failures = tasks.failures_of(batch, status)
    assert {a: f.action for a, f in failures.items()} == {
        "bob": Action.DISABLE,
        "carol": Action.MODIFY,
    }
    assert {(f.code, f.message) for f in failures.values()} == {("100-301", "no")}


@pytest.mark.parametrize(
    ("action", "symbol"), [(Action.CREATE, "+"), (Action.MODIFY, "~"), (Action.DISABLE, "-")]
)
def test_every_action_has_its_marker(action: Action, symbol: str) -> None:
    """The Terraform-like marker of each action."""
    assert action.symbol == symbol


def test_the_plan_model_still_exports_action() -> None:
    """Callers importing Action from the plan model get the state's enum."""
    from reconciler.plan import model as plan_model  # noqa: PLC0415 - the import is the test

    assert plan_model.Action is Action


def _state(action: Action, status: EventState | None) -> State:
    return State.empty().successor(
        accounts={"alice": _record("alice")},
        pending=(_batch("b-1", ("alice", action)),),
        events={"e-1": EventRecord(event_id="e-1", account="alice", attempts=1, status=status)},
    )


def _reloaded(state: State) -> tuple[State, Any]:
    document = json.loads(json.dumps(state_codec.to_json(state)))
    return state_codec.from_json(document, where="test"), document


@pytest.mark.parametrize("action", list(Action))
def test_an_action_round_trips_through_the_state_codec(action: Action) -> None:
    """A recorded entry's action is written as the API's name and read back as the enum."""
    loaded, document = _reloaded(_state(action, None))
    [batch] = document["pending"]
    assert batch["entries"][0]["action"] == action.value
    assert type(loaded.pending[0].entries[0].action) is Action
    assert loaded.pending[0].entries[0].action is action


@pytest.mark.parametrize("status", [*EventState, None])
def test_an_event_state_round_trips_through_the_state_codec(status: EventState | None) -> None:
    """Every event state the code writes is a valid state document and reads back the same."""
    loaded, document = _reloaded(_state(Action.CREATE, status))
    event = document["events"]["e-1"]
    assert event.get("status") == (None if status is None else status.value)
    assert loaded.events["e-1"].status is status


def test_the_state_schema_lists_exactly_the_event_states() -> None:
    """schemas/state.schema.json and EventState agree on the event statuses."""
    listed = schemas.load("state")["$defs"]["event"]["properties"]["status"]["enum"]
    assert sorted(listed) == sorted(state.value for state in EventState)


def test_the_state_schema_lists_exactly_the_actions() -> None:
    """schemas/state.schema.json and Action agree on a recorded entry's actions."""
    entry = schemas.load("state")["$defs"]["batch"]["properties"]["entries"]["items"]
    assert sorted(entry["properties"]["action"]["enum"]) == sorted(a.value for a in Action)


def test_an_unknown_event_status_is_a_corrupt_state() -> None:
    """A status outside the enum is refused loudly, not carried along as a string."""
    document = state_codec.to_json(_state(Action.CREATE, EventState.OPEN))
    document["events"]["e-1"]["status"] = "maybe"
    with pytest.raises(StateCorrupt, match="is not a valid state: events/e-1/status"):
        state_codec.from_json(document, where="test")


@pytest.mark.parametrize(
    ("failures", "printed"),
    [
        pytest.param(
            [Failure(account="alice", action=Action.CREATE, code="c", message="m")],
            "CREATE",
            id="user-change",
        ),
        pytest.param(
            [Failure(account="alice", action=EventRetry.RETRY, code="c", message="m")],
            "RETRY",
            id="event-retry",
        ),
    ],
)
def test_the_json_report_prints_the_actions_as_plain_names(
    failures: Sequence[Failure], printed: str
) -> None:
    """The apply report says CREATE / RETRY exactly, in applied and failed."""
    report = ApplyReport(applied=[("bob", Action.CREATE)], failed=list(failures))
    document = json.loads(json.dumps(report_json(report)))
    assert document["applied"] == [{"account": "bob", "action": "CREATE"}]
    assert [f["action"] for f in document["failed"]] == [printed]


def test_apply_never_loads_httpx() -> None:
    """Importing every apply module pulls in no HTTP client (apply talks through protocols)."""
    code = (
        "import sys\n"
        "import reconciler.apply.engine, reconciler.apply.ledger, reconciler.apply.progress\n"
        "import reconciler.apply.provisioning, reconciler.apply.tasks\n"
        "print(sorted(m for m in sys.modules if m == 'httpx' or m.startswith('httpx.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_json_report_prints_its_accounts_as_report_json_lays_them_out() -> None:
    """The printed report (its accounts encoded a line at a time) is the text of
    ``report_json`` laid out, byte for byte."""
    report = ApplyReport(
        applied=[("bob", Action.CREATE), ('zoë "x"', Action.MODIFY), ("c\\d", Action.DISABLE)],
        failed=[Failure(account="eve", action=Action.MODIFY, code="c", message="m")],
    )
    for case in (report, ApplyReport()):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            apply_commands._emit(case, ReportFormat.JSON)
        assert printed.getvalue() == jsontext.laid_out(report_json(case)) + "\n"
