"""argparse with reconciler's manners, shared by ``reconciler`` and ``python -m reconciler.ci``.

- a usage error (unknown flag, bad choice, missing operand) is a :class:`UsageError`: exit 1
  with ``error:`` and a ``hint:`` naming the command's ``--help`` — never argparse's exit 2,
  which pipelines read as "changes present";
- no prefix abbreviations: ``--lock=false`` must not quietly become ``--lock-timeout``;
- one formatter, so both programs' help reads the same.

The grammar of the commands themselves lives in ``grammar`` (and ``ci``); this module only
knows argparse, and turns a parser into the :class:`completion.CommandSpec` completion needs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable

from reconciler.errors import UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:  # completion loads only for `completion` (start-up)
    from typing import Any, NoReturn

    from reconciler.cli.completion import CommandSpec, Option


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks; shows a flag that tolerates a value as a flag."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:  # what argparse takes, without importing shutil (start-up)
            width = terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        if isinstance(action, FlagAction):
            return ""  # the optional value is a deprecated spelling: do not advertise it
        return super()._format_args(action, default_metavar)

    def _format_usage(
        self,
        usage: str | None,
        actions: Iterable[argparse.Action],
        groups: Iterable[argparse._MutuallyExclusiveGroup],
        prefix: str | None,
    ) -> str:
        # A FlagAction's empty value leaves "--refresh  | --no-refresh" in a group.
        text = super()._format_usage(usage, actions, groups, prefix)
        return text.replace("  | ", " | ")

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if isinstance(action, FlagAction):
            return ", ".join(action.option_strings)
        return super()._format_action_invocation(action)


def terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: COLUMNS when a positive number, else the
    width of the terminal on standard output, else 80. (argparse asks shutil, whose import
    loads bz2, lzma and zlib: a fifth of `reconciler --help`.)"""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        measured = os.get_terminal_size(stdout.fileno()).columns if stdout else 0
    except (AttributeError, ValueError, OSError):  # no descriptor, or not a terminal
        return _FALLBACK_COLUMNS
    return measured or _FALLBACK_COLUMNS


_FALLBACK_COLUMNS = 80


class FlagAction(argparse.Action):
    """A flag that also takes an optional value (an old spelling); help shows the flag only."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are UsageError (exit 1) and that never abbreviates."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Raise instead of printing usage and exiting 2."""
        raise UsageError(message, hint=f"run '{self.prog} --help'")


# A word that starts like this says "not": --no-force is never a typo of --force.
_NEGATIONS = ("no-", "no", "not-", "dont-", "without-")


def nearest(word: str, names: Iterable[str]) -> str | None:
    """The one of ``names`` that ``word`` is a typo of: one edit away (an insertion, a
    deletion, a substitution or two neighbours swapped; two for names over 6 characters),
    fewer edits than half the name's length, no other name as near, and neither one "not"
    where the other is not (``--no-force`` is no typo of ``--force``). None otherwise: a
    hint never guesses between two names, nor from a word that only resembles one."""
    best: list[str] = []
    least = 3
    for name in names:
        core = name.lstrip("-")
        limit = 1 if len(core) <= 6 else 2
        edits = _edits(word, name, limit)
        if edits <= limit and edits * 2 < len(core) and edits <= least:
            best = [*best, name] if edits == least else [name]
            least = edits
    if len(best) != 1 or _negated(word) != _negated(best[0]):
        return None
    return best[0]


def _negated(word: str) -> bool:
    return word.lstrip("-").startswith(_NEGATIONS)


def _edits(a: str, b: str, limit: int) -> int:
    """The optimal-string-alignment distance of ``a`` and ``b``, or ``limit + 1`` once it
    must exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before: list[int] | None = None
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        now = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            now[j] = min(row[j] + 1, now[j - 1] + 1, row[j - 1] + cost)
            swapped = i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]
            if swapped and before is not None:
                now[j] = min(now[j], before[j - 2] + 1)
        if min(now) > limit:
            return limit + 1
        before, row = row, now
    return row[-1]


def visible_flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The long flags ``parser`` shows in its help (a hidden, deprecated one is never a
    suggestion), with their actions."""
    return {
        flag: action
        for flag, action in parser._option_string_actions.items()
        if flag.startswith("--") and action.help is not argparse.SUPPRESS
    }


def describe(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> CommandSpec:
    """The parser as data for completion: flags, operands and subcommands, recursively."""
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    from reconciler.cli.completion import CommandSpec, Positional  # noqa: PLC0415 - start-up

    options: list[Option] = []
    positionals: list[Positional] = []
    subcommands: list[CommandSpec] = []
    help_of: dict[str, str] = {}
    # argparse offers no public walk over a parser: its private _actions is what
    # completion generators (shtab, argcomplete) read as well.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                help_of[choice.dest] = choice.help or ""
            for name, sub in action.choices.items():
                found = describe(sub, (*words, name))
                subcommands.append(
                    CommandSpec(
                        words=found.words,
                        help=help_of.get(name, ""),
                        options=found.options,
                        positionals=found.positionals,
                        subcommands=found.subcommands,
                    )
                )
        elif action.option_strings:
            options.append(_option(action))
        else:
            positionals.append(
                Positional(
                    name=str(action.metavar or action.dest),
                    choices=tuple(str(c) for c in action.choices or ()),
                    files=action.type is Path,
                )
            )
    return CommandSpec(
        words=words,
        options=tuple(options),
        positionals=tuple(positionals),
        subcommands=tuple(subcommands),
    )


def _option(action: argparse.Action) -> Option:
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    from reconciler.cli.completion import Option  # noqa: PLC0415 - start-up

    return Option(
        names=tuple(action.option_strings),
        help=action.help or "",
        takes_value=action.nargs != 0 and not isinstance(action, FlagAction),
        choices=tuple(str(c) for c in action.choices or ()),
        files=action.type is Path,
        # hidden: a deprecated spelling is accepted, never suggested
        hidden=action.help == argparse.SUPPRESS,
    )
