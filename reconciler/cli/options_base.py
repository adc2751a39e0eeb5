"""The options ``validate`` needs.

Apart from ``options`` so that ``validate`` (a start-up target: it runs in editors and
pre-commit hooks) creates these two frozen classes, not all of the CLI's (``Common``, the
state options, is one of those: validate reads no state).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from reconciler.cli.choices import ValidateFormat
from reconciler.values import frozen


@frozen
class CacheOptions:
    """The parse cache and the state's check record: used unless ``--no-cache``."""

    enabled: bool = True
    debug: bool = False  # --debug: say on stderr why an entry was not used


@frozen
class ValidateOptions:
    """``reconciler validate [PATH]``."""

    path: Path
    fmt: ValidateFormat = ValidateFormat.TEXT
    at: dt.date | None = None  # None: RECONCILER_AT, else today in policy.timezone
    cache: CacheOptions = CacheOptions()
