"""Leaving the process at the end of a console run without tearing its heap down.

A 100k-account apply ends holding its desired state, its recorded state and its plan.
Freeing them after the report is printed and the lock released (their reference counts
as the command's frames unwind, then the interpreter's last collection and its modules'
teardown) cost 0.15 to 0.2 s: in a 10,000-change apply, a third of its time over the API's
own. The operating system takes the whole address space back at once.

So the real entry points (the console script and ``python -m reconciler``) run
:func:`main_then_leave`: while the command runs, what it hands to :func:`keep` stays
referenced; once ``main()`` has returned, :func:`leave` does what the interpreter's own
exit does that anyone can see, in the same order (wait for no thread: it only leaves
when no other non-daemon thread runs; the ``atexit`` handlers; stdout and stderr
flushed), then ends the process with ``os._exit`` and the same exit status. When it
cannot vouch for that (a thread still running, a flush that fails: a closed pipe), or a
profiler or debugger is attached (``python -m cProfile -o`` writes its file after the
script), it takes the ordinary ``sys.exit`` path, which does what it always did.

Nothing is durable only in memory at that point: every state write was fsynced and the
lock released before ``main()`` returned (the stores write through raw descriptors and
fsync), and only stdout and stderr are buffered. ``main()`` called in-process (tests)
keeps nothing and frees everything as before.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable, Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import NoReturn

_kept: list[object] | None = None  # a list while an entry point runs a command


def keep(*values: object) -> None:
    """Leave ``values`` to the operating system when the process ends (entry points only)."""
    if _kept is not None:
        _kept.extend(values)


def leaving() -> bool:
    """Whether the process ends once the command returns (an entry point runs it)."""
    return _kept is not None


def main_then_leave(main: Callable[[Sequence[str] | None], int]) -> NoReturn:
    """Run ``main()`` keeping what its command hands to :func:`keep`, then :func:`leave`."""
    global _kept  # noqa: PLW0603 - one switch per process, set only by the entry points
    _kept = []
    leave(main(None))


def leave(code: int) -> NoReturn:
    """End the process with ``code`` as the interpreter would, without freeing its heap."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # a profiler or debugger (cProfile -o writes its file after this)
    if _other_threads():
        sys.exit(code)  # the interpreter waits for them, as it always did
    atexit._run_exitfuncs()  # the interpreter's own first step of an exit
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: its descriptor was closed before the start
                stream.flush()
    except (OSError, ValueError):
        sys.exit(code)  # the ordinary exit reports the failed flush (status 120), as before
    os._exit(code)


def _other_threads() -> bool:
    """Whether a non-daemon thread other than this one still runs. Without ``threading``
    imported none was started through it (start-up keeps it off validate's path)."""
    threading = sys.modules.get("threading")
    if threading is None:
        return False
    main = threading.main_thread()
    return any(t.is_alive() and not t.daemon and t is not main for t in threading.enumerate())
