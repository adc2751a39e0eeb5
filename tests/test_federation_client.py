"""The federation-user API client against a scripted httpx.MockTransport: no sockets, no sleeps."""

from __future__ import annotations

import json
import random
import ssl
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import certifi
import httpx
import pytest

from reconciler import values
from reconciler.errors import ConfigError, FederationError, ReconcilerError, TransportError
from reconciler.providers import urls
from reconciler.providers.federation.client import (
    BatchRefused,
    CallCounts,
    Endpoint,
    FederationClient,
    FederationSettings,
    TaskState,
    settings_from_env,
)
from reconciler.providers.federation.replies import RESULT_CODES
from reconciler.providers.retry import RetryPolicy

BASE = "https://fed.example.test"
APP_KEY = "ak-0001"
SECRET = "app-SECRET-8f2c"
TOKEN_PREFIX = "TOKEN-b7e1-"
TASK_ID = "1659444411225432066"
ROLE = "1672380646005741634"
OTHER_ROLE = "1672380646005741999"
TOKEN, CREATE, QUERY = (
    e.value for e in (Endpoint.TOKEN, Endpoint.CREATE_TASK, Endpoint.QUERY_TASK)
)

# A step of a script: a canned response, or an httpx exception class to raise.
Step = httpx.Response | type[httpx.RequestError]


def ok_create() -> httpx.Response:
    """The documented success body of createTask."""
    return httpx.Response(200, json={"resultCode": "0", "resultMessage": "ok", "taskId": TASK_ID})


def ok_query(failures: Iterable[Mapping[str, Any]] = ()) -> httpx.Response:
    """A queryTask body for a DONE task with the given failed entries."""
    return httpx.Response(
        200,
        json={
            "resultCode": "0",
            "resultMessage": "ok",
            "taskInfo": {"status": "DONE", "remark": "finished"},
            "failDataList": list(failures),
        },
    )


def code_body(code: str, status: int = 200, message: str = "失败") -> httpx.Response:
    """A business failure body with ``resultCode``."""
    return httpx.Response(status, json={"resultCode": code, "resultMessage": message})


class FakeApi:
    """A scripted federation API: each path answers from its script, then succeeds."""

    def __init__(
        self,
        *,
        create: Iterable[Step] = (),
        query: Iterable[Step] = (),
        token: Iterable[Step] = (),
        expires: str = "600",
    ) -> None:
        self.scripts = {CREATE: list(create), QUERY: list(query), TOKEN: list(token)}
        self.defaults: dict[str, Callable[[], httpx.Response]] = {
            CREATE: ok_create,
            QUERY: ok_query,
            TOKEN: self._issue_token,
        }
        self.expires = expires
        self.requests: list[httpx.Request] = []
        self.issued = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Answer one request from the script of its path."""
        self.requests.append(request)
        script = self.scripts[request.url.path]
        step = script.pop(0) if script else self.defaults[request.url.path]()
        if isinstance(step, type):
            raise step("simulated failure", request=request)
        return step

    def _issue_token(self) -> httpx.Response:
        self.issued += 1
        return httpx.Response(
            200,
            json={
                "AccessToken": f"{TOKEN_PREFIX}{self.issued}",
                "ApplyType": "Bearer",
                "CreateTime": "1",  # a server clock decades off must not matter
                "Expires": self.expires,
                "Scope": "x",
                "AppKey": APP_KEY,
                "UserID": "Anonymous",
            },
        )

    def calls(self, path: str) -> list[httpx.Request]:
        """The requests made to ``path``, in order."""
        return [r for r in self.requests if r.url.path == path]


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        """The current time."""
        return self.now


class MaxJitter(random.Random):
    """Jitter that always draws the ceiling, so delays show the bare exponential."""

    def uniform(self, a: float, b: float) -> float:
        """The upper bound."""
        return b


def make_settings(**overrides: Any) -> FederationSettings:
    """Settings for the fake API, with overrides."""
    values: dict[str, Any] = {
        "base_url": BASE,
        "app_key": APP_KEY,
        "app_secret": SECRET,
        "tenant_space_id": "ts-42",
    }
    return FederationSettings(**(values | overrides))


def make_client(
    api: FakeApi,
    *,
    clock: Clock | None = None,
    attempts: int = 4,
    rng: random.Random | None = None,
    **settings: Any,
) -> tuple[FederationClient, list[float]]:
    """A client on ``api`` whose sleeps are recorded, not slept."""
    sleeps: list[float] = []
    client = FederationClient(
        make_settings(**settings),
        transport=httpx.MockTransport(api),
        retry=RetryPolicy(max_attempts=attempts, base_delay=1.0, max_delay=60.0),
        sleep=sleeps.append,
        clock=clock or Clock(),
        rng=rng or MaxJitter(),
    )
    return client, sleeps


def user(account: str, **fields: object) -> dict[str, object]:
    """A valid CREATE entry for ``account``, with overrides."""
    entry: dict[str, object] = {
        "action": "CREATE",
        "userAccount": account,
        "userName": "Ann Lee",
        "email": f"{account or 'x'}@example.com",
        "roleIds": [ROLE],
    }
    return entry | fields


# --- token ---------------------------------------------------------------------------


def test_one_token_serves_many_calls_and_every_call_carries_the_headers() -> None:
    """A single token call covers a run; each API call sends the documented headers."""
    api = FakeApi()
    client, _ = make_client(api)
    for _ in range(3):
        assert client.create_task([user("ann")]) == TASK_ID
    client.query_task(TASK_ID)
    client.query_task(TASK_ID)

    (token_call,) = api.calls(TOKEN)
    assert json.loads(token_call.content) == {"app_key": APP_KEY, "app_secret": SECRET}
    assert token_call.headers["X-Token-Expire"] == "3600"
    assert token_call.headers["Content-Type"] == "application/json;charset=UTF-8"
    for request in api.calls(CREATE) + api.calls(QUERY):
        assert request.headers["Content-Type"] == "application/json;charset=UTF-8"
        assert request.headers["X-APP-Key"] == APP_KEY
        assert request.headers["Authorization"] == f"Bearer {TOKEN_PREFIX}1"
        assert request.headers["X-TenantSpaceID"] == "ts-42"


def test_tenant_header_is_omitted_when_not_configured() -> None:
    """X-TenantSpaceID is sent only when a tenant space is configured."""
    api = FakeApi()
    client, _ = make_client(api, tenant_space_id=None)
    client.create_task([user("ann")])
    assert all("X-TenantSpaceID" not in r.headers for r in api.requests)


@pytest.mark.parametrize(
    ("elapsed", "tokens"),
    [(0, 1), (539, 1), (540, 2), (599, 2), (3600, 2)],
)
def test_token_is_renewed_a_minute_before_expiry(elapsed: float, tokens: int) -> None:
    """A 600 s token is renewed from 540 s on the local clock, whatever CreateTime says."""
    api, clock = FakeApi(expires="600"), Clock()
    client, _ = make_client(api, clock=clock)
    client.create_task([user("ann")])
    clock.now += elapsed
    client.query_task(TASK_ID)
    assert len(api.calls(TOKEN)) == tokens
    assert api.calls(QUERY)[0].headers["Authorization"] == f"Bearer {TOKEN_PREFIX}{tokens}"


@pytest.mark.parametrize("path", [CREATE, QUERY])
def test_401_renews_the_token_once_and_retries_once(path: str) -> None:
    """One 401 fetches a fresh token and repeats the call with it."""
    script = [httpx.Response(401)]
    api = FakeApi(create=script) if path == CREATE else FakeApi(query=script)
    client, sleeps = make_client(api)
    if path == CREATE:
        assert client.create_task([user("ann")]) == TASK_ID
    else:
        assert client.query_task(TASK_ID).status is TaskState.DONE
    first, second = api.calls(path)
    assert first.headers["Authorization"] == f"Bearer {TOKEN_PREFIX}1"
    assert second.headers["Authorization"] == f"Bearer {TOKEN_PREFIX}2"
    assert sleeps == []


@pytest.mark.parametrize("path", [CREATE, QUERY])
def test_401_twice_is_an_error_naming_service_and_account(path: str) -> None:
    """A fresh token refused again is reported, not retried further."""
    script = [httpx.Response(401), httpx.Response(401, text="Unauthorized")]
    api = FakeApi(create=script) if path == CREATE else FakeApi(query=script)
    client, sleeps = make_client(api)
    with pytest.raises(FederationError) as caught:
        client.create_task([user("ann")]) if path == CREATE else client.query_task(TASK_ID)
    assert caught.value.code == "http-401"
    assert "service" in (caught.value.hint or "")
    assert "account" in (caught.value.hint or "")
    assert len(api.calls(path)) == 2
    assert len(api.calls(TOKEN)) == 2
    assert sleeps == []


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_credentials_say_which_variables_to_check(status: int) -> None:
    """Bad app key/secret stop before createTask with a message naming the variables."""
    api = FakeApi(token=[httpx.Response(status)])
    client, _ = make_client(api)
    with pytest.raises(FederationError, match="RECONCILER_FEDERATION_APP_KEY/SECRET"):
        client.create_task([user("ann")])
    assert api.calls(CREATE) == []
    assert len(api.calls(TOKEN)) == 1


def test_token_call_is_retried_on_transient_failures() -> None:
    """The token call is idempotent, so lost answers and 503s are retried."""
    api = FakeApi(token=[httpx.Response(503), httpx.ReadTimeout, httpx.ConnectError])
    client, sleeps = make_client(api)
    assert client.create_task([user("ann")]) == TASK_ID
    assert len(api.calls(TOKEN)) == 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_token_failures_are_not_retried_again_by_the_call() -> None:
    """An exhausted token fetch gives up once: attempts do not multiply."""
    api = FakeApi(token=[httpx.Response(503)] * 20)
    client, _ = make_client(api, attempts=3)
    with pytest.raises(TransportError) as caught:
        client.create_task([user("ann")])
    assert caught.value.maybe_sent is False
    assert len(api.calls(TOKEN)) == 3
    assert api.calls(CREATE) == []


def test_token_body_without_access_token_is_unusable() -> None:
    """A token answer missing AccessToken/Expires is a TransportError, nothing else is sent."""
    api = FakeApi(token=[httpx.Response(200, json={"Expires": "600"})] * 2)
    client, _ = make_client(api, attempts=2)
    with pytest.raises(TransportError, match="AccessToken") as caught:
        client.create_task([user("ann")])
    assert caught.value.maybe_sent is False
    assert api.calls(CREATE) == []


# --- createTask ----------------------------------------------------------------------


def test_create_task_sends_entries_and_keeps_ids_as_strings() -> None:
    """The body is the documented federationUserList; the task id comes back as a string."""
    api = FakeApi()
    client, _ = make_client(api)
    entries: list[Mapping[str, object]] = [
        user("ann", roleIds=(ROLE, OTHER_ROLE)),
        {"action": "DISABLE", "userAccount": "bo"},
    ]
    task_id = client.create_task(entries)
    assert task_id == TASK_ID
    assert isinstance(task_id, str)
    (request,) = api.calls(CREATE)
    sent = json.loads(request.content)
    assert sent == {"federationUserList": [user("ann", roleIds=[ROLE, OTHER_ROLE]), entries[1]]}


OK_A = user("a")
DISABLE_D = {"action": "DISABLE", "userAccount": "d", "userName": "n" * 30, "roleIds": ["x"]}

# code -> (entries sent, the account the error must name, or None)
CODE_CASES: dict[str, tuple[list[Mapping[str, object]], str | None]] = {
    "100-102": ([], None),
    "100-103": ([user(f"u{i}") for i in range(101)], None),
    "100-104": ([OK_A, {"action": "DELETE", "userAccount": "b"}], "b"),
    "100-113": ([OK_A], None),
    "100-202": ([OK_A, DISABLE_D, user("b", roleIds=["1" * 20])], "b"),
    "100-204": ([OK_A, user("")], None),
    "100-205": ([OK_A, user("x" * 51)], "x" * 51),
    "100-207": ([OK_A, user("b c")], "b c"),
    "100-208": ([OK_A, DISABLE_D, user("b", roleIds=["12a"])], "b"),
    "100-209": ([OK_A, user("b", userName="")], "b"),
    "100-210": ([OK_A, user("b", userName="a<b")], "b"),
    "100-211": ([OK_A, DISABLE_D, user("b", email="")], "b"),
    "100-212": ([OK_A, user("b", email="not-an-email")], "b"),
    "100-213": ([OK_A, DISABLE_D, user("b", userName="n" * 21)], "b"),
    "100-214": ([OK_A, user("b", email="l" * 65 + "@example.com")], "b"),
    "100-215": ([OK_A, user("b", roleIds=[str(10**18 + i) for i in range(11)])], "b"),
    "100-216": ([OK_A], None),
    "100-217": (
        [
            OK_A,
            {"action": "DISABLE", "userAccount": "d", "roleIds": [OTHER_ROLE]},
            user("b", roleIds=[OTHER_ROLE]),
            user("c", roleIds=[OTHER_ROLE]),
        ],
        "b",
    ),
}


def test_every_documented_code_has_a_case() -> None:
    """The code table, the cases below and the vendor's list are the same set."""
    documented = {"100-102", "100-103", "100-104", "100-113", "100-202", "100-204"} | {
        f"100-{n}" for n in range(205, 218) if n != 206
    }
    assert set(RESULT_CODES) == set(CODE_CASES) == documented


@pytest.mark.parametrize("status", [200, 500])
@pytest.mark.parametrize("code", sorted(CODE_CASES))
def test_each_result_code_maps_to_an_english_message(code: str, status: int) -> None:
    """Every code becomes a FederationError keeping the code, the status and the culprit."""
    entries, account = CODE_CASES[code]
    message = f"租间不存在该角色,角色Id: {OTHER_ROLE}" if code == "100-217" else "失败"
    api = FakeApi(create=[code_body(code, status, message)])
    client, _ = make_client(api, attempts=1)
    with pytest.raises(FederationError) as caught:
        client.create_task(entries)
    error = caught.value
    assert (error.code, error.http_status, error.account) == (code, status, account)
    assert f"resultCode {code}" in str(error)
    assert "undocumented" not in str(error)
    assert error.hint
    if account is not None:
        assert f"account '{account}'" in str(error)
    assert len(api.calls(CREATE)) == 1


def test_unknown_role_names_every_account_carrying_it() -> None:
    """100-217 names the role from the API's message and all accounts that use it."""
    entries, _ = CODE_CASES["100-217"]
    api = FakeApi(create=[code_body("100-217", 500, f"租间不存在该角色,角色Id: {OTHER_ROLE}")])
    client, _ = make_client(api)
    with pytest.raises(FederationError) as caught:
        client.create_task(entries)
    assert OTHER_ROLE in str(caught.value)
    assert "account 'b'" in str(caught.value)
    assert "account 'c'" in str(caught.value)
    assert "account 'a'" not in str(caught.value)
    assert "account 'd'" not in str(caught.value)  # DISABLE ignores roleIds


def test_refusals_carry_every_account_they_blame() -> None:
    """100-217 blames every user of the role; a rule's code blames every entry breaking it."""
    entries, _ = CODE_CASES["100-217"]
    api = FakeApi(
        create=[
            code_body("100-217", 200, f"租间不存在该角色,角色Id: {OTHER_ROLE}"),
            code_body("100-213"),
            code_body("999-999"),
        ]
    )
    client, _ = make_client(api)
    with pytest.raises(BatchRefused) as role:
        client.create_task(entries)
    assert (role.value.culprits, role.value.role_id) == (("b", "c"), OTHER_ROLE)
    long_names = [user("x", userName="N" * 21), OK_A, user("y", userName="M" * 30)]
    with pytest.raises(BatchRefused) as rule:
        client.create_task(long_names)
    assert (rule.value.culprits, rule.value.account) == (("x", "y"), "x")
    with pytest.raises(BatchRefused) as unnamed:
        client.create_task([OK_A])
    assert unnamed.value.culprits == ()


def test_empty_account_is_named_by_position() -> None:
    """An entry without an account is located by its position in the batch."""
    api = FakeApi(create=[code_body("100-204")])
    client, _ = make_client(api)
    with pytest.raises(FederationError, match="entry 2"):
        client.create_task(CODE_CASES["100-204"][0])


def test_undocumented_code_keeps_the_code() -> None:
    """A code the documentation does not list is still reported with that code."""
    api = FakeApi(create=[code_body("999-999", 500)])
    client, _ = make_client(api)
    with pytest.raises(FederationError, match="undocumented resultCode 999-999") as caught:
        client.create_task([OK_A])
    assert caught.value.code == "999-999"
    assert len(api.calls(CREATE)) == 1


RETRIED_ON_CREATE: list[Callable[[], Step]] = [
    lambda: httpx.Response(429),
    lambda: httpx.Response(502, text="Bad Gateway"),
    lambda: httpx.Response(503),
    lambda: httpx.ConnectError,
    lambda: httpx.ConnectTimeout,
    lambda: httpx.PoolTimeout,
    lambda: code_body("100-216"),
    lambda: code_body("100-216", 500),
]
STEP_IDS = ["429", "502", "503", "ConnectError", "ConnectTimeout", "PoolTimeout", "216", "216/500"]


@pytest.mark.parametrize("step", RETRIED_ON_CREATE, ids=STEP_IDS)
def test_create_task_retries_when_nothing_was_processed(step: Callable[[], Step]) -> None:
    """Failures before the server acted are retried with growing waits, then succeed."""
    api = FakeApi(create=[step(), step()])
    client, sleeps = make_client(api)
    assert client.create_task([OK_A]) == TASK_ID
    assert len(api.calls(CREATE)) == 3
    assert sleeps == [1.0, 2.0]


@pytest.mark.parametrize("step", RETRIED_ON_CREATE, ids=STEP_IDS)
def test_create_task_retries_are_bounded(step: Callable[[], Step]) -> None:
    """After max_attempts the last error is raised; waits double each time."""
    api = FakeApi(create=[step() for _ in range(10)])
    client, sleeps = make_client(api, attempts=5)
    with pytest.raises((TransportError, FederationError)) as caught:
        client.create_task([OK_A])
    assert len(api.calls(CREATE)) == 5
    assert sleeps == [1.0, 2.0, 4.0, 8.0]
    if isinstance(caught.value, TransportError):
        assert caught.value.maybe_sent is False


def test_retry_waits_are_jittered_within_exponential_bounds() -> None:
    """With real jitter every wait lies in [0, base * 2**n] and they are not all equal."""
    api = FakeApi(create=[httpx.Response(503)] * 7)
    client, sleeps = make_client(api, attempts=8, rng=random.Random(1))
    client.create_task([OK_A])
    assert len(sleeps) == 7
    for retry, delay in enumerate(sleeps):
        assert 0.0 <= delay <= 2.0**retry
    assert any(delay < 2.0**retry / 2 for retry, delay in enumerate(sleeps))  # jittered


@pytest.mark.parametrize(
    ("step", "code"),
    [
        (code_body("100-113"), "100-113"),
        (code_body("100-205", 500), "100-205"),
        (code_body("999-999"), "999-999"),
        (httpx.Response(400, text="Bad Request"), "http-400"),
        (httpx.Response(403), "http-403"),
        (httpx.Response(404, text="<html>Not Found</html>"), "http-404"),
    ],
)
def test_create_task_does_not_retry_rejections(step: httpx.Response, code: str) -> None:
    """Business codes other than 100-216 and 400/403/404 make exactly one call."""
    api = FakeApi(create=[step])
    client, sleeps = make_client(api)
    with pytest.raises(FederationError) as caught:
        client.create_task([user("x" * 51)])
    assert caught.value.code == code
    assert len(api.calls(CREATE)) == 1
    assert sleeps == []


def test_404_says_to_check_the_base_url() -> None:
    """A 404 points at RECONCILER_FEDERATION_URL and the path that must not be in it."""
    api = FakeApi(create=[httpx.Response(404, text="Not Found")])
    client, _ = make_client(api)
    with pytest.raises(FederationError) as caught:
        client.create_task([OK_A])
    assert "RECONCILER_FEDERATION_URL" in (caught.value.hint or "")
    assert CREATE in (caught.value.hint or "")


MAYBE_SENT: list[Callable[[], Step]] = [
    lambda: httpx.ReadTimeout,
    lambda: httpx.WriteTimeout,
    lambda: httpx.ReadError,
    lambda: httpx.WriteError,
    lambda: httpx.RemoteProtocolError,
    lambda: httpx.Response(504),
    lambda: httpx.Response(500, text="<html>oops</html>"),
    lambda: httpx.Response(200, text="not json"),
    lambda: httpx.Response(200, json={"resultCode": "0"}),
    lambda: httpx.Response(200, json={"resultCode": "0", "taskId": 1659444411225432066}),
]
MAYBE_SENT_IDS = [
    "ReadTimeout",
    "WriteTimeout",
    "ReadError",
    "WriteError",
    "RemoteProtocolError",
    "504",
    "500-html",
    "200-not-json",
    "no-taskId",
    "numeric-taskId",
]


@pytest.mark.parametrize("step", MAYBE_SENT, ids=MAYBE_SENT_IDS)
def test_create_task_is_never_resent_once_it_may_have_arrived(step: Callable[[], Step]) -> None:
    """A lost or unusable answer to createTask is reported, never resent."""
    api = FakeApi(create=[step()])
    client, sleeps = make_client(api)
    with pytest.raises(TransportError, match="may exist") as caught:
        client.create_task([OK_A])
    assert caught.value.maybe_sent is True
    assert len(api.calls(CREATE)) == 1
    assert sleeps == []


# --- queryTask -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "step", RETRIED_ON_CREATE[:6] + MAYBE_SENT[:8], ids=STEP_IDS[:6] + MAYBE_SENT_IDS[:8]
)
def test_query_task_is_retried_on_every_transient_failure(step: Callable[[], Step]) -> None:
    """queryTask is read-only, so lost answers and 504s are retried too."""
    api = FakeApi(query=[step(), step()])
    client, sleeps = make_client(api)
    assert client.query_task(TASK_ID).status is TaskState.DONE
    assert len(api.calls(QUERY)) == 3
    assert sleeps == [1.0, 2.0]


def test_query_task_reads_state_and_failed_entries() -> None:
    """Status, remark and each failed entry (as sent) come back; ids stay strings."""
    failed = {"action": "CREATE", "userAccount": "ann", "roleIds": [ROLE], "userName": "Ann"}
    api = FakeApi(
        query=[ok_query([{"federationUser": failed, "failCode": "E1", "failMessage": "exists"}])]
    )
    client, _ = make_client(api)
    status = client.query_task(TASK_ID)
    assert json.loads(api.calls(QUERY)[0].content) == {"taskId": TASK_ID}
    assert (status.task_id, status.status, status.remark) == (TASK_ID, TaskState.DONE, "finished")
    (failure,) = status.failures
    assert (failure.account, failure.fail_code, failure.fail_message) == ("ann", "E1", "exists")
    assert failure.entry["roleIds"] == (ROLE,)
    assert dict(failure.entry) | {"roleIds": [ROLE]} == failed


@pytest.mark.parametrize("status", ["TODO", "DOING"])
def test_query_task_reports_unfinished_tasks(status: str) -> None:
    """TODO and DOING are read as such, with no failures yet."""
    body = {"resultCode": "0", "taskInfo": {"status": status, "remark": ""}}
    api = FakeApi(query=[httpx.Response(200, json=body)])
    client, _ = make_client(api)
    result = client.query_task(TASK_ID)
    assert (result.status, result.failures) == (TaskState(status), ())


@pytest.mark.parametrize(
    "failure",
    [
        lambda: code_body("1", 500, "task not exist"),
        lambda: code_body("100-216", 503),
        lambda: httpx.Response(500, json={"resultCode": "500", "resultMessage": "busy"}),
    ],
    ids=["500-with-resultCode-1", "503-with-resultCode", "500-with-resultCode-500"],
)
def test_query_task_5xx_with_a_result_code_is_retried_not_unknown(
    failure: Callable[[], httpx.Response],
) -> None:
    """queryTask is read-only: a 5xx is the API failing, retried, never "the task is unknown"."""
    api = FakeApi(query=[failure(), failure()])
    client, sleeps = make_client(api)
    assert client.query_task(TASK_ID).status is TaskState.DONE
    assert len(api.calls(QUERY)) == 3
    assert sleeps == [1.0, 2.0]


def test_query_task_5xx_forever_is_a_transport_error_not_an_unknown_task() -> None:
    """After the retries, a 5xx is reported as the API failing; the task stays recorded."""
    api = FakeApi(query=[code_body("1", 500)] * 4)
    client, _ = make_client(api)
    with pytest.raises(TransportError, match="HTTP 500") as caught:
        client.query_task(TASK_ID)
    assert "unknown" not in caught.value.message
    assert len(api.calls(QUERY)) == 4


def test_authenticate_fetches_the_token_once_before_any_call() -> None:
    """authenticate() gets the token; the next call reuses it; bad credentials fail there."""
    api = FakeApi()
    client, _ = make_client(api)
    client.authenticate()
    assert (len(api.calls(TOKEN)), len(api.calls(CREATE))) == (1, 0)
    client.create_task([OK_A])
    assert len(api.calls(TOKEN)) == 1
    refused, _ = make_client(FakeApi(token=[httpx.Response(401)]))
    with pytest.raises(FederationError, match="rejected the app key/secret"):
        refused.authenticate()


def test_reached_counts_only_requests_that_reached_the_server() -> None:
    """Refused connections are not counted; answers (even 503s) and lost answers are."""
    api = FakeApi(
        create=[httpx.ConnectError, httpx.Response(503), ok_create(), httpx.ReadTimeout],
        query=[httpx.ConnectTimeout, httpx.ReadError, ok_query()],
    )
    client, _ = make_client(api)
    assert client.reached() == CallCounts()
    client.create_task([OK_A])
    with pytest.raises(TransportError):
        client.create_task([OK_A])
    client.query_task(TASK_ID)
    assert client.reached() == CallCounts(create_task=3, query_task=2)


def test_query_task_unknown_task_is_an_error() -> None:
    """A resultCode other than "0" (an unknown task) is a FederationError, not retried."""
    api = FakeApi(query=[code_body("1", message="task not exist")])
    client, sleeps = make_client(api)
    with pytest.raises(FederationError, match=TASK_ID) as caught:
        client.query_task(TASK_ID)
    assert caught.value.code == "1"
    assert len(api.calls(QUERY)) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "body",
    [
        {"resultCode": "0"},
        {"resultCode": "0", "taskInfo": {"status": "PAUSED"}},
        {"resultCode": "0", "taskInfo": {"status": "DONE"}, "failDataList": {"a": 1}},
        {"resultCode": "0", "taskInfo": {"status": "DONE"}, "failDataList": [{"failCode": "1"}]},
    ],
)
def test_query_task_unusable_bodies_are_transport_errors(body: dict[str, Any]) -> None:
    """Missing or unknown fields make a TransportError after the bounded retries."""
    api = FakeApi(query=[httpx.Response(200, json=body)] * 2)
    client, _ = make_client(api, attempts=2)
    with pytest.raises(TransportError, match=f"queryTask for task {TASK_ID}"):
        client.query_task(TASK_ID)
    assert len(api.calls(QUERY)) == 2


# --- settings ------------------------------------------------------------------------

REQUIRED = {
    "RECONCILER_FEDERATION_URL": BASE,
    "RECONCILER_FEDERATION_APP_KEY": APP_KEY,
    "RECONCILER_FEDERATION_APP_SECRET": SECRET,
}


@pytest.mark.parametrize(
    "absent",
    [
        tuple(REQUIRED),
        ("RECONCILER_FEDERATION_APP_SECRET",),
        ("RECONCILER_FEDERATION_URL", "RECONCILER_FEDERATION_APP_KEY"),
    ],
)
def test_missing_variables_are_all_named(absent: tuple[str, ...]) -> None:
    """Every missing (or empty) required variable is named in one ConfigError."""
    env = {k: ("" if k == absent[0] else v) for k, v in REQUIRED.items() if k not in absent[1:]}
    with pytest.raises(ConfigError) as caught:
        settings_from_env(env)
    for name in absent:
        assert name in str(caught.value)
    assert all(name not in str(caught.value) for name in set(REQUIRED) - set(absent))
    assert caught.value.hint


def test_settings_read_every_variable() -> None:
    """Optional variables are read; absent ones take their defaults."""
    env = REQUIRED | {
        "RECONCILER_FEDERATION_TENANT_SPACE_ID": "ts-1",
        "RECONCILER_FEDERATION_CA_BUNDLE": "/etc/ca.pem",
        "RECONCILER_FEDERATION_TIMEOUT": "12.5",
    }
    settings = settings_from_env(env)
    assert (settings.base_url, settings.app_key, settings.app_secret) == (BASE, APP_KEY, SECRET)
    assert (settings.tenant_space_id, settings.ca_bundle, settings.timeout) == (
        "ts-1",
        "/etc/ca.pem",
        12.5,
    )
    defaults = settings_from_env(REQUIRED)
    assert (defaults.tenant_space_id, defaults.ca_bundle, defaults.timeout) == (None, None, 30.0)
    assert defaults.token_ttl == 3600


@pytest.mark.parametrize("timeout", ["abc", "0", "-1"])
def test_bad_timeout_is_refused(timeout: str) -> None:
    """A timeout that is not a positive number is a ConfigError."""
    with pytest.raises(ConfigError, match="RECONCILER_FEDERATION_TIMEOUT"):
        settings_from_env(REQUIRED | {"RECONCILER_FEDERATION_TIMEOUT": timeout})


@pytest.mark.parametrize(
    "url",
    [
        "http://service.besclouds.com",
        "http://10.0.0.1:8080",
        "http://127.0.0.1.nip.io",
        "ftp://127.0.0.1",
        "service.besclouds.com",
        "https://",
        "https://host/?q=1",
    ],
)
def test_unsafe_or_malformed_urls_are_refused(url: str) -> None:
    """Only https, or http on loopback, is accepted."""
    with pytest.raises(ConfigError, match="RECONCILER_FEDERATION_URL"):
        settings_from_env(REQUIRED | {"RECONCILER_FEDERATION_URL": url})


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://127.9.9.9", "http://localhost:1", "http://[::1]:8080/"],
)
def test_plain_http_is_allowed_on_loopback(url: str) -> None:
    """The sandbox on loopback may use plain http."""
    assert settings_from_env(REQUIRED | {"RECONCILER_FEDERATION_URL": url}).base_url == url


def test_url_credentials_are_refused_without_echoing_them() -> None:
    """A URL with user:password is refused and the password is not repeated."""
    with pytest.raises(ConfigError) as caught:
        make_settings(base_url=f"https://{APP_KEY}:{SECRET}@fed.example.test")
    assert SECRET not in str(caught.value)


def first_certificate(tmp_path: Path) -> Path:
    """A PEM file holding one real CA certificate (the first of certifi's bundle)."""
    pem = Path(certifi.where()).read_text()
    end = "-----END CERTIFICATE-----"
    start = pem.index("-----BEGIN CERTIFICATE-----")
    path = tmp_path / "ca.pem"
    path.write_text(pem[start : pem.index(end) + len(end)] + "\n")
    return path


def test_ca_bundle_is_what_verify_gets(tmp_path: Path) -> None:
    """A configured CA bundle becomes a verifying SSL context holding exactly that CA."""
    bundle = first_certificate(tmp_path)
    settings = settings_from_env(REQUIRED | {"RECONCILER_FEDERATION_CA_BUNDLE": str(bundle)})
    verify = urls.tls_verify(settings.ca_bundle, variable="RECONCILER_FEDERATION_CA_BUNDLE")
    assert isinstance(verify, ssl.SSLContext)
    assert verify.verify_mode is ssl.CERT_REQUIRED
    assert verify.check_hostname is True
    assert len(verify.get_ca_certs()) == 1


def test_without_ca_bundle_verify_is_true() -> None:
    """Without a bundle httpx verifies against the system CAs; there is no way to say False."""
    verify = urls.tls_verify(make_settings().ca_bundle, variable="RECONCILER_FEDERATION_CA_BUNDLE")
    assert verify is True
    assert not {"verify", "insecure"} & set(values.fields(FederationSettings))


def test_unreadable_ca_bundle_fails_before_anything_is_sent(tmp_path: Path) -> None:
    """A CA bundle that cannot be loaded is a ConfigError at client construction."""
    api = FakeApi()
    with pytest.raises(ConfigError, match="RECONCILER_FEDERATION_CA_BUNDLE"):
        make_client(api, ca_bundle=str(tmp_path / "missing.pem"))
    assert api.requests == []


def test_client_is_a_context_manager() -> None:
    """Leaving the with-block closes the client; a later call is a TransportError, not retried."""
    api = FakeApi()
    client, sleeps = make_client(api)
    with client:
        client.create_task([OK_A])
    with pytest.raises(TransportError, match="createTask was not sent") as caught:
        client.create_task([OK_A])
    assert caught.value.maybe_sent is False
    assert len(api.calls(CREATE)) == 1
    assert sleeps == []


# --- secrets -------------------------------------------------------------------------


def error_paths() -> list[Callable[[], object]]:
    """One callable per error path of the client and its settings."""

    def call(api: FakeApi, action: str = "create", **kw: Any) -> Callable[[], object]:
        def run() -> object:
            client, _ = make_client(api, attempts=2, **kw)
            if action == "create":
                return client.create_task([user("ann")])
            return client.query_task(TASK_ID)

        return run

    paths: list[Callable[[], object]] = [
        call(FakeApi(token=[httpx.Response(401, json={"AccessToken": "x"})])),
        call(FakeApi(token=[httpx.Response(404)])),
        call(FakeApi(token=[httpx.Response(200, json={"Expires": "1"})] * 2)),
        call(FakeApi(token=[httpx.ConnectError] * 2)),
        call(FakeApi(create=[httpx.Response(401)] * 2)),
        call(FakeApi(query=[httpx.Response(401)] * 2), "query"),
        call(FakeApi(create=[code_body("999-999")])),
        call(FakeApi(create=[httpx.ConnectError] * 2)),
        call(FakeApi(query=[code_body("1")]), "query"),
        call(FakeApi(query=[httpx.ReadTimeout] * 2), "query"),
        call(FakeApi(query=[httpx.Response(200, json={"resultCode": "0"})] * 2), "query"),
        lambda: settings_from_env({"RECONCILER_FEDERATION_APP_SECRET": SECRET}),
        lambda: make_settings(base_url=f"https://ak:{SECRET}@host"),
        lambda: make_settings(base_url=f"http://host/{SECRET}"),
        lambda: make_client(FakeApi(), ca_bundle="/nonexistent"),
    ]
    paths += [call(FakeApi(create=[code_body(code)] * 2)) for code in CODE_CASES]
    paths += [call(FakeApi(create=[step()])) for step in MAYBE_SENT]
    paths += [call(FakeApi(create=[step()] * 2)) for step in RETRIED_ON_CREATE]
    paths += [call(FakeApi(create=[httpx.Response(s)])) for s in (400, 403, 404, 418)]
    return paths


@pytest.mark.parametrize("path", error_paths())
def test_secrets_never_appear_in_errors(path: Callable[[], object]) -> None:
    """Neither the app secret nor a token shows in any error's str, repr or hint."""
    with pytest.raises(ReconcilerError) as caught:
        path()
    error: BaseException | None = caught.value
    while error is not None:  # the whole chain, as --debug would print it
        for text in (str(error), repr(error), str(getattr(error, "hint", ""))):
            assert SECRET not in text
            assert TOKEN_PREFIX not in text
        error = error.__cause__ or error.__context__


def test_secrets_never_appear_in_reprs() -> None:
    """Settings and client reprs leave out the secret and the token."""
    api = FakeApi()
    client, _ = make_client(api)
    client.create_task([OK_A])
    for text in (repr(make_settings()), repr(client), str(make_settings())):
        assert SECRET not in text
        assert TOKEN_PREFIX not in text
