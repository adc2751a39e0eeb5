"""Test-only control endpoints under ``/_sandbox/``, a path the real APIs never use.

JSON in, JSON out, no authentication: tests and demos seed tenants, inject faults, read
counters and move a manual clock through these. ``build_federation`` wires a federation
sandbox to its control handler so the lead can mount both with ``server.running``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from reconciler.sandbox.federation import FederationSandbox
from reconciler.sandbox.federation_faults import Endpoint, EndpointFaults
from reconciler.sandbox.federation_model import FederatedUser, TenantSeed
from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.sandbox.wire import Request, Response, json_response

PREFIX = "/_sandbox/"
_TENANT = re.compile(r"/_sandbox/federation/tenants/([^/]+)")
_TENANT_USERS = re.compile(r"/_sandbox/federation/tenants/([^/]+)/users")


class ManualClock:
    """A clock that only moves when told to: inject it to run task lifecycles without sleeping."""

    def __init__(self, start: float) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """The current time in seconds."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (never back); the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds
            return self._now


class Resettable(Protocol):
    """Anything ``POST /_sandbox/reset`` should reset besides the federation sandbox."""

    def reset(self) -> None:
        """Forget all state."""
        ...


class BadControlRequest(ValueError):
    """A control request that cannot be carried out: answered with HTTP 400."""


class ControlHandler:
    """The ``/_sandbox/`` endpoints for a federation sandbox (``wire.Handler``)."""

    def __init__(
        self,
        federation: FederationSandbox,
        *,
        clock: ManualClock | None = None,
        also_reset: Sequence[Resettable] = (),
    ) -> None:
        self._federation = federation
        self._clock = clock
        self._also_reset = tuple(also_reset)

    def handle(self, request: Request) -> Response | None:
        """Answer the control routes; None for other paths (other sandboxes may own them)."""
        if not request.path.startswith(PREFIX):
            return None
        try:
            return self._route(request)
        except BadControlRequest as exc:
            return json_response(400, {"error": str(exc)})
        except KeyError as exc:
            return json_response(404, {"error": f"unknown tenant {exc.args[0]!r}"})

    def _route(self, request: Request) -> Response | None:
        method, path = request.method, request.path.rstrip("/")
        sandbox = self._federation
        if (method, path) == ("POST", "/_sandbox/reset"):
            sandbox.reset()
            for other in self._also_reset:
                other.reset()
            return json_response(200, {"reset": True})
        if (method, path) == ("POST", "/_sandbox/federation/tenants"):
            seed = _tenant_seed(_body(request))
            sandbox.seed_tenant(seed)
            return json_response(201, {"app_key": seed.app_key})
        if (method, path) == ("GET", "/_sandbox/federation/stats"):
            return json_response(200, sandbox.stats().to_json())
        if (method, path) == ("POST", "/_sandbox/federation/faults"):
            return json_response(200, self._set_faults(_body(request)))
        if (method, path) == ("POST", "/_sandbox/federation/settings"):
            try:
                settings = sandbox.update_settings(_body(request))
            except (TypeError, ValueError) as exc:
                raise BadControlRequest(str(exc)) from exc
            return json_response(200, _settings_json(settings))
        if (method, path) == ("GET", "/_sandbox/federation/settings"):
            return json_response(200, _settings_json(sandbox.settings))
        if (method, path) == ("POST", "/_sandbox/clock/advance"):
            return self._advance_clock(_body(request))
        if method == "GET" and (match := _TENANT_USERS.fullmatch(path)):
            users = sandbox.users(match[1])
            return json_response(200, {"users": {a: u.to_json() for a, u in users.items()}})
        if method == "PATCH" and (match := _TENANT.fullmatch(path)):
            body = _body(request)
            roles = sandbox.change_roles(
                match[1],
                add=_strings(body.get("add_role_ids", []), "add_role_ids"),
                remove=_strings(body.get("remove_role_ids", []), "remove_role_ids"),
            )
            return json_response(200, {"role_ids": list(roles)})
        if path.startswith("/_sandbox/federation") or path.startswith("/_sandbox/clock"):
            return json_response(404, {"error": f"no control route {method} {path}"})
        return None

    def _set_faults(self, body: Mapping[str, Any]) -> dict[str, Any]:
        endpoints: dict[Endpoint, EndpointFaults] = {}
        role_failures = body.get("role_service_failures")
        seed = body.get("seed")
        for key, value in body.items():
            if key in ("role_service_failures", "seed"):
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise BadControlRequest(f"{key} must be a non-negative integer")
                continue
            if key not in tuple(Endpoint) or not isinstance(value, dict):
                names = ", ".join(Endpoint)
                raise BadControlRequest(f"unknown fault target {key!r}: use {names}")
            try:
                endpoints[Endpoint(key)] = EndpointFaults.from_json(value)
            except (TypeError, ValueError) as exc:
                raise BadControlRequest(str(exc)) from exc
        return self._federation.configure_faults(
            endpoints, role_service_failures=role_failures, seed=seed
        )

    def _advance_clock(self, body: Mapping[str, Any]) -> Response:
        if self._clock is None:
            return json_response(409, {"error": "this sandbox runs on the real clock"})
        seconds = body.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise BadControlRequest("seconds must be a non-negative number")
        return json_response(200, {"now": self._clock.advance(float(seconds))})


def build_federation(
    settings: FederationSettings | None = None,
    clock: Callable[[], float] | None = None,
    *,
    also_reset: Sequence[Resettable] = (),
) -> tuple[FederationSandbox, ControlHandler]:
    """A federation sandbox and its control handler; a ``ManualClock`` is advanceable over HTTP."""
    federation = FederationSandbox(settings, clock or time.time)
    control = ControlHandler(
        federation,
        clock=clock if isinstance(clock, ManualClock) else None,
        also_reset=also_reset,
    )
    return federation, control


def _body(request: Request) -> dict[str, Any]:
    try:
        body = request.json() if request.body else {}
    except ValueError as exc:
        raise BadControlRequest("body is not JSON") from exc
    if not isinstance(body, dict):
        raise BadControlRequest("body must be a JSON object")
    return body


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadControlRequest(f"{name} must be an array of strings")
    return tuple(value)


def _tenant_seed(body: Mapping[str, Any]) -> TenantSeed:
    app_key, app_secret = body.get("app_key"), body.get("app_secret")
    space = body.get("tenant_space_id")
    if not isinstance(app_key, str) or not app_key or not isinstance(app_secret, str):
        raise BadControlRequest("app_key and app_secret are required strings")
    if space is not None and not isinstance(space, str):
        raise BadControlRequest("tenant_space_id must be a string")
    users = body.get("users") or {}
    if not isinstance(users, dict):
        raise BadControlRequest("users must be an object keyed by account")
    return TenantSeed(
        app_key=app_key,
        app_secret=app_secret,
        tenant_space_id=space,
        role_ids=_strings(body.get("role_ids", []), "role_ids"),
        users={account: _user(account, data) for account, data in users.items()},
    )


def _user(account: str, data: Any) -> FederatedUser:
    if not isinstance(data, dict):
        raise BadControlRequest(f"user {account!r} must be an object")
    name, email, enabled = data.get("name"), data.get("email"), data.get("enabled", True)
    if not isinstance(name, str) or not isinstance(email, str) or not isinstance(enabled, bool):
        raise BadControlRequest(f"user {account!r} needs string name and email, boolean enabled")
    return FederatedUser(
        name=name,
        email=email,
        role_ids=_strings(data.get("role_ids", []), f"{account}.role_ids"),
        enabled=enabled,
    )


def _settings_json(settings: FederationSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in FederationSettings.__dataclass_fields__}
