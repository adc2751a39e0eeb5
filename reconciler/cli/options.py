"""What each command was asked to do: one frozen value per command, built by ``grammar``.

Handlers receive these, never an ``argparse.Namespace``: the command line's shape stays in
``grammar``, and a handler's signature says exactly which options it reads.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TypeAlias

from reconciler.cli.choices import AccessFormat, PlanFormat, ReportFormat, Shell
from reconciler.cli.options_base import CacheOptions, ValidateOptions
from reconciler.errors import UsageError
from reconciler.values import frozen

__all__ = [  # the two of options_base too: every option value is importable from here
    "LONG_RUNNING",
    "ApplyOptions",
    "CacheOptions",
    "Common",
    "CompletionOptions",
    "ForceUnlockOptions",
    "ImportOptions",
    "Options",
    "PlanOptions",
    "RefreshOptions",
    "ReportAccessOptions",
    "SandboxOptions",
    "ShowOptions",
    "StateDiffOptions",
    "StateListOptions",
    "StatePullOptions",
    "StatePushOptions",
    "StateRmOptions",
    "StateShowOptions",
    "ValidateOptions",
    "WhyOptions",
]


@frozen
class Common:
    """Options every state-touching command shares."""

    state: str | None = None
    workspace: str | None = None
    lock_timeout: float = 0.0
    cache: CacheOptions = CacheOptions()


@frozen
class PlanOptions:
    """``reconciler plan [PATH]``."""

    path: Path
    common: Common = Common()
    fmt: PlanFormat = PlanFormat.TEXT
    out: Path | None = None
    detailed_exitcode: bool = False
    allow_disables: int | None = None
    refresh: bool = True
    show_batches: bool = False
    redact: str = ""
    at: dt.date | None = None  # None: RECONCILER_AT, else today in policy.timezone


@frozen
class ShowOptions:
    """``reconciler show FILE``."""

    file: Path
    fmt: PlanFormat = PlanFormat.TEXT
    show_batches: bool = False
    redact: str = ""


@frozen
class ApplyOptions:
    """``reconciler apply [PLANFILE [PATH] | PATH]``."""

    target: Path
    path: Path | None = None  # PATH after a PLANFILE (None: ``.``); never taken from the plan
    common: Common = Common()
    fmt: ReportFormat = ReportFormat.TEXT
    auto_approve: bool = False
    parallel: int | None = None
    allow_disables: int | None = None
    refresh: bool = True
    show_batches: bool = False
    task_timeout: float | None = None  # None: RECONCILER_TASK_TIMEOUT, else the default
    at: dt.date | None = None  # None: RECONCILER_AT, else today; never before today
    revocations_only: bool = False  # refuse (exit 3) a plan that grants or changes anything


@frozen
class RefreshOptions:
    """``reconciler refresh [PATH]``."""

    path: Path
    common: Common = Common()
    fmt: ReportFormat = ReportFormat.TEXT
    task_timeout: float | None = None  # None: RECONCILER_TASK_TIMEOUT, else the default


@frozen
class ImportOptions:
    """``reconciler import [PATH] (--account NAME ... | --all)``: one of the two is set."""

    path: Path
    common: Common = Common()
    accounts: tuple[str, ...] = ()
    all_accounts: bool = False

    def __post_init__(self) -> None:
        """Refuse an import of nothing in particular, and one that is both kinds."""
        if bool(self.accounts) == self.all_accounts:
            raise UsageError(
                "name the accounts to import, or pass --all"
                if not self.accounts
                else "name the accounts to import, or pass --all, not both",
                hint="reconciler import [PATH] --account NAME (once per account), or --all",
            )


@frozen
class WhyOptions:
    """``reconciler why ACCOUNT [PATH]``."""

    path: Path
    account: str
    common: Common = Common()


@frozen
class ForceUnlockOptions:
    """``reconciler force-unlock LOCK_ID [PATH] [--force]``."""

    path: Path
    lock_id: str
    force: bool = False  # no confirmation, and a holder running on this host is no obstacle
    common: Common = Common()


@frozen
class StateListOptions:
    """``reconciler state list [PATH]``."""

    path: Path
    common: Common = Common()


@frozen
class StateShowOptions:
    """``reconciler state show ACCOUNT [PATH]``."""

    path: Path
    account: str
    common: Common = Common()


@frozen
class StatePullOptions:
    """``reconciler state pull [PATH]``."""

    path: Path
    common: Common = Common()


@frozen
class StatePushOptions:
    """``reconciler state push FILE [PATH]``."""

    path: Path
    file: Path
    force: bool = False
    yes: bool = False  # --force without asking on a terminal
    common: Common = Common()


@frozen
class StateDiffOptions:
    """``reconciler state diff A B``: two state locations, read only."""

    left: str
    right: str
    fmt: ReportFormat = ReportFormat.TEXT
    detailed_exitcode: bool = False
    state: str | None = None  # the PostgreSQL URL ``workspace:NAME`` operands refer to


@frozen
class StateRmOptions:
    """``reconciler state rm --account NAME [--account NAME ...] [PATH] [--force]``."""

    path: Path
    accounts: tuple[str, ...]
    force: bool = False  # no confirmation (needed without a terminal)
    common: Common = Common()

    def __post_init__(self) -> None:
        """Refuse a removal of nothing."""
        if not self.accounts:
            raise UsageError(
                "name the accounts to stop managing",
                hint="reconciler state rm --account NAME [--account NAME ...] [PATH]",
            )


@frozen
class ReportAccessOptions:
    """``reconciler report access [PATH]``."""

    path: Path
    common: Common = Common()
    fmt: AccessFormat = AccessFormat.MARKDOWN
    redact: str = ""
    at: dt.date | None = None  # None: RECONCILER_AT, else today in policy.timezone


@frozen
class SandboxOptions:
    """``reconciler sandbox``."""

    host: str = "127.0.0.1"
    port: int = 8780
    roles_from: Path | None = None  # None: the current directory, if it holds a desired state
    allow_remote: bool = False  # listen on a non-loopback address (it accepts fake credentials)


@frozen
class CompletionOptions:
    """``reconciler completion SHELL``."""

    shell: Shell


Options: TypeAlias = (
    ValidateOptions
    | PlanOptions
    | ShowOptions
    | ApplyOptions
    | RefreshOptions
    | ImportOptions
    | WhyOptions
    | ForceUnlockOptions
    | StateListOptions
    | StateShowOptions
    | StatePullOptions
    | StatePushOptions
    | StateRmOptions
    | StateDiffOptions
    | ReportAccessOptions
    | SandboxOptions
    | CompletionOptions
)

# Long-running commands keep the cyclic GC; short bounded ones pause it (see ``main``).
LONG_RUNNING = (ApplyOptions, RefreshOptions, SandboxOptions)
