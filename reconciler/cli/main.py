"""Command line: parse into one typed value, call its command, map errors to exit codes.

The only place that catches ReconcilerError, and the only place that reads the clock for
rendering. ``--debug`` (before or after the command) shows tracebacks.
"""

from __future__ import annotations

import datetime as dt
import gc
import sys
import traceback
from collections.abc import Sequence

from reconciler.cli import commands, completion, grammar, report_commands, state_commands
from reconciler.cli.options import (
    LONG_RUNNING,
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
    StateListOptions,
    StatePullOptions,
    StatePushOptions,
    StateRmOptions,
    StateShowOptions,
    ValidateOptions,
    WhyOptions,
)
from reconciler.errors import EXIT_ERROR, EXIT_OK, ReconcilerError, StateLocked


def _dispatch(options: Options, now: dt.datetime) -> int:
    from reconciler.cli import apply_commands  # noqa: PLC0415 - httpx clients load only when used

    match options:
        case ValidateOptions():
            return commands.validate(options, now=now)
        case PlanOptions():
            return apply_commands.plan(options, now=now)
        case ShowOptions():
            return apply_commands.show(options, now=now)
        case ApplyOptions():
            return apply_commands.apply(options, now=now)
        case RefreshOptions():
            return apply_commands.refresh(options)
        case ImportOptions():
            return commands.import_accounts(options)
        case WhyOptions():
            return apply_commands.why(options, now=now)
        case ForceUnlockOptions():
            return state_commands.force_unlock(options)
        case (
            StateListOptions()
            | StateShowOptions()
            | StatePullOptions()
            | StatePushOptions()
            | StateRmOptions()
        ):
            return state_commands.run(options)
        case ReportAccessOptions():
            return report_commands.report_access(options, now=now)
        case SandboxOptions():
            return apply_commands.sandbox(options)
        case CompletionOptions():
            sys.stdout.write(completion.script(options.shell, grammar.spec(), grammar.PROG))
            return EXIT_OK


def report(error: ReconcilerError, *, debug: bool) -> int:
    """Print ``error:`` (and ``hint:``) on stderr; the error's exit code."""
    if debug:
        traceback.print_exc()
    sys.stderr.write(f"error: {error.message}\n")
    if isinstance(error, StateLocked) and error.lock_id:
        sys.stderr.write(f"lock id: {error.lock_id}\n")
    if error.hint:
        sys.stderr.write(f"hint: {error.hint}\n")
    return error.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    try:
        parsed = grammar.parse(argv)
    except ReconcilerError as error:  # a usage error: exit 1, never argparse's 2
        return report(error, debug=False)
    except SystemExit as done:  # --help, --version
        return done.code if isinstance(done.code, int) else EXIT_OK
    for note in parsed.notes:
        sys.stderr.write(f"note: {note}\n")
    # Short, bounded commands run with the cyclic GC off: the desired state is a large
    # acyclic graph that every full collection would rescan (~20% of a 100k-user plan).
    # Long-running ones (apply, refresh, sandbox) keep it.
    pause_gc = not isinstance(parsed.options, LONG_RUNNING) and gc.isenabled()
    if pause_gc:
        gc.disable()
    try:
        return _dispatch(parsed.options, now=dt.datetime.now(dt.UTC))
    except ReconcilerError as error:
        return report(error, debug=parsed.debug)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_ERROR
    finally:
        if pause_gc:
            gc.enable()
