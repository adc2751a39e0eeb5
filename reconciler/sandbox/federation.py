"""A faithful fake of the federation-user API: tokens, createTask, queryTask.

One lock guards the whole model (the server is threaded). Task timing follows the
injected clock: TODO for ``todo_seconds``, DOING for ``doing_seconds``, then it runs and
is DONE: its effects and failures exist before any answer says DONE, in creation order
per tenant.
Before any request is handled every due task is brought to DONE, so effects land in
order even when nobody polls. Rules are in ``federation_rules``, tenants and tasks in
``federation_model``, faults in ``federation_faults``, the test-only control endpoints
in ``control``.
"""

from __future__ import annotations

import collections
import dataclasses
import hmac
import random
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.sandbox import federation_rules as rules
from reconciler.sandbox.federation_faults import Endpoint, EndpointFaults, FaultInjector
from reconciler.sandbox.federation_model import FederatedUser, Tenant, TenantSeed
from reconciler.sandbox.federation_rules import Code, FederationSettings
from reconciler.sandbox.wire import Request, Response, json_response

TOKEN_PATH = "/apigovernance/api/oauth/tokenByAkSk"
CREATE_TASK_PATH = "/apiaccess/rest/cc-management/v1/federationUserMgmt/createTask"
QUERY_TASK_PATH = "/apiaccess/rest/cc-management/v1/federationUserMgmt/queryTask"
ROUTES: Mapping[str, Endpoint] = {
    TOKEN_PATH: Endpoint.TOKEN,
    CREATE_TASK_PATH: Endpoint.CREATE_TASK,
    QUERY_TASK_PATH: Endpoint.QUERY_TASK,
}
FIRST_TASK_ID = 1659444411225432066  # the documented example: ids stay 19 digits for ages
minimum_apply_seconds = rules.minimum_apply_seconds  # re-exported for the benchmark


@dataclass(frozen=True, slots=True, kw_only=True)
class FederationStats:
    """Counters the tests and the benchmark read back."""

    calls: Mapping[str, int]  # per endpoint, including rejected and fault-injected calls
    create_task_accepted: int
    query_task_calls: int
    rejected_codes: Mapping[str, int]
    created_per_account: Mapping[str, int]  # successfully executed CREATEs, all tenants
    max_pending_observed: int  # most TODO+DOING tasks one tenant had at once

    def to_json(self) -> dict[str, Any]:
        """The stats as JSON."""
        return {
            key: dict(value) if isinstance(value, Mapping) else value
            for key, value in dataclasses.asdict(self).items()
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class _Token:
    app_key: str
    expires_at: float


class FederationSandbox:
    """The federation-user API handler (``wire.Handler``) and its model."""

    def __init__(
        self, settings: FederationSettings | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        # wall-clock seconds by default, because CreateTime in the token reply is unix time
        self._initial = settings or FederationSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self._settings = self._initial
        self._tenants: dict[str, Tenant] = {}
        self._tokens: dict[str, _Token] = {}
        self._faults = FaultInjector(self._settings.seed)
        self._ids = random.Random(self._settings.seed)
        self._last_task_id = FIRST_TASK_ID
        self._calls: collections.Counter[str] = collections.Counter()
        self._rejected: collections.Counter[str] = collections.Counter()
        self._created: collections.Counter[str] = collections.Counter()
        self._accepted = 0
        self._max_pending = 0

    # -- the control surface (used by control.py and by tests directly) --

    @property
    def settings(self) -> FederationSettings:
        """The settings in force."""
        return self._settings

    def reset(self) -> None:
        """Forget tenants, tokens, tasks, counters and faults; restore the initial settings."""
        with self._lock:
            self._clear()

    def update_settings(self, changes: Mapping[str, Any]) -> FederationSettings:
        """Change settings at run time (ValueError if bad); accepted tasks keep their timing."""
        with self._lock:
            self._advance()  # tasks already due run under the settings they were due under
            self._settings = rules.updated_settings(self._settings, changes)
            return self._settings

    def seed_tenant(self, seed: TenantSeed) -> None:
        """Create or replace a tenant with its roles and users."""
        with self._lock:
            self._advance()
            self._tenants[seed.app_key] = Tenant.from_seed(seed)

    def change_roles(
        self, app_key: str, *, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        """Add and remove roles of a tenant's catalogue (KeyError if unknown); the new catalogue."""
        with self._lock:
            self._advance()
            tenant = self._tenants[app_key]
            tenant.roles.update(add)
            tenant.roles.difference_update(remove)
            return tuple(sorted(tenant.roles))

    def users(self, app_key: str) -> Mapping[str, FederatedUser]:
        """A tenant's users after every due task ran (KeyError if the tenant is unknown)."""
        with self._lock:
            self._advance()
            return dict(self._tenants[app_key].users)

    def stats(self) -> FederationStats:
        """The counters so far."""
        with self._lock:
            self._advance()
            return FederationStats(
                calls={endpoint.value: self._calls[endpoint.value] for endpoint in Endpoint},
                create_task_accepted=self._accepted,
                query_task_calls=self._calls[Endpoint.QUERY_TASK.value],
                rejected_codes=dict(self._rejected),
                created_per_account=dict(self._created),
                max_pending_observed=self._max_pending,
            )

    def configure_faults(
        self,
        endpoints: Mapping[Endpoint, EndpointFaults] | None = None,
        *,
        role_service_failures: int | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Replace the faults of the named endpoints; the whole configuration afterwards."""
        with self._lock:
            for endpoint, faults in (endpoints or {}).items():
                self._faults.configure(endpoint, faults)
            if role_service_failures is not None:
                self._faults.role_service_failures = role_service_failures
            if seed is not None:
                self._faults.reseed(seed)
            return self._faults.snapshot()

    # -- the API --

    def handle(self, request: Request) -> Response | None:
        """Answer the federation API's three paths; None for anything else."""
        endpoint = ROUTES.get(request.path)
        if endpoint is None:
            return None
        with self._lock:
            self._advance()
            self._calls[endpoint.value] += 1
            injected = self._faults.intercept(endpoint)
            if injected is not None:
                return injected
            if request.method != "POST":
                response = json_response(405, {"error": "use POST"})
            else:
                response = self._process(endpoint, request)
            return self._faults.finish(endpoint, response)

    def _process(self, endpoint: Endpoint, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
            return json_response(400, {"error": "body is not JSON"})
        if endpoint is Endpoint.TOKEN:
            return self._issue_token(request, body)
        tenant = self._authenticate(request)
        if isinstance(tenant, Response):
            return tenant
        if endpoint is Endpoint.CREATE_TASK:
            return self._create_task(tenant, body)
        return self._query_task(tenant, body)

    def _issue_token(self, request: Request, body: Any) -> Response:
        if not (
            isinstance(body, dict)
            and isinstance(body.get("app_key"), str)
            and isinstance(body.get("app_secret"), str)
        ):
            return json_response(400, {"error": "app_key and app_secret are required strings"})
        tenant = self._tenants.get(body["app_key"])
        secret = tenant.seed.app_secret if tenant else ""
        if tenant is None or not hmac.compare_digest(secret.encode(), body["app_secret"].encode()):
            return _unauthorised("invalid app_key or app_secret")
        requested = request.headers.get("x-token-expire")
        if requested is None:
            ttl = self._settings.default_token_ttl
        elif requested.strip().isascii() and requested.strip().isdigit() and int(requested) > 0:
            ttl = min(int(requested), self._settings.max_token_ttl)
        else:
            return json_response(400, {"error": "X-Token-Expire must be a positive integer"})
        now = self._clock()
        token = secrets.token_urlsafe(32)
        self._tokens = {k: v for k, v in self._tokens.items() if v.expires_at > now}
        self._tokens[token] = _Token(app_key=tenant.seed.app_key, expires_at=now + ttl)
        return json_response(
            200,
            {
                "AccessToken": token,
                "ApplyType": "Bearer",
                "CreateTime": str(int(now)),
                "Expires": str(ttl),
                "Scope": "default",
                "AppKey": tenant.seed.app_key,
                "UserID": "Anonymous",
            },
        )

    def _authenticate(self, request: Request) -> Tenant | Response:
        authorization = request.headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        token = self._tokens.get(value) if scheme == "Bearer" else None
        if token is None or token.expires_at <= self._clock():
            return _unauthorised("missing, unknown or expired access token")
        if request.headers.get("x-app-key") != token.app_key:
            return _unauthorised("X-APP-Key does not match the access token")
        tenant = self._tenants.get(token.app_key)
        if tenant is None:  # the tenant was replaced or reset away under the token
            return _unauthorised("unknown tenant")
        space = tenant.seed.tenant_space_id
        if space is not None and request.headers.get("x-tenantspaceid") != space:
            return _unauthorised("X-TenantSpaceID missing or wrong")
        return tenant

    def _create_task(self, tenant: Tenant, body: Any) -> Response:
        outcome = rules.validate_batch(body, self._settings)
        if isinstance(outcome, rules.Malformed):
            return json_response(400, {"error": outcome.reason})
        if isinstance(outcome, rules.Rejection):
            return self._reject(outcome.code, outcome.message)
        # the service fetches the tenant's roles for every valid batch; that call can fail
        if self._faults.take_role_service_failure():
            return self._reject(Code.ROLE_SERVICE_FAILED)
        unknown = rules.first_unknown_role(outcome, tenant.roles)
        if unknown is not None:
            return self._reject(
                Code.ROLE_NOT_IN_TENANT, rules.message(Code.ROLE_NOT_IN_TENANT, role_id=unknown)
            )
        if tenant.pending() >= self._settings.pending_task_limit:
            return self._reject(Code.TASK_LIMIT)
        self._last_task_id += self._ids.randint(1, 9973)  # increasing, but not guessable by +1
        task_id = str(self._last_task_id)
        tenant.accept(task_id, outcome, now=self._clock(), settings=self._settings)
        self._accepted += 1
        self._max_pending = max(self._max_pending, tenant.pending())
        self._advance()  # a zero-duration task is DONE at once
        return json_response(
            200,
            {
                "resultCode": "0",
                "resultMessage": "batch task created successfully.",
                "taskId": task_id,
            },
        )

    def _query_task(self, tenant: Tenant, body: Any) -> Response:
        # a numeric taskId is refused: ids exceed double precision, clients must keep strings
        if not (isinstance(body, dict) and isinstance(body.get("taskId"), str)):
            return json_response(400, {"error": "taskId must be a string"})
        task = tenant.tasks.get(body["taskId"])
        if task is None:
            code = self._settings.unknown_task_result_code
            self._rejected[code] += 1
            return json_response(
                self._settings.error_http_status,
                {"resultCode": code, "resultMessage": "task does not exist"},
            )
        report = task.report(self._clock())
        return json_response(
            200, {"resultCode": "0", "resultMessage": "query task successfully.", **report}
        )

    def _reject(self, code: Code, text: str | None = None) -> Response:
        self._rejected[code.value] += 1
        payload = {"resultCode": code.value, "resultMessage": text or rules.message(code)}
        return json_response(self._settings.error_http_status, payload)

    # -- running tasks --

    def _advance(self) -> None:
        now = self._clock()
        for tenant in self._tenants.values():
            self._created.update(tenant.run_due(now, self._settings))


def _unauthorised(reason: str) -> Response:
    return json_response(401, {"error_code": "401", "error_msg": reason})
