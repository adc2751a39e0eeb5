"""A plan's policy review as JSON (the ``policy`` object of a saved plan), and back.

``changes`` lists each setting that differs from the policy recorded at the last apply,
``loosened`` says whether any guard rail is weaker, ``uses`` names the changes of the plan
that pass only because of that, ``recorded`` and ``desired`` are the two policies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.plan.model import PolicyChange, PolicyReview, PolicyUse
from reconciler.stores import recorded_policy


def to_json(review: PolicyReview | None) -> dict[str, Any] | None:
    """The review as the plan's ``policy`` object (None: the plan has no review)."""
    if review is None:
        return None
    return {
        "recorded": None if review.recorded is None else recorded_policy.to_json(review.recorded),
        "desired": recorded_policy.to_json(review.desired),
        "changes": [
            {
                "setting": change.setting,
                "before": change.before,
                "after": change.after,
                "loosened": change.loosened,
                "message": change.message,
            }
            for change in review.changes
        ],
        "loosened": review.loosened,
        "uses": [{"account": use.account, "why": use.why} for use in review.uses],
    }


def from_json(data: Mapping[str, Any] | None) -> PolicyReview | None:
    """The review in a saved plan's ``policy`` object, which the plan schema has checked."""
    if data is None:
        return None
    recorded = data["recorded"]
    return PolicyReview(
        desired=recorded_policy.from_json(data["desired"]),
        recorded=None if recorded is None else recorded_policy.from_json(recorded),
        changes=tuple(
            PolicyChange(
                setting=item["setting"],
                before=item["before"],
                after=item["after"],
                loosened=item["loosened"],
            )
            for item in data["changes"]
        ),
        uses=tuple(PolicyUse(account=item["account"], why=item["why"]) for item in data["uses"]),
    )
