"""plan(desired, recorded): the changes, their wire form, order, batches, guard rails, and the
saved-plan round trip."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler import jsontext
from reconciler.desired.model import DesiredState, Policy
from reconciler.errors import PlanError, StalePlan
from reconciler.plan import diffing, planfile, planner
from reconciler.plan.model import Action, Field, FieldChange, Guard, Kind, Plan, Reason
from reconciler.stores.model import AccountRecord, State
from reconciler.values import replace
from tests.support.builders import DIGEST, LINEAGE, desired, record, state, user

GOLDEN = Path(__file__).parent / "golden"

CHANGES = [
    pytest.param(
        desired(user("alice", "agent")),
        None,
        [("CREATE", "alice", (), ("101",), ())],
        id="create-new-no-state",
    ),
    pytest.param(
        desired(user("alice", "agent", "admin")),
        state(record("alice", "agent", "reporting", enabled=False)),
        [("CREATE", "alice", (), ("109",), ("103",))],
        id="create-reenables-disabled-record",
    ),
    pytest.param(
        desired(user("alice", "agent", name="Alicia")),
        state(record("alice", "agent")),
        [("MODIFY", "alice", ("name",), (), ())],
        id="modify-name",
    ),
    pytest.param(
        desired(user("alice", "agent", email="new@example.com")),
        state(record("alice", "agent")),
        [("MODIFY", "alice", ("email",), (), ())],
        id="modify-email",
    ),
    pytest.param(
        desired(user("alice", "agent", "reporting")),
        state(record("alice", "agent", "supervisor")),
        [("MODIFY", "alice", (), ("103",), ("102",))],
        id="modify-roles-added-and-removed",
    ),
    pytest.param(
        desired(user("alice", "agent", enabled=False)),
        state(record("alice", "agent")),
        [("DISABLE", "alice", (), (), ("101",))],
        id="disable-enabled-false",
    ),
    pytest.param(
        desired(),
        state(record("alice", "agent")),
        [("DISABLE", "alice", (), (), ("101",))],
        id="disable-removed",
    ),
    pytest.param(
        desired(user("alice", "agent")), state(record("alice", "agent")), [], id="noop-unchanged"
    ),
    pytest.param(
        desired(user("alice", "agent", enabled=False)),
        state(record("alice", "agent", enabled=False)),
        [],
        id="noop-disabled-and-enabled-false",
    ),
    pytest.param(
        desired(user("alice", "agent", enabled=False)),
        None,
        [],
        id="noop-unmanaged-and-enabled-false",
    ),
    pytest.param(
        desired(),
        state(record("alice", "agent", enabled=False)),
        [],
        id="noop-removed-but-already-disabled",
    ),
    pytest.param(
        desired(user("zed", "agent"), user("bob", "agent", name="Robert"), user("amy", "agent")),
        state(record("bob", "agent"), record("old", "agent"), record("ann", "agent")),
        [
            ("CREATE", "amy", (), ("101",), ()),
            ("CREATE", "zed", (), ("101",), ()),
            ("MODIFY", "bob", ("name",), (), ()),
            ("DISABLE", "ann", (), (), ("101",)),
            ("DISABLE", "old", (), (), ("101",)),
        ],
        id="order-action-then-account",
    ),
]


@pytest.mark.parametrize(("wanted", "recorded", "expected"), CHANGES)
def test_changes(wanted: DesiredState, recorded: State | None, expected: list[tuple]) -> None:
    """Each desired/recorded pair plans exactly the expected changes, in send order."""
    assert [c.as_tuple() for c in planner.changes(wanted, recorded)] == expected


@pytest.mark.parametrize(
    ("wanted", "recorded", "reason"),
    [
        (desired(user("a", "agent")), None, Reason.NEW),
        (desired(user("a", "agent")), state(record("a", "agent", enabled=False)), Reason.REENABLE),
        (desired(user("a", "agent", name="X")), state(record("a", "agent")), Reason.CHANGED),
        (desired(user("a", enabled=False)), state(record("a")), Reason.DISABLED_IN_YAML),
        (desired(), state(record("a")), Reason.REMOVED),
    ],
)
def test_reasons(wanted: DesiredState, recorded: State | None, reason: Reason) -> None:
    """Every change carries the reason it was planned for."""
    (change,) = planner.changes(wanted, recorded)
    assert change.reason is reason


@pytest.mark.parametrize(
    ("wanted", "recorded", "wire"),
    [
        pytest.param(
            desired(user("a", "agent", "admin")),
            None,
            {
                "action": "CREATE",
                "userAccount": "a",
                "userName": "A",
                "email": "a@example.com",
                "roleIds": ["101", "109"],
            },
            id="create-sends-everything",
        ),
        pytest.param(
            desired(user("a", "agent", name="New")),
            state(record("a", "agent")),
            {"action": "MODIFY", "userAccount": "a", "userName": "New"},
            id="modify-name-only",
        ),
        pytest.param(
            desired(user("a", "agent", email="n@example.com")),
            state(record("a", "agent")),
            {"action": "MODIFY", "userAccount": "a", "email": "n@example.com"},
            id="modify-email-only",
        ),
        pytest.param(
            desired(user("a", "agent", "reporting")),
            state(record("a", "agent", "supervisor")),
            {"action": "MODIFY", "userAccount": "a", "roleIds": ["101", "103"]},
            id="modify-roles-sends-full-new-set",
        ),
        pytest.param(
            desired(user("a", "agent")),
            state(record("a", "agent", "reporting")),
            {"action": "MODIFY", "userAccount": "a", "roleIds": ["101"]},
            id="modify-role-removed",
        ),
        pytest.param(
            desired(),
            state(record("a", "agent")),
            {"action": "DISABLE", "userAccount": "a"},
            id="disable-sends-account-only",
        ),
    ],
)
def test_wire_carries_only_what_changed(
    wanted: DesiredState, recorded: State | None, wire: dict[str, object]
) -> None:
    """wire() is the createTask entry: changed fields only, roleIds as the full new set."""
    (change,) = planner.changes(wanted, recorded)
    assert change.wire() == wire


def test_recorded_roles_in_another_order_are_not_a_change() -> None:
    """A recorded state whose role ids are unsorted (hand-pushed) plans no MODIFY."""
    recorded = state(replace(record("a", "agent", "reporting"), role_ids=("103", "101")))
    assert planner.changes(desired(user("a", "agent", "reporting")), recorded) == ()


@pytest.mark.parametrize(
    ("count", "sizes"),
    [(0, []), (1, [1]), (100, [100]), (101, [100, 1]), (250, [100, 100, 50])],
)
def test_batches_of_at_most_100_in_order(count: int, sizes: list[int]) -> None:
    """Changes are cut, in send order, into createTask batches of at most 100 accounts."""
    made = planner.plan(desired(*(user(f"u{i:03d}", "agent") for i in range(count))), None)
    assert [len(b) for b in made.batches] == sizes
    assert [a for b in made.batches for a in b] == [c.account for c in made.changes]


def test_plan_is_deterministic() -> None:
    """The same inputs in a different insertion order give byte-identical plans."""
    users = [user(f"u{i}", "agent") for i in range(30)]
    records = [record(f"r{i}", "agent") for i in range(5)]
    first = planner.plan(desired(*users), state(*records))
    second = planner.plan(desired(*reversed(users)), state(*reversed(records)))
    assert planfile.dumps(first) == planfile.dumps(second)


def _removals(enabled: int, removed: int, policy: Policy | None = None, **kw: Any) -> Plan:
    """A plan over ``enabled`` managed accounts of which ``removed`` left the YAML."""
    records = [record(f"u{i:03d}", "agent") for i in range(enabled)]
    kept = [user(r.account, "agent") for r in records[removed:]]
    return planner.plan(desired(*kept, policy=policy), state(*records), **kw)


@pytest.mark.parametrize(
    ("policy", "managed", "limit", "rule"),
    [
        pytest.param(
            Policy(),
            50,
            10,
            "default: 10 accounts or 10% of 50 managed, whichever is larger",
            id="default-small",
        ),
        pytest.param(
            Policy(),
            300,
            30,
            "default: 10 accounts or 10% of 300 managed, whichever is larger",
            id="default-large-percent-wins",
        ),
        pytest.param(
            Policy(max_disable_count=5), 300, 5, "policy.max_disable: count 5", id="count"
        ),
        pytest.param(
            Policy(max_disable_percent=20),
            50,
            10,
            "policy.max_disable: 20% of 50 managed",
            id="percent",
        ),
        pytest.param(
            Policy(max_disable_count=5, max_disable_percent=20),
            50,
            5,
            "policy.max_disable: count 5 and 20% of 50 managed",
            id="both-count-stricter",
        ),
        pytest.param(
            Policy(max_disable_count=20, max_disable_percent=10),
            50,
            5,
            "policy.max_disable: count 20 and 10% of 50 managed",
            id="both-percent-stricter",
        ),
        pytest.param(
            Policy(max_disable_count=0), 50, 0, "policy.max_disable: count 0", id="count-zero"
        ),
    ],
)
def test_disable_limit(policy: Policy, managed: int, limit: int, rule: str) -> None:
    """The limit follows the policy (the stricter of count and percent) or the default."""
    made = _removals(managed, 1, policy)
    assert (made.guard.limit, made.guard.rule) == (limit, rule)


@pytest.mark.parametrize(
    ("removed", "override", "blocked"),
    [
        pytest.param(10, None, False, id="at-limit"),
        pytest.param(11, None, True, id="over-limit"),
        pytest.param(11, 11, False, id="override-equal-to-count"),
        pytest.param(11, 12, True, id="override-larger-than-count"),
        pytest.param(11, 10, True, id="override-smaller-than-count"),
    ],
)
def test_disable_guard_and_override(removed: int, override: int | None, blocked: bool) -> None:
    """Over the limit blocks; --allow-disables N lifts it only when N equals the disables."""
    made = _removals(50, removed, allow_disables=override)
    assert made.guard.disables == removed
    assert made.guard.blocked is blocked


def test_protected_account_blocks_even_with_override() -> None:
    """Disabling a protected account is blocked whatever the override."""
    policy = Policy(protected_accounts=frozenset({"u000"}))
    made = _removals(50, 1, policy, allow_disables=1)
    assert made.guard.protected_hits == ("u000",)
    assert made.guard.blocked is True
    assert made.guard.over_limit is False


@pytest.mark.parametrize(
    ("guard", "over", "blocked"),
    [
        (Guard(disables=0, limit=0, rule=""), False, False),
        (Guard(disables=3, limit=2, rule=""), True, True),
        (Guard(disables=3, limit=2, rule="", override=3), False, False),
        (Guard(disables=1, limit=2, rule="", protected_hits=("x",)), False, True),
    ],
)
def test_guard_verdict(guard: Guard, over: bool, blocked: bool) -> None:
    """Guard.over_limit and Guard.blocked follow disables, limit, override and protection."""
    assert (guard.over_limit, guard.blocked) == (over, blocked)


def test_notes_for_unmanaged_disabled_accounts_and_lineage() -> None:
    """A plan notes enabled:false accounts it does nothing for; no state means no lineage."""
    made = planner.plan(desired(user("a", enabled=False)), None)
    assert made.changes == ()
    assert made.lineage is None
    assert made.serial == 0
    assert made.notes == (
        "1 account(s) marked enabled: false are not managed yet; nothing is sent for them",
    )


# -- saved plans ---------------------------------------------------------------------------

SAMPLE = planner.plan(
    desired(
        user("new", "agent", "admin"),
        user("changed", "agent", name="Changed Name"),
        user("gone", enabled=False),
    ),
    state(record("changed", "reporting"), record("gone", "agent"), record("removed", "agent")),
    allow_disables=2,
    input_path="desired/",
    state_location=".reconciler/state.json",
)


def test_plan_file_round_trip() -> None:
    """loads(dumps(plan)) writes back the same bytes."""
    text = planfile.dumps(SAMPLE)
    assert planfile.dumps(planfile.loads(text, where="p.json")) == text


def test_plan_file_is_canonical() -> None:
    """Identical input gives identical bytes, with sorted keys and a final newline."""
    assert planfile.dumps(SAMPLE) == planfile.dumps(replace(SAMPLE))
    text = planfile.dumps(SAMPLE)
    assert text.endswith("}\n")
    document = json.loads(text)
    assert document == json.loads(json.dumps(planfile.to_json(SAMPLE)))
    keys = [line.split('"')[1] for line in text.splitlines() if line.startswith('  "')]
    assert keys == sorted(document)


def test_plan_file_has_one_compact_line_per_change() -> None:
    """Each change is one line of compact JSON (no indent inside: the C encoder), and the
    lines without ``source`` are exactly the canonical text the changes digest covers."""
    text = planfile.dumps(SAMPLE)
    lines = text.splitlines()
    start = lines.index('  "changes": [') + 1
    written = lines[start : start + len(SAMPLE.changes)]
    assert lines[start + len(SAMPLE.changes)] == "  ],"
    documents = [json.loads(line.strip().rstrip(",")) for line in written]
    assert [d["account"] for d in documents] == [c.account for c in SAMPLE.changes]
    canonical = [
        json.dumps(planfile.reviewed(d), sort_keys=True, separators=(",", ":")) for d in documents
    ]
    for line, reviewed in zip(written, canonical, strict=True):
        assert line.strip().rstrip(",").endswith(reviewed[1:])
    hashed = hashlib.sha256(("[" + ",".join(canonical) + "]").encode()).hexdigest()
    assert json.loads(text)["changes_digest"] == "sha256:" + hashed


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(
            lambda d: d.update(format_version=5), "written by a newer reconciler", id="newer-format"
        ),
        pytest.param(lambda d: d.pop("changes"), "not a valid saved plan", id="missing-changes"),
        pytest.param(
            lambda d: d.update(input_digest="md5:x"), "not a valid saved plan", id="bad-digest"
        ),
        pytest.param(
            lambda d: d["changes"][0].update(action="DELETE"),
            "not a valid saved plan",
            id="unknown-action",
        ),
        pytest.param(
            lambda d: d["batches"].append({"index": 9, "accounts": ["x"] * 101}),
            "not a valid saved plan",
            id="batch-over-100",
        ),
    ],
)
def test_plan_file_refused(mutate: Callable[[dict[str, Any]], object], message: str) -> None:
    """A newer or invalid saved plan is refused with PlanError."""
    data = json.loads(planfile.dumps(SAMPLE))
    mutate(data)
    with pytest.raises(PlanError, match=message):
        planfile.loads(json.dumps(data), where="p.json")


@pytest.mark.parametrize("text", ["", "not json", "[]", "null", "{}"])
def test_non_plan_text_refused(text: str) -> None:
    """Text that is not a plan object is refused with PlanError, not a crash."""
    with pytest.raises(PlanError):
        planfile.loads(text, where="p.json")


FRESH = state(record("changed", "reporting"), record("gone", "agent"), record("removed", "agent"))


@pytest.mark.parametrize(
    ("current", "digest", "message"),
    [
        pytest.param(
            replace(FRESH, lineage="ffffffff-0000-4000-8000-000000000000"),
            DIGEST,
            "state lineage",
            id="lineage",
        ),
        pytest.param(
            replace(FRESH, serial=4),
            DIGEST,
            "serial 3, but the state .reconciler/state.json is now at serial 4",
            id="serial",
        ),
        pytest.param(None, DIGEST, "lineage", id="state-gone"),
        pytest.param(FRESH, "sha256:" + "cd" * 32, "desired-state files changed", id="digest"),
    ],
)
def test_check_fresh_refuses_changes(current: State | None, digest: str, message: str) -> None:
    """A saved plan is refused when the state's lineage/serial or the input digest changed."""
    with pytest.raises(StalePlan, match=message):
        planfile.check_fresh(SAMPLE, current, digest)


def test_check_fresh_accepts_the_same_state_and_input() -> None:
    """An unchanged state and input pass (and a None digest skips the input check)."""
    planfile.check_fresh(SAMPLE, FRESH, DIGEST)
    planfile.check_fresh(SAMPLE, FRESH, None)
    assert SAMPLE.lineage == LINEAGE
    assert [c.action for c in SAMPLE.changes] == [
        Action.CREATE,
        Action.MODIFY,
        Action.DISABLE,
        Action.DISABLE,
    ]


def test_plan_file_in_pieces_is_the_same_text_across_blocks() -> None:
    """The pieces written to stdout are exactly ``dumps``, also when the changes span more
    than one block of lines, and the text still reads back with its digest verified."""
    many = planner.plan(
        desired(*(user(f"u{i:05d}", "agent", "admin", name=f"Zoë {i}") for i in range(5000))),
        None,
        input_path="desired/",
        state_location=".reconciler/state.json",
    )
    pieces = list(planfile.pieces(many))
    text = planfile.dumps(many)
    assert "".join(pieces) == text
    assert len(pieces) > 5000 // jsontext.BLOCK + 2  # written a block at a time
    assert planfile.dumps(planfile.loads(text, where="p.json")) == text
    empty = replace(many, changes=(), batches=())
    assert "".join(planfile.pieces(empty)) == planfile.dumps(empty)
    assert json.loads(planfile.dumps(empty))["changes"] == []


@pytest.mark.parametrize(
    "value",
    [
        {"b": [1, 2.5, None, True], "a": {"z": 'Zoë\u2028\x00"\\', "y": ()}},
        ["\ud83d\ude00", {"é": -0.0, "1": 10**20}],
        "plain",
        float("inf"),
    ],
)
def test_the_encoders_made_once_match_json_dumps(value: Any) -> None:
    """The encoders called directly (and their fallback without the C accelerator) write
    what ``json.dumps`` writes with the same options: the digest's definition holds."""
    options: dict[str, Any] = {"sort_keys": True, "separators": (",", ":")}
    assert planfile._canonical(value) == json.dumps(value, **options)
    assert jsontext.encoder(ascii_only=False, sort_keys=True)(value) == json.dumps(
        value, ensure_ascii=False, **options
    )
    assert jsontext.encoder(ascii_only=True, sort_keys=True)(value) == json.dumps(value, **options)


def test_the_encoder_falls_back_without_the_c_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``c_make_encoder`` the standard encoder writes the same text."""
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    fallback = jsontext.encoder(ascii_only=False, sort_keys=True)
    assert fallback({"b": "Zoë", "a": [1]}) == '{"a":[1],"b":"Zoë"}'


def test_the_encoder_refuses_what_json_cannot_hold() -> None:
    """A value JSON has no form for is an error, never silently turned into text."""
    with pytest.raises(TypeError):
        planfile._canonical({"a": object()})


def test_the_first_apply_creates_each_role_once_in_order() -> None:
    """With no state every account is a CREATE whose roles are sorted and distinct, in
    account order, and no rename note is looked for (there is nothing disabled)."""
    made = planner.plan(
        desired(user("b", "admin", "agent", "agent"), user("a", "reporting"), user("c")), None
    )
    assert [c.as_tuple() for c in made.changes] == [
        ("CREATE", "a", (), ("103",), ()),
        ("CREATE", "b", (), ("101", "109"), ()),
        ("CREATE", "c", (), (), ()),
    ]
    assert [c.reason for c in made.changes] == [Reason.NEW] * 3


@pytest.mark.parametrize("name", ["Li Wei", "Li Wei 2"])
@pytest.mark.parametrize("email", ["li@example.com", "li.wei@example.com"])
@pytest.mark.parametrize("roles", [("1",), ("1", "2"), ("2", "1"), ()])
def test_field_changes_compares_every_field(name: str, email: str, roles: tuple[str, ...]) -> None:
    """The fields spelled out in ``field_changes`` are every ``Field``, in its order, and
    the role ids are compared as sets."""
    before = AccountRecord(
        account="li", name="Li Wei", email="li@example.com", role_ids=("1",), enabled=True
    )
    after = replace(before, name=name, email=email, role_ids=roles)
    fields, added, removed = diffing.field_changes(before, after)
    assert fields == tuple(
        FieldChange(field=f, before=getattr(before, f), after=getattr(after, f))
        for f in Field
        if getattr(before, f) != getattr(after, f)
    )
    assert (set(added), set(removed)) == (set(roles) - {"1"}, {"1"} - set(roles))
    assert list(added) == sorted(added)
    assert list(removed) == sorted(removed)


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.glob("plan-*.json")))
def test_tallies_count_each_change_by_its_kind(name: str) -> None:
    """``tallies`` (counted by action, adopts apart) agrees with each change's ``kind``,
    also where an adopt is a DISABLE (an imported account declared disabled)."""
    plan = planfile.loads((GOLDEN / name).read_text(encoding="utf-8"), where=name)
    disabling = tuple(
        replace(c, action=Action.DISABLE) if c.reason is Reason.ADOPT else c for c in plan.changes
    )
    for made in (plan, replace(plan, changes=disabling)):
        for kind in Kind:
            assert made.tallies()[kind] == sum(1 for c in made.changes if c.kind is kind), kind
            assert made.tally(kind) == made.tallies()[kind]
