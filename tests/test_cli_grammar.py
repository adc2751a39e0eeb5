"""The command-line grammar: PATH last everywhere, typed options, old spellings noted,
usage errors exit 1 with a hint, no abbreviations, --debug on either side."""

from __future__ import annotations

import argparse
import ast
import inspect
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import __version__
from reconciler.cli import apply_commands, ci, commands, grammar, parsing
from reconciler.cli.choices import PlanFormat, ReportFormat, Shell, ValidateFormat
from reconciler.cli.main import main
from reconciler.cli.options import (
    ApplyOptions,
    Common,
    CompletionOptions,
    ForceUnlockOptions,
    ImportOptions,
    Options,
    PlanOptions,
    StateListOptions,
    StatePullOptions,
    StatePushOptions,
    StateShowOptions,
    ValidateOptions,
    WhyOptions,
)
from reconciler.errors import UsageError
from reconciler.stores.local import LocalStore

CLI_DIR = Path(apply_commands.__file__).parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI; (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def elsewhere(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The desired state in ``workdir``, imported; the current directory somewhere else."""
    assert main(["import", "--all"]) == 0
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    return workdir


# -- typed options, built in one place -------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["validate"], ValidateOptions(path=Path("."))),
        (
            ["validate", "d", "--format", "sarif"],
            ValidateOptions(path=Path("d"), fmt=ValidateFormat.SARIF),
        ),
        (
            ["plan", "d", "--no-refresh", "--format", "json", "--state", "s.json"],
            PlanOptions(
                path=Path("d"), common=Common(state="s.json"), fmt=PlanFormat.JSON, refresh=False
            ),
        ),
        (
            ["apply", "p.json", "--parallel", "4", "--lock-timeout", "5", "--format", "json"],
            ApplyOptions(
                target=Path("p.json"),
                common=Common(lock_timeout=5.0),
                parallel=4,
                fmt=ReportFormat.JSON,
            ),
        ),
        (["why", "bob", "d"], WhyOptions(path=Path("d"), account="bob")),
        (["state", "show", "bob", "d"], StateShowOptions(path=Path("d"), account="bob")),
        (
            ["state", "push", "s.json", "d", "--force"],
            StatePushOptions(path=Path("d"), file=Path("s.json"), force=True),
        ),
        (["force-unlock", "L1", "d"], ForceUnlockOptions(path=Path("d"), lock_id="L1")),
        (
            ["import", ".", "--account", "a", "--account", "b"],
            ImportOptions(path=Path("."), accounts=("a", "b")),
        ),
        (["import", "--all"], ImportOptions(path=Path("."), all_accounts=True)),
        (["completion", "fish"], CompletionOptions(shell=Shell.FISH)),
    ],
)
def test_each_command_line_becomes_one_typed_value(argv: list[str], expected: Options) -> None:
    """The parser yields the command's frozen options value; defaults fill the rest."""
    parsed = grammar.parse(argv)
    assert parsed.options == expected
    assert parsed.notes == ()


def test_handlers_never_see_argparse() -> None:
    """The command modules do not import argparse: they take typed options only."""
    for module in (commands, apply_commands):
        assert "argparse" not in inspect.getsource(module), module.__name__


def test_exit_codes_are_named_constants_in_the_cli() -> None:
    """No command returns a bare number: exit codes come from errors.EXIT_*."""
    for source in sorted(CLI_DIR.glob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        literal = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Return)
            and isinstance(node.value, ast.Constant)
            and type(node.value.value) is int
        ]
        assert literal == [], source.name


# -- PATH is the last operand ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected", "named"),
    [
        (["state", "list", "{path}"], "alice\nbob\ncarol (disabled)\n", "State at"),
        (["state", "show", "bob", "{path}"], '"account": "bob"', "State at"),
        (["state", "pull", "{path}"], '"lineage"', "Pulled the state at"),
        (["why", "bob", "{path}"], "bob", ""),
    ],
)
def test_path_is_the_last_operand(
    elsewhere: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    expected: str,
    named: str,
) -> None:
    """Run from another directory, PATH (last) locates the desired state and its state."""
    capsys.readouterr()
    code, out, err = run(capsys, *(word.format(path=elsewhere) for word in argv))
    assert code == 0
    assert expected in out
    if named:  # state commands name the state they used, on stderr
        assert err.startswith(f"{named} {elsewhere / '.reconciler' / 'state.json'}: lineage ")
    else:
        assert err == ""


def test_state_push_and_force_unlock_take_path_last(
    elsewhere: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """state push FILE PATH and force-unlock LOCK_ID PATH act on the state beside PATH."""
    capsys.readouterr()
    pulled = tmp_path / "pulled.json"
    assert main(["state", "pull", str(elsewhere)]) == 0
    pulled.write_text(capsys.readouterr().out, encoding="utf-8")
    code, out, _ = run(capsys, "state", "push", str(pulled), str(elsewhere), "--force")
    assert code == 0
    assert out.splitlines()[-1].startswith(f"Pushed {pulled} to ")  # after what it replaces
    store = LocalStore(elsewhere / ".reconciler" / "state.json")
    with store.lock("test") as held:
        code, out, _ = run(capsys, "force-unlock", held.lock_id, str(elsewhere), "--force")
        assert code == 0
        assert out.startswith(f"Lock {held.lock_id} released")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["state", "list", "--path", "{path}"], "reconciler state list {path}"),
        (["state", "show", "bob", "--path", "{path}"], "reconciler state show bob {path}"),
        (["state", "pull", "--path", "{path}"], "reconciler state pull {path}"),
        (["force-unlock", "x", "--path", "{path}"], "reconciler force-unlock x {path}"),
    ],
)
def test_old_path_option_works_with_a_deprecation_note(
    elsewhere: Path, capsys: pytest.CaptureFixture[str], old: list[str], new: str
) -> None:
    """--path still locates the state, with one note on stderr naming the new spelling."""
    capsys.readouterr()
    argv = [word.format(path=elsewhere) for word in old]
    _, _, err = run(capsys, *argv)
    note = f"note: --path is deprecated; give the path as the last operand: {new}\n"
    assert err.startswith(note.format(path=elsewhere))
    options = grammar.parse(argv).options
    located = (StateListOptions, StateShowOptions, StatePullOptions, ForceUnlockOptions)
    assert isinstance(options, located)
    assert options.path == elsewhere


def test_old_path_option_that_disagrees_is_an_error(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--path and a PATH operand that name different places: exit 1, nothing read."""
    code, out, err = run(capsys, "state", "list", str(elsewhere), "--path", "/")
    assert (code, out) == (1, "")
    assert err == (
        f"error: --path / disagrees with the PATH operand {elsewhere}\n"
        f"hint: give the path once, as the last operand: reconciler state list {elsewhere}\n"
    )


def test_old_path_option_that_agrees_is_accepted(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same place spelled twice is not a conflict."""
    code, out, err = run(capsys, "state", "list", str(elsewhere), "--path", f"{elsewhere}/.")
    assert (code, out) == (0, "alice\nbob\ncarol (disabled)\n")
    assert err.startswith("note: --path is deprecated")


# -- import names accounts with --account ----------------------------------------------


def test_import_accounts_by_flag_then_path(
    workdir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """import PATH --account A --account B adopts exactly those, from anywhere."""
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    code, out, _ = run(capsys, "import", str(workdir), "--account", "bob", "--account", "alice")
    assert code == 0
    assert out.startswith("Imported 2 account(s) into ")
    assert run(capsys, "state", "list", str(workdir))[1] == "alice\nbob\n"


@pytest.mark.parametrize(
    ("argv", "error", "hint"),
    [
        (
            ["import", "alice"],
            "error: alice: no such desired-state path; import names accounts with --account",
            "hint: reconciler import --account alice",
        ),
        (
            ["import", "alice", "bob"],
            "error: import takes one PATH; name accounts with --account: alice bob",
            "hint: reconciler import --account alice --account bob",
        ),
        (
            ["import", ".", "alice", "bob"],
            "error: import takes one PATH; name accounts with --account: alice bob",
            "hint: reconciler import . --account alice --account bob",
        ),
        (
            ["import", "--account", "alice", "--all"],
            "error: argument --all: not allowed with argument --account",
            "hint: run 'reconciler import --help'",
        ),
    ],
)
def test_old_import_spelling_fails_loudly_with_the_new_one(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], error: str, hint: str
) -> None:
    """Accounts as operands are refused (never guessed) with the spelling to paste instead."""
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "")
    assert err.splitlines()[0].startswith(error)
    assert err.splitlines()[-1] == hint
    assert not (workdir / ".reconciler").exists()


def test_import_operand_is_always_a_path(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory named like an account is the PATH: no account is imported from it."""
    (workdir / "alice").mkdir()
    code, _, err = run(capsys, "import", "alice")
    assert code == 1
    assert err.startswith("error: name the accounts to import, or pass --all\nhint: ")
    assert not (workdir / ".reconciler").exists()


# -- --refresh / --no-refresh -----------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "refresh", "note"),
    [
        (["--no-refresh"], False, ""),
        (["--refresh"], True, ""),
        ([], True, ""),
        (["--refresh=false"], False, "note: --refresh=false is deprecated; use --no-refresh\n"),
        (["--refresh", "false"], False, "note: --refresh=false is deprecated; use --no-refresh\n"),
        (
            ["--refresh=true"],
            True,
            "note: --refresh=true is deprecated; use --refresh (the default)\n",
        ),
    ],
)
def test_refresh_flag_and_its_old_spelling(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    spelling: list[str],
    refresh: bool,
    note: str,
) -> None:
    """--no-refresh plans offline; --refresh=false still does, with a note on stderr."""
    assert grammar.parse(["plan", *spelling]).options == PlanOptions(
        path=Path("."), refresh=refresh
    )
    code, out, err = run(capsys, "plan", *spelling, "--format", "json")
    assert code == 0
    assert json.loads(out)["events"]["refreshed"] is False  # no credentials either way
    assert err == note
    offline = "provisioning events not refreshed (--no-refresh): planned offline"
    assert (offline in json.loads(out)["notes"]) is not refresh


@pytest.mark.parametrize("argv", [["plan", "--refresh=maybe"], ["plan", "--refresh", "."]])
def test_refresh_with_another_value_is_a_usage_error(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """--refresh followed by anything but a true/false word is refused, not guessed."""
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "")
    assert err.startswith("error: --refresh takes no value")
    assert "\nhint: --refresh is a flag (the default): write --no-refresh" in err


# -- usage errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["plan", "--detailed-exitcode", "--format", "md"], "reconciler plan --help"),
        (["plan", "--no-such-flag"], "reconciler plan --help"),
        (["why"], "reconciler why --help"),
        (["state"], "reconciler state --help"),
        (["state", "list", "a", "b"], "reconciler state list --help"),
        (["apply", "--parallel", "many"], "reconciler apply --help"),
        (["nonsense"], "reconciler --help"),
        ([], "reconciler --help"),
        (["completion", "tcsh"], "reconciler completion --help"),
    ],
)
def test_usage_errors_exit_1_with_error_and_hint(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], hint: str
) -> None:
    """Unknown flag, bad choice, missing operand: exit 1 (never 2, "changes"), error + hint."""
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "")
    first, second = err.splitlines()
    assert first.startswith("error: ")
    assert second == f"hint: run '{hint}'"


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "--lock=false"],
        ["plan", "--detailed"],
        ["plan", "--form", "json"],
        ["apply", "--auto"],
        ["--deb", "validate"],
    ],
)
def test_no_prefix_abbreviations(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """A prefix of a flag is not that flag (``--lock=false`` is not --lock-timeout)."""
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.startswith("error: unrecognized arguments: ")


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["plan", ".", "--no-refrsh"], "did you mean --no-refresh? reconciler plan . --no-refresh"),
        (["plan", ".", "--stat", "s"], "did you mean --state? reconciler plan . --state s"),
        (["plan", "--stat=s.json"], "did you mean --state? reconciler plan --state=s.json"),
        (
            ["plan", "--fromat", "json", "--detailed-exitcod"],
            "did you mean --format, --detailed-exitcode? "
            "reconciler plan --format json --detailed-exitcode",
        ),
        (
            ["apply", "--auto-aprove"],
            "did you mean --auto-approve? reconciler apply --auto-approve",
        ),
        (
            ["--debug", "validate", "--dbug"],
            "did you mean --debug? reconciler --debug validate --debug",
        ),
        (
            ["state", "list", "--workspac", "w x"],
            "did you mean --workspace? reconciler state list --workspace 'w x'",
        ),
        (
            ["plan", "--state", "postgresql://u:hunter2@db/x", "--no-refrsh"],
            "did you mean --no-refresh? reconciler plan --state postgresql://u:***@db/x "
            "--no-refresh",
        ),
        (
            ["plan", "--state", "postgresql://u:hun ter2@db/x", "--no-refrsh"],
            "did you mean --no-refresh? reconciler plan --state 'postgresql://u:***@db/x' "
            "--no-refresh",
        ),
    ],
)
def test_a_misspelt_flag_gets_the_command_line_it_meant(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], hint: str
) -> None:
    """Every unknown word a long flag one or two edits from exactly one of the command's
    (or a value after one): still refused, and the hint is the command line with the flags
    spelt right, quoted for the shell, its secrets masked (a password with a space too)."""
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "")
    first, second = err.splitlines()
    assert first.startswith("error: unrecognized arguments: ")
    assert second == f"hint: {hint}"


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["valdate", "."], "did you mean validate? reconciler validate ."),
        (["--debug", "plna", "-q"], "did you mean plan? reconciler --debug plan -q"),
        (["state", "lst"], "did you mean list? reconciler state list"),
        (["report", "acess", "d x"], "did you mean access? reconciler report access 'd x'"),
    ],
)
def test_a_misspelt_command_gets_the_command_line_it_meant(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], hint: str
) -> None:
    """A command or subcommand one edit from exactly one: refused, the hint the line spelt
    right."""
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "")
    assert err.splitlines()[1] == f"hint: {hint}"


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["nonsense"], "reconciler --help"),
        (["state", "--workspace", "shw", "list"], "reconciler state --help"),
        (["plan", "--format", "jsn"], "reconciler plan --help"),
        (["state", "pusl"], "reconciler state --help"),  # as near pull as push: no guess
        (["state", "r"], "reconciler state --help"),  # one letter is no word to guess from
        (["rmport"], "reconciler --help"),  # as near import as report
    ],
)
def test_no_command_is_guessed_but_at_a_command_s_place(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], hint: str
) -> None:
    """Far from every command, as near two, a flag's value (``shw``: not after --debug), a
    flag's choice: the help hint, no guess."""
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.splitlines()[1] == f"hint: run '{hint}'"


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", ".", "--no-refrsh", "--zzz"],  # one of them is no typo of a flag
        ["plan", ".", "--no-refrsh", "extra"],  # --no-refresh takes no value apart
        ["plan", ".", "--stat", "a", "b"],  # one value too many
        ["plan", ".", "--lock-timeot", "5", "-x"],  # a short flag is not guessed at
        ["--state", "s.json", "plan", "."],  # the command's own flag, in the wrong place
        ["--deb", "validate"],  # before the command: its flags are not read there
        ["--forc", "force-unlock", "ID"],
        ["state", "push", "f.json", "--no-force", "--yes"],  # "not" is never its opposite
        ["force-unlock", "ID", "--noforce"],
        ["apply", "--no-auto-approve"],
        ["plan", "--no-allow-disables", "3"],
        ["plan", ".", "--cache"],  # nor the opposite "not"
        ["plan", "--path", "."],  # another command's flag, two edits from --at
        ["state", "list", "--pth", "d"],  # a hidden, deprecated flag is never suggested
        ["plan", "--no-refrsh", "--", "--no-refrsh"],  # after --, an operand
        ["plan", "--stat", "--no-refresh"],  # the flag meant would have no value
        ["plan", "--form", "json"],  # a prefix is not a typo (nor an abbreviation)
    ],
)
def test_no_guess_unless_every_unknown_word_is_a_typo_of_a_flag(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Anything else unclaimed: refused with the command's help as the hint, no guess."""
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.splitlines()[1].startswith("hint: run 'reconciler ")


def test_parsed_options_never_come_from_a_prefix() -> None:
    """The parser itself refuses abbreviations, whatever the command."""
    with pytest.raises(UsageError):
        grammar.parse(["plan", "--lock", "5"])


@pytest.mark.parametrize(
    "argv",
    [["--debug", "validate", "nowhere"], ["validate", "nowhere", "--debug"]],
)
def test_debug_before_or_after_the_command(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """--debug shows the traceback whichever side of the command it is on."""
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.startswith("Traceback (most recent call last):")
    assert "error: nowhere: no such file or directory\n" in err


def test_no_traceback_without_debug(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --debug only error: and hint: are printed."""
    _, _, err = run(capsys, "state", "list", "nowhere")
    assert "Traceback" not in err


def test_debug_is_read_from_both_sides() -> None:
    """The program-level --debug is not reset by the subcommand's default."""
    assert grammar.parse(["--debug", "state", "list"]).debug is True
    assert grammar.parse(["state", "list", "--debug"]).debug is True
    assert grammar.parse(["state", "--debug", "list"]).debug is True
    assert grammar.parse(["state", "list"]).debug is False


# -- help -------------------------------------------------------------------------------


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the version; --help lists the commands and the exit codes; exit 0."""
    assert run(capsys, "--version") == (0, f"reconciler {__version__}\n", "")
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "completion" in out
    assert "exit codes: 0 success; 1 error, including a usage error" in out


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_operand_has_help() -> None:
    """Each positional of each command (and of the CI glue) says what it is."""
    operands = [
        (parser.prog, action.dest, action.help)
        for root in (grammar.build(whole=True), ci._parser())
        for parser in _parsers(root)
        for action in parser._actions
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction)
    ]
    assert len(operands) >= 12
    assert [(prog, dest) for prog, dest, help_text in operands if not help_text] == []


def test_ci_help_reads_like_the_main_cli(capsys: pytest.CaptureFixture[str]) -> None:
    """python -m reconciler.ci --help: same formatter, a description, the exit codes."""
    assert ci.main(["--help"]) == 0
    out = capsys.readouterr().out
    usage, blank, description = out.split("\n")[:3]
    # argparse words the "usage:" prefix itself: only our program line is asserted.
    assert usage.endswith(" python -m reconciler.ci [-h] COMMAND ...")
    assert (blank, description[: len("CI glue for")]) == ("", "CI glue for")
    assert "exit codes: 0 success; 1 error, including a usage error" in out


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["post", "--pr", "x", "--marker", "m", "--body-file", "f"], "post"),
        (["post", "--p", "1", "--marker", "m", "--body-file", "f"], "post"),
        (["fetch-plan"], "fetch-plan"),
        (["nonsense"], ""),
    ],
)
def test_ci_usage_errors_exit_1_with_error_and_hint(
    capsys: pytest.CaptureFixture[str], argv: list[str], hint: str
) -> None:
    """The CI glue refuses a bad command line like the main CLI: exit 1, error: and hint:."""
    assert ci.main(argv, env={}) == 1
    first, second = capsys.readouterr().err.splitlines()
    assert first.startswith("error: ")
    assert second == f"hint: run 'python -m reconciler.ci{' ' + hint if hint else ''} --help'"


def test_commands_are_built_only_once_chosen_and_read_the_same(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`reconciler --help` builds no command's parser (start-up), a command line builds
    its command's only, and every command's help, built when chosen, is the help of the
    whole grammar built at once."""
    lazy, whole = grammar.build(), grammar.build(whole=True)
    assert lazy.format_help() == whole.format_help()
    commands = next(a for a in lazy._actions if isinstance(a, argparse._SubParsersAction))
    assert len(commands.choices) >= 12
    assert not any(isinstance(p, argparse.ArgumentParser) for p in commands.choices.values())
    lazy.parse_known_args(["validate", "."])
    made = [n for n, p in commands.choices.items() if isinstance(p, argparse.ArgumentParser)]
    assert made == ["validate"]
    chosen = [p for p in _parsers(whole) if p is not whole]
    assert len(chosen) >= 15
    for parser in chosen:
        words = parser.prog.split()[1:]
        with pytest.raises(SystemExit):
            grammar.build().parse_args([*words, "--help"])
        assert capsys.readouterr().out == parser.format_help(), words


@pytest.mark.parametrize(
    ("columns", "expected"), [("120", 120), ("0", 80), ("-3", 80), ("wide", 80), (None, 80)]
)
def test_help_is_as_wide_as_columns_says_else_80(
    monkeypatch: pytest.MonkeyPatch, columns: str | None, expected: int
) -> None:
    """parsing.terminal_columns answers as shutil.get_terminal_size would: COLUMNS when a
    positive number, else the terminal's width (none here: standard output is not one)."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    monkeypatch.setattr("sys.__stdout__", None)
    assert parsing.terminal_columns() == expected


@pytest.mark.parametrize(
    ("word", "names", "meant"),
    [
        ("--no-refrsh", ["--no-refresh", "--refresh"], "--no-refresh"),  # a letter left out
        ("--fromat", ["--format", "--force"], "--format"),  # two neighbours swapped
        ("valdate", ["validate", "plan"], "validate"),
        ("--detailed-exitcod", ["--detailed-exitcode"], "--detailed-exitcode"),
        ("--detaled-exitcod", ["--detailed-exitcode"], "--detailed-exitcode"),  # two: long
        ("puls", ["pull", "push"], "pull"),  # one edit from pull, two from push
        ("pusl", ["pull", "push"], None),  # one edit from each: no guess
        ("--no-force", ["--force"], None),  # "not" is never its opposite
        ("--noforce", ["--force"], None),
        ("--cache", ["--no-cache"], None),
        ("--path", ["--at"], None),  # two edits from a short name
        ("--stta", ["--at"], None),
        ("r", ["rm"], None),  # as many edits as half the name: a resemblance, not a typo
        ("--form", ["--format"], None),  # a prefix: two edits from a short name
        ("--lock-timeot", ["--lock-timeout"], "--lock-timeout"),
    ],
)
def test_nearest_is_one_name_a_typo_away(word: str, names: list[str], meant: str | None) -> None:
    """One or two edits (two only for long names), fewer than half the name, no tie, never
    across "not": what a misspelt flag or command is taken for."""
    assert parsing.nearest(word, names) == meant


def test_ci_reports_a_file_it_cannot_read(capsys: pytest.CaptureFixture[str]) -> None:
    """apply-summary --log naming a directory: an error naming it, exit 1, no traceback."""
    code = ci.main(["apply-summary", "--exit-code", "1", "--report", "/nope", "--log", "."])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: cannot use .: ")
    assert "Traceback" not in err
