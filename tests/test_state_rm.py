"""``reconciler state rm --account NAME…``: stop managing accounts without disabling them."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.stores.local import LocalStore
from reconciler.stores.model import Action, PendingBatch, PendingEntry, State
from reconciler.values import replace
from tests.support.builders import record
from tests.support.stores import held_in_thread

STATE = Path(".reconciler") / "state.json"


class _Terminal(io.StringIO):
    """Standard input that is a terminal, the answer typed; ``on_read`` runs as it is read."""

    def __init__(self, answer: str, on_read: Callable[[], None] | None = None) -> None:
        super().__init__(answer)
        self.on_read = on_read

    def isatty(self) -> bool:
        """Yes."""
        return True

    def readline(self, size: int | None = -1) -> str:
        """The answer, after whatever happens while the person reads the question."""
        if self.on_read is not None:
            self.on_read()
        return super().readline(size)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI; (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def store(workdir: Path) -> LocalStore:
    """The default state of ``workdir`` holding alice, bob and zed (zed is not declared)."""
    found = LocalStore(workdir / STATE)
    found.write(
        State.empty().successor(accounts={a: record(a, "agent") for a in ("alice", "bob", "zed")})
    )
    return found


def _accounts(store: LocalStore) -> set[str]:
    current = store.read()
    assert current is not None
    return set(current.accounts)


def test_force_removes_the_accounts_and_sends_nothing(
    store: LocalStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two accounts leave the state in one write; the rest stay; no API is configured or
    needed; the YAML still declaring bob is said on stderr."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, out, err = run(capsys, "state", "rm", "--account", "zed", "--account", "bob", "--force")
    assert code == 0, err
    assert _accounts(store) == {"alice"}
    current = store.read()
    assert current is not None
    assert current.serial == 2
    assert out.startswith(f"Removed 2 account(s) from the state at {STATE} (lineage ")
    assert "serial 2): zed, bob. Nothing was sent" in out
    assert err.startswith(f"State at {STATE}: lineage ")
    assert err.endswith(
        "warning: bob is still declared in the desired state (users.yaml:7): remove it there "
        "before the next apply, or the plan creates it again (which the API refuses for an "
        "account that exists)\n"
    )


def test_without_a_terminal_force_is_needed(
    store: LocalStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No terminal to ask on and no --force: refused, nothing removed."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = run(capsys, "state", "rm", "--account", "zed")
    assert code == 1
    assert "state rm needs confirmation, and there is no terminal to ask on" in err
    assert "hint: check the accounts, then add --force" in err
    assert _accounts(store) == {"alice", "bob", "zed"}


@pytest.mark.parametrize(("answer", "removed"), [("yes\n", True), ("y\n", False), ("", False)])
def test_a_terminal_is_asked(
    store: LocalStore,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    removed: bool,
) -> None:
    """Only 'yes' confirms."""
    monkeypatch.setattr(sys, "stdin", _Terminal(answer))
    code, out, _ = run(capsys, "state", "rm", "--account", "zed")
    assert "Stop managing zed in the state at" in out
    assert code == (0 if removed else 1)
    assert ("zed" in _accounts(store)) is not removed


def test_an_unknown_account_removes_nothing(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every named account must be in the state, or none is removed."""
    code, _, err = run(capsys, "state", "rm", "--account", "zed", "--account", "nobody", "--force")
    assert code == 1
    assert "error: not in the state at" in err
    assert ": nobody; nothing was removed" in err
    assert _accounts(store) == {"alice", "bob", "zed"}


def _with_pending(store: LocalStore, account: str) -> None:
    current = store.read()
    assert current is not None
    entry = PendingEntry(
        action=Action.DISABLE, account=account, wire={}, target=record(account, "agent")
    )
    store.write(current.successor(pending=(PendingBatch(batch_id="b-7", entries=(entry,)),)))


def test_an_account_in_an_unsettled_batch_cannot_be_removed(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """Forgetting it would lose what the interrupted batch did: refused, saying why."""
    _with_pending(store, "zed")
    code, _, err = run(capsys, "state", "rm", "--account", "zed", "--force")
    assert code == 1
    assert "cannot remove zed (batch b-7): a batch of an interrupted apply holds a change" in err
    assert "hint: run `reconciler refresh` to settle the batch" in err
    assert _accounts(store) == {"alice", "bob", "zed"}


def test_the_check_is_made_again_under_the_lock(
    store: LocalStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An apply that starts a batch for zed while the question is read: refused after 'yes'."""
    monkeypatch.setattr(
        sys, "stdin", _Terminal("yes\n", on_read=lambda: _with_pending(store, "zed"))
    )
    code, _, err = run(capsys, "state", "rm", "--account", "zed")
    assert code == 1
    assert "cannot remove zed (batch b-7)" in err
    assert _accounts(store) == {"alice", "bob", "zed"}


def test_state_rm_takes_the_lock(store: LocalStore, capsys: pytest.CaptureFixture[str]) -> None:
    """While another run holds the state, state rm waits or fails; it never writes beside it."""
    with held_in_thread(LocalStore(store.path)) as holder:
        code, _, err = run(capsys, "state", "rm", "--account", "zed", "--force")
        assert code == 1
        assert holder.info.lock_id in err
    assert _accounts(store) == {"alice", "bob", "zed"}


def test_no_state_is_an_error(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing to remove from a state that does not exist: said, nothing created."""
    code, _, err = run(capsys, "state", "rm", "--account", "zed", "--force")
    assert code == 1
    assert "no state at" in err
    assert not (workdir / STATE).exists()


@pytest.mark.parametrize(
    ("argv", "message", "hint"),
    [
        (
            ["state", "rm", "zed"],
            "zed: no such desired-state path; state rm names accounts with --account",
            "hint: reconciler state rm --account zed",
        ),
        (
            ["state", "rm", "--account", "zed", "bob", "carol"],
            "state rm takes one PATH; name accounts with --account: bob carol zed",
            "hint: reconciler state rm --account bob --account carol --account zed",
        ),
        (
            ["state", "rm"],
            "name the accounts to stop managing",
            "hint: reconciler state rm --account NAME",
        ),
    ],
)
def test_accounts_are_named_with_account(
    store: LocalStore,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
    hint: str,
) -> None:
    """Operands then PATH: a variable number of accounts cannot precede an optional PATH
    without a guess, so accounts are --account NAME, as for import; other spellings are
    usage errors naming the right one."""
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert f"error: {message}" in err
    assert hint in err
    assert _accounts(store) == {"alice", "bob", "zed"}


def test_removed_accounts_are_not_disabled_by_the_next_plan(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """zed (not declared) would be disabled by a plan; once removed, the plan leaves it."""
    code, out, _ = run(capsys, "plan", "--no-refresh", "--format", "json")
    assert '"account":"zed"' in out
    assert run(capsys, "state", "rm", "--account", "zed", "--force")[0] == 0
    code, out, _ = run(capsys, "plan", "--no-refresh", "--format", "json")
    assert code == 0
    assert '"account":"zed"' not in out


def test_a_removed_account_keeps_its_records_elsewhere(store: LocalStore) -> None:
    """Only the named accounts' records go: the other records are the same values."""
    before = store.read()
    assert before is not None
    assert main(["state", "rm", "--account", "zed", "--force"]) == 0
    after = store.read()
    assert after is not None
    assert {a: r for a, r in before.accounts.items() if a != "zed"} == dict(after.accounts)
    assert replace(
        after, accounts=before.accounts, serial=before.serial, updated_at=None
    ) == replace(before, updated_at=None)
