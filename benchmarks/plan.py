"""Time ``validate`` and ``plan`` end to end against a bare libyaml parse of the same YAML.

    python benchmarks/plan.py [--sizes 1000,10000,100000] [--quick] [--repeat N] [--keep DIR]

For each size it writes a desired state (roles.yaml, policy.yaml and 10 team files) and
a recorded state (through ``LocalStore``, as ``apply`` would) that differ by 1% created,
1% modified and 1% disabled accounts (half ``enabled: false``, half removed from the
YAML). Each measurement is a fresh process, so its peak RSS is its own:

- parse:    ``yaml.load(..., Loader=yaml.CSafeLoader)`` of every file, GC paused;
- validate: ``python -m reconciler validate DIR``;
- plan:     ``python -m reconciler plan DIR --state FILE --no-refresh --format json``.

Wall times include interpreter start-up and imports, which dominate below ~10k users.
The target (at 100k users and above): plan within 1.5x the bare parse, under 1 GiB.
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord, State  # after the path fix above

TEAM_FILES = 10
TARGET_RATIO = 1.5
TARGET_PEAK_MB = 1024.0
TARGET_FROM_USERS = 100_000  # below this, start-up time dominates every figure
ROLES = {
    "agent": ("1672380646005741601", False),
    "supervisor": ("1672380646005741602", False),
    "reporting": ("1672380646005741603", False),
    "quality": ("1672380646005741604", False),
    "workforce": ("1672380646005741605", False),
    "billing": ("1672380646005741606", False),
    "developer": ("1672380646005741607", False),
    "tenant-admin": ("1672380646005741609", True),
}
FIRST = ("Li", "Maria", "Tom", "Sam", "Aiko", "Omar", "Ines", "Jonas", "Priya", "Chen", "Ada")
LAST = ("Wei", "Garcia", "Becker", "Okafor", "Tanaka", "Haddad", "Silva", "Berg", "Rao", "Ng")

BARE_PARSE = """
import gc, pathlib, sys, yaml
gc.disable()
loaded = [
    yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
    for path in sorted(pathlib.Path(sys.argv[1]).glob("*.yaml"))
]
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Dataset:
    """One generated desired state and its recorded state."""

    users: int
    directory: Path
    state: Path
    yaml_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One measured process: wall seconds and peak RSS in MiB."""

    seconds: float
    peak_mb: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Person:
    """One generated user."""

    account: str
    name: str
    email: str
    roles: tuple[str, ...]

    def yaml(self, *, enabled: bool) -> str:
        """The user's entry in a team file."""
        text = (
            f"  - account: {self.account}\n"
            f"    name: {self.name}\n"
            f"    email: {self.email}\n"
            f"    roles: [{', '.join(self.roles)}]\n"
        )
        return text if enabled else text + "    enabled: false\n"


def person(i: int, rng: random.Random) -> Person:
    """A realistic user: 1-4 roles, a unique account and email."""
    first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    account = f"{first.lower()}.{last.lower()}{i}"
    return Person(
        account=account,
        name=f"{first} {last} {i}"[:20],
        email=f"{account}@example.com",
        roles=tuple(rng.sample(sorted(ROLES), k=rng.randint(1, 4))),
    )


def generate(directory: Path, users: int, seed: int = 7) -> Dataset:
    """Write the desired-state files and the recorded state for ``users`` users."""
    rng = random.Random(seed)
    directory.mkdir(parents=True)
    (directory / "roles.yaml").write_text(
        "version: 1\nroles:\n"
        + "".join(
            f'  {name}:\n    id: "{role_id}"\n    description: The {name} role\n'
            + ("    sensitive: true\n" if sensitive else "")
            for name, (role_id, sensitive) in ROLES.items()
        ),
        encoding="utf-8",
    )
    (directory / "policy.yaml").write_text(
        "version: 1\npolicy:\n  max_disable:\n    percent: 2\n  protected_accounts: [ops.admin]\n",
        encoding="utf-8",
    )
    records: dict[str, AccountRecord] = {}
    teams: list[list[str]] = [[] for _ in range(TEAM_FILES)]
    per_team = -(-users // TEAM_FILES)
    for i in range(users):
        user = person(i, rng)
        account = user.account
        role_ids = tuple(sorted(ROLES[r][0] for r in user.roles))
        kind = i % 100
        if kind != 0:  # kind 0: created by this plan, so not recorded yet
            name, email, recorded_ids = user.name, user.email, role_ids
            if kind == 1:  # modified: one of roles, name or email differs from what was applied
                match i % 300:
                    case 1:
                        recorded_ids = role_ids[1:] or (ROLES["reporting"][0],)
                        recorded_ids = recorded_ids if recorded_ids != role_ids else ()
                    case 101:
                        name = f"Old Name {i}"[:20]
                    case _:
                        email = f"old.{email}"
            records[account] = AccountRecord(
                account=account,
                name=name,
                email=email,
                role_ids=recorded_ids,
                enabled=True,
                last_task_id=f"task-{i // 100:06d}",
                created_at="2024-01-01T00:00:00Z",
                updated_at="2024-06-01T12:00:00Z",
            )
        if kind == 2 and i % 200 == 102:
            continue  # disabled: removed from the YAML
        teams[i // per_team].append(user.yaml(enabled=kind != 2))
    for index, entries in enumerate(teams):
        (directory / f"team-{index:02d}.yaml").write_text(
            "version: 1\nusers:\n" + "".join(entries), encoding="utf-8"
        )
    state = directory.parent / f"state-{users}.json"
    LocalStore(state).write(State.empty().successor(accounts=records))
    size = sum(path.stat().st_size for path in directory.glob("*.yaml"))
    return Dataset(users=users, directory=directory, state=state, yaml_bytes=size)


def measure(argv: list[str]) -> Run:
    """Run ``argv`` in a fresh process: wall time and that process's peak RSS."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            errors.seek(0)
            raise SystemExit(
                f"{' '.join(argv)} exited {child.returncode}:\n{errors.read().decode()}"
            )
    return Run(seconds=seconds, peak_mb=usage.ru_maxrss / 1024)  # ru_maxrss is KiB on Linux


def best(argv: list[str], repeat: int) -> Run:
    """The fastest of ``repeat`` runs, with the highest peak seen."""
    runs = [measure(argv) for _ in range(repeat)]
    return Run(seconds=min(r.seconds for r in runs), peak_mb=max(r.peak_mb for r in runs))


def main() -> int:
    """Generate, measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated user counts")
    parser.add_argument("--quick", action="store_true", help="1k and 10k users, one run each")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is shown)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the data here and keep it")
    args = parser.parse_args()
    sizes = [1000, 10_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    repeat = 1 if args.quick else args.repeat

    root = args.keep or Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    python = [sys.executable]
    header = (
        f"{'users':>8} {'YAML MB':>8} {'parse s':>8} {'validate s':>10} {'plan s':>8} "
        f"{'plan/parse':>10} {'peak MB':>8}  target"
    )
    rows = []
    missed = False
    try:
        for users in sizes:
            data = generate(root / f"desired-{users}", users)
            parse = best([*python, "-c", BARE_PARSE, str(data.directory)], repeat)
            validate = best([*python, "-m", "reconciler", "validate", str(data.directory)], repeat)
            plan = best(
                [
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
                ],
                repeat,
            )
            ratio = plan.seconds / parse.seconds
            peak = max(validate.peak_mb, plan.peak_mb)
            if users < TARGET_FROM_USERS:
                verdict = "n/a (start-up bound)"
            elif ratio <= TARGET_RATIO and peak < TARGET_PEAK_MB:
                verdict = "met"
            else:
                verdict, missed = "MISSED", True
            rows.append(
                f"{users:>8,} {data.yaml_bytes / 1e6:>8.1f} {parse.seconds:>8.2f} "
                f"{validate.seconds:>10.2f} {plan.seconds:>8.2f} {ratio:>9.2f}x "
                f"{peak:>8.0f}  {verdict}"
            )
            print(rows[-1] if len(rows) > 1 else f"{header}\n{rows[-1]}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"\ntarget: plan <= {TARGET_RATIO}x the bare parse and peak < {TARGET_PEAK_MB:.0f} MB "
        f"at >= {TARGET_FROM_USERS:,} users; best of {repeat} run(s); Python "
        f"{sys.version.split()[0]}"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
