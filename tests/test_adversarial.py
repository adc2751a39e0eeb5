"""Red-team findings on inputs and outputs, each pinned by the repro that found it.

Driven through ``reconciler.cli.main`` like a user would: what a reviewer sees must be
what is applied, and hostile names must never forge output lines, cells or formulas.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import values
from reconciler.apply import ledger
from reconciler.cli import main as cli
from reconciler.sandbox import app
from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.sandbox.server import RunningSandbox
from reconciler.stores.local import LocalStore
from reconciler.stores.model import (
    LAST_STARTING_SERIAL,
    MAX_SERIAL,
    Action,
    PendingBatch,
    PendingEntry,
)
from tests.support import sandbox as fx
from tests.support.builders import desired, problems_of, record, state, user

Served = tuple[app.Sandbox, RunningSandbox]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


MERGED_DISABLE = """\
version: 1
roles:
  agent: {id: "101"}
users:
  - &alice
    account: alice
    name: Alice
    email: alice@example.com
    roles: [agent]
  - <<: *alice
    account: bob
    email: bob@example.com
    enabled: true
"""


def test_a_merge_key_is_a_located_error_and_nothing_is_planned(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """M3: `<<: *alice` would give bob alice's roles and name unseen in review: refused."""
    clean_env.chdir(tmp_path)
    (tmp_path / "users.yaml").write_text(MERGED_DISABLE, encoding="utf-8")
    code, out, _ = _run(capsys, "validate")
    assert code == 1
    assert "users.yaml:10:5: merge keys are not supported; write the keys out" in out
    code, _, _ = _run(capsys, "plan", "--no-refresh")
    assert code == 1
    assert not (tmp_path / ".reconciler").exists()


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """One loopback sandbox for the module."""
    with fx.loopback(FederationSettings(todo_seconds=0.0, doing_seconds=0.0)) as served:
        yield served


@pytest.fixture
def served(server: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """The sandbox reset; the CLI's variables point at it; no RECONCILER_STATE."""
    box, running = server
    fx.point_cli_at(box, running, monkeypatch)
    return box, running


def _state_at(path: Path, serial: int) -> None:
    """The default state beside ``path`` rewritten at ``serial`` (a forced push would do)."""
    store = LocalStore(path / ".reconciler" / "state.json")
    current = store.read()
    assert current is not None
    store.write(values.replace(current, serial=serial), force=True)


@pytest.mark.parametrize("room", [1, 2, 5, 2**32 - 1])
def test_an_apply_near_the_last_serial_sends_nothing(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str], room: int
) -> None:
    """H4: a state fewer than 2^32 writes short of 2^63-1 is refused before anything is
    sent — not with an out-of-range write after every batch went out, which left batches
    no run could record (refresh failed the same way)."""
    box, _ = served
    path = fx.write_desired(tmp_path / "desired", fx.users(2))
    assert cli.main(["apply", str(path), "--auto-approve", "--no-refresh"]) == 0
    _state_at(path, MAX_SERIAL - room)
    before = fx.state_document(path)
    calls = dict(box.federation.stats().calls)
    fx.write_desired(path, fx.users(250))
    code, _, err = _run(capsys, "apply", str(path), "--auto-approve", "--no-refresh")
    assert code == 1
    assert f"is at serial {MAX_SERIAL - room}, less than 2^32 writes before the last" in err
    assert "hint: `reconciler state pull > copy.json`" in err
    assert box.federation.stats().calls == calls
    assert fx.state_document(path) == before
    assert _run(capsys, "refresh", str(path))[0] == 1


def test_an_apply_at_the_last_starting_serial_runs(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """H4: the documented bound itself still applies (three batches, all recorded)."""
    path = fx.write_desired(tmp_path / "desired", fx.users(2))
    assert cli.main(["apply", str(path), "--auto-approve", "--no-refresh"]) == 0
    _state_at(path, LAST_STARTING_SERIAL)
    fx.write_desired(path, fx.users(250))
    code, _, err = _run(capsys, "apply", str(path), "--auto-approve", "--no-refresh")
    assert code == 0, err
    after = fx.state_document(path)
    assert after is not None
    assert LAST_STARTING_SERIAL < after["serial"] < MAX_SERIAL
    assert len(after["accounts"]) == 250


@pytest.mark.parametrize("out", ["users.yaml", "plan.YML", "desired"])
def test_plan_out_never_overwrites_the_desired_state(
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    out: str,
) -> None:
    """`plan --out users.yaml` replaced the input file with the plan's JSON (and told the
    user to `apply users.yaml`, read as desired state): refused before anything is read."""
    clean_env.chdir(tmp_path)
    desired_dir = fx.write_desired(tmp_path / "desired", fx.users(1))
    (tmp_path / "users.yaml").write_text("version: 1\nusers: []\n", encoding="utf-8")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, _, err = _run(capsys, "plan", str(desired_dir), "--no-refresh", "--out", out)
    assert code == 1
    assert f"error: --out {out} is a" in err
    assert "hint: save the plan under another name, e.g. --out plan.json" in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_plan_out_names_the_command_that_applies_it(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pasteable apply line carries PATH and --state, since apply takes neither from
    the plan (C1)."""
    clean_env.chdir(tmp_path)
    path = fx.write_desired(tmp_path / "desired", fx.users(1))
    state = tmp_path / "team.json"
    argv = ["plan", str(path), "--no-refresh", "--out", "p.json", "--state", str(state)]
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    assert f"Apply exactly this plan with: reconciler apply p.json {path} --state {state}\n" in out


@pytest.mark.parametrize(
    ("char", "where", "fragment"),
    [
        ("\u202e", (6, 14), "bidirectional control character U+202E: the file would read"),
        ("\u202a", (6, 14), "bidirectional control character U+202A"),
        ("\u2066", (6, 14), "bidirectional control character U+2066"),
        ("\u2069", (6, 14), "bidirectional control character U+2069"),
        ("\u200f", (6, 11), "or a control character"),
        ("\u061c", (6, 11), "or a control character"),
    ],
)
def test_a_bidi_control_in_a_name_is_refused(
    tmp_path: Path, char: str, where: tuple[int, int], fragment: str
) -> None:
    """H5: a name with a bidirectional control reads differently from what it is, in the
    review and in the tenant's own UI: a located validation error. Overrides, embeddings
    and isolates are refused anywhere in a file (Trojan Source), marks in names."""
    (tmp_path / "users.yaml").write_text(
        "version: 1\nroles:\n  agent: {id: '101'}\nusers:\n  - account: alice\n"
        f"    name: 'Al{char}ice'\n    email: alice@example.com\n    roles: [agent]\n",
        encoding="utf-8",
    )
    problems = problems_of(tmp_path)
    assert [(p.line, p.col) for p in problems] == [where]
    assert fragment in problems[0].message


def test_a_bidi_override_in_a_comment_is_refused(tmp_path: Path) -> None:
    """Trojan Source: an override in a comment can make a grant read as a comment."""
    (tmp_path / "users.yaml").write_text(
        "version: 1\nroles:\n  agent: {id: '101'}\n  admin: {id: '109', sensitive: true}\n"
        "users:\n  - account: alice\n    name: Alice\n    email: alice@example.com\n"
        "    roles: [agent, admin] # \u202e just agent\n",
        encoding="utf-8",
    )
    problems = problems_of(tmp_path)
    assert [(p.line, p.col) for p in problems] == [(9, 29)]
    assert problems[0].message.startswith("bidirectional control character U+202E")


def _inject(path: Path, entry: PendingEntry) -> None:
    """The default state beside ``path`` with a lost batch (no task id) holding ``entry``."""
    store = LocalStore(path / ".reconciler" / "state.json")
    current = store.read()
    assert current is not None
    batch = PendingBatch(
        batch_id="b-injected", recorded_at="2025-01-01T00:00:00Z", entries=(entry,)
    )
    store.write(values.replace(current, pending=(batch,)), force=True)


@pytest.mark.parametrize("command", ["apply", "refresh"])
def test_a_grant_injected_into_the_state_is_never_sent(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """Settling an interrupted apply resends its lost entries as recorded: a hand-edited
    state adding a MODIFY that grants a role nobody declared is refused, nothing sent."""
    box, _ = served
    specs = fx.users(2)
    path = fx.write_desired(tmp_path / "desired", specs)
    assert cli.main(["apply", str(path), "--auto-approve", "--no-refresh"]) == 0
    account = specs[0].account
    recorded = LocalStore(path / ".reconciler" / "state.json").read()
    assert recorded is not None
    before = recorded.accounts[account]
    escalated = (*before.role_ids, fx.ROLE_REPORTING)
    _inject(
        path,
        PendingEntry(
            action=Action.MODIFY,
            account=account,
            wire={"action": "MODIFY", "userAccount": account, "roleIds": list(escalated)},
            target=values.replace(before, role_ids=escalated),
        ),
    )
    calls = dict(box.federation.stats().calls)
    argv = [command, str(path)] + (["--auto-approve", "--no-refresh"] if command == "apply" else [])
    code, _, err = _run(capsys, *argv)
    assert code == 1
    assert "1 entry of an interrupted apply that the desired state does not account for" in err
    assert f"role id(s) {fx.ROLE_REPORTING} granted by neither" in err
    assert box.federation.stats().calls == calls
    assert fx.ROLE_REPORTING not in fx.tenant_view(box)[account]["role_ids"]


def test_an_interrupted_batch_the_desired_state_explains_is_still_settled() -> None:
    """The rule lets a genuine lost batch through: its grants are the desired ones."""
    wanted = desired(user("alice", "agent", "admin"))
    recorded = state(record("alice", "agent"))
    entry = PendingEntry(
        action=Action.MODIFY,
        account="alice",
        wire={"action": "MODIFY", "userAccount": "alice", "roleIds": ["101", "109"]},
        target=record("alice", "agent", "admin"),
    )
    gone = PendingEntry(
        action=Action.DISABLE,
        account="zed",
        wire={"action": "DISABLE", "userAccount": "zed"},
        target=record("zed", enabled=False),
    )
    batch = PendingBatch(batch_id="b", recorded_at="t", entries=(entry, gone))
    assert ledger.unexplained(values.replace(recorded, pending=(batch,)), wanted) == ()
    forged = values.replace(
        gone, wire={"action": "CREATE", "userAccount": "zed", "roleIds": ["109"]}
    )
    batch = PendingBatch(batch_id="b", recorded_at="t", entries=(forged,))
    (line,) = ledger.unexplained(values.replace(recorded, pending=(batch,)), wanted)
    assert (
        line == "batch b: DISABLE zed: its request names another action or account than the entry"
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("command", ["apply", "show"])
def test_a_fifo_given_as_a_plan_is_refused_unopened(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """`apply FIFO` / `show FIFO` blocked forever reading it: refused without opening it."""
    clean_env.chdir(tmp_path)
    os.mkfifo(tmp_path / "plan.json")
    code, _, err = _run(capsys, command, "plan.json")
    assert code == 1
    assert "plan.json is not a regular file" in err


@pytest.mark.parametrize(
    ("char", "name"),
    [("\x85", "U+0085"), ("\u2028", "U+2028"), ("\u2029", "U+2029"), ("\r", "U+000D")],
)
def test_a_line_break_editors_do_not_show_is_refused(tmp_path: Path, char: str, name: str) -> None:
    """YAML breaks lines at NEL, LS, PS and a lone CR; editors, diffs and grep do not: a
    user after one inside a comment was read as content (a grant hidden in a comment),
    and every later line number was off by one. Refused anywhere, located as read."""
    (tmp_path / "users.yaml").write_text(
        "version: 1\nroles:\n  agent: {id: '101'}\nusers:\n  - account: alice\n"
        "    name: Alice\n    email: alice@example.com\n"
        f"    roles: [agent] # reviewed{char}  - {{account: evil, name: E, "
        "email: e@example.com, roles: [agent]}\n",
        encoding="utf-8",
        newline="",
    )
    problems = problems_of(tmp_path)
    assert [(p.line, p.col) for p in problems] == [(8, 30)]
    assert problems[0].message.startswith(f"line break {name} that editors")


def test_crlf_line_ends_are_read_as_written(tmp_path: Path) -> None:
    """CRLF files stay valid, their problems on the lines a reader sees."""
    (tmp_path / "users.yaml").write_bytes(
        b"version: 1\r\nroles:\r\n  agent: {id: '101'}\r\nusers:\r\n  - account: alice\r\n"
        b"    name: Alice\r\n    email: alice@example.com\r\n    roles: [nope]\r\n"
    )
    problems = problems_of(tmp_path)
    assert [(p.line, p.col) for p in problems] == [(8, 13)]


@pytest.mark.parametrize("composed", [False, True], ids=["events", "composed"])
def test_a_problem_under_a_duplicate_key_is_located_in_the_value_that_wins(
    tmp_path: Path, composed: bool
) -> None:
    """With a key given twice the later value is the one read: a problem inside it is
    located there, not at the same path in the earlier value (where there is none)."""
    (tmp_path / "users.yaml").write_text(
        "version: 1\nroles:\n  agent: {id: '101'}\nusers:\n  - account: alice\n"
        "    name: Alice\n    email: alice@example.com\n    roles: [agent]\n"
        "users:\n  - account: bob\n    name: Bob\n    email: bob@example.com\n"
        "    roles: [nope]\n" + ("# *composed\n" if composed else ""),
        encoding="utf-8",
    )
    problems = problems_of(tmp_path)
    assert sorted((p.line, p.col) for p in problems) == [(9, 1), (13, 13)]


@pytest.mark.parametrize("value", ["=", "<<"])
def test_a_plain_value_yaml_11_gives_a_meaning_says_to_quote_it(tmp_path: Path, value: str) -> None:
    """``=`` and ``<<`` written plain are YAML 1.1's value and merge keys: the message
    says so and how to keep the text, not that a tag nobody wrote is refused."""
    (tmp_path / "users.yaml").write_text(
        "version: 1\nroles:\n  agent: {id: '101'}\nusers:\n  - account: alice\n"
        f"    name: {value}\n    email: alice@example.com\n    roles: [agent]\n",
        encoding="utf-8",
    )
    problems = problems_of(tmp_path)
    assert [(p.line, p.col) for p in problems] == [(6, 11)]
    assert problems[0].message == (
        f"the plain value {value!r} has a special meaning in YAML: quote it ('{value}') "
        "to keep it as text"
    )
