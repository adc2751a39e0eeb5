"""The entry points leave the heap to the OS: atexit handlers run, stdio is flushed, the
exit status is main()'s, and what a command kept is never freed (``cli.exiting``).

Each case is a fresh interpreter: leaving ends the process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reconciler.cli import exiting

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import atexit, sys, threading
from reconciler.cli import exiting

class Big:
    def __del__(self):
        sys.stdout.write("freed\\n")

def main(argv):
    atexit.register(lambda: sys.stdout.write("atexit ran\\n"))
    exiting.keep(Big())
    sys.stdout.write("output, no newline yet")
    sys.stderr.write("a note\\n")
    {extra}
    return 3

exiting.main_then_leave(main)
"""


def _run(extra: str = "pass") -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(SCRIPT).replace("{extra}", extra)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_leaving_runs_atexit_flushes_and_keeps_the_status_without_freeing() -> None:
    """What the command kept is left to the OS: its finaliser never runs."""
    done = _run()
    assert done.returncode == 3
    assert done.stdout == "output, no newline yetatexit ran\n"
    assert done.stderr == "a note\n"


@pytest.mark.parametrize(
    "extra",
    [
        "threading.Thread(target=__import__('time').sleep, args=(0.2,)).start()",
        "sys.setprofile(lambda *args: None)",
    ],
    ids=["a thread still running", "a profiler attached"],
)
def test_the_ordinary_exit_when_leaving_cannot_vouch_for_it(extra: str) -> None:
    """A thread still running is waited for, a profiler gets its end of the run: the
    interpreter's own exit, which frees what was kept, with the same status and output."""
    done = _run(extra)
    assert done.returncode == 3
    assert done.stdout.startswith("output, no newline yetatexit ran\n")
    assert done.stderr == "a note\n"


def test_main_in_process_keeps_nothing() -> None:
    """Without an entry point (tests call main() in-process) nothing is held on to."""
    assert exiting._kept is None  # the switch only the entry points set
    exiting.keep(object())
    assert exiting._kept is None  # the switch only the entry points set
