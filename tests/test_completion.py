"""Shell completion generated from the grammar: bash driven for real, zsh and fish checked by
their own shells when installed (``-n``, and driven where the shell allows), else by shape."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.cli import completion, grammar
from reconciler.cli.choices import Shell
from reconciler.cli.main import main


def _script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["completion", shell]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def _needs(shell: str) -> str:
    found = shutil.which(shell)
    if found is None:
        pytest.skip(f"{shell} is not installed; the structural test covers its script")
    return found


def test_every_command_and_flag_is_in_every_script(capsys: pytest.CaptureFixture[str]) -> None:
    """Each shell's script names every command, subcommand, flag and choice of the grammar."""
    spec = grammar.spec()
    names = {c.words[-1] for c in completion._walk(spec) if c.words}
    flags = {n for c in completion._walk(spec) for o in c.options if not o.hidden for n in o.names}
    choices = {x for c in completion._walk(spec) for o in c.options for x in o.choices}
    assert {"validate", "plan", "state", "push", "force-unlock", "completion"} <= names
    assert {"--no-refresh", "--detailed-exitcode", "--account", "--debug"} <= flags
    for shell in Shell:
        text = _script(shell.value, capsys)
        for word in names | flags | choices:
            spelled = word
            if shell is Shell.FISH and word.startswith("-"):
                spelled = f"-{'l' if word.startswith('--') else 's'} {word.lstrip('-')}"
            assert spelled in text, (shell, spelled)


def test_scripts_are_marked_for_their_shell(capsys: pytest.CaptureFixture[str]) -> None:
    """Each script registers itself the way its shell expects."""
    assert "complete -F _reconciler reconciler\n" in _script("bash", capsys)
    assert _script("zsh", capsys).startswith("#compdef reconciler\n")
    assert "complete -c reconciler -f\n" in _script("fish", capsys)


# -- bash: syntax and behaviour ------------------------------------------------------------

_BASH_DRIVER = """
source "$1"
shift
COMP_WORDS=("$@")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_reconciler
printf '%s\\n' "${COMPREPLY[@]}"
"""


def _bash_complete(script: Path, cwd: Path, *words: str) -> list[str]:
    done = subprocess.run(
        [_needs("bash"), "-c", _BASH_DRIVER, "drive", str(script), "reconciler", *words],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=True,
        timeout=30,
    )
    assert done.stderr == ""
    return [line for line in done.stdout.splitlines() if line]


@pytest.fixture
def bash_script(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> Path:
    """The generated bash script on disk, syntax-checked with ``bash -n``."""
    path = tmp_path_factory.mktemp("script") / "reconciler.bash"
    path.write_text(_script("bash", capsys), encoding="utf-8")
    subprocess.run([_needs("bash"), "-n", str(path)], check=True, timeout=30)
    return path


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (
            [""],
            [
                "validate",
                "plan",
                "show",
                "apply",
                "refresh",
                "import",
                "why",
                "force-unlock",
                "state",
                "report",
                "sandbox",
                "completion",
            ],
        ),
        (["pl"], ["plan"]),
        (["--debug", "st"], ["state"]),
        (["state", ""], ["list", "show", "pull", "push", "rm", "diff"]),
        (["plan", "--det"], ["--detailed-exitcode"]),
        (["plan", "--no"], ["--no-cache", "--no-refresh"]),
        (["state", "push", "--f"], ["--force"]),
        (["import", "--a"], ["--account", "--all"]),
        (["plan", "--format", ""], ["text", "json", "markdown"]),
        (["plan", "--format", "=", "m"], ["markdown"]),
        (["validate", "--format", ""], ["text", "json", "github", "sarif"]),
        (["plan", "--state", "x", "--fo"], ["--format"]),
        (["completion", ""], ["bash", "zsh", "fish"]),
        (["why", ""], []),
        (["why", "alice", ""], ["desired.yaml"]),
        (["plan", ""], ["desired.yaml"]),
        (["plan", "--out", "de"], ["desired.yaml"]),
        (["state", "list", "--path", "x", ""], ["desired.yaml"]),
        (["state", "list", "--pa"], []),
    ],
)
def test_bash_completes_commands_flags_choices_and_files(
    bash_script: Path, tmp_path: Path, words: list[str], expected: list[str]
) -> None:
    """The bash function, driven with COMP_WORDS, offers what the grammar allows there."""
    (tmp_path / "desired.yaml").write_text("version: 1\n", encoding="utf-8")
    assert sorted(_bash_complete(bash_script, tmp_path, *words)) == sorted(expected)


# -- zsh and fish --------------------------------------------------------------------------

_ZSH_DRIVER = """
compdef() { : }
source "$1"
shift
compadd() { [[ $1 == -- ]] && shift; print -rl -- "$@" }
_describe() { local name=$4; print -rl -- "${(@)${(P)name}%%:*}" }
_files() { print -r -- "<files>" }
compset() { : }
words=("$@")
CURRENT=$#words
_reconciler
"""


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["pl"], {"validate", "plan", "state", "completion"}),
        (["state", ""], {"list", "show", "pull", "push", "rm"}),
        (["plan", "--format", ""], {"text", "json", "markdown"}),
        (["plan", "--format=j"], {"text", "json", "markdown"}),
        (["plan", "--de"], {"--detailed-exitcode", "--debug", "--no-refresh"}),
        (["state", "show", "bob", ""], {"<files>"}),
    ],
)
def test_zsh_script_parses_and_completes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], words: list[str], expected: set[str]
) -> None:
    """zsh -n accepts the script; its function offers the grammar's words (zsh filters)."""
    zsh = _needs("zsh")
    path = tmp_path / "_reconciler"
    path.write_text(_script("zsh", capsys), encoding="utf-8")
    subprocess.run([zsh, "-n", str(path)], check=True, timeout=30)
    done = subprocess.run(
        [zsh, "-f", "-c", _ZSH_DRIVER, "drive", str(path), "reconciler", *words],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert done.stderr == ""
    offered = set(done.stdout.splitlines())
    assert expected <= offered


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("reconciler pl", {"plan"}),
        ("reconciler state ", {"list", "show", "pull", "push", "rm"}),
        ("reconciler --debug state show --st", {"--state"}),
        ("reconciler plan --format ", {"text", "json", "markdown"}),
        ("reconciler import --a", {"--account", "--all"}),
        ("reconciler completion ", {"bash", "zsh", "fish"}),
    ],
)
def test_fish_script_parses_and_completes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, expected: set[str]
) -> None:
    """fish -n accepts the script; ``complete -C`` offers the grammar's words."""
    fish = _needs("fish")
    path = tmp_path / "reconciler.fish"
    path.write_text(_script("fish", capsys), encoding="utf-8")
    subprocess.run([fish, "--no-config", "-n", str(path)], check=True, timeout=30)
    done = subprocess.run(
        [fish, "--no-config", "-c", f"source {path}; complete -C {line!r}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        cwd=tmp_path,
    )
    offered = {entry.split("\t")[0] for entry in done.stdout.splitlines()}
    assert offered == expected
