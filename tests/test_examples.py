"""Every desired-state folder under examples/ validates, plans, and plans nothing once imported."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from reconciler.cli.main import main
from reconciler.desired import validation
from reconciler.plan import expiry
from reconciler.render import text

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def _yaml_files(folder: Path) -> list[Path]:
    """The *.yaml/*.yml files reconciler would read from ``folder``."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
    )


def _is_workflow(file: Path) -> bool:
    """A CI workflow (GitHub Actions and the like), not a desired-state file."""
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and ("jobs" in data or "steps" in data)


def _desired_folders() -> list[Path]:
    """examples/ and each folder below it holding desired-state YAML (workflow folders skipped)."""
    found = []
    for folder in [EXAMPLES, *sorted(p for p in EXAMPLES.rglob("*") if p.is_dir())]:
        files = _yaml_files(folder)
        if files and not any(_is_workflow(f) for f in files):
            found.append(folder)
    return found


FOLDERS = _desired_folders()
IDS = [str(f.relative_to(ROOT)) for f in FOLDERS]


def test_examples_are_discovered() -> None:
    """examples/ itself is a desired-state folder (so the tests below cannot silently vanish)."""
    assert EXAMPLES in FOLDERS


@pytest.mark.parametrize("folder", FOLDERS, ids=IDS)
def test_example_validates(
    folder: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """reconciler validate passes on the example folder."""
    clean_env.chdir(ROOT)
    assert main(["validate", str(folder.relative_to(ROOT)), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True
    assert report["users"] > 0


@pytest.mark.parametrize("folder", FOLDERS, ids=IDS)
def test_example_plans_then_imports_to_no_changes(
    folder: Path,
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """plan creates (exit 2); after import --all it adopts instead, creating nobody.

    Imported accounts are unverified: the plan adopts each (a DISABLE for the one declared
    disabled, which the guard counts: adopted accounts do not raise the disable limit).
    """
    clean_env.chdir(ROOT)
    where = str(folder.relative_to(ROOT))
    state = ["--state", str(tmp_path / "state.json")]
    plan = ["plan", where, *state, "--no-refresh", "--detailed-exitcode", "--format", "json"]
    plan += ["--at", "2026-12-01"]  # the examples' end dates are in the future of this day
    assert main(plan) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["summary"]["create"] > 0
    assert document["summary"]["blocked"] is False
    creates = document["summary"]["create"]
    assert main(["import", where, "--all", *state]) == 0
    capsys.readouterr()
    assert main([*plan, "--allow-disables", "1"]) == 2
    adopted = json.loads(capsys.readouterr().out)
    assert {c["reason"] for c in adopted["changes"]} == {"adopt"}
    summary = adopted["summary"]
    assert (summary["create"], summary["adopt"], summary["disable"]) == (0, creates, 1)
    assert not (folder / ".reconciler").exists()


def test_examples_plan_text(
    golden: Callable[[str, str], None], clean_env: pytest.MonkeyPatch
) -> None:
    """The plan of examples/ against no state on 2027-06-20, as reviewed text: maria's
    supervisor grant ends within the notice window."""
    clean_env.chdir(ROOT)
    desired = validation.load_desired(Path("examples"))
    golden(
        "examples-plan.txt",
        text.render(
            expiry.plan_at(
                desired,
                None,
                at=dt.date(2027, 6, 20),
                input_path="examples",
                state_location="examples/.reconciler/state.json",
            ),
            now=NOW,
            show_batches=True,
        ),
    )
