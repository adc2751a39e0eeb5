#!/usr/bin/env python3
"""Set-up and the two Quickstart commands, with nothing but Python 3.11+ installed.

    python3 dev.py demo   # the main job: validate, plan, apply examples/ against the sandbox
    python3 dev.py test   # the whole test suite

Both create ``.venv`` (once, and again when pyproject.toml changes) and install
reconciler into it with its test extras.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".reconciler-installed"
DEMO = ROOT / ".demo"


def _run(cmd: list[str], **kwargs: Any) -> int:
    return subprocess.run(cmd, check=False, **kwargs).returncode


def ensure_venv() -> None:
    """Create .venv and install reconciler[test] when missing or out of date."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on any python3 the user has
        sys.exit(f"reconciler needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted and PYTHON.exists():
        return
    print("==> setting up .venv (first run only)", flush=True)
    if not PYTHON.exists() and _run([sys.executable, "-m", "venv", str(VENV)]) != 0:
        sys.exit("could not create .venv (on Debian/Ubuntu: apt-get install python3-venv)")
    quiet = ["-q", "--disable-pip-version-check"]
    if _run([str(PYTHON), "-m", "pip", "install", *quiet, "--upgrade", "pip"]) != 0:
        sys.exit("could not upgrade pip in .venv")
    if _run([str(PYTHON), "-m", "pip", "install", *quiet, "-e", f"{ROOT}[test]"]) != 0:
        sys.exit("could not install reconciler into .venv")
    STAMP.write_text(wanted)


def test(args: list[str]) -> int:
    """Run the whole test suite."""
    ensure_venv()
    return _run([str(PYTHON), "-m", "pytest", *args], cwd=ROOT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("the sandbox exited before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/_sandbox/federation/stats", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit("the sandbox did not start in time")


def _control(url: str, path: str, payload: object) -> object:
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read() or b"null")


def _step(title: str, args: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> int:
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"\n\033[1m==> {title}\033[0m\n$ reconciler {shown}", flush=True)
    code = _run([str(PYTHON), "-m", "reconciler", *args], env=env, cwd=ROOT)
    if code not in ok:
        sys.exit(f"demo step failed with exit code {code}: reconciler {shown}")
    return code


def demo() -> int:
    """The whole story against the sandbox, on a copy of examples/."""
    ensure_venv()
    shutil.rmtree(DEMO, ignore_errors=True)
    desired = DEMO / "desired"
    desired.mkdir(parents=True)
    for source in sorted((ROOT / "examples").glob("*.yaml")):
        shutil.copy(source, desired / source.name)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    sandbox = subprocess.Popen(
        [
            str(PYTHON),
            "-m",
            "reconciler",
            "sandbox",
            "--port",
            str(port),
            "--roles-from",
            str(desired),
        ],
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
    )
    env = {
        **os.environ,
        "RECONCILER_STATE": str(DEMO / "state.json"),
        "RECONCILER_FEDERATION_URL": url,
        "RECONCILER_FEDERATION_APP_KEY": "sandbox-app-key",
        "RECONCILER_FEDERATION_APP_SECRET": "sandbox-app-secret",
        "RECONCILER_CLOUDIDENTITY_URL": url,
        "VOLCENGINE_ACCESS_KEY": "AKLTsandbox",
        "VOLCENGINE_SECRET_KEY": "sandbox-secret-key",
    }
    rel = str(desired.relative_to(ROOT))
    try:
        _wait_ready(url, sandbox, time.monotonic() + 20)
        print(f"==> sandbox serving the federation and CloudIdentity APIs on {url}")
        _step("validate the desired state", ["validate", rel], env)
        _step("plan against an empty state", ["plan", rel, "--show-batches"], env)
        _step("apply it to the sandbox tenant", ["apply", rel, "--auto-approve"], env)
        team = desired / "team-support.yaml"
        edited = team.read_text().replace("roles: [agent]\n", "roles: [agent, reporting]\n", 1)
        team.write_text(edited)
        print("\n==> edit: li.wei gains the reporting role (team-support.yaml)")
        plan_file = str((DEMO / "plan.json").relative_to(ROOT))
        _step(
            "plan the change and save it",
            ["plan", rel, "--out", plan_file, "--detailed-exitcode"],
            env,
            ok=(2,),
        )
        _step("apply exactly the saved plan", ["apply", plan_file], env)
        event = _control(
            url,
            "/_sandbox/cloudidentity/events",
            [
                {
                    "UserName": "maria.garcia",
                    "TargetId": "2100000001",
                    "TargetName": "prod-account",
                    "FailureReason": "member account quota exceeded",
                },
            ],
        )
        print(f"\n==> the sandbox records a failed provisioning event: {json.dumps(event)[:120]}")
        _step("plan finds the failed provisioning event", ["plan", rel], env)
        _step("apply retries it", ["apply", rel, "--auto-approve"], env)
        _step("nothing left to do", ["plan", rel, "--detailed-exitcode"], env)
        print(
            "\n\033[1mDemo complete.\033[0m State: .demo/state.json; "
            "`.venv/bin/reconciler --help` for more."
        )
        return 0
    finally:
        sandbox.terminate()
        try:
            sandbox.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sandbox.kill()


def main() -> int:
    """Dispatch ``demo`` / ``test``."""
    command, *rest = sys.argv[1:] or ["help"]
    if command == "demo":
        return demo()
    if command == "test":
        return test(rest)
    print(__doc__)
    return 0 if command in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
