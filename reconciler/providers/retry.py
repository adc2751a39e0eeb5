"""The one retry engine: bounded attempts, exponential backoff with full jitter.

Pure: no httpx, no clock. Provider clients decide *what* is retryable (a predicate over
their own errors); this module only decides *how often* and *how long to wait*. ``sleep``
and the random source are passed in, so tests count attempts and read the delays
without waiting.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

from reconciler.values import frozen

T = TypeVar("T")


@frozen
class RetryPolicy:
    """How many attempts a retryable call gets and the ceiling of each wait between them.

    The wait before retry ``n`` (0-based) is drawn uniformly from
    ``[0, min(max_delay, base_delay * multiplier**n)]`` ("full jitter").
    """

    max_attempts: int = 5
    base_delay: float = 0.5  # seconds: ceiling of the first wait
    multiplier: float = 2.0
    max_delay: float = 30.0  # no single wait exceeds this, however many attempts

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, not {self.multiplier}")

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry number ``retry`` (0-based): exponential, capped."""
        return min(self.max_delay, self.base_delay * self.multiplier**retry)

    def backoffs(self) -> tuple[float, ...]:
        """The ceiling of each wait before jitter, one per retry the policy allows."""
        return tuple(self.ceiling(retry) for retry in range(self.max_attempts - 1))

    def delay(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number ``retry`` (0-based), drawn with full jitter."""
        # Full jitter (uniform over [0, ceiling]) spreads clients that failed together,
        # so they do not come back in lockstep and overload the server again.
        return rng.uniform(0.0, self.ceiling(retry))


def with_retries(
    operation: Callable[[], T],
    *,
    policy: RetryPolicy,
    is_retryable: Callable[[Exception], bool],
    sleep: Callable[[float], None],
    rng: random.Random,
) -> T:
    """Run ``operation``, retrying failures ``is_retryable`` accepts, within ``policy``."""
    attempt = 0
    while True:
        try:
            return operation()
        except Exception as exc:
            if attempt + 1 >= policy.max_attempts or not is_retryable(exc):
                raise
            sleep(policy.delay(attempt, rng))
            attempt += 1
