"""Differences a person reads: two states, or two JSON documents. The only deepdiff user.

Which accounts, pending batches and events differ between two states is found directly
(key sets and record equality: fast at 100k accounts); what differs *inside* one record
or one document is described by DeepDiff, imported only when a difference is to be shown
(``state diff``, what ``state push --force`` overwrites, why a saved plan is not the plan
made again). The planner never comes here: it compares its three fields directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.stores import model, recorded_policy
from reconciler.stores.model import State
from reconciler.values import frozen

_SHOWN = 120  # characters of a value shown in a difference


@frozen
class Difference:
    """One place where two JSON documents differ: its path, and each side's value there."""

    path: str  # "name", "after.role_ids", "wire.roleIds"; "" for the whole document
    left: str  # the value as JSON (clipped), or "absent"
    right: str

    def render(self, left: str = "A", right: str = "B") -> str:
        """``path: LEFT → RIGHT`` with the sides named."""
        where = self.path or "(the whole value)"
        return f"{where}: {self.left} ({left}) → {self.right} ({right})"


@frozen
class Keyed:
    """Keys only on the left, only on the right, and on both with different values."""

    removed: tuple[str, ...]  # left only
    added: tuple[str, ...]  # right only
    changed: tuple[str, ...]

    @property
    def same(self) -> bool:
        """Nothing differs."""
        return not (self.removed or self.added or self.changed)

    def counts(self) -> dict[str, int]:
        """How many keys of each kind."""
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
        }


@frozen
class StateComparison:
    """Two states side by side: their versions, and what differs between them."""

    left: State
    right: State
    accounts: Keyed
    pending: Keyed  # batches of interrupted applies, by batch id
    events: Keyed  # provisioning events, by event id

    @property
    def same(self) -> bool:
        """The same document: lineage, serial and contents."""
        return (
            self.left.lineage == self.right.lineage
            and self.left.serial == self.right.serial
            and self.accounts.same
            and self.pending.same
            and self.events.same
            and self.left.policy == self.right.policy
        )

    def policy_differences(self) -> tuple[Difference, ...]:
        """What differs in the policy each state recorded at its last apply (None: absent)."""
        if self.left.policy == self.right.policy:
            return ()
        return differences(_policy(self.left), _policy(self.right))

    def account_differences(self, account: str) -> tuple[Difference, ...]:
        """What differs in one changed account's record (attributes and bookkeeping)."""
        return differences(
            model.account_to_json(self.left.accounts[account]),
            model.account_to_json(self.right.accounts[account]),
        )


def _policy(state: State) -> Any:
    return None if state.policy is None else recorded_policy.to_json(state.policy)


def _keyed(left: Mapping[str, Any], right: Mapping[str, Any]) -> Keyed:
    return Keyed(
        removed=tuple(sorted(left.keys() - right.keys())),
        added=tuple(sorted(right.keys() - left.keys())),
        changed=tuple(sorted(k for k in left.keys() & right.keys() if left[k] != right[k])),
    )


def compare(left: State, right: State) -> StateComparison:
    """What differs between two states, found without DeepDiff (record equality)."""
    return StateComparison(
        left=left,
        right=right,
        accounts=_keyed(left.accounts, right.accounts),
        pending=_keyed(
            {batch.batch_id: batch for batch in left.pending},
            {batch.batch_id: batch for batch in right.pending},
        ),
        events=_keyed(left.events, right.events),
    )


def differences(left: Any, right: Any) -> tuple[Difference, ...]:
    """Where two JSON documents differ, in path order, a list compared as a whole.

    A list (role ids, accounts of a batch) is named once with both of its values, not
    item by item: "role_ids: ["1", "2"] → ["1", "3"]" reads better than three indexes.
    """
    from deepdiff import DeepDiff  # noqa: PLC0415 - ~30 ms to import: only when shown

    paths: dict[tuple[str, ...], None] = {}
    for items in DeepDiff(left, right, view="tree").values():
        for item in items:
            path = item.path(output_format="list")
            cut = next((i for i, part in enumerate(path) if isinstance(part, int)), len(path))
            paths[tuple(str(part) for part in path[:cut])] = None
    return tuple(
        Difference(path=".".join(path), left=_at(left, path), right=_at(right, path))
        for path in sorted(paths)
    )


def _at(document: Any, path: Sequence[str]) -> str:
    """The value at ``path`` as clipped JSON, or "absent"."""
    for key in path:
        if not isinstance(document, Mapping) or key not in document:
            return "absent"
        document = document[key]
    return shown(document)


def shown(value: Any) -> str:
    """A value as JSON, clipped to a readable length."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"
