"""What every command that reads the desired state shares: output, limits, the date, load.

Kept apart from ``commands`` so that ``validate`` loads only the desired-state layer (no
planner, renderer or store): start-up stays short.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from pathlib import Path

from reconciler.cli.options_base import CacheOptions
from reconciler.desired import dates, loading, validation
from reconciler.desired.model import DesiredState
from reconciler.errors import UsageError, ValidationFailed

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import TextIO

    from reconciler.cli.options import Common  # the state's options: validate has none

    # The key and the parse cache load only when there is a cache to use: `validate` of a
    # folder without a state creates neither's frozen classes (start-up).
    from reconciler.desired.cache import ParseCache
    from reconciler.seals import Seal


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


# The state's location rule (stores.location), read here without loading the stores: the
# parse cache lives beside the state, and validate loads the desired-state layer only.
STATE_ENV = "RECONCILER_STATE"
DEFAULT_STATE = Path(".reconciler") / "state.json"
_POSTGRES = ("postgresql://", "postgres://")
# Compiled where used (re caches it): only a state location given needs it.
_NOT_A_PATH = r"^(?:[A-Za-z][A-Za-z0-9+.-]*:|[A-Za-z_][A-Za-z0-9_]*\s*=)"
POSTGRES_CACHE = Path(".reconciler") / "cache"
CACHE_SUFFIX = ".cache"


def base_dir(path: Path) -> Path:
    """The directory whose ``.reconciler/state.json`` is the default state."""
    return path if path.is_dir() else path.parent


def cache_directory(path: Path, common: Common | None) -> tuple[Path, bool] | None:
    """Where the parse cache of the desired state at ``path`` is, and whether to say so.

    Beside the state file, as ``<state>.cache/``, once that file exists (a misspelt
    ``--state`` leaves nothing behind, and the state's folder is never created for it); for
    a PostgreSQL state ``.reconciler/cache/`` beside the desired state, said once
    on stderr. The state is ``--state``, else RECONCILER_STATE, else the default; None when
    that is no state location (the command refuses it, or never reads the state).
    """
    location = common.state if common is not None else None
    if location is None:
        location = os.environ.get(STATE_ENV)
    if location is None:
        location = str(base_dir(path) / DEFAULT_STATE)
    elif location.startswith(_POSTGRES):
        return base_dir(path) / POSTGRES_CACHE, True
    elif not location or location != location.strip() or re.match(_NOT_A_PATH, location):
        return None  # refused by stores.location wherever the state is opened
    state = Path(os.path.realpath(location))  # a symlinked state: beside its target
    if not state.is_file():
        return None  # not written yet, or misspelt: no cache folder is left beside nothing
    return state.with_name(state.name + CACHE_SUFFIX), False


def seal(options: CacheOptions, *, what: str) -> Seal | None:
    """This user's key for the parse cache and the state's check record (made on first
    use); None with ``--no-cache``, or when there is no usable key (``--debug`` says why):
    then ``what`` is not used and everything is checked."""
    if not options.enabled:
        return None
    from reconciler import seals  # noqa: PLC0415 - see the imports

    where = seals.key_path(os.environ)
    found = seals.load(where) if where is not None else "neither XDG_CACHE_HOME nor HOME is set"
    if isinstance(found, str):
        if options.debug:
            sys.stderr.write(f"debug: {what}: not used: {found}\n")
        return None
    return found


def parse_cache(
    path: Path, options: CacheOptions, *, common: Common | None = None
) -> ParseCache | None:
    """The parse cache of the desired state at ``path`` (see :func:`cache_directory`);
    None with ``--no-cache`` or without a usable key (:func:`seal`)."""
    where = cache_directory(path, common) if options.enabled else None
    if where is None:
        return None
    key = seal(options, what="parse cache")
    if key is None:
        return None
    directory, elsewhere = where
    from reconciler.desired.cache import ParseCache  # noqa: PLC0415 - see the imports

    def debug(line: str) -> None:
        sys.stderr.write(f"debug: {line}\n")

    def announce(line: str) -> None:
        sys.stderr.write(f"note: {line}\n")

    told = announce if elsewhere else _quiet
    if options.debug:
        return ParseCache(directory, seal=key, debug=debug, announce=told)
    return ParseCache(directory, seal=key, announce=told)


def _quiet(_: str) -> None:
    """Say nothing."""


def flush(cache: ParseCache | None) -> None:
    """Write the parse cache's new entries: the command's whole input checked out."""
    if cache is not None:
        cache.flush()


def load(
    path: Path, when: dates.Today | None = None, *, cache: ParseCache | None = None
) -> DesiredState:
    """Read and validate the desired state (end dates at ``when``, if given, through
    ``cache`` if given); its problems, if any, go to stderr first."""
    try:
        return validation.load_desired(path, max_bytes=max_bytes(), today=when, cache=cache)
    except ValidationFailed as failed:
        # The error's hint says "fix the problems listed above": list them.
        for problem in failed.problems:
            sys.stderr.write(problem.render() + "\n")
        raise
