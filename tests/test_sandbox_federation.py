"""The federation-user API sandbox: validation, tokens and auth, task lifecycle."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from reconciler.sandbox import federation_rules as rules
from reconciler.sandbox.federation import (
    CREATE_TASK_PATH,
    QUERY_TASK_PATH,
    TOKEN_PATH,
    minimum_apply_seconds,
)
from reconciler.sandbox.federation_model import FederatedUser, TenantSeed
from reconciler.sandbox.federation_rules import FederationSettings
from tests.support.federation_world import (
    APP_KEY,
    APP_SECRET,
    DROP,
    ROLE_A,
    ROLE_B,
    ROLES,
    START,
    StutteringClock,
    entry,
    issue_token,
    make_world,
    request,
)

# -- validation --

INVALID = [
    ("100-102", {"federationUserList": []}),
    ("100-102", {}),
    ("100-103", {"federationUserList": [entry(account=f"u{n}") for n in range(101)]}),
    ("100-104", {"federationUserList": [entry(action="DELETE")]}),
    ("100-104", {"federationUserList": [entry(action="create")]}),
    ("100-104", {"federationUserList": [entry(action=DROP)]}),
    ("100-104", {"federationUserList": [entry(action=1)]}),
    ("100-204", {"federationUserList": [entry(account="")]}),
    ("100-204", {"federationUserList": [entry(account=DROP)]}),
    ("100-204", {"federationUserList": [entry(action="DISABLE", account="")]}),
    ("100-205", {"federationUserList": [entry(account="a" * 51)]}),
    ("100-207", {"federationUserList": [entry(account="alice smith")]}),
    ("100-207", {"federationUserList": [entry(account="alice#1")]}),
    ("100-207", {"federationUserList": [entry(account="ålice")]}),
    ("100-209", {"federationUserList": [entry(userName=DROP)]}),
    ("100-209", {"federationUserList": [entry(userName="")]}),
    ("100-209", {"federationUserList": [entry(action="MODIFY", userName="")]}),
    ("100-210", {"federationUserList": [entry(userName='Al"ice')]}),
    ("100-210", {"federationUserList": [entry(userName="Smith, A")]}),
    ("100-210", {"federationUserList": [entry(userName="a<b>")]}),
    ("100-210", {"federationUserList": [entry(userName="x=(y)")]}),
    ("100-213", {"federationUserList": [entry(userName="x" * 21)]}),
    ("100-211", {"federationUserList": [entry(email=DROP)]}),
    ("100-211", {"federationUserList": [entry(email="")]}),
    ("100-211", {"federationUserList": [entry(action="MODIFY", email="")]}),
    ("100-212", {"federationUserList": [entry(email="alice")]}),
    ("100-212", {"federationUserList": [entry(email="alice@")]}),
    ("100-212", {"federationUserList": [entry(email="alice@example")]}),
    ("100-212", {"federationUserList": [entry(email="al ice@example.com")]}),
    ("100-212", {"federationUserList": [entry(email="alice@-example.com")]}),
    ("100-214", {"federationUserList": [entry(email="a" * 65 + "@example.com")]}),
    ("100-214", {"federationUserList": [entry(email="alice@" + "e" * 64 + ".com")]}),
    ("100-214", {"federationUserList": [entry(email="alice@" + ".".join(["e" * 60] * 5))]}),
    ("100-215", {"federationUserList": [entry(roleIds=[*ROLES[:11]])]}),
    ("100-202", {"federationUserList": [entry(roleIds=["1" * 20])]}),
    ("100-208", {"federationUserList": [entry(roleIds=["12a"])]}),
    ("100-208", {"federationUserList": [entry(roleIds=[""])]}),
    ("100-208", {"federationUserList": [entry(roleIds=["١٢٣"])]}),
    ("100-217", {"federationUserList": [entry(), entry(account="bob", roleIds=["1234"])]}),
    ("100-212", {"federationUserList": [entry(), entry(account="bob", email="bob")]}),
]


@pytest.mark.parametrize(("code", "body"), INVALID)
def test_invalid_create_task_is_refused_whole_with_its_code(code: str, body: Any) -> None:
    """Each documented validation rule answers its code and creates no task."""
    world = make_world()
    response = world.post(CREATE_TASK_PATH, body)
    answer = json.loads(response.body)
    assert (response.status, answer["resultCode"]) == (200, code)
    assert "taskId" not in answer
    assert answer["resultMessage"] == rules.message(rules.Code(code), role_id="1234")
    world.finish()
    stats = world.sandbox.stats()
    assert stats.create_task_accepted == 0
    assert world.sandbox.users(APP_KEY) == {}


VALID_EDGES = [
    entry(account="a" * 50),
    entry(account="Al.ice_-@corp"),
    entry(userName="x" * 20),
    entry(userName="张三 O.Brien-2"),
    entry(email="a" * 64 + "@" + "e" * 63 + ".com"),
    entry(roleIds=[*ROLES[:10]]),
    entry(roleIds=[]),
    entry(roleIds=DROP),
    entry(action="MODIFY", userName=DROP, email=DROP, roleIds=DROP),
    # DISABLE does not use name, email or roleIds: even invalid ones pass
    entry(action="DISABLE", userName='"bad"', email="nope", roleIds=["x"]),
]


@pytest.mark.parametrize("item", VALID_EDGES)
def test_entries_at_the_limits_are_accepted(item: dict[str, Any]) -> None:
    """Values right at each limit pass validation."""
    answer = make_world().create(item)
    assert answer["resultCode"] == "0", answer


def test_business_failures_can_use_http_500() -> None:
    """error_http_status=500 moves business failures to HTTP 500, body unchanged."""
    world = make_world(FederationSettings(error_http_status=500))
    response = world.post(CREATE_TASK_PATH, {"federationUserList": []})
    assert response.status == 500
    assert json.loads(response.body)["resultCode"] == "100-102"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        [],
        {"federationUserList": "alice"},
        {"federationUserList": ["alice"]},
        {"federationUserList": [entry(roleIds=[1672380646005741600])]},
        {"federationUserList": [entry(userName=5)]},
    ],
)
def test_undeserialisable_create_task_is_http_400(body: Any) -> None:
    """Bodies of the wrong shape are a bad request, not a business code."""
    assert make_world().post(CREATE_TASK_PATH, body).status == 400


def test_documented_example_is_accepted_and_task_ids_are_increasing_strings() -> None:
    """The vendor's sample request succeeds; ids are unique, 19 digits, increasing."""
    world = make_world()
    sample = [
        entry(account="test0616", userName="test0616name", email="test0616@huawei.com"),
        entry(action="MODIFY", account="test0616", userName="test0616new", roleIds=DROP),
        {"action": "DISABLE", "userAccount": "test0616"},
    ]
    answers = [world.create(*sample) for _ in range(3)]
    assert {a["resultMessage"] for a in answers} == {"batch task created successfully."}
    ids = [a["taskId"] for a in answers]
    assert all(isinstance(i, str) and len(i) == 19 and i.isdigit() for i in ids)
    assert [int(i) for i in ids] == sorted({int(i) for i in ids})


# -- tokens and auth --


def test_token_reply_is_pascal_case_strings_and_capped() -> None:
    """The token reply has the documented shape; X-Token-Expire is capped at max_token_ttl."""
    world = make_world()
    body = {"app_key": APP_KEY, "app_secret": APP_SECRET}
    answer = world.sandbox.handle(request("POST", TOKEN_PATH, body, X_Token_Expire="99999"))
    assert answer is not None
    reply = json.loads(answer.body)
    assert set(reply) == {
        "AccessToken", "ApplyType", "CreateTime", "Expires", "Scope", "AppKey", "UserID"
    }  # fmt: skip
    assert all(isinstance(value, str) for value in reply.values())
    assert (reply["ApplyType"], reply["Expires"], reply["AppKey"]) == ("Bearer", "3600", APP_KEY)
    assert reply["CreateTime"] == str(int(START))
    assert reply["AccessToken"] != world.token


@pytest.mark.parametrize(
    "body", [{"app_key": APP_KEY, "app_secret": "wrong"}, {"app_key": "nope", "app_secret": "x"}]
)
def test_bad_credentials_are_401_json(body: dict[str, str]) -> None:
    """Wrong secret or unknown key: HTTP 401 with a JSON body."""
    answer = make_world().sandbox.handle(request("POST", TOKEN_PATH, body))
    assert answer is not None
    assert answer.status == 401
    assert "error_msg" in json.loads(answer.body)


def test_token_expires_by_the_clock() -> None:
    """A token works until CreateTime + Expires and not after (default 600 s)."""
    world = make_world()
    world.clock.advance(599)
    assert world.post(QUERY_TASK_PATH, {"taskId": "1"}).status == 200
    world.clock.advance(1)
    assert world.post(QUERY_TASK_PATH, {"taskId": "1"}).status == 401


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": ""},
        {"Authorization": "bearer {token}"},
        {"Authorization": "Bearer  {token}"},
        {"Authorization": "Bearer {token}x"},
        {"Authorization": "{token}"},
        {"X_APP_Key": "app-key-2"},
        {"X_APP_Key": ""},
    ],
)
def test_bad_auth_headers_are_401(headers: dict[str, str]) -> None:
    """Authorization must be exactly `Bearer <token>` and X-APP-Key must match it."""
    world = make_world()
    filled = {name: value.format(token=world.token) for name, value in headers.items()}
    for path in (CREATE_TASK_PATH, QUERY_TASK_PATH):
        response = world.post(path, {"federationUserList": [entry()]}, **filled)
        assert response.status == 401
        assert json.loads(response.body)["error_code"] == "401"
    assert world.sandbox.stats().create_task_accepted == 0


def test_tenant_space_header_is_required_when_seeded() -> None:
    """A tenant with a space id needs a matching X-TenantSpaceID."""
    world = make_world(space="space-9")
    assert world.post(CREATE_TASK_PATH, {"federationUserList": [entry()]}).status == 401
    wrong = world.post(CREATE_TASK_PATH, {"federationUserList": [entry()]}, X_TenantSpaceID="x")
    assert wrong.status == 401
    right = world.post(
        CREATE_TASK_PATH, {"federationUserList": [entry()]}, X_TenantSpaceID="space-9"
    )
    assert json.loads(right.body)["resultCode"] == "0"


# -- lifecycle and effects --


def test_task_goes_todo_doing_done_and_applies_only_when_done() -> None:
    """Status follows the clock; the user appears only once the task is DONE."""
    world = make_world(FederationSettings(todo_seconds=2, doing_seconds=3))
    task_id = world.create(entry())["taskId"]
    seen = []
    for step in (0, 1.9, 0.1, 2.9, 0.1):
        world.clock.advance(step)
        answer = world.query(task_id)
        seen.append((answer["taskInfo"]["status"], "alice" in world.sandbox.users(APP_KEY)))
        assert answer["failDataList"] == []
    assert seen == [
        ("TODO", False), ("TODO", False), ("DOING", False), ("DOING", False), ("DONE", True)
    ]  # fmt: skip
    assert world.sandbox.users(APP_KEY)["alice"] == FederatedUser(
        name="Alice", email="alice@example.com", role_ids=(ROLE_A,), enabled=True
    )


def test_done_is_answered_only_once_the_task_ran_even_if_it_falls_due_mid_request() -> None:
    """A queryTask handled while its task falls due answers DOING, not a DONE whose
    failDataList is empty because the task has not run: DONE means every entry not
    listed succeeded (docs/api.md), so that answer confirmed a MODIFY of a missing user."""
    clock = StutteringClock(START)
    world = make_world(FederationSettings(todo_seconds=2, doing_seconds=3), clock=clock)
    task_id = world.create(entry(action="MODIFY", account="ghost"))["taskId"]
    clock.advance(5 - 0.001)  # the request arrives 1 ms before the task is due
    with clock.passing(0.001):  # and is handled while the due moment passes
        during = world.query(task_id)
    assert (during["taskInfo"]["status"], during["failDataList"]) == ("DOING", [])
    after = world.query(task_id)
    assert after["taskInfo"]["status"] == "DONE"
    assert [(f["federationUser"]["userAccount"], f["failCode"]) for f in after["failDataList"]] == [
        ("ghost", "100-302")
    ]
    assert "ghost" not in world.sandbox.users(APP_KEY)


def test_due_tasks_run_in_creation_order_without_being_queried() -> None:
    """CREATE then MODIFY in two tasks land in order even if nobody polls."""
    world = make_world()
    world.create(entry(userName="First"))
    world.create(entry(action="MODIFY", userName="Second", email=DROP, roleIds=[ROLE_B]))
    world.clock.advance(60)
    user = world.sandbox.users(APP_KEY)["alice"]
    assert (user.name, user.email, user.role_ids) == ("Second", "alice@example.com", (ROLE_B,))
    assert world.sandbox.stats().created_per_account == {"alice": 1}


def test_shrinking_timings_never_reorder_tasks() -> None:
    """A task accepted after the timings shrank still runs after the older, slower one."""
    world = make_world(FederationSettings(todo_seconds=10, doing_seconds=10))
    world.create(entry())
    world.sandbox.update_settings({"todo_seconds": 0, "doing_seconds": 0})
    later = world.create(entry(action="MODIFY", userName="Renamed"))["taskId"]
    assert world.query(later)["taskInfo"]["status"] == "DOING"
    world.clock.advance(20)
    assert world.query(later)["failDataList"] == []
    assert world.sandbox.users(APP_KEY)["alice"].name == "Renamed"


def test_run_time_failures_are_listed_with_the_entry_as_sent() -> None:
    """Existing account, unknown account and a removed role fail per entry; the rest apply."""
    world = make_world(users={"bob": FederatedUser(name="Bob", email="bob@example.com")})
    entries = [
        entry(account="bob", userName="Bobby"),  # CREATE of an enabled account
        entry(action="MODIFY", account="carol"),
        {"action": "DISABLE", "userAccount": "dave", "email": "ignored"},
        entry(account="erin", roleIds=[ROLE_B]),  # ROLE_B is removed below
        entry(account="alice"),
    ]
    task_id = world.create(*entries)["taskId"]
    world.sandbox.change_roles(APP_KEY, remove=(ROLE_B,))
    world.finish()
    answer = world.query(task_id)
    assert answer["taskInfo"]["status"] == "DONE"
    failed = [(f["federationUser"], f["failCode"]) for f in answer["failDataList"]]
    assert failed == [
        (entries[0], "100-301"),
        (entries[1], "100-302"),
        (entries[2], "100-302"),
        (entries[3], "100-217"),
    ]
    assert answer["failDataList"][3]["failMessage"] == f"租间不存在该角色,角色Id: {ROLE_B}"
    users = world.sandbox.users(APP_KEY)
    assert set(users) == {"alice", "bob"}
    assert users["bob"].name == "Bob"
    assert world.sandbox.stats().created_per_account == {"alice": 1}


def test_modify_changes_only_present_fields_and_disable_keeps_attributes() -> None:
    """MODIFY keeps absent fields, replaces roles when present; DISABLE only disables."""
    seeded = FederatedUser(name="Al", email="al@example.com", role_ids=(ROLE_A, ROLE_B))
    world = make_world(users={"al": seeded})
    world.create(entry(action="MODIFY", account="al", userName=DROP, email=DROP, roleIds=DROP))
    world.create(entry(action="MODIFY", account="al", userName="Albert", email=DROP, roleIds=[]))
    world.create({"action": "DISABLE", "userAccount": "al", "userName": "X", "roleIds": [ROLE_A]})
    world.clock.advance(60)
    assert world.sandbox.users(APP_KEY)["al"] == FederatedUser(
        name="Albert", email="al@example.com", role_ids=(), enabled=False
    )


@pytest.mark.parametrize(("reenables", "created"), [(True, 1), (False, 0)])
def test_create_of_a_disabled_account(reenables: bool, created: int) -> None:
    """CREATE re-enables a disabled account with the new attributes, if so configured."""
    off = FederatedUser(name="Old", email="old@example.com", role_ids=(ROLE_B,), enabled=False)
    world = make_world(
        FederationSettings(create_reenables_disabled=reenables), users={"alice": off}
    )
    task_id = world.create(entry())["taskId"]
    world.finish()
    user = world.sandbox.users(APP_KEY)["alice"]
    assert (user.enabled, user.name) == ((True, "Alice") if reenables else (False, "Old"))
    assert len(world.query(task_id)["failDataList"]) == 1 - created
    assert world.sandbox.stats().created_per_account.get("alice", 0) == created


def test_pending_task_limit_answers_100_113_until_tasks_finish() -> None:
    """At the limit of TODO+DOING tasks createTask answers 100-113; after DONE it accepts."""
    world = make_world(FederationSettings(pending_task_limit=2))
    codes = [world.create(entry(account=f"u{n}"))["resultCode"] for n in range(3)]
    assert codes == ["0", "0", "100-113"]
    world.finish()
    assert world.create(entry(account="u2"))["resultCode"] == "0"
    stats = world.sandbox.stats()
    assert (stats.create_task_accepted, stats.max_pending_observed) == (3, 2)
    assert stats.rejected_codes == {"100-113": 1}


def test_concurrent_creates_never_exceed_the_limit() -> None:
    """Threads racing on createTask: exactly the limit is accepted (the model is locked)."""
    world = make_world()
    codes: list[str] = []
    guard = threading.Lock()

    def send(n: int) -> None:
        code = world.create(entry(account=f"u{n}"))["resultCode"]
        with guard:
            codes.append(code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == ["0"] * 10 + ["100-113"] * 20
    assert world.sandbox.stats().max_pending_observed == 10


@pytest.mark.parametrize("code", ["1", "404-1"])
def test_unknown_or_foreign_task_answers_the_unknown_task_code(code: str) -> None:
    """A task id that is unknown or belongs to another tenant is not found."""
    world = make_world(FederationSettings(unknown_task_result_code=code))
    world.sandbox.seed_tenant(TenantSeed(app_key="other", app_secret="s", role_ids=ROLES))
    token = issue_token(world.sandbox, "other", "s")
    foreign = world.post(
        CREATE_TASK_PATH, {"federationUserList": [entry()]},
        X_APP_Key="other", Authorization=f"Bearer {token}",
    )  # fmt: skip
    foreign_id = json.loads(foreign.body)["taskId"]
    for task_id in (foreign_id, "1659444411225432066"):
        assert world.query(task_id)["resultCode"] == code
    assert world.post(QUERY_TASK_PATH, {"taskId": int(foreign_id)}).status == 400


@pytest.mark.parametrize(("count", "expected"), [(0, 0.0), (1, 0.15), (10, 0.15), (11, 0.3)])
def test_minimum_apply_seconds_counts_waves_of_the_cap(count: int, expected: float) -> None:
    """ceil(tasks / limit) waves of todo + doing seconds."""
    assert minimum_apply_seconds(count, FederationSettings()) == pytest.approx(expected)
