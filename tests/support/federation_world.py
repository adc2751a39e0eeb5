"""Shared helpers for the federation sandbox tests: a seeded sandbox on a manual clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from reconciler.sandbox.control import ControlHandler, ManualClock, build_federation
from reconciler.sandbox.federation import (
    CREATE_TASK_PATH,
    QUERY_TASK_PATH,
    TOKEN_PATH,
    FederationSandbox,
)
from reconciler.sandbox.federation_model import FederatedUser, TenantSeed
from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.sandbox.wire import Request, Response

APP_KEY, APP_SECRET = "app-key-1", "app-secret-1"
ROLES = tuple(str(1672380646005741600 + n) for n in range(12))
ROLE_A, ROLE_B = ROLES[0], ROLES[1]
START = 1_700_000_000.0
DROP = object()  # marks a field to leave out of an entry


def request(method: str, path: str, body: Any = None, **headers: str) -> Request:
    """A wire request as the server would build it (header names lower-cased)."""
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    return Request(
        method=method,
        path=path,
        query={},
        raw_query="",
        headers={name.lower().replace("_", "-"): value for name, value in headers.items()},
        body=raw,
        host="sandbox.test",
    )


def entry(action: Any = "CREATE", account: Any = "alice", **fields: Any) -> dict[str, Any]:
    """A federationUserList item; ``DROP`` leaves a field out."""
    item: dict[str, Any] = {
        "action": action,
        "userAccount": account,
        "userName": "Alice",
        "email": "alice@example.com",
        "roleIds": [ROLE_A],
    }
    item.update(fields)
    return {key: value for key, value in item.items() if value is not DROP}


class StutteringClock(ManualClock):
    """A manual clock that can move forward after each read: time passing while the
    sandbox handles a request (a server thread preempted mid-request on a loaded machine)."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self._step = 0.0

    def __call__(self) -> float:
        """The current time; then, while :meth:`passing`, ``step`` seconds later."""
        now = super().__call__()
        if self._step:
            self.advance(self._step)
        return now

    @contextmanager
    def passing(self, step: float) -> Iterator[None]:
        """For the block, every read of the clock is ``step`` seconds after the one before."""
        self._step = step
        try:
            yield
        finally:
            self._step = 0.0


@dataclass
class World:
    """A seeded sandbox on a manual clock with a valid token."""

    sandbox: FederationSandbox
    control: ControlHandler
    clock: ManualClock
    token: str

    def headers(self) -> dict[str, str]:
        """The auth headers of a well-behaved client."""
        return {"X_APP_Key": APP_KEY, "Authorization": f"Bearer {self.token}"}

    def post(self, path: str, body: Any, **headers: str) -> Response:
        """POST to the API with the client's auth headers (overridable)."""
        response = self.sandbox.handle(request("POST", path, body, **(self.headers() | headers)))
        assert response is not None
        return response

    def create(self, *entries: dict[str, Any]) -> dict[str, Any]:
        """createTask's JSON answer."""
        answer: dict[str, Any] = json.loads(
            self.post(CREATE_TASK_PATH, {"federationUserList": list(entries)}).body
        )
        return answer

    def query(self, task_id: str) -> dict[str, Any]:
        """queryTask's JSON answer."""
        answer: dict[str, Any] = json.loads(self.post(QUERY_TASK_PATH, {"taskId": task_id}).body)
        return answer

    def finish(self) -> None:
        """Move the clock past one task's whole lifecycle."""
        settings = self.sandbox.settings
        self.clock.advance(settings.todo_seconds + settings.doing_seconds)


def make_world(
    settings: FederationSettings | None = None,
    *,
    space: str | None = None,
    users: dict[str, FederatedUser] | None = None,
    clock: ManualClock | None = None,
) -> World:
    """Build a sandbox with one tenant (on ``clock``, a new one at START by default) and
    fetch a token."""
    clock = clock or ManualClock(START)
    sandbox, control = build_federation(settings, clock)
    sandbox.seed_tenant(
        TenantSeed(
            app_key=APP_KEY,
            app_secret=APP_SECRET,
            tenant_space_id=space,
            role_ids=ROLES,
            users=users or {},
        )
    )
    return World(sandbox, control, clock, issue_token(sandbox, APP_KEY, APP_SECRET))


def issue_token(sandbox: FederationSandbox, app_key: str, app_secret: str) -> str:
    """An access token for the tenant."""
    answer = sandbox.handle(
        request("POST", TOKEN_PATH, {"app_key": app_key, "app_secret": app_secret})
    )
    assert answer is not None
    token: str = json.loads(answer.body)["AccessToken"]
    return token


def control(world: World, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Call a control endpoint; status and JSON body."""
    response = world.control.handle(request(method, path, body))
    assert response is not None
    return response.status, json.loads(response.body)
