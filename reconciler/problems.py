"""A validation problem, located: apart from ``errors`` because it is a frozen value, and
every command (``--help`` too) loads ``errors`` while creating a value class costs
start-up only ``validate`` and the commands after it need.
The desired-state layer imports it where a problem is made: a valid input never creates
this class."""

from __future__ import annotations

from reconciler.errors import Severity
from reconciler.values import frozen


@frozen
class Problem:
    """One validation problem, located at ``file:line:col`` (1-based; 0 = unknown)."""

    file: str
    line: int
    col: int
    message: str
    path: tuple[str | int, ...] = ()
    rule: str = "schema"
    severity: Severity = Severity.ERROR

    def render(self) -> str:
        """``file:line:col: message``; a warning as ``file:line:col: warning: message``."""
        marker = "warning: " if self.severity is Severity.WARNING else ""
        return f"{self.file}:{self.line}:{self.col}: {marker}{self.message}"
