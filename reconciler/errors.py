"""The one error root of reconciler and its tree.

The CLI catches only :class:`ReconcilerError`, prints ``error: <message>`` (plus the
``hint``: what to do next) and exits with ``exit_code``::

    ReconcilerError                      exit 1
    ├── UsageError                       bad command line
    ├── ConfigError                      missing/invalid environment setting
    ├── InputError                       desired-state files unreadable or hostile
    │   └── ValidationFailed             schema and API-rule problems, all of them, located
    ├── StateError                       recorded state
    │   ├── StateCorrupt                 unreadable, invalid or newer format: never overwritten
    │   ├── StateConflict                lineage/serial changed under us (compare-and-swap failed)
    │   ├── StateLocked                  another process holds the lock (names the holder)
    │   ├── StateLockLost                this run's lock was taken away: it stops at once
    │   └── BackendUnavailable           backend library missing or database unreachable
    ├── PlanError
    │   └── StalePlan                    saved plan no longer matches state or input
    ├── GuardRailBlocked                 exit 3: too many disables / protected account
    ├── ApiError                         a provider call failed
    │   ├── TransportError               network failure, timeout, unusable response
    │   ├── FederationError              federation-user API resultCode != "0"
    │   └── CloudIdentityError           CloudIdentity error envelope
    ├── ApplyIncomplete                  apply finished with failed accounts/events
    └── Interrupted                      exit 130/143: SIGINT/SIGTERM; in-flight work recorded

Messages never contain secrets: clients build them from codes and account names only.
"""

from __future__ import annotations

import enum

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:  # a frozen value: `--help` loads errors and creates no value class
    from reconciler.problems import Problem

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_BLOCKED = 3
EXIT_SIGNAL_BASE = 128  # a run stopped by signal N exits 128 + N: 130 SIGINT, 143 SIGTERM


class ReconcilerError(Exception):
    """Root of every error reconciler reports to its user."""

    exit_code: int = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(ReconcilerError):
    """The command line asks for something that cannot be done."""


class ConfigError(ReconcilerError):
    """A required environment setting is missing or invalid."""


class InputError(ReconcilerError):
    """The desired-state input cannot be read (missing, binary, too large, hostile)."""


class Severity(enum.StrEnum):
    """How bad a validation problem is: an error makes the input invalid, a warning not."""

    ERROR = "error"
    WARNING = "warning"


class ValidationFailed(InputError):
    """The desired state has errors; they (and any warnings) are in ``problems``."""

    def __init__(self, problems: tuple[Problem, ...]) -> None:  # problems.Problem
        count = sum(1 for problem in problems if problem.severity is Severity.ERROR)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the desired state",
            hint="fix the problems listed above, then run `reconciler validate` again",
        )
        self.problems = problems


class StateError(ReconcilerError):
    """The recorded state cannot be read, written or locked."""


class StateCorrupt(StateError):
    """The recorded state is unreadable, invalid, or written by a newer reconciler."""


class StateConflict(StateError):
    """Someone else wrote the state since we read it; nothing was written."""


class StateLocked(StateError):
    """Another process holds the state lock."""

    def __init__(self, message: str, *, lock_id: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.lock_id = lock_id


class StateLockLost(StateError):
    """The lock this run held is no longer its own (force-unlocked, session ended).

    Raised before a state write or a createTask, so a runner that lost its lock never
    writes or sends again; what it recorded so far stays (the next run settles it).
    """


class BackendUnavailable(StateError):
    """The state backend cannot be used (missing extra, unreachable server)."""


class PlanError(ReconcilerError):
    """A saved plan cannot be read or used."""


class StalePlan(PlanError):
    """The saved plan was made against another state or input than the current one."""


class GuardRailBlocked(ReconcilerError):
    """The plan breaks a guard rail of the policy."""

    exit_code = EXIT_BLOCKED


class ApiError(ReconcilerError):
    """A provider API call failed."""


class TransportError(ApiError):
    """The request failed on the network, timed out, or got an unusable response.

    ``maybe_sent`` is True when the server may have processed the request (a lost
    response): such a request must never be resent blindly.
    """

    def __init__(self, message: str, *, maybe_sent: bool, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.maybe_sent = maybe_sent


class FederationError(ApiError):
    """The federation-user API answered with a ``resultCode`` other than ``"0"``."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        http_status: int,
        account: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.http_status = http_status
        self.account = account


class CloudIdentityError(ApiError):
    """The CloudIdentity API answered with an error envelope."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        http_status: int,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.http_status = http_status
        self.request_id = request_id


class ApplyIncomplete(ReconcilerError):
    """Apply ran to the end but some changes or retries failed."""


class Interrupted(ReconcilerError):
    """Apply or refresh stopped at a signal, after recording what was in flight.

    Exits ``128 + signal number``, as shells report a process a signal ended: 130 for
    SIGINT, 143 for SIGTERM.
    """

    def __init__(self, message: str, *, signal_number: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = EXIT_SIGNAL_BASE + signal_number


EXCERPT_CHARS = 40


def excerpt(value: object) -> str:
    """``value`` as a message may echo it: its repr, cut to 40 characters with an ellipsis.

    Messages quote what the user wrote, and what was written may be a secret (a symlink to
    an env file): no message shows more of a value than this.
    """
    if isinstance(value, str):
        if len(value) <= EXCERPT_CHARS:
            return repr(value)
        return repr(value[:EXCERPT_CHARS] + "…")
    shown = repr(value)
    return shown if len(shown) <= EXCERPT_CHARS else shown[:EXCERPT_CHARS] + "…"


def printable(text: str) -> str:
    """``text`` with every unprintable character escaped (``\\n``, ``\\x1b``, ``\\u202e``).

    File names reach terminals, JSON, SARIF and GitHub's line-based workflow commands: a
    newline in a name must not start a line of its own. A byte that is not UTF-8 (a
    surrogate from ``os.fsdecode``) is shown as ``\\xNN``.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: one undecodable byte
        return f"\\x{code - 0xDC00:02x}"
    return repr(char)[1:-1]
