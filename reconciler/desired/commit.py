"""The git commit that last touched a desired-state entry: what provenance finds.

Apart from ``model`` (a ``Source`` names one): only a plan or a report looks commits up,
and ``validate`` creates no class it does not use (each frozen class costs start-up).
"""

from __future__ import annotations

from reconciler.errors import printable
from reconciler.values import frozen


@frozen
class Commit:
    """The git commit that last touched an entry (``hash`` empty: uncommitted lines)."""

    hash: str = ""  # short hash
    author: str = ""
    date: str = ""  # author date, ISO 8601 with the author's UTC offset

    @property
    def uncommitted(self) -> bool:
        """Whether the entry has lines no commit holds yet."""
        return not self.hash

    def render(self) -> str:
        """``1a2b3c4 Ada Lovelace 2024-03-01`` or ``uncommitted``."""
        if self.uncommitted:
            return "uncommitted"
        return printable(f"{self.hash} {self.author} {self.date[:10]}")
