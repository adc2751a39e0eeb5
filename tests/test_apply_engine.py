"""The apply engine (``engine.Applier``) against the sandbox handlers in-process.

The sandbox runs on a manual clock and the applier's and client's ``sleep`` advance it, so
task lifecycles, polling and retry backoffs take no real time. Crashes are simulated by
raising a ``BaseException`` at a chosen write or call, then resuming with a new applier.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.apply import engine
from reconciler.apply.engine import ApplyReport, ApplySettings
from reconciler.desired import validation
from reconciler.errors import FederationError, TransportError
from reconciler.plan import planner
from reconciler.plan.model import Action, Change, Guard, Plan, Reason
from reconciler.providers.federation.client import (
    DEFAULT_RETRY,
    BatchRefused,
    CallCounts,
    FederationClient,
    FederationSettings,
    TaskState,
    TaskStatus,
)
from reconciler.sandbox import app
from reconciler.sandbox.control import ManualClock, build_federation
from reconciler.sandbox.federation_faults import Endpoint, EndpointFaults
from reconciler.sandbox.federation_model import FederatedUser, TenantSeed
from reconciler.sandbox.federation_rules import FederationSettings as SandboxSettings
from reconciler.stores import LockInfo
from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord, PendingBatch, PendingEntry, State
from reconciler.values import replace
from tests.support import sandbox as fx
from tests.support.federation_world import StutteringClock

START = 1_700_000_000.0


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the engine may catch it)."""


@dataclass
class World:
    """A sandbox on a manual clock, a client wired to it in-process, a local store."""

    box: app.Sandbox
    clock: ManualClock
    store: LocalStore
    path: Path
    client: FederationClient
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        """Sleep by moving the sandbox's clock."""
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    def applier(
        self, api: engine.TaskApi | None = None, store: Any = None, **settings: Any
    ) -> engine.Applier:
        """An applier on this world's clock."""
        return engine.Applier(
            store or self.store,
            api or self.client,
            settings=ApplySettings(**settings),
            sleep=self.sleep,
            monotonic=self.clock,
        )

    def plan(self, store: Any = None) -> Plan:
        """Plan the desired folder against the recorded state."""
        desired = validation.load_desired(self.path)
        return planner.plan(desired, (store or self.store).read())

    def converge(self, store: Any = None, api: Any = None, rounds: int = 3) -> list[ApplyReport]:
        """resume + plan + run until nothing is left (at most ``rounds`` times)."""
        reports = []
        for _ in range(rounds):
            applier = self.applier(api, store)
            applier.resume()
            made = self.plan(store)
            if not made.changes:
                break
            reports.append(applier.run(made))
        return reports


def _client(world: World, **settings: Any) -> FederationClient:
    """Another client for ``world``'s sandbox (settings override the test tenant's)."""
    return FederationClient(
        FederationSettings(
            **{
                "base_url": "http://127.0.0.1:9",
                "app_key": fx.APP_KEY,
                "app_secret": fx.APP_SECRET,
                **settings,
            }
        ),
        transport=_transport(world.box),
        sleep=world.sleep,
        clock=world.clock,
    )


Forward = Callable[[httpx.Request], httpx.Response]
Intercept = Callable[[httpx.Request, Forward], httpx.Response]


def _transport(
    box: app.Sandbox,
    refuse_connect: Callable[[httpx.Request], bool] | None = None,
    intercept: Intercept | None = None,
) -> httpx.BaseTransport:
    inner = fx.in_process_transport(box)

    def handle(request: httpx.Request) -> httpx.Response:
        if refuse_connect is not None and refuse_connect(request):
            raise httpx.ConnectError("connection refused", request=request)
        if intercept is not None:
            return intercept(request, inner.handle_request)
        return inner.handle_request(request)

    return httpx.MockTransport(handle)


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    """Build worlds; every client is closed afterwards."""
    clients: list[FederationClient] = []
    counter = itertools.count()

    def build(
        specs: Sequence[fx.UserSpec] = (),
        *,
        settings: SandboxSettings | None = None,
        tenant_users: Mapping[str, FederatedUser] | None = None,
        refuse_connect: Callable[[httpx.Request], bool] | None = None,
        intercept: Intercept | None = None,
        clock: ManualClock | None = None,
    ) -> World:
        clock = clock or ManualClock(START)
        federation, control = build_federation(
            settings or SandboxSettings(todo_seconds=1.0, doing_seconds=2.0), clock
        )
        federation.seed_tenant(
            TenantSeed(
                app_key=fx.APP_KEY,
                app_secret=fx.APP_SECRET,
                role_ids=tuple(fx.ROLES.values()),
                users=dict(tenant_users or {}),
            )
        )
        box = app.Sandbox(
            federation=federation, control=control, cloudidentity=app.build_cloudidentity()
        )
        root = tmp_path / f"world{next(counter)}"
        path = fx.write_desired(root / "desired", specs)
        world = World(
            box=box,
            clock=clock,
            store=LocalStore(root / "state.json"),
            path=path,
            client=None,  # type: ignore[arg-type]  # set below: the client needs the world
        )
        world.client = FederationClient(
            FederationSettings(
                base_url="http://127.0.0.1:9", app_key=fx.APP_KEY, app_secret=fx.APP_SECRET
            ),
            transport=_transport(box, refuse_connect, intercept),
            sleep=world.sleep,
            clock=clock,
        )
        clients.append(world.client)
        return world

    yield build
    for client in clients:
        client.close()


def _check_converged(world: World, specs: Sequence[fx.UserSpec]) -> None:
    state = world.store.read()
    assert state is not None
    assert state.pending == ()
    desired = fx.desired_view(specs)
    assert fx.tenant_view(world.box) == desired
    recorded = {
        a: {"name": r.name, "email": r.email, "role_ids": sorted(r.role_ids), "enabled": r.enabled}
        for a, r in state.accounts.items()
    }
    assert recorded == desired
    created = world.box.federation.stats().created_per_account
    assert set(created.values()) <= {1}, f"created twice: {created}"


# -- the happy path ----------------------------------------------------------------------


def test_run_applies_every_batch_without_real_sleeps(make_world: Callable[..., World]) -> None:
    """250 users: 3 tasks, followed to DONE on the manual clock; counters and state agree."""
    specs = fx.users(250)
    world = make_world(specs)
    report = world.applier().run(world.plan())
    assert report.ok
    counters = report.counters
    assert (counters.batches_total, counters.batches_sent, counters.tasks_done) == (3, 3, 3)
    assert (counters.users_total, counters.users_applied, counters.create_calls) == (250, 250, 3)
    assert counters.query_calls == world.box.federation.stats().query_task_calls
    assert sorted(a for a, _ in report.applied) == [s.account for s in specs]
    _check_converged(world, specs)
    state = world.store.read()
    assert state is not None
    assert all(r.last_task_id and r.created_at for r in state.accounts.values())


def test_the_batches_of_a_run_live_as_long_as_the_applier(
    make_world: Callable[..., World],
) -> None:
    """run() returning frees none of its batches' entries (a console run leaves them to the
    operating system with the applier); dropping the applier frees them."""

    def entries() -> int:
        gc.collect()  # what earlier tests left in cycles is not counted
        return sum(1 for o in gc.get_objects() if type(o) is PendingEntry)

    world = make_world(fx.users(250))
    made = world.plan()
    applier = world.applier()
    before = entries()
    assert applier.run(made).ok
    assert entries() >= before + 250
    del applier
    assert entries() <= before


def test_every_write_is_a_successor(make_world: Callable[..., World]) -> None:
    """The serial goes up by one per write; intents precede task ids precede results."""
    world = make_world(fx.users(150))
    seen: list[State] = []
    store = _Recording(world.store, seen)
    world.applier(store=store).run(world.plan(store))
    assert [s.serial for s in seen] == list(range(1, len(seen) + 1))
    first_pending = next(s for s in seen if s.pending)
    assert all(b.task_id is None for b in first_pending.pending)  # the intent comes first
    assert seen[-1].pending == ()


def test_the_next_intents_are_written_while_the_slots_are_busy(
    make_world: Callable[..., World],
) -> None:
    """With one slot, batch 2's intent is written while batch 1 runs, not after it is DONE:
    a slot that frees is refilled without a state write on the way."""
    specs = fx.users(250)
    world = make_world(specs)
    seen: list[State] = []
    store = _Recording(world.store, seen)
    report = world.applier(store=store, parallel=1).run(world.plan(store))
    assert report.ok
    ahead = [
        s for s in seen if len(s.pending) == 2 and sum(b.task_id is None for b in s.pending) == 1
    ]
    assert ahead, "no write held a running batch and the next batch's intent together"
    assert seen[-1].pending == ()
    _check_converged(world, specs)


def test_a_freed_slot_is_refilled_before_the_other_tasks_are_asked_about(
    make_world: Callable[..., World],
) -> None:
    """Two tasks DONE at once with batches queued: the poll stops at the first DONE one,
    and its slot gets the next batch before the other task is asked about (each question
    is a round trip the freed slot would otherwise wait for)."""
    calls: list[tuple[str, bool]] = []

    def log(request: httpx.Request, forward: Forward) -> httpx.Response:
        response = forward(request)
        done = b'"DONE"' in response.read()
        calls.append((request.url.path.rsplit("/", 1)[-1], done))
        return response

    specs = fx.users(400)
    world = make_world(specs, intercept=log)
    report = world.applier(parallel=2).run(world.plan())
    assert report.ok
    done_at = [i for i, (name, done) in enumerate(calls) if name == "queryTask" and done]
    assert len(done_at) == 4
    # Batches 3 and 4 were queued when tasks 1 and 2 were seen DONE.
    assert [calls[i + 1][0] for i in done_at[:2]] == ["createTask", "createTask"]
    _check_converged(world, specs)


def test_a_run_stopped_with_batches_queued_takes_back_their_intents(
    make_world: Callable[..., World],
) -> None:
    """Intents written ahead for batches the run then never sends are taken back: the
    state keeps no intent of a batch this run knows it did not send."""
    specs = fx.users(350)
    world = make_world(specs)
    calls = world.box.federation.stats
    applier = engine.Applier(
        world.store,
        world.client,
        settings=ApplySettings(parallel=1),
        sleep=world.sleep,
        monotonic=world.clock,
        stop=lambda: "SIGTERM" if calls().calls.get("createTask", 0) >= 2 else None,
    )
    report = applier.run(world.plan())
    assert report.interrupted == "SIGTERM"
    state = world.store.read()
    assert state is not None
    assert all(batch.task_id is not None for batch in state.pending), state.pending
    assert any("were not sent in this run" in line for line in report.unresolved)
    world.converge()
    _check_converged(world, specs)


def test_a_stop_after_the_last_batch_was_sent_leaves_its_task_recorded(
    make_world: Callable[..., World],
) -> None:
    """A signal once every batch is out still stops the run: the task in flight is left
    recorded for `refresh` (not followed to its end) and the run reports the stop, so the
    command exits 130/143 and sends no provisioning retry after it."""
    specs = fx.users(50)  # one batch
    world = make_world(specs)
    calls = world.box.federation.stats
    applier = engine.Applier(
        world.store,
        world.client,
        sleep=world.sleep,
        monotonic=world.clock,
        stop=lambda: "SIGTERM" if calls().calls.get("createTask", 0) >= 1 else None,
    )
    report = applier.run(world.plan())
    assert report.interrupted == "SIGTERM"
    state = world.store.read()
    assert state is not None
    assert len(state.pending) == 1, state.pending
    assert state.pending[0].task_id is not None
    assert report.unresolved, "the task in flight is not named"
    world.converge()
    _check_converged(world, specs)


# -- retries and failures at the engine level --------------------------------------------


def test_connect_error_before_send_is_retried(make_world: Callable[..., World]) -> None:
    """A refused connection sends nothing, so createTask is retried: converges, one task each."""
    refusals = iter([True, True, False] * 10)
    specs = fx.users(150)
    world = make_world(
        specs, refuse_connect=lambda r: r.url.path.endswith("createTask") and next(refusals)
    )
    report = world.applier().run(world.plan())
    assert report.ok
    assert world.box.federation.stats().create_task_accepted == 2
    _check_converged(world, specs)


def test_connect_error_forever_stops_the_run_once_and_forgets_the_intents(
    make_world: Callable[..., World],
) -> None:
    """The client gives up on a refused connection: one error, no batch after it, none pending."""
    specs = fx.users(350)
    attempts: list[str] = []

    def refuse(request: httpx.Request) -> bool:
        if request.url.path.endswith("createTask"):
            attempts.append(request.url.path)
            return True
        return False

    world = make_world(specs, refuse_connect=refuse)
    report = world.applier(parallel=2).run(world.plan())
    assert not report.ok
    assert isinstance(report.error, TransportError)
    assert "nothing was sent" in report.error.message
    assert report.failed == []  # not one line per account: the error says it once
    assert len(attempts) == DEFAULT_RETRY.max_attempts  # one call's retries, then nothing more
    assert report.unresolved == [
        "4 batch(es) (350 users) were not sent in this run; run `reconciler apply` again"
    ]
    assert report.counters.create_calls == 0  # nothing reached the server
    state = world.store.read()
    assert state is not None
    assert (state.pending, dict(state.accounts)) == ((), {})


def test_refused_credentials_fail_before_any_intent_is_written(
    make_world: Callable[..., World],
) -> None:
    """A wrong app secret: the token call fails once; no batch is recorded or sent."""
    world = make_world(fx.users(250))
    with (
        _client(world, app_secret="wrong") as client,
        pytest.raises(FederationError, match="rejected the app key/secret") as caught,
    ):
        world.applier(client).run(world.plan())
    assert caught.value.hint is not None
    stats = world.box.federation.stats()
    assert (stats.calls["token"], stats.calls["createTask"]) == (1, 0)
    assert world.store.read() is None


def test_dead_query_endpoint_stops_following_once_and_leaves_tasks_recorded(
    make_world: Callable[..., World],
) -> None:
    """queryTask never answering: one retry cycle, then every task in flight left for refresh."""
    specs = fx.users(450)
    world = make_world(specs, refuse_connect=lambda r: r.url.path.endswith("queryTask"))
    report = world.applier(parallel=3).run(world.plan())
    assert isinstance(report.error, TransportError)
    assert world.box.federation.stats().create_task_accepted == 3  # no batch after the failure
    assert report.counters.query_calls == 0
    assert len(report.unresolved) == 4  # 3 tasks left recorded + the 2 batches not sent
    state = world.store.read()
    assert state is not None
    assert [b.task_id is not None for b in state.pending] == [True, True, True]
    with _client(world) as healthy:
        world.converge(api=healthy)
    _check_converged(world, specs)


def test_query_task_refused_as_a_call_stops_the_run_once(
    make_world: Callable[..., World],
) -> None:
    """queryTask answered 401 (after a fresh token): one error; every task in flight stays."""

    def refuse_queries(request: httpx.Request, forward: Forward) -> httpx.Response:
        if request.url.path.endswith("queryTask"):
            return httpx.Response(401, json={"error_code": "401"})
        return forward(request)

    world = make_world(fx.users(450), intercept=refuse_queries)
    report = world.applier(parallel=3).run(world.plan())
    assert isinstance(report.error, FederationError)
    assert report.error.code == "http-401"
    assert world.box.federation.stats().create_task_accepted == 3
    state = world.store.read()
    assert state is not None
    assert [b.task_id is not None for b in state.pending] == [True, True, True]


def test_a_stuck_task_is_given_up_after_the_task_timeout(
    make_world: Callable[..., World],
) -> None:
    """A task stuck in DOING: followed for task_timeout seconds, then left; nothing sent after."""
    specs = fx.users(250)
    world = make_world(specs, settings=SandboxSettings(todo_seconds=1, doing_seconds=500))
    report = world.applier(parallel=1, task_timeout=60).run(world.plan())
    assert report.error is None
    assert report.unresolved[0].startswith("task ")
    assert "still not DONE after 60s" in report.unresolved[0]
    assert world.box.federation.stats().create_task_accepted == 1
    assert 60 <= world.clock() - START < 70  # waited the timeout, not 1800 s
    world.clock.advance(1000)
    world.converge()
    _check_converged(world, specs)


def test_role_service_failure_retried_with_injected_sleep(
    make_world: Callable[..., World],
) -> None:
    """100-216 is resent after a backoff taken on the injected sleep."""
    specs = fx.users(2)
    world = make_world(specs)
    world.box.federation.configure_faults(role_service_failures=3)
    report = world.applier().run(world.plan())
    assert report.ok
    assert world.box.federation.stats().rejected_codes["100-216"] == 3
    _check_converged(world, specs)


def test_tenant_full_of_foreign_tasks_backs_off_exponentially() -> None:
    """100-113 with none of our tasks in flight: waits limit_backoff, doubling, then sends."""
    api = _FakeApi(limit_first=3)
    sleeps: list[float] = []
    store = _MemoryStore()
    applier = engine.Applier(
        store, api, settings=ApplySettings(limit_backoff=0.5), sleep=sleeps.append
    )
    report = applier.run(_plan_for_accounts(["a", "b"]))
    assert report.ok
    assert sleeps[:3] == [0.5, 1.0, 2.0]
    assert api.created == 1
    assert report.counters.create_calls == 4


def test_task_limit_with_our_tasks_in_flight_waits_for_them(
    make_world: Callable[..., World],
) -> None:
    """parallel 5 over a limit of 2: at most one refused createTask per task of ours finishing."""
    specs = fx.users(500)
    world = make_world(
        specs, settings=SandboxSettings(pending_task_limit=2, todo_seconds=1, doing_seconds=2)
    )
    report = world.applier(parallel=5).run(world.plan())
    assert report.ok
    stats = world.box.federation.stats()
    assert stats.create_task_accepted == 5
    assert stats.max_pending_observed == 2
    assert stats.rejected_codes["100-113"] <= 5
    _check_converged(world, specs)


def test_task_still_running_at_the_task_timeout_is_left_for_refresh(
    make_world: Callable[..., World],
) -> None:
    """A task not DONE by the task timeout stays recorded; a later resume records its result."""
    specs = fx.users(2)
    world = make_world(specs, settings=SandboxSettings(todo_seconds=100, doing_seconds=100))
    report = world.applier(task_timeout=30).run(world.plan())
    assert not report.ok
    assert "still not DONE after 30s" in report.unresolved[0]
    state = world.store.read()
    assert state is not None
    assert len(state.pending) == 1
    assert state.pending[0].task_id is not None
    world.clock.advance(200)
    resumed = world.applier().resume()
    assert resumed.ok
    _check_converged(world, specs)


def test_unknown_task_id_is_reported_and_kept(make_world: Callable[..., World]) -> None:
    """queryTask refusing a recorded id: unresolved, the batch stays in the state."""
    world = make_world(fx.users(1))
    entry_state = world.applier().state
    plan = world.plan()
    batch = engine.ledger.new_batch(plan.changes, "2024-01-01T00:00:00Z")
    world.store.write(entry_state.successor(pending=(PendingBatch(**_fields(batch), task_id="1"),)))
    report = world.applier().resume()
    assert not report.ok
    assert "queryTask failed" in report.unresolved[0]
    state = world.store.read()
    assert state is not None
    assert [b.task_id for b in state.pending] == ["1"]


def test_run_time_failures_keep_the_old_record(make_world: Callable[..., World]) -> None:
    """failDataList entries: reported with failCode, the previous record stays."""
    specs = fx.users(3)
    world = make_world(
        specs, tenant_users={"user00002": FederatedUser(name="Other", email="o@example.com")}
    )
    report = world.applier().run(world.plan())
    [failure] = report.failed
    assert (failure.account, failure.action, failure.code) == ("user00002", "CREATE", "100-301")
    state = world.store.read()
    assert state is not None
    assert sorted(state.accounts) == ["user00000", "user00001"]


# -- refusals: one bad entry never blocks the rest -----------------------------------------


def _with_roles(specs: Sequence[fx.UserSpec], every: int, role: str) -> list[fx.UserSpec]:
    """``specs`` where every ``every``-th user also has ``role``."""
    return [
        replace(spec, roles=(*spec.roles, role)) if i % every == 0 else spec
        for i, spec in enumerate(specs)
    ]


def test_a_role_deleted_on_the_tenant_fails_only_its_users(
    make_world: Callable[..., World],
) -> None:
    """100-217 names a role id: its users fail with the role's name, the rest are applied."""
    specs = _with_roles(fx.users(250), 17, "supervisor")  # 15 users, in all three batches
    world = make_world(specs)
    world.box.federation.change_roles(fx.APP_KEY, remove=(fx.ROLE_SUPERVISOR,))
    report = world.applier().run(world.plan())
    blamed = sorted(s.account for s in specs if "supervisor" in s.roles)
    assert len(blamed) == 15
    assert sorted(f.account for f in report.failed) == blamed
    [group] = report.failure_groups()
    assert group.code == "100-217"
    assert group.message == f"role `supervisor` ({fx.ROLE_SUPERVISOR}) is not on the tenant"
    assert len(report.applied) == 235
    stats = world.box.federation.stats()
    assert stats.calls["createTask"] == 6  # 3 refused, 3 resent without the role's users
    assert report.counters.create_calls == 6
    state = world.store.read()
    assert state is not None
    assert state.pending == ()
    assert sorted(state.accounts) == sorted({s.account for s in specs} - set(blamed))


def _refuse_existing(box: app.Sandbox, code: str = "100-301") -> Intercept:
    """createTask refused as a whole (``code``, naming nothing) when a CREATE names a user
    the tenant already has: the synchronous variant of the sandbox's run-time failure."""

    def intercept(request: httpx.Request, forward: Forward) -> httpx.Response:
        if request.url.path.endswith("createTask"):
            existing = box.federation.users(fx.APP_KEY)
            entries = json.loads(request.content)["federationUserList"]
            if any(e["action"] == "CREATE" and e["userAccount"] in existing for e in entries):
                body = {"resultCode": code, "resultMessage": "联邦用户账号已存在"}
                return httpx.Response(200, json=body)
        return forward(request)

    return intercept


def test_a_refusal_naming_nothing_is_isolated_by_splitting(
    make_world: Callable[..., World],
) -> None:
    """An undocumented refusal: the batch is halved until the one entry is alone; bounded."""
    specs = fx.users(100)
    taken = {"user00042": FederatedUser(name="Taken", email="taken@example.com")}
    world = make_world(specs, tenant_users=taken)
    world.client = FederationClient(
        FederationSettings(
            base_url="http://127.0.0.1:9", app_key=fx.APP_KEY, app_secret=fx.APP_SECRET
        ),
        transport=_transport(world.box, intercept=_refuse_existing(world.box)),
        sleep=world.sleep,
        clock=world.clock,
    )
    report = world.applier().run(world.plan())
    [failure] = report.failed
    assert (failure.account, failure.code) == ("user00042", "100-301")
    assert "undocumented resultCode 100-301" in failure.message
    assert len(report.applied) == 99
    # Halving costs two calls per level (the refusals never reach the sandbox's counters).
    assert report.counters.create_calls <= 1 + 2 * math.ceil(math.log2(100))
    assert world.box.federation.stats().create_task_accepted == report.counters.batches_sent
    world.client.close()


def test_resends_are_bounded_per_run(make_world: Callable[..., World]) -> None:
    """With no resends left, the refused batch's entries fail as they are."""
    specs = _with_roles(fx.users(10), 3, "supervisor")
    world = make_world(specs)
    world.box.federation.change_roles(fx.APP_KEY, remove=(fx.ROLE_SUPERVISOR,))
    report = world.applier(max_resends=0).run(world.plan())
    assert len(report.failed) == 10
    codes = {(group.code, group.message[:20]) for group in report.failure_groups()}
    assert codes == {("100-217", "role `supervisor` (1"), ("100-217", "createTask refused i")}
    assert world.box.federation.stats().calls["createTask"] == 1


def test_a_lost_response_on_a_resend_is_settled_by_a_probe(
    make_world: Callable[..., World],
) -> None:
    """The resend after a refusal is processed but its answer lost: a probe, no second CREATE."""
    specs = _with_roles(fx.users(30), 10, "supervisor")
    calls = itertools.count(1)

    def drop_second_create(request: httpx.Request, forward: Forward) -> httpx.Response:
        response = forward(request)
        if request.url.path.endswith("createTask") and next(calls) == 2:
            raise httpx.ReadError("connection closed by the server", request=request)
        return response

    world = make_world(specs, intercept=drop_second_create)
    world.box.federation.change_roles(fx.APP_KEY, remove=(fx.ROLE_SUPERVISOR,))
    report = world.applier().run(world.plan())
    assert len(report.failed) == 3  # the role's users; the probe confirmed the other 27
    assert len(report.applied) == 27
    state = world.store.read()
    assert state is not None
    assert state.pending == ()
    stats = world.box.federation.stats()
    assert set(stats.created_per_account.values()) == {1}
    assert stats.create_task_accepted == 2  # the lost resend and its probe


# -- lost responses and crashes ----------------------------------------------------------


def test_lost_create_is_settled_by_a_modify_probe(make_world: Callable[..., World]) -> None:
    """The first createTask is processed but its answer dropped: probe, never a second CREATE."""
    specs = fx.users(250)
    world = make_world(specs)
    world.box.federation.configure_faults({Endpoint.CREATE_TASK: EndpointFaults(drop_after_next=1)})
    first = world.applier().run(world.plan())
    assert first.ok  # probed, then the rest of the plan went out in the same run
    state = world.store.read()
    assert state is not None
    assert state.pending == ()
    assert len(state.accounts) == 250  # the probe confirmed what the lost task created
    _check_converged(world, specs)
    stats = world.box.federation.stats()
    assert stats.create_task_accepted == 4  # 3 batches + 1 probe: nothing resent blindly
    assert sum(stats.created_per_account.values()) == 250


def test_lost_create_that_never_ran_is_probed_then_created_in_the_same_run(
    make_world: Callable[..., World],
) -> None:
    """A 504 on createTask (not processed): the probe says so, the CREATE goes out again."""
    specs = fx.users(120)
    world = make_world(specs)
    world.box.federation.configure_faults(
        {Endpoint.CREATE_TASK: EndpointFaults(fail_next=1, fail_status=504)}
    )
    report = world.applier(parallel=1).run(world.plan())
    assert report.ok
    assert report.failed == []
    assert any("not confirmed by the probe" in line for line in report.notes)
    state = world.store.read()
    assert state is not None
    assert state.pending == ()
    assert len(state.accounts) == 120
    _check_converged(world, specs)
    assert set(world.box.federation.stats().created_per_account.values()) == {1}


def test_a_probe_followed_by_the_next_run_is_still_an_answer_not_a_failure(
    make_world: Callable[..., World],
) -> None:
    """Killed while its probe task ran: the next run follows that task, and the probe's
    "no such account" is the answer it was sent for (noted, planned again), not 100
    failures that make a converging apply exit 1."""
    specs = fx.users(100)
    world = make_world(specs)
    world.box.federation.configure_faults(
        {Endpoint.CREATE_TASK: EndpointFaults(fail_next=1, fail_status=504)}
    )
    with pytest.raises(Crash):  # the CREATE is lost unprocessed; its probe is sent, then death
        world.applier(_CrashingApi(world.client, "query", 2, False), parallel=1).run(world.plan())
    state = world.store.read()
    assert state is not None
    assert [b.task_id is not None for b in state.pending] == [True]  # the probe, recorded
    applier = world.applier(parallel=1)
    resumed = applier.resume()
    assert resumed.failed == []
    assert any("not confirmed by the probe" in line for line in resumed.notes)
    report = applier.run(world.plan())
    assert report.ok
    _check_converged(world, specs)
    assert set(world.box.federation.stats().created_per_account.values()) == {1}


def test_resume_turns_unsent_intents_into_a_note(make_world: Callable[..., World]) -> None:
    """Intents written but never sent: resume probes them, notes it, and reports ok."""
    specs = fx.users(3)
    world = make_world(specs)
    store = _CrashingStore(world.store, 0, False)
    api = _CrashingApi(world.client, "create", 1, False)
    with pytest.raises(Crash):
        world.applier(api, store).run(world.plan())
    report = world.applier().resume()
    assert report.ok
    assert report.failed == []
    assert "next plan sends them again" in report.notes[0]
    world.converge()
    _check_converged(world, specs)


def test_a_probe_that_falls_due_while_it_is_queried_confirms_nothing_it_did_not_do(
    make_world: Callable[..., World],
) -> None:
    """test_signals' lone failure made deterministic: intents never sent, then the probe's
    queryTask is handled while the probe falls due. DONE must not come before the task ran
    (its failDataList empty): resume would record accounts the tenant does not have."""
    specs = fx.users(3)
    clock = StutteringClock(START)

    def mid_request(request: httpx.Request, forward: Forward) -> httpx.Response:
        if not request.url.path.endswith("/queryTask"):
            return forward(request)
        with clock.passing(3.0):  # a whole task lifecycle passes while it is handled
            return forward(request)

    world = make_world(specs, clock=clock, intercept=mid_request)
    store = _CrashingStore(world.store, 0, False)
    with pytest.raises(Crash):  # killed as the first createTask went out: intents only
        world.applier(_CrashingApi(world.client, "create", 1, False), store).run(world.plan())
    resumed = world.applier().resume()
    assert resumed.applied == []
    assert any("not confirmed by the probe" in line for line in resumed.notes)
    state = world.store.read()
    assert state is not None
    assert dict(state.accounts) == {} == fx.tenant_view(world.box)
    world.converge()
    _check_converged(world, specs)


def test_lost_reenable_is_settled_by_a_disable_probe(make_world: Callable[..., World]) -> None:
    """A lost CREATE that re-enables an account is settled by DISABLE, then re-enabled."""
    specs = fx.users(1)
    world = make_world(specs)
    world.converge()
    fx.write_desired(world.path, [fx.UserSpec(**{**_spec(specs[0]), "enabled": False})])
    world.converge()
    assert fx.tenant_view(world.box)["user00000"]["enabled"] is False
    fx.write_desired(world.path, specs)
    world.box.federation.configure_faults({Endpoint.CREATE_TASK: EndpointFaults(drop_after_next=1)})
    report = world.applier().run(world.plan())
    # The probe disables (the lost CREATE's effect was unknown), then the CREATE re-enables.
    assert [(a, f) for a, f in report.applied] == [
        ("user00000", "DISABLE"),
        ("user00000", "CREATE"),
    ]
    assert report.ok
    state = world.store.read()
    assert state is not None
    assert fx.tenant_view(world.box)["user00000"]["enabled"] is True
    assert state.accounts["user00000"].enabled is True


def test_accounts_of_an_unsettled_batch_are_not_planned_into_a_second_create(
    make_world: Callable[..., World],
) -> None:
    """resume cannot settle a lost batch (its probe is lost too): run skips its accounts."""
    specs = fx.users(150)
    world = make_world(specs)
    with pytest.raises(Crash):  # killed once the first createTask was processed
        world.applier(_CrashingApi(world.client, "create", 1, True), parallel=1).run(world.plan())
    world.box.federation.configure_faults({Endpoint.CREATE_TASK: EndpointFaults(drop_after_next=1)})
    applier = world.applier(parallel=1)
    applier.resume()  # the probe's answer is lost as well: still unsettled
    report = applier.run(world.plan())
    assert any("100 account(s) not sent" in line for line in report.unresolved)
    assert len(report.applied) == 50  # the second batch went out; the first's accounts did not
    world.converge()
    _check_converged(world, specs)


def _steps(make_world: Callable[..., World], specs: Sequence[fx.UserSpec]) -> dict[str, int]:
    """How many writes, createTask and queryTask calls an uninterrupted apply makes."""
    world = make_world(specs)
    store = _CrashingStore(world.store, 0, False)
    api = _CrashingApi(world.client, "", 0, False)
    assert world.applier(api, store, parallel=1).run(world.plan(store)).ok
    return {"write": store.count, **api.calls}


@pytest.mark.parametrize("what", ["write", "create", "query"])
@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_crash_at_any_step_converges_without_double_create(
    make_world: Callable[..., World], what: str, after: bool
) -> None:
    """Die before or after each write or call in turn; resume + replan converges, no re-CREATE."""
    specs = fx.users(150)
    steps = _steps(make_world, specs)[what]
    assert steps >= 2
    for at in range(1, steps + 1):
        world = make_world(specs)
        store = _CrashingStore(world.store, at if what == "write" else 0, after)
        api = _CrashingApi(world.client, what, at, after)
        with pytest.raises(Crash):
            world.applier(api, store, parallel=1).run(world.plan())
        world.converge()
        _check_converged(world, specs)
        assert sum(world.box.federation.stats().created_per_account.values()) == 150


# -- fakes and wrappers ------------------------------------------------------------------


@dataclass
class _FakeApi:
    """createTask answers 100-113 ``limit_first`` times; every task is DONE at once."""

    limit_first: int = 0
    created: int = 0
    refused: int = 0
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def create_task(self, entries: Sequence[Mapping[str, object]]) -> str:
        """Refuse with 100-113 at first, then accept."""
        if self.limit_first:
            self.limit_first -= 1
            self.refused += 1
            raise BatchRefused("limit", code="100-113", http_status=200)
        self.created += 1
        return str(next(self.ids))

    def query_task(self, task_id: str) -> TaskStatus:
        """DONE without failures."""
        return TaskStatus(task_id=task_id, status=TaskState.DONE, remark="", failures=())

    def authenticate(self) -> None:
        """Always fine."""

    def reached(self) -> CallCounts:
        """Every createTask reached it (queries are not counted here)."""
        return CallCounts(create_task=self.created + self.refused)


class _MemoryStore:
    """A store in memory (the engine only needs read and write here)."""

    def __init__(self) -> None:
        self.state: State | None = None

    def read(self) -> State | None:
        """The last write."""
        return self.state

    def write(self, state: State, *, force: bool = False) -> None:
        """Keep ``state``."""
        self.state = state

    def lock(self, operation: str, *, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        """Not needed by the engine."""
        raise NotImplementedError

    def fence(self) -> None:
        """No lock held: nothing to check."""


class _Recording:
    """A store that remembers every state written."""

    def __init__(self, inner: LocalStore, seen: list[State]) -> None:
        self.inner, self.seen = inner, seen

    def read(self) -> State | None:
        """Delegate."""
        return self.inner.read()

    def write(self, state: State, *, force: bool = False) -> None:
        """Delegate and remember."""
        self.inner.write(state, force=force)
        self.seen.append(state)

    def fence(self) -> None:
        """Delegate."""
        self.inner.fence()


class _CrashingStore(_Recording):
    """Dies on write number ``at``: before it lands, or right after."""

    def __init__(self, inner: LocalStore, at: int, after: bool) -> None:
        super().__init__(inner, [])
        self.at, self.after, self.count = at, after, 0

    def write(self, state: State, *, force: bool = False) -> None:
        """Write, dying at the chosen one."""
        self.count += 1
        if self.count == self.at and not self.after:
            raise Crash
        super().write(state, force=force)
        if self.count == self.at:
            raise Crash


class _CrashingApi:
    """Dies on the ``at``-th call of ``what`` (create/query), before or after it is made."""

    def __init__(self, inner: FederationClient, what: str, at: int, after: bool) -> None:
        self.inner, self.what, self.at, self.after = inner, what, at, after
        self.calls = {"create": 0, "query": 0}

    def _maybe_crash(self, what: str, call: Callable[[], Any]) -> Any:
        self.calls[what] += 1
        hit = what == self.what and self.calls[what] == self.at
        if hit and not self.after:
            raise Crash
        result = call()
        if hit:
            raise Crash
        return result

    def create_task(self, entries: Sequence[Mapping[str, object]]) -> str:
        """createTask, maybe dying."""
        result: str = self._maybe_crash("create", lambda: self.inner.create_task(entries))
        return result

    def query_task(self, task_id: str) -> TaskStatus:
        """queryTask, maybe dying."""
        result: TaskStatus = self._maybe_crash("query", lambda: self.inner.query_task(task_id))
        return result

    def authenticate(self) -> None:
        """Delegate."""
        self.inner.authenticate()

    def reached(self) -> CallCounts:
        """Delegate."""
        return self.inner.reached()


def _plan_for_accounts(accounts: list[str]) -> Plan:
    changes = tuple(
        Change(
            action=Action.CREATE,
            account=a,
            reason=Reason.NEW,
            before=None,
            after=AccountRecord(
                account=a, name=a, email=f"{a}@example.com", role_ids=(), enabled=True
            ),
        )
        for a in accounts
    )
    return Plan(
        lineage=None,
        serial=0,
        input_digest="x",
        changes=changes,
        batches=(tuple(accounts),),
        roles={},
        managed=0,
        guard=Guard(disables=0, limit=10, rule=""),
    )


def _fields(batch: PendingBatch) -> dict[str, Any]:
    return {"batch_id": batch.batch_id, "entries": batch.entries, "recorded_at": batch.recorded_at}


def _spec(spec: fx.UserSpec) -> dict[str, Any]:
    return {
        "account": spec.account,
        "name": spec.name,
        "email": spec.email,
        "roles": spec.roles,
        "enabled": spec.enabled,
    }
