"""Provisioning drift end to end: the real CLI against the sandbox on loopback.

Plan shows failed events with their decision; apply retries the chosen ones after the
user batches with each outcome the sandbox can give; attempts hold across runs; paging,
throttling, ``--no-refresh``, ``reconciler refresh``, and the secret never printed.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.cli import main as cli
from reconciler.providers.cloudidentity import client as cloudidentity_client
from reconciler.sandbox import app, cloudidentity
from reconciler.sandbox.server import RunningSandbox
from reconciler.sandbox.wire import Request, Response, json_response
from reconciler.stores import model as state_codec
from reconciler.stores.local import LocalStore
from tests.support.sandbox import ROLES, UserSpec, write_desired

SECRET = app.SANDBOX_SECRET_KEY
RETRY_CALL = "RetryUserProvisioningEvent"
LIST_CALL = "ListUserProvisioningEvents"
CREATE_TASK = "createTask"


class CallLog:
    """A pass-through handler mounted first: records every API call in order.

    With ``refuse_retries`` set it answers every retry itself with a CloudIdentity error
    envelope (a refusal the sandbox has no outcome for), listing still working.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.refuse_retries = False
        self._lock = threading.Lock()

    def handle(self, request: Request) -> Response | None:
        """Note the CloudIdentity action or federation endpoint; let the others answer."""
        if "/_sandbox/" not in request.path:
            action = (request.query.get("Action") or ("",))[0]
            with self._lock:
                self.calls.append(action or request.path.rsplit("/", 1)[-1])
            if action == RETRY_CALL and self.refuse_retries:
                return _refusal(action)
        return None


def _refusal(action: str) -> Response:
    """A CloudIdentity error envelope: the event id was refused as invalid."""
    meta = {
        "RequestId": "REFUSED",
        "Action": action,
        "Version": cloudidentity.VERSION,
        "Service": cloudidentity.SERVICE,
        "Region": "cn-beijing",
        "Error": {"Code": "InvalidParameter", "Message": "the event cannot be retried"},
    }
    return json_response(400, {"ResponseMetadata": meta})


@dataclass
class World:
    """A running sandbox, a desired-state folder and a state file, driven through the CLI."""

    box: app.Sandbox
    url: str
    desired: Path
    state: Path
    log: CallLog
    capsys: pytest.CaptureFixture[str]
    outputs: list[str] = field(default_factory=list)

    def run(self, *argv: str, state: bool = True) -> tuple[int, str, str]:
        """``reconciler ARGV`` → exit code, stdout, stderr (the secret is never in them)."""
        extra = ["--state", str(self.state)] if state else []
        code = cli.main([*argv, *extra])
        captured = self.capsys.readouterr()
        for text in (captured.out, captured.err):
            assert SECRET not in text
        self.outputs += [captured.out, captured.err]
        return code, captured.out, captured.err

    def plan_json(self, *argv: str) -> tuple[int, dict[str, Any]]:
        """``plan --format json`` parsed."""
        code, out, _ = self.run("plan", str(self.desired), "--format", "json", *argv)
        return code, json.loads(out)

    def apply(self, *argv: str) -> tuple[int, dict[str, Any]]:
        """``apply --auto-approve --format json``: exit code and the report."""
        code, out, _ = self.run(
            "apply", str(self.desired), "--auto-approve", "--format", "json", *argv
        )
        return code, json.loads(out)

    def seed(self, *events: dict[str, Any]) -> list[str]:
        """Seed failed events through the control endpoint; their ids, in order."""
        answer = httpx.post(f"{self.url}/_sandbox/cloudidentity/events", json=list(events))
        answer.raise_for_status()
        return [e["UserProvisioningEventId"] for e in answer.json()["events"]]

    def control(self, route: str, payload: dict[str, Any]) -> None:
        """POST to a CloudIdentity control route."""
        httpx.post(f"{self.url}/_sandbox/cloudidentity/{route}", json=payload).raise_for_status()

    def stats(self) -> dict[str, Any]:
        """The CloudIdentity sandbox's counters, read over HTTP."""
        counters: dict[str, Any] = httpx.get(f"{self.url}/_sandbox/cloudidentity/stats").json()
        return counters

    def listed(self) -> dict[str, dict[str, Any]]:
        """Events the sandbox still holds, by id."""
        answer = httpx.get(f"{self.url}/_sandbox/cloudidentity/events").json()
        return {e["UserProvisioningEventId"]: e for e in answer["events"]}

    def recorded_events(self) -> dict[str, Any]:
        """``state.events`` of the recorded state (its snapshot and journal), as JSON."""
        recorded = LocalStore(self.state).read()
        assert recorded is not None
        events: dict[str, Any] = state_codec.to_json(recorded)["events"]
        return events

    def write(self, specs: list[UserSpec], provisioning: str = "") -> None:
        """Replace the desired state (``provisioning`` is the YAML block's body)."""
        policy = f"version: 1\nprovisioning:\n{provisioning}" if provisioning else ""
        if not policy:
            (self.desired / "policy.yaml").unlink(missing_ok=True)
        write_desired(self.desired, specs, policy=policy)


ALICE = UserSpec(account="alice", name="Alice", email="alice@example.com")
BOB = UserSpec(account="bob", name="Bob", email="bob@example.com")
CAROL = UserSpec(account="carol", name="Carol", email="carol@example.com", enabled=False)
DAVE = UserSpec(account="dave", name="Dave", email="dave@example.com")


@pytest.fixture
def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[World]:
    """Sandbox on loopback (with a call log), env pointing at it, alice and bob applied."""
    box = app.build(role_ids=ROLES.values())
    log = CallLog()
    server = RunningSandbox((log, *box.handlers()), "127.0.0.1", 0).start()
    env = {
        "RECONCILER_FEDERATION_URL": server.url,
        "RECONCILER_FEDERATION_APP_KEY": app.SANDBOX_APP_KEY,
        "RECONCILER_FEDERATION_APP_SECRET": app.SANDBOX_APP_SECRET,
        "RECONCILER_CLOUDIDENTITY_URL": server.url,
        "VOLCENGINE_ACCESS_KEY": app.SANDBOX_ACCESS_KEY,
        "VOLCENGINE_SECRET_KEY": SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RECONCILER_STATE", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    found = World(
        box=box,
        url=server.url,
        desired=tmp_path / "desired",
        state=tmp_path / "state.json",
        log=log,
        capsys=capsys,
    )
    try:
        found.write([ALICE, BOB])
        code, _ = found.apply()
        assert code == 0
        log.calls.clear()
        yield found
    finally:
        server.stop()


def _decisions(plan: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {e["event_id"]: (e["account"], e["decision"], e["why"]) for e in plan["events"]["items"]}


# -- plan ---------------------------------------------------------------------------------


def test_plan_sections_carry_every_decision(world: World) -> None:
    """Text, JSON and Markdown list each event with account, target, reason, age, attempts."""
    world.write([ALICE, BOB, DAVE])
    assert world.apply()[0] == 0
    world.write([ALICE, BOB, CAROL])  # dave removed, carol declared disabled
    ids = world.seed(
        {"UserName": "alice", "TargetName": "prod-account", "FailureReason": "quota exceeded"},
        {"UserName": "BOB", "TargetId": "2100000009", "TargetName": ""},
        {"UserName": "mallory", "FailureReason": "no such principal"},
        {"UserName": "carol"},
        {"UserName": "dave"},
    )
    code, plan = world.plan_json("--allow-disables", "1")
    assert code == 0
    assert plan["events"]["refreshed"] is True
    assert _decisions(plan) == {
        ids[0]: ("alice", "retry", "managed and enabled; attempt 1 of 3"),
        ids[1]: ("bob", "retry", "managed and enabled; attempt 1 of 3"),
        ids[2]: ("mallory", "report only", "account is not managed by reconciler"),
        ids[3]: ("carol", "report only", "account is disabled in the desired state"),
        ids[4]: ("dave", "report only", "account was removed from the desired state"),
    }
    items = {e["event_id"]: e for e in plan["events"]["items"]}
    assert (items[ids[0]]["target"], items[ids[0]]["reason"]) == ("prod-account", "quota exceeded")
    assert items[ids[1]]["target"] == "2100000009"  # no target name: the id
    assert all(e["attempts"] == 0 and e["created_at"] for e in items.values())
    assert (plan["summary"]["retry"], plan["summary"]["report_only"]) == (2, 3)

    code, text, _ = world.run("plan", str(world.desired), "--allow-disables", "1")
    section = text.split("Failed provisioning events:\n", 1)[1]
    # The age depends on the wall clock (0s or 1s): match around it.
    assert re.search(
        rf"↻ {ids[0]} alice → prod-account: quota exceeded \(age \d+s, attempts 0\) — "
        "retry: managed and enabled; attempt 1 of 3",
        section,
    )
    assert f"· {ids[2]} mallory → member-account: no such principal" in section
    assert "report only: account is not managed by reconciler" in section
    assert "2 events to retry" in text

    code, markdown, _ = world.run(
        "plan", str(world.desired), "--format", "markdown", "--allow-disables", "1"
    )
    assert "Failed provisioning events (5)" in markdown
    assert re.search(
        rf"\| 🔁 retry \| `{ids[0]}` \| `alice` \| prod-account \| quota exceeded \| \d+s \| 0 \| "
        r"managed and enabled; attempt 1 of 3 \|",
        markdown,
    )
    assert f"| 👀 report only | `{ids[4]}` | `dave` |" in markdown
    assert "| 🔁 provisioning retries | 2 |" in markdown


def test_retry_failed_false_reports_only(world: World) -> None:
    """With provisioning.retry_failed false nothing is retried and nothing counts as a change."""
    world.write([ALICE, BOB], "  retry_failed: false\n")
    (event_id,) = world.seed({"UserName": "alice"})
    code, plan = world.plan_json("--detailed-exitcode")
    assert code == 0
    assert _decisions(plan) == {
        event_id: ("alice", "report only", "provisioning.retry_failed is false")
    }
    code, report = world.apply()
    assert (code, report["failed"]) == (0, [])
    assert RETRY_CALL not in world.log.calls


def test_detailed_exitcode_counts_retries_as_changes(world: World) -> None:
    """Exit 2 with only a retry planned; 0 with nothing or only report-only events."""
    assert world.run("plan", str(world.desired), "--detailed-exitcode")[0] == 0
    world.seed({"UserName": "mallory"})
    assert world.run("plan", str(world.desired), "--detailed-exitcode")[0] == 0
    world.seed({"UserName": "alice"})
    code, out, _ = world.run("plan", str(world.desired), "--detailed-exitcode")
    assert code == 2
    assert "No user changes." in out
    assert "Plan: 0 to create, 0 to modify, 0 to disable, 1 event to retry; 0 batches." in out


def test_refresh_false_plans_offline(world: World) -> None:
    """``--no-refresh`` sends no CloudIdentity call; the JSON plan records it."""
    world.seed({"UserName": "alice"})
    before = world.stats()["calls"].get(LIST_CALL, 0)
    code, _, _ = world.run("plan", str(world.desired), "--no-refresh", "--detailed-exitcode")
    assert code == 0  # the retry is unknown offline, so no change
    code, plan = world.plan_json("--no-refresh")
    assert plan["events"] == {"refreshed": False, "items": []}
    world.run("plan", str(world.desired), "--format", "markdown", "--no-refresh")
    assert world.stats()["calls"].get(LIST_CALL, 0) == before
    assert world.log.calls == []  # not one API call of either kind


def test_refresh_false_is_said_in_text_and_markdown(world: World) -> None:
    """Text and Markdown plans say the events were not refreshed."""
    _, text, _ = world.run("plan", str(world.desired), "--no-refresh")
    _, markdown, _ = world.run("plan", str(world.desired), "--format", "markdown", "--no-refresh")
    note = "provisioning events not refreshed (--no-refresh): planned offline"
    assert note in text
    assert note in markdown


def test_unconfigured_cloudidentity_is_noted(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the VOLCENGINE keys the plan still works and tells how to configure or skip."""
    monkeypatch.delenv("VOLCENGINE_ACCESS_KEY")
    monkeypatch.delenv("VOLCENGINE_SECRET_KEY")
    world.seed({"UserName": "alice"})
    code, out, _ = world.run("plan", str(world.desired))
    assert code == 0
    assert "Note: provisioning events not refreshed: CloudIdentity is not configured" in out
    assert LIST_CALL not in world.log.calls


# -- apply ---------------------------------------------------------------------------------


def test_apply_retries_after_user_batches_with_every_outcome(world: World) -> None:
    """fail → failure (exit 1), the rest still retried; conflict and not_found are no errors."""
    world.write([ALICE, BOB, DAVE])  # one user change, so there is a batch before the retries
    fail, succeed, conflict, gone = world.seed(
        {"UserName": "alice"}, {"UserName": "bob"}, {"UserName": "alice"}, {"UserName": "bob"}
    )
    world.control(
        "outcomes", {fail: "fail", succeed: "succeed", conflict: "conflict", gone: "not_found"}
    )
    code, report = world.apply()
    assert code == 1
    assert report["applied"] == [{"account": "dave", "action": "CREATE"}]
    assert [(f["account"], f["action"], f["code"]) for f in report["failed"]] == [
        ("alice", "RETRY", "RetryFailed")
    ]
    assert "retry 1 failed: target rejected user" in report["failed"][0]["message"]
    notes = "\n".join(report["notes"])
    assert f"event {gone} (bob): already resolved" in notes
    assert f"event {conflict} (alice): a retry is already under way" in notes
    assert f"event {succeed} (bob → member-account): retry succeeded" in notes

    # One at a time, in plan order, after the user batch finished.
    calls = world.log.calls
    retries = [i for i, call in enumerate(calls) if call == RETRY_CALL]
    assert len(retries) == 4
    assert max(i for i, call in enumerate(calls) if call == CREATE_TASK) < retries[0]
    assert world.stats()["retries"] == {fail: 1, succeed: 1, conflict: 1, gone: 1}
    assert set(world.listed()) == {fail, conflict}

    recorded = world.recorded_events()
    assert recorded[fail]["attempts"] == 1
    assert recorded[fail]["last_reason"] == "retry 1 failed: target rejected user"
    assert recorded[fail]["last_attempt_at"]
    listed = httpx.get(f"{world.url}/_sandbox/cloudidentity/events").json()["events"]
    target_ids = {e["UserProvisioningEventId"]: e["TargetId"] for e in listed}
    assert recorded[fail]["target_id"] == target_ids[fail]  # the id, not the target's name
    assert recorded[succeed]["attempts"] == 1
    assert recorded[conflict].get("attempts", 0) == 0  # a conflict is not our attempt
    assert recorded[gone]["status"] == "resolved"


def test_attempts_hold_across_runs(world: World) -> None:
    """A retry that keeps failing is retried on runs 1..max_attempts, then reported only."""
    world.write([ALICE, BOB], "  max_attempts: 2\n")
    (event_id,) = world.seed({"UserName": "alice"})
    world.control("outcomes", {event_id: "fail"})
    for run in (1, 2):
        code, plan = world.plan_json()
        assert _decisions(plan)[event_id][1:] == (
            "retry",
            f"managed and enabled; attempt {run} of 2",
        )
        assert world.apply()[0] == 1
        assert world.recorded_events()[event_id]["attempts"] == run
    code, plan = world.plan_json("--detailed-exitcode")
    assert code == 0
    assert _decisions(plan)[event_id] == (
        "alice",
        "report only",
        "attempts exhausted (2/2); investigate the reason",
    )
    assert plan["events"]["items"][0]["reason"] == "retry 2 failed: target rejected user"
    code, report = world.apply()
    assert (code, report["failed"]) == (0, [])
    assert world.stats()["retries"] == {event_id: 2}


def test_saved_plan_applies_its_retries(world: World, tmp_path: Path) -> None:
    """A plan saved with --out retries exactly its chosen events."""
    (event_id,) = world.seed({"UserName": "alice"})
    saved = tmp_path / "plan.json"
    code, _, _ = world.run("plan", str(world.desired), "--out", str(saved))
    assert code == 0
    code, out, _ = world.run("apply", str(saved), str(world.desired))
    assert code == 0
    assert f"event {event_id} (alice → member-account): retry succeeded (attempt 1)" in out
    assert world.listed() == {}


def test_lost_retry_answer_is_a_failure_with_unknown_status(world: World) -> None:
    """A retry whose answer is lost is not resent: a transport failure, status unknown."""
    (event_id,) = world.seed({"UserName": "alice"})
    world.control("outcomes", {event_id: "lost"})
    code, report = world.apply()
    assert code == 1
    assert [(f["account"], f["code"]) for f in report["failed"]] == [("alice", "transport")]
    assert world.stats()["retries"] == {event_id: 1}
    recorded = world.recorded_events()[event_id]
    assert (recorded["attempts"], recorded["status"]) == (1, "unknown")


def _saved_plan_with_one_retry(world: World, tmp_path: Path) -> tuple[str, Path]:
    (event_id,) = world.seed({"UserName": "alice"})
    saved = tmp_path / "plan.json"
    assert world.run("plan", str(world.desired), "--out", str(saved))[0] == 0
    return event_id, saved


def test_rejected_retry_is_recorded_and_reported(world: World, tmp_path: Path) -> None:
    """A retry the API refuses (here: InvalidParameter) fails with its code and counts."""
    event_id, saved = _saved_plan_with_one_retry(world, tmp_path)
    world.log.refuse_retries = True
    code, out, _ = world.run("apply", str(saved), str(world.desired))
    assert code == 1
    assert "✗ RETRY   alice: InvalidParameter" in out
    recorded = world.recorded_events()[event_id]
    assert recorded["attempts"] == 1
    assert recorded["last_reason"].startswith("InvalidParameter")


def test_a_saved_retry_of_an_event_resolved_since_is_skipped(world: World, tmp_path: Path) -> None:
    """Events are listed again at apply: one resolved meanwhile is not retried blindly.

    An event that failed after the plan was saved is not retried either: it was not reviewed.
    """
    event_id, saved = _saved_plan_with_one_retry(world, tmp_path)
    with cloudidentity_client.CloudIdentityClient(
        cloudidentity_client.CloudIdentitySettings.from_env(os.environ)
    ) as someone_else:
        someone_else.retry_provisioning_event(event_id)  # the sandbox's default: it succeeds
    assert world.listed() == {}
    (later,) = world.seed({"UserName": "bob"})
    world.log.calls.clear()
    code, out, _ = world.run("apply", str(saved), str(world.desired))
    assert code == 0
    assert f"event {event_id} (alice): not failed any more; its retry is skipped" in out
    assert world.log.calls == [LIST_CALL]
    assert set(world.listed()) == {later}


def test_a_retry_added_to_a_saved_plan_is_refused(world: World, tmp_path: Path) -> None:
    """M6: the retries are covered by changes_digest: an event that failed after the
    review, written into plan.json as a retry, is refused with the file; nothing is sent."""
    event_id, saved = _saved_plan_with_one_retry(world, tmp_path)
    (later,) = world.seed({"UserName": "bob"})
    document = json.loads(saved.read_text(encoding="utf-8"))
    (item,) = document["events"]["items"]
    document["events"]["items"].append({**item, "event_id": later, "account": "bob"})
    document["summary"]["retry"] = 2
    saved.write_text(json.dumps(document), encoding="utf-8")
    world.log.calls.clear()
    code, _, err = world.run("apply", str(saved), str(world.desired))
    assert code == 1
    assert "retries do not match its changes_digest (the file was edited)" in err
    assert RETRY_CALL not in world.log.calls
    assert set(world.listed()) == {event_id, later}


def test_saved_retries_are_not_sent_when_the_listing_is_refused(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """apply PLANFILE lists events again first: a bad signature stops it, nothing retried."""
    event_id, saved = _saved_plan_with_one_retry(world, tmp_path)
    monkeypatch.setenv("VOLCENGINE_SECRET_KEY", "not-the-secret")
    world.log.calls.clear()
    code, out, err = world.run("apply", str(saved), str(world.desired))
    assert code == 1
    assert "SignatureDoesNotMatch" in err
    assert RETRY_CALL not in world.log.calls
    assert CREATE_TASK not in world.log.calls
    assert "attempts" not in world.recorded_events().get(event_id, {})
    assert "not-the-secret" not in out + err


def test_retry_without_credentials_fails_each_event(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A saved plan's retries cannot run without CloudIdentity keys: each is a failure."""
    _, saved = _saved_plan_with_one_retry(world, tmp_path)
    monkeypatch.delenv("VOLCENGINE_ACCESS_KEY")
    monkeypatch.delenv("VOLCENGINE_SECRET_KEY")
    code, out, _ = world.run("apply", str(saved), str(world.desired))
    assert code == 1
    assert "✗ RETRY   alice: config CloudIdentity is not configured" in out
    assert RETRY_CALL not in world.log.calls


def test_apply_with_refresh_false_retries_nothing(world: World) -> None:
    """apply --no-refresh neither lists nor retries events."""
    world.seed({"UserName": "alice"})
    code, _ = world.apply("--no-refresh")
    assert code == 0
    assert world.log.calls == []


# -- scale and throttling -------------------------------------------------------------------


def test_plan_pages_through_250_events(world: World) -> None:
    """250 generated events arrive over three pages and all appear in the plan."""
    world.control("events/generate", {"count": 250, "prefix": "gen"})
    code, plan = world.plan_json()
    assert code == 0
    items = plan["events"]["items"]
    assert len(items) == 250
    assert len({e["event_id"] for e in items}) == 250
    assert all(e["decision"] == "report only" for e in items)
    assert world.log.calls.count(LIST_CALL) == 3


def test_throttled_listing_is_retried(world: World) -> None:
    """Two throttled answers are retried with backoff and the plan still succeeds."""
    world.seed({"UserName": "alice"})
    world.control("throttle", {"count": 2, "code": "FlowLimitExceeded"})
    code, plan = world.plan_json()
    assert code == 0
    assert len(plan["events"]["items"]) == 1
    assert world.stats()["rejected"] == {"FlowLimitExceeded": 2}
    assert world.log.calls.count(LIST_CALL) == 3


# -- refresh ----------------------------------------------------------------------------------


def test_refresh_updates_the_state_knowledge_of_events(world: World) -> None:
    """``reconciler refresh`` records open events, keeps attempts, forgets resolved ones."""
    kept, resolved = world.seed(
        {"UserName": "ALICE", "FailureReason": "quota"}, {"UserName": "bob"}
    )
    world.control("outcomes", {kept: "fail"})
    assert world.apply()[0] == 1  # kept: attempt 1 failed; resolved: gone
    world.seed({"UserName": "mallory"})
    code, out, _ = world.run("refresh", str(world.desired))
    assert code == 0
    assert "2 failed provisioning event(s) open; 1 no longer listed (resolved)" in out
    recorded = world.recorded_events()
    assert resolved not in recorded
    assert recorded[kept]["account"] == "alice"
    assert recorded[kept]["attempts"] == 1
    assert recorded[kept]["status"] == "open"
    assert recorded[kept]["last_reason"] == "retry 1 failed: target rejected user"
    assert recorded[kept]["seen_at"]
    (new,) = (e for e in recorded if e not in (kept, resolved))
    assert recorded[new]["account"] == "mallory"

    code, report_out, _ = world.run("refresh", str(world.desired), "--format", "json")
    assert code == 0
    assert "2 failed provisioning event(s) open" in json.loads(report_out)["notes"]


def test_refresh_without_cloudidentity_says_so(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``refresh`` without CloudIdentity keys still follows tasks and notes the skip."""
    monkeypatch.delenv("VOLCENGINE_ACCESS_KEY")
    monkeypatch.delenv("VOLCENGINE_SECRET_KEY")
    code, out, _ = world.run("refresh", str(world.desired))
    assert code == 0
    assert "provisioning events not refreshed: CloudIdentity is not configured" in out


# -- secrets ----------------------------------------------------------------------------------


def test_secret_key_never_printed(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """VOLCENGINE_SECRET_KEY stays out of every output, the state and a signing failure."""
    world.seed({"UserName": "alice"}, {"UserName": "mallory"})
    world.run("plan", str(world.desired))
    world.run("plan", str(world.desired), "--format", "markdown")
    world.plan_json()
    world.apply()
    world.run("refresh", str(world.desired))
    wrong = "wrong-secret-do-not-print"
    monkeypatch.setenv("VOLCENGINE_SECRET_KEY", wrong)
    code, out, err = world.run("plan", str(world.desired), "--debug")
    assert code == 1
    assert "SignatureDoesNotMatch" in err
    assert wrong not in out + err
    # snapshot, journal, backup, check record; and the parse cache's entries
    files = sorted(f for f in world.state.parent.glob(world.state.name + "*") if f.is_file())
    files += sorted(world.state.parent.glob(world.state.name + ".cache/*.json"))
    everything = "\n".join([*world.outputs, *(f.read_text(encoding="utf-8") for f in files)])
    assert SECRET not in everything
