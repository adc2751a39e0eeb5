"""Plan where every user is modified, and its JSON written to a file, against a bare parse.

    python benchmarks/plan_output.py [--users 100000] [--repeat 3] [--code DIR]

Generates a desired state of ``--users`` users (10 team files, 1-4 roles each) and a
recorded state in which *every* account differs from the YAML (its name, its email or
its roles), then times, each in a fresh process (best of ``--repeat``, peak RSS its own):

- parse:      ``yaml.load(..., Loader=yaml.CSafeLoader)`` of the same files, GC paused;
- modified:   ``python -m reconciler plan DIR --state FILE --no-refresh --no-cache --format
              json`` (stdout discarded; cold: the parse cache would make every run after the
              first skip the parse): every change is a MODIFY, target <= 1.5x the parse;
- json --out: the same with ``--out plan.json`` too: the JSON built once for both, its
              size printed (compact lines, the C encoder).

``--code DIR`` runs the reconciler of another checkout (``PYTHONPATH=DIR``), for a
before/after figure. Exit status 1 when the modified plan misses its target.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import installed  # benchmarks/installed.py

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from reconciler.stores.local import LocalStore  # after the path fix above
from reconciler.stores.model import AccountRecord, State

ROLES = {f"role{i}": str(1672380646005741600 + i) for i in range(8)}
TEAM_FILES = 10
TARGET = 1.5
PARSE = """
import gc, sys, yaml
gc.disable()
for name in sys.argv[1:]:
    with open(name, encoding="utf-8") as handle:
        yaml.load(handle, Loader=yaml.CSafeLoader)
"""


def generate(directory: Path, users: int) -> Path:
    """Desired-state files for ``users`` users, and a state where every one differs."""
    rng = random.Random(7)
    (directory / "roles.yaml").write_text(
        "version: 1\nroles:\n"
        + "".join(f'  {name}: {{id: "{role_id}"}}\n' for name, role_id in ROLES.items()),
        encoding="utf-8",
    )
    (directory / "policy.yaml").write_text(
        "version: 1\npolicy:\n  max_disable: {percent: 2}\n", encoding="utf-8"
    )
    teams: list[list[str]] = [[] for _ in range(TEAM_FILES)]
    records: dict[str, AccountRecord] = {}
    for i in range(users):
        account = f"user.{i:07d}"
        name, email = f"User {i}", f"{account}@example.com"
        roles = sorted(rng.sample(sorted(ROLES), k=rng.randint(1, 4)))
        teams[i * TEAM_FILES // users].append(
            f"  - account: {account}\n    name: {name}\n    email: {email}\n"
            f"    roles: [{', '.join(roles)}]\n"
        )
        role_ids = tuple(sorted(ROLES[r] for r in roles))
        match i % 3:  # every account differs from the YAML in one attribute
            case 0:
                name = f"Old {i}"
            case 1:
                email = f"old.{email}"
            case _:
                role_ids = tuple(sorted(set(role_ids) ^ {ROLES["role0"]}))
        records[account] = AccountRecord(
            account=account, name=name, email=email, role_ids=role_ids, enabled=True
        )
    for index, entries in enumerate(teams):
        (directory / f"team-{index:02d}.yaml").write_text(
            "version: 1\nusers:\n" + "".join(entries), encoding="utf-8"
        )
    state = directory.parent / "state.json"
    LocalStore(state).write(State.empty().successor(accounts=records))
    return state


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``argv`` in a fresh process."""
    started = time.perf_counter()
    # cwd: the code run; `python -m` puts the working directory before PYTHONPATH
    child = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=env["PYTHONPATH"]
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    assert child.stderr is not None
    errors = child.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{errors}")
    return seconds, usage.ru_maxrss / 1024


def best(argv: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    """The fastest of ``repeat`` runs, with the highest peak."""
    runs = [measure(argv, env) for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def main() -> int:
    """Generate, measure, print a table; exit 1 on a missed target."""
    installed.like_an_install()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--code", type=Path, help="the checkout whose reconciler to run")
    args = parser.parse_args()
    code = (args.code or Path(__file__).resolve().parent.parent).resolve()
    env = {**os.environ, "PYTHONPATH": str(code)}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "desired"
        directory.mkdir()
        state = generate(directory, args.users)
        files = sorted(str(p) for p in directory.glob("*.yaml"))
        plan = [sys.executable, "-m", "reconciler", "plan", str(directory), "--state", str(state)]
        plan += ["--no-refresh", "--no-cache", "--format", "json"]
        out = Path(tmp) / "plan.json"
        parse, _ = best([sys.executable, "-c", PARSE, *files], env, args.repeat)
        modified, peak = best(plan, env, args.repeat)
        saved, saved_peak = best([*plan, "--out", str(out)], env, args.repeat)
        size = out.stat().st_size / 1e6
    ratio = modified / parse
    print(
        f"reconciler from {code}; {args.users:,} users, every one modified; best of {args.repeat}"
    )
    print("| row | s | / parse | peak MB | target |")
    print("|---|---:|---:|---:|---|")
    print(f"| bare parse (CSafeLoader, GC off) | {parse:.2f} | 1.00x | | |")
    met = "met" if ratio <= TARGET else "NOT met"
    print(
        f"| plan, every user modified | {modified:.2f} | {ratio:.2f}x | {peak:.0f} | "
        f"<= {TARGET}x: {met} |"
    )
    print(
        f"| the same with --out ({size:.1f} MB file) | {saved:.2f} | {saved / parse:.2f}x | "
        f"{saved_peak:.0f} | JSON built once |"
    )
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
