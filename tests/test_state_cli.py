"""The state commands and the state location, through ``reconciler.cli.main``.

A location is a postgresql:// URL or a plain path, and anything else is refused before a
file can be made of it (password masked); every state command names the state it used;
a move between backends keeps the serial; force-unlock asks, and never frees a holder
that is still running here; every command works on a database that never saw reconciler.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler import values
from reconciler.cli.main import main
from reconciler.errors import StateLockLost
from reconciler.stores import LockInfo
from reconciler.stores import model as state_codec
from reconciler.stores.local import LocalStore
from reconciler.stores.model import State
from tests.support.builders import sample_state
from tests.support.pg import drop_workspaces, pg_dsn, pg_execute, unique_workspace
from tests.support.stores import with_account

STATE = Path(".reconciler") / "state.json"
SECRET = "pw-Sup3r-s3cret"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI; (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def files_under(root: Path) -> set[Path]:
    """Every file and folder below ``root``."""
    return set(root.rglob("*"))


# -- the location rule ----------------------------------------------------------------

BAD_LOCATIONS = [
    pytest.param(
        f"postgressql://postgres:{SECRET}@127.0.0.1/db", "not a state location", id="typo"
    ),
    pytest.param(
        f"postgresql:/postgres:{SECRET}@127.0.0.1/db", "not a state location", id="1-slash"
    ),
    pytest.param(f"POSTGRESQL://postgres:{SECRET}@h/db", "not a state location", id="upper"),
    pytest.param("file:///tmp/state.json", "not a state location", id="file-url"),
    pytest.param(f"host=127.0.0.1 password={SECRET} dbname=x", "key=value", id="key-value"),
    pytest.param(f"password='{SECRET} x' host=h", "key=value", id="key-value-quoted"),
    pytest.param(" postgresql://h/db", "spaces around it", id="leading-space"),
    pytest.param("", "set but empty", id="empty"),
]
COMMANDS = [
    ["state", "list"],
    ["state", "show", "alice"],
    ["state", "pull"],
    ["state", "push", "pushed.json"],
    ["force-unlock", "some-id", "--force"],
    ["import", "--account", "alice"],
    ["plan", "--no-refresh"],
    ["apply", "--auto-approve", "--no-refresh"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: "-".join(argv[:2]))
@pytest.mark.parametrize(("location", "message"), BAD_LOCATIONS)
@pytest.mark.parametrize("source", ["--state", "RECONCILER_STATE"])
def test_a_bad_location_is_refused_and_creates_nothing(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    argv: list[str],
    location: str,
    message: str,
    source: str,
) -> None:
    """Misspelt schemes, key=value DSNs, blanks: exit 1, the password masked, no file made."""
    (workdir / "pushed.json").write_text(json.dumps({"format_version": 1}), encoding="utf-8")
    before = files_under(workdir)
    if source == "--state":
        code, out, err = run(capsys, *argv, "--state", location)
    else:
        monkeypatch.setenv("RECONCILER_STATE", location)
        code, out, err = run(capsys, *argv)
    assert code == 1
    assert err.startswith(f"error: {source} ")
    assert message in err
    assert "hint: " in err
    assert SECRET not in out + err
    assert files_under(workdir) == before


@pytest.mark.parametrize("name", ["./state:prod.json", "./a=b.json"])
def test_a_path_with_a_colon_or_equals_sign_is_written_as_such(
    workdir: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """What the refusal's hint suggests works: ./ in front makes any name a plain path."""
    code, _, _ = run(capsys, "import", "--account", "alice", "--state", name)
    assert code == 0
    assert (workdir / name).exists()


def test_workspace_with_a_local_file_is_refused(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--workspace only selects PostgreSQL workspaces: with a file it is an error, not ignored."""
    for argv in (["state", "list"], ["import", "--account", "alice"]):
        code, _, err = run(capsys, *argv, "--workspace", "prdo")
        assert code == 1
        assert "--workspace 'prdo' names a PostgreSQL workspace" in err
    assert not (workdir / ".reconciler").exists()


# -- every command names the state it used --------------------------------------------


def test_state_list_names_the_file_lineage_and_serial(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """stderr says where and which version; stdout stays the list."""
    run(capsys, "import", "--all")
    stored = LocalStore(workdir / STATE).read()
    assert stored is not None
    code, out, err = run(capsys, "state", "list")
    assert (code, out) == (0, "alice\nbob\ncarol (disabled)\n")
    assert err == (
        f"State at {STATE}: lineage {stored.lineage}, serial {stored.serial}, 3 account(s).\n"
    )


def test_state_commands_name_a_postgres_state_with_the_password_masked(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The DSN shown has *** for its password, and the workspace by name."""
    dsn = pg_dsn()
    workspace = unique_workspace()
    user, _, rest = dsn.partition("://")[2].partition("@")
    location = f"postgresql://{user.split(':')[0]}:{SECRET}@{rest}?workspace={workspace}"
    shown = f"postgresql://{user.split(':')[0]}:***@{rest} (workspace {workspace})"
    try:
        code, _, err = run(capsys, "state", "list", "--state", location)
        assert code == 0
        assert err.startswith(f"warning: no state at {shown}: nothing was applied here\n")
        run(capsys, "import", "--all", "--state", location)
        for argv in (["state", "list"], ["state", "show", "bob"], ["state", "pull"]):
            code, out, err = run(capsys, *argv, "--state", location)
            assert code == 0
            assert f" {shown}: lineage " in err
            assert ", serial 1" in err
            assert SECRET not in out + err
    finally:
        drop_workspaces(dsn, workspace)


# -- moving a state -------------------------------------------------------------------


def test_migrating_to_postgres_keeps_the_serial_and_refuses_an_old_copy(
    workdir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """pull from the file, push to PostgreSQL: serial 46 stays 46; the copy cannot return."""
    local = LocalStore(workdir / STATE)
    local.write(State(lineage=sample_state().lineage, serial=46), force=True)
    code, document, _ = run(capsys, "state", "pull")
    assert code == 0
    old_copy = tmp_path / "state.json"
    old_copy.write_text(document, encoding="utf-8")
    dsn, workspace = pg_dsn(), unique_workspace()
    team = f"{dsn}{'&' if '?' in dsn else '?'}workspace={workspace}"
    try:
        code, out, _ = run(capsys, "state", "push", str(old_copy), "--state", team)
        assert code == 0
        assert out.endswith("serial 46 (it was empty).\n")
        from reconciler.stores.postgres import PostgresStore  # noqa: PLC0415 - optional extra

        store = PostgresStore.from_dsn(team)
        moved = store.read()
        assert moved is not None
        store.write(with_account(moved, "renamed"))  # the team applies: serial 47
        code, _, err = run(capsys, "state", "push", str(old_copy), "--state", team)
        assert code == 1
        assert "is at serial 47; the pushed document's serial 46 is not newer" in err
        stored = store.read()
        assert stored is not None
        assert (stored.serial, set(stored.accounts)) == (47, {"renamed"})
    finally:
        drop_workspaces(dsn, workspace)


# -- force-unlock ---------------------------------------------------------------------


class _Terminal(io.StringIO):
    """Standard input that is a terminal, with the user's answer already typed."""

    def isatty(self) -> bool:
        """Yes."""
        return True


def _dead_pid() -> int:
    """The pid of a process that has already exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _left_lock(store: LocalStore, *, host: str, pid: int) -> LockInfo:
    """A lock file as a holder that is gone left it."""
    info = LockInfo(
        lock_id="0b1e6e2a-lock", operation="apply", host=host, pid=pid, user="ci", created_at="x"
    )
    store.lock_path.parent.mkdir(parents=True, exist_ok=True)
    store.lock_path.write_text(json.dumps(info.to_json()), encoding="utf-8")
    return info


def test_force_unlock_refuses_a_holder_still_running_here(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The repro: a running local apply's lock is not released (without --force)."""
    store = LocalStore(workdir / STATE)
    with store.lock("apply") as lock:
        code, _, err = run(capsys, "force-unlock", lock.lock_id)
        assert code == 1
        assert f"pid {os.getpid()}" in err
        assert "still running on this host" in err
        assert f"hint: let it finish or stop it (kill {os.getpid()})" in err
        lock.verify()  # still ours
        store.write(sample_state())


@pytest.mark.parametrize(
    "host",
    [socket.gethostname(), "ci-runner-7"],
    ids=["gone-from-this-host", "another-host"],
)
def test_force_unlock_asks_on_a_terminal(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    host: str,
) -> None:
    """No terminal: refused with the --force hint; 'no' cancels; 'yes' releases."""
    store = LocalStore(workdir / STATE)
    info = _left_lock(store, host=host, pid=_dead_pid())
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = run(capsys, "force-unlock", info.lock_id)
    assert code == 1
    assert "no terminal to ask on" in err
    unlock = f"reconciler force-unlock {info.lock_id} --force"
    assert f"hint: make sure its holder is gone, then add --force: {unlock}\n" in err
    monkeypatch.setattr(sys, "stdin", _Terminal("no\n"))
    code, out, _ = run(capsys, "force-unlock", info.lock_id)
    assert code == 1
    assert info.describe() in out
    assert out.endswith("Force-unlock cancelled.\n")
    assert store.lock_path.exists()
    monkeypatch.setattr(sys, "stdin", _Terminal("yes\n"))
    code, out, _ = run(capsys, "force-unlock", info.lock_id)
    assert code == 0
    assert out.endswith(f"Lock {info.lock_id} released on {STATE}.\n")
    assert not store.lock_path.exists()


def test_every_force_unlock_hint_names_the_path_state_and_workspace_given(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hints are commands to paste: run from another folder, a bare
    `reconciler force-unlock ID` would look at another state."""
    state = Path("states") / "prod team.json"
    store = LocalStore(workdir / state)
    store.write(values.replace(sample_state(), pending=()))
    (workdir / "desired").mkdir()
    given = ("desired", "--state", str(state))
    where = "desired --state 'states/prod team.json'"
    # a state locked by a run, met by another command: the store's hint, completed by the CLI
    with store.lock("apply") as lock:
        code, _, err = run(capsys, "state", "rm", "--account", "alice", *given, "--force")
    assert code == 1
    assert f"or if that process is gone: reconciler force-unlock {lock.lock_id} {where}\n" in err
    # force-unlock itself, without a terminal to confirm on
    info = _left_lock(store, host="ci-runner-7", pid=_dead_pid())
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = run(capsys, "force-unlock", info.lock_id, *given)
    assert code == 1
    assert f"then add --force: reconciler force-unlock {info.lock_id} {where} --force\n" in err


def test_force_unlock_with_force_asks_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--force skips the question (a pipeline has no terminal)."""
    store = LocalStore(workdir / STATE)
    info = _left_lock(store, host=socket.gethostname(), pid=_dead_pid())
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, out, _ = run(capsys, "force-unlock", info.lock_id, "--force")
    assert (code, out) == (0, f"Lock {info.lock_id} released on {STATE}.\n")


def test_a_live_postgres_holder_is_refused_then_fenced_when_forced(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL: the same refusal; with --force the holder's session ends, and it stops."""
    from reconciler.stores.postgres import PostgresStore  # noqa: PLC0415 - optional extra

    dsn, workspace = pg_dsn(), unique_workspace()
    store = PostgresStore.from_dsn(dsn, workspace=workspace)
    try:
        first = sample_state()
        store.write(first)
        with store.lock("apply") as lock:
            argv = ["force-unlock", lock.lock_id, "--state", dsn, "--workspace", workspace]
            code, _, err = run(capsys, *argv)
            assert code == 1
            assert "still running on this host" in err
            lock.verify()
            code, _, _ = run(capsys, *argv, "--force")
            assert code == 0
            with pytest.raises(StateLockLost):
                store.write(with_account(first, "bob"))
    finally:
        drop_workspaces(dsn, workspace)


# -- a database that never saw reconciler ---------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["state", "list"], 0),
        (["state", "show", "alice"], 1),  # no state: said so, not a missing table
        (["state", "pull"], 1),
        (["state", "push", "pushed.json"], 0),
        (["force-unlock", "some-id", "--force"], 1),  # nothing to unlock
        (["import", "--account", "alice"], 0),
        (["plan", "--no-refresh"], 0),
        (["why", "alice"], 0),
    ],
    ids=lambda value: "-".join(value[:2]) if isinstance(value, list) else str(value),
)
def test_every_command_works_first_on_a_new_database(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    fresh_database: str,
    argv: list[str],
    expected: int,
) -> None:
    """Whatever a team runs first against a brand-new database works (or says why not)."""
    pushed = workdir / "pushed.json"
    pushed.write_text(json.dumps(state_codec.to_json(sample_state())), encoding="utf-8")
    code, _, err = run(capsys, *argv, "--state", fresh_database)
    assert code == expected, err
    assert "relation" not in err  # never psycopg's UndefinedTable
    if expected:
        assert "no state at" in err or "no recorded lock holder" in err
    assert pg_execute(fresh_database, "SELECT value FROM reconciler_meta") == [("2",)]


def test_a_state_with_nan_is_refused_by_plan_and_push(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state file edited to hold NaN (Python's json reads it, JSON has no NaN): plan
    refuses it as not valid JSON and `state push` will not store it; no crash, exit 1."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "users.yaml").write_text("version: 1\nusers: []\n", encoding="utf-8")
    state = tmp_path / "state.json"
    LocalStore(state).write(sample_state())
    document = json.loads(state.read_bytes())
    document["state"]["serial"] = float("nan")
    state.write_text(json.dumps(document), encoding="utf-8")
    code, _, err = run(capsys, "plan", "--no-refresh", "--state", str(state))
    assert code == 1
    assert "not valid JSON (NaN is not a JSON number)" in err
    assert "bug" not in err
    pushed = tmp_path / "pushed.json"
    pushed.write_text(json.dumps(document["state"]), encoding="utf-8")
    other = tmp_path / "other.json"
    code, _, err = run(capsys, "state", "push", str(pushed), "--state", str(other))
    assert code == 1
    assert "NaN is not a JSON number" in err
    assert not other.exists()


def test_a_state_with_a_lone_surrogate_is_refused_by_plan_and_push(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state file edited to hold "\\ud800" (JSON reads it; it is not Unicode): plan says
    the state holds a lone surrogate (it crashed the JSON plan once) and push refuses it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "users.yaml").write_text("version: 1\nusers: []\n", encoding="utf-8")
    state = tmp_path / "state.json"
    LocalStore(state).write(sample_state())
    spoilt = state.read_bytes().replace(b'"Alice', b'"\\ud800Alice')
    assert spoilt != state.read_bytes()
    state.write_bytes(spoilt)
    code, _, err = run(capsys, "plan", "--no-refresh", "--format", "json", "--state", str(state))
    assert code == 1
    assert "holds text that is not Unicode (a lone surrogate" in err
    assert "bug" not in err
    pushed = tmp_path / "pushed.json"
    pushed.write_bytes(json.dumps(json.loads(spoilt)["state"]).encode())
    other = tmp_path / "other.json"
    code, _, err = run(capsys, "state", "push", str(pushed), "--state", str(other))
    assert code == 1
    assert "lone surrogate" in err
    assert not other.exists()
