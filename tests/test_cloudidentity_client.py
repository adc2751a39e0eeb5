"""CloudIdentityClient against httpx.MockTransport: settings, paging, errors and retries."""

from __future__ import annotations

import datetime as dt
import json
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from reconciler.errors import CloudIdentityError, ConfigError, TransportError
from reconciler.providers.cloudidentity import signing
from reconciler.providers.cloudidentity.client import (
    CloudIdentityClient,
    CloudIdentitySettings,
    ProvisioningEvent,
)
from reconciler.providers.retry import RetryPolicy

NOW = dt.datetime(2025, 3, 10, 10, 10, 42, tzinfo=dt.UTC)
SECRET = "sk-never-show-me"
TOKEN = "sts-token-never-show-me"
SETTINGS = CloudIdentitySettings(
    url="https://open.volcengineapi.com",
    credentials=signing.Credentials(access_key="AKLT1", secret_key=SECRET, session_token=TOKEN),
)
Handler = Callable[[httpx.Request], httpx.Response]


def _ok(action: str, result: dict[str, Any]) -> httpx.Response:
    meta = {
        "RequestId": "req-1",
        "Action": action,
        "Version": "2023-01-01",
        "Service": "cloudidentity",
        "Region": "cn-beijing",
    }
    return httpx.Response(200, json={"ResponseMetadata": meta, "Result": result})


def _error(status: int, code: str, message: str = "boom") -> httpx.Response:
    meta = {
        "RequestId": "req-err",
        "Action": "X",
        "Version": "2023-01-01",
        "Error": {"Code": code, "Message": message, "CodeN": 1},
    }
    return httpx.Response(status, json={"ResponseMetadata": meta})


class TopOfRange(random.Random):
    """A random source that always draws 1.0, so each delay is its bare ceiling."""

    def random(self) -> float:
        """The top of [0, 1]."""
        return 1.0


class Recorder:
    """A MockTransport handler that records requests and answers from a script."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies sent, in order."""
        return [json.loads(request.content) for request in self.requests]


def _client(recorder: Recorder, sleeps: list[float] | None = None) -> CloudIdentityClient:
    record = sleeps if sleeps is not None else []
    return CloudIdentityClient(
        SETTINGS,
        transport=httpx.MockTransport(recorder),
        sleep=record.append,
        rng=TopOfRange(),
        clock=lambda: NOW,
        retry=RetryPolicy(max_attempts=5, base_delay=0.5, multiplier=2.0, max_delay=4.0),
    )


def _event(n: int) -> dict[str, Any]:
    return {
        "UserProvisioningEventId": f"e{n}",
        "UserProvisioningId": f"p{n}",
        "UserId": f"u{n}",
        "UserName": f"user{n}",
        "FailureReason": "why",
        "TargetId": "21",
        "TargetName": "acct",
        "Description": "",
        "CreatedTime": "2025-03-10T10:10:42Z",
        "UpdatedTime": "2025-03-10T10:10:42Z",
        "PrincipalType": "User",
        "EventStatus": "ProvisionFailed",
    }


def _paged_events(total: int) -> Handler:
    events = [_event(n) for n in range(total)]

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        size, number = body["PageSize"], body["PageNumber"]
        page = events[(number - 1) * size : number * size]
        return _ok(
            "ListUserProvisioningEvents",
            {"Total": total, "PageNumber": number, "PageSize": size, "UserProvisioningEvent": page},
        )

    return answer


# -- settings ------------------------------------------------------------------------------


def test_settings_from_env_defaults() -> None:
    """Only the key pair is required; URL and region have the documented defaults."""
    settings = CloudIdentitySettings.from_env(
        {"VOLCENGINE_ACCESS_KEY": "AK", "VOLCENGINE_SECRET_KEY": "SK"}
    )
    assert settings.url == "https://open.volcengineapi.com"
    assert settings.region == "cn-beijing"
    assert settings.credentials.session_token is None


@pytest.mark.parametrize(("raw", "seconds"), [(None, 30.0), ("2.5", 2.5), ("60", 60.0)])
def test_the_timeout_is_configurable_like_the_federation_one(
    raw: str | None, seconds: float
) -> None:
    """RECONCILER_CLOUDIDENTITY_TIMEOUT sets the per-call timeout (default 30 s)."""
    env = {"VOLCENGINE_ACCESS_KEY": "AK", "VOLCENGINE_SECRET_KEY": "SK"}
    if raw is not None:
        env["RECONCILER_CLOUDIDENTITY_TIMEOUT"] = raw
    assert CloudIdentitySettings.from_env(env).timeout == seconds


@pytest.mark.parametrize("raw", ["soon", "0", "-1", "nan"])
def test_a_bad_timeout_is_refused(raw: str) -> None:
    """A timeout that is not a positive number is a ConfigError naming the variable."""
    env = {
        "VOLCENGINE_ACCESS_KEY": "AK",
        "VOLCENGINE_SECRET_KEY": "SK",
        "RECONCILER_CLOUDIDENTITY_TIMEOUT": raw,
    }
    with pytest.raises(ConfigError, match="RECONCILER_CLOUDIDENTITY_TIMEOUT"):
        CloudIdentitySettings.from_env(env)


def test_the_configured_timeout_bounds_a_silent_server() -> None:
    """A server that accepts and never answers costs the configured timeout, not 30 s."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        settings = CloudIdentitySettings.from_env(
            {
                "VOLCENGINE_ACCESS_KEY": "AK",
                "VOLCENGINE_SECRET_KEY": "SK",
                "RECONCILER_CLOUDIDENTITY_URL": f"http://127.0.0.1:{port}",
                "RECONCILER_CLOUDIDENTITY_TIMEOUT": "0.2",
            }
        )
        client = CloudIdentityClient(settings, retry=RetryPolicy(max_attempts=1))
        started = time.monotonic()
        with client, pytest.raises(TransportError, match="timed out waiting for the answer"):
            client.list_provisioning_events()
        assert time.monotonic() - started < 5


def test_settings_name_every_missing_key() -> None:
    """A ConfigError names all missing settings at once."""
    with pytest.raises(ConfigError) as info:
        CloudIdentitySettings.from_env({})
    assert "VOLCENGINE_ACCESS_KEY" in str(info.value)
    assert "VOLCENGINE_SECRET_KEY" in str(info.value)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://open.volcengineapi.com/", True),
        ("http://127.0.0.1:8080", True),
        ("http://[::1]:8080", True),
        ("http://localhost:9000", True),
        ("http://open.volcengineapi.com", False),
        ("http://10.0.0.1", False),
        ("ftp://127.0.0.1", False),
        ("open.volcengineapi.com", False),
    ],
)
def test_plain_http_only_on_loopback(url: str, ok: bool) -> None:
    """http is accepted only for loopback hosts; anything else must be https."""
    env = {
        "VOLCENGINE_ACCESS_KEY": "AK",
        "VOLCENGINE_SECRET_KEY": "SK",
        "RECONCILER_CLOUDIDENTITY_URL": url,
        "VOLCENGINE_SESSION_TOKEN": "t",
        "VOLCENGINE_REGION": "cn-shanghai",
    }
    if ok:
        settings = CloudIdentitySettings.from_env(env)
        assert not settings.url.endswith("/")
        assert settings.region == "cn-shanghai"
        assert settings.credentials.session_token == "t"
    else:
        with pytest.raises(ConfigError):
            CloudIdentitySettings.from_env(env)


# -- requests and paging -------------------------------------------------------------------


def test_every_call_is_a_signed_post_with_action_and_version() -> None:
    """Action and Version travel in the query; the JSON body is signed as sent."""
    recorder = Recorder(_ok("RetryUserProvisioningEvent", {}))
    _client(recorder).retry_provisioning_event("e1")
    (request,) = recorder.requests
    assert request.method == "POST"
    assert request.url.path == "/"
    assert dict(request.url.params) == {
        "Action": "RetryUserProvisioningEvent",
        "Version": "2023-01-01",
    }
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(request.content) == {"UserProvisioningEventId": "e1"}
    verdict = signing.verify(
        method="POST",
        path="/",
        query=urllib.parse.parse_qsl(request.url.query.decode()),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=request.content,
        secrets={"AKLT1": SECRET},
        now=NOW,
        service="cloudidentity",
    ).verdict
    assert verdict is signing.Verdict.OK
    assert request.headers["x-security-token"] == TOKEN


def test_lists_every_page() -> None:
    """250 events come back from three pages of 100, in order, all fields parsed."""
    recorder = Recorder(_paged_events(250))
    client = _client(recorder)
    events = client.list_provisioning_events()
    assert [event.event_id for event in events] == [f"e{n}" for n in range(250)]
    assert [body["PageNumber"] for body in recorder.bodies()] == [1, 2, 3]
    assert recorder.bodies()[0]["EventStatus"] == ["ProvisionFailed", "DeleteProvisionFailed"]
    assert recorder.bodies()[0]["PageSize"] == 100
    assert client.calls == 3
    assert events[7] == ProvisioningEvent(
        event_id="e7",
        provisioning_id="p7",
        user_id="u7",
        user_name="user7",
        failure_reason="why",
        target_id="21",
        target_name="acct",
        description="",
        created_time="2025-03-10T10:10:42Z",
        updated_time="2025-03-10T10:10:42Z",
        principal_type="User",
        event_status="ProvisionFailed",
    )


def test_an_exact_multiple_of_the_page_size_stops_without_an_empty_page() -> None:
    """200 events take two calls: Total says when to stop."""
    recorder = Recorder(_paged_events(200))
    assert len(_client(recorder).list_provisioning_events(statuses=("ProvisionFailed",))) == 200
    assert len(recorder.requests) == 2


def test_a_shrinking_total_ends_on_an_empty_page() -> None:
    """Events resolved while paging end the walk instead of looping."""
    recorder = Recorder(
        _ok("L", {"Total": 150, "UserProvisioningEvent": [_event(n) for n in range(100)]}),
        _ok("L", {"Total": 150, "UserProvisioningEvent": []}),
    )
    assert len(_client(recorder).list_provisioning_events()) == 100
    assert len(recorder.requests) == 2


def test_lists_user_provisionings_for_an_account() -> None:
    """ListUserProvisionings sends AccountId and reads UserProvisionings."""
    item = {
        "UserProvisioningId": "p1",
        "PrincipalId": "u1",
        "PrincipalType": "User",
        "TargetId": "21",
        "IdentitySourceStrategy": "Create",
        "DeletionStrategy": "Keep",
    }
    recorder = Recorder(_ok("ListUserProvisionings", {"Total": 1, "UserProvisionings": [item]}))
    (provisioning,) = _client(recorder).list_user_provisionings(account_id="21")
    assert recorder.bodies() == [{"AccountId": "21", "PageNumber": 1, "PageSize": 100}]
    assert provisioning.provisioning_id == "p1"
    assert provisioning.identity_source_strategy == "Create"


def test_page_size_is_bounded() -> None:
    """Page sizes outside 1..100 are a programming error, caught before any call."""
    with pytest.raises(ValueError, match="page_size"):
        _client(Recorder(_ok("L", {}))).list_provisioning_events(page_size=101)


# -- errors and retries --------------------------------------------------------------------


def test_error_envelope_becomes_cloudidentity_error() -> None:
    """Code, HTTP status and request id are kept; a 404 is not retried."""
    recorder = Recorder(_error(404, "UserProvisionEventNotFound", "User provision event is gone"))
    with pytest.raises(CloudIdentityError) as info:
        _client(recorder).retry_provisioning_event("e1")
    error = info.value
    assert (error.code, error.http_status, error.request_id) == (
        "UserProvisionEventNotFound",
        404,
        "req-err",
    )
    assert "RetryUserProvisioningEvent" in str(error)
    assert "UserProvisionEventNotFound" in str(error)
    assert error.hint is not None
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (429, "FlowLimitExceeded"),
        (429, "RequestLimitExceeded"),
        (400, "OperateTooFrequentlyException"),
        (400, "ConcurrentException"),
        (500, "InternalError"),
        (503, "ServiceUnavailableTemp"),
        (504, "InternalServiceTimeout"),
    ],
)
def test_transient_errors_are_retried(status: int, code: str) -> None:
    """Throttling, 5xx and ConcurrentException are retried after a backoff."""
    sleeps: list[float] = []
    recorder = Recorder(_error(status, code), _ok("RetryUserProvisioningEvent", {}))
    client = _client(recorder, sleeps)
    client.retry_provisioning_event("e1")
    assert len(recorder.requests) == 2
    assert sleeps == [0.5]
    assert (client.counter.calls, client.counter.retries) == (2, 1)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "ParamMissing"),
        (400, "UserProvisionEventStatusException"),
        (401, "SignatureDoesNotMatch"),
        (403, "InvalidTimestamp"),
        (404, "UserProvisionNotFound"),
        (409, "UserProvisionEventRetryConflict"),
    ],
)
def test_other_errors_are_not_retried(status: int, code: str) -> None:
    """Every other 4xx is raised at once."""
    sleeps: list[float] = []
    recorder = Recorder(_error(status, code), _ok("X", {}))
    with pytest.raises(CloudIdentityError) as info:
        _client(recorder, sleeps).delete_provisioning_event("e1")
    assert info.value.code == code
    assert len(recorder.requests) == 1
    assert sleeps == []


def test_backoff_grows_to_the_cap_then_gives_up() -> None:
    """Exponential delays, capped, and the last error after max_attempts calls."""
    sleeps: list[float] = []
    recorder = Recorder(_error(429, "FlowLimitExceeded"))
    with pytest.raises(CloudIdentityError) as info:
        _client(recorder, sleeps).list_provisioning_events()
    assert info.value.code == "FlowLimitExceeded"
    assert len(recorder.requests) == 5
    assert sleeps == [0.5, 1.0, 2.0, 4.0]


def test_a_non_json_gateway_error_is_retried() -> None:
    """A 502 with an HTML body is a transient error with a synthetic code."""
    recorder = Recorder(
        httpx.Response(502, text="<html>bad gateway</html>"), _ok("RetryUserProvisioningEvent", {})
    )
    _client(recorder).retry_provisioning_event("e1")
    assert len(recorder.requests) == 2


def test_a_200_without_result_is_a_transport_error() -> None:
    """An answer without Result is unusable; a mutation is not resent."""
    recorder = Recorder(httpx.Response(200, json={"ResponseMetadata": {}}))
    with pytest.raises(TransportError) as info:
        _client(recorder).retry_provisioning_event("e1")
    assert info.value.maybe_sent
    assert len(recorder.requests) == 1


def test_connect_errors_are_retried_for_mutations() -> None:
    """Nothing was sent when the connection failed, so even a Retry is resent."""
    recorder = Recorder(httpx.ConnectError("refused"), _ok("RetryUserProvisioningEvent", {}))
    _client(recorder).retry_provisioning_event("e1")
    assert len(recorder.requests) == 2


@pytest.mark.parametrize(
    "lost",
    [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("disconnected"), httpx.ReadError("x")],
)
def test_a_lost_response_to_a_mutation_is_never_resent(lost: Exception) -> None:
    """Retry whose answer was lost: TransportError(maybe_sent=True) after exactly one call."""
    recorder = Recorder(lost, _ok("RetryUserProvisioningEvent", {}))
    with pytest.raises(TransportError) as info:
        _client(recorder).retry_provisioning_event("e1")
    assert info.value.maybe_sent is True
    assert isinstance(info.value.__cause__, httpx.HTTPError)
    assert len(recorder.requests) == 1


def test_a_lost_response_to_a_list_is_retried() -> None:
    """List actions are read-only, so a lost page is simply fetched again."""
    recorder = Recorder(httpx.ReadTimeout("slow"), _paged_events(3))
    assert len(_client(recorder).list_provisioning_events()) == 3
    assert len(recorder.requests) == 2


def test_secrets_never_appear_in_errors_or_reprs() -> None:
    """No error, hint, cause, client or settings text contains the secret key or token."""
    failures: list[BaseException] = []
    for answer in (
        _error(401, "SignatureDoesNotMatch"),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(200, text="nope"),
    ):
        try:
            _client(Recorder(answer)).delete_provisioning_event("e1")
        except (CloudIdentityError, TransportError) as error:
            failures.append(error)
    assert len(failures) == 4
    texts = [repr(SETTINGS), str(SETTINGS), repr(_client(Recorder(_ok("X", {}))))]
    for failure in failures:
        texts += [
            str(failure),
            repr(failure),
            str(getattr(failure, "hint", "")),
            repr(failure.__cause__),
        ]
    for text in texts:
        assert SECRET not in text
        assert TOKEN not in text


class _WatchedLock:
    """A lock that sets ``contended`` when a second thread is kept waiting at it."""

    def __init__(self, contended: threading.Event) -> None:
        self._lock = threading.Lock()
        self.contended = contended

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self.contended.set()
            self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_mutations_are_sent_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """While one Retry is in flight, a second one from another thread waits for it."""
    inside = threading.Event()
    second_arrived = threading.Event()
    decided = threading.Event()  # the second call arrived (broken) or waits at the lock
    overlapped: list[bool] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if inside.is_set():
            second_arrived.set()
            decided.set()
        else:
            inside.set()
            # No time window decides it: stay inside until the second call is either here
            # or provably held at the lock. The deadline is reached only when both are broken.
            assert decided.wait(timeout=30), "the second call neither arrived nor waited"
            overlapped.append(second_arrived.is_set())
        return _ok("RetryUserProvisioningEvent", {})

    client = _client(Recorder(answer))
    # Observed, not replaced in kind: the client serialises on it exactly as on its own.
    monkeypatch.setattr(client, "_mutation_lock", _WatchedLock(decided))
    first = threading.Thread(target=client.retry_provisioning_event, args=("e1",))
    first.start()
    assert inside.wait(timeout=30)
    second = threading.Thread(target=client.delete_provisioning_event, args=("e2",))
    second.start()
    first.join(timeout=30)
    second.join(timeout=30)
    assert overlapped == [False]
    assert second_arrived.is_set()
    assert client.calls == 2
