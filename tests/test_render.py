"""Renderings of a plan: text, JSON and Markdown against golden files; colour; access by role."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable

import pytest

from reconciler.desired.model import Policy
from reconciler.plan import access, expiry, planfile, planner, policy_review
from reconciler.plan.model import Decision, EventDecision, Plan
from reconciler.render import common, markdown, text
from reconciler.values import replace
from tests.support.builders import desired, record, state, user

Golden = Callable[[str, str], None]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)

PG_LOCATION = "postgresql://reconciler:***@db.example.com/identity?workspace=prod"

EVENT = EventDecision(
    event_id="evt-1",
    account="bob",
    target="crm",
    reason="quota exceeded",
    created_at="unknown",  # unparsable on purpose: the age is "?" and the golden stays stable
    updated_at="unknown",
    attempts=1,
    decision=Decision.RETRY,
    why="attempt 2 of 3",
)

SMALL = planner.plan(
    desired(
        user("alice", "agent", "admin", line=3),
        user("bob", "agent", "reporting", name="Robert", line=7),
        user("carol", "agent", email="carol@new.example.com", line=11),
        user("dave", "reporting", enabled=False, line=15),
        user("erin", "supervisor", line=19),
    ),
    state(
        record("bob", "agent", "supervisor"),
        record("carol", "agent"),
        record("dave", "reporting"),
        record("erin", "agent", enabled=False),
        record("frank", "admin"),
    ),
    events=(EVENT,),
    events_refreshed=True,
    input_path="desired/",
    state_location="desired/.reconciler/state.json",
)

BLOCKED = planner.plan(
    desired(
        user("keep", "agent"),
        policy=Policy(max_disable_count=1, protected_accounts=frozenset({"boss"})),
    ),
    state(record("keep", "agent"), record("boss", "admin"), record("temp", "agent")),
    allow_disables=3,
    state_location=PG_LOCATION,
    workspace="prod",
)

NOTHING = planner.plan(
    desired(user("a", "agent")), state(record("a", "agent")), state_location="state.json"
)

# No state at the location: every declared account is new, and the plan says so loudly.
NEW = planner.plan(
    desired(user("a", "agent"), user("b", "agent", "admin")),
    None,
    input_path="desired/",
    state_location=PG_LOCATION,
    workspace="prod",
)

# Imported accounts: one declared enabled (adopt), one disabled (a DISABLE that verifies it),
# one removed from the YAML (a DISABLE like any other), next to a verified modify.
ADOPT = planner.plan(
    desired(
        user("olga", "agent", "admin", line=3),
        user("pia", "agent", enabled=False, line=7),
        user("quinn", "reporting", name="Quinn Q", line=11),
    ),
    state(
        replace(record("olga", "agent"), adopted=True),
        replace(record("pia", "agent", enabled=False), adopted=True),
        replace(record("rex", "reporting"), adopted=True),
        record("quinn", "reporting"),
    ),
    state_location="desired/.reconciler/state.json",
)


# End dates at 2026-12-10: an expired grant (sam), an expired account (tina), a grant and
# an account ending soon (uma, victor), a rename (wei.li replaces li.wei, same email), and a
# sensitive grant that goes on (uma keeps admin until the 15th).
AT = dt.date(2026, 12, 10)
DATED = expiry.plan_at(
    desired(
        user("sam", "agent", "admin", line=3, until={"admin": dt.date(2026, 12, 1)}),
        user("tina", "agent", line=7, expires=dt.date(2026, 12, 10)),
        user("uma", "agent", "admin", line=11, until={"admin": dt.date(2026, 12, 15)}),
        user("victor", "reporting", line=15, expires=dt.date(2026, 12, 24)),
        user("wei.li", "agent", email="li.wei@example.com", line=19),
    ),
    state(
        record("sam", "agent", "admin"),
        record("tina", "agent"),
        record("uma", "agent"),
        record("victor", "reporting"),
        record("li.wei", "agent"),
    ),
    at=AT,
    input_path="desired/",
    state_location="desired/.reconciler/state.json",
)


# The policy recorded at the last apply protected alice, allowed 1 disable and admin grants
# of 30 days at most; this change unprotects and removes alice and bob, allows 5 disables,
# drops the admin limit and grants carol admin with no end date, and moves the timezone.
_STRICT = Policy(
    protected_accounts=frozenset({"alice"}), max_disable_count=1, max_grant_days={"admin": 30}
)
_LOOSE = Policy(max_disable_count=5, timezone="Europe/Berlin")
_USERS = ("alice", "bob", "carol", "dave", "erin")
LOOSENED = expiry.plan_at(
    desired(
        user("carol", "agent", "admin"), user("dave", "agent"), user("erin", "agent"), policy=_LOOSE
    ),
    replace(
        state(*(record(a, "agent") for a in _USERS)),
        policy=policy_review.record_of(desired(policy=_STRICT)),
    ),
    at=AT,
    input_path="desired/",
    state_location="desired/.reconciler/state.json",
)


def _large() -> Plan:
    """3000 changes: 2000 creates, 600 modifies, 400 disables."""
    users = [
        user(f"new{i:04d}", "agent", "admin" if i % 7 == 0 else "reporting", line=i + 1)
        for i in range(2000)
    ]
    users += [user(f"mod{i:04d}", "supervisor", line=i + 1) for i in range(600)]
    records = [record(f"mod{i:04d}", "agent") for i in range(600)]
    records += [record(f"old{i:04d}", "reporting") for i in range(400)]
    return planner.plan(
        desired(*users), state(*records), allow_disables=400, state_location="state.json"
    )


LARGE = _large()
PLANS = {
    "small": SMALL,
    "blocked": BLOCKED,
    "nothing": NOTHING,
    "new": NEW,
    "adopt": ADOPT,
    "dated": DATED,
    "loosened": LOOSENED,
}


@pytest.mark.parametrize("name", sorted(PLANS))
@pytest.mark.parametrize(
    ("kind", "render"),
    [
        ("txt", lambda p: text.render(p, now=NOW)),
        ("batches.txt", lambda p: text.render(p, now=NOW, show_batches=True)),
        ("md", lambda p: markdown.render(p, now=NOW)),
        ("batches.md", lambda p: markdown.render(p, now=NOW, show_batches=True)),
        ("json", planfile.dumps),
    ],
)
def test_golden(golden: Golden, name: str, kind: str, render: Callable[[Plan], str]) -> None:
    """Each rendering of each sample plan matches its reviewed golden file."""
    golden(f"plan-{name}.{kind}", render(PLANS[name]))


def test_golden_large_markdown(golden: Golden) -> None:
    """A 3000-change plan's Markdown fits one GitHub comment and matches its golden file."""
    rendered = markdown.render(LARGE, now=NOW, show_batches=True)
    assert len(rendered) <= markdown.GITHUB_COMMENT_LIMIT
    assert "more changes in the saved plan" in rendered
    golden("plan-large.md", rendered)


def test_large_markdown_is_summarised_under_a_small_limit() -> None:
    """Under any limit the comment is cut to fit and says so."""
    rendered = markdown.render(LARGE, now=NOW, limit=5_000)
    assert len(rendered) <= 5_000
    assert "cut to fit the comment limit" in rendered or "more changes" in rendered


def test_large_text_and_json_cover_every_change() -> None:
    """Text and JSON of a 3000-change plan list every account and all 30 batches."""
    rendered = text.render(LARGE, now=NOW, show_batches=True)
    assert rendered.count("  # ") == 3000
    assert "Plan: 2000 to create, 600 to modify, 400 to disable; 30 batches." in rendered
    assert "batch 30/30: 100 users (DISABLE 100)" in rendered
    document = json.loads(planfile.dumps(LARGE))
    assert len(document["changes"]) == 3000
    assert [len(b["accounts"]) for b in document["batches"]] == [100] * 30
    assert document["summary"] == {
        "create": 2000,
        "adopt": 0,
        "modify": 600,
        "disable": 400,
        "retry": 0,
        "report_only": 0,
        "batches": 30,
        "blocked": False,
        "expired_grants": 0,
        "expired_accounts": 0,
        "expiring_soon": 0,
    }


def test_json_rendering_is_a_valid_saved_plan() -> None:
    """The JSON rendering is exactly the saved-plan document and reads back."""
    assert planfile.dumps(planfile.loads(planfile.dumps(SMALL), where="x")) == planfile.dumps(SMALL)


def test_text_has_no_colour_unless_asked() -> None:
    """Plain text has no escape codes; colour=True paints markers, and only adds codes."""
    plain = text.render(SMALL, now=NOW)
    painted = text.render(SMALL, now=NOW, color=True)
    assert "\x1b[" not in plain
    assert "\x1b[32m  + account alice\x1b[0m" in painted
    assert "\x1b[31m  - account frank\x1b[0m" in painted
    assert ANSI.sub("", painted) == plain


def test_blocked_plan_says_why_in_every_format() -> None:
    """Both guard rails of a blocked plan are named in text, Markdown and JSON."""
    assert BLOCKED.guard.blocked
    plain = text.render(BLOCKED, now=NOW)
    assert "would disable protected account(s) boss" in plain
    assert "--allow-disables 3 does not match the plan's 2" in plain
    assert "**Blocked by guard rail:**" in markdown.render(BLOCKED, now=NOW)
    assert json.loads(planfile.dumps(BLOCKED))["guard"]["protected_hits"] == ["boss"]


def test_access_by_role_puts_sensitive_grants_first() -> None:
    """Rows: sensitive roles gained, then sensitive roles only lost, then the rest by name."""
    made = planner.plan(
        desired(user("a", "agent", "admin"), user("b", "reporting", "supervisor")),
        state(record("b", "agent"), record("c", "admin")),
    )
    rows = [(r.role, r.sensitive, r.gains, r.loses) for r in access.by_role(made)]
    assert rows == [
        ("admin", True, ("a",), ("c",)),
        ("agent", False, ("a",), ("b",)),
        ("reporting", False, ("b",), ()),
        ("supervisor", False, ("b",), ()),
    ]


def test_access_by_role_sensitive_loss_comes_before_plain_roles() -> None:
    """A sensitive role only lost is listed after sensitive grants but before other roles."""
    made = planner.plan(desired(user("a", "agent")), state(record("c", "admin")))
    assert [r.role for r in access.by_role(made)] == ["admin", "agent"]


def test_markdown_escapes_table_breaking_characters() -> None:
    """A | or < in a name cannot break the table or inject HTML."""
    made = planner.plan(desired(user("a", "agent", name="x|y<b>")), state(record("a", "agent")))
    rendered = markdown.render(made, now=NOW)
    assert "x\\|y&lt;b&gt;" in rendered
    assert "<b>" not in rendered


@pytest.mark.parametrize(
    ("created_at", "age"),
    [
        ("2025-05-29T12:00:00Z", "3d"),
        ("2025-06-01T07:00:00+00:00", "5h"),
        ("2025-06-01T11:58:30Z", "1m"),
        ("2025-06-01T11:59:59", "1s"),  # no zone: read as UTC
        ("2025-06-02T00:00:00Z", "0s"),  # in the future: never negative
        ("yesterday", "?"),
    ],
)
def test_age_is_taken_at_the_given_time(created_at: str, age: str) -> None:
    """Ages come from the ``now`` passed in, never from the clock."""
    assert common.age(created_at, NOW) == age


def test_renderers_date_event_ages_with_the_given_time() -> None:
    """Text and Markdown show an event's age at ``now``: later ``now``, older event."""
    dated = replace(SMALL, events=(replace(EVENT, created_at="2025-05-31T12:00:00Z"),))
    later = NOW + dt.timedelta(days=2)
    assert "(age 1d, attempts 1)" in text.render(dated, now=NOW)
    assert "(age 3d, attempts 1)" in text.render(dated, now=later)
    assert "| 1d | 1 |" in markdown.render(dated, now=NOW)
    assert "| 3d | 1 |" in markdown.render(dated, now=later)
