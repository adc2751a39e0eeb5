"""Running git for provenance: one command at a time (``run``), and the ``git blame``
processes a plan starts before parsing (``blaming``).

``blaming`` starts those ``git blame`` processes before the desired state is parsed, their
output going to temp files, and ``provenance.commits`` collects it: on a work tree with 100k
entries blame costs about a third of a plan, and it runs on another core while Python
parses. At most ``os.cpu_count()`` (at most 4) run at once, the next starting as one ends, so
100 team files never mean 100 git processes; and all of them together are waited for at
most ``_GIT_TIMEOUT`` seconds, not that long per file (a blame still running then is
stopped, and its entries get no commit, as an untracked file's). Outside a git work tree
nothing runs and nothing fails.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from reconciler.desired import loading
from reconciler.errors import ReconcilerError

_GIT_TIMEOUT = 60.0  # for one git command; for all the blames of a plan together
_MAX_RUNNING = 4  # git blames at once, at most (and at most one per core)


def run(directory: Path, *args: str, stdin: str | None = None) -> str | None:
    """Stdout of ``git -C directory args`` (None when git is missing or fails)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), *args],
            input=stdin.encode() if stdin is not None else None,
            capture_output=True,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.decode("utf-8", errors="replace")


def directory_of(path: Path) -> Path:
    return path if path.is_dir() else path.parent


class Process(Protocol):
    """What ``Blames`` needs of a started process (``subprocess.Popen`` has it)."""

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


@dataclass(slots=True, kw_only=True)
class Started:
    """One ``git blame`` started, its stdout going to a temp file."""

    process: Process
    output: IO[bytes]


def _start_blame(file: Path) -> Started | None:
    output = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Blames.collect/close
    try:
        process = subprocess.Popen(
            ["git", "-C", str(file.parent), "blame", "--porcelain", "--", file.name],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        output.close()
        return None
    return Started(process=process, output=output)


def _max_running() -> int:
    return max(1, min(_MAX_RUNNING, os.cpu_count() or 1))


@dataclass(slots=True, kw_only=True)
class Blames:
    """``git blame`` started early for each desired-state file, by the name its entries'
    sources carry (``inside``: PATH is in a git work tree; None: not asked yet).

    ``pending`` files wait for a free slot: at most ``limit`` blames run at once. The first
    :meth:`collect` sets one deadline, ``budget`` seconds of ``clock`` away, for them all.
    """

    inside: bool | None = None
    started: dict[str, Started] = field(default_factory=dict)
    pending: dict[str, Path] = field(default_factory=dict)  # name -> file, in start order
    limit: int = field(default_factory=_max_running)
    start: Callable[[Path], Started | None] = _start_blame
    clock: Callable[[], float] = time.monotonic
    budget: float = _GIT_TIMEOUT
    deadline: float | None = None

    def holds(self, file: str) -> bool:
        """Whether ``file``'s blame was asked for early (started or waiting to start)."""
        return file in self.started or file in self.pending

    def top_up(self) -> None:
        """Start waiting blames while fewer than ``limit`` run (none past the deadline)."""
        running = sum(1 for run in self.started.values() if run.process.poll() is None)
        while self.pending and running < self.limit and not self._late():
            name, file = next(iter(self.pending.items()))
            del self.pending[name]
            started = self.start(file)
            if started is not None:
                self.started[name] = started
                running += 1

    def _late(self) -> bool:
        return self.deadline is not None and self.clock() >= self.deadline

    def _left(self) -> float:
        if self.deadline is None:
            self.deadline = self.clock() + self.budget
        return max(0.0, self.deadline - self.clock())

    def collect(self, file: str) -> str | None:
        """The porcelain of ``file``'s blame if it was asked for (None otherwise, when git
        failed — untracked, ignored, no commit yet — or when the deadline passed); each is
        collected once."""
        self._left()  # the one deadline starts with the first collect
        while file in self.pending and not self._late():
            # Its turn comes as others end: wait for the oldest one still running.
            running = [run for run in self.started.values() if run.process.poll() is None]
            if running:
                self._wait(running[0])
            self.top_up()
        self.pending.pop(file, None)  # still waiting at the deadline: not started at all
        run = self.started.pop(file, None)
        if run is None:
            return None
        with run.output:
            code = self._wait(run)
            self.top_up()  # the next ones run while this one is parsed
            if code != 0:
                return None
            run.output.seek(0)
            return run.output.read().decode("utf-8", errors="replace")

    def _wait(self, run: Started) -> int | None:
        """``run``'s exit code; None (it stopped) when it outlives the deadline."""
        try:
            return run.process.wait(timeout=self._left())
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                run.process.kill()
            run.process.wait()
            return None

    def close(self) -> None:
        """Stop what was not collected (the plan needed no provenance, or failed)."""
        self.pending.clear()
        for run in self.started.values():
            with contextlib.suppress(OSError):
                run.process.kill()
            run.process.wait()
            run.output.close()
        self.started.clear()


@contextlib.contextmanager
def blaming(path: Path, blames: Blames | None = None) -> Iterator[Blames]:
    """Start ``git blame`` for every desired-state file at ``path`` (nothing outside a git
    work tree), a few at a time (:class:`Blames`); the processes are stopped on the way
    out if nobody collected them. ``blames``: an empty one to fill (tests inject its
    ``start``, ``limit`` and ``clock``)."""
    blames = blames if blames is not None else Blames()
    try:
        try:
            listing = loading.list_input(path)
        except ReconcilerError:
            yield blames  # loading reports it
            return
        blames.inside = inside_work_tree(directory_of(path))
        if blames.inside:
            # Only files that can hold a user entry (reading is safe: loading's own reader;
            # a file without the word is blamed later if ever asked for).
            for file, read in zip(listing.files, loading.read_listed(listing), strict=True):
                if read.raw is None or b"account" not in read.raw:
                    continue
                blames.pending[_source_name(file)] = file
            blames.top_up()
        yield blames
    finally:
        blames.close()


def _source_name(file: Path) -> str:
    """The name an entry's Source carries for ``file``, as loading shows it (a name shown
    otherwise, with escapes, is not found here and is blamed when asked for, as before)."""
    try:
        return os.path.relpath(file)
    except ValueError:  # another drive on Windows
        return str(file)


def inside_work_tree(directory: Path) -> bool:
    return (run(directory, "rev-parse", "--is-inside-work-tree") or "").strip() == "true"


def head_commit(path: Path) -> str | None:
    """The short hash of HEAD when ``path`` is in a git work tree (None otherwise)."""
    output = run(directory_of(path), "rev-parse", "--short", "HEAD")
    return (output or "").strip() or None


def repo_root(path: Path) -> Path | None:
    """The top of the git work tree holding ``path`` (None outside git)."""
    output = run(directory_of(path), "rev-parse", "--show-toplevel")
    return Path(output.strip()) if output and output.strip() else None
