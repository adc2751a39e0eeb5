"""Helpers for the apply tests: desired-state folders, the sandbox in-process or on loopback.

Not a conftest: the apply, CLI and crash-recovery tests import what they need from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from reconciler.sandbox import app
from reconciler.sandbox.federation_model import TenantSeed
from reconciler.sandbox.server import RunningSandbox
from reconciler.sandbox.wire import Request
from reconciler.stores import model as state_codec
from reconciler.stores.local import LocalStore
from reconciler.values import frozen

T = TypeVar("T")

APP_KEY, APP_SECRET = app.SANDBOX_APP_KEY, app.SANDBOX_APP_SECRET
ROLE_AGENT = "1672380646005741601"
ROLE_SUPERVISOR = "1672380646005741602"
ROLE_REPORTING = "1672380646005741603"
ROLES = {"agent": ROLE_AGENT, "supervisor": ROLE_SUPERVISOR, "reporting": ROLE_REPORTING}
ENV_URL = "RECONCILER_FEDERATION_URL"
ENV_KEY = "RECONCILER_FEDERATION_APP_KEY"
ENV_SECRET = "RECONCILER_FEDERATION_APP_SECRET"


@frozen
class UserSpec:
    """One user of a generated desired state."""

    account: str
    name: str
    email: str
    roles: tuple[str, ...] = ("agent",)
    enabled: bool = True


def users(
    count: int, *, prefix: str = "user", roles: tuple[str, ...] = ("agent",)
) -> list[UserSpec]:
    """``count`` plain users named ``{prefix}00000`` upwards."""
    return [
        UserSpec(
            account=f"{prefix}{i:05d}",
            name=f"User {i}",
            email=f"{prefix}{i:05d}@example.com",
            roles=roles,
        )
        for i in range(count)
    ]


def write_desired(
    directory: Path,
    specs: Iterable[UserSpec],
    *,
    roles: Mapping[str, str] = ROLES,
    policy: str = "",
) -> Path:
    """Write ``roles.yaml`` and ``users.yaml`` into ``directory`` (replacing them)."""
    directory.mkdir(parents=True, exist_ok=True)
    role_lines = ["version: 1", "roles:"]
    for name, role_id in roles.items():
        role_lines += [f"  {name}:", f'    id: "{role_id}"']
    (directory / "roles.yaml").write_text("\n".join(role_lines) + "\n", encoding="utf-8")
    lines = ["version: 1", "users:"]
    for spec in specs:
        lines += [
            f"  - account: {spec.account}",
            f"    name: {spec.name}",
            f"    email: {spec.email}",
            f"    roles: [{', '.join(spec.roles)}]",
        ]
        if not spec.enabled:
            lines.append("    enabled: false")
    if len(lines) == 2:
        lines[1] = "users: []"
    (directory / "users.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if policy:
        (directory / "policy.yaml").write_text(policy, encoding="utf-8")
    return directory


def state_document(directory: Path) -> dict[str, Any] | None:
    """The default local state beside ``directory`` as its document (None when absent).

    Read through the store (snapshot and journal), as ``state pull`` prints it.
    """
    state = LocalStore(directory / ".reconciler" / "state.json").read()
    return None if state is None else state_codec.to_json(state)


def tenant_view(box: app.Sandbox) -> dict[str, dict[str, Any]]:
    """The default tenant's users as account → comparable attributes."""
    return {
        account: {
            "name": user.name,
            "email": user.email,
            "role_ids": sorted(user.role_ids),
            "enabled": user.enabled,
        }
        for account, user in box.federation.users(APP_KEY).items()
    }


def state_view(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The recorded accounts in the same shape as :func:`tenant_view`."""
    return {
        account: {
            "name": record["name"],
            "email": record["email"],
            "role_ids": sorted(record["role_ids"]),
            "enabled": record["enabled"],
        }
        for account, record in document["accounts"].items()
    }


def desired_view(specs: Iterable[UserSpec], roles: Mapping[str, str] = ROLES) -> dict[str, Any]:
    """What the tenant should hold for ``specs`` (enabled users only)."""
    return {
        spec.account: {
            "name": spec.name,
            "email": spec.email,
            "role_ids": sorted(roles[r] for r in spec.roles),
            "enabled": True,
        }
        for spec in specs
        if spec.enabled
    }


def wait_for(predicate: Callable[[], T], *, timeout: float = 10.0, every: float = 0.005) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


@contextmanager
def loopback(
    settings: Any = None,
    *,
    role_ids: Iterable[str] = ROLES.values(),
    clock: Callable[[], float] | None = None,
) -> Iterator[tuple[app.Sandbox, RunningSandbox]]:
    """The whole sandbox served on 127.0.0.1 for the block (tasks timed by ``clock``)."""
    box = app.build(settings, role_ids=role_ids, clock=clock)
    server = app.serve(box, "127.0.0.1", 0).start()
    try:
        yield box, server
    finally:
        server.stop()


def reset(box: app.Sandbox) -> None:
    """Forget everything the sandbox holds and seed the default tenant again."""
    box.federation.reset()
    box.federation.seed_tenant(
        TenantSeed(app_key=APP_KEY, app_secret=APP_SECRET, role_ids=tuple(ROLES.values()))
    )


def env_for(server: RunningSandbox) -> dict[str, str]:
    """The federation environment variables that point the CLI at ``server``."""
    return {ENV_URL: server.url, ENV_KEY: APP_KEY, ENV_SECRET: APP_SECRET}


def in_process_transport(box: app.Sandbox) -> httpx.MockTransport:
    """An httpx transport that hands requests to the sandbox handlers without a socket.

    A response the sandbox would drop after processing becomes ``httpx.ReadError``, the
    error a client sees when the server closes the connection before answering.
    """

    def handle(request: httpx.Request) -> httpx.Response:
        wire = Request(
            method=request.method,
            path=request.url.path,
            query={},
            raw_query=request.url.query.decode(),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=request.read(),
            host=request.headers.get("host", ""),
        )
        for handler in box.handlers():
            response = handler.handle(wire)
            if response is not None:
                break
        else:
            return httpx.Response(404, json={"error": "no route"})
        if response.drop_connection:
            raise httpx.ReadError("connection closed by the server", request=request)
        return httpx.Response(
            response.status, content=response.body, headers=list(response.headers)
        )

    return httpx.MockTransport(handle)


def point_cli_at(box: app.Sandbox, running: RunningSandbox, monkeypatch: Any) -> None:
    """Reset the sandbox to a fresh default tenant and point this process's CLI at it."""
    reset(box)
    for name, value in env_for(running).items():
        monkeypatch.setenv(name, value)
    for name in (
        "RECONCILER_STATE",
        "RECONCILER_AT",
        "VOLCENGINE_ACCESS_KEY",
        "VOLCENGINE_SECRET_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
