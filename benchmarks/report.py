"""Time ``report access`` against ``plan`` on the same desired and recorded state.

    python benchmarks/report.py [--sizes 100000] [--repeat N] [--keep DIR] [--no-git]

The data is ``plan.py``'s (1% created, 1% modified, 1% disabled; users hold 1-4 of 8
roles), with every grant of the sensitive ``tenant-admin`` role given an end date
(``{role: tenant-admin, until: ...}``, about a third of the users), so the expiry step and
the report's end-date column work at scale. The folder is a git work tree with one commit,
so the report looks up each entry's commit as it does in a pipeline (``--no-git`` leaves
git out). Each figure is a fresh process, best of N, timed from outside:

- plan:   ``python -m reconciler plan DIR --state FILE --no-refresh --no-cache --format json``;
- report: ``python -m reconciler report access DIR --state FILE --no-cache --format F`` per
          format (both cold: best-of-N runs would otherwise hit the parse cache).

Target: the report within about the time of a plan (1.5x) at 100k users.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import installed  # benchmarks/installed.py
import plan as plan_bench  # benchmarks/plan.py: the same data and the same way to measure

AT = "2099-06-01"  # every end date lies after it: the same plan on any day the bench runs
UNTIL = "2099-06-30"
TARGET_RATIO = 1.5


def generate(directory: Path, users: int) -> plan_bench.Dataset:
    """plan.py's data, every tenant-admin grant with an end date, committed to git."""
    data = plan_bench.generate(directory, users)
    for team in sorted(directory.glob("team-*.yaml")):
        text = team.read_text(encoding="utf-8")
        team.write_text(
            text.replace("tenant-admin", f"{{role: tenant-admin, until: {UNTIL}}}"),
            encoding="utf-8",
        )
    return data


def commit(directory: Path) -> None:
    """Make ``directory`` a git work tree with its files in one commit."""
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=Bench", "-c", "user.email=bench@example.com", "commit", "-qm", "data"],
    ):
        subprocess.run(["git", *args], cwd=directory, check=True, capture_output=True)


def main() -> int:
    """Generate, measure and print the table."""
    installed.like_an_install()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated user counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is shown)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the data here and keep it")
    parser.add_argument("--no-git", action="store_true", help="no git work tree (no commits)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="reconciler-report-bench-"))
    python = [sys.executable, "-m", "reconciler"]
    print(
        f"{'users':>8} {'plan s':>7} {'csv s':>7} {'md s':>7} {'json s':>7} "
        f"{'csv/plan':>9} {'peak MB':>8}  target"
    )
    missed = False
    try:
        for users in (int(s) for s in args.sizes.split(",")):
            data = generate(root / f"desired-{users}", users)
            if not args.no_git:
                commit(data.directory)
            where = [str(data.directory), "--state", str(data.state), "--at", AT]
            plan = plan_bench.best(
                [*python, "plan", *where, "--no-refresh", "--no-cache", "--format", "json"],
                args.repeat,
            )
            runs = {
                fmt: plan_bench.best(
                    [*python, "report", "access", *where, "--no-cache", "--format", fmt],
                    args.repeat,
                )
                for fmt in ("csv", "markdown", "json")
            }
            ratio = runs["csv"].seconds / plan.seconds
            verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
            missed = missed or verdict == "MISSED"
            peak = max(run.peak_mb for run in runs.values())
            print(
                f"{users:>8,} {plan.seconds:>7.2f} {runs['csv'].seconds:>7.2f} "
                f"{runs['markdown'].seconds:>7.2f} {runs['json'].seconds:>7.2f} "
                f"{ratio:>8.2f}x {peak:>8.0f}  {verdict}",
                flush=True,
            )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"\ntarget: report <= {TARGET_RATIO}x plan; best of {args.repeat} run(s); "
        f"{'no git' if args.no_git else 'in a git work tree'}; Python {sys.version.split()[0]}"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
