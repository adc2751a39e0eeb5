"""Apply: plan changes → createTask batches → queryTask until DONE → recorded state.

Per batch: record the intent → createTask → record the task id → follow it to DONE →
record per account. The state is written under the lock the caller holds: an intent
before its createTask is sent, task ids and results before the applier next waits (or
returns), grouped into as few full-state writes as that allows. So a crash at any moment
leaves a truthful, uncorrupted state:

- a batch with a recorded task id is followed on the next run, never resent;
- a batch whose request may have reached the API without its id being recorded is
  settled by a probe (``ledger.probe_batch``), never by a blind CREATE.

Failing once: the token is fetched before anything is sent, and a failure no batch can
fix (credentials refused, the API unreachable after the client's retries) stops sending
for the rest of the run — the report carries that one error — while what is already in
flight is followed to the end. A refusal that blames entries drops them and sends the
rest again (``refusals``). A stop request (SIGINT/SIGTERM, seen through ``stop``, which
names it) ends the run at the next step: nothing new is sent, what is known is written,
and the tasks in flight stay recorded for ``reconciler refresh``.

The state transitions are pure functions in ``ledger``; what one createTask can come to,
and how a round of them is dispatched, is in ``tasks``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from reconciler.apply import following, ledger, refusals, tasks
from reconciler.apply.ledger import Failure
from reconciler.apply.pacing import ApplySettings, Pacer
from reconciler.apply.report import ApplyReport, Counters
from reconciler.apply.tasks import NotSent, Refused, Sent, TaskApi
from reconciler.errors import FederationError, ReconcilerError, TransportError
from reconciler.plan.model import Plan
from reconciler.providers.federation.replies import BatchRefused
from reconciler.stores import Store, check_room
from reconciler.stores.model import Action, PendingBatch, State, utc_now
from reconciler.values import replace

# Also exported: the report (report.py), the settings (pacing.py) and the API protocol
# (tasks.py) callers hand it.
__all__ = [
    "Applier",
    "ApplyReport",
    "ApplySettings",
    "Counters",
    "Progress",
    "TaskApi",
]


class Progress(Protocol):
    """Receives progress of a long apply."""

    def update(self, counters: Counters, message: str | None = None) -> None:
        """Counters changed (and maybe a line worth showing)."""
        ...


class _Quiet:
    def update(self, counters: Counters, message: str | None = None) -> None:
        """Ignore."""


class Applier:
    """Drives batches through the federation API, recording each step in the store."""

    def __init__(
        self,
        store: Store,
        api: TaskApi,
        *,
        settings: ApplySettings | None = None,
        progress: Progress | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], str] = utc_now,
        stop: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.store = store
        self.api = api
        self.settings = settings or ApplySettings()
        self.progress = progress or _Quiet()
        self.sleep, self.monotonic, self.now, self.stop = sleep, monotonic, now, stop
        self.state: State = store.read() or State.empty()
        check_room(self.state, store)  # before anything is sent
        self.report = ApplyReport()
        self._staged = False  # self.state holds task ids/results not yet written
        self._pace = Pacer(self.settings)
        self._probes: set[str] = set()  # batch ids of this run's probe tasks
        self._prewritten: set[str] = set()  # intents written while waiting (``_prewrite``)
        self._resuming = False  # settling an earlier run: a plan is made afterwards
        self._halted = False  # nothing more is sent in this run
        self._resends_left = self.settings.max_resends
        self._role_names: dict[str, str] = {}
        self._calls_at_start = api.reached()
        # The batches run() made live as long as the applier: freed when it returned, their
        # entries (a request and a target record each) cost 4-6 ms per 10,000 between the
        # last task DONE and the report, and a console run leaves the applier to the
        # operating system instead (cli.exiting.keep).
        self._batches: list[PendingBatch] = []

    # -- state ------------------------------------------------------------------

    def write_state(self, changed: State) -> None:
        """Write ``changed`` as the next serial (also for callers recording event attempts)."""
        new_state = replace(changed, serial=self.state.serial + 1, updated_at=self.now())
        self.store.write(new_state)
        self.state = new_state
        self._staged = False

    def _stage(self, changed: State) -> None:
        """Keep ``changed`` for the next write: the next intent's, or the one before a wait.

        Only task ids and results are staged. Losing them in a crash is safe: a recorded
        task is queried again, and an intent without its id is settled by a probe.
        """
        self.state = changed
        self._staged = True

    def _flush(self) -> None:
        if self._staged:
            self.write_state(self.state)

    def _tell(self, message: str | None = None) -> None:
        counters, calls = self.report.counters, self.api.reached()
        counters.create_calls = calls.create_task - self._calls_at_start.create_task
        counters.query_calls = calls.query_task - self._calls_at_start.query_task
        self.progress.update(counters, message)

    # -- public -----------------------------------------------------------------

    def resume(self) -> ApplyReport:
        """Finish batches an earlier run left pending (follow ids; probe lost sends)."""
        if not self.state.pending:
            return self.report
        self.api.authenticate()
        self._resuming = True
        followed = {b.batch_id: b for b in self.state.pending if b.task_id is not None}
        lost = [b for b in self.state.pending if b.task_id is None]
        counters = self.report.counters
        counters.batches_total += len(self.state.pending)
        counters.users_total += sum(len(b.entries) for b in self.state.pending)
        if followed:
            self._tell(f"following {len(followed)} task(s) of an earlier run")
        self._drive(deque(), followed)
        self._settle_lost(lost)
        self._resuming = False
        self._tell()
        return self.report

    def run(self, plan: Plan, *, source_commit: str | None = None) -> ApplyReport:
        """Apply ``plan``'s changes in its batches."""
        self._role_names = {role_id: info.name for role_id, info in plan.roles.items()}
        changes = {change.account: change for change in plan.changes}
        # An account in a batch still pending (its task not followed, or its request maybe
        # received and not settled) is not sent again: a CREATE could meet the account the
        # unsettled batch created. `refresh` settles it; the next plan has what is left.
        unsettled = {e.account for b in self.state.pending for e in b.entries} & set(changes)
        if unsettled:
            self.report.unresolved.append(
                f"{len(unsettled)} account(s) not sent: an earlier batch for them is not "
                "settled yet; run `reconciler refresh`, then apply again"
            )
        batches = [
            ledger.new_batch((changes[a] for a in sendable), self.now(), source_commit)
            for accounts in plan.batches
            if (sendable := [a for a in accounts if a not in unsettled])
        ]
        self._batches += batches
        counters = self.report.counters
        counters.batches_total += len(batches)
        counters.users_total += sum(len(b.entries) for b in batches)
        self._tell()
        if batches:
            self.api.authenticate()  # a refused credential fails here, once, before any batch
        self._record_policy(plan, sending=bool(batches))
        queue = deque((b, False) for b in batches)
        resent: set[str] = set()
        while True:
            # A lost response stops sending; once its probe has settled it (tasks of a
            # tenant run in order), the rest of the plan goes out in the same run, with
            # the CREATEs the probe showed never happened.
            lost = self._drive(queue, {})
            settled = self._settle_lost(lost)
            again = ledger.creates_to_resend(self.state, lost, resent, self.now())
            if again is not None and settled:
                resent.update(entry.account for entry in again.entries)
                queue.append((again, False))
                self.report.counters.batches_total += 1
                self.report.counters.users_total += len(again.entries)
            if not settled or not queue or self._stopping():
                break
        if queue:
            self._unwrite(queue)
            users = sum(len(batch.entries) for batch, _ in queue)
            self.report.unresolved.append(
                f"{len(queue)} batch(es) ({users} users) were not sent in this run; "
                "run `reconciler apply` again"
            )
        self._tell()
        return self.report

    def _record_policy(self, plan: Plan, *, sending: bool) -> None:
        """Record the policy the plan was made under, if the state holds another.

        With batches to send it goes with the first intent (nothing sent: nothing recorded,
        so a refused credential or an early stop leaves the state as it was); a policy-only
        plan writes it at once. The next plan compares its policy with this one.
        """
        if plan.policy is None or plan.policy.desired == self.state.policy:
            return
        changed = replace(self.state, policy=plan.policy.desired)
        if sending:
            self._stage(changed)
        elif not self._stopping():
            self.write_state(changed)

    # -- stopping ---------------------------------------------------------------

    def _stopping(self) -> bool:
        """True once nothing more may be sent: halted by a failure, or asked to stop."""
        if self.report.interrupted is None:
            self.report.interrupted = self.stop()
            if self.report.interrupted is not None:
                self._tell(
                    f"{self.report.interrupted}: sending nothing more, recording what is known"
                )
        return self._halted or self.report.interrupted is not None

    def _halt(self, error: ReconcilerError | None) -> None:
        """Send nothing more in this run; ``error`` (the first one) is reported once."""
        self._halted = True
        if error is not None and self.report.error is None:
            self.report.error = error
            self._tell(f"stopped sending: {error.message}")

    # -- the loop ---------------------------------------------------------------

    def _settle_lost(self, lost: list[PendingBatch]) -> bool:
        """Probe each lost batch; True when every one of them was settled."""
        probes_before = set(self._probes)
        for batch in lost:
            if self._stopping():
                break  # a probe is a createTask too: left to `refresh`, which settles it
            probe = ledger.probe_batch(self.state, batch, self.now())
            self._probes.add(probe.batch_id)
            # The probe is recorded (in the lost batch's place) before it is sent.
            self.write_state(ledger.with_probe(self.state, batch, probe))
            self._tell(
                f"batch {batch.batch_id[:8]}: its request may have reached the API without a "
                "recorded task id; settling it with a probe task (no blind CREATE)"
            )
            self.report.counters.batches_total += 1
            self._drive(deque([(probe, True)]), {})
        # Whatever still has no task id (lost, a probe lost or never sent) stays recorded.
        lost_ids = {batch.batch_id for batch in lost} | (self._probes - probes_before)
        unsettled = [b for b in self.state.pending if b.task_id is None and b.batch_id in lost_ids]
        for gone in unsettled:
            self.report.unresolved.append(
                f"batch {gone.batch_id[:8]} ({len(gone.entries)} users): the API may or "
                "may not have received it; run `reconciler refresh` to settle it"
            )
        return not unsettled

    def _drive(
        self,
        queue: deque[tuple[PendingBatch, bool]],
        in_flight: dict[str, PendingBatch],
    ) -> list[PendingBatch]:
        """Send queued batches (≤ parallel in flight) and follow tasks; returns lost ones."""
        lost: list[PendingBatch] = []
        self._pace.start()
        for batch_id in in_flight:
            self._pace.follow(batch_id, self.monotonic())
        sending = True
        # After a 100-113 while our own tasks run, the tenant's limit is known to be full:
        # send again only once one of ours is DONE, instead of one refused call per poll.
        held = False
        while True:
            # Asked on every round, not only while batches are queued: a signal after the
            # last send stops following too (in flight stays recorded for `refresh`).
            stopping = self._stopping()
            may_send = bool(queue) and sending and not stopping
            if self.report.interrupted is not None:
                self.report.unresolved += following.leave(in_flight)
                break
            if not may_send and not in_flight:
                break
            waiting_for_slot = False
            held = held and bool(in_flight)
            if may_send and not held and len(in_flight) < self.settings.parallel:
                round_ = self._send_round(queue, in_flight)
                if round_.lost is not None:
                    lost.append(round_.lost)
                    sending = False
                if round_.limited:
                    waiting_for_slot = True
                    held = bool(in_flight)
            # With a batch to send, a task seen DONE frees its slot at once: the poll stops
            # there, and the loop sends into it before asking about the other tasks.
            if in_flight and self._poll(in_flight, first_done=may_send):
                held = False
                continue
            if may_send and not held:
                self._prewrite(queue)
            self._flush()  # before waiting: a kill during the wait loses nothing
            if not self._expire(in_flight):
                self._wait(in_flight, waiting_for_slot=waiting_for_slot)
        self._flush()
        return lost

    def _expire(self, in_flight: dict[str, PendingBatch]) -> bool:
        """Let go of tasks followed longer than the task timeout; True if any was."""
        let_go = following.expire(in_flight, self._pace, self.monotonic())
        self.report.unresolved += let_go
        if let_go:
            # Tasks of a tenant run in order: the ones sent after a stuck task wait too.
            self._halt(None)
        return bool(let_go)

    def _prewrite(self, queue: deque[tuple[PendingBatch, bool]]) -> None:
        """While the slots are busy, write the intents of the batches that go out next.

        A slot that frees is then refilled at once, without a state write (an fsync) on
        the way: per wave of tasks that write was a tenth of the time over the API's own.
        Intent before send still holds. A crash before they are sent leaves intents of
        batches never sent, which the next run settles like any lost send, by a probe
        (never a blind CREATE); a run that ends with them unsent takes them back
        (``_unwrite``), since it knows they were not sent.
        """
        fresh: list[PendingBatch] = []
        for index in range(min(self.settings.parallel, len(queue))):
            batch, recorded = queue[index]
            if not recorded:
                fresh.append(batch)
                queue[index] = (batch, True)
        if fresh:
            self._prewritten.update(batch.batch_id for batch in fresh)
            self.write_state(ledger.with_intents(self.state, fresh))

    def _unwrite(self, queue: deque[tuple[PendingBatch, bool]]) -> None:
        """Take back the intents ``_prewrite`` wrote for batches this run did not send."""
        unsent = {batch.batch_id for batch, _ in queue} & self._prewritten
        if not unsent:
            return
        self._prewritten -= unsent
        self.write_state(ledger.without(self.state, unsent))
        for index, (batch, _) in enumerate(queue):
            if batch.batch_id in unsent:
                queue[index] = (batch, False)

    def _send_round(
        self, queue: deque[tuple[PendingBatch, bool]], in_flight: dict[str, PendingBatch]
    ) -> tasks.Round:
        """Send what fits in flight from ``queue``: intents written first, ids staged after."""
        taken: list[tuple[PendingBatch, bool]] = []
        while queue and len(in_flight) + len(taken) < self.settings.parallel:
            taken.append(queue.popleft())
        fresh = [batch for batch, recorded in taken if not recorded]
        if fresh:  # durable before any of them is sent
            self.write_state(ledger.with_intents(self.state, fresh))
        round_ = tasks.send_round([batch for batch, _ in taken], self._send, self._stopping)
        for batch, task_id in round_.sent:
            in_flight[batch.batch_id] = replace(batch, task_id=task_id)
        # Resends are new batches: their intents are written before they are sent. An
        # unsent probe keeps its intent: it stands for a lost batch that must not be forgotten.
        again = [(batch, False) for batch in round_.resend]
        again += [(batch, batch.batch_id in self._probes) for batch in round_.unsent]
        queue.extendleft(reversed(again))
        self.report.counters.batches_total += len(round_.resend)
        kept = {b.batch_id for b in round_.unsent if b.batch_id in self._probes}
        forget = [batch_id for batch_id in round_.forget if batch_id not in kept]
        if round_.sent or forget:
            task_ids = {batch.batch_id: task_id for batch, task_id in round_.sent}
            recorded = ledger.with_task_ids(self.state, task_ids, self.now())
            self._stage(ledger.without(recorded, forget))
            self._tell()
        return round_

    def _wait(self, in_flight: Mapping[str, PendingBatch], *, waiting_for_slot: bool) -> None:
        """Sleep before the next round: back off at the task limit, else until a poll is due."""
        if waiting_for_slot and not in_flight:
            # The tenant's limit is full of tasks that are not ours: back off and resend.
            self._tell("tenant task limit reached (100-113); waiting before resending")
            self.sleep(self._pace.limit_pause())
        elif in_flight:
            self.sleep(self._pace.poll_pause(in_flight, self.monotonic()))

    def _send(self, batch: PendingBatch) -> tasks.SendOutcome:
        """createTask for ``batch``; a refusal fails what it blames, a dead end halts."""
        self.store.fence()  # a run that lost its state lock sends nothing more
        try:
            task_id = self.api.create_task([dict(e.wire) for e in batch.entries])
        except BatchRefused as refusal:
            return self._refused(batch, refusal)
        except FederationError as error:  # about the call (credentials, URL), not the batch
            self._halt(error)
            return NotSent.HALT
        except TransportError as error:
            if error.maybe_sent:
                self._tell(f"createTask response lost: {error.message}")
                return NotSent.LOST
            self._halt(error)  # the client's retries are spent: the API is not reachable
            return NotSent.HALT
        self._pace.follow(batch.batch_id, self.monotonic(), accepted=True)
        self.report.counters.batches_sent += 1
        return Sent(task_id=task_id)

    def _refused(self, batch: PendingBatch, refusal: BatchRefused) -> tasks.SendOutcome:
        """No task was created: wait (100-113), halt (100-216 spent), or isolate the culprits."""
        if refusal.code == tasks.PENDING_LIMIT_CODE:
            return NotSent.LIMIT
        if refusal.code == tasks.ROLE_SERVICE_FAILED_CODE:
            self._halt(refusal)  # the tenant's role service, not this batch: retried already
            return NotSent.HALT
        isolation = refusals.isolate(
            batch,
            refusal,
            role_names=self._role_names,
            resends_left=self._resends_left,
            now=self.now(),
        )
        self._resends_left -= len(isolation.resend)
        if batch.batch_id in self._probes:  # the rest of a probe is still a probe
            self._probes.update(again.batch_id for again in isolation.resend)
        self.report.failed.extend(isolation.failed)
        self.report.counters.users_failed += len(isolation.failed)
        resent = sum(len(again.entries) for again in isolation.resend)
        self._tell(
            f"createTask refused a batch of {len(batch.entries)} ({refusal.code}): "
            f"{len(isolation.failed)} failed, {resent} sent again"
        )
        return Refused(resend=isolation.resend)

    def _poll(self, in_flight: dict[str, PendingBatch], *, first_done: bool = False) -> bool:
        """Query the tasks in flight that are due (up to the first DONE one with
        ``first_done``); record DONE ones. True when any finished."""
        polled = following.poll(
            self.api, in_flight, self._pace, self.monotonic, first_done=first_done
        )
        self.report.unresolved += polled.let_go
        if polled.error is not None:
            self._halt(polled.error)  # the API is not answering: nothing more is sent
        if not polled.done:
            return False
        self._record_done(
            [(batch, tasks.failures_of(batch, status)) for batch, status in polled.done]
        )
        return True

    def _record_done(self, done: Sequence[tuple[PendingBatch, Mapping[str, Failure]]]) -> None:
        """Stage the results of DONE tasks and count them."""
        counters = self.report.counters
        # A probe of this run, or one an earlier run sent and recorded before it stopped: a
        # MODIFY of an account the state does not record comes only from a probe (the
        # planner modifies recorded accounts alone).
        probed = {
            e.account
            for b, _ in done
            for e in b.entries
            if b.batch_id in self._probes
            or (e.action is Action.MODIFY and e.account not in self.state.accounts)
        }
        new_state, applied, failed = ledger.with_results(self.state, done, self.now())
        self._stage(new_state)
        unconfirmed = [f for f in failed if f.account in probed]
        if unconfirmed:
            # A failed probe is an answer, not an error: the interrupted request did not
            # leave the account as desired, so it stays unrecorded and is planned again
            # (by the plan that follows a resume, or by the next apply).
            failed = [f for f in failed if f.account not in probed]
            counters.users_total -= len(unconfirmed)
            then = (
                "they stay unrecorded and the next plan sends them again"
                if self._resuming
                else "they are sent again in this run"
            )
            self.report.notes.append(
                f"{len(unconfirmed)} account(s) of an interrupted request were not confirmed "
                f"by the probe ({unconfirmed[0].code} {unconfirmed[0].message}); {then}"
            )
        counters.tasks_done += len(done)
        counters.users_applied += len(applied)
        counters.users_failed += len(failed)
        self.report.applied.extend((e.account, e.action) for e in applied)
        self.report.failed.extend(failed)
        self._tell()
