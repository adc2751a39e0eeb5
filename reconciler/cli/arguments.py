"""Arguments several commands share, and the old spellings they still accept.

Each helper adds its arguments to one parser, or reads them back from the namespace into a
typed value; ``grammar`` composes them into the commands.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable, Sequence

from reconciler.cli import parsing
from reconciler.cli.choices import AccessFormat, PlanFormat, ReportFormat, Shell, ValidateFormat
from reconciler.errors import UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:  # the frozen values load once a command line was parsed (start-up)
    from pathlib import Path
    from typing import Any, NoReturn

    from reconciler.cli.options import CacheOptions, Common, Options

PROG = "reconciler"

PATH_HELP = "the desired state: a .yaml/.yml file or a directory of them (default: .)"

Notes = list[str]
Builder = Callable[[argparse.Namespace, Notes], "Options"]
if TYPE_CHECKING:  # argparse's _SubParsersAction is private; its add_parser is all we use
    Subparsers = Any


class _Sketched(Exception):
    """Raised by :class:`_Sketch` once a command's builder named its parser."""


class _Sketch:
    """The ``sub`` a builder first runs against: it records the parser's name and help and
    stops the builder there (nothing else of it runs)."""

    def __init__(self) -> None:
        self.name = ""
        self.kwargs: dict[str, Any] = {}

    def add_parser(self, name: str, **kwargs: Any) -> NoReturn:
        self.name, self.kwargs = name, kwargs
        raise _Sketched


class _Prepared:
    """The ``sub`` a builder runs against when its command was chosen: the parser made at
    sketch time, under the same name, for the builder to fill."""

    def __init__(self, name: str, parser: parsing.Parser) -> None:
        self._name, self._parser = name, parser

    def add_parser(self, name: str, **kwargs: Any) -> parsing.Parser:
        if name != self._name:  # a builder that adds two parsers: a bug of grammar's
            raise AssertionError(f"builder of {self._name!r} added {name!r}")
        return self._parser


class _Later:
    """What ``add_parser`` is given for a command not chosen yet: its parser is made from
    these arguments once the command is chosen (each parser made cost ~0.7M instructions
    of every start-up, `--help` too; argparse's own bookkeeping, the command's help line
    and its name among the choices, is done at once)."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[parsing.Parser]
else:
    _SubParsers = argparse._SubParsersAction


class Commands(_SubParsers):
    """Subcommands whose parsers are made, and their arguments added, only once one is
    chosen on the command line.

    ``reconciler --help`` lists every command (name and help) without building any
    command's parser, which was a third of its start-up; ``reconciler plan ...`` builds
    plan's only. What argparse chose is what gets built: nothing is guessed from argv.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fillers: dict[str, Callable[[], None]] = {}

    def defer(self, add: Callable[[Subparsers], None]) -> None:
        """Register the command ``add`` builds: its help line now, its parser when chosen."""
        sketch = _Sketch()
        try:
            add(sketch)
        except _Sketched:
            pass
        else:  # pragma: no cover - a builder that adds no parser: a bug of grammar's
            raise AssertionError(f"{add.__name__} added no parser")
        name, made_by = sketch.name, self._parser_class
        # add_parser, with the parser itself left for later: until the command is chosen,
        # its entry among the choices holds what the parser will be made from.
        self._parser_class = _Later  # type: ignore[assignment]
        try:
            later: _Later = self.add_parser(name, **sketch.kwargs)  # type: ignore[assignment]
        finally:
            self._parser_class = made_by

        def build() -> None:
            parser = made_by(**later.kwargs)
            self._name_parser_map[name] = parser
            add(_Prepared(name, parser))

        self._fillers[name] = build

    def chosen(self, name: str) -> argparse.ArgumentParser:
        """The parser of command ``name`` (built now if it was not yet)."""
        filler = self._fillers.pop(name, None)
        if filler is not None:
            filler()
        parser: argparse.ArgumentParser = self._name_parser_map[name]
        return parser

    def fill(self) -> None:
        """Build every command's arguments (completion and tests need the whole grammar)."""
        for name in list(self._fillers):
            self._fillers.pop(name)()

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        filler = self._fillers.pop(values[0], None)
        if filler is not None:
            filler()
        super().__call__(parser, namespace, values, option_string)


def command(sub: Subparsers, name: str, help_text: str, builder: Builder) -> parsing.Parser:
    """A subcommand that also accepts --debug after its name (the program's value otherwise)."""
    parser: parsing.Parser = sub.add_parser(
        name, help=help_text, description=help_text[0].upper() + help_text[1:] + "."
    )
    # SUPPRESS: unless given here, the program-level --debug (default False) stands.
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks, and why a cache entry was not used",
    )
    parser.set_defaults(build=builder, command_parser=parser)
    return parser


def path_operand(parser: argparse.ArgumentParser) -> None:
    """The optional desired-state PATH, always the last operand (None when not given)."""
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    parser.add_argument("path", nargs="?", type=Path, metavar="PATH", help=PATH_HELP)


def legacy_path(parser: argparse.ArgumentParser) -> None:
    """The deprecated ``--path DIR``: accepted, never shown, resolved by :func:`located`."""
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    parser.add_argument("--path", dest="legacy_path", type=Path, help=argparse.SUPPRESS)


def state_options(parser: argparse.ArgumentParser) -> None:
    """--state, --workspace and --lock-timeout, for every command that touches the state."""
    parser.add_argument(
        "--state",
        metavar="LOCATION",
        help="state file path or postgresql:// DSN (default: RECONCILER_STATE, else "
        ".reconciler/state.json beside the desired state)",
    )
    parser.add_argument("--workspace", help="PostgreSQL workspace (default: default)")
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for the state lock instead of failing at once",
    )
    cache_option(parser)


def task_timeout_option(parser: argparse.ArgumentParser) -> None:
    """--task-timeout SECONDS, for the commands that follow tasks (apply, refresh)."""
    parser.add_argument(
        "--task-timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="longest wait for one task to be DONE before leaving it to `reconciler refresh` "
        "(default: RECONCILER_TASK_TIMEOUT, else 1800)",
    )


def _positive_seconds(raw: str) -> float:
    """A positive number of seconds (argparse type)."""
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"not a number of seconds: {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise UsageError(f"the number of seconds must be positive and finite, not {raw}")
    return value


def common(ns: argparse.Namespace) -> Common:
    """The state options, read back."""
    from reconciler.cli.options import Common  # noqa: PLC0415 - see the imports

    return Common(
        state=ns.state, workspace=ns.workspace, lock_timeout=ns.lock_timeout, cache=cache(ns)
    )


def cache_option(parser: argparse.ArgumentParser) -> None:
    """--no-cache, for every command that reads the desired state or the state."""
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor write the parse cache (<state>.cache/ beside the state) nor "
        "the state's check record",
    )


def cache(ns: argparse.Namespace) -> CacheOptions:
    """--no-cache (and --debug, which says why a cache entry was not used), read back."""
    from reconciler.cli.options_base import CacheOptions  # noqa: PLC0415 - see the imports

    return CacheOptions(enabled=not ns.no_cache, debug=bool(getattr(ns, "debug", False)))


def shell_line(words: Sequence[str]) -> str:
    """``words`` as one shell command line, each quoted as needed (for a hint to paste)."""
    import shlex  # noqa: PLC0415 - only a hint needs it: every start-up loads this module

    return shlex.join(words)


def located(ns: argparse.Namespace, notes: Notes, words: Sequence[str]) -> Path:
    """PATH from the operand, or from the deprecated ``--path`` (which must agree with it)."""
    from pathlib import Path  # noqa: PLC0415 - start-up: `--help` imports no pathlib

    legacy: Path | None = ns.legacy_path
    if legacy is None:
        return ns.path or Path(".")
    spelled = shell_line([PROG, *words, str(ns.path or legacy)])
    if ns.path is not None and ns.path.resolve() != legacy.resolve():
        raise UsageError(
            f"--path {legacy} disagrees with the PATH operand {ns.path}",
            hint=f"give the path once, as the last operand: {spelled}",
        )
    notes.append(f"--path is deprecated; give the path as the last operand: {spelled}")
    return legacy


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class _Refresh(parsing.FlagAction):
    """``--refresh`` (the default); the old ``--refresh=false|true`` still parses, noted."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        """Set ``refresh``; remember an old-style value so the builder can note it."""
        if values is None:
            namespace.refresh = True
            namespace.refresh_spelling = None  # the last spelling wins, as for any flag
            return
        word = str(values).lower()
        if word not in _TRUE | _FALSE:
            raise UsageError(
                f"--refresh takes no value (got {values!r})",
                hint="--refresh is a flag (the default): write --no-refresh to plan offline, "
                "and PATH before --refresh",
            )
        namespace.refresh = word in _TRUE
        namespace.refresh_spelling = f"--refresh={values}"


def plan_like(parser: argparse.ArgumentParser) -> None:
    """What plan and apply share: --allow-disables, --refresh/--no-refresh, --show-batches."""
    parser.add_argument(
        "--allow-disables",
        type=int,
        metavar="N",
        help="accept exactly N disables beyond policy.max_disable",
    )
    refresh = parser.add_mutually_exclusive_group()
    refresh.add_argument(
        "--refresh",
        action=_Refresh,
        nargs="?",
        default=True,
        help="list failed provisioning events to retry (the default)",
    )
    refresh.add_argument(
        "--no-refresh",
        dest="refresh",
        action="store_false",
        help="plan offline: do not list failed provisioning events",
    )
    parser.set_defaults(refresh_spelling=None)
    parser.add_argument(
        "--show-batches", action="store_true", help="list the createTask calls apply will send"
    )


def refresh_flag(ns: argparse.Namespace, notes: Notes) -> bool:
    """Whether to refresh; an old ``--refresh=BOOL`` spelling adds a deprecation note."""
    if ns.refresh_spelling is not None:
        new = "--refresh (the default)" if ns.refresh else "--no-refresh"
        notes.append(f"{ns.refresh_spelling} is deprecated; use {new}")
    refresh: bool = ns.refresh
    return refresh


def redact_option(parser: argparse.ArgumentParser) -> None:
    """--redact FIELDS, for plan and show."""
    parser.add_argument(
        "--redact",
        default="",
        metavar="FIELDS",
        help="comma-separated: emails,names — hide personal data in the output",
    )


def choices(
    enum_type: type[ValidateFormat | PlanFormat | ReportFormat | AccessFormat | Shell],
) -> list[str]:
    """The values of a closed set, for argparse's ``choices``."""
    return [member.value for member in enum_type]


def iso_date(text: str) -> dt.date:
    """An ``--at`` value: a calendar date YYYY-MM-DD (argparse turns the error into usage)."""
    if len(text) == 10:
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(
        f"--at takes a calendar date YYYY-MM-DD, e.g. 2026-12-15 (got {text!r})"
    )


def at_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """--at DATE: the date end dates are evaluated at (default RECONCILER_AT, else today)."""
    parser.add_argument("--at", type=iso_date, metavar="DATE", help=help_text)
