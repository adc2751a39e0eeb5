"""``state diff A B`` and what ``state push --force`` shows before it replaces a state.

Both read two states and name what differs: accounts only on one side, changed accounts
attribute by attribute, lineage and serial. A location without a state, or a corrupt one,
is an error with a hint, never an empty side; passwords in locations are masked.
"""

from __future__ import annotations

import io
import json
import os
import sys
import uuid
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.stores import model as state_codec
from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord, State
from reconciler.stores.recorded_policy import PolicyRecord
from reconciler.values import replace
from tests.support.blocking import returns_within
from tests.support.pg import pg_dsn, unique_workspace, with_query
from tests.support.terminal import Terminal


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI; (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _record(account: str, name: str, *roles: str) -> AccountRecord:
    return AccountRecord(
        account=account, name=name, email=f"{account}@example.com", role_ids=roles, enabled=True
    )


BEFORE = State.empty().successor(
    accounts={
        "alice": _record("alice", "Alice", "1001", "1002"),
        "bob": _record("bob", "Bob", "1001"),
        "dave": _record("dave", "Dave"),
    }
)
AFTER = BEFORE.successor(
    accounts={
        "alice": _record("alice", "Alicia", "1001", "1003"),
        "carol": _record("carol", "Carol", "1002"),
        "dave": _record("dave", "Dave"),
    }
)


def _stored(path: Path, state: State) -> Path:
    LocalStore(path).write(state, force=True)
    return path


def test_the_same_state_twice(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A state and its `state pull` document are the same: exit 0 even with
    --detailed-exitcode."""
    stored = _stored(workdir / "a.json", BEFORE)
    code, pulled, _ = run(capsys, "state", "pull", "--state", str(stored))
    assert code == 0
    (workdir / "pulled.json").write_text(pulled, encoding="utf-8")
    code, out, _ = run(capsys, "state", "diff", str(stored), "pulled.json", "--detailed-exitcode")
    assert code == 0
    assert "No differences" in out


def test_differences_in_text(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Accounts only in A, only in B, and changed ones attribute by attribute; exit 2 with
    --detailed-exitcode, 0 without."""
    _stored(workdir / "a.json", BEFORE)
    _stored(workdir / "b.json", AFTER)
    code, out, _ = run(capsys, "state", "diff", "a.json", "b.json", "--detailed-exitcode")
    assert code == 2
    lines = out.splitlines()
    assert lines[0] == f"A: a.json: lineage {BEFORE.lineage}, serial 1, 3 account(s)"
    assert "serial: 1 (A) → 2 (B)" in lines
    assert "- 1 only in A: bob" in lines
    assert "+ 1 only in B: carol" in lines
    assert "~ 1 changed: alice" in lines
    assert '      name: "Alice" (A) → "Alicia" (B)' in lines
    assert '      role_ids: ["1001", "1002"] (A) → ["1001", "1003"] (B)' in lines
    assert not any("dave" in line for line in lines)
    assert run(capsys, "state", "diff", "a.json", "b.json")[0] == 0


def test_differences_as_json(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format json names every difference by path, each side's value as JSON."""
    _stored(workdir / "a.json", BEFORE)
    another = str(uuid.uuid4())
    _stored(workdir / "b.json", replace(AFTER, lineage=another))
    code, out, _ = run(capsys, "state", "diff", "a.json", "b.json", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert document["same"] is False
    assert (document["a"]["serial"], document["b"]["lineage"]) == (1, another)
    assert document["accounts"]["only_in_a"] == ["bob"]
    assert document["accounts"]["only_in_b"] == ["carol"]
    assert document["accounts"]["changed"] == [
        {
            "account": "alice",
            "differences": [
                {"path": "name", "a": '"Alice"', "b": '"Alicia"'},
                {"path": "role_ids", "a": '["1001", "1002"]', "b": '["1001", "1003"]'},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "no state at missing.json: nothing to compare", id="missing"),
        pytest.param("{not json", "", id="corrupt"),
    ],
)
def test_an_unreadable_side_is_an_error(
    workdir: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    """No state, or a corrupt one, at a location: exit 1 with a hint, nothing compared."""
    _stored(workdir / "a.json", BEFORE)
    if content is not None:
        (workdir / "missing.json").write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "state", "diff", "a.json", "missing.json")
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {message}")
    assert "\nhint: " in err


def test_diff_writes_nothing_beside_the_states_it_reads(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read only: no check record (``<state>.checked``) or anything else appears."""
    _stored(workdir / "a.json", BEFORE)
    _stored(workdir / "b.json", AFTER)
    before = sorted(p.name for p in workdir.iterdir())
    assert run(capsys, "state", "diff", "a.json", "b.json")[0] == 0
    assert sorted(p.name for p in workdir.iterdir()) == before


@pytest.mark.parametrize("special", ["fifo", "folder"])
def test_an_operand_that_is_not_a_file_is_refused_at_once(
    workdir: Path, capsys: pytest.CaptureFixture[str], special: str
) -> None:
    """A FIFO (which would block the read forever) or a folder: exit 1, nothing compared."""
    _stored(workdir / "a.json", BEFORE)
    if special == "fifo":
        os.mkfifo(workdir / "other")
    else:
        (workdir / "other").mkdir()
    answers: list[tuple[int, str, str]] = []
    returns_within(lambda: answers.append(run(capsys, "state", "diff", "a.json", "other")))
    code, out, err = answers[0]
    assert (code, out) == (1, "")
    assert err.startswith("error: other is ")
    assert "not a state; nothing was compared" in err
    assert "\nhint: " in err


def test_a_saved_plan_as_an_operand_is_named_for_what_it_is(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan.json given by mistake: "a saved plan, not a state", never "upgrade"."""
    _stored(workdir / "a.json", BEFORE)
    plan = {"format_version": 3, "changes_digest": "sha256:" + "0" * 64, "changes": []}
    (workdir / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    code, _, err = run(capsys, "state", "diff", "a.json", "plan.json")
    assert code == 1
    assert err.startswith("error: state plan.json is a saved plan, not a state")
    assert "upgrade" not in err


def test_workspace_operands_need_a_postgres_state(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """workspace:NAME refers to the --state URL; with a file there it is an error."""
    code, _, err = run(capsys, "state", "diff", "workspace:a", "workspace:b", "--state", "x.json")
    assert code == 1
    assert "neither --state nor RECONCILER_STATE is a postgresql:// URL" in err
    assert "hint: " in err


def test_two_workspaces_with_the_password_masked(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two workspaces of one database, named once by --state; its password never shown."""
    dsn = pg_dsn().replace("postgres@", "postgres:S3cr3t-pw@", 1)
    left, right = unique_workspace(), unique_workspace()
    for workspace, state in ((left, BEFORE), (right, AFTER)):
        target = with_query(dsn, workspace=workspace)
        (workdir / "doc.json").write_text(json.dumps(state_codec.to_json(state)))
        assert run(capsys, "state", "push", "doc.json", "--state", target)[0] == 0
    code, out, err = run(
        capsys, "state", "diff", f"workspace:{left}", f"workspace:{right}", "--state", dsn
    )
    assert code == 0, err
    assert f"(workspace {left})" in out.splitlines()[0]
    assert "~ 1 changed: alice" in out
    assert "S3cr3t-pw" not in out + err
    code, out, _ = run(
        capsys,
        "state",
        "diff",
        f"workspace:{left}",
        with_query(dsn, workspace=left),
        "--format",
        "json",
        "--state",
        dsn,
    )
    assert json.loads(out)["same"] is True
    assert "S3cr3t-pw" not in out


# -- state push --force shows what it replaces ------------------------------------------


def _document(workdir: Path, state: State) -> Path:
    path = workdir / "pushed.json"
    path.write_text(json.dumps(state_codec.to_json(state)), encoding="utf-8")
    return path


def test_forced_push_without_a_terminal_shows_and_writes(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a pipeline (no terminal) --force shows what it replaces, then writes."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    _stored(workdir / "s.json", AFTER)
    _document(workdir, BEFORE)
    code, out, _ = run(capsys, "state", "push", "pushed.json", "--state", "s.json", "--force")
    assert code == 0
    assert "state push --force replaces the state at s.json:" in out
    assert "- 1 only in A: carol" in out  # A is the stored state, B the document
    assert "+ 1 only in B: bob" in out
    assert out.splitlines()[-1].startswith("Pushed pushed.json to s.json:")
    assert set(LocalStore(workdir / "s.json").read().accounts) == set(BEFORE.accounts)


@pytest.mark.parametrize(("answer", "written"), [("yes\n", True), ("no\n", False)])
def test_forced_push_asks_on_a_terminal(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    written: bool,
) -> None:
    """On a terminal --force shows the summary and asks: only `yes` writes."""
    terminal = Terminal(answer)
    monkeypatch.setattr(sys, "stdin", terminal)
    _stored(workdir / "s.json", AFTER)
    _document(workdir, BEFORE)
    code, out, _ = run(capsys, "state", "push", "pushed.json", "--state", "s.json", "--force")
    assert terminal.asked
    assert "~ 1 changed: alice" in out
    assert code == (0 if written else 1)
    accounts = set(LocalStore(workdir / "s.json").read().accounts)
    assert accounts == set((BEFORE if written else AFTER).accounts)
    if not written:
        assert "State push cancelled." in out


def test_forced_push_with_yes_does_not_ask(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--force --yes on a terminal: the summary, no question."""
    terminal = Terminal("")
    monkeypatch.setattr(sys, "stdin", terminal)
    _stored(workdir / "s.json", AFTER)
    _document(workdir, BEFORE)
    code, out, _ = run(
        capsys, "state", "push", "pushed.json", "--state", "s.json", "--force", "--yes"
    )
    assert code == 0
    assert not terminal.asked
    assert "state push --force replaces" in out


def test_forced_push_refuses_a_state_that_moved_while_asking(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write while the person reads the summary: nothing is written, run again."""
    store = LocalStore(_stored(workdir / "s.json", AFTER))
    moved = AFTER.successor(accounts={})
    monkeypatch.setattr(sys, "stdin", Terminal("yes\n", on_read=lambda: store.write(moved)))
    _document(workdir, BEFORE)
    code, _, err = run(capsys, "state", "push", "pushed.json", "--state", "s.json", "--force")
    assert code == 1
    assert "changed while you were asked" in err
    assert store.read() == moved


def test_forced_push_on_a_terminal_refuses_a_state_written_since_it_was_found_empty(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing stored, so nothing to ask about; a state written before the lock is taken is
    never replaced unseen: refused, nothing written."""
    monkeypatch.setattr(sys, "stdin", Terminal(""))
    _document(workdir, BEFORE)
    store = LocalStore(workdir / "s.json")
    real_lock = LocalStore.lock

    def lock_after_a_write(self: LocalStore, *args: object, **kwargs: object) -> object:
        store.write(AFTER, force=True)  # another run, between the read and the lock
        monkeypatch.setattr(LocalStore, "lock", real_lock)
        return real_lock(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalStore, "lock", lock_after_a_write)
    code, _, err = run(capsys, "state", "push", "pushed.json", "--state", "s.json", "--force")
    assert code == 1
    assert "changed since it was read (it was empty, now lineage" in err
    assert LocalStore(workdir / "s.json").read() == AFTER


def test_yes_needs_force(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--yes alone confirms nothing: a usage error naming the spelling."""
    _document(workdir, BEFORE)
    code, _, err = run(capsys, "state", "push", "pushed.json", "--yes")
    assert code == 1
    assert "hint: reconciler state push pushed.json --force --yes" in err


def test_yes_needs_force_hint_keeps_the_path(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hint is the command to run: with the PATH operand that was given."""
    _document(workdir, BEFORE)
    (workdir / "desired").mkdir()
    code, _, err = run(capsys, "state", "push", "pushed.json", "desired", "--yes")
    assert code == 1
    assert "hint: reconciler state push pushed.json desired --force --yes" in err


def test_a_policy_difference_is_a_difference(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same accounts, lineage and serial, another recorded policy: exit 2, spelled out."""
    strict = PolicyRecord(protected_accounts=("alice",))
    _stored(workdir / "a.json", replace(BEFORE, policy=strict))
    _stored(workdir / "b.json", replace(BEFORE, policy=replace(strict, protected_accounts=())))
    code, out, _ = run(capsys, "state", "diff", "a.json", "b.json", "--detailed-exitcode")
    assert code == 2
    assert "policy recorded at the last apply differs:" in out
    assert "protected_accounts" in out
    code, out, _ = run(capsys, "state", "diff", "a.json", "b.json", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert document["same"] is False
    assert [d["path"] for d in document["policy"]] != []
