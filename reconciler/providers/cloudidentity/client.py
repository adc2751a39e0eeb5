"""Client of the Volcengine CloudIdentity API: provisioning events and provisionings.

Every call is ``POST {url}/?Action=X&Version=2023-01-01`` with a JSON body serialised once
and signed by :class:`reconciler.providers.cloudidentity.auth.V4Auth`. Error envelopes
are translated here into :class:`CloudIdentityError`; httpx's failures become
:class:`TransportError` in the one HTTP seam, ``providers.http``.

Retries (``providers.retry``: exponential backoff with full jitter) cover throttling, 5xx,
the retryable error codes, and connections that failed before anything was sent. A lost
response is retried only for the read-only List actions: a Retry or Delete whose answer
was lost may have happened, so it surfaces as ``TransportError(maybe_sent=True)``.
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

import httpx

from reconciler import values
from reconciler.errors import CloudIdentityError, ConfigError, TransportError
from reconciler.providers import http, urls
from reconciler.providers.cloudidentity.auth import V4Auth
from reconciler.providers.cloudidentity.signing import Credentials, utc_now
from reconciler.providers.retry import RetryPolicy, with_retries
from reconciler.values import frozen

ENV_URL = "RECONCILER_CLOUDIDENTITY_URL"
ENV_CA_BUNDLE = "RECONCILER_CLOUDIDENTITY_CA_BUNDLE"
ENV_TIMEOUT = "RECONCILER_CLOUDIDENTITY_TIMEOUT"
DEFAULT_TIMEOUT = 30.0
DEFAULT_URL = "https://open.volcengineapi.com"
DEFAULT_REGION = "cn-beijing"
SERVICE = "cloudidentity"
VERSION = "2023-01-01"
MAX_PAGE_SIZE = 100
CONTENT_TYPE = "application/json; charset=utf-8"
RETRYABLE_CODES = frozenset(
    {
        "FlowLimitExceeded",
        "RequestLimitExceeded",
        "OperateTooFrequentlyException",
        "ConcurrentException",
    }
)
DEFAULT_RETRY = RetryPolicy(max_attempts=6, base_delay=0.5, multiplier=2.0, max_delay=20.0)
_T = TypeVar("_T")


class EventStatus(enum.StrEnum):
    """The statuses a provisioning event (a failure record) can have."""

    PROVISION_FAILED = "ProvisionFailed"
    DELETE_PROVISION_FAILED = "DeleteProvisionFailed"


class Action(enum.StrEnum):
    """The CloudIdentity actions this client calls."""

    LIST_EVENTS = "ListUserProvisioningEvents"
    RETRY_EVENT = "RetryUserProvisioningEvent"
    DELETE_EVENT = "DeleteUserProvisioningEvent"
    LIST_PROVISIONINGS = "ListUserProvisionings"

    @property
    def read_only(self) -> bool:
        """True for actions that change nothing, so resending them is always safe."""
        return self.value.startswith("List")


@frozen
class CloudIdentitySettings:
    """Where and as whom to call CloudIdentity (from the environment, see ``from_env``)."""

    url: str = DEFAULT_URL
    credentials: Credentials
    region: str = DEFAULT_REGION
    ca_bundle: str | None = None  # a CA file or directory for private PKI; None = system CAs
    timeout: float = DEFAULT_TIMEOUT  # seconds per HTTP exchange

    def __post_init__(self) -> None:
        urls.check_url(self.url, variable=ENV_URL, example=DEFAULT_URL)
        if not self.timeout > 0:
            raise ConfigError(f"{ENV_TIMEOUT} must be a positive number of seconds")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CloudIdentitySettings:
        """Read the ``RECONCILER_CLOUDIDENTITY_*`` and ``VOLCENGINE_*`` settings."""
        missing = [
            name for name in ("VOLCENGINE_ACCESS_KEY", "VOLCENGINE_SECRET_KEY") if not env.get(name)
        ]
        if missing:
            raise ConfigError(
                f"missing environment setting{'s' if len(missing) > 1 else ''}: "
                + ", ".join(missing),
                hint="export the CloudIdentity access key pair (an IAM user's AK/SK)",
            )
        return cls(
            url=(env.get(ENV_URL) or DEFAULT_URL).strip().rstrip("/"),
            credentials=Credentials(
                access_key=env["VOLCENGINE_ACCESS_KEY"],
                secret_key=env["VOLCENGINE_SECRET_KEY"],
                session_token=env.get("VOLCENGINE_SESSION_TOKEN") or None,
            ),
            region=env.get("VOLCENGINE_REGION") or DEFAULT_REGION,
            ca_bundle=env.get(ENV_CA_BUNDLE) or None,
            timeout=_timeout(env.get(ENV_TIMEOUT)),
        )


def _timeout(raw: str | None) -> float:
    """``RECONCILER_CLOUDIDENTITY_TIMEOUT`` in seconds (the default when unset)."""
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_TIMEOUT} must be a number of seconds, not {raw!r}") from None


@frozen
class ProvisioningEvent:
    """One provisioning failure record, as ListUserProvisioningEvents returns it."""

    event_id: str
    provisioning_id: str
    user_id: str
    user_name: str
    failure_reason: str
    target_id: str
    target_name: str
    description: str
    created_time: str  # RFC 3339, as the API sends it
    updated_time: str
    principal_type: str
    event_status: str

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> ProvisioningEvent:
        """Build from one item of ``Result.UserProvisioningEvent``."""
        return cls(
            **_fields(
                item,
                {"event_id": "UserProvisioningEventId", "provisioning_id": "UserProvisioningId"},
                values.fields(cls),
            )
        )


@frozen
class UserProvisioning:
    """One provisioning of a principal into a member account (ListUserProvisionings)."""

    provisioning_id: str
    principal_type: str
    principal_id: str
    principal_name: str
    target_id: str
    provision_status: str
    identity_source_strategy: str
    duplication_strategy: str
    duplication_suffix: str
    deletion_strategy: str
    description: str
    created_time: str
    updated_time: str

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> UserProvisioning:
        """Build from one item of ``Result.UserProvisionings``."""
        return cls(**_fields(item, {"provisioning_id": "UserProvisioningId"}, values.fields(cls)))


def _fields(
    item: Mapping[str, Any], renamed: Mapping[str, str], names: Iterable[str]
) -> dict[str, str]:
    """Field values from an API item: ``user_name`` <- ``UserName`` unless ``renamed``."""

    def api_key(name: str) -> str:
        return renamed.get(name) or "".join(part.capitalize() for part in name.split("_"))

    return {
        name: "" if item.get(api_key(name)) is None else str(item[api_key(name)]) for name in names
    }


@dataclass(slots=True)
class CallCounter:
    """HTTP requests sent (``calls``) and how many of them were retries, per client."""

    calls: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, *, retry: bool) -> None:
        """Count one request sent."""
        with self._lock:
            self.calls += 1
            self.retries += int(retry)


class CloudIdentityClient:
    """Calls CloudIdentity: list events and provisionings, retry or delete events."""

    def __init__(
        self,
        settings: CloudIdentitySettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float | None = None,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._retry = retry
        self._http = http.new_client(
            base_url=settings.url,
            verify=urls.tls_verify(settings.ca_bundle, variable=ENV_CA_BUNDLE),
            timeout=settings.timeout if timeout is None else timeout,
            transport=transport,
            auth=V4Auth(settings.credentials, region=settings.region, service=SERVICE, clock=clock),
        )
        # The vendor's own Terraform provider serialises CloudIdentity mutations because
        # concurrent ones fail with ConcurrentException; sending them one at a time avoids
        # burning retries on conflicts we would cause ourselves. Reads stay concurrent.
        self._mutation_lock = threading.Lock()
        self.counter = CallCounter()

    def __repr__(self) -> str:
        return f"CloudIdentityClient(url={self._settings.url!r}, region={self._settings.region!r})"

    @property
    def calls(self) -> int:
        """HTTP requests sent so far (pages fetched plus mutations, retries included)."""
        return self.counter.calls

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def list_provisioning_events(
        self,
        statuses: Sequence[str] = tuple(EventStatus),
        page_size: int = MAX_PAGE_SIZE,
        query_string: str | None = None,
    ) -> tuple[ProvisioningEvent, ...]:
        """All events with one of ``statuses``, every page fetched."""
        body: dict[str, Any] = {"EventStatus": [str(status) for status in statuses]}
        if query_string:
            body["QueryString"] = query_string
        items = self._pages(Action.LIST_EVENTS, body, "UserProvisioningEvent", page_size)
        events = (ProvisioningEvent.from_api(item) for item in items)
        return tuple(_unique(events, lambda e: e.event_id))

    def list_user_provisionings(
        self, account_id: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> tuple[UserProvisioning, ...]:
        """All provisionings (into ``account_id`` only, when given), every page fetched."""
        body: dict[str, Any] = {} if account_id is None else {"AccountId": account_id}
        items = self._pages(Action.LIST_PROVISIONINGS, body, "UserProvisionings", page_size)
        provisionings = (UserProvisioning.from_api(item) for item in items)
        return tuple(_unique(provisionings, lambda p: p.provisioning_id))

    def retry_provisioning_event(self, event_id: str) -> None:
        """Ask CloudIdentity to retry the provisioning that ``event_id`` records as failed."""
        with self._mutation_lock:
            self._call(Action.RETRY_EVENT, {"UserProvisioningEventId": event_id})

    def delete_provisioning_event(self, event_id: str) -> None:
        """Delete the failure record ``event_id`` (the provisioning itself is not touched)."""
        with self._mutation_lock:
            self._call(Action.DELETE_EVENT, {"UserProvisioningEventId": event_id})

    def _pages(
        self, action: Action, body: Mapping[str, Any], key: str, page_size: int
    ) -> Iterator[Mapping[str, Any]]:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, not {page_size}")
        seen, page = 0, 1
        while True:
            result = self._call(action, {**body, "PageNumber": page, "PageSize": page_size})
            items = result.get(key) or []
            if not isinstance(items, list):
                raise http.lost(_api_call(action), f"Result.{key} is not a list")
            yield from items
            seen += len(items)
            # An empty page ends the walk too: the total can shrink while we page.
            if not items or seen >= int(result.get("Total") or 0):
                return
            page += 1

    def _call(self, action: Action, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """Send ``action`` with retries; return its ``Result``."""
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        attempts = itertools.count()

        def attempt() -> Mapping[str, Any]:
            self.counter.count(retry=next(attempts) > 0)
            return self._send_once(action, content)

        return with_retries(
            attempt,
            policy=self._retry,
            is_retryable=lambda exc: (
                isinstance(exc, CloudIdentityError | TransportError) and retryable(action, exc)
            ),
            sleep=self._sleep,
            rng=self._rng,
        )

    def _send_once(self, action: Action, content: bytes) -> Mapping[str, Any]:
        """One HTTP exchange; httpx failures leave as TransportError (``providers.http``)."""
        with http.translated(self._http, _api_call(action)):
            response = self._http.post(
                "/",
                params={"Action": action.value, "Version": VERSION},
                content=content,
                headers={"Content-Type": CONTENT_TYPE, "Accept": "application/json"},
            )
        return _result(action, response)


def _api_call(action: Action) -> http.ApiCall:
    """How transport errors name ``action`` and what they tell the user to do."""
    return http.ApiCall(
        api="CloudIdentity",
        name=str(action),
        unsent_hint=f"check {ENV_URL} and the network",
        # A lost List is simply fetched again; a lost mutation may have happened.
        lost_hint=None if action.read_only else "list the events again before retrying it",
    )


def retryable(action: Action, error: CloudIdentityError | TransportError) -> bool:
    """Whether another attempt may follow ``error`` (throttling, 5xx, unsent, or a safe read)."""
    if isinstance(error, http.ClientClosed):
        return False  # a bug: no attempt can succeed
    if isinstance(error, TransportError):
        return not error.maybe_sent or action.read_only
    return error.http_status == 429 or error.http_status >= 500 or error.code in RETRYABLE_CODES


def _result(action: Action, response: httpx.Response) -> Mapping[str, Any]:
    """The ``Result`` of a successful answer; raise what an error answer describes."""
    status = response.status_code
    try:
        payload = response.json()
    except ValueError:
        payload = None
    meta = payload.get("ResponseMetadata") if isinstance(payload, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    error = meta.get("Error")
    request_id = meta.get("RequestId")
    if isinstance(error, dict) or status != 200:
        error = error if isinstance(error, dict) else {}
        code = str(error.get("Code") or f"HTTP{status}")
        message = str(error.get("Message") or response.reason_phrase)
        raise CloudIdentityError(
            f"CloudIdentity {action} failed: {code} (HTTP {status}): {message}"
            + (f" [request {request_id}]" if request_id else ""),
            code=code,
            http_status=status,
            request_id=str(request_id) if request_id else None,
            hint=_hint(code),
        )
    result = payload.get("Result") if isinstance(payload, dict) else None
    if not isinstance(result, dict):
        raise http.lost(_api_call(action), "HTTP 200 without a Result object")
    return result


def _hint(code: str) -> str | None:
    match code:
        case "InvalidAccessKey" | "SignatureDoesNotMatch" | "MissingAuthenticationToken":
            return "check VOLCENGINE_ACCESS_KEY / VOLCENGINE_SECRET_KEY (and the session token)"
        case "InvalidCredential":
            return (
                "check VOLCENGINE_REGION: the signature's credential scope must name the "
                f"region {ENV_URL} serves (default {DEFAULT_REGION})"
            )
        case "InvalidTimestamp":
            return "the local clock is more than 15 minutes off: synchronise it"
        case "PermissionError":
            return "grant the IAM user the CloudIdentity permissions for this action"
        case "UserProvisionEventNotFound":
            return "the event is gone (perhaps already resolved): list the events again"
        case _:
            return None


def _unique(items: Iterator[_T], key: Callable[[_T], str]) -> Iterator[_T]:
    """Drop repeats: items can shift between pages while events are resolved."""
    seen: set[str] = set()
    for item in items:
        if key(item) not in seen:
            seen.add(key(item))
            yield item
