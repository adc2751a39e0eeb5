"""The command line's grammar: one parser builder per command, one typed value out of each.

One rule for operands: a command's own operands come first, then the desired-state PATH,
always optional and always last (default ``.``): ``why ACCOUNT [PATH]``, ``state push FILE
[PATH]``. A variable number of accounts cannot share that rule without a guess, so ``import``
and ``state rm`` name them with a repeatable ``--account NAME`` and keep PATH their only
operand: ``state rm li.wei desired`` would leave ``desired`` either an account or the path.

Old spellings keep working with a one-line note on stderr: ``--path DIR`` on ``state`` and
``force-unlock`` (an error when it disagrees with the operand), ``--refresh=false|true``.
What can no longer be parsed (``import ACCOUNT``) fails with the new spelling as its hint.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reconciler import __version__
from reconciler.cli import arguments, parsing
from reconciler.cli.choices import AccessFormat, PlanFormat, ReportFormat, Shell, ValidateFormat
from reconciler.errors import UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:  # loaded once a command line was parsed: `--help` needs none of them
    from pathlib import Path

    from reconciler.cli.arguments import Builder, Notes, Subparsers
    from reconciler.cli.completion import CommandSpec
    from reconciler.cli.options import (
        ApplyOptions,
        CompletionOptions,
        ForceUnlockOptions,
        ImportOptions,
        Options,
        PlanOptions,
        RefreshOptions,
        ReportAccessOptions,
        SandboxOptions,
        ShowOptions,
        StateDiffOptions,
        StateListOptions,
        StatePullOptions,
        StatePushOptions,
        StateRmOptions,
        StateShowOptions,
        ValidateOptions,
        WhyOptions,
    )

PROG = arguments.PROG

DESCRIPTION = """Declarative plan/apply for federated users and roles.

Every command that reads the desired state takes it as PATH, its last operand: a .yaml/.yml
file or a directory of them (default: the current directory)."""

EPILOG = """exit codes: 0 success; 1 error, including a usage error; 2 changes present
(plan --detailed-exitcode); 3 blocked by a guard rail (or apply --revocations-only); 130/143
apply or refresh stopped by SIGINT/SIGTERM (what was in flight is recorded: refresh or apply
settles it).

environment: RECONCILER_STATE (state location: a path or postgresql://...),
RECONCILER_AT (the date end dates are evaluated at, like --at),
RECONCILER_PG_LOCK_TIMEOUT / _STATEMENT_TIMEOUT (PostgreSQL state),
RECONCILER_FEDERATION_URL / _APP_KEY / _APP_SECRET / _TENANT_SPACE_ID / _TIMEOUT,
RECONCILER_CLOUDIDENTITY_URL / _TIMEOUT, VOLCENGINE_ACCESS_KEY / _SECRET_KEY /
_SESSION_TOKEN / _REGION, RECONCILER_TASK_TIMEOUT, NO_COLOR.

shell completion: source <(reconciler completion bash)   (also zsh, fish)"""


class Parsed:
    """A command line, understood: the command's options, --debug, deprecation notes.

    Neither a dataclass nor a NamedTuple: `--help` imports neither dataclasses nor typing.
    """

    __slots__ = ("debug", "notes", "options")

    def __init__(self, *, options: Options, debug: bool, notes: tuple[str, ...]) -> None:
        self.options, self.debug, self.notes = options, debug, notes


def parse(argv: Sequence[str] | None) -> Parsed:
    """Parse ``argv``; UsageError (exit 1, with a hint) for anything that does not fit."""
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build()
    try:
        namespace, extras = parser.parse_known_args(words)
    except UsageError as refused:
        meant = _near_command(parser, words)
        if meant is None:
            raise
        raise UsageError(refused.message, hint=meant) from None
    if extras:
        raise _unclaimed(namespace, extras, argv=words)
    notes: list[str] = []
    builder: Builder = namespace.build
    options = builder(namespace, notes)
    return Parsed(options=options, debug=namespace.debug, notes=tuple(notes))


def _near_command(parser: argparse.ArgumentParser, words: Sequence[str]) -> str | None:
    """For a misspelt command or subcommand (``valdate``, ``state lst``): the command line
    with it spelt right, as a hint; None unless the word at a command's place (after
    nothing but --debug) is a typo of exactly one command (``parsing.nearest``)."""
    fixed = list(words)
    level = parser
    for index, word in enumerate(words):
        if word == "--debug":
            continue  # the one flag a command may follow (another could take a value)
        if word.startswith("-"):
            return None  # a flag out of place: which word is the command is not clear
        commands = [a for a in level._actions if isinstance(a, argparse._SubParsersAction)]
        if not commands:
            return None
        choices = commands[0].choices
        assert isinstance(choices, dict)  # add_subparsers' map of name to parser
        if word in choices:
            inner = commands[0]
            level = inner.chosen(word) if isinstance(inner, arguments.Commands) else choices[word]
            continue
        meant = parsing.nearest(word, list(choices))
        if meant is None:
            return None
        fixed[index] = meant
        return f"did you mean {meant}? {arguments.shell_line([PROG, *fixed])}"
    return None


def spec() -> CommandSpec:
    """The grammar as data, for the completion scripts."""
    return parsing.describe(build(whole=True))


def build(*, whole: bool = False) -> parsing.Parser:
    """The parser: the program's flags, then one builder per command, each run only once
    its command is chosen (``whole``: all of them now)."""
    parser = parsing.Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks, and why a cache entry was not used"
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", action=arguments.Commands
    )
    assert isinstance(sub, arguments.Commands)  # add_subparsers made the class given
    for add in (
        _validate,
        _plan,
        _show,
        _apply,
        _refresh,
        _import,
        _why,
        _force_unlock,
        _state,
        _report,
        _sandbox,
        _completion,
    ):
        sub.defer(add)
    if whole:
        sub.fill()
    return parser


# -- the commands --------------------------------------------------------------------


def _validate(sub: Subparsers) -> None:
    p = arguments.command(sub, "validate", "check the desired-state YAML", _validate_options)
    arguments.path_operand(p)
    p.add_argument(
        "--format",
        choices=arguments.choices(ValidateFormat),
        default="text",
        help="how to report problems (github: annotations; sarif: code scanning)",
    )
    arguments.at_option(p, _AT_HELP)
    arguments.cache_option(p)


_AT_HELP = (
    "evaluate end dates (expires, until) at this date, YYYY-MM-DD (default: "
    "RECONCILER_AT, else today in policy.timezone)"
)


def _validate_options(ns: argparse.Namespace, notes: Notes) -> ValidateOptions:
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    from reconciler.cli.options_base import ValidateOptions  # noqa: PLC0415 - start-up

    return ValidateOptions(
        path=ns.path or Path("."),
        fmt=ValidateFormat(ns.format),
        at=ns.at,
        cache=arguments.cache(ns),
    )


def _plan(sub: Subparsers) -> None:
    p = arguments.command(sub, "plan", "show what apply would do", _plan_options)
    arguments.path_operand(p)
    arguments.state_options(p)
    arguments.plan_like(p)
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    p.add_argument("--out", type=Path, metavar="FILE", help="save the plan for apply")
    p.add_argument(
        "--format",
        choices=arguments.choices(PlanFormat),
        default="text",
        help="how to render the plan",
    )
    p.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when there are changes")
    arguments.redact_option(p)
    arguments.at_option(p, _AT_HELP)


def _plan_options(ns: argparse.Namespace, notes: Notes) -> PlanOptions:
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    from reconciler.cli.options import PlanOptions  # noqa: PLC0415 - start-up

    return PlanOptions(
        path=ns.path or Path("."),
        common=arguments.common(ns),
        fmt=PlanFormat(ns.format),
        out=ns.out,
        detailed_exitcode=ns.detailed_exitcode,
        allow_disables=ns.allow_disables,
        refresh=arguments.refresh_flag(ns, notes),
        show_batches=ns.show_batches,
        redact=ns.redact,
        at=ns.at,
    )


def _show(sub: Subparsers) -> None:
    p = arguments.command(sub, "show", "render a saved plan", _show_options)
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    p.add_argument(
        "file", type=Path, metavar="FILE", help="a plan saved with `reconciler plan --out FILE`"
    )
    p.add_argument(
        "--format",
        choices=arguments.choices(PlanFormat),
        default="text",
        help="how to render the plan",
    )
    p.add_argument(
        "--show-batches", action="store_true", help="list the createTask calls apply will send"
    )
    arguments.redact_option(p)


def _show_options(ns: argparse.Namespace, notes: Notes) -> ShowOptions:
    from reconciler.cli.options import ShowOptions  # noqa: PLC0415 - start-up

    return ShowOptions(
        file=ns.file, fmt=PlanFormat(ns.format), show_batches=ns.show_batches, redact=ns.redact
    )


def _apply(sub: Subparsers) -> None:
    p = arguments.command(
        sub, "apply", "apply a saved plan, or plan, confirm and apply", _apply_options
    )
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    p.add_argument(
        "target",
        nargs="?",
        default=Path("."),
        type=Path,
        metavar="PLANFILE|PATH",
        help="a directory or a .yaml/.yml file is the desired state (default .); any other "
        "file must be a plan saved with `reconciler plan --out FILE`",
    )
    p.add_argument(
        "path",
        nargs="?",
        default=None,
        type=Path,
        metavar="PATH",
        help="after a PLANFILE: the desired state it was made from (default .); the state "
        "is chosen as for every command, never taken from the plan",
    )
    arguments.state_options(p)
    arguments.plan_like(p)
    p.add_argument("--auto-approve", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--format",
        choices=arguments.choices(ReportFormat),
        default="text",
        help="how to report (json: a machine-readable report)",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=None,
        metavar="N",
        help="createTask calls in flight at once (default 8)",
    )
    arguments.task_timeout_option(p)
    p.add_argument(
        "--revocations-only",
        action="store_true",
        help="refuse (exit 3, nothing sent) a plan with anything but role removals, "
        "disables and provisioning retries: for unreviewed, scheduled runs",
    )
    arguments.at_option(
        p,
        "evaluate end dates at this date, YYYY-MM-DD: today or later, never earlier "
        "(default: RECONCILER_AT, else today in policy.timezone)",
    )


def _apply_options(ns: argparse.Namespace, notes: Notes) -> ApplyOptions:
    from reconciler.cli.options import ApplyOptions  # noqa: PLC0415 - start-up

    return ApplyOptions(
        target=ns.target,
        path=ns.path,
        common=arguments.common(ns),
        fmt=ReportFormat(ns.format),
        auto_approve=ns.auto_approve,
        parallel=ns.parallel,
        allow_disables=ns.allow_disables,
        refresh=arguments.refresh_flag(ns, notes),
        show_batches=ns.show_batches,
        task_timeout=ns.task_timeout,
        at=ns.at,
        revocations_only=ns.revocations_only,
    )


def _refresh(sub: Subparsers) -> None:
    p = arguments.command(
        sub,
        "refresh",
        "follow outstanding tasks; update known provisioning events",
        _refresh_options,
    )
    arguments.path_operand(p)
    arguments.state_options(p)
    p.add_argument(
        "--format",
        choices=arguments.choices(ReportFormat),
        default="text",
        help="how to report (json: a machine-readable report)",
    )
    arguments.task_timeout_option(p)


def _refresh_options(ns: argparse.Namespace, notes: Notes) -> RefreshOptions:
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    from reconciler.cli.options import RefreshOptions  # noqa: PLC0415 - start-up

    return RefreshOptions(
        path=ns.path or Path("."),
        common=arguments.common(ns),
        fmt=ReportFormat(ns.format),
        task_timeout=ns.task_timeout,
    )


def _import(sub: Subparsers) -> None:
    p = arguments.command(
        sub, "import", "adopt existing target accounts into the state", _import_options
    )
    arguments.path_operand(p)
    arguments.state_options(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--account",
        action="append",
        dest="accounts",
        metavar="NAME",
        help="an account to adopt as the YAML declares it (repeat for more)",
    )
    which.add_argument("--all", action="store_true", help="every declared account not yet managed")


def _import_options(ns: argparse.Namespace, notes: Notes) -> ImportOptions:
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    accounts: tuple[str, ...] = tuple(ns.accounts or ())
    if ns.path is not None and not ns.all and not _exists(ns.path):
        # ``import li.wei`` was the old spelling: say so rather than "no such file".
        raise UsageError(
            f"{ns.path}: no such desired-state path; import names accounts with --account",
            hint=_import_spelling(None, (str(ns.path), *accounts)),
        )
    from reconciler.cli.options import ImportOptions  # noqa: PLC0415 - start-up

    return ImportOptions(
        path=ns.path or Path("."),
        common=arguments.common(ns),
        accounts=accounts,
        all_accounts=ns.all,
    )


def _import_spelling(path: Path | None, accounts: Sequence[str]) -> str:
    flags = _account_flags(accounts)
    return arguments.shell_line(
        [PROG, "import", *([str(path)] if path is not None else []), *flags]
    )


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; False for a name the system refuses to look up (too long,
    a NUL byte): the usage errors that ask this are about words that are no path."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _unclaimed(ns: argparse.Namespace, extras: Sequence[str], *, argv: Sequence[str]) -> UsageError:
    """Words no argument claimed; for ``import PATH ACCOUNT...`` (the old form), the new one;
    for a misspelt flag, the command line with the flag it is a typo of."""
    if ns.command == "import" and not any(word.startswith("-") for word in extras):
        path: Path | None = ns.path
        found = path is not None and _exists(path)
        words = [str(path)] if path is not None and not found else []
        known = path if found else None
        accounts = (*words, *extras, *(ns.accounts or ()))
        return UsageError(
            f"import takes one PATH; name accounts with --account: {' '.join(accounts)}",
            hint=_import_spelling(known, accounts),
        )
    if getattr(ns, "state_command", None) == "rm" and not any(w.startswith("-") for w in extras):
        path = ns.path
        found = path is not None and _exists(path)
        words = [str(path)] if path is not None and not found else []
        known = path if found else None
        accounts = (*words, *extras, *(ns.accounts or ()))
        return UsageError(
            f"state rm takes one PATH; name accounts with --account: {' '.join(accounts)}",
            hint=_rm_spelling(known, accounts),
        )
    message = f"unrecognized arguments: {' '.join(extras)}"
    spelt = _flags_spelt_right(ns, extras, argv)
    if spelt is not None:
        fixed, meant = spelt
        return UsageError(
            message,
            hint=f"did you mean {', '.join(meant)}? {arguments.shell_line([PROG, *fixed])}",
        )
    return UsageError(message, hint=f"run '{ns.command_parser.prog} --help'")


def _flags_spelt_right(
    ns: argparse.Namespace, extras: Sequence[str], argv: Sequence[str]
) -> tuple[list[str], list[str]] | None:
    """(``argv`` with each unclaimed word after the command a misspelt flag of the command
    spelt right (``parsing.nearest``) or the value right after one that takes a value, the
    flags meant); None when any unclaimed word is something else, comes before the command
    (where the command's flags are not read) or after ``--``: a hint never guesses."""
    if "--" in argv:
        return None
    start = 0  # just after the command's words (``state push``), --debug among them
    for word in ns.command_parser.prog.split()[1:]:
        while start < len(argv) and argv[start] == "--debug":
            start += 1
        if start >= len(argv) or argv[start] != word:
            return None
        start += 1
    if any(word in argv[:start] for word in extras):
        return None  # an unclaimed word before the command
    flags = parsing.visible_flags(ns.command_parser)
    fixed, meant_flags = list(argv), []
    at = start
    value_of: int | None = None  # the index of the word a corrected flag takes as value
    for word in extras:
        try:
            at = argv.index(word, at)
        except ValueError:
            return None
        name, equals, value = word.partition("=")
        if not name.startswith("--"):
            if at != value_of:
                return None
        else:
            meant = parsing.nearest(name, flags)
            if meant is None:
                return None
            fixed[at] = meant + equals + value
            meant_flags.append(meant)
            if not equals and flags[meant].nargs is None:  # it takes the next word
                value_of = at + 1
                if value_of >= len(argv) or argv[value_of].startswith("-"):
                    return None  # no value there: the line spelt right would fail again
        at += 1
    return fixed, list(dict.fromkeys(meant_flags))


def _why(sub: Subparsers) -> None:
    p = arguments.command(sub, "why", "explain one account's change", _why_options)
    p.add_argument("account", metavar="ACCOUNT", help="the account to explain")
    arguments.path_operand(p)
    arguments.state_options(p)


def _why_options(ns: argparse.Namespace, notes: Notes) -> WhyOptions:
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    from reconciler.cli.options import WhyOptions  # noqa: PLC0415 - start-up

    return WhyOptions(path=ns.path or Path("."), account=ns.account, common=arguments.common(ns))


def _force_unlock(sub: Subparsers) -> None:
    p = arguments.command(sub, "force-unlock", "release a stuck lock", _force_unlock_options)
    p.add_argument("lock_id", metavar="LOCK_ID", help="the id the lock error named")
    arguments.path_operand(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="do not ask, and unlock even a holder still running on this host",
    )
    arguments.state_options(p)
    arguments.legacy_path(p)


def _force_unlock_options(ns: argparse.Namespace, notes: Notes) -> ForceUnlockOptions:
    path = arguments.located(ns, notes, ["force-unlock", ns.lock_id])
    from reconciler.cli.options import ForceUnlockOptions  # noqa: PLC0415 - start-up

    return ForceUnlockOptions(
        path=path, lock_id=ns.lock_id, force=ns.force, common=arguments.common(ns)
    )


def _state(sub: Subparsers) -> None:
    parent: parsing.Parser = sub.add_parser(
        "state",
        help="inspect or move the recorded state",
        description="Inspect or move the "
        "recorded state; PATH (last, default .) locates the default state file.",
    )
    parent.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks, and why a cache entry was not used",
    )
    parent.set_defaults(command_parser=parent)
    inner = parent.add_subparsers(dest="state_command", required=True, metavar="SUBCOMMAND")
    p = arguments.command(inner, "list", "managed accounts, one a line", _state_list_options)
    arguments.path_operand(p)
    p = arguments.command(inner, "show", "one account as recorded", _state_show_options)
    p.add_argument("account", metavar="ACCOUNT", help="the account to show")
    arguments.path_operand(p)
    p = arguments.command(inner, "pull", "print the state document", _state_pull_options)
    arguments.path_operand(p)
    p = arguments.command(inner, "push", "replace the state with a document", _state_push_options)
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    p.add_argument("file", type=Path, metavar="FILE", help="a state document (from state pull)")
    arguments.path_operand(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="skip the lineage and serial checks (shows what it replaces; asks on a terminal)",
    )
    p.add_argument(
        "--yes", action="store_true", help="with --force: do not ask, even on a terminal"
    )
    p = arguments.command(
        inner, "rm", "stop managing accounts, without disabling them", _state_rm_options
    )
    arguments.path_operand(p)
    p.add_argument(
        "--account",
        action="append",
        dest="accounts",
        metavar="NAME",
        help="an account to forget (repeat for more); it is left as it is on the tenant",
    )
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    for command in inner.choices.values():
        arguments.state_options(command)
        arguments.legacy_path(command)
    _state_diff(inner)  # two locations of its own; no PATH, no lock


def _state_diff(inner: Subparsers) -> None:
    p = arguments.command(inner, "diff", "compare two states (read only)", _state_diff_options)
    for name, side in (("left", "A"), ("right", "B")):
        p.add_argument(
            name,
            metavar=side,
            help="a state file or `state pull` document, a postgresql:// URL "
            "(?workspace=NAME), or workspace:NAME of the --state URL",
        )
    p.add_argument(
        "--format", choices=arguments.choices(ReportFormat), default="text", help="output"
    )
    p.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when the states differ")
    p.add_argument(
        "--state",
        metavar="LOCATION",
        help="the postgresql:// URL workspace:NAME operands refer to (default: RECONCILER_STATE)",
    )


def _state_diff_options(ns: argparse.Namespace, notes: Notes) -> StateDiffOptions:
    from reconciler.cli.options import StateDiffOptions  # noqa: PLC0415 - start-up

    return StateDiffOptions(
        left=ns.left,
        right=ns.right,
        fmt=ReportFormat(ns.format),
        detailed_exitcode=ns.detailed_exitcode,
        state=ns.state,
    )


def _state_list_options(ns: argparse.Namespace, notes: Notes) -> StateListOptions:
    from reconciler.cli.options import StateListOptions  # noqa: PLC0415 - start-up

    return StateListOptions(
        path=arguments.located(ns, notes, ["state", "list"]), common=arguments.common(ns)
    )


def _state_show_options(ns: argparse.Namespace, notes: Notes) -> StateShowOptions:
    path = arguments.located(ns, notes, ["state", "show", ns.account])
    from reconciler.cli.options import StateShowOptions  # noqa: PLC0415 - start-up

    return StateShowOptions(path=path, account=ns.account, common=arguments.common(ns))


def _state_pull_options(ns: argparse.Namespace, notes: Notes) -> StatePullOptions:
    from reconciler.cli.options import StatePullOptions  # noqa: PLC0415 - start-up

    return StatePullOptions(
        path=arguments.located(ns, notes, ["state", "pull"]), common=arguments.common(ns)
    )


def _state_push_options(ns: argparse.Namespace, notes: Notes) -> StatePushOptions:
    path = arguments.located(ns, notes, ["state", "push", str(ns.file)])
    if ns.yes and not ns.force:
        where = [] if ns.path is None and ns.legacy_path is None else [str(path)]
        raise UsageError(
            "--yes confirms a forced push; without --force there is nothing to confirm",
            hint=arguments.shell_line(
                [PROG, "state", "push", str(ns.file), *where, "--force", "--yes"]
            ),
        )
    from reconciler.cli.options import StatePushOptions  # noqa: PLC0415 - start-up

    return StatePushOptions(
        path=path, file=ns.file, force=ns.force, yes=ns.yes, common=arguments.common(ns)
    )


def _state_rm_options(ns: argparse.Namespace, notes: Notes) -> StateRmOptions:
    accounts: tuple[str, ...] = tuple(ns.accounts or ())
    if ns.path is not None and not _exists(ns.path):
        # ``state rm li.wei``: the natural guess at the spelling; say how it is written.
        raise UsageError(
            f"{ns.path}: no such desired-state path; state rm names accounts with --account",
            hint=_rm_spelling(None, (str(ns.path), *accounts)),
        )
    path = arguments.located(ns, notes, ["state", "rm", *_account_flags(accounts)])
    from reconciler.cli.options import StateRmOptions  # noqa: PLC0415 - start-up

    return StateRmOptions(path=path, accounts=accounts, force=ns.force, common=arguments.common(ns))


def _account_flags(accounts: Sequence[str]) -> list[str]:
    return [word for account in accounts for word in ("--account", account)]


def _rm_spelling(path: Path | None, accounts: Sequence[str]) -> str:
    where = [str(path)] if path is not None else []
    return arguments.shell_line([PROG, "state", "rm", *_account_flags(accounts), *where])


def _report(sub: Subparsers) -> None:
    parent: parsing.Parser = sub.add_parser(
        "report",
        help="reports for audits",
        description="Reports for audits; PATH (last, default .) is the desired state.",
    )
    parent.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks, and why a cache entry was not used",
    )
    parent.set_defaults(command_parser=parent)
    inner = parent.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    p = arguments.command(
        inner,
        "access",
        "who holds which role, since when, until when, granted by which change",
        _report_access_options,
    )
    arguments.path_operand(p)
    arguments.state_options(p)
    p.add_argument(
        "--format",
        choices=arguments.choices(AccessFormat),
        default="markdown",
        help="markdown (a review ticket), csv (a spreadsheet) or json",
    )
    arguments.redact_option(p)
    arguments.at_option(p, _AT_HELP)


def _report_access_options(ns: argparse.Namespace, notes: Notes) -> ReportAccessOptions:
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    from reconciler.cli.options import ReportAccessOptions  # noqa: PLC0415 - start-up

    return ReportAccessOptions(
        path=ns.path or Path("."),
        common=arguments.common(ns),
        fmt=AccessFormat(ns.format),
        redact=ns.redact,
        at=ns.at,
    )


def _sandbox(sub: Subparsers) -> None:
    p = arguments.command(sub, "sandbox", "serve the local fake APIs", _sandbox_options)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8780, help="port to listen on")
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    p.add_argument(
        "--roles-from",
        type=Path,
        metavar="PATH",
        help="seed the sandbox tenant with the role ids of this desired state "
        "(default: the current directory, when it holds one)",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="listen on a --host other than loopback: the sandbox accepts its published "
        "fake credentials from anyone who can reach it",
    )


def _sandbox_options(ns: argparse.Namespace, notes: Notes) -> SandboxOptions:
    from reconciler.cli.options import SandboxOptions  # noqa: PLC0415 - start-up

    return SandboxOptions(
        host=ns.host, port=ns.port, roles_from=ns.roles_from, allow_remote=ns.allow_remote
    )


def _completion(sub: Subparsers) -> None:
    p = arguments.command(sub, "completion", "print a shell completion script", _completion_options)
    p.add_argument(
        "shell",
        choices=arguments.choices(Shell),
        metavar="SHELL",
        help="bash, zsh or fish; e.g. source <(reconciler completion bash)",
    )


def _completion_options(ns: argparse.Namespace, notes: Notes) -> CompletionOptions:
    from reconciler.cli.options import CompletionOptions  # noqa: PLC0415 - start-up

    return CompletionOptions(shell=Shell(ns.shell))
