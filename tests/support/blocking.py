"""Guards for tests of paths that must never block (a FIFO where a file is expected)."""

from __future__ import annotations

import threading
from collections.abc import Callable


def returns_within(call: Callable[[], object], seconds: float = 20.0) -> None:
    """Fail (instead of hanging the suite) if ``call`` blocks, e.g. opening a FIFO.

    Not a timing assert: a call that does not block returns at once; the bound only turns a
    hang into a failure.
    """
    failures: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test thread
            failures.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked: a FIFO was opened"
    if failures:
        raise failures[0]
