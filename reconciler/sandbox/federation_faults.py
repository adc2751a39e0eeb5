"""Deterministic fault injection for the federation sandbox's three endpoints.

Rates draw from a seeded ``random.Random``, so a seed and a call sequence give the same
faults every run; the count-based one-shots (``fail_next``, ``drop_after_next``,
``role_service_failures``) are what tests use to hit one exact call.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reconciler.sandbox.wire import Response, json_response

GATEWAY_STATUSES = (502, 503, 504)


class Endpoint(StrEnum):
    """The federation API's endpoints, as named in stats and fault settings."""

    TOKEN = "token"
    CREATE_TASK = "createTask"
    QUERY_TASK = "queryTask"


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointFaults:
    """How one endpoint misbehaves; counts are used up call by call."""

    error_rate: float = 0.0  # answered 502/503/504 without processing
    rate_429: float = 0.0  # answered 429 without processing
    latency_seconds: float = 0.0
    fail_next: int = 0  # the next N calls get ``fail_status`` without processing
    fail_status: int = 503
    drop_after_next: int = 0  # the next N calls are processed, then the connection drops

    def __post_init__(self) -> None:
        if not (0 <= self.error_rate <= 1 and 0 <= self.rate_429 <= 1):
            raise ValueError("rates must lie between 0 and 1")
        if self.error_rate + self.rate_429 > 1:
            raise ValueError("error_rate + rate_429 must not exceed 1")
        if self.latency_seconds < 0 or self.fail_next < 0 or self.drop_after_next < 0:
            raise ValueError("latency and counts must not be negative")
        if not 400 <= self.fail_status <= 599:
            raise ValueError("fail_status must be an HTTP error status")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EndpointFaults:
        """Build from a control-endpoint JSON object; ValueError names a bad key or value."""
        known = {field.name: field.type for field in dataclasses.fields(cls)}
        for key, value in data.items():
            if key not in known:
                raise ValueError(f"unknown fault setting {key!r}")
            # bool is an int: refuse it so `true` is not read as a count of one
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"fault setting {key!r} must be a number")
            if known[key] == "int" and not isinstance(value, int):
                raise ValueError(f"fault setting {key!r} must be an integer")
        return cls(**data)


class FaultInjector:
    """The live fault configuration; the caller holds the sandbox lock around every call."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self._faults: dict[Endpoint, EndpointFaults] = {}
        self.role_service_failures = 0

    def configure(self, endpoint: Endpoint, faults: EndpointFaults) -> None:
        """Replace the faults of ``endpoint``."""
        self._faults[endpoint] = faults

    def reseed(self, seed: int) -> None:
        """Restart the random draws from ``seed``."""
        self._random = random.Random(seed)

    def intercept(self, endpoint: Endpoint) -> Response | None:
        """The answer for a call that must not be processed, or None to process it."""
        faults = self._faults.get(endpoint, EndpointFaults())
        if faults.fail_next:
            self._faults[endpoint] = dataclasses.replace(faults, fail_next=faults.fail_next - 1)
            return _failure(faults.fail_status, faults.latency_seconds)
        if faults.rate_429 or faults.error_rate:
            draw = self._random.random()
            if draw < faults.rate_429:
                return _failure(429, faults.latency_seconds)
            if draw < faults.rate_429 + faults.error_rate:
                return _failure(self._random.choice(GATEWAY_STATUSES), faults.latency_seconds)
        return None

    def finish(self, endpoint: Endpoint, response: Response) -> Response:
        """``response`` of a processed call, with latency added or the connection dropped."""
        faults = self._faults.get(endpoint, EndpointFaults())
        drop = faults.drop_after_next > 0
        if drop:
            self._faults[endpoint] = dataclasses.replace(
                faults, drop_after_next=faults.drop_after_next - 1
            )
        if not drop and not faults.latency_seconds:
            return response
        return dataclasses.replace(
            response, drop_connection=drop, delay_seconds=faults.latency_seconds
        )

    def take_role_service_failure(self) -> bool:
        """Use up one injected role-service failure, if any is left."""
        if self.role_service_failures <= 0:
            return False
        self.role_service_failures -= 1
        return True

    def snapshot(self) -> dict[str, Any]:
        """The current configuration as JSON (counts show what is left)."""
        return {
            "role_service_failures": self.role_service_failures,
            **{
                endpoint.value: dataclasses.asdict(faults)
                for endpoint, faults in self._faults.items()
            },
        }


def _failure(status: int, latency: float) -> Response:
    if status in GATEWAY_STATUSES:
        # gateways answer in plain text, not in the API's JSON: clients must cope
        return Response(
            status=status,
            body=b"upstream unavailable",
            headers=(("Content-Type", "text/plain"),),
            delay_seconds=latency,
        )
    response = json_response(status, {"error_code": str(status), "error_msg": "injected fault"})
    return dataclasses.replace(response, delay_seconds=latency)
