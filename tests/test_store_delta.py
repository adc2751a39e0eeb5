"""Writes proportional to the change: revised mappings, deltas, and their journal records.

``revisions`` must behave exactly like a dict for every revision, whatever order they are
used and forked in; ``delta.between`` must find exactly what changed (cheaply for
revisions, by a full comparison otherwise); a delta as a journal record must replay to
the very state it came from, and a record that is not valid must be refused.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from reconciler.apply import ledger
from reconciler.apply.ledger import Failure
from reconciler.errors import StateCorrupt
from reconciler.stores import delta as deltas
from reconciler.stores import model as state_codec
from reconciler.stores import revisions
from reconciler.stores.model import AccountRecord, Action, State
from reconciler.values import replace
from tests.support.builders import sample_state
from tests.support.stores import Backend

# -- revisions ----------------------------------------------------------------------


def test_every_revision_keeps_its_own_content_whatever_order_they_are_used_in() -> None:
    """Random forks and reads of old and new revisions: each is always what a dict would be."""
    rng = random.Random(7)
    for _ in range(300):
        base = {i: rng.random() for i in range(rng.randint(0, 20))}
        untouched = dict(base)
        made: list[tuple[Any, dict[int, float]]] = [(base, dict(base))]
        for _ in range(rng.randint(1, 10)):
            source, content = rng.choice(made)
            changes = {rng.randint(0, 30): rng.random() for _ in range(rng.randint(0, 4))}
            removed = [rng.randint(0, 30) for _ in range(rng.randint(0, 3))]
            expected = {**content, **changes}
            for key in removed:
                expected.pop(key, None)
            made.append((revisions.revise(source, changes, removed), expected))
        for _ in range(15):
            mapping, content = rng.choice(made)
            assert dict(mapping.items()) == content
            assert len(mapping) == len(content)
            key = rng.randint(0, 30)
            assert (key in mapping, mapping.get(key)) == (key in content, content.get(key))
        assert base == untouched  # the plain mapping revised first never changes


def test_compare_gives_exactly_what_turns_one_revision_into_another() -> None:
    """compare(old, new) applied to old gives new, for any two revisions of one mapping."""
    rng = random.Random(11)
    for _ in range(200):
        plain = {i: i for i in range(10)}  # as a store reads it: the revisions start from it
        first = revisions.revise(plain, {0: -1}, [1])
        made: list[tuple[Any, dict[int, int]]] = [(plain, dict(plain))]
        made.append((first, {**{k: v for k, v in plain.items() if k != 1}, 0: -1}))
        for step in range(8):
            source, content = rng.choice(made[1:])  # forks of the one tree
            changes = {rng.randint(0, 15): step * 100 + rng.randint(0, 9) for _ in range(3)}
            removed = [rng.randint(0, 15)]
            expected = {**content, **changes}
            for key in removed:
                expected.pop(key, None)
            made.append((revisions.revise(source, changes, removed), expected))
        (old, before), (new, after) = rng.choice(made), rng.choice(made[1:])
        found = revisions.compare(old, new)
        assert found is not None
        changed, removed = found
        rebuilt = {**before, **changed}
        for key in removed:
            del rebuilt[key]
        assert rebuilt == after
        assert all(before.get(key) is not value for key, value in changed.items())


def test_compare_knows_nothing_of_unrelated_mappings() -> None:
    """Two plain dicts, or revisions of two different dicts: the caller compares in full."""
    plain = {"a": 1}
    one, two = revisions.revise(plain, {}), revisions.revise(dict(plain), {})
    assert revisions.compare(one, two) is None
    assert revisions.compare(plain, two) is None  # made from an equal dict, not from this one
    assert revisions.compare({"a": 1}, {"a": 1}) is None
    assert revisions.compare(one, one) == ({}, [])
    assert revisions.compare(plain, one) == ({}, [])


# -- between ------------------------------------------------------------------------


def _record(account: str, name: str = "N") -> AccountRecord:
    return AccountRecord(account=account, name=name, email="", role_ids=(), enabled=True)


def test_between_names_only_what_changed_for_revisions_and_plain_mappings() -> None:
    """The same delta whether the accounts were revised or rebuilt as a new dict."""
    old = sample_state()
    changed = {"bob": _record("bob"), "alice": replace(old.accounts["alice"], name="Al")}
    revised = old.successor(accounts=revisions.revise(old.accounts, changed))
    rebuilt = old.successor(accounts={**old.accounts, **changed})
    for new in (revised, rebuilt):
        found = deltas.between(old, new)
        assert dict(found.accounts) == changed
        assert (found.removed, found.events, found.batches, found.order) == ((), {}, (), None)
        assert (found.prev, found.serial) == (1, 2)
    gone = old.successor(accounts=revisions.revise(old.accounts, {}, ["alice"]))
    assert deltas.between(old, gone).removed == ("alice",)


def test_a_recorded_task_id_is_written_as_the_batch_marks_only() -> None:
    """Recording a task id does not write the batch's entries again; a new batch does."""
    old = sample_state()
    sent = ledger.with_task_ids(old, {"b-1": "t-9"}, "2024-01-02T00:00:00Z").successor()
    found = deltas.between(old, sent)
    assert found.batches == ()
    assert dict(found.marks) == {"b-1": deltas.Marks.of(sent.pending[0])}
    assert found.order is None
    later = ledger.with_intents(sent, [replace(old.pending[0], batch_id="b-2")]).successor()
    found = deltas.between(sent, later)
    assert [b.batch_id for b in found.batches] == ["b-2"]
    assert found.order == ("b-1", "b-2")


# -- journal records: replay ----------------------------------------------------------


def _transitions(start: State) -> list[State]:
    """A run's states: intent, task id, results (one failed), a probe, events, a forget."""
    entry = start.pending[0].entries[0]
    target = replace(entry.target, account="carol", name="Carol")
    batch = replace(
        start.pending[0],
        batch_id="b-2",
        entries=(replace(entry, account="carol", target=target), entry),
    )
    states = [start]
    states.append(ledger.with_intents(states[-1], [batch]).successor())
    states.append(ledger.with_task_ids(states[-1], {"b-2": "t-2"}, "T").successor())
    done = [
        (
            states[-1].pending[1],
            {"alice": Failure(account="alice", action=Action.CREATE, code="x", message="m")},
        )
    ]
    states.append(ledger.with_results(states[-1], done, "T")[0].successor())
    probe = ledger.probe_batch(states[-1], states[-1].pending[0], "T")
    states.append(ledger.with_probe(states[-1], states[-1].pending[0], probe).successor())
    event = replace(start.events["e-1"], attempts=3)
    events = revisions.revise(
        states[-1].events, {"e-1": event, "e-2": replace(event, event_id="e-2")}
    )
    states.append(replace(states[-1], events=events).successor())
    states.append(ledger.without(states[-1], [probe.batch_id]).successor())
    return states


def test_replaying_the_records_of_a_run_gives_every_state_exactly() -> None:
    """Each transition as a JSON record, replayed on the first state, is the state itself."""
    states = _transitions(sample_state())
    replay = deltas.Replay(states[0])
    for old, new in itertools.pairwise(states):
        record = deltas.to_json(deltas.between(old, new))
        replay.apply(deltas.from_json(record, where="s"), where="s")
        assert state_codec.to_json(replay.state()) == state_codec.to_json(new)


def test_each_transition_of_a_run_reads_back_exactly_from_every_backend(
    backend: Backend,
) -> None:
    """Written as deltas (rows or journal records), every state is read back as it was."""
    states = _transitions(sample_state())
    backend.store.write(states[0])
    for state in states[1:]:
        backend.store.write(state)
        for reader in (backend.store, backend.reopen()):
            loaded = reader.read()
            assert loaded is not None
            assert state_codec.to_json(loaded) == state_codec.to_json(state)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"extra": 1}, "unknown member 'extra'"),
        ({"prev": "1"}, "prev must be"),
        ({"accounts": {"bob": {"name": "Bob"}}}, "accounts/bob"),
        ({"batches": [{"batch_id": "b"}]}, "pending/0"),
        ({"removed": "alice"}, "removed must be a list"),
        ({"marks": {"b-1": {"task_id": 5}}}, "marks must map"),
        ({"serial": 0}, "serial"),
    ],
    ids=["unknown", "prev", "account", "batch", "removed", "marks", "serial"],
)
def test_a_record_that_is_not_valid_is_refused(change: dict[str, Any], problem: str) -> None:
    """Every record is checked as strictly as the state document (its own schema)."""
    old = sample_state()
    record = {**deltas.to_json(deltas.between(old, old.successor())), **change}
    with pytest.raises(StateCorrupt, match=problem):
        deltas.from_json(record, where="s")


@pytest.mark.parametrize(
    ("prev", "serial", "lineage"),
    [(2, 3, None), (1, 1, None), (1, 2, "00000000-0000-4000-8000-000000000000")],
    ids=["gap", "not-newer", "other-lineage"],
)
def test_a_record_that_does_not_follow_is_refused(
    prev: int, serial: int, lineage: str | None
) -> None:
    """A record must continue exactly where the state replayed so far stands."""
    old = sample_state()
    change = replace(
        deltas.between(old, old.successor()),
        prev=prev,
        serial=serial,
        lineage=lineage or old.lineage,
    )
    with pytest.raises(StateCorrupt, match="does not fit its snapshot"):
        deltas.Replay(old).apply(change, where="s")


def test_records_read_back_share_one_copy_of_repeated_text() -> None:
    """Role ids, task ids and timestamps repeat across records: decoding keeps one copy."""
    import json  # noqa: PLC0415 - only this test round-trips through JSON text

    records = {
        account: AccountRecord(
            account=account,
            name="N",
            email=f"{account}@example.com",
            role_ids=("1672380646005741601",),
            enabled=True,
            last_task_id="task-000001",
            created_at="2024-01-01T00:00:00Z",
            updated_at="2024-06-01T12:00:00Z",
        )
        for account in ("a", "b")
    }
    document = json.loads(
        json.dumps(state_codec.to_json(State.empty().successor(accounts=records)))
    )
    read = state_codec.from_json(document, where="test")
    first, second = read.accounts["a"], read.accounts["b"]
    assert first == records["a"]
    assert first.role_ids[0] is second.role_ids[0]
    assert first.last_task_id is second.last_task_id
    assert first.created_at is second.created_at
    assert first.updated_at is second.updated_at
