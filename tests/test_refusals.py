"""``apply.refusals.isolate``: which entries of a refused batch fail, which go out again."""

from __future__ import annotations

import pytest

from reconciler.apply import refusals
from reconciler.providers.federation.replies import BatchRefused
from reconciler.stores.model import AccountRecord, Action, PendingBatch, PendingEntry

NOW = "2024-01-01T00:00:00Z"
ROLE = "1672380646005741602"


def _batch(*accounts: str) -> PendingBatch:
    return PendingBatch(
        batch_id="b-1",
        entries=tuple(
            PendingEntry(
                action=Action.CREATE,
                account=account,
                wire={"action": "CREATE", "userAccount": account},
                target=AccountRecord(
                    account=account, name=account, email="", role_ids=(), enabled=True
                ),
            )
            for account in accounts
        ),
    )


def _isolate(batch: PendingBatch, refusal: BatchRefused, left: int = 20) -> refusals.Isolation:
    return refusals.isolate(
        batch, refusal, role_names={ROLE: "supervisor"}, resends_left=left, now=NOW
    )


def _accounts(batch: PendingBatch) -> list[str]:
    return [entry.account for entry in batch.entries]


def test_a_named_role_fails_its_users_by_role_name_and_resends_the_rest() -> None:
    """100-217: the role's users fail with its desired-state name; one new batch for the rest."""
    refusal = BatchRefused("x", code="100-217", http_status=200, culprits=("b", "d"), role_id=ROLE)
    isolation = _isolate(_batch("a", "b", "c", "d"), refusal)
    assert [(f.account, f.code) for f in isolation.failed] == [("b", "100-217"), ("d", "100-217")]
    assert {f.message for f in isolation.failed} == {
        f"role `supervisor` ({ROLE}) is not on the tenant"
    }
    [again] = isolation.resend
    assert _accounts(again) == ["a", "c"]
    assert again.batch_id != "b-1"
    assert (again.task_id, again.recorded_at) == (None, NOW)


def test_an_unknown_role_id_is_shown_as_the_id() -> None:
    """A role id the desired state does not name is reported by its id."""
    refusal = BatchRefused("x", code="100-217", http_status=200, culprits=("a",), role_id="42")
    [failure] = _isolate(_batch("a"), refusal).failed
    assert failure.message == "role 42 is not on the tenant"


def test_a_rule_code_fails_its_culprits_with_the_rule() -> None:
    """A documented rule: the entries breaking it fail with its meaning; nothing else."""
    refusal = BatchRefused("x", code="100-213", http_status=200, culprits=("c",))
    isolation = _isolate(_batch("a", "c"), refusal)
    [failure] = isolation.failed
    assert failure.message.startswith("a userName is longer than")
    assert [_accounts(b) for b in isolation.resend] == [["a"]]


def test_a_refusal_blaming_everyone_resends_nothing() -> None:
    """No entry is left: nothing is sent again."""
    refusal = BatchRefused("x", code="100-217", http_status=200, culprits=("a",), role_id=ROLE)
    assert _isolate(_batch("a"), refusal).resend == ()


@pytest.mark.parametrize("culprits", [(), ("not-in-this-batch",)])
def test_a_refusal_naming_nothing_splits_the_batch_in_halves(culprits: tuple[str, ...]) -> None:
    """Nothing identifies an entry: two halves go out again, nothing fails yet."""
    refusal = BatchRefused("x", code="100-301", http_status=200, culprits=culprits)
    isolation = _isolate(_batch("a", "b", "c", "d", "e"), refusal)
    assert isolation.failed == ()
    assert [_accounts(b) for b in isolation.resend] == [["a", "b"], ["c", "d", "e"]]


def test_a_single_entry_refused_for_nothing_named_fails() -> None:
    """Splitting ends at one entry: it fails with the code."""
    refusal = BatchRefused("x", code="100-301", http_status=200)
    [failure] = _isolate(_batch("a"), refusal).failed
    assert (failure.code, failure.message) == (
        "100-301",
        "createTask refused it with undocumented resultCode 100-301",
    )


@pytest.mark.parametrize(
    ("refusal", "left"),
    [
        (BatchRefused("x", code="100-301", http_status=200), 1),
        (BatchRefused("x", code="100-217", http_status=200, culprits=("a",), role_id=ROLE), 0),
    ],
    ids=["split-needs-two", "resend-needs-one"],
)
def test_without_resends_left_the_entries_fail_as_they_are(
    refusal: BatchRefused, left: int
) -> None:
    """The budget is spent: nothing goes out again, and every entry is reported."""
    isolation = _isolate(_batch("a", "b"), refusal, left=left)
    assert isolation.resend == ()
    assert sorted(f.account for f in isolation.failed) == ["a", "b"]
    assert any(f.message == refusals.SPENT for f in isolation.failed)


@pytest.mark.parametrize("code", sorted(refusals.REQUEST_BUGS))
def test_a_malformed_request_is_a_bug_and_nothing_is_resent(code: str) -> None:
    """100-102/100-103 say the request, not an entry, was wrong: fail, never split."""
    refusal = BatchRefused("the list was empty", code=code, http_status=200)
    isolation = _isolate(_batch("a", "b"), refusal)
    assert isolation.resend == ()
    assert [f.message for f in isolation.failed] == ["the list was empty"] * 2
