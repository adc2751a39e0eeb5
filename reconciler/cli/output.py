"""The standard output while a command runs: a write it refuses is told apart from any
other file's failure.

A command writes its output to ``sys.stdout`` (or its ``buffer``); ``main`` puts a
:class:`Guarded` stream there for the command's run. When the output refuses a write (a
full disk, ``> /dev/full``, a file size limit, a device error), :class:`OutputLost` says
so, and ``main`` reports an ordinary error naming the output; an OSError of any other file
stays what it was (a StateError where a store words it, else a bug). A closed pipe keeps
its own BrokenPipeError (``reconciler plan | head`` ends quietly).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any


class OutputLost(Exception):
    """The standard output refused what the command wrote (``cause``: the OSError)."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(cause.strerror or str(cause))
        self.cause = cause


class Guarded:
    """A stream whose writes and flushes raise OutputLost where they failed with an
    OSError (a closed pipe's BrokenPipeError apart); everything else is the stream's."""

    __slots__ = ("_stream",)

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: Any) -> int:
        """The stream's write."""
        written: int = _guarded(self._stream.write, data)
        return written

    def writelines(self, lines: Iterable[Any]) -> None:
        """The stream's writelines."""
        _guarded(self._stream.writelines, lines)

    def flush(self) -> None:
        """The stream's flush."""
        _guarded(self._stream.flush)

    @property
    def buffer(self) -> Guarded:
        """The stream's binary buffer, guarded the same way."""
        return Guarded(self._stream.buffer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _guarded(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``, an OSError of it (but a closed pipe's) raised as OutputLost."""
    try:
        return call(*args)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputLost(exc) from exc


def drop(stream: Any) -> None:
    """Send what ``stream`` still buffers nowhere: the process's exit flushes it and must
    not fail on the refused output again (a stream without a descriptor: nothing to do)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
