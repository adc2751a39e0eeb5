"""Time ``reconciler apply`` of N new users against the sandbox, next to the sandbox's cap.

    python benchmarks/apply.py [--users 10000] [--parallel 10] [--todo 0.5] [--doing 1.0]

The sandbox is served from this process on loopback; apply runs as a real subprocess
(``python -m reconciler apply DIR --auto-approve --parallel P --format json``), so the two
do not share a GIL. The tenant's pending-task limit equals ``--parallel``. The lower
bound is ``minimum_apply_seconds``: full waves of the pending cap, each lasting one task's
TODO + DOING time. The target is a wall time within 1.25x of it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from reconciler.sandbox import app  # after the path fix above
from reconciler.sandbox.federation import minimum_apply_seconds
from reconciler.sandbox.federation_rules import FederationSettings

ROLE_ID = "1672380646005741601"
TARGET = 1.25


def write_desired(directory: Path, count: int) -> None:
    """A desired-state folder with ``count`` users holding one role."""
    lines = ["version: 1", "roles:", "  agent:", f'    id: "{ROLE_ID}"', "users:"]
    for i in range(count):
        lines += [
            f"  - account: user{i:06d}",
            f"    name: User {i}",
            f"    email: user{i:06d}@example.com",
            "    roles: [agent]",
        ]
    (directory / "users.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    """Run the benchmark; exit 1 when the target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--parallel", type=int, default=10, help="also the tenant's task limit")
    parser.add_argument("--todo", type=float, default=0.5, help="seconds a task stays TODO")
    parser.add_argument("--doing", type=float, default=1.0, help="seconds a task stays DOING")
    args = parser.parse_args()

    settings = FederationSettings(
        pending_task_limit=args.parallel, todo_seconds=args.todo, doing_seconds=args.doing
    )
    tasks = math.ceil(args.users / 100)
    floor = minimum_apply_seconds(tasks, settings)
    box = app.build(settings, role_ids=[ROLE_ID])
    server = app.serve(box, "127.0.0.1", 0).start()
    try:
        with tempfile.TemporaryDirectory() as temp:
            directory = Path(temp)
            write_desired(directory, args.users)
            env = {
                **os.environ,
                "RECONCILER_FEDERATION_URL": server.url,
                "RECONCILER_FEDERATION_APP_KEY": app.SANDBOX_APP_KEY,
                "RECONCILER_FEDERATION_APP_SECRET": app.SANDBOX_APP_SECRET,
            }
            command = [sys.executable, "-m", "reconciler", "apply", str(directory)]
            command += ["--auto-approve", "--parallel", str(args.parallel), "--format", "json"]
            started = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - started
    finally:
        server.stop()
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-2000:])
        print(f"apply failed with exit code {done.returncode}")
        return 1
    counters = json.loads(done.stdout)["counters"]
    stats = box.federation.stats()
    created = stats.created_per_account
    print(
        f"users {args.users}, --parallel {args.parallel} = pending limit, "
        f"tasks TODO {args.todo:g}s + DOING {args.doing:g}s"
    )
    print(f"  wall time           {wall:8.2f} s   (process start to exit)")
    print(f"  sandbox minimum     {floor:8.2f} s   ({math.ceil(tasks / args.parallel)} waves)")
    print(f"  ratio               {wall / floor:8.2f} x   (target <= {TARGET:g}x)")
    print(f"  users/second        {args.users / wall:8.0f}     (max {args.users / floor:.0f})")
    accepted = stats.create_task_accepted
    print(f"  createTask calls    {stats.calls['createTask']:8d}     (accepted {accepted})")
    print(f"  queryTask calls     {stats.query_task_calls:8d}")
    print(f"  max pending seen    {stats.max_pending_observed:8d}")
    ok = (
        wall <= TARGET * floor
        and stats.create_task_accepted == tasks
        and counters["users_applied"] == args.users
        and len(created) == args.users
        and set(created.values()) == {1}
    )
    print("  target met" if ok else "  TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
