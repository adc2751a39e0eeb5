"""What every command that reads the desired state shares: output, limits, the date, load.

Kept apart from ``commands`` so that ``validate`` loads only the desired-state layer (no
planner, renderer or store): start-up stays short.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import TextIO

from reconciler.desired import dates, loading, validation
from reconciler.desired.model import DesiredState
from reconciler.errors import UsageError, ValidationFailed


def out(line: str = "", *, stream: TextIO | None = None) -> None:
    """Write a line to stdout (or ``stream``)."""
    (stream or sys.stdout).write(line if line.endswith("\n") else line + "\n")


def max_bytes() -> int:
    """The per-file size limit (RECONCILER_MAX_FILE_BYTES overrides)."""
    raw = os.environ.get("RECONCILER_MAX_FILE_BYTES")
    if raw is None:
        return loading.DEFAULT_MAX_FILE_BYTES
    try:
        return int(raw)
    except ValueError:
        raise UsageError(
            f"RECONCILER_MAX_FILE_BYTES must be a number of bytes, not {raw!r}"
        ) from None


AT_ENV = "RECONCILER_AT"


def today(given: dt.date | None, now: dt.datetime) -> dates.Today:
    """When end dates are evaluated: ``--at``, else RECONCILER_AT, else the clock's ``now``."""
    if given is None and AT_ENV in os.environ:
        raw = os.environ[AT_ENV]
        given = dates.read_date(raw)
        if given is None:
            raise UsageError(
                f"{AT_ENV} must be a calendar date YYYY-MM-DD, not {raw!r}",
                hint=f"unset {AT_ENV} to evaluate end dates at today's date",
            )
    return dates.Today(now=now, given=given)


def evaluated_at(desired: DesiredState) -> dt.date:
    """The date validation evaluated ``desired``'s end dates at (load with ``today``)."""
    if desired.at is None:
        raise AssertionError("the desired state was loaded without a date")  # a bug, not input
    return desired.at


def load(path: Path, when: dates.Today | None = None) -> DesiredState:
    """Read and validate the desired state (end dates at ``when``, if given); its problems,
    if any, go to stderr first."""
    try:
        return validation.load_desired(path, max_bytes=max_bytes(), today=when)
    except ValidationFailed as failed:
        # The error's hint says "fix the problems listed above": list them.
        for problem in failed.problems:
            sys.stderr.write(problem.render() + "\n")
        raise
