"""PII redaction: emails and names become stable short hashes in every rendering."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.errors import PlanError, UsageError
from reconciler.plan import planfile, planner, redaction
from reconciler.plan.model import Plan
from reconciler.render import markdown, text
from reconciler.stores.local import LocalStore
from tests.support import builders
from tests.support.builders import desired, record, state, user

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
PERSONAL = (
    "alice@example.com",
    "Alice",
    "bob@example.com",
    "robert@example.com",
    "Bob",
    "Robert",
    "carol@example.com",
    "Carol",
)


def _plan() -> Plan:
    """alice created; bob's name and email changed, and a role added; carol removed."""
    return planner.plan(
        desired(
            user("alice", "agent"),
            user("bob", "agent", "admin", name="Robert", email="robert@example.com"),
        ),
        state(record("bob", "agent"), record("carol", "reporting")),
        state_location=".reconciler/state.json",
    )


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("emails", ("emails",)),
        ("names", ("names",)),
        ("emails,names", ("emails", "names")),
        (" names , EMAILS ", ("emails", "names")),
        ("emails,emails", ("emails",)),
    ],
)
def test_parse_accepts_the_known_fields(spec: str, words: tuple[str, ...]) -> None:
    """Comma-separated, case and spaces ignored, canonical order."""
    assert redaction.parse(spec) == words


@pytest.mark.parametrize("spec", ["phones", "emails,accounts", ",", "email"])
def test_parse_refuses_unknown_fields(spec: str) -> None:
    """Unknown or missing field names are a usage error naming the choices."""
    with pytest.raises(UsageError) as caught:
        redaction.parse(spec)
    assert caught.value.hint is not None
    assert "emails, names" in caught.value.hint


def test_mask_is_a_stable_short_sha256() -> None:
    """``email:`` + the first 8 hex digits of sha256: same value, same hash."""
    expected = "email:" + hashlib.sha256(b"alice@example.com").hexdigest()[:8]
    assert redaction.mask("email", "alice@example.com") == expected
    assert redaction.mask("email", "alice@example.com") == expected
    assert redaction.mask("email", "Alice@example.com") != expected
    assert redaction.mask("name", "") == ""


@pytest.mark.parametrize(
    "render",
    [
        lambda plan: text.render(plan, now=NOW),
        lambda plan: markdown.render(plan, now=NOW),
        planfile.dumps,
    ],
    ids=["text", "markdown", "json"],
)
def test_every_rendering_hides_emails_and_names(render: Callable[[Plan], str]) -> None:
    """No email or name survives, before or after; accounts stay readable."""
    shown = render(redaction.redact(_plan(), "emails,names"))
    for value in PERSONAL:
        assert not re.search(rf"\b{re.escape(value)}\b", shown), value
    for account in ("alice", "bob", "carol"):
        assert account in shown
    assert redaction.mask("email", "bob@example.com") in shown
    assert redaction.mask("email", "robert@example.com") in shown
    assert redaction.mask("name", "Robert") in shown


def test_names_only_keeps_emails() -> None:
    """Only the named fields are redacted."""
    shown = text.render(redaction.redact(_plan(), "names"), now=NOW)
    assert "robert@example.com" in shown
    assert "'Robert'" not in shown


def test_redaction_keeps_the_plan_apply_needs() -> None:
    """Actions, wire entries' shape, batches and guard verdict are unchanged."""
    plan = _plan()
    redacted = redaction.redact(plan, "emails")
    assert [c.as_tuple() for c in redacted.changes] == [c.as_tuple() for c in plan.changes]
    assert redacted.batches == plan.batches
    assert redacted.guard == plan.guard


def test_redacted_json_is_schema_valid_but_never_applied() -> None:
    """The JSON rendering says what it redacted; apply refuses such a plan."""
    document = planfile.dumps(redaction.redact(_plan(), "emails,names"))
    assert json.loads(document)["redacted"] == ["emails", "names"]
    back = planfile.loads(document, where="p.json")
    with pytest.raises(PlanError, match="redacted"):
        planfile.check_fresh(
            back, state(record("bob", "agent"), record("carol", "reporting")), None
        )
    assert '"redacted"' not in planfile.dumps(_plan())


@pytest.fixture
def recorded(workdir: Path) -> Path:
    """bob recorded with an old name and email: the next plan modifies him."""
    LocalStore(workdir / ".reconciler" / "state.json").write(
        builders.state(builders.record("bob", "agent", "reporting", name="Bobby", email="b@x.org")),
        force=True,
    )
    return workdir


def test_plan_out_is_never_redacted(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """stdout is redacted; the saved plan keeps the real values apply needs."""
    capsys.readouterr()
    code = cli.main(["plan", ".", "--no-refresh", "--redact", "emails", "--out", "p.json"])
    assert code == 0
    shown = capsys.readouterr().out
    assert "bob@example.com" not in shown
    assert "b@x.org" not in shown
    saved = (recorded / "p.json").read_text(encoding="utf-8")
    assert "bob@example.com" in saved
    assert '"redacted"' not in saved


def test_show_redacts_a_saved_plan(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``show --redact`` works on saved plans, in every format."""
    assert cli.main(["plan", ".", "--no-refresh", "--out", "p.json"]) == 0
    for fmt in ("text", "markdown", "json"):
        capsys.readouterr()
        assert cli.main(["show", "p.json", "--format", fmt, "--redact", "emails,names"]) == 0
        shown = capsys.readouterr().out
        assert "Bobby" not in shown
        assert "alice@example.com" not in shown
        assert "bob" in shown


def test_unknown_redact_field_is_a_usage_error(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1 with the choices, nothing rendered."""
    capsys.readouterr()
    assert cli.main(["plan", ".", "--no-refresh", "--redact", "phones"]) == 1
    captured = capsys.readouterr()
    assert "unknown field(s) 'phones'" in captured.err
    assert captured.out == ""


def test_markdown_golden_redacted(
    recorded: Path, capsys: pytest.CaptureFixture[str], golden: Callable[[str, str], None]
) -> None:
    """The redacted PR comment, reviewed like code."""
    capsys.readouterr()
    args = ["plan", ".", "--no-refresh", "--format", "markdown", "--redact", "emails,names"]
    args += ["--at", "2026-12-01"]  # the golden's date: the header names it
    assert cli.main(args) == 0
    golden("review/plan-redacted.md", capsys.readouterr().out)
