"""The desired policy against the one recorded at the last apply: the pure review
(``plan.policy_review``), the plan's JSON round trip, and how text and Markdown show it."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from reconciler.desired.model import DesiredState, Policy
from reconciler.plan import expiry, planfile, policy_review
from reconciler.plan.model import Plan
from reconciler.render import markdown, text
from reconciler.stores.model import State
from reconciler.stores.recorded_policy import PolicyRecord
from reconciler.values import replace
from tests.support.builders import desired, record, state, user

AT = dt.date(2026, 12, 1)
NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
USERS = ("alice", "bob", "carol", "dave", "erin")


def _plan(wanted: DesiredState, recorded: State | None) -> Plan:
    return expiry.plan_at(wanted, recorded, at=AT)


def _applied_under(policy: Policy, *accounts: str) -> State:
    """The state an apply of ``accounts`` under ``policy`` leaves."""
    base = desired(*(user(a, "agent") for a in accounts), policy=policy)
    recorded = state(*(record(a, "agent") for a in accounts))
    return replace(recorded, policy=policy_review.record_of(base))


def test_no_recorded_policy_is_a_change_to_record_it() -> None:
    """A state from before format 3 records no policy: nothing to compare, nothing loosened,
    but apply records it, so the plan has a change and says so."""
    plan = _plan(desired(user("alice", "agent")), state(record("alice", "agent")))
    assert plan.policy is not None
    assert plan.policy.recorded is None
    assert plan.policy.changes == ()
    assert not plan.policy.loosened
    assert plan.has_changes
    assert "the state records no policy yet" in text.render(plan, now=NOW)
    assert "the state records no policy yet" in markdown.render(plan, now=NOW)


def test_a_new_state_records_its_policy_with_the_first_changes() -> None:
    """No state yet: the policy is no change of its own (an empty plan stays empty)."""
    plan = _plan(desired(), None)
    assert plan.policy is not None
    assert not plan.has_changes


def test_the_same_policy_is_no_change() -> None:
    """The policy recorded at the last apply, unchanged: nothing to show, nothing to apply."""
    policy = Policy(protected_accounts=frozenset({"alice"}), max_disable_count=2)
    recorded = _applied_under(policy, *USERS)
    plan = _plan(desired(*(user(a, "agent") for a in USERS), policy=policy), recorded)
    assert plan.policy is not None
    assert plan.policy.changes == ()
    assert not plan.has_changes


def test_a_policy_only_change_is_a_change() -> None:
    """A tightening alone is not a warning, but it is a change apply records."""
    recorded = _applied_under(Policy(), *USERS)
    tighter = Policy(protected_accounts=frozenset({"alice"}), max_disable_count=1)
    plan = _plan(desired(*(user(a, "agent") for a in USERS), policy=tighter), recorded)
    assert plan.changes == ()
    assert plan.policy is not None
    assert [(c.setting, c.loosened) for c in plan.policy.changes] == [
        ("max_disable", False),
        ("protected_accounts[alice]", False),
    ]
    assert plan.has_changes
    assert not plan.policy.loosened


def test_unprotecting_and_disabling_an_account_is_named_at_the_change() -> None:
    """alice leaves protected_accounts and is disabled in the same plan: the loosening is
    a warning and the disable says it passes only because of it."""
    recorded = _applied_under(Policy(protected_accounts=frozenset({"alice"})), *USERS)
    wanted = desired(*(user(a, "agent") for a in USERS[1:]))
    plan = _plan(wanted, recorded)
    assert plan.policy is not None
    assert plan.policy.loosened
    assert [c.message for c in plan.policy.changes] == [
        "policy.protected_accounts[alice]: protected -> - (loosened)"
    ]
    assert plan.policy.uses_of("alice") == (
        "was protected (policy.protected_accounts) at the last apply",
    )
    assert not plan.guard.blocked  # the desired policy's own guard rail lets it pass


def test_raising_max_disable_to_pass_its_disables_is_named() -> None:
    """max_disable raised from 1 to 50 while disabling 3: each disable is named."""
    recorded = _applied_under(Policy(max_disable_count=1), *USERS)
    wanted = desired(*(user(a, "agent") for a in USERS[3:]), policy=Policy(max_disable_count=50))
    plan = _plan(wanted, recorded)
    assert plan.policy is not None
    assert [(c.message, c.loosened) for c in plan.policy.changes] == [
        ("policy.max_disable: count 1 -> count 50 (loosened)", True)
    ]
    assert sorted({u.account for u in plan.policy.uses}) == ["alice", "bob", "carol"]
    assert "allowed 1" in plan.policy.uses_of("alice")[0]


def test_a_raise_that_the_plan_does_not_use_is_still_a_warning() -> None:
    """A looser limit with no disable: loosened, and no change depends on it."""
    recorded = _applied_under(Policy(max_disable_percent=2), *USERS)
    wanted = desired(*(user(a, "agent") for a in USERS), policy=Policy(max_disable_percent=50))
    plan = _plan(wanted, recorded)
    assert plan.policy is not None
    assert plan.policy.loosened
    assert plan.policy.uses == ()


def test_dropping_max_grant_days_and_granting_forever_is_named() -> None:
    """max_grant_days for admin removed, and admin granted with no end date."""
    limited = Policy(max_grant_days={"admin": 30})
    recorded = _applied_under(limited, *USERS)
    users = [user(a, "agent") for a in USERS[1:]]
    wanted = desired(user("alice", "agent", "admin"), *users)
    plan = _plan(wanted, recorded)
    assert plan.policy is not None
    assert [(c.setting, c.before, c.after, c.loosened) for c in plan.policy.changes] == [
        ("max_grant_days[admin]", "30 days", "-", True)
    ]
    assert plan.policy.uses_of("alice") == (
        "grants admin with no end date; the policy.max_grant_days of the last apply allowed "
        "at most 30 days",
    )


@pytest.mark.parametrize(
    ("before", "after", "loosened"),
    [(30, 90, True), (90, 30, False), (None, 30, False)],
    ids=["longer", "shorter", "added"],
)
def test_max_grant_days_longer_is_loosened(
    before: int | None, after: int | None, loosened: bool
) -> None:
    """A longer (or removed) limit loosens; a shorter or a new one tightens."""
    old = Policy(max_grant_days={} if before is None else {"admin": before})
    new = Policy(max_grant_days={} if after is None else {"admin": after})
    recorded = _applied_under(old, *USERS)
    plan = _plan(desired(*(user(a, "agent") for a in USERS), policy=new), recorded)
    assert plan.policy is not None
    assert [c.loosened for c in plan.policy.changes] == [loosened]


def test_a_role_no_longer_sensitive_is_loosened_and_its_grant_named() -> None:
    """admin loses ``sensitive`` and is granted: its grant is no longer flagged, so the
    plan says it was a sensitive role at the last apply."""
    recorded = _applied_under(Policy(), *USERS)
    plain = replace(desired(), roles={**desired().roles})
    roles = dict(plain.roles)
    roles["admin"] = replace(roles["admin"], sensitive=False)
    users = [user("alice", "agent", "admin"), *(user(a, "agent") for a in USERS[1:])]
    wanted = replace(desired(*users), roles=roles)
    plan = _plan(wanted, recorded)
    assert plan.policy is not None
    assert [c.message for c in plan.policy.changes] == [
        "policy.sensitive[admin]: sensitive -> - (loosened)"
    ]
    assert plan.policy.uses_of("alice") == ("grants admin, a sensitive role at the last apply",)


def test_timezone_and_notice_changes_are_not_loosening() -> None:
    """Changed, shown, not warned."""
    recorded = _applied_under(Policy(), *USERS)
    other = Policy(timezone="Europe/Berlin", expiry_notice_days=7)
    plan = _plan(desired(*(user(a, "agent") for a in USERS), policy=other), recorded)
    assert plan.policy is not None
    assert [(c.setting, c.loosened) for c in plan.policy.changes] == [
        ("timezone", False),
        ("expiry_notice_days", False),
    ]


def _loosened_plan() -> Plan:
    recorded = _applied_under(Policy(protected_accounts=frozenset({"alice"})), *USERS)
    return _plan(desired(*(user(a, "agent") for a in USERS[1:])), recorded)


def test_text_shows_policy_changes_first_and_at_the_change() -> None:
    """Before any change: the section and the warning; at alice's disable: why; in the
    summary: the warning again."""
    shown = text.render(_loosened_plan(), now=NOW)
    section = shown.index("Policy changes since the last apply")
    assert section < shown.index("reconciler will perform the following actions")
    assert "  ! policy.protected_accounts[alice]: protected -> - (loosened)" in shown
    assert (
        "! passes only because the policy loosened: was protected "
        "(policy.protected_accounts) at the last apply" in shown
    )
    summary = shown[shown.index("Plan: ") :]
    assert "Warning: the policy loosened since the last apply" in summary
    assert "1 change of this plan passes only because of it: alice" in summary


def test_markdown_warns_before_the_summary_table() -> None:
    """A [!WARNING] and the list of policy changes come before the counts."""
    shown = markdown.render(_loosened_plan(), now=NOW)
    warning = shown.index("> **Policy loosened:**")
    assert warning < shown.index("| | accounts |")
    assert "- ⚠️ policy.protected_accounts[alice]: protected -&gt; - (loosened)" in shown
    assert "`alice` passes only because of it" in shown
    row = next(line for line in shown.splitlines() if "was protected" in line and "|" in line)
    assert row.split(" | ")[1] == "`alice`"
    assert "⚠️ passes only because the policy loosened: was protected" in row


def test_the_policy_review_survives_a_saved_plan() -> None:
    """JSON: ``policy`` with ``changes``, ``loosened`` and ``uses``; read back the same; the
    changes digest still verifies."""
    plan = replace(_loosened_plan(), state_location="state.json", input_path="desired")
    document = json.loads(planfile.dumps(plan))
    assert document["format_version"] == 4
    assert document["policy"]["loosened"] is True
    assert document["policy"]["changes"][0]["setting"] == "protected_accounts[alice]"
    assert document["policy"]["uses"] == [
        {"account": "alice", "why": "was protected (policy.protected_accounts) at the last apply"}
    ]
    back = planfile.loads(planfile.dumps(plan), where="p.json")
    assert back.policy == plan.policy


def test_record_of_keeps_what_the_guard_rails_use() -> None:
    """The recorded policy: max_disable, protected accounts, grant limits, sensitive roles
    by id, timezone, notice window."""
    policy = Policy(
        max_disable_count=3,
        max_disable_percent=5.0,
        protected_accounts=frozenset({"bob", "alice"}),
        max_grant_days={"admin": 30},
        timezone="Europe/Berlin",
        expiry_notice_days=7,
    )
    assert policy_review.record_of(desired(policy=policy)) == PolicyRecord(
        max_disable_count=3,
        max_disable_percent=5.0,
        protected_accounts=("alice", "bob"),
        max_grant_days={"admin": 30},
        sensitive_roles={"109": "admin"},
        timezone="Europe/Berlin",
        expiry_notice_days=7,
    )


def test_many_dependent_changes_keep_the_markdown_under_the_comment_limit() -> None:
    """1500 disables that pass only because max_disable was raised: the Markdown names some
    and counts the rest, and still fits one GitHub comment."""
    accounts = [f"user{i:04d}" for i in range(3000)]
    recorded = _applied_under(Policy(max_disable_count=1), *accounts)
    kept = [user(a, "agent") for a in accounts[1500:]]
    plan = _plan(desired(*kept, policy=Policy(max_disable_count=2000)), recorded)
    assert plan.policy is not None
    assert len(plan.policy.uses) == 1500
    shown = markdown.render(plan, now=NOW)
    assert len(shown) <= markdown.GITHUB_COMMENT_LIMIT
    assert "more in the saved plan" in shown
    assert "> **Policy loosened:**" in shown
