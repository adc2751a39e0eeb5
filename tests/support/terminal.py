"""Standard input that is a terminal, for the commands that ask before they act."""

from __future__ import annotations

import io
from collections.abc import Callable


class Terminal(io.StringIO):
    """A terminal with ``answer`` typed; ``on_read`` runs as the answer is read."""

    def __init__(self, answer: str, on_read: Callable[[], None] | None = None) -> None:
        super().__init__(answer)
        self.on_read = on_read
        self.asked = False

    def isatty(self) -> bool:
        """Yes."""
        return True

    def readline(self, size: int | None = -1) -> str:
        """The answer, after whatever happens while the person reads the question."""
        self.asked = True
        if self.on_read is not None:
            self.on_read()
        return super().readline(size)
