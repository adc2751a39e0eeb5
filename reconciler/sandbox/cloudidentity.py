"""A CloudIdentity stand-in: V4 signature checks, the event store, outcomes and throttling.

API requests are those whose query has ``Action=``; they are verified exactly as the spec
says (any SignedHeaders list with host and x-date, 900 s skew) and answered with the
vendor's envelope. Control endpoints under ``/_sandbox/cloudidentity/`` (JSON, no auth)
seed events and credentials, choose retry outcomes, inject throttling and report stats.
All state sits behind one lock because the server answers from several threads.
"""

from __future__ import annotations

import datetime as dt
import enum
import random
import threading
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.providers.cloudidentity import signing
from reconciler.sandbox.wire import Request, Response, json_response

CONTROL = "/_sandbox/cloudidentity/"
SERVICE = "cloudidentity"
VERSION = "2023-01-01"
DEFAULT_REGION = "cn-beijing"
DEFAULT_CREDENTIALS = {"AKLTsandbox": "sandbox-secret-key"}
READ_ACTIONS = frozenset({"ListUserProvisioningEvents", "ListUserProvisionings"})
_GATEWAY_ERRORS = {
    signing.Verdict.MISSING: (401, "MissingAuthenticationToken", "no Authorization header"),
    signing.Verdict.MALFORMED: (400, "InvalidAuthorization", "Authorization header is malformed"),
    signing.Verdict.WRONG_SCOPE: (
        400,
        "InvalidCredential",
        f"the credential scope must name region {DEFAULT_REGION} and service {SERVICE}",
    ),
    signing.Verdict.UNKNOWN_KEY: (401, "InvalidAccessKey", "the access key does not exist"),
    signing.Verdict.BAD_TIMESTAMP: (403, "InvalidTimestamp", "X-Date is invalid or expired"),
    signing.Verdict.MISMATCH: (401, "SignatureDoesNotMatch", "the signature does not match"),
}
_ACTION_NAMES = READ_ACTIONS | {"RetryUserProvisioningEvent", "DeleteUserProvisioningEvent"}
_THROTTLES = {
    "FlowLimitExceeded": 429,
    "RequestLimitExceeded": 429,
    "OperateTooFrequentlyException": 400,
}


class Outcome(enum.StrEnum):
    """What RetryUserProvisioningEvent does to an event."""

    SUCCEED = "succeed"  # the provisioning went through: the event disappears
    FAIL = "fail"  # it failed again: new FailureReason and UpdatedTime
    CONFLICT = "conflict"  # 409: a retry is already under way
    NOT_FOUND = "not_found"  # 404: someone else resolved it meanwhile (the event is gone)
    LOST = "lost"  # succeeds, but the connection drops before the answer: a lost response


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CloudIdentitySandbox:
    """The handler: mount it with ``server.running([...])`` or call ``handle`` directly."""

    def __init__(
        self,
        *,
        clock: Callable[[], dt.datetime] = signing.utc_now,
        credentials: Mapping[str, str] | None = None,
        seed: int = 0,
    ) -> None:
        self._clock = clock
        self._initial_credentials = dict(credentials or DEFAULT_CREDENTIALS)
        self._seed = seed
        self._lock = threading.RLock()  # re-entrant: control routes call reset() and stats()
        self.reset()

    def reset(self) -> None:
        """Forget events, outcomes, throttling and stats; restore the initial credentials."""
        with self._lock:
            self.credentials: dict[str, str] = dict(self._initial_credentials)
            self.events: dict[str, dict[str, Any]] = {}
            self.outcomes: dict[str, Outcome] = {}
            self.default_outcome = Outcome.SUCCEED
            self.throttle_next = 0
            self.throttle_rate = 0.0
            self.throttle_code = "FlowLimitExceeded"
            self.calls: Counter[str] = Counter()
            self.retries: Counter[str] = Counter()
            self.deletes: Counter[str] = Counter()
            self.rejected: Counter[str] = Counter()
            self._rng = random.Random(self._seed)
            self._serial = 0
            self._lose_response = False

    def handle(self, request: Request) -> Response | None:
        """Answer CloudIdentity API and control requests; None for anything else."""
        if request.path.startswith(CONTROL):
            return self._control(request.method, request.path[len(CONTROL) :].strip("/"), request)
        if "Action" not in request.query and "Version" not in request.query:
            return None
        with self._lock:
            return self._api(request)

    # -- the API ---------------------------------------------------------------------------

    def _api(self, request: Request) -> Response:
        action = (request.query.get("Action") or ("",))[0]
        region = DEFAULT_REGION
        try:
            if not action or not (request.query.get("Version") or ("",))[0]:
                raise _ApiError(400, "MissingParameter", "Action and Version are required")
            verification = signing.verify(
                method=request.method,
                path=request.path,
                query=urllib.parse.parse_qsl(request.raw_query, keep_blank_values=True),
                headers=request.headers,
                body=request.body,
                secrets=self.credentials,
                now=self._clock(),
                service=SERVICE,
                region=DEFAULT_REGION,
            )
            region = verification.region or region
            if verification.verdict is not signing.Verdict.OK:
                raise _ApiError(*_GATEWAY_ERRORS[verification.verdict])
            version = request.query["Version"][0]
            if action not in _ACTION_NAMES or version != VERSION:
                raise _ApiError(404, "InvalidActionOrVersion", f"{action}/{version}")
            read_by_get = request.method == "GET" and action in READ_ACTIONS
            if request.method != "POST" and not read_by_get:
                raise _ApiError(400, "InvalidParameter", f"{action} needs POST")
            self.calls[action] += 1
            self._throttle()
            params = self._params(request)
            actions = {
                "ListUserProvisioningEvents": self._list_events,
                "ListUserProvisionings": self._list_provisionings,
                "RetryUserProvisioningEvent": self._retry_event,
                "DeleteUserProvisioningEvent": self._delete_event,
            }
            result = actions[action](params)
            if self._lose_response:
                self._lose_response = False
                return Response(status=200, drop_connection=True)
        except _ApiError as error:
            self.rejected[error.code] += 1
            meta = self._meta(action, region)
            meta["Error"] = {"Code": error.code, "Message": error.message}
            return json_response(error.status, {"ResponseMetadata": meta})
        meta = self._meta(action, region)
        return json_response(200, {"ResponseMetadata": meta, "Result": result})

    def _meta(self, action: str, region: str) -> dict[str, Any]:
        return {
            "RequestId": uuid.UUID(int=self._rng.getrandbits(128)).hex.upper(),
            "Action": action,
            "Version": VERSION,
            "Service": SERVICE,
            "Region": region,
        }

    def _throttle(self) -> None:
        by_rate = self.throttle_rate > 0 and self._rng.random() < self.throttle_rate
        if self.throttle_next > 0 or by_rate:
            self.throttle_next = max(0, self.throttle_next - 1)
            code = self.throttle_code
            raise _ApiError(_THROTTLES[code], code, "Request was denied due to flow control")

    @staticmethod
    def _params(request: Request) -> dict[str, Any]:
        """The body of a POST, or the query of a GET (``K.1=a&K.2=b`` and ``K=a&K=b`` → lists)."""
        if request.method == "POST":
            try:
                body = request.json() if request.body else {}
            except ValueError as exc:
                raise _ApiError(400, "InvalidParameter", "the body is not JSON") from exc
            if not isinstance(body, dict):
                raise _ApiError(400, "InvalidParameter", "the body is not a JSON object")
            return body
        params: dict[str, Any] = {}
        for key, value in urllib.parse.parse_qsl(request.raw_query, keep_blank_values=True):
            name, _, index = key.partition(".")
            if name in ("Action", "Version"):
                continue
            if index.isdigit() or name in ("EventStatus",):
                params.setdefault(name, []).append(value)
            else:
                params[name] = value
        return params

    @staticmethod
    def _page(params: Mapping[str, Any], items: list[dict[str, Any]], key: str) -> dict[str, Any]:
        try:
            # An explicit 0 is an error, not "use the default": only absence defaults.
            number = int(params["PageNumber"]) if params.get("PageNumber") is not None else 1
            size = int(params["PageSize"]) if params.get("PageSize") is not None else 10
        except (TypeError, ValueError) as exc:
            raise _ApiError(400, "InvalidParameter", "PageNumber/PageSize: integers") from exc
        if number < 1 or not 1 <= size <= 100:
            raise _ApiError(400, "InvalidParameter", "PageNumber >= 1 and PageSize 1..100")
        start = (number - 1) * size
        return {
            "Total": len(items),
            "PageNumber": number,
            "PageSize": size,
            key: items[start : start + size],
        }

    def _list_events(self, params: Mapping[str, Any]) -> dict[str, Any]:
        statuses = params.get("EventStatus") or []
        query = str(params.get("QueryString") or "").lower()
        items = [
            event
            for event in self.events.values()
            if (not statuses or event["EventStatus"] in statuses)
            and (
                not query
                or query in event["UserName"].lower()
                or query in event.get("DisplayName", "").lower()
            )
        ]
        page = self._page(params, items, "UserProvisioningEvent")
        page["UserProvisioningEvent"] = [
            {k: v for k, v in event.items() if k != "DisplayName"}
            for event in page["UserProvisioningEvent"]
        ]
        return page

    def _list_provisionings(self, params: Mapping[str, Any]) -> dict[str, Any]:
        # Provisionings are derived from the events: each event names one.
        account = params.get("AccountId")
        found: dict[str, dict[str, Any]] = {}
        for event in self.events.values():
            if account and event["TargetId"] != account:
                continue
            found.setdefault(
                event["UserProvisioningId"],
                {
                    "UserProvisioningId": event["UserProvisioningId"],
                    "PrincipalType": "User",
                    "PrincipalId": event["UserId"],
                    "PrincipalName": event["UserName"],
                    "TargetId": event["TargetId"],
                    "ProvisionStatus": "Failed",
                    "IdentitySourceStrategy": "Ignore",
                    "DuplicationStrategy": "KeepBoth",
                    "DuplicationSuffix": "",
                    "DeletionStrategy": "Keep",
                    "Description": "",
                    "CreatedTime": event["CreatedTime"],
                    "UpdatedTime": event["UpdatedTime"],
                },
            )
        return self._page(params, list(found.values()), "UserProvisionings")

    def _event_id(self, params: Mapping[str, Any]) -> str:
        event_id = params.get("UserProvisioningEventId")
        if not event_id:
            raise _ApiError(400, "ParamMissing", "Missing parameter UserProvisioningEventId")
        return str(event_id)

    def _retry_event(self, params: Mapping[str, Any]) -> dict[str, Any]:
        event_id = self._event_id(params)
        self.retries[event_id] += 1
        self._apply(event_id, self.outcomes.get(event_id, self.default_outcome))
        return {}

    def _delete_event(self, params: Mapping[str, Any]) -> dict[str, Any]:
        event_id = self._event_id(params)
        self.deletes[event_id] += 1
        outcome = self.outcomes.get(event_id, self.default_outcome)
        # Deleting a record always works, unless the event is busy or already gone.
        kept = (Outcome.CONFLICT, Outcome.NOT_FOUND, Outcome.LOST)
        self._apply(event_id, outcome if outcome in kept else Outcome.SUCCEED)
        return {}

    def _apply(self, event_id: str, outcome: Outcome) -> None:
        event = self.events.get(event_id)
        if event is None or outcome is Outcome.NOT_FOUND:
            self.events.pop(event_id, None)
            raise _ApiError(404, "UserProvisionEventNotFound", "User provision event is not found")
        if outcome is Outcome.CONFLICT:
            raise _ApiError(
                409,
                "UserProvisionEventRetryConflict",
                "User provision event retry task already exists",
            )
        self._lose_response = outcome is Outcome.LOST
        if outcome is Outcome.FAIL:
            event["FailureReason"] = f"retry {self.retries[event_id]} failed: target rejected user"
            event["UpdatedTime"] = _rfc3339(self._clock())
        else:
            del self.events[event_id]

    # -- control ---------------------------------------------------------------------------

    def _control(self, method: str, route: str, request: Request) -> Response:
        try:
            body = request.json() if request.body else {}
        except ValueError:
            return json_response(400, {"error": "body is not JSON"})
        try:
            with self._lock:
                return self._route(method, route, body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return json_response(400, {"error": f"bad control request: {exc!r}"})

    def _route(self, method: str, route: str, body: Any) -> Response:
        match (method, route):
            case ("POST", "reset"):
                self.reset()
            case ("POST", "credentials"):
                self.credentials[str(body["access_key"])] = str(body["secret_key"])
            case ("POST", "events"):
                seeded = body["events"] if isinstance(body, dict) else body
                return json_response(200, {"events": [self._add(item) for item in seeded]})
            case ("POST", "events/generate"):
                template = {k: v for k, v in body.items() if k not in ("count", "prefix")}
                for n in range(int(body.get("count", 1))):
                    self._add({**template, "UserName": f"{body.get('prefix', 'user')}-{n:05d}"})
            case ("POST", "outcomes"):
                for event_id, outcome in body.items():
                    if event_id == "*":
                        self.default_outcome = Outcome(outcome)
                    else:
                        self.outcomes[event_id] = Outcome(outcome)
            case ("POST", "throttle"):
                self.throttle_next = int(body.get("count", 0))
                self.throttle_rate = float(body.get("rate", 0.0))
                self.throttle_code = str(body.get("code", "FlowLimitExceeded"))
                if self.throttle_code not in _THROTTLES:
                    return json_response(400, {"error": f"code must be one of {list(_THROTTLES)}"})
            case ("GET", "events"):
                return json_response(200, {"events": list(self.events.values())})
            case ("GET", "stats"):
                return json_response(200, self.stats())
            case _:
                return json_response(404, {"error": f"no control route {method} {route}"})
        return json_response(200, {"ok": True})

    def _add(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Store one event; every field is optional (ids and times are generated)."""
        self._serial += 1
        now = _rfc3339(self._clock())
        name = str(fields.get("UserName") or f"user-{self._serial:05d}")
        event = {
            "UserProvisioningEventId": f"upe-{self._serial:06d}",
            "UserProvisioningId": f"up-{self._serial:06d}",
            "UserId": f"u-{self._serial:06d}",
            "UserName": name,
            "DisplayName": name.replace("-", " ").title(),
            "FailureReason": "target account rejected the user",
            "TargetId": "2100000001",
            "TargetName": "member-account",
            "Description": "",
            "CreatedTime": now,
            "UpdatedTime": now,
            "PrincipalType": "User",
            "EventStatus": "ProvisionFailed",
        } | dict(fields)
        self.events[str(event["UserProvisioningEventId"])] = event
        return event

    def stats(self) -> dict[str, Any]:
        """Calls per action, retries and deletes per event, rejections per error code."""
        with self._lock:
            return {
                "calls": dict(self.calls),
                "retries": dict(self.retries),
                "deletes": dict(self.deletes),
                "rejected": dict(self.rejected),
                "events": len(self.events),
            }


def build_cloudidentity(
    clock: Callable[[], dt.datetime] | None = None,
    credentials: Mapping[str, str] | None = None,
) -> CloudIdentitySandbox:
    """A fresh CloudIdentity sandbox handler (real UTC clock unless ``clock`` is given)."""
    return CloudIdentitySandbox(clock=clock or signing.utc_now, credentials=credentials)
