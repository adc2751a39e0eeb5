"""The CLI's core commands through ``reconciler.cli.main``: validate, plan, show, import,
state, force-unlock, exit codes and colour rules."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from reconciler.cli import commands
from reconciler.cli.main import main
from reconciler.desired import validation
from reconciler.plan import policy_review
from reconciler.stores.local import LocalStore
from reconciler.values import replace

STATE = Path(".reconciler") / "state.json"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI; (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_validate_text_ok(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid folder prints a one-line summary and exits 0."""
    assert run(capsys, "validate") == (0, "Valid: 3 users, 3 roles in 2 file(s).\n", "")


def test_validate_json_ok(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format json reports validity as JSON."""
    code, out, _ = run(capsys, "validate", ".", "--format", "json")
    assert code == 0
    assert json.loads(out) == {"valid": True, "problems": [], "warnings": 0, "users": 3}


def test_validate_problems_text(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Problems are listed as file:line:col: message on stdout, a count on stderr, exit 1."""
    (workdir / "bad.yaml").write_text("version: 1\nversion: 1\nteams: []\n", encoding="utf-8")
    code, out, err = run(capsys, "validate")
    assert code == 1
    assert out.splitlines() == [
        "bad.yaml:2:1: duplicate key 'version': the later value would silently win; keep one",
        "bad.yaml:3:1: unknown key 'teams' (allowed: policy, provisioning, roles, users, version)",
    ]
    assert err.startswith("error: 2 problems in the desired state\nhint: ")


def test_validate_problems_json(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format json lists every problem with file, line, col, rule and path."""
    (workdir / "bad.yaml").write_text("version: 1\nteams: []\n", encoding="utf-8")
    code, out, _ = run(capsys, "validate", "--format", "json")
    assert code == 1
    assert json.loads(out) == {
        "valid": False,
        "problems": [
            {
                "file": "bad.yaml",
                "line": 2,
                "col": 1,
                "severity": "error",
                "message": "unknown key 'teams' (allowed: policy, provisioning, roles, users, "
                "version)",
                "rule": "schema",
                "path": ["teams"],
            }
        ],
        "warnings": 0,
    }


def test_validate_oversized_file_via_environment(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """RECONCILER_MAX_FILE_BYTES lowers the per-file limit; the file is named."""
    monkeypatch.setenv("RECONCILER_MAX_FILE_BYTES", "64")
    code, out, _ = run(capsys, "validate")
    assert code == 1
    assert "roles.yaml:1:1: file is 111 bytes, over the 64-byte limit" in out


def test_bad_size_limit_is_a_usage_error(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A non-numeric RECONCILER_MAX_FILE_BYTES is refused with exit 1."""
    monkeypatch.setenv("RECONCILER_MAX_FILE_BYTES", "lots")
    code, _, err = run(capsys, "validate")
    assert (code, err) == (
        1,
        "error: RECONCILER_MAX_FILE_BYTES must be a number of bytes, not 'lots'\n",
    )


def test_validate_missing_path(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path that does not exist exits 1 with an error and a hint."""
    code, _, err = run(capsys, "validate", "nowhere")
    assert code == 1
    assert err.startswith("error: nowhere: no such file or directory\nhint: ")


@pytest.mark.parametrize(
    ("fmt", "marker"),
    [("text", "+ account alice"), ("markdown", "### reconciler plan:"), ("json", '"CREATE"')],
)
def test_plan_formats(
    workdir: Path, capsys: pytest.CaptureFixture[str], fmt: str, marker: str
) -> None:
    """plan renders text, Markdown or JSON; without a state everything enabled is created."""
    code, out, _ = run(capsys, "plan", "--format", fmt, "--no-refresh")
    assert code == 0
    assert marker in out
    if fmt == "json":
        document = json.loads(out)
        assert [c["account"] for c in document["changes"]] == ["alice", "bob"]
        assert document["state"] == {
            "lineage": None,
            "serial": 0,
            "location": ".reconciler/state.json",
            "workspace": None,
        }


def test_plan_notes_unconfigured_event_refresh(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With refresh on and no CloudIdentity credentials, the plan says events were not read."""
    _, out, _ = run(capsys, "plan")
    assert "provisioning events not refreshed: CloudIdentity is not configured" in out


def test_detailed_exitcode(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--detailed-exitcode: 2 with changes (adopts too), 0 once the state matches."""
    assert run(capsys, "plan", "--detailed-exitcode", "--no-refresh")[0] == 2
    assert run(capsys, "import", "--account", "alice", "--account", "bob")[0] == 0
    assert run(capsys, "plan", "--detailed-exitcode", "--no-refresh")[0] == 2
    _verify_adopted(workdir)
    # A state that records no policy: apply would record it, so that is a change.
    code, out, _ = run(capsys, "plan", "--detailed-exitcode", "--no-refresh")
    assert code == 2
    assert "the state records no policy yet" in out
    assert "No account changes. Apply records the changed policy." in out
    _record_policy(workdir)
    code, out, _ = run(capsys, "plan", "--detailed-exitcode", "--no-refresh")
    assert code == 0
    assert "No changes." in out


def _record_policy(workdir: Path) -> None:
    """Record the desired policy in the state, as an apply would."""
    store = LocalStore(workdir / STATE)
    current = store.read()
    assert current is not None
    policy = policy_review.record_of(validation.load_desired(workdir))
    store.write(current.successor(policy=policy))


def _verify_adopted(workdir: Path) -> None:
    """Record every adopted account as verified, as an apply of its adopt would."""
    store = LocalStore(workdir / STATE)
    current = store.read()
    assert current is not None
    verified = {a: replace(r, adopted=False) for a, r in current.accounts.items()}
    store.write(current.successor(accounts=verified))


def _manage_all_then_remove(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Manage every account, then drop alice and bob from the YAML and protect nobody."""
    assert run(capsys, "import", "--all")[0] == 0
    _verify_adopted(workdir)
    (workdir / "users.yaml").write_text("version: 1\n", encoding="utf-8")
    (workdir / "policy.yaml").write_text(
        "version: 1\npolicy:\n  max_disable: {count: 1}\n", encoding="utf-8"
    )


def test_guard_rail_exits_3_and_saves_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over the disable limit: exit 3, the reason on stderr, and no --out file."""
    _manage_all_then_remove(workdir, capsys)
    code, out, err = run(capsys, "plan", "--no-refresh", "--out", "p.json")
    assert code == 3
    assert "- account alice" in out
    assert err.startswith(
        "error: plan blocked by guard rail: would disable 2 accounts, over the limit of 1"
    )
    assert not (workdir / "p.json").exists()


def test_allow_disables_equal_to_count_saves_the_plan(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--allow-disables N with N equal to the disables lets the plan through; N+1 does not."""
    _manage_all_then_remove(workdir, capsys)
    assert run(capsys, "plan", "--no-refresh", "--allow-disables", "3")[0] == 3
    code, _, _ = run(capsys, "plan", "--no-refresh", "--allow-disables", "2", "--out", "p.json")
    assert code == 0
    assert json.loads((workdir / "p.json").read_text())["guard"]["override"] == 2


def test_json_out_prints_exactly_the_saved_plan(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan --format json --out FILE` prints the very text it saves (built once); with
    --redact the printed plan is redacted and the saved one is not."""
    code, out, _ = run(capsys, "plan", "--no-refresh", "--format", "json", "--out", "p.json")
    assert code == 0
    assert out == (workdir / "p.json").read_text(encoding="utf-8")
    code, redacted, _ = run(
        capsys, "plan", "--no-refresh", "--format", "json", "--redact", "emails", "--out", "p.json"
    )
    assert code == 0
    assert json.loads(redacted)["redacted"] == ["emails"]
    assert "redacted" not in json.loads((workdir / "p.json").read_text(encoding="utf-8"))


def test_out_then_show(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A saved plan shows the same text and JSON as the plan that wrote it."""
    code, out, _ = run(capsys, "plan", "--no-refresh", "--out", "plan.json")
    assert code == 0
    assert "Saved the plan to plan.json." in out
    saved = (workdir / "plan.json").read_text(encoding="utf-8")
    assert (workdir / "plan.json").stat().st_mode & 0o777 == 0o600
    assert run(capsys, "show", "plan.json", "--format", "json") == (0, saved, "")
    code, shown, _ = run(capsys, "show", "plan.json")
    assert code == 0
    assert shown in out


def test_show_refuses_a_non_plan(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """show of a file that is not a plan exits 1 with a hint."""
    (workdir / "junk.json").write_text("{}", encoding="utf-8")
    code, _, err = run(capsys, "show", "junk.json")
    assert code == 1
    assert "junk.json is not a valid saved plan" in err


def test_import_one_then_state_list_and_show(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """import ACCOUNT records it as declared; state list/show read it back."""
    code, out, _ = run(capsys, "import", "--account", "bob")
    assert code == 0
    written = LocalStore(workdir / STATE).read()
    assert written is not None
    assert out.startswith(
        f"Imported 1 account(s) into .reconciler/state.json (lineage {written.lineage}, "
        "serial 1): bob\n"
        "They are recorded as adopted, attributes unverified"
    )
    code, out, err = run(capsys, "state", "list")
    assert (code, out) == (0, "bob\n")
    assert err.startswith("State at .reconciler/state.json: lineage ")
    code, out, _ = run(capsys, "state", "show", "bob")
    assert code == 0
    shown = json.loads(out)
    assert {k: shown[k] for k in ("account", "name", "email", "role_ids", "enabled")} == {
        "account": "bob",
        "name": "Bob",
        "email": "bob@example.com",
        "role_ids": ["101", "103"],
        "enabled": True,
    }
    assert shown["adopted"] is True


def test_import_all_marks_disabled_accounts(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """import --all adopts every declared account; enabled:false ones are listed disabled."""
    assert run(capsys, "import", "--all")[0] == 0
    code, out, err = run(capsys, "state", "list")
    assert (code, out) == (0, "alice\nbob\ncarol (disabled)\n")
    assert err.endswith(", serial 1, 3 account(s).\n")
    assert run(capsys, "import", "--all")[1].startswith("Nothing to import")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["import", "--account", "mallory"], "error: not in the desired state: mallory"),
        (["import"], "error: name the accounts to import, or pass --all"),
    ],
)
def test_import_errors(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Importing an undeclared account, or nothing, exits 1 and writes no state."""
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.startswith(message)
    assert not (workdir / STATE).exists()


def test_import_already_managed(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Importing a managed account again exits 1 and leaves the state as it was."""
    run(capsys, "import", "--account", "alice")
    before = (workdir / STATE).read_bytes()
    code, _, err = run(capsys, "import", "--account", "alice")
    assert code == 1
    assert err.startswith("error: already managed: alice")
    assert (workdir / STATE).read_bytes() == before


def test_state_show_unknown_and_empty_list(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """state list without a state says so loudly; state show of an unmanaged account exits 1."""
    code, out, err = run(capsys, "state", "list")
    assert (code, out) == (0, "")
    assert err.startswith("warning: no state at .reconciler/state.json: nothing was applied")
    code, _, err = run(capsys, "state", "show", "alice")
    assert code == 1
    assert err.startswith("error: no state at .reconciler/state.json\n")
    run(capsys, "import", "--account", "bob")
    code, _, err = run(capsys, "state", "show", "alice")
    assert code == 1
    assert "account 'alice' is not in the state at .reconciler/state.json" in err


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b'{"format_version": 1}', b'{"format_version": 99}', b"\xff\xfe"],
)
@pytest.mark.parametrize(
    "argv", [["plan", "--no-refresh"], ["import", "--account", "alice"], ["state", "list"]]
)
def test_corrupt_state_is_refused_and_untouched(
    workdir: Path, capsys: pytest.CaptureFixture[str], content: bytes, argv: list[str]
) -> None:
    """A corrupt or newer state file: exit 1, an error naming it, and the file unchanged."""
    (workdir / STATE).parent.mkdir()
    (workdir / STATE).write_bytes(content)
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.startswith("error: state .reconciler/state.json ")
    assert "hint: " in err
    assert (workdir / STATE).read_bytes() == content


def test_force_unlock_without_a_lock(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """force-unlock when nothing is locked exits 1."""
    code, _, err = run(capsys, "force-unlock", "some-id")
    assert code == 1
    assert "is not locked" in err


def test_force_unlock_wrong_id_keeps_the_lock(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """force-unlock with another id than the holder's exits 1 and names the right id."""
    store = LocalStore(workdir / STATE)
    with store.lock("test") as held:
        code, _, err = run(capsys, "force-unlock", "wrong-id")
        assert code == 1
        assert f"pass the id of the current holder: {held.lock_id}" in err
        assert store.lock_path.exists()
        code, _, err = run(capsys, "force-unlock", held.lock_id)  # held by this live process
        assert code == 1
        assert "still running on this host" in err
        code, out, _ = run(capsys, "force-unlock", held.lock_id, "--force")
        assert code == 0
        assert out.startswith(f"Lock {held.lock_id} released")
        assert not store.lock_path.exists()


class _Tty(io.StringIO):
    """A text stream that claims to be a terminal."""

    def isatty(self) -> bool:
        """Yes."""
        return True


@pytest.mark.parametrize(
    ("tty", "env", "expected"),
    [
        (True, {}, True),
        (False, {}, False),
        (True, {"NO_COLOR": "1"}, False),
        (True, {"NO_COLOR": ""}, False),
        (True, {"TERM": "dumb"}, False),
    ],
)
def test_colour_rules(
    clean_env: pytest.MonkeyPatch, tty: bool, env: dict[str, str], expected: bool
) -> None:
    """Colour only on a terminal, never with NO_COLOR (any value) or TERM=dumb."""
    for name, value in env.items():
        clean_env.setenv(name, value)
    stream = _Tty() if tty else io.StringIO()
    assert commands.use_color(stream) is expected


def test_plan_is_coloured_on_a_terminal_only(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """plan writes escape codes to a terminal, and none once NO_COLOR is set."""
    terminal = _Tty()
    monkeypatch.setattr("sys.stdout", terminal)
    assert main(["plan", "--no-refresh"]) == 0
    assert "\x1b[32m" in terminal.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = _Tty()
    monkeypatch.setattr("sys.stdout", terminal)
    assert main(["plan", "--no-refresh"]) == 0
    assert "\x1b[" not in terminal.getvalue()
