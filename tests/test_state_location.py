"""Every plan names the state it was made against; a saved plan applies to that state only.

Text, Markdown and JSON name the location (a DSN's password masked), the workspace,
lineage and serial; a state that does not exist is announced in the first lines. ``apply
PLANFILE`` uses the recorded state and refuses, naming both, when it is told another.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.sandbox import app
from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.sandbox.server import RunningSandbox
from reconciler.stores.local import LocalStore
from tests.support import sandbox as fx
from tests.support.pg import pg_dsn, unique_workspace

Served = tuple[app.Sandbox, RunningSandbox]
PASSWORD = "pw-never-shown-7d1e"


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """One loopback sandbox for the module."""
    with fx.loopback(FederationSettings(todo_seconds=0.0, doing_seconds=0.02)) as served:
        yield served


@pytest.fixture
def served(server: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """The sandbox reset; the CLI's variables point at it; no RECONCILER_STATE."""
    box, running = server
    fx.point_cli_at(box, running, monkeypatch)
    return box, running


def _dsn_with_password() -> str:
    """The test database's DSN carrying a password (ignored by trust auth, masked by us)."""
    parts = urllib.parse.urlsplit(pg_dsn())
    if parts.password is not None:
        return pg_dsn()
    user = parts.username or "postgres"
    netloc = f"{user}:{PASSWORD}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _secret(dsn: str) -> str:
    password = urllib.parse.urlsplit(dsn).password
    assert password
    return password


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_plan_without_a_state_says_so_in_its_first_lines(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No state at the location: text warns first, Markdown warns first, JSON names it."""
    path = fx.write_desired(tmp_path / "desired", fx.users(2))
    where = str(path / ".reconciler" / "state.json")
    code, out, _ = _run(capsys, "plan", str(path), "--no-refresh")
    assert code == 0
    assert out.splitlines()[0] == (f"Warning: no state at {where}: every declared account is new.")
    _, markdown, _ = _run(capsys, "plan", str(path), "--no-refresh", "--format", "markdown")
    assert markdown.splitlines()[2:4] == [
        "> [!WARNING]",
        f"> **No state at `{where}`**: every declared account is new.",
    ]
    _, document, _ = _run(capsys, "plan", str(path), "--no-refresh", "--format", "json")
    assert json.loads(document)["state"] == {
        "lineage": None,
        "serial": 0,
        "location": where,
        "workspace": None,
    }


def test_an_existing_state_is_named_with_its_lineage_and_serial(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After an apply, the plan's first line names the file, lineage and serial."""
    path = fx.write_desired(tmp_path / "desired", fx.users(2))
    assert cli.main(["apply", str(path), "--auto-approve", "--no-refresh"]) == 0
    document = fx.state_document(path)
    assert document is not None
    _, out, _ = _run(capsys, "plan", str(path), "--no-refresh")
    assert out.splitlines()[0] == (
        f"State: {path / '.reconciler' / 'state.json'} (lineage {document['lineage']}, "
        f"serial {document['serial']})"
    )


def test_a_workspace_typo_is_visible_first_and_the_password_never(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PostgreSQL plan names the masked DSN and workspace; a new workspace is a warning."""
    dsn = _dsn_with_password()
    workspace = unique_workspace()
    path = fx.write_desired(tmp_path / "desired", fx.users(2))
    state = ["--state", dsn, "--workspace", workspace]
    assert cli.main(["apply", str(path), "--auto-approve", "--no-refresh", *state]) == 0
    typo = ["--state", dsn, "--workspace", workspace + "x"]
    outputs = []
    for fmt in ("text", "markdown", "json"):
        code, out, err = _run(capsys, "plan", str(path), "--no-refresh", "--format", fmt, *typo)
        assert code == 0
        outputs.append(out + err)
    text, markdown, document = outputs
    assert text.startswith("Warning: no state at postgresql://")
    assert f"workspace={workspace}x (workspace {workspace}x): every declared" in text
    assert "> **No state at `postgresql://" in markdown.splitlines()[3]
    assert json.loads(document)["state"]["workspace"] == workspace + "x"
    _, right, _ = _run(capsys, "plan", str(path), "--no-refresh", *state)
    assert right.startswith("State: postgresql://")
    assert f"(workspace {workspace}, lineage " in right.splitlines()[0]
    for shown in (*outputs, right):
        assert _secret(dsn) not in shown


def test_a_plan_made_against_postgres_asks_for_its_dsn_instead_of_calling_it_stale(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Applied without --state: refused naming both states (masked), never called stale."""
    box, _ = served
    dsn = _dsn_with_password()
    workspace = unique_workspace()
    path = fx.write_desired(tmp_path / "desired", fx.users(2))
    saved = tmp_path / "plan.json"
    plan = ["plan", str(path), "--no-refresh", "--out", str(saved)]
    assert cli.main([*plan, "--state", dsn, "--workspace", workspace]) == 0
    assert _secret(dsn) not in saved.read_text(encoding="utf-8")
    code, _, err = _run(capsys, "apply", str(saved), str(path))
    assert code == 1
    assert "stale" not in err
    assert "the plan was made against state postgresql://" in err
    assert f"workspace={workspace}, but this apply would use state {path}/" in err
    assert f"hint: reconciler apply {saved} {path} --state 'postgresql://" in err
    assert "a plan never records one" in err
    assert _secret(dsn) not in err
    assert sum(box.federation.stats().calls.values()) == 0
    # The workspace is never taken from the plan: without it, the default is another state.
    code, _, err = _run(capsys, "apply", str(saved), str(path), "--state", dsn)
    assert code == 1
    assert "workspace=default; nothing was sent" in err
    assert sum(box.federation.stats().calls.values()) == 0
    # Given the DSN and the workspace, as when the plan was made, it applies.
    apply = ["apply", str(saved), str(path), "--state", dsn, "--workspace", workspace]
    code, out, _ = _run(capsys, *apply)
    assert code == 0
    assert _secret(dsn) not in out
    assert sorted(fx.tenant_view(box)) == ["user00000", "user00001"]


def test_a_plan_is_never_applied_to_another_workspace(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--workspace naming another state than the plan's: refused naming both."""
    box, _ = served
    dsn = _dsn_with_password()
    made, other = unique_workspace(), unique_workspace()
    path = fx.write_desired(tmp_path / "desired", fx.users(2))
    saved = tmp_path / "plan.json"
    plan = ["plan", str(path), "--no-refresh", "--out", str(saved), "--state", dsn]
    assert cli.main([*plan, "--workspace", made]) == 0
    apply = ["apply", str(saved), str(path), "--state", dsn, "--workspace", other]
    code, _, err = _run(capsys, *apply)
    assert code == 1
    assert f"workspace={made}, but this apply would use state postgresql://" in err
    assert f"workspace={other}; nothing was sent" in err
    assert _secret(dsn) not in err
    assert sum(box.federation.stats().calls.values()) == 0


def test_a_plan_names_its_state_file_but_never_chooses_it(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """C1: made with --state FILE, applied without it: refused naming both (the default
    beside PATH is not the plan's), with a pasteable hint; given the same --state, applied."""
    box, _ = served
    specs = fx.users(3)
    custom = tmp_path / "team-state.json"
    path = fx.write_desired(tmp_path / "desired", specs[:2])
    apply = ["apply", str(path), "--auto-approve", "--no-refresh", "--state", str(custom)]
    assert cli.main(apply) == 0
    fx.write_desired(path, specs)
    saved = tmp_path / "plan.json"
    plan = ["plan", str(path), "--no-refresh", "--out", str(saved), "--state", str(custom)]
    assert cli.main(plan) == 0
    calls = dict(box.federation.stats().calls)
    code, _, err = _run(capsys, "apply", str(saved), str(path))
    assert code == 1
    default = path / ".reconciler" / "state.json"
    assert f"made against state {custom}, but this apply would use state {default}" in err
    assert f"hint: reconciler apply {saved} {path} --state {custom}\n" in err
    assert box.federation.stats().calls == calls
    code, out, _ = _run(capsys, "apply", str(saved), str(path), "--state", str(custom))
    assert code == 0
    assert out.startswith(f"State: {custom} (lineage ")
    recorded = LocalStore(custom).read()  # the snapshot and its journal
    assert recorded is not None
    assert sorted(recorded.accounts) == [s.account for s in specs]
    # Told another file, it refuses naming both.
    saved_again = tmp_path / "plan2.json"
    assert cli.main([*plan[:4], str(saved_again), *plan[5:]]) == 0
    elsewhere = tmp_path / "other.json"
    apply = ["apply", str(saved_again), str(path), "--state", str(elsewhere)]
    code, _, err = _run(capsys, *apply)
    assert code == 1
    assert f"made against state {custom}, but this apply would use state {elsewhere}" in err
    assert sorted(fx.tenant_view(box)) == [s.account for s in specs]
    assert not elsewhere.exists()


def test_apply_refresh_why_and_import_name_the_state(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The JSON apply report, refresh, why and import all say which state they used."""
    path = fx.write_desired(tmp_path / "desired", fx.users(2))
    where = str(path / ".reconciler" / "state.json")
    code, out, _ = _run(
        capsys, "apply", str(path), "--auto-approve", "--no-refresh", "--format", "json"
    )
    assert code == 0
    assert json.loads(out)["state"] == {"location": where, "workspace": None}
    document = fx.state_document(path)
    assert document is not None
    named = f"{where} (lineage {document['lineage']}, serial {document['serial']})"
    assert _run(capsys, "refresh", str(path))[1].startswith(f"State: {named}\n")
    assert f"  state:    {named}" in _run(capsys, "why", "user00000", str(path))[1]
    fx.write_desired(path, [*fx.users(2), fx.UserSpec(account="x", name="X", email="x@x.org")])
    _, imported, _ = _run(capsys, "import", str(path), "--account", "x")
    assert imported.startswith(f"Imported 1 account(s) into {where} (lineage ")
