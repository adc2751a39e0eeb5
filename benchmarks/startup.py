"""Time reconciler's start-up: `--help` and `validate examples/` over a bare interpreter.

    python benchmarks/startup.py [--runs 20] [--instructions]

Each command runs ``--runs`` times in a fresh process (alternating, so a busy moment hits
all three alike); the figure is the median wall time of each:

- bare:     ``python -c pass``
- help:     ``python -m reconciler --help``
- validate: ``python -m reconciler validate examples/``

and each command's start-up cost is its median minus the bare one, printed next to its
target (help +40 ms, validate +80 ms). It also prints which heavy modules each command
loaded (deepdiff, fastjsonschema, httpx, jsonschema, psycopg: none is expected). Exit
status 1 when a target is missed or a heavy module is loaded.

``--instructions`` also counts the instructions each command executes under valgrind's
callgrind (one run each): the same count whatever else the machine is doing, so two
versions compare on a busy machine where wall times do not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import installed  # benchmarks/installed.py

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("deepdiff", "fastjsonschema", "httpx", "jsonschema", "psycopg")
COMMANDS = {
    "bare": ["-c", "pass"],
    "help": ["-m", "reconciler", "--help"],
    "validate": ["-m", "reconciler", "validate", "examples/"],
}
TARGET_MS = {"help": 40.0, "validate": 80.0}
# Runs the command in a process of its own, apart from the timed runs, and prints which of
# the heavy modules it loaded.
PROBE = """
import contextlib, io, sys
from reconciler.cli.main import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    main(sys.argv[1:])
print(" ".join(sorted({name.split(".")[0] for name in sys.modules} & set(%r))))
"""


def _time(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=False, capture_output=True, env=_env())
    return time.perf_counter() - started


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}


def _heavy(argv: list[str]) -> str:
    """The heavy modules loaded by the command (``-m reconciler`` argv), in a fresh process."""
    args = argv[2:]  # after "-m reconciler"
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,), *args],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        env=_env(),
    )
    return done.stdout.strip()


def _instructions(argv: list[str]) -> int:
    """Instructions ``python ARGV`` executes, counted by callgrind."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, *argv],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        env=_env(),
    )
    counted = [line for line in done.stderr.splitlines() if "Collected :" in line]
    if not counted:
        raise SystemExit(f"callgrind counted nothing for {argv}: {done.stderr[-300:]}")
    return int(counted[-1].split()[-1])


def main() -> int:
    """Measure, print a table, exit 1 on a missed target."""
    installed.like_an_install()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions (valgrind)"
    )
    args = parser.parse_args()
    runs = args.runs
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():
        _time(argv)  # warm the page cache and the .pyc files
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            times[name].append(_time(argv))
    median = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(f"Python {sys.version.split()[0]}, median of {runs} fresh processes each")
    print("| command | median ms | over bare ms | target | met | heavy modules loaded |")
    print("|---|---:|---:|---|---|---|")
    print(f"| `python -c pass` | {median['bare']:.1f} | | | | |")
    failed = False
    for name in ("help", "validate"):
        over = median[name] - median["bare"]
        heavy = _heavy(COMMANDS[name])
        met = over <= TARGET_MS[name] and not heavy
        failed |= not met
        shown = " ".join(COMMANDS[name])
        print(
            f"| `python {shown}` | {median[name]:.1f} | +{over:.1f} | "
            f"<= +{TARGET_MS[name]:.0f} ms | {'yes' if met else 'NO'} | {heavy or 'none'} |"
        )
    if args.instructions:
        counts = {name: _instructions(argv) for name, argv in COMMANDS.items()}
        print(f"\ninstructions (callgrind, one run each): bare {counts['bare'] / 1e6:.0f}M", end="")
        for name in ("help", "validate"):
            print(f"; {name} +{(counts[name] - counts['bare']) / 1e6:.0f}M", end="")
        print()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
