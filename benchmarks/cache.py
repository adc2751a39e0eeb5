"""Time ``plan`` with the parse cache cold, warm, and after a one-file edit, against the parse.

    python benchmarks/cache.py [--users 100000] [--repeat N] [--keep DIR]

The data is ``plan.py``'s (1% created, 1% modified, 1% disabled), its team files split into
100 files so that one team's edit is one file of 100. Each figure is a fresh process, best
of N, next to a bare libyaml parse of the same YAML (GC paused), as in ``plan.py``:

- cold:   ``plan DIR --state FILE --no-refresh --format json`` with no parse cache
          (``FILE.cache/``) and no state check record (``FILE.checked``), both removed
          before each run: the cost of filling them;
- warm:   the same plan again, nothing changed since the last run (target: <= 0.5x);
- edited: one of the 100 team files changed before each run (one entry's name), the rest
          from the cache.

Exit status 1 when the warm target is missed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import installed  # benchmarks/installed.py
import plan as plan_bench  # benchmarks/plan.py: the same data and the same way to measure

FILES = 100
TARGET_WARM = 0.5


def split(directory: Path, files: int) -> int:
    """Split the team files of ``directory`` into ``files`` files; their number."""
    entries: list[str] = []
    for team in sorted(directory.glob("team-*.yaml")):
        text = team.read_text(encoding="utf-8").split("users:\n", 1)[1]
        entries.extend("  - account:" + part for part in text.split("  - account:")[1:])
        team.unlink()
    per_file = -(-len(entries) // files)
    for index in range(files):
        chunk = entries[index * per_file : (index + 1) * per_file]
        (directory / f"team-{index:03d}.yaml").write_text(
            "version: 1\nusers:\n" + "".join(chunk), encoding="utf-8"
        )
    return files


def main() -> int:
    """Generate, measure and print the rows."""
    installed.like_an_install()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is shown)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the data here and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="reconciler-bench-cache-"))
    python = [sys.executable]
    try:
        data = plan_bench.generate(root / f"desired-{args.users}", args.users)
        split(data.directory, FILES)
        cache_dir = data.state.with_name(data.state.name + ".cache")
        record = data.state.with_name(data.state.name + ".checked")
        plan = [
            *python,
            "-m",
            "reconciler",
            "plan",
            str(data.directory),
            "--state",
            str(data.state),
            "--no-refresh",
            "--format",
            "json",
        ]

        def cold() -> plan_bench.Run:
            shutil.rmtree(cache_dir, ignore_errors=True)
            record.unlink(missing_ok=True)
            return plan_bench.measure(plan)

        edited_file = data.directory / "team-042.yaml"
        edits = iter(range(1_000_000))

        def edited() -> plan_bench.Run:
            text = edited_file.read_text(encoding="utf-8")
            head, _, rest = text.partition("    name: ")
            name, _, tail = rest.partition("\n")
            edited_file.write_text(
                f"{head}    name: {name[:12]} e{next(edits)}\n{tail}", encoding="utf-8"
            )
            return plan_bench.measure(plan)

        parse = plan_bench.best(
            [*python, "-c", plan_bench.BARE_PARSE, str(data.directory)], args.repeat
        )
        cold_run = min((cold() for _ in range(args.repeat)), key=lambda r: r.seconds)
        plan_bench.measure(plan)  # fill the cache
        warm_run = plan_bench.best(plan, args.repeat)
        edited_run = min((edited() for _ in range(args.repeat)), key=lambda r: r.seconds)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    warm_ratio = warm_run.seconds / parse.seconds
    print(
        f"{args.users:,} users in {FILES + 2} files, {data.yaml_bytes / 1e6:.1f} MB of YAML; "
        f"bare parse {parse.seconds:.2f} s\n"
    )
    print(f"{'row':<34} {'plan s':>7} {'/ parse':>8} {'peak MB':>8}  target")
    rows = [
        ("cold (no cache, no check record)", cold_run, "(fills the cache)"),
        ("warm (nothing changed)", warm_run, f"<= {TARGET_WARM}x: "),
        (f"one file of {FILES} edited", edited_run, "(one file parsed)"),
    ]
    for name, run, target in rows:
        ratio = run.seconds / parse.seconds
        verdict = ("met" if ratio <= TARGET_WARM else "MISSED") if target.endswith(": ") else ""
        print(
            f"{name:<34} {run.seconds:>7.2f} {ratio:>7.2f}x {run.peak_mb:>8.0f}  {target}{verdict}"
        )
    print(f"\nbest of {args.repeat} run(s); Python {sys.version.split()[0]}")
    return 0 if warm_ratio <= TARGET_WARM else 1


if __name__ == "__main__":
    sys.exit(main())
