"""A FIFO (or any non-file) where the state's files belong: refused at once, never a hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.errors import StateError
from reconciler.stores.local import LocalStore
from tests.support.blocking import returns_within
from tests.support.builders import sample_state


def refused(call: object, path: Path) -> StateError:
    """The StateError ``call`` raises (at once, never blocking), which names ``path``."""
    caught: list[StateError] = []

    def run() -> None:
        with pytest.raises(StateError) as failed:
            call()  # type: ignore[operator]
        caught.append(failed.value)

    returns_within(run)
    assert str(path) in str(caught[0])
    return caught[0]


@pytest.mark.parametrize(
    "command",
    [
        ["plan", ".", "--no-refresh"],
        ["state", "list"],
        ["state", "pull"],
    ],
    ids=["plan", "state-list", "state-pull"],
)
def test_state_fifo_fails_every_command_at_once(
    workdir: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """``--state FIFO`` is an error naming the FIFO, with a hint."""
    fifo = workdir / "state.fifo"
    os.mkfifo(fifo)
    codes: list[int] = []
    returns_within(lambda: codes.append(cli.main([*command, "--state", str(fifo)])))
    err = capsys.readouterr().err
    assert codes == [1]
    assert f"error: {fifo} is a FIFO (named pipe), not a regular file" in err
    assert "hint: point --state" in err


def test_a_state_fifo_is_refused_by_the_store(tmp_path: Path) -> None:
    """LocalStore.read and write of a FIFO: StateError at once, the FIFO left as it is."""
    fifo = tmp_path / "state.json"
    os.mkfifo(fifo)
    error = refused(LocalStore(fifo).read, fifo)
    assert "FIFO" in str(error)
    refused(lambda: LocalStore(fifo).write(sample_state()), fifo)
    assert fifo.is_fifo()


def test_a_directory_as_the_state_is_named(tmp_path: Path) -> None:
    """A folder where the state file belongs is not read as an empty state."""
    folder = tmp_path / "state.json"
    folder.mkdir()
    assert "is a directory, not a regular file" in str(refused(LocalStore(folder).read, folder))


def test_a_journal_fifo_is_refused(tmp_path: Path) -> None:
    """A FIFO where the journal belongs: reading and appending fail at once, naming it."""
    path = tmp_path / "state.json"
    store = LocalStore(path)
    store.write(sample_state())
    journal = tmp_path / "state.json.journal"
    os.mkfifo(journal)
    refused(LocalStore(path).read, journal)
    refused(lambda: LocalStore(path).write(sample_state().successor(), force=True), journal)


def test_a_lock_fifo_is_refused(tmp_path: Path) -> None:
    """A FIFO where the lock file belongs: taking the lock fails at once, naming it, and
    asking who holds it says no one."""
    path = tmp_path / "state.json"
    LocalStore(path).write(sample_state())
    lock = tmp_path / "state.json.lock"
    os.mkfifo(lock)
    store = LocalStore(path)

    def take() -> None:
        with store.lock("test"):
            pass

    refused(take, lock)
    holders: list[object] = []
    returns_within(lambda: holders.append(store.holder()))
    assert holders == [None]
