"""Randomized fault schedules: whatever goes wrong, apply converges and never creates twice.

Each schedule draws, from a fixed seed, a desired state and a series of changes to it, and
runs apply (resume, plan, run: what ``reconciler apply PATH`` does) several times against
the sandbox on a manual clock while it misbehaves: 5xx and 429 answers on every endpoint,
createTask and queryTask responses lost after the request was processed, the tenant's
task limit (100-113), role-service failures, and a crash at a random state write or API
call, before or after it (what ``kill -9`` leaves behind: nothing after that point runs).
During one run a second runner — the real CLI — tries to apply the same state: the lock
must refuse it. Then the faults stop and apply runs until nothing is left. After every
schedule:

- every desired account is on the tenant with its attributes (disabled and removed ones
  disabled);
- no CREATE was sent for an account that already existed (no task failed with the
  sandbox's "account exists" code);
- the state is readable, has nothing pending, and says exactly what the tenant holds.

The suite runs a few schedules; ``RECONCILER_FAULT_SCHEDULES=500`` runs more (and
``RECONCILER_FAULT_SEED`` starts elsewhere).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.apply import engine
from reconciler.apply.engine import ApplySettings
from reconciler.cli import main as cli
from reconciler.desired import validation
from reconciler.errors import ReconcilerError
from reconciler.plan import planner
from reconciler.providers.federation.client import (
    CallCounts,
    FederationClient,
    FederationSettings,
    TaskStatus,
)
from reconciler.providers.retry import RetryPolicy
from reconciler.sandbox import app
from reconciler.sandbox.control import ManualClock, build_federation
from reconciler.sandbox.federation_faults import Endpoint, EndpointFaults
from reconciler.sandbox.federation_model import TenantSeed
from reconciler.sandbox.federation_rules import Code
from reconciler.sandbox.federation_rules import FederationSettings as SandboxSettings
from reconciler.sandbox.wire import Request
from reconciler.stores.local import LocalStore
from reconciler.stores.model import State
from reconciler.values import replace
from tests.support import sandbox as fx

SEED = int(os.environ.get("RECONCILER_FAULT_SEED", "20240611"))
SCHEDULES = int(os.environ.get("RECONCILER_FAULT_SCHEDULES", "12"))
FAULTY_RUNS = 3  # runs per phase while the sandbox misbehaves
CALM_RUNS = 6  # runs allowed to converge once it behaves
START = 1_700_000_000.0
ROLE_NAMES = tuple(fx.ROLES)


class Crash(BaseException):
    """The process dies here: a BaseException, so nothing in reconciler can catch it."""


@dataclass
class Recorder:
    """The sandbox in-process, with every task it accepted (even when the answer is lost)."""

    box: app.Sandbox
    accepted: list[str] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        """Hand requests to the sandbox; a dropped answer becomes a ReadError after the fact."""

        def handle(request: httpx.Request) -> httpx.Response:
            wire = Request(
                method=request.method,
                path=request.url.path,
                query={},
                raw_query="",
                headers={name.lower(): value for name, value in request.headers.items()},
                body=request.read(),
                host="sandbox.test",
            )
            response = next(r for h in self.box.handlers() if (r := h.handle(wire)) is not None)
            if request.url.path.endswith("createTask") and response.status == 200:
                answer = json.loads(response.body)
                if answer.get("resultCode") == "0":
                    self.accepted.append(answer["taskId"])
            if response.drop_connection:
                raise httpx.ReadError("connection closed by the server", request=request)
            return httpx.Response(
                response.status, content=response.body, headers=list(response.headers)
            )

        return httpx.MockTransport(handle)


@dataclass
class Crasher:
    """Dies at the ``at``-th state write or API call of ``what`` (never, when ``at`` is 0)."""

    what: str = ""
    at: int = 0
    after: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    on_write: Callable[[int], None] = lambda count: None

    def step(self, what: str, call: Callable[[], Any]) -> Any:
        """Count one ``what``, maybe die before or after doing it."""
        self.counts[what] = self.counts.get(what, 0) + 1
        hit = what == self.what and self.counts[what] == self.at
        if hit and not self.after:
            raise Crash
        result = call()
        if hit:
            raise Crash
        return result


class CrashingStore:
    """A store whose writes go through the crasher."""

    def __init__(self, inner: LocalStore, crasher: Crasher) -> None:
        self.inner, self.crasher = inner, crasher

    def read(self) -> State | None:
        """Delegate."""
        return self.inner.read()

    def write(self, state: State, *, force: bool = False) -> None:
        """Write, maybe dying; the second-runner probe runs at its chosen write."""
        self.crasher.on_write(self.crasher.counts.get("write", 0) + 1)
        self.crasher.step("write", lambda: self.inner.write(state, force=force))

    def fence(self) -> None:
        """Delegate: the schedule's run holds no lock of its own (the runner is in-process)."""
        self.inner.fence()


class CrashingApi:
    """The federation client, its calls going through the crasher."""

    def __init__(self, inner: FederationClient, crasher: Crasher) -> None:
        self.inner, self.crasher = inner, crasher

    def authenticate(self) -> None:
        """Delegate."""
        self.inner.authenticate()

    def create_task(self, entries: Sequence[Mapping[str, object]]) -> str:
        """createTask, maybe dying."""
        result: str = self.crasher.step("create", lambda: self.inner.create_task(entries))
        return result

    def query_task(self, task_id: str) -> TaskStatus:
        """queryTask, maybe dying."""
        result: TaskStatus = self.crasher.step("query", lambda: self.inner.query_task(task_id))
        return result

    def reached(self) -> CallCounts:
        """Delegate."""
        return self.inner.reached()


@dataclass
class Schedule:
    """One schedule's world: sandbox, clock, desired folder, state, and what it wants."""

    rng: random.Random
    recorder: Recorder
    clock: ManualClock
    path: Path
    store: LocalStore
    specs: dict[str, fx.UserSpec]
    removed: set[str] = field(default_factory=set)
    refused_runners: int = 0

    def sleep(self, seconds: float) -> None:
        """Every wait moves the manual clock: no real time passes."""
        self.clock.advance(seconds)

    def client(self) -> FederationClient:
        """A fresh client (a new process has no token), retrying on the manual clock."""
        return FederationClient(
            FederationSettings(
                base_url="http://127.0.0.1:9", app_key=fx.APP_KEY, app_secret=fx.APP_SECRET
            ),
            transport=self.recorder.transport(),
            retry=RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=8.0),
            sleep=self.sleep,
            clock=self.clock,
            rng=random.Random(self.rng.random()),
        )

    def write_desired(self) -> None:
        """The desired folder for the current specs (removed accounts left out)."""
        kept = [spec for account, spec in sorted(self.specs.items()) if account not in self.removed]
        fx.write_desired(self.path, kept)


def _make_schedule(index: int, tmp_path: Path) -> Schedule:
    rng = random.Random(SEED * 1000 + index)
    clock = ManualClock(START)
    settings = SandboxSettings(
        todo_seconds=rng.choice([0.0, 0.5, 2.0]),
        doing_seconds=rng.choice([0.1, 1.0, 3.0]),
        pending_task_limit=rng.choice([2, 3, 10]),
        seed=index,
    )
    federation, control = build_federation(settings, clock)
    federation.seed_tenant(
        TenantSeed(app_key=fx.APP_KEY, app_secret=fx.APP_SECRET, role_ids=tuple(fx.ROLES.values()))
    )
    box = app.Sandbox(
        federation=federation, control=control, cloudidentity=app.build_cloudidentity()
    )
    root = tmp_path / f"schedule{index}"
    specs = {spec.account: spec for spec in _new_users(rng, 0, rng.randint(1, 230))}
    schedule = Schedule(
        rng=rng,
        recorder=Recorder(box),
        clock=clock,
        path=root / "desired",
        store=LocalStore(root / "state.json"),
        specs=specs,
    )
    schedule.write_desired()
    return schedule


def _new_users(rng: random.Random, first: int, count: int) -> list[fx.UserSpec]:
    return [
        fx.UserSpec(
            account=f"user{i:05d}",
            name=f"User {i}",
            email=f"user{i:05d}@example.com",
            roles=tuple(sorted(rng.sample(ROLE_NAMES, rng.randint(1, 2)))),
        )
        for i in range(first, first + count)
    ]


def _mutate(schedule: Schedule) -> None:
    """Change the desired state the way teams do: add, rename, regrant, disable, remove."""
    rng, specs = schedule.rng, schedule.specs
    accounts = sorted(specs)
    picked = rng.sample(accounts, min(len(accounts), rng.randint(1, 25)))
    for account in picked:
        spec = specs[account]
        match rng.choice(["rename", "roles", "disable", "enable", "remove", "restore"]):
            case "rename":
                specs[account] = replace(spec, name=f"{spec.name[:12]} r{rng.randint(1, 99)}")
            case "roles":
                roles = tuple(sorted(rng.sample(ROLE_NAMES, rng.randint(1, 3))))
                specs[account] = replace(spec, roles=roles)
            case "disable":
                specs[account] = replace(spec, enabled=False)
            case "enable":
                specs[account] = replace(spec, enabled=True)
            case "remove":
                schedule.removed.add(account)
            case "restore":
                schedule.removed.discard(account)
    specs.update((s.account, s) for s in _new_users(rng, len(specs), rng.randint(0, 40)))
    schedule.write_desired()


def _faults(schedule: Schedule) -> None:
    """Draw this run's misbehaviour of the sandbox."""
    rng = schedule.rng
    endpoints = {
        endpoint: EndpointFaults(
            error_rate=rng.choice([0.0, 0.05, 0.15]),
            rate_429=rng.choice([0.0, 0.05, 0.1]),
            drop_after_next=rng.choice([0, 0, 1, 2]) if endpoint is not Endpoint.TOKEN else 0,
        )
        for endpoint in Endpoint
    }
    schedule.recorder.box.federation.configure_faults(
        endpoints, role_service_failures=rng.choice([0, 0, 1, 3]), seed=rng.randint(0, 10**6)
    )


def _calm(schedule: Schedule) -> None:
    schedule.recorder.box.federation.configure_faults(
        dict.fromkeys(Endpoint, EndpointFaults()), role_service_failures=0
    )


def _second_runner(schedule: Schedule, env: Mapping[str, str]) -> Callable[[int], None]:
    """At one chosen write, the real CLI tries to apply the same state: the lock refuses it."""
    at = schedule.rng.randint(1, 3)

    def maybe_run(write: int) -> None:
        if write != at or schedule.refused_runners:
            return
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            argv = ["apply", str(schedule.path), "--auto-approve", "--no-refresh"]
            code = cli.main([*argv, "--state", str(schedule.store.path)])
        assert code == 1, err.getvalue()
        assert "is locked" in err.getvalue(), err.getvalue()
        schedule.refused_runners += 1

    assert env[fx.ENV_URL]  # the second runner's settings are in place (it must not get far)
    return maybe_run


def _run(schedule: Schedule, crasher: Crasher) -> None:
    """One `apply PATH`: under the lock, resume, plan, run; a Crash ends it where it hits."""
    client = schedule.client()
    store, api = CrashingStore(schedule.store, crasher), CrashingApi(client, crasher)
    settings = ApplySettings(parallel=schedule.rng.choice([1, 3, 8]), task_timeout=600.0)
    try:
        with schedule.store.lock("apply"):
            applier = engine.Applier(
                store, api, settings=settings, sleep=schedule.sleep, monotonic=schedule.clock
            )
            applier.resume()
            desired = validation.load_desired(schedule.path)
            made = planner.plan(desired, applier.state if applier.state.serial else None)
            if made.changes:
                applier.run(made)
    except (Crash, ReconcilerError):
        pass  # the process died, or the run failed with an error (exit 1)
    finally:
        client.close()
    schedule.store.read()  # readable after every run, whatever happened
    schedule.clock.advance(schedule.rng.choice([0.0, 1.0, 30.0]))


def _crasher(schedule: Schedule, on_write: Callable[[int], None]) -> Crasher:
    rng = schedule.rng
    if rng.random() < 0.3:
        return Crasher(on_write=on_write)
    what = rng.choice(["write", "create", "query"])
    return Crasher(what=what, at=rng.randint(1, 12), after=rng.random() < 0.5, on_write=on_write)


def _converge(schedule: Schedule, on_write: Callable[[int], None]) -> None:
    """Faults off: run until the plan is empty and nothing is pending."""
    _calm(schedule)
    for _ in range(CALM_RUNS):
        _run(schedule, Crasher(on_write=on_write))
        state = schedule.store.read()
        desired = validation.load_desired(schedule.path)
        if state is not None and not state.pending and not planner.plan(desired, state).changes:
            return
    pytest.fail(f"no convergence after {CALM_RUNS} calm runs")


def _check(schedule: Schedule) -> None:
    """The invariants: tenant as desired, no second CREATE, state readable and truthful."""
    box = schedule.recorder.box
    tenant = fx.tenant_view(box)
    state = schedule.store.read()
    assert state is not None
    assert state.pending == ()
    for account, spec in schedule.specs.items():
        if account in schedule.removed or not spec.enabled:
            assert tenant.get(account, {"enabled": False})["enabled"] is False, account
        else:
            assert tenant[account] == fx.desired_view([spec])[account], account
    recorded = {
        a: {"name": r.name, "email": r.email, "role_ids": sorted(r.role_ids), "enabled": r.enabled}
        for a, r in state.accounts.items()
    }
    assert recorded == {a: tenant[a] for a in recorded}, "the state says more than the tenant"
    with schedule.client() as client:
        for task_id in schedule.recorder.accepted:
            status = client.query_task(task_id)
            twice = [
                f.account
                for f in status.failures
                if f.fail_code == Code.USER_EXISTS and f.entry.get("action") == "CREATE"
            ]
            assert twice == [], f"CREATE sent for existing accounts in task {task_id}: {twice}"


@pytest.fixture
def second_runner_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Settings for the CLI second runner: it must be stopped by the lock before any call."""
    env = {fx.ENV_URL: "http://127.0.0.1:9", fx.ENV_KEY: fx.APP_KEY, fx.ENV_SECRET: fx.APP_SECRET}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("RECONCILER_STATE", "VOLCENGINE_ACCESS_KEY", "VOLCENGINE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    return env


@pytest.mark.parametrize("index", range(SCHEDULES))
def test_a_fault_schedule_converges_without_creating_twice(
    index: int, tmp_path: Path, second_runner_env: dict[str, str]
) -> None:
    """Faults, lost answers, crashes and a second runner; then calm: every invariant holds."""
    schedule = _make_schedule(index, tmp_path)
    runner = _second_runner(schedule, second_runner_env)
    for phase in itertools.count():
        for _ in range(FAULTY_RUNS):
            _faults(schedule)
            _run(schedule, _crasher(schedule, runner))
        if phase == 2:
            break
        _mutate(schedule)
    _converge(schedule, runner)
    _check(schedule)
    assert schedule.refused_runners == 1
