"""The CloudIdentity sandbox: gateway checks, actions, outcomes, throttling; over HTTP too."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import pytest
import volcenginesdkcloudidentity as vendor
import volcenginesdkcore
from volcenginesdkcore.rest import ApiException

from reconciler.errors import CloudIdentityError, TransportError
from reconciler.providers.cloudidentity import signing
from reconciler.providers.cloudidentity.client import CloudIdentityClient, CloudIdentitySettings
from reconciler.sandbox.cloudidentity import CloudIdentitySandbox, build_cloudidentity
from reconciler.sandbox.server import running
from reconciler.sandbox.wire import Request, Response

NOW = dt.datetime(2025, 3, 10, 10, 10, 42, tzinfo=dt.UTC)
AK, SK = "AKLTsandbox", "sandbox-secret-key"
HOST = "127.0.0.1:8000"


class Clock:
    """A settable clock for the sandbox."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


def _request(
    action: str | None,
    params: Mapping[str, Any] | None = None,
    *,
    method: str = "POST",
    version: str | None = "2023-01-01",
    ak: str = AK,
    sk: str = SK,
    x_date: dt.datetime = NOW,
    signed_headers: Sequence[str] = signing.DEFAULT_SIGNED_HEADERS,
    unsigned: bool = False,
    change: Mapping[str, str] | None = None,
    extra_query: Sequence[tuple[str, str]] = (),
    region: str = "cn-beijing",
    service: str = "cloudidentity",
) -> Request:
    """A request as the server would hand it to the handler, signed like a real client."""
    query = [(k, v) for k, v in (("Action", action), ("Version", version)) if v is not None]
    query += list(extra_query)
    body = json.dumps(params or {}).encode() if method == "POST" else b""
    headers = {"content-type": "application/json; charset=utf-8", "host": HOST}
    if not unsigned:
        added = signing.sign(
            method=method,
            path="/",
            query=query,
            headers=headers,
            body=body,
            access_key=ak,
            secret_key=sk,
            region=region,
            service=service,
            x_date=signing.format_x_date(x_date),
            signed_headers=signed_headers,
        )
        headers |= {name.lower(): value for name, value in added.items()}
    headers |= dict(change or {})
    raw_query = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    parsed: dict[str, tuple[str, ...]] = {}
    for key, value in query:
        parsed[key] = (*parsed.get(key, ()), value)
    return Request(
        method=method,
        path="/",
        query=parsed,
        raw_query=raw_query,
        headers=headers,
        body=body,
        host=HOST,
    )


def _control(sandbox: CloudIdentitySandbox, method: str, route: str, body: Any = None) -> Any:
    response = sandbox.handle(
        Request(
            method=method,
            path=f"/_sandbox/cloudidentity/{route}",
            query={},
            raw_query="",
            headers={},
            body=b"" if body is None else json.dumps(body).encode(),
            host=HOST,
        )
    )
    assert response is not None
    assert response.status == 200, response.body
    return json.loads(response.body)


def _call(sandbox: CloudIdentitySandbox, request: Request) -> tuple[int, dict[str, Any]]:
    response = sandbox.handle(request)
    assert response is not None
    return response.status, json.loads(response.body)


def _code(sandbox: CloudIdentitySandbox, request: Request) -> tuple[int, str]:
    status, payload = _call(sandbox, request)
    assert "Result" not in payload
    return status, payload["ResponseMetadata"]["Error"]["Code"]


@pytest.fixture
def clock() -> Clock:
    """A clock fixed at NOW."""
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> CloudIdentitySandbox:
    """A sandbox with three events e1..e3 (e3 a deletion failure)."""
    sandbox = build_cloudidentity(clock=clock)
    _control(
        sandbox,
        "POST",
        "events",
        {
            "events": [
                {"UserProvisioningEventId": "e1", "UserName": "alice"},
                {"UserProvisioningEventId": "e2", "UserName": "bob"},
                {
                    "UserProvisioningEventId": "e3",
                    "UserName": "carol",
                    "EventStatus": "DeleteProvisionFailed",
                },
            ]
        },
    )
    return sandbox


LIST = "ListUserProvisioningEvents"
RETRY = "RetryUserProvisioningEvent"


# -- the gateway ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (_request(LIST, unsigned=True), (401, "MissingAuthenticationToken")),
        (
            _request(LIST, change={"authorization": "HMAC-SHA256 nonsense"}),
            (400, "InvalidAuthorization"),
        ),
        (
            _request(LIST, signed_headers=("content-type", "x-content-sha256", "x-date")),
            (400, "InvalidAuthorization"),
        ),
        (
            _request(LIST, signed_headers=("content-type", "host", "x-content-sha256")),
            (400, "InvalidAuthorization"),
        ),
        (_request(LIST, region="cn-shanghai"), (400, "InvalidCredential")),
        (_request(LIST, service="iam"), (400, "InvalidCredential")),
        (_request(LIST, ak="AKLTunknown"), (401, "InvalidAccessKey")),
        (_request(LIST, sk="wrong"), (401, "SignatureDoesNotMatch")),
        (_request(LIST, change={"host": "evil.example"}), (401, "SignatureDoesNotMatch")),
        (_request(LIST, x_date=NOW - dt.timedelta(seconds=901)), (403, "InvalidTimestamp")),
        (_request(LIST, x_date=NOW + dt.timedelta(seconds=901)), (403, "InvalidTimestamp")),
        (_request(LIST, version=None), (400, "MissingParameter")),
        (_request("", version="2023-01-01"), (400, "MissingParameter")),
        (_request(LIST, version="2020-01-01"), (404, "InvalidActionOrVersion")),
        (_request("GetUserProvisioningEvent"), (404, "InvalidActionOrVersion")),
        (
            _request(RETRY, method="GET", extra_query=[("UserProvisioningEventId", "e1")]),
            (400, "InvalidParameter"),
        ),
    ],
)
def test_gateway_errors(
    sandbox: CloudIdentitySandbox, request_: Request, expected: tuple[int, str]
) -> None:
    """Each malformed, forged, stale or misaddressed request gets its documented error."""
    assert _code(sandbox, request_) == expected
    assert len(sandbox.events) == 3


def test_a_tampered_body_does_not_verify(sandbox: CloudIdentitySandbox) -> None:
    """The sandbox hashes the body it received, not the one the client claims."""
    signed = _request(RETRY, {"UserProvisioningEventId": "e1"})
    forged = Request(
        method="POST",
        path="/",
        query=signed.query,
        raw_query=signed.raw_query,
        headers=signed.headers,
        body=b'{"UserProvisioningEventId":"e2"}',
        host=HOST,
    )
    assert _code(sandbox, forged) == (401, "SignatureDoesNotMatch")


@pytest.mark.parametrize("skew", [-900, -1, 0, 899, 900])
def test_clock_skew_up_to_900_seconds_is_accepted(sandbox: CloudIdentitySandbox, skew: int) -> None:
    """X-Date within 900 s of the sandbox clock (either side) passes."""
    status, _ = _call(sandbox, _request(LIST, x_date=NOW + dt.timedelta(seconds=skew)))
    assert status == 200


@pytest.mark.parametrize(
    "names",
    [
        ("host", "x-date"),
        ("host", "x-content-sha256", "x-date"),
        ("content-type", "host", "x-content-sha256", "x-date"),
    ],
)
def test_any_signed_header_list_with_host_and_x_date(
    sandbox: CloudIdentitySandbox, names: tuple[str, ...]
) -> None:
    """The documentation's own example signs host;x-content-sha256;x-date: accepted."""
    assert _call(sandbox, _request(LIST, signed_headers=names))[0] == 200


def test_other_requests_are_not_ours(sandbox: CloudIdentitySandbox) -> None:
    """Requests without Action (and outside the control prefix) are left to other handlers."""
    other = Request(
        method="POST",
        path="/rest/v1/users",
        query={},
        raw_query="",
        headers={},
        body=b"",
        host=HOST,
    )
    assert sandbox.handle(other) is None


def test_envelope(sandbox: CloudIdentitySandbox) -> None:
    """Success carries ResponseMetadata and Result; errors carry Error and no Result."""
    status, payload = _call(sandbox, _request(RETRY, {"UserProvisioningEventId": "e1"}))
    assert status == 200
    assert payload["Result"] == {}
    meta = payload["ResponseMetadata"]
    assert {k: meta[k] for k in ("Action", "Version", "Service", "Region")} == {
        "Action": RETRY,
        "Version": "2023-01-01",
        "Service": "cloudidentity",
        "Region": "cn-beijing",
    }
    assert len(meta["RequestId"]) == 32
    status, payload = _call(sandbox, _request(RETRY, {"UserProvisioningEventId": "nope"}))
    assert status == 404
    assert set(payload) == {"ResponseMetadata"}
    assert payload["ResponseMetadata"]["Error"]["Code"] == "UserProvisionEventNotFound"


# -- listing -------------------------------------------------------------------------------


def _list(sandbox: CloudIdentitySandbox, **params: Any) -> dict[str, Any]:
    status, payload = _call(sandbox, _request(LIST, params))
    assert status == 200, payload
    result: dict[str, Any] = payload["Result"]
    return result


def test_paging_over_many_events(clock: Clock) -> None:
    """250 events in pages of 100: 100, 100, 50, with Total 250 on every page."""
    sandbox = build_cloudidentity(clock=clock)
    _control(sandbox, "POST", "events/generate", {"count": 250})
    pages = [_list(sandbox, PageNumber=n, PageSize=100) for n in (1, 2, 3, 4)]
    assert [len(page["UserProvisioningEvent"]) for page in pages] == [100, 100, 50, 0]
    assert {page["Total"] for page in pages} == {250}
    ids = [e["UserProvisioningEventId"] for page in pages for e in page["UserProvisioningEvent"]]
    assert len(set(ids)) == 250
    assert _list(sandbox)["PageSize"] == 10  # the documented default


def test_list_fields_filters_and_bounds(sandbox: CloudIdentitySandbox) -> None:
    """Every documented field is present; EventStatus and QueryString filter; sizes checked."""
    event = _list(sandbox)["UserProvisioningEvent"][0]
    assert set(event) == {
        "UserProvisioningEventId",
        "UserProvisioningId",
        "UserId",
        "UserName",
        "FailureReason",
        "TargetId",
        "TargetName",
        "Description",
        "CreatedTime",
        "UpdatedTime",
        "PrincipalType",
        "EventStatus",
    }
    assert event["CreatedTime"] == "2025-03-10T10:10:42Z"
    assert _list(sandbox, EventStatus=["DeleteProvisionFailed"])["Total"] == 1
    assert _list(sandbox, EventStatus=["ProvisionFailed"])["Total"] == 2
    assert _list(sandbox, QueryString="BO")["UserProvisioningEvent"][0]["UserName"] == "bob"
    for size in (0, 101):
        assert _code(sandbox, _request(LIST, {"PageSize": size})) == (400, "InvalidParameter")


def test_get_with_query_parameters_for_reads(sandbox: CloudIdentitySandbox) -> None:
    """Read actions also work as GET, with arrays as EventStatus.N."""
    request = _request(
        LIST,
        method="GET",
        extra_query=[("EventStatus.1", "DeleteProvisionFailed"), ("PageSize", "5")],
    )
    status, payload = _call(sandbox, request)
    assert status == 200
    assert payload["Result"]["Total"] == 1
    assert payload["Result"]["PageSize"] == 5


def test_list_user_provisionings(sandbox: CloudIdentitySandbox) -> None:
    """ListUserProvisionings pages the provisionings behind the events, by account."""
    status, payload = _call(sandbox, _request("ListUserProvisionings", {"AccountId": "2100000001"}))
    assert status == 200
    assert payload["Result"]["Total"] == 3
    assert (
        _call(sandbox, _request("ListUserProvisionings", {"AccountId": "9"}))[1]["Result"]["Total"]
        == 0
    )


# -- mutations, outcomes, throttling -------------------------------------------------------


def _retry(sandbox: CloudIdentitySandbox, event_id: str) -> int:
    return _call(sandbox, _request(RETRY, {"UserProvisioningEventId": event_id}))[0]


def test_retry_outcomes(sandbox: CloudIdentitySandbox, clock: Clock) -> None:
    """succeed removes, fail updates, conflict is 409, not_found is 404 and removes."""
    _control(sandbox, "POST", "outcomes", {"e2": "fail", "e3": "conflict"})
    clock.now = NOW + dt.timedelta(minutes=5)
    assert _retry(sandbox, "e1") == 200
    assert "e1" not in sandbox.events
    assert _retry(sandbox, "e2") == 200
    assert sandbox.events["e2"]["UpdatedTime"] == "2025-03-10T10:15:42Z"
    assert sandbox.events["e2"]["FailureReason"].startswith("retry 1 failed")
    assert _code(sandbox, _request(RETRY, {"UserProvisioningEventId": "e3"})) == (
        409,
        "UserProvisionEventRetryConflict",
    )
    _control(sandbox, "POST", "outcomes", {"e3": "not_found"})
    assert _code(sandbox, _request(RETRY, {"UserProvisioningEventId": "e3"})) == (
        404,
        "UserProvisionEventNotFound",
    )
    assert set(sandbox.events) == {"e2"}
    assert _code(sandbox, _request(RETRY, {})) == (400, "ParamMissing")
    stats = _control(sandbox, "GET", "stats")
    assert stats["retries"] == {"e1": 1, "e2": 1, "e3": 2}
    assert stats["calls"][RETRY] == 5


def test_a_lost_outcome_processes_then_drops_the_connection(sandbox: CloudIdentitySandbox) -> None:
    """lost: the retry happens, but no answer is written."""
    _control(sandbox, "POST", "outcomes", {"e1": "lost"})
    response = sandbox.handle(_request(RETRY, {"UserProvisioningEventId": "e1"}))
    assert isinstance(response, Response)
    assert response.drop_connection
    assert "e1" not in sandbox.events


def test_delete(sandbox: CloudIdentitySandbox) -> None:
    """Delete removes the record even when a retry would fail; unknown ids are 404."""
    _control(sandbox, "POST", "outcomes", {"*": "fail"})
    request = _request("DeleteUserProvisioningEvent", {"UserProvisioningEventId": "e1"})
    assert _call(sandbox, request)[0] == 200
    assert "e1" not in sandbox.events
    assert _code(sandbox, request) == (404, "UserProvisionEventNotFound")


@pytest.mark.parametrize(
    ("code", "status"), [("FlowLimitExceeded", 429), ("OperateTooFrequentlyException", 400)]
)
def test_throttle_next_calls(sandbox: CloudIdentitySandbox, code: str, status: int) -> None:
    """The next N calls are throttled with the chosen code, then calls pass again."""
    _control(sandbox, "POST", "throttle", {"count": 2, "code": code})
    assert _code(sandbox, _request(LIST)) == (status, code)
    assert _code(sandbox, _request(LIST)) == (status, code)
    assert _call(sandbox, _request(LIST))[0] == 200
    assert _control(sandbox, "GET", "stats")["rejected"] == {code: 2}


def test_throttle_rate(sandbox: CloudIdentitySandbox) -> None:
    """A rate of 1 throttles everything; 0 nothing."""
    _control(sandbox, "POST", "throttle", {"rate": 1.0})
    assert _code(sandbox, _request(LIST))[1] == "FlowLimitExceeded"
    _control(sandbox, "POST", "throttle", {"rate": 0.0})
    assert _call(sandbox, _request(LIST))[0] == 200


def test_control_endpoints(sandbox: CloudIdentitySandbox) -> None:
    """Seeded events get defaults; credentials can be added; reset clears everything."""
    seeded = _control(sandbox, "POST", "events", [{}])["events"][0]
    assert seeded["UserProvisioningEventId"].startswith("upe-")
    assert seeded["EventStatus"] == "ProvisionFailed"
    assert len(_control(sandbox, "GET", "events")["events"]) == 4
    _control(sandbox, "POST", "credentials", {"access_key": "AK2", "secret_key": "SK2"})
    assert _call(sandbox, _request(LIST, ak="AK2", sk="SK2"))[0] == 200
    _control(sandbox, "POST", "reset")
    assert _control(sandbox, "GET", "events")["events"] == []
    assert _code(sandbox, _request(LIST, ak="AK2", sk="SK2"))[1] == "InvalidAccessKey"
    bad = sandbox.handle(
        Request(
            method="POST",
            path="/_sandbox/cloudidentity/outcomes",
            query={},
            raw_query="",
            headers={},
            host=HOST,
            body=b'{"e1": "explode"}',
        )
    )
    assert bad is not None
    assert bad.status == 400


def test_generate_ten_thousand_events(clock: Clock) -> None:
    """The benchmark seed: 10,000 events in one control call."""
    sandbox = build_cloudidentity(clock=clock)
    _control(
        sandbox,
        "POST",
        "events/generate",
        {"count": 10_000, "EventStatus": "DeleteProvisionFailed"},
    )
    assert _control(sandbox, "GET", "stats")["events"] == 10_000
    assert _list(sandbox, EventStatus=["DeleteProvisionFailed"], PageSize=100)["Total"] == 10_000


# -- over a real server --------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[str, CloudIdentitySandbox]]:
    """A real-clock sandbox on loopback with 150 failed events."""
    sandbox = build_cloudidentity()
    with running([sandbox]) as url:
        httpx.post(f"{url}/_sandbox/cloudidentity/events/generate", json={"count": 150})
        yield url, sandbox


def _our_client(url: str, sleeps: list[float]) -> CloudIdentityClient:
    settings = CloudIdentitySettings(
        url=url, credentials=signing.Credentials(access_key=AK, secret_key=SK)
    )
    return CloudIdentityClient(settings, sleep=sleeps.append)


def test_our_client_against_the_sandbox(served: tuple[str, CloudIdentitySandbox]) -> None:
    """Our client pages, retries through throttling, and resolves events over HTTP."""
    url, _ = served
    sleeps: list[float] = []
    with _our_client(url, sleeps) as client:
        events = client.list_provisioning_events()
        assert len(events) == 150
        assert client.calls == 2
        httpx.post(f"{url}/_sandbox/cloudidentity/throttle", json={"count": 2})
        client.retry_provisioning_event(events[0].event_id)
        assert len(sleeps) == 2
        httpx.post(f"{url}/_sandbox/cloudidentity/outcomes", json={events[1].event_id: "fail"})
        client.retry_provisioning_event(events[1].event_id)
        with pytest.raises(CloudIdentityError) as info:
            client.retry_provisioning_event(events[0].event_id)
        assert (info.value.code, info.value.http_status) == ("UserProvisionEventNotFound", 404)
        assert len(client.list_provisioning_events()) == 149
    stats = httpx.get(f"{url}/_sandbox/cloudidentity/stats").json()
    assert stats["retries"][events[0].event_id] == 2
    assert stats["rejected"]["FlowLimitExceeded"] == 2


def test_a_lost_response_over_http(served: tuple[str, CloudIdentitySandbox]) -> None:
    """A dropped connection after a processed Retry surfaces as maybe_sent, sent once."""
    url, sandbox = served
    event_id = next(iter(sandbox.events))
    httpx.post(f"{url}/_sandbox/cloudidentity/outcomes", json={event_id: "lost"})
    with _our_client(url, []) as client, pytest.raises(TransportError) as info:
        client.retry_provisioning_event(event_id)
    assert info.value.maybe_sent
    assert sandbox.stats()["retries"] == {event_id: 1}
    assert event_id not in sandbox.events


def _vendor_api(url: str, sk: str = SK) -> vendor.CLOUDIDENTITYApi:
    configuration = volcenginesdkcore.Configuration()
    configuration.ak, configuration.sk, configuration.region = AK, sk, "cn-beijing"
    configuration.host = url.removeprefix("http://")
    configuration.scheme = "http"
    configuration.auto_retry = False
    return vendor.CLOUDIDENTITYApi(volcenginesdkcore.ApiClient(configuration))


def test_the_vendor_sdk_against_the_sandbox(served: tuple[str, CloudIdentitySandbox]) -> None:
    """The official CloudIdentity SDK's signed calls verify: proof the sandbox checks real V4."""
    url, sandbox = served
    api = _vendor_api(url)
    page = api.list_user_provisioning_events(
        vendor.ListUserProvisioningEventsRequest(
            event_status=["ProvisionFailed"], page_number=2, page_size=100
        )
    )
    assert page.total == 150
    assert len(page.user_provisioning_event) == 50
    event_id = page.user_provisioning_event[0].user_provisioning_event_id
    api.retry_user_provisioning_event(
        vendor.RetryUserProvisioningEventRequest(user_provisioning_event_id=event_id)
    )
    assert event_id not in sandbox.events
    assert sandbox.stats()["calls"] == {LIST: 1, RETRY: 1}


def test_the_vendor_sdk_with_a_wrong_secret_is_rejected(
    served: tuple[str, CloudIdentitySandbox],
) -> None:
    """The same SDK with a wrong secret key gets SignatureDoesNotMatch."""
    url, sandbox = served
    with pytest.raises(ApiException) as info:
        _vendor_api(url, sk="wrong").list_user_provisioning_events(
            vendor.ListUserProvisioningEventsRequest(page_size=1)
        )
    assert info.value.status == 401
    assert sandbox.stats()["rejected"] == {"SignatureDoesNotMatch": 1}
