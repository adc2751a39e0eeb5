"""The federation-user API client: token, createTask and queryTask.

Settings live in ``settings`` and the meaning of answers in ``replies``; the names callers
need are re-exported here. This is the only module that talks to the federation API, and
it does so through the one HTTP seam: ``providers.http`` translates httpx's failures,
``providers.retry`` times the retries. createTask is not idempotent, so it is resent only
when the server certainly did not act on it (connection refused, 429/502/503, 401,
resultCode 100-216); queryTask and the token call are safe to repeat and are retried on
every transient failure. The app secret and tokens never reach a message, a repr or a
log line: messages are built from codes, paths and account names.
"""

from __future__ import annotations

import collections
import enum
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from reconciler import values
from reconciler.errors import FederationError, TransportError
from reconciler.providers import http, urls
from reconciler.providers.federation.replies import (
    BatchRefused,
    CallCounts,
    TaskFailure,
    TaskState,
    TaskStatus,
    create_task_error,
    task_status,
)
from reconciler.providers.federation.settings import (
    ENV_APP_KEY,
    ENV_APP_SECRET,
    ENV_CA_BUNDLE,
    ENV_TENANT_SPACE_ID,
    ENV_URL,
    FederationSettings,
    settings_from_env,
)
from reconciler.providers.retry import RetryPolicy, with_retries
from reconciler.values import field, frozen

__all__ = [
    "BatchRefused",
    "CallCounts",
    "Endpoint",
    "FederationClient",
    "FederationSettings",
    "TaskFailure",
    "TaskState",
    "TaskStatus",
    "settings_from_env",
]

CONTENT_TYPE = "application/json;charset=UTF-8"
RENEW_MARGIN = 60.0  # seconds before expiry at which a token is renewed
RETRYABLE_STATUSES = frozenset({429, 502, 503})  # the server did not act on the request
ROLE_SERVICE_FAILED = "100-216"  # the only transient business code
DEFAULT_RETRY = RetryPolicy(max_attempts=5, base_delay=0.5, multiplier=2.0, max_delay=30.0)


class Endpoint(enum.Enum):
    """The three calls of the federation API, by path."""

    TOKEN = "/apigovernance/api/oauth/tokenByAkSk"
    CREATE_TASK = "/apiaccess/rest/cc-management/v1/federationUserMgmt/createTask"
    QUERY_TASK = "/apiaccess/rest/cc-management/v1/federationUserMgmt/queryTask"

    @property
    def label(self) -> str:
        """The call's name as the vendor documents it."""
        return self.value.rsplit("/", 1)[1]


@frozen
class _Token:
    value: str = field(repr=False)
    renew_at: float  # local clock


@frozen
class _Reply:
    status: int
    body: Any  # the parsed JSON, or None when the body is not JSON


class _TokenUnavailable(TransportError):
    """No token could be had; the call that needed it was not sent.

    A subclass only so that a call's retry loop does not retry the token's exhausted
    retries again (attempts would multiply).
    """


def _retryable_create(exc: Exception) -> bool:
    if isinstance(exc, _TokenUnavailable | http.ClientClosed):
        return False
    if isinstance(exc, TransportError):
        return not exc.maybe_sent
    return isinstance(exc, FederationError) and exc.code == ROLE_SERVICE_FAILED


def _retryable_query(exc: Exception) -> bool:
    if isinstance(exc, _TokenUnavailable | http.ClientClosed):
        return False
    if isinstance(exc, TransportError):
        return True  # queryTask is read-only: a lost response costs nothing to repeat
    return isinstance(exc, FederationError) and exc.code == ROLE_SERVICE_FAILED


def _api_call(endpoint: Endpoint) -> http.ApiCall:
    """How transport errors name ``endpoint`` and what they tell the user to do."""
    call = http.ApiCall(
        api="the federation API",
        name=endpoint.label,
        unsent_hint=f"check {ENV_URL} and the network",
        lost_hint="the federation API or the network is unstable; try again later",
    )
    if endpoint is not Endpoint.CREATE_TASK:
        return call
    # createTask is not idempotent: a lost answer is never a reason to send it again.
    return values.replace(
        call,
        lost_hint="refresh (query the recorded outstanding tasks) before applying again; "
        "never resend the batch blindly",
        lost_means="the task may exist, so it was not resent",
    )


def _lost(endpoint: Endpoint, what: str) -> TransportError:
    """The request may have reached the server but no usable answer came back."""
    return http.lost(_api_call(endpoint), what)


def _http_error(endpoint: Endpoint, status: int) -> FederationError:
    """A 4xx without a result code: say what to check."""
    checks = {
        400: f"check that {ENV_URL} is the API gateway's base URL and the request is valid",
        401: "check that the federation-user service is bought for this tenant and that the "
        "account is in good standing (a freshly issued token was refused twice)",
        403: f"check that the app key in {ENV_APP_KEY} may call {endpoint.label} and that "
        f"{ENV_TENANT_SPACE_ID} names the right tenant space",
        404: f"check {ENV_URL}: it must be the base URL only (e.g. https://service.besclouds.com),"
        f" without the {endpoint.value} path",
    }
    check = checks.get(status, f"check {ENV_URL} and the federation API's status")
    return FederationError(
        f"{endpoint.label} answered HTTP {status} without a result code",
        code=f"http-{status}",
        http_status=status,
        hint=check,
    )


class FederationClient:
    """Calls the federation-user API with one cached token, bounded retries, no blind resends."""

    def __init__(
        self,
        settings: FederationSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._base = settings.base_url.rstrip("/")
        self._retry = retry
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._token: _Token | None = None
        self._reached: collections.Counter[Endpoint] = collections.Counter()
        self._http = http.new_client(
            verify=urls.tls_verify(settings.ca_bundle, variable=ENV_CA_BUNDLE),
            timeout=settings.timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"FederationClient(base_url={self._base!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def authenticate(self) -> None:
        """Get a token now, so bad credentials or a dead endpoint fail before any batch.

        Raises FederationError when the app key/secret are refused, TransportError when
        no token could be had (the endpoint is unreachable or does not answer).
        """
        self._access_token()

    def reached(self) -> CallCounts:
        """createTask and queryTask requests that reached the server so far."""
        return CallCounts(
            create_task=self._reached[Endpoint.CREATE_TASK],
            query_task=self._reached[Endpoint.QUERY_TASK],
        )

    def create_task(self, entries: Sequence[Mapping[str, object]]) -> str:
        """Send one batch of user changes; return the new task's id (a string, never a number)."""
        payload = {"federationUserList": [dict(entry) for entry in entries]}

        def attempt() -> str:
            reply = self._authorized(Endpoint.CREATE_TASK, payload)
            code, body = self._result(reply, Endpoint.CREATE_TASK)
            if code != "0":
                message = body.get("resultMessage")
                raise create_task_error(
                    code,
                    http_status=reply.status,
                    entries=entries,
                    result_message=message if isinstance(message, str) else "",
                )
            task_id = body.get("taskId")
            if not isinstance(task_id, str) or not task_id:
                raise _lost(Endpoint.CREATE_TASK, "resultCode 0 without a taskId string")
            return task_id

        return with_retries(
            attempt,
            policy=self._retry,
            is_retryable=_retryable_create,
            sleep=self._sleep,
            rng=self._rng,
        )

    def query_task(self, task_id: str) -> TaskStatus:
        """Read a task's state and its failed entries; safe to repeat, so retried freely.

        Only a normal answer (HTTP 200) with a ``resultCode`` other than ``"0"`` means the
        task is unknown (or another tenant's): the spec's one meaning of a failed
        queryTask. A 5xx, with or without a ``resultCode``, is the API failing: retried.
        """

        def attempt() -> TaskStatus:
            reply = self._authorized(Endpoint.QUERY_TASK, {"taskId": task_id})
            code, body = self._result(reply, Endpoint.QUERY_TASK)
            if code == "0":
                return task_status(task_id, body)
            if reply.status >= 500:
                raise TransportError(
                    f"queryTask for task {task_id} answered HTTP {reply.status} "
                    f"(resultCode {code}): the federation API failed to answer",
                    maybe_sent=False,
                    hint="the task stays recorded; `reconciler refresh` follows it later",
                )
            if reply.status != 200:
                raise FederationError(
                    f"queryTask for task {task_id} failed with resultCode {code} "
                    f"(HTTP {reply.status})",
                    code=code,
                    http_status=reply.status,
                    hint=f"check {ENV_URL} and the federation API's status",
                )
            raise FederationError(
                f"queryTask for task {task_id} failed with resultCode {code}: the task is "
                "unknown or belongs to another tenant",
                code=code,
                http_status=reply.status,
                hint="check that the task id was recorded for this tenant and that the "
                "app key and tenant space are the ones that created it",
            )

        return with_retries(
            attempt,
            policy=self._retry,
            is_retryable=_retryable_query,
            sleep=self._sleep,
            rng=self._rng,
        )

    def _headers(self, token: str | None) -> dict[str, str]:
        headers = {"Content-Type": CONTENT_TYPE}
        if token is not None:
            headers["X-APP-Key"] = self._settings.app_key
            headers["Authorization"] = f"Bearer {token}"
        if self._settings.tenant_space_id:
            headers["X-TenantSpaceID"] = self._settings.tenant_space_id
        return headers

    def _authorized(self, endpoint: Endpoint, payload: Mapping[str, object]) -> _Reply:
        """POST with the cached token; on 401 renew the token once and send once more."""
        reply = self._send(endpoint, payload, self._headers(self._access_token()))
        if reply.status != 401:
            return reply
        # A 401 means the server did not act on the request: resending is safe even for
        # createTask. The token may have been revoked early, so it is not trusted again.
        self._token = None
        reply = self._send(endpoint, payload, self._headers(self._access_token()))
        if reply.status == 401:
            raise _http_error(endpoint, 401)
        return reply

    def _result(self, reply: _Reply, endpoint: Endpoint) -> tuple[str, Mapping[str, Any]]:
        """The body's resultCode (whatever the HTTP status) and the body, or an error."""
        if reply.status in RETRYABLE_STATUSES:
            raise TransportError(
                f"{endpoint.label} answered HTTP {reply.status}: the federation API is "
                "throttling or unavailable and did not process the request",
                maybe_sent=False,
                hint="try again later",
            )
        if reply.status == 504:
            raise _lost(endpoint, "HTTP 504 from the gateway")
        body = reply.body
        if isinstance(body, dict):
            code = body.get("resultCode")
            if isinstance(code, str | int) and not isinstance(code, bool) and str(code):
                return str(code), body
        if 400 <= reply.status < 500:
            raise _http_error(endpoint, reply.status)
        if endpoint is Endpoint.CREATE_TASK:
            raise _lost(endpoint, f"HTTP {reply.status} without a JSON resultCode")
        raise TransportError(
            f"{endpoint.label} answered HTTP {reply.status} without a JSON resultCode",
            maybe_sent=False,
            hint=f"check that {ENV_URL} points at the federation API",
        )

    def _access_token(self) -> str:
        """The cached token, fetched again when none is held or it is about to expire."""
        if self._token is None or self._clock() >= self._token.renew_at:
            self._token = self._fetch_token()
        return self._token.value

    def _fetch_token(self) -> _Token:
        """Ask tokenByAkSk for a token, retrying transient failures."""
        payload = {"app_key": self._settings.app_key, "app_secret": self._settings.app_secret}
        headers = self._headers(None) | {"X-Token-Expire": str(self._settings.token_ttl)}

        def attempt() -> _Token:
            # Count the lifetime from before sending: the server's CreateTime uses its own
            # clock, and the local send time can only be earlier than the real issue time.
            sent_at = self._clock()
            reply = self._send(Endpoint.TOKEN, payload, headers)
            if reply.status in (401, 403):
                raise FederationError(
                    f"the federation API rejected the app key/secret; check {ENV_APP_KEY}/SECRET",
                    code=f"http-{reply.status}",
                    http_status=reply.status,
                    hint=f"copy the app key and secret again from the tenant's API Fabric "
                    f"console into {ENV_APP_KEY} and {ENV_APP_SECRET}",
                )
            if reply.status in RETRYABLE_STATUSES or reply.status == 504:
                raise _lost(Endpoint.TOKEN, f"HTTP {reply.status}")
            if 400 <= reply.status < 500:
                raise _http_error(Endpoint.TOKEN, reply.status)
            body = reply.body if isinstance(reply.body, dict) else {}
            value, expires = body.get("AccessToken"), body.get("Expires")
            if not isinstance(value, str) or not value or not str(expires).isdigit():
                raise TransportError(
                    f"tokenByAkSk answered HTTP {reply.status} without an AccessToken and a "
                    "numeric Expires",
                    maybe_sent=False,
                    hint=f"check {ENV_URL} and the app key/secret",
                )
            lifetime = float(str(expires))
            # Renew a minute early, or halfway through a token shorter than two minutes.
            renew_at = sent_at + lifetime - min(RENEW_MARGIN, lifetime / 2)
            return _Token(value=value, renew_at=renew_at)

        try:
            return with_retries(
                attempt,
                policy=self._retry,
                is_retryable=lambda exc: (
                    isinstance(exc, TransportError) and not isinstance(exc, http.ClientClosed)
                ),
                sleep=self._sleep,
                rng=self._rng,
            )
        except TransportError as exc:
            raise _TokenUnavailable(
                f"could not get a federation API token, so nothing else was sent: {exc.message}",
                maybe_sent=False,
                hint=exc.hint,
            ) from exc

    def _send(self, endpoint: Endpoint, payload: object, headers: Mapping[str, str]) -> _Reply:
        """POST once; httpx failures leave as TransportError (see ``providers.http``)."""
        content = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            with http.translated(self._http, _api_call(endpoint)):
                response = self._http.post(
                    self._base + endpoint.value, content=content, headers=headers
                )
        except TransportError as exc:
            self._reached[endpoint] += int(exc.maybe_sent)
            raise
        self._reached[endpoint] += 1
        try:
            body = response.json()
        except ValueError:  # not JSON, or not decodable text
            body = None
        return _Reply(status=response.status_code, body=body)
