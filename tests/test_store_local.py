"""The file backend's own rules: backup, mode, symlinks, leftover temp files, .gitignore.

The rules every backend shares are in ``test_store_contract.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from reconciler.errors import StateCorrupt, StateError, StateLocked, StateLockLost
from reconciler.stores import DEFAULT_STATE, open_store
from reconciler.stores import model as state_codec
from reconciler.stores.local import LocalStore
from tests.support.builders import sample_state
from tests.support.stores import held_in_thread, with_account


def test_local_keeps_the_previous_snapshot_as_backup(tmp_path: Path) -> None:
    """A new snapshot keeps the one it replaces as `.backup`: a whole, older state."""
    store = LocalStore(tmp_path / "state.json")
    first = sample_state()
    store.write(first)
    second = with_account(first, "bob")
    store.write(second)  # a journal record: the snapshot stays, no backup yet
    assert not (tmp_path / "state.json.backup").exists()
    store.compact()
    backup = LocalStore(tmp_path / "state.json.backup").read()
    assert backup is not None
    assert (backup.serial, set(backup.accounts)) == (1, {"alice"})
    assert store.read() == second


def test_local_file_mode_is_0600(tmp_path: Path) -> None:
    """The state file is readable by its owner only."""
    store = LocalStore(tmp_path / "state.json")
    store.write(sample_state())
    assert stat.S_IMODE((tmp_path / "state.json").stat().st_mode) == 0o600


def test_a_serial_beyond_64_bits_in_the_file_is_refused(tmp_path: Path) -> None:
    """A hand-edited serial beyond 2^63-1 is not a valid state (the schema bounds it)."""
    path = tmp_path / "state.json"
    document = {**state_codec.to_json(sample_state()), "serial": 2**70}
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(StateCorrupt, match="serial"):
        LocalStore(path).read()


# -- a symlinked state ----------------------------------------------------------------


@pytest.fixture
def linked(tmp_path: Path) -> tuple[Path, Path]:
    """(a state path that is a symlink, the file it points to in another directory)."""
    target = tmp_path / "shared" / "real.json"
    target.parent.mkdir()
    link = tmp_path / "desired" / ".reconciler" / "state.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    return link, target


def test_a_symlinked_state_stays_a_link_and_is_written_through(
    linked: tuple[Path, Path],
) -> None:
    """Writes go to the link's target; the link is never replaced by a regular file."""
    link, target = linked
    store = LocalStore(link)
    first = sample_state()
    store.write(first)
    store.write(with_account(first, "bob"))
    store.compact()
    assert link.is_symlink()
    assert json.loads(target.read_text())["state"]["serial"] == 2
    assert (target.parent / "real.json.backup").exists()  # beside the target, not the link
    loaded = LocalStore(target).read()
    assert loaded is not None
    assert set(loaded.accounts) == {"alice", "bob"}


def test_the_link_and_its_target_share_one_lock(linked: tuple[Path, Path]) -> None:
    """Locking through the link excludes locking the target's name: one state, one lock."""
    link, target = linked
    with (
        held_in_thread(LocalStore(link)),
        pytest.raises(StateLocked),
        LocalStore(target).lock("plan"),
    ):
        pass


# -- leftovers of a writer killed mid-write -----------------------------------------


def test_the_next_lock_holder_removes_temp_files_of_killed_writers(tmp_path: Path) -> None:
    """`.state.json.<pid>.tmp` copies left by a kill -9 go; other files stay."""
    store = LocalStore(tmp_path / "state.json")
    store.write(sample_state())
    leftovers = [tmp_path / ".state.json.4242.tmp", tmp_path / ".state.json.4242.backup.tmp"]
    kept = [tmp_path / ".state.json.notes.tmp", tmp_path / ".other.json.4242.tmp"]
    for path in leftovers + kept:
        path.write_text(json.dumps(state_codec.to_json(sample_state())), encoding="utf-8")
    LocalStore(tmp_path / "state.json").read()  # reading (no lock) leaves them
    assert all(path.exists() for path in leftovers)
    with LocalStore(tmp_path / "state.json").lock("apply"):
        assert [path for path in leftovers if path.exists()] == []
    assert all(path.exists() for path in kept)


def test_a_write_that_lost_its_lock_leaves_no_temp_file(tmp_path: Path) -> None:
    """A write stopped by the fence removes the copy it was writing."""
    store = LocalStore(tmp_path / "state.json")
    store.write(sample_state())
    with store.lock("apply") as lock:
        LocalStore(tmp_path / "state.json").force_unlock(lock.lock_id)
        with pytest.raises(StateLockLost):
            store.write(with_account(sample_state(), "bob"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


# -- .gitignore -----------------------------------------------------------------------


def test_the_default_state_folder_is_gitignored(tmp_path: Path) -> None:
    """The default .reconciler/ gets a .gitignore of `*` on first use, also when it exists."""
    fresh = open_store(None, base_dir=tmp_path / "a", environ={})
    fresh.write(sample_state())
    assert (tmp_path / "a" / ".reconciler" / ".gitignore").read_text() == "*\n"
    older = tmp_path / "b" / ".reconciler"  # made by an older reconciler: no .gitignore
    older.mkdir(parents=True)
    with open_store(None, base_dir=tmp_path / "b", environ={}).lock("apply"):
        pass
    assert (older / ".gitignore").read_text() == "*\n"


def test_a_folder_the_store_creates_is_gitignored_an_existing_one_is_left(
    tmp_path: Path,
) -> None:
    """A state directory reconciler makes is its own; a directory of the user's is theirs."""
    LocalStore(tmp_path / "made" / "deep" / "state.json").write(sample_state())
    assert (tmp_path / "made" / "deep" / ".gitignore").read_text() == "*\n"
    LocalStore(tmp_path / "state.json").write(sample_state())
    assert not (tmp_path / ".gitignore").exists()


def test_reading_a_missing_default_state_creates_nothing(tmp_path: Path) -> None:
    """No folder appears from merely looking for a state."""
    store = open_store(None, base_dir=tmp_path, environ={})
    assert store.read() is None
    assert store.holder() is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_add_of_the_desired_folder_never_commits_the_state(tmp_path: Path) -> None:
    """`git add desired/` after an apply stages the YAML, never the state (it holds emails)."""
    desired = tmp_path / "desired"
    desired.mkdir()
    (desired / "users.yaml").write_text("version: 1\n", encoding="utf-8")
    store = open_store(None, base_dir=desired, environ={})
    with store.lock("apply"):
        store.write(sample_state())
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
        )
        return done.stdout

    git("init", "-q")
    git("add", "desired")
    assert git("diff", "--cached", "--name-only").split() == ["desired/users.yaml"]
    assert (desired / DEFAULT_STATE).exists()


@pytest.mark.parametrize("call", ["pwrite", "fsync", "ftruncate"])
def test_a_full_disk_while_taking_the_lock_is_a_state_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    """No room to record the lock's holder: a StateError naming the lock file (not a bug),
    the lock released, and the state as it was."""
    import errno  # noqa: PLC0415 - only this test makes an errno

    store = LocalStore(tmp_path / "state.json")
    store.write(sample_state())
    before = (tmp_path / "state.json").read_bytes()

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, call, full)
    with pytest.raises(StateError) as raised, store.lock("apply"):
        pass
    monkeypatch.undo()
    assert "cannot record the holder" in str(raised.value)
    assert str(tmp_path / "state.json.lock") in str(raised.value)
    assert (tmp_path / "state.json").read_bytes() == before
    with store.lock("apply"):  # released: the next run takes it
        pass


def test_a_lock_file_that_cannot_be_made_is_a_state_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock file cannot be created (no room, no permission): a StateError, not a bug."""
    import errno  # noqa: PLC0415 - only this test makes an errno

    from reconciler.stores import files  # noqa: PLC0415 - the call made to fail

    def refused(*_: object, **__: object) -> int:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(files, "open_regular", refused)
    store = LocalStore(tmp_path / "state.json")
    with pytest.raises(StateError, match="cannot lock state"), store.lock("apply"):
        pass
