"""Time listing failed provisioning events, and a plan that refreshes them, at scale.

    python benchmarks/refresh.py [--events 10000] [--users 10] [--repeat 3]

Serves the sandbox on loopback in this process, generates ``--events`` failed events
through its control endpoint (``/_sandbox/cloudidentity/events/generate``), then:

- list:  ``CloudIdentityClient.list_provisioning_events()`` in this process: wall time and
         the requests it sent, which must be ``ceil(events / 100)`` pages (100 for 10,000);
- plan:  ``python -m reconciler plan DIR --state FILE --format json`` in a fresh process
         against a small desired state whose ``--users`` accounts each have one event
         (so they are retried and the rest are reported only); wall time includes
         interpreter start-up, and the plan must list every event.

Each figure is the best of ``--repeat`` runs. Exit status 1 when a check fails.
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
from typing import Any

import httpx
import installed  # benchmarks/installed.py

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from reconciler.providers.cloudidentity.client import (  # after the path fix above
    MAX_PAGE_SIZE,
    CloudIdentityClient,
    CloudIdentitySettings,
)
from reconciler.sandbox import app

PREFIX = "bench"
ROLE_ID = "1672380646005741601"


def _env(url: str, state: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RECONCILER_STATE": str(state),
        "RECONCILER_FEDERATION_URL": url,
        "RECONCILER_FEDERATION_APP_KEY": app.SANDBOX_APP_KEY,
        "RECONCILER_FEDERATION_APP_SECRET": app.SANDBOX_APP_SECRET,
        "RECONCILER_CLOUDIDENTITY_URL": url,
        "VOLCENGINE_ACCESS_KEY": app.SANDBOX_ACCESS_KEY,
        "VOLCENGINE_SECRET_KEY": app.SANDBOX_SECRET_KEY,
    }


def _write_desired(directory: Path, users: int) -> None:
    """A small desired state: the first ``users`` generated user names, one role."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "roles.yaml").write_text(
        f'version: 1\nroles:\n  agent:\n    id: "{ROLE_ID}"\n', encoding="utf-8"
    )
    lines = ["version: 1", "users:"]
    for n in range(users):
        account = f"{PREFIX}-{n:05d}"
        lines += [
            f"  - account: {account}",
            f"    name: Bench {n}",
            f"    email: {account}@example.com",
            "    roles: [agent]",
        ]
    (directory / "users.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _list_calls(url: str) -> int:
    stats = httpx.get(f"{url}/_sandbox/cloudidentity/stats").json()
    return int(stats["calls"].get("ListUserProvisioningEvents", 0))


def _time_list(url: str, env: dict[str, str]) -> tuple[float, int, int, int]:
    """One listing: seconds, events, client requests, requests the sandbox saw."""
    before = _list_calls(url)
    with CloudIdentityClient(CloudIdentitySettings.from_env(env)) as client:
        start = time.perf_counter()
        events = client.list_provisioning_events()
        seconds = time.perf_counter() - start
        calls = client.calls
    return seconds, len(events), calls, _list_calls(url) - before


def _time_plan(url: str, env: dict[str, str], desired: Path) -> tuple[float, dict[str, Any], int]:
    """One ``plan --format json`` process: seconds, the plan, list requests it sent."""
    before = _list_calls(url)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "plan", str(desired), "--format", "json"],
        env=env,
        capture_output=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stderr.decode(errors="replace"))
        raise SystemExit(f"plan failed with exit code {done.returncode}")
    plan: dict[str, Any] = json.loads(done.stdout)
    return seconds, plan, _list_calls(url) - before


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    installed.like_an_install()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    pages = math.ceil(args.events / MAX_PAGE_SIZE)
    problems: list[str] = []

    box = app.build(role_ids=[ROLE_ID])
    server = app.serve(box, "127.0.0.1", 0).start()
    try:
        with tempfile.TemporaryDirectory(prefix="reconciler-refresh-") as tmp:
            desired, state = Path(tmp) / "desired", Path(tmp) / "state.json"
            _write_desired(desired, args.users)
            env = _env(server.url, state)
            start = time.perf_counter()
            httpx.post(
                f"{server.url}/_sandbox/cloudidentity/events/generate",
                json={"count": args.events, "prefix": PREFIX},
                timeout=120,
            ).raise_for_status()
            seeding = time.perf_counter() - start

            lists = [_time_list(server.url, env) for _ in range(args.repeat)]
            list_s, listed, client_calls, seen_calls = min(lists)
            if listed != args.events:
                problems.append(f"listed {listed} events, expected {args.events}")
            if client_calls != pages or seen_calls != pages:
                problems.append(
                    f"listing sent {client_calls} requests ({seen_calls} seen), expected {pages}"
                )

            plans = [_time_plan(server.url, env, desired) for _ in range(args.repeat)]
            plan_s = min(seconds for seconds, _, _ in plans)
            _, plan, plan_calls = plans[0]
            items = plan["events"]["items"]
            retries = plan["summary"]["retry"]
            if len(items) != args.events:
                problems.append(f"the plan lists {len(items)} events, expected {args.events}")
            if retries != min(args.users, args.events):
                problems.append(f"the plan retries {retries} events, expected {args.users}")
            if plan_calls != pages:
                problems.append(f"plan sent {plan_calls} list requests, expected {pages}")
    finally:
        server.stop()

    rows = [
        ("seed (control endpoint)", f"{args.events:,} events", "-", f"{seeding:.3f}"),
        ("list_provisioning_events()", f"{listed:,} events", str(client_calls), f"{list_s:.3f}"),
        (
            "plan --format json (process)",
            f"{len(items):,} events, {retries} retry",
            str(plan_calls),
            f"{plan_s:.3f}",
        ),
    ]
    header = ("step", "result", "requests", "seconds")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(4)]
    print(
        f"refresh benchmark: {args.events:,} failed events, {args.users} desired users, "
        f"best of {args.repeat}"
    )
    for row in (header, tuple("-" * w for w in widths), *rows):
        print(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print(
        f"per page: {1000 * list_s / max(client_calls, 1):.1f} ms "
        f"({MAX_PAGE_SIZE} events per request, {pages} pages expected)"
    )
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
