"""Command line: parse, call one typed command function, map errors to exit codes.

The only place that catches ReconcilerError, and the only place that reads the clock for
rendering. ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from reconciler import __version__
from reconciler.cli import commands
from reconciler.errors import EXIT_ERROR, ReconcilerError, StateLocked

EPILOG = """exit codes: 0 success; 1 error; 2 changes present (plan --detailed-exitcode);
3 blocked by a guard rail.

environment: RECONCILER_STATE (state location: a path or postgresql://...),
RECONCILER_FEDERATION_URL / _APP_KEY / _APP_SECRET / _TENANT_SPACE_ID,
RECONCILER_CLOUDIDENTITY_URL, VOLCENGINE_ACCESS_KEY / _SECRET_KEY / _SESSION_TOKEN / _REGION,
NO_COLOR."""


_LONG_RUNNING = frozenset({"apply", "refresh", "sandbox"})


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _parser() -> argparse.ArgumentParser:
    state_opts = argparse.ArgumentParser(add_help=False)
    state_opts.add_argument(
        "--state",
        metavar="LOCATION",
        help="state file path or postgresql:// DSN (default: RECONCILER_STATE, else "
        ".reconciler/state.json beside the desired state)",
    )
    state_opts.add_argument("--workspace", help="PostgreSQL workspace (default: default)")
    state_opts.add_argument(
        "--lock-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for the state lock instead of failing at once",
    )
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", help="show tracebacks")

    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="Declarative plan/apply for federated users and roles.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[debug],
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", parents=[debug], help="check the desired-state YAML")
    p.add_argument("path", nargs="?", default=".", type=Path)
    p.add_argument("--format", choices=("text", "json", "github", "sarif"), default="text")

    plan_like = argparse.ArgumentParser(add_help=False)
    plan_like.add_argument(
        "--allow-disables",
        type=int,
        metavar="N",
        help="accept exactly N disables beyond policy.max_disable",
    )
    plan_like.add_argument(
        "--refresh",
        type=_bool,
        default=True,
        metavar="BOOL",
        help="refresh failed provisioning events (default true)",
    )
    plan_like.add_argument(
        "--show-batches", action="store_true", help="list the createTask calls apply will send"
    )

    p = sub.add_parser(
        "plan", parents=[debug, state_opts, plan_like], help="show what apply would do"
    )
    p.add_argument("path", nargs="?", default=".", type=Path)
    p.add_argument("--out", type=Path, metavar="FILE", help="save the plan for apply")
    p.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    p.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when there are changes")
    p.add_argument(
        "--redact",
        default="",
        metavar="FIELDS",
        help="comma-separated: emails,names — hide personal data in the output",
    )

    p = sub.add_parser("show", parents=[debug], help="render a saved plan")
    p.add_argument("file", type=Path)
    p.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    p.add_argument("--show-batches", action="store_true")
    p.add_argument("--redact", default="", metavar="FIELDS")

    p = sub.add_parser("apply", parents=[debug, state_opts, plan_like], help="apply a plan")
    p.add_argument(
        "target",
        nargs="?",
        default=".",
        type=Path,
        help="a saved plan file, or the desired-state path (default .)",
    )
    p.add_argument("--auto-approve", action="store_true", help="do not ask for confirmation")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--parallel",
        type=int,
        default=None,
        metavar="N",
        help="createTask calls in flight at once (default 8)",
    )

    p = sub.add_parser(
        "refresh",
        parents=[debug, state_opts],
        help="follow outstanding tasks; update known provisioning events",
    )
    p.add_argument("path", nargs="?", default=".", type=Path)
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser(
        "import", parents=[debug, state_opts], help="adopt existing target accounts into the state"
    )
    p.add_argument("items", nargs="*", metavar="[PATH] ACCOUNT")
    p.add_argument("--all", action="store_true", help="every declared account not yet managed")

    p = sub.add_parser("force-unlock", parents=[debug, state_opts], help="release a stuck lock")
    p.add_argument("lock_id")
    p.add_argument("--path", default=".", type=Path, help="desired-state path (locates the state)")

    p = sub.add_parser("why", parents=[debug, state_opts], help="explain one account's change")
    p.add_argument("account")
    p.add_argument("path", nargs="?", default=".", type=Path)

    p = sub.add_parser("state", help="inspect or move the recorded state")
    state_sub = p.add_subparsers(dest="state_command", required=True, metavar="SUBCOMMAND")
    for name, help_text in (("list", "managed accounts"), ("pull", "print the state document")):
        q = state_sub.add_parser(name, parents=[debug, state_opts], help=help_text)
        q.add_argument("--path", default=".", type=Path, help="desired-state path")
    q = state_sub.add_parser("show", parents=[debug, state_opts], help="one account")
    q.add_argument("account")
    q.add_argument("--path", default=".", type=Path)
    q = state_sub.add_parser("push", parents=[debug, state_opts], help="replace the state")
    q.add_argument("file", type=Path)
    q.add_argument("--force", action="store_true", help="skip the lineage and serial checks")
    q.add_argument("--path", default=".", type=Path)

    p = sub.add_parser("sandbox", parents=[debug], help="serve the local fake APIs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8780)
    p.add_argument(
        "--roles-from",
        type=Path,
        metavar="PATH",
        help="seed the sandbox tenant with the role ids of this desired state",
    )
    return parser


def _common(args: argparse.Namespace) -> commands.Common:
    return commands.Common(
        state=getattr(args, "state", None),
        workspace=getattr(args, "workspace", None),
        lock_timeout=getattr(args, "lock_timeout", 0.0),
    )


def _dispatch(args: argparse.Namespace, now: dt.datetime) -> int:
    from reconciler.cli import apply_commands  # noqa: PLC0415 - httpx clients load only when used

    match args.command:
        case "validate":
            return commands.validate(args.path, fmt=args.format)
        case "plan":
            return apply_commands.plan(args, _common(args), now=now)
        case "show":
            return apply_commands.show(args, now=now)
        case "apply":
            return apply_commands.apply(args, _common(args), now=now)
        case "refresh":
            return apply_commands.refresh(args.path, _common(args), fmt=args.format)
        case "import":
            items = list(args.items)
            path = Path(".")
            if items and Path(items[0]).exists():
                path = Path(items.pop(0))
            return commands.import_accounts(path, _common(args), items, all_=args.all)
        case "force-unlock":
            return commands.force_unlock(args.path, _common(args), args.lock_id)
        case "why":
            return apply_commands.why(args, _common(args))
        case "sandbox":
            return apply_commands.sandbox(args.host, args.port, args.roles_from)
        case "state":
            common = _common(args)
            match args.state_command:
                case "list":
                    return commands.state_list(args.path, common)
                case "show":
                    return commands.state_show(args.path, common, args.account)
                case "pull":
                    return commands.state_pull(args.path, common)
                case "push":
                    return commands.state_push(args.path, common, args.file, force=args.force)
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects others


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    # Short, bounded commands run with the cyclic GC off: the desired state is a large
    # acyclic graph that every full collection would rescan (~20% of a 100k-user plan).
    # Long-running ones (apply, refresh, sandbox) keep it.
    pause_gc = args.command not in _LONG_RUNNING and gc.isenabled()
    if pause_gc:
        gc.disable()
    try:
        return _dispatch(args, now=dt.datetime.now(dt.UTC))
    except ReconcilerError as error:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {error.message}\n")
        if isinstance(error, StateLocked) and error.lock_id:
            sys.stderr.write(f"lock id: {error.lock_id}\n")
        if error.hint:
            sys.stderr.write(f"hint: {error.hint}\n")
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_ERROR
    finally:
        if pause_gc:
            gc.enable()
