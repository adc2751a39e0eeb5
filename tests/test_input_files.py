"""The set of desired-state files is exactly what the user sees: nothing skipped silently,
nothing special ever opened, every name printed safely (issue 11, section 1)."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.desired import loading, validation
from reconciler.errors import InputError, ValidationFailed
from reconciler.stores.local import LocalStore
from reconciler.stores.model import State
from tests.support.builders import record

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def users_yaml(*accounts: str) -> str:
    """A desired-state file declaring ``accounts`` (no roles)."""
    return "version: 1\nusers:\n" + "".join(
        f"  - account: {a}\n    name: {a.title()}\n    email: {a}@example.com\n    roles: []\n"
        for a in accounts
    )


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI; (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def returns_within(call: Callable[[], object], seconds: float = 20.0) -> None:
    """Fail (instead of hanging the suite) if ``call`` blocks, e.g. opening a FIFO."""
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked: a FIFO was opened"


def problems(path: Path) -> list[str]:
    """``file:line:col: message`` of every problem validation reports for ``path``."""
    with pytest.raises(ValidationFailed) as failed:
        validation.load_desired(path)
    return [p.render() for p in failed.value.problems]


@pytest.fixture
def here(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Path:
    """An empty current directory."""
    clean_env.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def team(here: Path) -> Path:
    """``d/`` with ``a.yaml`` (1 user); ``elsewhere/team-b.yaml`` holds 9 more users."""
    (here / "d").mkdir()
    (here / "d" / "a.yaml").write_text(users_yaml("alice"), encoding="utf-8")
    (here / "elsewhere").mkdir()
    nine = [f"user{i}" for i in range(9)]
    (here / "elsewhere" / "team-b.yaml").write_text(users_yaml(*nine), encoding="utf-8")
    return here / "d"


def _record_all(directory: Path) -> None:
    """Record every account of ``directory`` as applied (what an apply would have done)."""
    desired = validation.load_desired(directory)
    accounts = {name: record(name) for name in desired.users}
    LocalStore(directory / ".reconciler" / "state.json").write(
        State.empty().successor(accounts=accounts)
    )


def test_a_dangling_symlink_is_an_error_not_nine_disables(
    team: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's repro: the link's target moved away; validate, plan and apply refuse."""
    # Inside the directory, so that only the disappearance of its target is at stake.
    (team / "teams").mkdir()
    os.replace(team.parent / "elsewhere" / "team-b.yaml", team / "teams" / "team-b.yaml")
    (team / "team-b.yaml").symlink_to(Path("teams") / "team-b.yaml")
    _record_all(team)
    (team / "teams" / "team-b.yaml").rename(team / "teams" / "moved.txt")
    code, out, err = run(capsys, "validate", "d")
    assert code == 1
    assert out == (
        "d/team-b.yaml:1:1: a symlink to 'teams/team-b.yaml', which does not exist: restore "
        "the target or remove the link\n"
    )
    assert "Valid" not in out
    assert "note: ignored d/teams: a directory: subdirectories are not read" in err
    for command in (["plan", "d"], ["apply", "d", "--auto-approve"]):
        code, out, err = run(capsys, *command, "--no-refresh")
        assert (code, out) == (1, "")
        assert err.startswith("d/team-b.yaml:1:1: a symlink to 'teams/team-b.yaml', which does")
        assert "error: 1 problem in the desired state\n" in err


def test_a_symlink_out_of_the_directory_is_refused_naming_its_target(team: Path) -> None:
    """A link that resolves outside the directory is refused, even when its target exists."""
    (team / "team-b.yaml").symlink_to(Path("..") / "elsewhere" / "team-b.yaml")
    assert problems(team) == [
        "d/team-b.yaml:1:1: a symlink to '../elsewhere/team-b.yaml', outside the "
        "desired-state directory: refused; copy the file into the directory"
    ]


def test_a_symlink_inside_the_directory_is_read(team: Path) -> None:
    """A link to a regular file below the directory is an ordinary desired-state file."""
    (team / "shared").mkdir()
    (team / "shared" / "b.yml").write_text(users_yaml("bob"), encoding="utf-8")
    (team / "b.yaml").symlink_to(Path("shared") / "b.yml")
    assert sorted(validation.load_desired(team).users) == ["alice", "bob"]


def test_a_directory_given_through_a_symlink_is_read(team: Path, here: Path) -> None:
    """PATH itself may be a symlink to the directory (e.g. ``current -> releases/3``)."""
    (here / "current").symlink_to("d")
    assert list(validation.load_desired(here / "current").users) == ["alice"]


def _link_to_fifo(link: Path, target: Path) -> None:
    """``link`` -> ``target``, a FIFO in a subdirectory next to ``link``."""
    (link.parent / target).parent.mkdir()
    os.mkfifo(link.parent / target)
    link.symlink_to(target)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(
            lambda p: p.symlink_to(p.name),
            "a symlink loop (to 'x.yaml'): remove the link",
            id="symlink-loop",
        ),
        pytest.param(
            lambda p: p.mkdir(),
            "a directory, not a file: subdirectories are not read; rename it so its name does "
            "not end in .yaml/.yml",
            id="directory",
        ),
        pytest.param(
            os.mkfifo,
            "a FIFO (named pipe), not a regular file: never opened; remove it or rename it so "
            "its name does not end in .yaml/.yml",
            id="fifo",
        ),
        pytest.param(
            lambda p: (
                (p.parent / "fifo").mkdir()
                or os.mkfifo(p.parent / "fifo" / "f")
                or p.symlink_to(Path("fifo") / "f")
            ),
            "a symlink to 'fifo/f', which is a FIFO (named pipe), not a regular file: never "
            "opened; remove it or rename it so its name does not end in .yaml/.yml",
            id="symlink-to-fifo",
        ),
    ],
)
def test_a_yaml_name_that_is_not_a_regular_file_is_an_error(
    here: Path, make: Callable[[Path], object], expected: str
) -> None:
    """Each entry named *.yaml that cannot be read as a file is named, never skipped."""
    (here / "a.yaml").write_text(users_yaml("alice"), encoding="utf-8")
    make(here / "x.yaml")
    found: list[list[str]] = []
    returns_within(lambda: found.append(problems(Path("."))))
    assert found == [[f"x.yaml:1:1: {expected}"]]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (a UNIX socket's path is at most ~100 bytes)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as name:
        yield Path(name)


def test_a_socket_named_yaml_is_an_error(short_dir: Path) -> None:
    """A UNIX socket under a .yaml name is reported as a socket and never opened."""
    (short_dir / "a.yaml").write_text(users_yaml("alice"), encoding="utf-8")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(short_dir / "s.yaml"))
        found = problems(short_dir)
    assert len(found) == 1
    assert found[0].endswith(
        "s.yaml:1:1: a socket, not a regular file: never opened; remove it or rename it so its "
        "name does not end in .yaml/.yml"
    )


def test_a_fifo_given_as_path_is_never_opened(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mkfifo x.yaml; reconciler validate x.yaml`` answers at once instead of hanging."""
    os.mkfifo(here / "x.yaml")
    result: list[int] = []
    returns_within(lambda: result.append(main(["validate", "x.yaml"])))
    out = capsys.readouterr().out
    assert result == [1]
    assert out.startswith("x.yaml:1:1: a FIFO (named pipe), not a regular file: never opened")


def test_a_dangling_symlink_given_as_path_is_an_input_error(here: Path) -> None:
    """PATH a dangling link: an error naming where it points."""
    (here / "x.yaml").symlink_to("gone.yaml")
    with pytest.raises(InputError, match=r"x.yaml: a symlink to 'gone.yaml', which does not"):
        loading.list_input(Path("x.yaml"))


def test_a_file_given_as_path_may_not_link_out_of_its_directory(here: Path) -> None:
    """The rule holds for PATH too; the hint is to pass the target itself."""
    (here / "real").mkdir()
    (here / "real" / "team.yaml").write_text(users_yaml("alice"), encoding="utf-8")
    (here / "d").mkdir()
    (here / "d" / "team.yaml").symlink_to(Path("..") / "real" / "team.yaml")
    assert problems(here / "d" / "team.yaml") == [
        "d/team.yaml:1:1: a symlink to '../real/team.yaml', outside the desired-state "
        "directory: refused; copy the file into the directory"
    ]
    assert list(validation.load_desired(here / "real" / "team.yaml").users) == ["alice"]


@pytest.mark.skipif(AS_ROOT, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_an_error(here: Path) -> None:
    """A .yaml file without read permission is named with the system's reason."""
    (here / "a.yaml").write_text(users_yaml("alice"), encoding="utf-8")
    (here / "locked.yaml").write_text(users_yaml("bob"), encoding="utf-8")
    (here / "locked.yaml").chmod(0)
    assert problems(here) == ["locked.yaml:1:1: cannot read: Permission denied"]


@pytest.mark.skipif(AS_ROOT, reason="root lists directories whatever their mode")
def test_an_unreadable_directory_is_an_error(here: Path) -> None:
    """PATH a directory that cannot be listed: an InputError with a hint, never "no files"."""
    (here / "d").mkdir()
    (here / "d" / "a.yaml").write_text(users_yaml("alice"), encoding="utf-8")
    (here / "d").chmod(0)
    try:
        with pytest.raises(InputError, match="d: cannot list the directory") as raised:
            loading.list_input(Path("d"))
        assert raised.value.hint
        # As a directory entry, an unreadable directory named *.yaml is still a directory.
    finally:
        (here / "d").chmod(0o700)


def test_yaml_suffixes_count_in_any_letter_case(here: Path) -> None:
    """TEAM.YAML and b.Yml are desired-state files like a.yaml."""
    (here / "a.yaml").write_text(users_yaml("alice"), encoding="utf-8")
    (here / "TEAM.YAML").write_text(users_yaml("bob"), encoding="utf-8")
    (here / "b.Yml").write_text(users_yaml("carol"), encoding="utf-8")
    desired = validation.load_desired(here)
    assert sorted(desired.users) == ["alice", "bob", "carol"]
    assert sorted(desired.files) == ["TEAM.YAML", "a.yaml", "b.Yml"]


def test_hidden_and_other_files_are_listed_once_as_ignored(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Editors' files neither break a run nor get merged; validate lists each one once."""
    (here / "a.yaml").write_text(users_yaml("alice"), encoding="utf-8")
    (here / ".a.yaml.swp").write_bytes(b"\0binary swap")  # vim: hidden, not .yaml
    (here / ".#a.yaml").symlink_to("root@host.1234:1700000000")  # emacs lock: dangling
    (here / ".draft.yaml").write_text("not: [valid\n", encoding="utf-8")
    (here / "a.yaml~").write_text("not: [valid\n", encoding="utf-8")
    (here / "notes.txt").write_text("hello\n", encoding="utf-8")
    (here / ".git").mkdir()
    code, out, err = run(capsys, "validate")
    assert (code, out) == (0, "Valid: 1 users, 0 roles in 1 file(s).\n")
    assert err.splitlines() == [
        "note: ignored .#a.yaml: hidden: never read",
        "note: ignored .draft.yaml: hidden: never read",
        "note: ignored a.yaml~: not a .yaml/.yml file",
        "note: ignored notes.txt: not a .yaml/.yml file",
    ]
    code, out, _ = run(capsys, "validate", "--format", "json")
    assert json.loads(out)["ignored"] == [
        {"file": ".#a.yaml", "reason": "hidden: never read"},
        {"file": ".draft.yaml", "reason": "hidden: never read"},
        {"file": "a.yaml~", "reason": "not a .yaml/.yml file"},
        {"file": "notes.txt", "reason": "not a .yaml/.yml file"},
    ]


def test_a_directory_of_only_hidden_yaml_says_so(here: Path) -> None:
    """No desired-state file at all, but a hidden one: the error names it."""
    (here / ".team.yaml").write_text(users_yaml("alice"), encoding="utf-8")
    with pytest.raises(InputError, match=r"hidden files are never read: \.team\.yaml"):
        loading.list_input(here)


def test_a_file_name_that_is_not_utf8_is_reported_not_a_traceback(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The name is shown escaped and refused; plan's digest does not raise either."""
    (here / "a.yaml").write_text(users_yaml("alice"), encoding="utf-8")
    with open(os.path.join(os.fsencode(here), b"caf\xe9.yaml"), "wb") as handle:
        handle.write(users_yaml("bob").encode())
    code, out, _ = run(capsys, "validate")
    assert code == 1
    assert out == (
        "caf\\xe9.yaml:1:1: the file name is not valid UTF-8 (shown with \\x escapes): rename it\n"
    )
    assert loading.digest(loading.read_files(here)).startswith("sha256:")


EVIL = "evil\n::error file=x.yaml::pwned\x1b[2J\u202e.yaml"
ESCAPED = "evil\\n::error file=x.yaml::pwned\\x1b[2J\\u202e.yaml"


@pytest.mark.parametrize("fmt", ["text", "json", "github", "sarif"])
def test_file_names_are_escaped_in_every_format(
    here: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """A newline or escape sequence in a name cannot start a line or reach the terminal."""
    (here / EVIL).write_text("version: 2\n", encoding="utf-8")
    code, out, _ = run(capsys, "validate", "--format", fmt)
    assert code == 1
    assert "\x1b" not in out
    assert "\u202e" not in out
    lines = out.splitlines()
    assert not any(line.startswith("::error file=x.yaml") for line in lines)
    if fmt == "text":
        assert lines == [f"{ESCAPED}:1:10: version must be 1 (got 2)"]
    elif fmt == "github":
        assert len(lines) == 1
        assert lines[0].startswith("::error file=evil\\n%3A%3Aerror file=x.yaml%3A%3Apwned")
    else:
        report = json.loads(out)
        if fmt == "json":
            assert [p["file"] for p in report["problems"]] == [ESCAPED]
        else:
            (result,) = report["runs"][0]["results"]
            uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            assert "\n" not in uri
            assert "%0A" not in uri
