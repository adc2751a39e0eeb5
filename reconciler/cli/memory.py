"""The cyclic garbage collector in the long commands (apply, refresh).

Short commands run with the collector off (``main``). apply and refresh run for as long
as their tasks take, so they keep it, but not over what they load: a 100k-account
desired state, recorded state and plan are built with it off, then frozen
(``gc.freeze``), so the collections the run's own garbage triggers never rescan them.

What the run builds lives on too (the state it records grows by every account applied),
and right after each full collection nothing younger than the survivors is left: so
every full collection's survivors are frozen as well. Each full collection then looks
only at what came after the one before, and a long apply's collections cost what it
allocates, not that many times the size of its state. Garbage is still collected:
only objects that survived a full collection are frozen. Everything is thawed when the
command ends, for callers that run commands in-process (tests). A console run leaves the
collector off then: the process ends right after (``exiting``), and a collection there,
triggered by the restored thresholds, cost 35 ms between the report and the exit of a
50,000-user apply.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import Any

from reconciler.cli import exiting

# Allocations between two young collections (CPython's default is 700): what a run
# allocates is mostly short-lived (JSON, HTTP), freed by reference counting long before.
_YOUNG = 20_000


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info.get("generation") == 2:  # the oldest generation: a full one
        gc.freeze()


@contextlib.contextmanager
def long_run() -> Iterator[Callable[[], None]]:
    """The collector off until the yielded ``settle()``: then freeze what is loaded and on."""
    enabled, thresholds = gc.isenabled(), gc.get_threshold()
    gc.disable()
    settled = False

    def settle() -> None:
        nonlocal settled
        if not settled:
            settled = True
            gc.freeze()
            gc.callbacks.append(_freeze_survivors)
            gc.set_threshold(_YOUNG, *thresholds[1:])
            gc.enable()

    try:
        yield settle
    finally:
        gc.disable()  # no collection while the thresholds and the generations are restored
        if settled:
            gc.callbacks.remove(_freeze_survivors)
            gc.set_threshold(*thresholds)
            gc.unfreeze()
        if enabled and not exiting.leaving():
            gc.enable()
