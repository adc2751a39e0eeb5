"""End dates against a date, pure: the effective desired state, reasons, expiring soon,
review notes, revocations, and a saved plan made again at another date."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from reconciler.desired.model import Policy, User
from reconciler.errors import PlanError, StalePlan
from reconciler.plan import expiry, integrity, planfile, planner, review
from reconciler.plan.model import Action, Plan, Reason
from reconciler.stores.model import AccountRecord
from reconciler.values import replace
from tests.support.builders import desired, record, state, user

D = dt.date
AT = D(2026, 12, 10)
ADMIN, AGENT, REPORTING = "109", "101", "103"


def test_a_state_without_end_dates_is_its_own_effective_state() -> None:
    """No dated account: nothing is copied, the planner sees the desired state itself."""
    wanted = desired(user("a", "agent"), user("b", "agent", "admin"))
    assert expiry.evaluate(wanted, AT).effective is wanted


@pytest.mark.parametrize(
    ("until", "holds"),
    [(D(2026, 12, 9), False), (D(2026, 12, 10), False), (D(2026, 12, 11), True)],
)
def test_until_is_the_first_day_without_the_role(until: dt.date, holds: bool) -> None:
    """A grant ending on the date is already gone; one ending the day after still holds."""
    wanted = desired(user("a", "agent", "admin", until={"admin": until}))
    effective = expiry.evaluate(wanted, AT).effective.users["a"]
    assert (ADMIN in effective.role_ids) is holds
    assert ("admin" in effective.roles) is holds


@pytest.mark.parametrize(
    ("expires", "enabled"),
    [(D(2026, 12, 10), False), (D(2026, 12, 11), True)],
)
def test_expires_is_the_first_day_the_account_is_disabled(expires: dt.date, enabled: bool) -> None:
    """An account is disabled from its expires day on."""
    wanted = desired(user("a", "agent", expires=expires))
    assert expiry.evaluate(wanted, AT).effective.users["a"].enabled is enabled


def test_changes_carry_out_end_dates_with_their_reasons() -> None:
    """An ended grant is a MODIFY removing the role (grant_expired), an ended account a
    DISABLE (expired); a modify that also changes a name keeps its reason and names the
    end date."""
    wanted = desired(
        user("g", "agent", "admin", until={"admin": D(2026, 12, 1)}),
        user("x", "agent", expires=D(2026, 12, 5)),
        user("n", "agent", "admin", name="New Name", until={"admin": D(2026, 12, 2)}),
    )
    recorded = state(
        record("g", "agent", "admin"), record("x", "agent"), record("n", "agent", "admin")
    )
    plan = expiry.plan_at(wanted, recorded, at=AT)
    changes = {c.account: c for c in plan.changes}
    assert (changes["g"].action, changes["g"].reason) == (Action.MODIFY, Reason.GRANT_EXPIRED)
    assert changes["g"].roles_removed == (ADMIN,)
    assert [(e.role_id, e.on) for e in changes["g"].expired] == [(ADMIN, D(2026, 12, 1))]
    assert (changes["x"].action, changes["x"].reason) == (Action.DISABLE, Reason.EXPIRED)
    assert [(e.role_id, e.on) for e in changes["x"].expired] == [(None, D(2026, 12, 5))]
    assert changes["n"].reason is Reason.CHANGED
    assert [e.role_id for e in changes["n"].expired] == [ADMIN]
    assert plan.at == AT
    assert plan.guard.disables == 1  # an expiry disable counts like any other


def test_an_end_date_already_carried_out_plans_nothing() -> None:
    """The role is gone from the state already: no change, and no warning in the plan."""
    wanted = desired(user("g", "agent", "admin", until={"admin": D(2026, 12, 1)}))
    assert expiry.plan_at(wanted, state(record("g", "agent")), at=AT).changes == ()


def test_a_new_account_gets_no_ended_grant() -> None:
    """A CREATE never sends a role whose grant has already ended."""
    wanted = desired(user("g", "agent", "admin", until={"admin": D(2026, 12, 1)}))
    (change,) = expiry.plan_at(wanted, None, at=AT).changes
    assert change.after.role_ids == (AGENT,)
    assert change.expired == ()


def test_a_declared_disable_keeps_its_own_reason() -> None:
    """enabled: false and an expires that passed: the YAML's disable is the reason."""
    wanted = desired(user("x", "agent", enabled=False, expires=D(2026, 12, 1)))
    (change,) = expiry.plan_at(wanted, state(record("x", "agent")), at=AT).changes
    assert change.reason is Reason.DISABLED_IN_YAML


def test_the_guard_blocks_too_many_expiry_disables() -> None:
    """Expired accounts count against policy.max_disable like any other disable."""
    wanted = desired(
        *(user(f"u{i}", "agent", expires=D(2026, 12, 1)) for i in range(3)),
        policy=Policy(max_disable_count=2),
    )
    recorded = state(*(record(f"u{i}", "agent") for i in range(3)))
    plan = expiry.plan_at(wanted, recorded, at=AT)
    assert plan.guard.blocked


@pytest.mark.parametrize(
    ("ends", "listed"),
    [
        (D(2026, 12, 10), False),
        (D(2026, 12, 11), True),
        (D(2026, 12, 24), True),
        (D(2026, 12, 25), False),
    ],
)
def test_expiring_soon_is_within_the_notice_window(ends: dt.date, listed: bool) -> None:
    """From the day after the date to notice_days after it (14 by default)."""
    wanted = desired(user("a", "agent", "admin", until={"admin": ends}))
    plan = expiry.plan_at(wanted, state(record("a", "agent", "admin")), at=AT)
    assert bool(plan.expiring) is listed
    if listed:
        (item,) = plan.expiring
        assert (item.account, item.role_id, item.on) == ("a", ADMIN, ends)
        assert item.days_left == (ends - AT).days


def test_expiring_soon_lists_accounts_and_follows_the_policy_window() -> None:
    """An account's expires is listed too (role None), soonest first; the window is the
    policy's."""
    wanted = desired(
        user("late", "agent", expires=D(2026, 12, 13)),
        user("early", "agent", "admin", until={"admin": D(2026, 12, 12)}),
        user("far", "agent", expires=D(2026, 12, 14)),
        policy=Policy(expiry_notice_days=3),
    )
    plan = expiry.plan_at(wanted, None, at=AT)
    assert [(i.account, i.role_id, i.days_left) for i in plan.expiring] == [
        ("early", ADMIN, 2),
        ("late", None, 3),
    ]
    assert plan.notice_days == 3


def test_a_rename_is_noted() -> None:
    """A DISABLE and a CREATE with the same email (any case): the API cannot rename."""
    wanted = desired(user("wei.li", "agent", email="Li.Wei@example.com"))
    plan = expiry.plan_at(wanted, state(record("li.wei", "agent")), at=AT)
    assert plan.notes == (
        "looks like a rename: the API cannot rename an account; li.wei will be disabled and "
        "wei.li created",
    )


def test_no_rename_note_for_different_emails() -> None:
    """A disable and an unrelated create are not a rename."""
    changes = expiry.plan_at(
        desired(user("new", "agent")), state(record("old", "agent")), at=AT
    ).changes
    assert review.renames(changes) == ()


@pytest.mark.parametrize(
    ("recorded", "wanted", "revokes"),
    [
        (record("a", "agent", "admin"), user("a", "agent"), True),
        (record("a", "agent"), user("a", "agent", enabled=False), True),
        (record("a", "agent"), user("a", "agent", "admin"), False),
        (record("a", "agent"), user("a", "agent", name="Other"), False),
        (record("a", "agent", "admin"), user("a", "reporting"), False),
        (None, user("a", "agent"), False),
        (replace(record("a", "agent", "admin"), adopted=True), user("a", "agent"), False),
    ],
)
def test_revokes_only(recorded: AccountRecord | None, wanted: User, revokes: bool) -> None:
    """Only role removals and disables take access away and nothing else."""
    records = (recorded,) if recorded is not None else ()
    (change,) = planner.plan(desired(wanted), state(*records)).changes
    assert change.revokes_only is revokes


# -- a saved plan made again at another date --------------------------------------------------

WANTED = desired(
    user("g", "agent", "admin", until={"admin": D(2026, 12, 15)}),
    user("x", "agent", expires=D(2026, 12, 20)),
)
RECORDED = state(record("g", "agent", "admin"), record("x", "agent"))


def _saved(at: dt.date) -> Plan:
    made = expiry.plan_at(WANTED, RECORDED, at=at, state_location="s.json")
    return planfile.loads(planfile.dumps(made), where="p.json")


def test_nothing_ended_in_between_replans_the_same() -> None:
    """Saved on the 10th, applied on the 14th: the same changes (none)."""
    made = integrity.replan(_saved(AT), WANTED, RECORDED, at=D(2026, 12, 14), against="x")
    assert made.changes == ()
    assert made.at == D(2026, 12, 14)


def test_a_grant_that_ended_since_makes_the_plan_stale() -> None:
    """Saved on the 10th, applied on the 16th: the grant ended on the 15th."""
    with pytest.raises(StalePlan) as stale:
        integrity.replan(_saved(AT), WANTED, RECORDED, at=D(2026, 12, 16), against="x")
    assert stale.value.message == (
        "stale plan: 1 grant expired since the plan was made (2026-12-10 → 2026-12-16): "
        "admin of g on 2026-12-15 (users.yaml:1); nothing was sent"
    )


def test_two_ends_are_counted_and_named() -> None:
    """A grant and an account: both named, counted apart."""
    with pytest.raises(StalePlan) as stale:
        integrity.replan(_saved(AT), WANTED, RECORDED, at=D(2026, 12, 21), against="x")
    assert "1 grant and 1 account expired since the plan was made" in stale.value.message
    assert "account x on 2026-12-20" in stale.value.message


def test_another_difference_is_not_blamed_on_dates() -> None:
    """A plan of other changes (made from another input) is refused as not the plan made
    again, not as stale by date, although an end date passed in between too."""
    other = desired(
        user("g", "agent", "admin", name="Renamed", until={"admin": D(2026, 12, 15)}),
        user("x", "agent", expires=D(2026, 12, 20)),
    )
    saved = expiry.plan_at(other, RECORDED, at=AT)
    with pytest.raises(PlanError) as refused:
        integrity.replan(saved, WANTED, RECORDED, at=D(2026, 12, 16), against="x")
    assert not isinstance(refused.value, StalePlan)
    assert refused.value.message.startswith("the saved plan is not the plan x gives: ")


def test_a_saved_plan_keeps_its_date_and_end_dates() -> None:
    """``at``, the expiring list and each change's end dates survive the JSON round trip."""
    made = expiry.plan_at(WANTED, RECORDED, at=D(2026, 12, 16), state_location="s.json")
    read = planfile.loads(planfile.dumps(made), where="p.json")
    assert (read.at, read.timezone, read.notice_days) == (made.at, "UTC", 14)
    assert read.expiring == made.expiring
    assert [c.expired for c in read.changes] == [c.expired for c in made.changes]
    assert planfile.dumps(read) == planfile.dumps(made)


def test_why_is_shown_but_not_reviewed() -> None:
    """``why`` (the end dates in words) is outside the changes digest, like ``source``: a
    saved plan whose words differ still reads, and still matches the plan made again."""
    made = expiry.plan_at(WANTED, RECORDED, at=D(2026, 12, 21), state_location="s.json")
    document = json.loads(planfile.dumps(made))
    assert document["changes"][0]["why"] == ["admin expired on 2026-12-15 (users.yaml:1)"]
    document["changes"][0]["why"] = ["reworded"]
    read = planfile.loads(json.dumps(document), where="p.json")
    assert integrity.difference(read, made) is None
