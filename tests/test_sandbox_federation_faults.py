"""The federation-user API sandbox: fault injection, control endpoints, a real server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from reconciler.sandbox.control import ManualClock, build_federation
from reconciler.sandbox.federation import CREATE_TASK_PATH, QUERY_TASK_PATH, TOKEN_PATH
from reconciler.sandbox.federation_faults import Endpoint, EndpointFaults
from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.sandbox.server import RunningSandbox, running
from tests.support.federation_world import (
    APP_KEY,
    APP_SECRET,
    ROLE_A,
    START,
    control,
    entry,
    make_world,
    request,
)

# -- fault injection --


def test_fail_next_answers_without_processing() -> None:
    """fail_next answers the next N calls with the status and creates nothing."""
    world = make_world()
    world.sandbox.configure_faults(
        {Endpoint.CREATE_TASK: EndpointFaults(fail_next=2, fail_status=429)}
    )
    statuses = [world.post(CREATE_TASK_PATH, {"federationUserList": [entry()]}).status
                for _ in range(3)]  # fmt: skip
    assert statuses == [429, 429, 200]
    stats = world.sandbox.stats()
    assert (stats.calls["createTask"], stats.create_task_accepted) == (3, 1)


@pytest.mark.parametrize(
    ("faults", "allowed"),
    [(EndpointFaults(rate_429=1.0), {429}), (EndpointFaults(error_rate=1.0), {502, 503, 504})],
)
def test_rate_faults_answer_without_processing(faults: EndpointFaults, allowed: set[int]) -> None:
    """At rate 1 every call gets the injected status and nothing is created."""
    world = make_world()
    world.sandbox.configure_faults({Endpoint.CREATE_TASK: faults})
    statuses = {world.post(CREATE_TASK_PATH, {"federationUserList": [entry()]}).status
                for _ in range(20)}  # fmt: skip
    assert statuses <= allowed
    assert world.sandbox.stats().create_task_accepted == 0


def test_rate_faults_are_deterministic_for_a_seed() -> None:
    """The same seed gives the same fault sequence; the rate is roughly honoured."""

    def sequence(seed: int) -> list[int]:
        world = make_world(FederationSettings(pending_task_limit=1000))
        world.sandbox.configure_faults(
            {Endpoint.QUERY_TASK: EndpointFaults(error_rate=0.2, rate_429=0.1)}, seed=seed
        )
        return [world.post(QUERY_TASK_PATH, {"taskId": "1"}).status for _ in range(200)]

    first = sequence(7)
    assert first == sequence(7)
    assert first != sequence(8)
    assert 20 <= sum(status >= 500 for status in first) <= 60
    assert 5 <= first.count(429) <= 40


def test_latency_is_asked_of_the_server() -> None:
    """latency_seconds becomes the response's delay, on processed and injected answers."""
    world = make_world()
    world.sandbox.configure_faults({Endpoint.TOKEN: EndpointFaults(latency_seconds=0.25)})
    body = {"app_key": APP_KEY, "app_secret": APP_SECRET}
    answer = world.sandbox.handle(request("POST", TOKEN_PATH, body))
    assert answer is not None
    assert (answer.status, answer.delay_seconds) == (200, 0.25)


def test_drop_after_next_processes_then_drops() -> None:
    """drop_after_next creates the task, then asks for the connection to be dropped."""
    world = make_world()
    world.sandbox.configure_faults({Endpoint.CREATE_TASK: EndpointFaults(drop_after_next=1)})
    dropped = world.post(CREATE_TASK_PATH, {"federationUserList": [entry()]})
    kept = world.post(CREATE_TASK_PATH, {"federationUserList": [entry(account="bob")]})
    assert (dropped.drop_connection, kept.drop_connection) == (True, False)
    world.finish()
    assert set(world.sandbox.users(APP_KEY)) == {"alice", "bob"}


def test_role_service_failures_answer_100_216_then_recover() -> None:
    """role_service_failures answers 100-216 to the next valid batches only."""
    world = make_world()
    world.sandbox.configure_faults(role_service_failures=1)
    assert world.create(entry(action="FLY"))["resultCode"] == "100-104"  # not consumed
    assert world.create(entry())["resultCode"] == "100-216"
    assert world.create(entry())["resultCode"] == "0"


def test_fault_settings_are_validated() -> None:
    """Impossible fault settings are refused."""
    with pytest.raises(ValueError, match="exceed"):
        EndpointFaults(error_rate=0.6, rate_429=0.6)
    with pytest.raises(ValueError, match="integer"):
        EndpointFaults.from_json({"fail_next": 1.5})
    with pytest.raises(ValueError, match="unknown"):
        EndpointFaults.from_json({"fail_nxt": 1})


# -- control endpoints --


def test_control_seeds_patches_and_lists_a_tenant() -> None:
    """Seed a tenant over control, change its roles, read its users back."""
    world = make_world()
    seed = {
        "app_key": "t2", "app_secret": "s2", "role_ids": ["11"],
        "users": {"zed": {"name": "Zed", "email": "zed@example.com", "role_ids": ["11"]}},
    }  # fmt: skip
    assert control(world, "POST", "/_sandbox/federation/tenants", seed) == (201, {"app_key": "t2"})
    patch = {"add_role_ids": ["12", "13"], "remove_role_ids": ["11"]}
    assert control(world, "PATCH", "/_sandbox/federation/tenants/t2", patch) == (
        200, {"role_ids": ["12", "13"]}
    )  # fmt: skip
    status, users = control(world, "GET", "/_sandbox/federation/tenants/t2/users")
    assert (status, users["users"]["zed"]["enabled"]) == (200, True)
    assert control(world, "GET", "/_sandbox/federation/tenants/nope/users")[0] == 404


def test_control_stats_faults_settings_and_reset() -> None:
    """Stats count calls; faults and settings change over control; reset clears all."""
    world = make_world()
    world.create(entry())
    world.query("1")
    status, stats = control(world, "GET", "/_sandbox/federation/stats")
    assert status == 200
    assert stats["calls"] == {"token": 1, "createTask": 1, "queryTask": 1}
    assert stats["create_task_accepted"] == 1
    faults = {"createTask": {"fail_next": 1, "fail_status": 503}, "role_service_failures": 2}
    status, configured = control(world, "POST", "/_sandbox/federation/faults", faults)
    assert (status, configured["createTask"]["fail_next"]) == (200, 1)
    assert world.post(CREATE_TASK_PATH, {"federationUserList": [entry()]}).status == 503
    status, settings = control(world, "POST", "/_sandbox/federation/settings", {"todo_seconds": 1})
    assert (status, settings["todo_seconds"], world.sandbox.settings.todo_seconds) == (200, 1, 1.0)
    assert control(world, "POST", "/_sandbox/reset")[0] == 200
    assert world.sandbox.settings == FederationSettings()
    assert world.sandbox.stats().calls["createTask"] == 0
    assert world.post(QUERY_TASK_PATH, {"taskId": "1"}).status == 401  # tokens went too


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_sandbox/federation/faults", {"createTsk": {}}),
        ("/_sandbox/federation/faults", {"token": {"error_rate": 2}}),
        ("/_sandbox/federation/faults", {"role_service_failures": -1}),
        ("/_sandbox/federation/settings", {"pending_task_limit": True}),
        ("/_sandbox/federation/settings", {"error_http_status": 404}),
        ("/_sandbox/federation/settings", {"no_such": 1}),
        ("/_sandbox/federation/tenants", {"app_key": "x"}),
        ("/_sandbox/clock/advance", {"seconds": -1}),
        ("/_sandbox/clock/advance", "[1]"),
    ],
)
def test_bad_control_requests_are_400(path: str, body: Any) -> None:
    """Control requests that make no sense are refused with 400, changing nothing."""
    world = make_world()
    assert control(world, "POST", path, body)[0] == 400
    assert world.sandbox.settings == FederationSettings()


def test_control_clock_advance_moves_a_manual_clock_only() -> None:
    """clock/advance drives a ManualClock; a real-clock sandbox answers 409."""
    world = make_world()
    world.create(entry())
    status, answer = control(world, "POST", "/_sandbox/clock/advance", {"seconds": 1})
    assert (status, answer["now"]) == (200, START + 1)
    assert "alice" in world.sandbox.users(APP_KEY)
    _, real = build_federation()
    response = real.handle(request("POST", "/_sandbox/clock/advance", {"seconds": 1}))
    assert response is not None
    assert response.status == 409


def test_handlers_leave_other_paths_alone() -> None:
    """Both handlers return None for paths that are not theirs, so others can be mounted."""
    world = make_world()
    for path in ("/", "/_sandbox/cloudidentity/events", "/apiaccess/rest/other"):
        assert world.sandbox.handle(request("POST", path, {})) is None
        assert world.control.handle(request("POST", path, {})) is None


# -- through a real server --


def test_dropped_create_task_over_loopback_still_created_the_task() -> None:
    """With drop_after_next httpx sees a disconnect, yet the task exists and runs."""
    clock = ManualClock(START)
    federation, control_handler = build_federation(clock=clock)
    with running([federation, control_handler]) as url, httpx.Client(base_url=url) as http:
        seed = {"app_key": APP_KEY, "app_secret": APP_SECRET, "role_ids": [ROLE_A]}
        assert http.post("/_sandbox/federation/tenants", json=seed).status_code == 201
        token = http.post(
            TOKEN_PATH, json={"app_key": APP_KEY, "app_secret": APP_SECRET},
            headers={"X-Token-Expire": "60"},
        ).json()  # fmt: skip
        assert token["Expires"] == "60"
        faults = {"createTask": {"drop_after_next": 1}}
        assert http.post("/_sandbox/federation/faults", json=faults).status_code == 200
        headers = {"X-APP-Key": APP_KEY, "Authorization": f"Bearer {token['AccessToken']}"}
        with pytest.raises(httpx.RemoteProtocolError):
            http.post(CREATE_TASK_PATH, json={"federationUserList": [entry()]}, headers=headers)
        assert http.get("/_sandbox/federation/stats").json()["create_task_accepted"] == 1
        assert http.post("/_sandbox/clock/advance", json={"seconds": 1}).status_code == 200
        users = http.get(f"/_sandbox/federation/tenants/{APP_KEY}/users").json()["users"]
        assert users["alice"]["role_ids"] == [ROLE_A]
        again = http.post(CREATE_TASK_PATH, json={"federationUserList": [entry()]}, headers=headers)
        task = http.post(QUERY_TASK_PATH, json={"taskId": again.json()["taskId"]}, headers=headers)
        assert task.json()["taskInfo"]["status"] == "TODO"


class _Raising:
    """A handler that fails the way a request's processing can."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def handle(self, request: object) -> None:
        """Raise."""
        raise self.error


@pytest.mark.parametrize(
    ("error", "printed"),
    [
        (ConnectionResetError("peer gone"), ""),
        (BrokenPipeError("peer gone"), ""),
        (ValueError("a bug"), "sandbox: a request failed: ValueError: a bug\n"),
    ],
)
def test_the_server_is_quiet_about_clients_gone_and_says_one_line_otherwise(
    error: Exception, printed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    server = RunningSandbox([_Raising(error)]).start()  # type: ignore[list-item]
    try:
        with pytest.raises(httpx.HTTPError):
            httpx.post(server.url + "/x", content=b"{}", timeout=5)
    finally:
        server.stop()
    assert capsys.readouterr().err == printed
