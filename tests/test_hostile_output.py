"""H5/L2/L8: hostile text in every field that reaches an output cannot forge lines, cells,
annotations, HTML or formulas, in any format.

The fields are the ones whose text is not reconciler's own: names and file names from
the desired state (and its git authors), account names and attributes from a hand-edited
state, and provisioning events as the CloudIdentity API lists them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest

from reconciler.cli import ci
from reconciler.desired.commit import Commit
from reconciler.desired.model import DesiredState, Policy, Source
from reconciler.plan import expiry, planfile, planner, report
from reconciler.plan.model import Decision, EventDecision, Plan
from reconciler.render import access, markdown, text
from reconciler.stores.model import State
from reconciler.values import replace
from tests.support.builders import desired, record, state, user

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
AT = dt.date(2025, 6, 1)
# A newline then a workflow command; a cell separator, a code span, HTML, a bidi override,
# a terminal escape, a carriage return and a formula.
HOSTILE = "h\n::error::forged|cell`tick<b>x</b>\u202eevil\x1b[31m\r=1+1"
FORBIDDEN_IN_TEXT = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _hostile_plan() -> tuple[Plan, DesiredState, State]:
    """A plan (and its desired state) with HOSTILE in every free-text field."""
    alice = replace(
        user("alice", "agent", name="Al" + HOSTILE),
        source=Source(
            file="fi" + HOSTILE + ".yaml",
            line=3,
            commit=Commit(hash="abc1234", author="Eve" + HOSTILE, date="2025-05-01"),
        ),
    )
    wanted = desired(alice)
    event = EventDecision(
        event_id="evt" + HOSTILE,
        account="bob" + HOSTILE,
        target="crm" + HOSTILE,
        reason="quota" + HOSTILE,
        created_at="x",
        updated_at="x",
        attempts=1,
        decision=Decision.RETRY,
        why="attempt",
    )
    recorded = state(record("zed" + HOSTILE, "agent"), record("alice", "agent", name="old"))
    made = planner.plan(
        wanted,
        recorded,
        events=(event,),
        events_refreshed=True,
        input_path="in" + HOSTILE,
        state_location="st" + HOSTILE,
    )
    return made, wanted, recorded


def _check_lines(rendered: str) -> None:
    for line in rendered.split("\n"):
        assert not line.lstrip().startswith("::"), line
        assert not line.startswith("=1+1"), line
    assert not FORBIDDEN_IN_TEXT.search(rendered), repr(FORBIDDEN_IN_TEXT.search(rendered))


def _check_markdown(rendered: str) -> None:
    _check_lines(rendered)
    # A code span opens at a backtick not escaped and ends at the next backtick.
    outside_code = re.sub(r"(?<!\\)`[^`]*`", "", rendered)
    assert "<b>" not in outside_code
    header_cells = 0
    for line in rendered.split("\n"):
        if not line.startswith("|"):
            header_cells = 0
            continue
        cells = len(re.findall(r"(?<!\\)\|", line))
        header_cells = header_cells or cells
        assert cells == header_cells, line  # no row gains a cell


def test_the_text_plan_keeps_hostile_values_on_their_line() -> None:
    """No forged ``::error::`` line, no terminal escape or bidi override reaches the terminal."""
    made, _, _ = _hostile_plan()
    rendered = text.render(made, now=NOW)
    _check_lines(rendered)
    assert "\\u202e" in rendered  # shown, escaped
    assert "account zedh\\n::error::forged" in rendered


def test_the_markdown_plan_keeps_hostile_values_in_their_cell() -> None:
    """Tables keep their columns, HTML stays text, code spans stay closed."""
    made, _, _ = _hostile_plan()
    _check_markdown(markdown.render(made, now=NOW))


def test_the_access_review_keeps_hostile_values_in_their_cell() -> None:
    """The review in Markdown and CSV: same rules, and no cell starts a formula."""
    _, wanted, recorded = _hostile_plan()
    dated = expiry.plan_at(wanted, recorded, at=AT, state_location="st" + HOSTILE)
    built = report.build(wanted, recorded, dated, commits={})
    _check_markdown(access.to_markdown(built))
    rows = list(csv.reader(io.StringIO(access.to_csv(built).removeprefix("\ufeff"), newline="")))
    for row in rows:
        for value in row:
            assert value[:1] == "'" or value.lstrip(" ")[:1] not in set("=+-@"), row
            assert "\u202e" not in value


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(1)", " =1", "\t=1", "\r=1"])
def test_a_csv_cell_never_starts_a_formula(value: str) -> None:
    """L8: = + - @ (also after spaces, tabs or a carriage return) are neutralised."""
    assert access.cell(value).startswith("'")


def test_the_apply_comment_keeps_api_messages_in_their_line() -> None:
    """The PR comment after apply: an API message or a log line cannot close the log's
    fence, open HTML or start a line of its own."""
    failed = {"action": "MODIFY", "account": "zed" + HOSTILE, "code": "100-1", "message": HOSTILE}
    report_ = {"applied": [{"action": "CREATE", "account": "a`b"}], "failed": [failed]}
    log = "error: boom ```\n```\nhint: <script>x</script> ````\n::error::forged"
    rendered = ci.apply_summary(1, report_, log)
    _check_markdown(rendered)
    fences = [line for line in rendered.split("\n") if line.startswith("```")]
    assert len(fences) == 2
    assert fences[0] == fences[1] == "`````"  # longer than any run of backticks inside


def _loosened_plan(policy: Policy) -> Plan:
    """100 managed accounts; the change keeps 40 and sets ``policy``."""
    recorded = state(*(record(f"u{i:03}", "agent") for i in range(100)))
    wanted = replace(desired(*(user(f"u{i:03}", "agent") for i in range(40))), policy=policy)
    return planner.plan(wanted, recorded, state_location="s.json")


def test_a_loosened_guard_rail_is_shown_first_in_every_format() -> None:
    """Loosening policy.max_disable in the change that disables 60 of 100 accounts passes
    its own guard rail: every format says so at the top, in words a reviewer stops at."""
    made = _loosened_plan(Policy(max_disable_count=1000))
    assert not made.guard.blocked
    rendered = text.render(made, now=NOW)
    head = rendered.split("\n")[:4]
    assert any(
        line.startswith(
            "Warning: guard rail loosened: 60 disables pass only because "
            "policy.max_disable: count 1000 allows 1000; the default guard rail "
            "would allow 10 and block this plan."
        )
        for line in head
    ), head
    md = markdown.render(made, now=NOW)
    assert md.index("> **Guard rail loosened:** 60 disables") < md.index("| | accounts |")
    document = planfile.to_json(made)
    assert (document["guard"]["loosened"], document["guard"]["default_limit"]) == (True, 10)
    again = planfile.loads(planfile.dumps(made), where="plan.json")
    assert again.guard.loosened


@pytest.mark.parametrize(
    "policy",
    [Policy(), Policy(max_disable_count=5), Policy(max_disable_percent=70.0)],
    ids=["default", "stricter-blocks", "percent-loosened"],
)
def test_the_warning_appears_only_when_the_policy_lets_it_pass(policy: Policy) -> None:
    """Blocked plans say "blocked", default-policy plans say nothing more; 70% loosens."""
    made = _loosened_plan(policy)
    warned = "guard rail loosened" in text.render(made, now=NOW)
    assert warned == (policy.max_disable_percent == 70.0)
