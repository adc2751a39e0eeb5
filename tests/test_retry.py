"""The one retry engine (providers.retry): attempts, delay ceilings, jitter, the predicate."""

from __future__ import annotations

import random
from typing import Any

import pytest

from reconciler.providers.cloudidentity.client import DEFAULT_RETRY as CLOUDIDENTITY_RETRY
from reconciler.providers.federation.client import DEFAULT_RETRY as FEDERATION_RETRY
from reconciler.providers.retry import RetryPolicy, with_retries


class Fraction(random.Random):
    """A random source that always draws ``value``: delays become exact fractions of a ceiling."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        """The fixed draw."""
        return self.value


class Flaky:
    """An operation that raises each of ``failures`` in turn, then returns "done"."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        """One attempt."""
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def run(operation: Flaky, policy: RetryPolicy, rng: random.Random) -> tuple[str, list[float]]:
    """Run ``operation`` under ``policy``, retrying OSError; the result and the waits."""
    sleeps: list[float] = []
    result = with_retries(
        operation,
        policy=policy,
        is_retryable=lambda exc: isinstance(exc, OSError),
        sleep=sleeps.append,
        rng=rng,
    )
    return result, sleeps


@pytest.mark.parametrize(
    ("policy", "ceilings"),
    [
        (RetryPolicy(max_attempts=1), ()),
        (RetryPolicy(max_attempts=4, base_delay=1.0, multiplier=2.0), (1.0, 2.0, 4.0)),
        (
            RetryPolicy(max_attempts=7, base_delay=1.0, multiplier=2.0, max_delay=10.0),
            (1.0, 2.0, 4.0, 8.0, 10.0, 10.0),
        ),
        (RetryPolicy(max_attempts=4, base_delay=0.5, multiplier=3.0), (0.5, 1.5, 4.5)),
        (RetryPolicy(max_attempts=3, base_delay=2.0, multiplier=1.0), (2.0, 2.0)),
        (FEDERATION_RETRY, (0.5, 1.0, 2.0, 4.0)),
        (CLOUDIDENTITY_RETRY, (0.5, 1.0, 2.0, 4.0, 8.0)),
    ],
    ids=["one-attempt", "doubling", "capped", "tripling", "constant", "federation", "cloudid"],
)
def test_backoffs_are_exponential_capped_ceilings_one_per_retry(
    policy: RetryPolicy, ceilings: tuple[float, ...]
) -> None:
    """Each ceiling is base * multiplier**n up to max_delay; there is one per retry."""
    assert policy.backoffs() == ceilings


def test_the_clients_defaults_are_todays() -> None:
    """Federation: 5 attempts, 0.5 s x2 capped at 30; CloudIdentity: 6, 0.5 s x2 capped at 20."""
    federation = (5, 0.5, 2.0, 30.0)
    cloudidentity = (6, 0.5, 2.0, 20.0)
    for policy, expected in ((FEDERATION_RETRY, federation), (CLOUDIDENTITY_RETRY, cloudidentity)):
        fields = (policy.max_attempts, policy.base_delay, policy.multiplier, policy.max_delay)
        assert fields == expected
    assert CLOUDIDENTITY_RETRY.ceiling(9) == 20.0


@pytest.mark.parametrize(
    ("failures", "attempts", "calls", "waits"),
    [
        (0, 5, 1, 0),
        (1, 5, 2, 1),
        (4, 5, 5, 4),
        (2, 3, 3, 2),
    ],
)
def test_retryable_failures_are_retried_within_the_attempts(
    failures: int, attempts: int, calls: int, waits: int
) -> None:
    """Up to max_attempts calls, one wait between each two; the last attempt's result wins."""
    operation = Flaky(*[OSError("transient")] * failures)
    policy = RetryPolicy(max_attempts=attempts, base_delay=1.0, multiplier=2.0)
    result, sleeps = run(operation, policy, Fraction(1.0))
    assert result == "done"
    assert operation.calls == calls
    assert sleeps == list(policy.backoffs()[:waits])


@pytest.mark.parametrize("attempts", [1, 2, 6])
def test_the_last_failure_is_raised_after_max_attempts(attempts: int) -> None:
    """When every attempt fails, exactly max_attempts calls are made and the last error raised."""
    errors = [OSError(f"failure {n}") for n in range(10)]
    operation = Flaky(*errors)
    with pytest.raises(OSError, match="failure") as caught:
        run(operation, RetryPolicy(max_attempts=attempts), Fraction(0.5))
    assert caught.value is errors[attempts - 1]
    assert operation.calls == attempts


@pytest.mark.parametrize(
    "failure", [KeyError("not retryable"), ValueError("neither")], ids=["KeyError", "ValueError"]
)
def test_the_predicate_is_respected(failure: Exception) -> None:
    """An error the predicate refuses propagates at once, after retryable ones were retried."""
    operation = Flaky(OSError("transient"), failure, OSError("never reached"))
    sleeps: list[float] = []
    with pytest.raises(type(failure)):
        with_retries(
            operation,
            policy=RetryPolicy(max_attempts=5),
            is_retryable=lambda exc: isinstance(exc, OSError),
            sleep=sleeps.append,
            rng=Fraction(1.0),
        )
    assert operation.calls == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    ("fraction", "retry", "delay"),
    [(0.25, 3, 2.0), (0.5, 9, 5.0), (0.0, 0, 0.0), (1.0, 1, 2.0)],
)
def test_the_delay_is_the_draw_times_the_ceiling(fraction: float, retry: int, delay: float) -> None:
    """Full jitter: the wait is the random draw scaled to [0, ceiling], even past the cap."""
    policy = RetryPolicy(max_attempts=3, base_delay=1.0, multiplier=2.0, max_delay=10.0)
    assert policy.delay(retry, Fraction(fraction)) == delay


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_full_jitter_spreads_over_the_whole_range(seed: int) -> None:
    """Seeded draws for one retry stay within [0, ceiling] and cover its bottom and top."""
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, multiplier=2.0)
    rng = random.Random(seed)
    draws = [policy.delay(3, rng) for _ in range(200)]
    assert all(0.0 <= d <= 8.0 for d in draws)
    assert min(draws) < 1.0
    assert max(draws) > 7.0


def test_waits_of_a_run_are_jittered_within_their_ceilings() -> None:
    """With a seeded Random every wait lies in [0, its ceiling] and they are not all the top."""
    policy = RetryPolicy(max_attempts=8, base_delay=1.0, multiplier=2.0, max_delay=30.0)
    _, sleeps = run(Flaky(*[OSError()] * 7), policy, random.Random(1))
    assert len(sleeps) == 7
    pairs = list(zip(sleeps, policy.backoffs(), strict=True))
    assert all(0.0 <= wait <= ceiling for wait, ceiling in pairs)
    assert any(wait < ceiling / 2 for wait, ceiling in pairs)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"base_delay": -1.0}, {"max_delay": -1.0}, {"multiplier": 0.5}],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, Any]) -> None:
    """A policy that cannot mean anything raises at construction."""
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**kwargs)
