"""Command line: parse into one typed value, call its command, map errors to exit codes.

The only place that catches ReconcilerError, and the only place that reads the clock for
rendering. ``--debug`` (before or after the command) shows tracebacks, with every known
secret masked in every line of them (``masking``). An interrupt exits 128 + the signal's
number (130 for Ctrl-C); a bug prints its masked traceback and exits 1.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import sys
from collections.abc import Sequence

from reconciler.cli import exiting, grammar, output, signals
from reconciler.errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_SIGNAL_BASE,
    ReconcilerError,
    StateLocked,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:  # the values load once a command line was parsed: `--help` needs none
    from typing import NoReturn

    from reconciler.cli.options import Options


def _dispatch(options: Options, now: dt.datetime) -> int:
    # Each command's modules load only when it runs (start-up: `--help` and `validate`
    # load neither httpx nor deepdiff); tests/test_startup.py holds that.
    # Each `noqa: PLC0415` below: the import inside a function is the point.
    from reconciler.cli.options_base import ValidateOptions  # noqa: PLC0415 - see above

    if isinstance(options, ValidateOptions):  # before the other commands' option values load
        from reconciler.cli import validate_command  # noqa: PLC0415

        return validate_command.validate(options, now=now)
    from reconciler.cli.options import (  # noqa: PLC0415 - loaded after parsing: see above
        CompletionOptions,
        ForceUnlockOptions,
        ImportOptions,
        ReportAccessOptions,
        SandboxOptions,
        StateDiffOptions,
        StateListOptions,
        StatePullOptions,
        StatePushOptions,
        StateRmOptions,
        StateShowOptions,
    )

    match options:
        case ImportOptions():
            from reconciler.cli import commands  # noqa: PLC0415

            return commands.import_accounts(options)
        case ForceUnlockOptions():
            from reconciler.cli import state_commands  # noqa: PLC0415

            return state_commands.force_unlock(options)
        case (
            StateListOptions()
            | StateShowOptions()
            | StatePullOptions()
            | StatePushOptions()
            | StateRmOptions()
        ):
            from reconciler.cli import state_commands  # noqa: PLC0415

            return state_commands.run(options)
        case StateDiffOptions():
            from reconciler.cli import state_diff  # noqa: PLC0415

            return state_diff.state_diff(options)
        case ReportAccessOptions():
            from reconciler.cli import report_commands  # noqa: PLC0415

            return report_commands.report_access(options, now=now)
        case SandboxOptions():
            from reconciler.cli import sandbox_command  # noqa: PLC0415

            return sandbox_command.sandbox(options)
        case CompletionOptions():
            from reconciler.cli import completion  # noqa: PLC0415

            sys.stdout.write(completion.script(options.shell, grammar.spec(), grammar.PROG))
            return EXIT_OK
    return _dispatch_planning(options, now)


def _dispatch_planning(options: Options, now: dt.datetime) -> int:
    """The commands that plan or apply: their module loads the API clients (httpx)."""
    from reconciler.cli import apply_commands  # noqa: PLC0415 - see _dispatch
    from reconciler.cli.options import (  # noqa: PLC0415 - see _dispatch
        ApplyOptions,
        PlanOptions,
        RefreshOptions,
        ShowOptions,
        WhyOptions,
    )

    match options:
        case PlanOptions():
            return apply_commands.plan(options, now=now)
        case ShowOptions():
            return apply_commands.show(options, now=now)
        case ApplyOptions():
            return apply_commands.apply(options, now=now)
        case RefreshOptions():
            return apply_commands.refresh(options)
        case WhyOptions():
            return apply_commands.why(options, now=now)
    raise AssertionError(f"no command for {type(options).__name__}")  # a bug: grammar's


def report(error: ReconcilerError, *, debug: bool, secrets: Sequence[str] = ()) -> int:
    """Print ``error:`` (and ``hint:``) on stderr, secrets masked; the error's exit code."""
    from reconciler.cli import masking  # noqa: PLC0415 - after parsing: `--help` needs none

    if debug:
        sys.stderr.write(masking.traceback_text(error, secrets))
    lines = [f"error: {error.message}"]
    if isinstance(error, StateLocked) and error.lock_id:
        lines.append(f"lock id: {error.lock_id}")
    if error.hint:
        lines.append(f"hint: {error.hint}")
    sys.stderr.write(masking.mask("\n".join(lines), secrets) + "\n")
    return error.exit_code


def _pasteable(error: ReconcilerError, options: Options) -> ReconcilerError:
    """A lock error's force-unlock hint with this run's PATH, --state and --workspace:
    the store that raised it does not know them, and without them the command pasted from
    another folder would look at another state."""
    if not isinstance(error, StateLocked) or not error.lock_id or not error.hint:
        return error
    from reconciler.cli import commands  # noqa: PLC0415 - only on this error's path

    bare = f"reconciler force-unlock {error.lock_id}"
    words = ["reconciler", "force-unlock", error.lock_id]
    path, common = getattr(options, "path", None), getattr(options, "common", None)
    hint = error.hint.replace(bare, commands.command_line(words, path, common))
    return StateLocked(error.message, lock_id=error.lock_id, hint=hint)


def _secrets(argv: Sequence[str] | None, options: Options | None = None) -> tuple[str, ...]:
    """The secrets of this run: the environment's, a DSN password given as --state, and
    the password of every URL on the command line (each word, and each word's part after
    ``=``), which a usage error's hint or a note may repeat (``state pull --path DSN`` is
    read as a path: its "://" becomes ":/", past the shapes masking looks for)."""
    from reconciler.cli import masking  # noqa: PLC0415 - after parsing: `--help` needs none

    words = sys.argv[1:] if argv is None else argv
    urls = [part for word in words for part in (word, word.partition("=")[2]) if "://" in part]
    common = getattr(options, "common", None)
    return masking.known_secrets(os.environ, [getattr(common, "state", None), *urls])


def _parsed(argv: Sequence[str] | None) -> grammar.Parsed | int:
    """The command line understood, or the exit code of one refused (reported)."""
    try:
        return grammar.parse(argv)
    except ReconcilerError as error:  # a usage error: exit 1, never argparse's 2
        # Its hint may repeat the command line: a DSN's password in it is a secret too.
        return report(error, debug=False, secrets=_secrets(argv))
    except SystemExit as done:  # --help, --version
        return done.code if isinstance(done.code, int) else EXIT_OK
    except Exception as error:  # reported as every bug is, secrets masked
        return _bug(error, _secrets(argv))


def _bug(error: Exception, secrets: Sequence[str]) -> int:
    """Not a ReconcilerError: a bug. Its traceback (masked) is what a report needs."""
    from reconciler.cli import masking  # noqa: PLC0415 - after parsing: `--help` needs none

    sys.stderr.write(masking.traceback_text(error, secrets))
    sys.stderr.write(
        f"error: unexpected {type(error).__name__}: this is a bug in reconciler\n"
        "hint: please report it with the traceback above\n"
    )
    return EXIT_ERROR


def entry() -> NoReturn:
    """The console script and ``python -m reconciler``: ``main()``, then the process ends
    without freeing what the command built (``exiting``)."""
    exiting.main_then_leave(main)


def _long_running(options: Options) -> bool:
    """Whether the command keeps the cyclic GC (apply, refresh, sandbox)."""
    from reconciler.cli.options_base import ValidateOptions  # noqa: PLC0415 - see _dispatch

    if isinstance(options, ValidateOptions):  # short, and loads no other option value
        return False
    from reconciler.cli.options import LONG_RUNNING  # noqa: PLC0415 - see _dispatch

    return isinstance(options, LONG_RUNNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parsed = _parsed(argv)
    if isinstance(parsed, int):
        return parsed
    secrets = _secrets(argv, parsed.options)
    if parsed.notes:
        from reconciler.cli import masking  # noqa: PLC0415 - after parsing: `--help` needs none

        for note in parsed.notes:
            sys.stderr.write(masking.mask(f"note: {note}", secrets) + "\n")
    stdout = sys.stdout
    if stdout is None:  # descriptor 1 closed (`>&-`): the output has nowhere to go
        sys.stderr.write(
            "error: the standard output is closed\n"
            "hint: run the command with its output going somewhere: the terminal, a file "
            "(`> FILE`) or a pipe\n"
        )
        return EXIT_ERROR
    # Short, bounded commands run with the cyclic GC off: the desired state is a large
    # acyclic graph that every full collection would rescan (~20% of a 100k-user plan).
    # Long-running ones (apply, refresh, sandbox) keep it.
    pause_gc = not _long_running(parsed.options) and gc.isenabled()
    if pause_gc:
        gc.disable()
    sys.stdout = output.Guarded(stdout)  # a TextIO in all it does (its __getattr__)
    try:
        code = _dispatch(parsed.options, now=dt.datetime.now(dt.UTC))
        sys.stdout.flush()  # output that does not fit fails here, named (below), not at exit
        return code
    except output.OutputLost as lost:
        output.drop(stdout)
        sys.stderr.write(
            f"error: cannot write the output: {lost}\n"
            "hint: the standard output refused what was written (a full disk, a file size "
            "limit, a device error): make room or send the output elsewhere, then run the "
            "command again\n"
        )
        return EXIT_ERROR
    except ReconcilerError as error:
        return report(_pasteable(error, parsed.options), debug=parsed.debug, secrets=secrets)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        # Imported here, not at start-up: importing `signal` creates its enums (~3M
        # instructions of every command's start-up, `--help` included).
        import signal  # noqa: PLC0415

        return EXIT_SIGNAL_BASE + signal.SIGINT
    except signals.Aborted as aborted:
        sys.stderr.write(f"error: {aborted.message}\n")
        if aborted.started:
            sys.stderr.write(
                "hint: run `reconciler refresh` (or `reconciler apply`) to settle what was "
                "in flight\n"
            )
        return EXIT_SIGNAL_BASE + aborted.signal_number
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as error:  # the one place a bug is reported: its traceback, masked
        return _bug(error, secrets)
    finally:
        sys.stdout = stdout
        if pause_gc:
            gc.enable()
