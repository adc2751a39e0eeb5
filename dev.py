#!/usr/bin/env python3
"""Set-up and the Quickstart commands, with nothing but Python 3.11+ installed.

    python3 dev.py demo              # the main job: validate, plan, apply examples/
    python3 dev.py test [ARGS]       # the whole suite on the locked versions (ARGS: pytest's)
    python3 dev.py test --latest     # the same on the newest releases pyproject.toml allows
    python3 dev.py lock [--upgrade]  # re-resolve requirements/dev.lock (--upgrade: newest)

``demo`` and ``test`` create ``.venv`` from ``requirements/dev.lock`` (exact versions with
hashes) and install reconciler into it; ``.venv`` is created anew whenever the lock,
pyproject.toml or the Python running this script changes. ``test --latest`` builds
``.venv-latest`` from the newest releases instead, every time it runs.
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
LATEST = ROOT / ".venv-latest"
TOOLS = ROOT / ".venv-tools"  # holds the resolver that writes the lock
LOCK = ROOT / "requirements" / "dev.lock"
LOCK_TOOL = "uv==0.13.9"
LOCK_PYTHON = "3.11"  # the oldest Python reconciler supports; the lock holds markers for newer
DEMO = ROOT / ".demo"
QUIET = ["-q", "--disable-pip-version-check"]


def _run(cmd: list[str], **kwargs: Any) -> int:
    return subprocess.run(cmd, check=False, **kwargs).returncode


def _styled(text: str, code: str = "1") -> str:
    """``text`` in bold (or another SGR code) on a terminal; plain under NO_COLOR or in a pipe."""
    if "NO_COLOR" in os.environ or not sys.stdout.isatty():
        return text
    return f"\033[{code}m{text}\033[0m"


def _say(text: str) -> None:
    print(_styled(f"==> {text}"), flush=True)


def _python(venv: Path) -> Path:
    return (
        venv
        / ("Scripts" if os.name == "nt" else "bin")
        / ("python.exe" if os.name == "nt" else "python")
    )


def _fresh_venv(venv: Path) -> Path:
    shutil.rmtree(venv, ignore_errors=True)
    if _run([sys.executable, "-m", "venv", str(venv)]) != 0:
        sys.exit(
            "could not create a virtual environment (Debian/Ubuntu: apt-get install python3-venv)"
        )
    return _python(venv)


def _check_python() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on any python3 the user has
        sys.exit(f"reconciler needs Python 3.11 or newer; this is {sys.version.split()[0]}")


def ensure_venv() -> Path:
    """.venv holding exactly requirements/dev.lock and reconciler (editable); its python."""
    python, stamp = _python(VENV), VENV / ".reconciler-installed"
    wanted = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + LOCK.read_bytes() + sys.version.encode()
    ).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == wanted and python.exists():
        return python
    _say(
        f"setting up .venv from {LOCK.relative_to(ROOT)} (when the lock or pyproject.toml changes)"
    )
    python = _fresh_venv(VENV)
    pip = [str(python), "-m", "pip", "install", *QUIET]
    if _run([*pip, "--require-hashes", "-r", str(LOCK)]) != 0:
        sys.exit(f"could not install {LOCK.relative_to(ROOT)} into .venv")
    # The build backend (hatchling) comes from the lock too: nothing unpinned is fetched.
    if _run([*pip, "--no-deps", "--no-build-isolation", "-e", str(ROOT)]) != 0:
        sys.exit("could not install reconciler into .venv")
    stamp.write_text(wanted)
    return python


def ensure_latest() -> Path:
    """.venv-latest with the newest releases pyproject.toml allows, upgraded now; its python."""
    python = _python(LATEST)
    if not python.exists():
        python = _fresh_venv(LATEST)
    _say("upgrading .venv-latest to the newest releases pyproject.toml allows")
    pip = [str(python), "-m", "pip", "install", *QUIET, "--upgrade"]
    if (
        _run([*pip, "pip"]) != 0
        or _run([*pip, "--upgrade-strategy", "eager", "-e", f"{ROOT}[test]"]) != 0
    ):
        sys.exit("could not install the newest releases into .venv-latest")
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=False,
    )
    print("    " + " ".join(listed.stdout.split()), flush=True)
    return python


def test(args: list[str]) -> int:
    """Run the whole test suite (``--latest``: on the newest releases)."""
    latest = "--latest" in args
    args = [arg for arg in args if arg != "--latest"]
    python = ensure_latest() if latest else ensure_venv()
    return _run([str(python), "-m", "pytest", *args], cwd=ROOT)


def _lock_tool() -> Path:
    """The pinned resolver in .venv-tools (installed there on first use)."""
    tool = TOOLS / ("Scripts" if os.name == "nt" else "bin") / "uv"
    if tool.exists():
        shown = subprocess.run([tool, "--version"], check=False, capture_output=True, text=True)
        if shown.returncode == 0 and shown.stdout.split()[1:2] == [LOCK_TOOL.split("==")[1]]:
            return tool
    _say(f"installing {LOCK_TOOL} into {TOOLS.name}")
    python = _fresh_venv(TOOLS)
    if _run([str(python), "-m", "pip", "install", *QUIET, LOCK_TOOL]) != 0:
        sys.exit(f"could not install {LOCK_TOOL}")
    return tool


def lock(args: list[str]) -> int:
    """Re-resolve requirements/dev.lock: kept pins where still allowed; --upgrade: newest."""
    import tomllib  # noqa: PLC0415 - after the version check: 3.11+ only

    unknown = [arg for arg in args if arg != "--upgrade"]
    if unknown:
        sys.exit(f"dev.py lock: unknown arguments {' '.join(unknown)} (only --upgrade)")
    tool = _lock_tool()
    # The build backend is locked too, so installing reconciler fetches nothing unpinned;
    # hatchling asks for editables to install a package with force-included files editable.
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    build = [*build, "editables"]
    backend = LOCK.parent / "build-system.in"
    backend.write_text("\n".join(build) + "\n")
    command = [
        str(tool), "pip", "compile", "--quiet", "pyproject.toml", "--extra", "test",
        str(backend.relative_to(ROOT)), "--universal", "--python-version", LOCK_PYTHON,
        "--generate-hashes", "--no-emit-package", "reconciler",
        "--custom-compile-command", "python3 dev.py lock",
        "--output-file", str(LOCK.relative_to(ROOT)),
        *(["--upgrade"] if "--upgrade" in args else []),
    ]  # fmt: skip
    try:
        code = _run(command, cwd=ROOT)
    finally:
        backend.unlink()
    if code == 0:
        _say(f"wrote {LOCK.relative_to(ROOT)}; the next dev.py demo/test re-creates .venv from it")
    return code


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
    python = _python(VENV)
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"\n{_styled(f'==> {title}')}\n$ reconciler {shown}", flush=True)
    code = _run([str(python), "-m", "reconciler", *args], env=env, cwd=ROOT)
    if code not in ok:
        sys.exit(f"demo step failed with exit code {code}: reconciler {shown}")
    return code


def demo() -> int:
    """The whole story against the sandbox, on a copy of examples/."""
    python = ensure_venv()
    shutil.rmtree(DEMO, ignore_errors=True)
    desired = DEMO / "desired"
    desired.mkdir(parents=True)
    for source in sorted((ROOT / "examples").glob("*.yaml")):
        shutil.copy(source, desired / source.name)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    sandbox = subprocess.Popen(
        [
            str(python),
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
        _step("apply exactly the saved plan", ["apply", plan_file, rel], env)
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
        _step("the access review for an audit", ["report", "access", rel], env)
        print(
            f"\n{_styled('Demo complete.')} State: .demo/state.json; "
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
    """Dispatch ``demo`` / ``test`` / ``lock``."""
    _check_python()
    command, *rest = sys.argv[1:] or ["help"]
    if command == "demo":
        return demo()
    if command == "test":
        return test(rest)
    if command == "lock":
        return lock(rest)
    print(__doc__)
    return 0 if command in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
