"""The CI helper's forge Session: failures through the one HTTP seam, the token kept home."""

from __future__ import annotations

import httpx
import pytest

from reconciler.cli import ci
from reconciler.errors import TransportError
from reconciler.providers import http

TOKEN = "glpat-never-leaves-the-forge"
GITLAB_ENV = {
    "GITLAB_CI": "true",
    "CI_API_V4_URL": "https://gitlab.example/api/v4",
    "CI_PROJECT_ID": "7",
    "RECONCILER_GITLAB_TOKEN": TOKEN,
}
GITHUB_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_API_URL": "https://api.example",
    "GITHUB_REPOSITORY": "o/r",
    "GITHUB_TOKEN": TOKEN,
}


def _session(handler: httpx.MockTransport, env: dict[str, str] = GITLAB_ENV) -> ci.Session:
    return ci.Session(ci.forge_from_env(env), transport=handler)


@pytest.mark.parametrize(
    ("failure", "maybe_sent", "says"),
    [
        (httpx.ConnectError, False, "nothing was sent"),
        (httpx.ReadTimeout, True, "timed out waiting for the answer"),
        (httpx.RemoteProtocolError, True, "connection dropped"),
    ],
    ids=["connect", "read-timeout", "dropped"],
)
def test_a_network_failure_is_a_transport_error_naming_the_call(
    failure: type[httpx.RequestError], maybe_sent: bool, says: str
) -> None:
    """httpx's exceptions leave Session.call as TransportError naming method and path."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise failure("boom", request=request)

    with (
        _session(httpx.MockTransport(fail), GITHUB_ENV) as session,
        pytest.raises(TransportError) as caught,
    ):
        session.call("GET", "/repos/o/r/pulls")
    assert caught.value.maybe_sent is maybe_sent
    assert "the github API" in caught.value.message
    assert "GET /repos/o/r/pulls" in caught.value.message
    assert says in caught.value.message
    assert isinstance(caught.value.__cause__, failure)


def test_the_cli_reports_a_network_failure_as_error_and_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """main() exits 1 with error: and hint: lines, and no token, when the forge is unreachable."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    argv = ["merged-pr", "--sha", "abcdef1234567890"]
    assert ci.main(argv, env=GITHUB_ENV, transport=httpx.MockTransport(refuse)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: could not reach the github API for GET /repos/o/r/commits/")
    assert "\nhint: " in err
    assert TOKEN not in err


def test_a_closed_session_is_a_transport_error() -> None:
    """A call after the with-block is ClientClosed, not httpx's bare RuntimeError."""
    session = _session(httpx.MockTransport(lambda _: httpx.Response(200, json=[])))
    with session:
        session.call("GET", "/projects/7/merge_requests/1/notes")
    with pytest.raises(http.ClientClosed):
        session.call("GET", "/projects/7/merge_requests/1/notes")


def test_the_token_does_not_follow_a_redirect_to_another_origin() -> None:
    """An artifact redirected to an object store is fetched without PRIVATE-TOKEN."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "gitlab.example" and "/raw/" in request.url.path:
            return httpx.Response(302, headers={"Location": "https://objects.example/plan?sig=1"})
        return httpx.Response(200, content=b"{}")

    with _session(httpx.MockTransport(handle)) as session:
        content = ci.fetch_plan(session, pr=4, job="plan", artifact="plan.json")
    assert content == b"{}"
    forge, store = seen
    assert forge.headers["PRIVATE-TOKEN"] == TOKEN
    assert store.url.host == "objects.example"
    assert "PRIVATE-TOKEN" not in store.headers
    assert all(TOKEN not in value for value in store.headers.values())


def test_the_token_follows_a_redirect_within_the_forge() -> None:
    """A redirect that stays on the forge's origin keeps the token (it is the same API)."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/old"):
            return httpx.Response(301, headers={"Location": "/api/v4/new"})
        return httpx.Response(200, json={})

    with _session(httpx.MockTransport(handle)) as session:
        session.call("GET", "/old")
    assert [r.headers.get("PRIVATE-TOKEN") for r in seen] == [TOKEN, TOKEN]
