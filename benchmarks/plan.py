"""Time ``plan`` and ``validate`` end to end against their baselines; each row prints its
ratio next to its target.

    python benchmarks/plan.py [--sizes 100000] [--million] [--quick] [--repeat N] [--keep DIR]

The generator writes a desired state (roles.yaml, policy.yaml and 10 team files) and a
recorded state (through ``LocalStore``, as ``apply`` would) that differ by 1% created,
1% modified and 1% disabled accounts (half ``enabled: false``, half removed from the
YAML). Each measurement is a fresh process, so its peak RSS is its own; each figure is the
median of ``--repeat`` runs (peak: the highest). The baseline of a plan row is a bare
libyaml parse of the same YAML, ``yaml.load(..., Loader=yaml.CSafeLoader)`` of every
file with the GC off. Rows (the largest size of ``--sizes`` below 1M for the single ones):

- plan N, 3% changed:      ``plan DIR --state FILE --no-refresh --no-cache --format json``
                           (cold: the parse cache bypassed), <= 1.0x;
- plan N, no state:        the same without a state (the first apply: 99% CREATEs),
                           <= 1.2x and < 400 MB;
- plan N, all modified:    a state in which every account differs, <= 1.5x;
- plan 1M:                 only with ``--million`` (or 1000000 in ``--sizes``): <= 1.2x,
                           < 1 GiB;
- validate 20k, 200 problems: against ``validate`` of the same files without them, <= 1.5x.

Wall times include interpreter start-up and imports, which dominate below ~10k users, so
targets apply from 100k users (``--quick``: 1k and 10k users, one run, no verdicts).
Exit status 1 when a target is missed. Rows are ``Row(name, command, baseline, target)``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import installed  # benchmarks/installed.py

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord, State  # after the path fix above
from reconciler.values import replace

TEAM_FILES = 10
TARGET_FROM_USERS = 100_000  # below this, start-up time dominates every figure
MILLION = 1_000_000
PROBLEM_USERS, PROBLEMS = 20_000, 200  # the validate row: a 20k-user input with 200 problems
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
    """One measured figure: wall seconds and peak RSS in MiB."""

    seconds: float
    peak_mb: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A row's target: at most ``ratio`` times its baseline, under ``peak_mb`` if given."""

    ratio: float
    peak_mb: float | None = None

    def describe(self) -> str:
        """``<= 1.2x, < 400 MB``."""
        peak = f", < {self.peak_mb:.0f} MB" if self.peak_mb is not None else ""
        return f"<= {self.ratio}x{peak}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One line of the table: a command timed against a baseline command."""

    name: str
    command: list[str]
    baseline: list[str]
    target: Target
    judged: bool  # False where start-up time decides (small inputs): no verdict


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


def generate(directory: Path, users: int, seed: int = 7, *, modified: bool = False) -> Dataset:
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
    if modified:  # every account recorded with another email: every user is modified
        LocalStore(directory.parent / f"state-{users}-modified.json").write(
            State.empty().successor(
                accounts={a: replace(r, email=f"old.{r.email}") for a, r in records.items()}
            )
        )
    size = sum(path.stat().st_size for path in directory.glob("*.yaml"))
    return Dataset(users=users, directory=directory, state=state, yaml_bytes=size)


def generate_apart(directory: Path, users: int, *, modified: bool = False) -> Dataset:
    """:func:`generate` in a fresh process, so that this one stays small: a child's peak
    RSS (``ru_maxrss``) counts what it shares with its parent when forked, and a parent
    that built a million records would lend every child its size."""
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "import plan; plan.generate(Path(sys.argv[2]), int(sys.argv[3]), "
            "modified=sys.argv[4] == '1')",
            str(Path(__file__).resolve().parent),
            str(directory),
            str(users),
            "1" if modified else "0",
        ],
        check=True,
    )
    size = sum(path.stat().st_size for path in directory.glob("*.yaml"))
    state = directory.parent / f"state-{users}.json"
    return Dataset(users=users, directory=directory, state=state, yaml_bytes=size)


def with_problems(source: Path, target: Path, count: int) -> Path:
    """A copy of ``source`` with ``count`` problems spread over its team files: names too
    long, bad emails, emails too long for the API, unknown keys (a quarter each)."""
    shutil.copytree(source, target)
    teams = sorted(target.glob("team-*.yaml"))
    lines = [path.read_text(encoding="utf-8").splitlines(keepends=True) for path in teams]
    emails = [
        (f, i) for f, text in enumerate(lines) for i, line in enumerate(text) if "email:" in line
    ]
    step = max(len(emails) // count, 1)
    for made, (file, index) in enumerate(emails[::step][:count]):
        line = lines[file][index]
        match made % 4:
            case 0:
                line = line.replace("@", " at ")
            case 1:
                line = "    email: " + "x" * 70 + "@example.com\n"
            case 2:
                line += "    name_typo: x\n"
            case _:
                line += "    colour: blue\n"
        lines[file][index] = line
    for path, text in zip(teams, lines, strict=True):
        path.write_text("".join(text), encoding="utf-8")
    return target


def measure(argv: list[str], allowed: tuple[int, ...] = (0,)) -> Run:
    """Run ``argv`` in a fresh process: wall time and that process's peak RSS (its exit
    status must be one of ``allowed``)."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode not in allowed:
            errors.seek(0)
            raise SystemExit(
                f"{' '.join(argv)} exited {child.returncode}:\n{errors.read().decode()}"
            )
    return Run(seconds=seconds, peak_mb=usage.ru_maxrss / 1024)  # ru_maxrss is KiB on Linux


def best(argv: list[str], repeat: int) -> Run:
    """The fastest of ``repeat`` runs, with the highest peak seen (benchmarks/cache.py)."""
    runs = [measure(argv) for _ in range(repeat)]
    return Run(seconds=min(r.seconds for r in runs), peak_mb=max(r.peak_mb for r in runs))


def plan_command(directory: Path, state: Path) -> list[str]:
    """``reconciler plan`` of ``directory`` against ``state``, offline, as JSON, cold (the
    parse cache bypassed: every run parses, as the first one after an edit does)."""
    return [
        sys.executable,
        *("-m", "reconciler", "plan", str(directory), "--state", str(state)),
        *("--no-refresh", "--no-cache", "--format", "json"),
    ]


def bare_parse(directory: Path) -> list[str]:
    """The baseline of the plan rows."""
    return [sys.executable, "-c", BARE_PARSE, str(directory)]


def rows_for(root: Path, sizes: list[int], *, million: bool) -> list[Row]:
    """Generate the data and list the rows to measure."""
    rows: list[Row] = []
    below = [users for users in sizes if users < MILLION]
    data = {
        users: generate_apart(
            root / f"desired-{users}", users, modified=users == max(below, default=0)
        )
        for users in sizes
    }
    if million and MILLION not in data:
        data[MILLION] = generate_apart(root / f"desired-{MILLION}", MILLION)
    for users in sizes:
        if users == MILLION:
            continue
        one = data[users]
        rows.append(
            Row(
                name=f"plan {users:,}, 3% changed",
                command=plan_command(one.directory, one.state),
                baseline=bare_parse(one.directory),
                target=Target(ratio=1.0),
                judged=users >= TARGET_FROM_USERS,
            )
        )
    if below:
        one = data[max(below)]
        rows += [
            Row(
                name=f"plan {one.users:,}, no state",
                command=plan_command(one.directory, root / "absent-state.json"),
                baseline=bare_parse(one.directory),
                target=Target(ratio=1.2, peak_mb=400.0),
                judged=one.users >= TARGET_FROM_USERS,
            ),
            Row(
                name=f"plan {one.users:,}, all modified",
                command=plan_command(
                    one.directory, one.state.with_name(f"state-{one.users}-modified.json")
                ),
                baseline=bare_parse(one.directory),
                target=Target(ratio=1.5),
                judged=one.users >= TARGET_FROM_USERS,
            ),
        ]
    if MILLION in data:
        one = data[MILLION]
        rows.append(
            Row(
                name="plan 1,000,000, 3% changed",
                command=plan_command(one.directory, one.state),
                baseline=bare_parse(one.directory),
                target=Target(ratio=1.2, peak_mb=1024.0),
                judged=True,
            )
        )
    return rows


def validate_row(root: Path, users: int, problems: int) -> Row:
    """validate of an input with ``problems`` problems against the same input without."""
    valid = generate_apart(root / f"valid-{users}", users).directory
    broken = with_problems(valid, root / f"problems-{users}", problems)
    validate = [sys.executable, "-m", "reconciler", "validate", "--no-cache"]  # cold, both
    return Row(
        name=f"validate {users:,}, {problems} problems",
        command=[*validate, str(broken)],
        baseline=[*validate, str(valid)],
        target=Target(ratio=1.5),
        judged=users >= PROBLEM_USERS,
    )


def measure_row(row: Row, repeat: int) -> tuple[Run, Run]:
    """The row's command and its baseline, alternated so both see the same machine."""
    commands: list[Run] = []
    baselines: list[Run] = []
    for _ in range(repeat):
        baselines.append(measure(row.baseline, allowed=(0,)))
        commands.append(measure(row.command, allowed=(0, 1)))
    return (
        Run(
            seconds=statistics.median(r.seconds for r in commands),
            peak_mb=max(r.peak_mb for r in commands),
        ),
        Run(
            seconds=statistics.median(r.seconds for r in baselines),
            peak_mb=max(r.peak_mb for r in baselines),
        ),
    )


def verdict(row: Row, run: Run, base: Run) -> tuple[str, bool]:
    """``met`` / ``MISSED`` / ``n/a``, and whether it is a miss."""
    if not row.judged:
        return "n/a (start-up bound)", False
    ratio = run.seconds / base.seconds
    peak_ok = row.target.peak_mb is None or run.peak_mb < row.target.peak_mb
    if ratio <= row.target.ratio and peak_ok:
        return "met", False
    return "MISSED", True


def main() -> int:
    """Generate, measure and print the table."""
    installed.like_an_install()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated user counts")
    parser.add_argument("--million", action="store_true", help="add the 1M-user row (slow)")
    parser.add_argument("--quick", action="store_true", help="1k and 10k users, one run each")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (the median)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the data here and keep it")
    args = parser.parse_args()
    sizes = [1000, 10_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    repeat = 1 if args.quick else args.repeat
    problem_users, problems = (
        (PROBLEM_USERS // 10, PROBLEMS // 10) if args.quick else (PROBLEM_USERS, PROBLEMS)
    )

    root = args.keep or Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    print(
        f"{'row':<32} {'s':>7} {'baseline s':>10} {'ratio':>7} {'peak MB':>8}  "
        f"{'target':<18} verdict",
        flush=True,
    )
    missed = False
    try:
        rows = rows_for(root, sizes, million=args.million or MILLION in sizes)
        rows.append(validate_row(root, problem_users, problems))
        for row in rows:
            run, base = measure_row(row, repeat)
            ratio = run.seconds / base.seconds
            said, miss = verdict(row, run, base)
            missed = missed or miss
            print(
                f"{row.name:<32} {run.seconds:>7.2f} {base.seconds:>10.2f} {ratio:>6.2f}x "
                f"{run.peak_mb:>8.0f}  {row.target.describe():<18} {said}",
                flush=True,
            )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"\nmedians of {repeat} run(s), each a fresh process, command and baseline "
        f"alternated; plan baselines: bare libyaml parse, GC off; Python {sys.version.split()[0]}"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
