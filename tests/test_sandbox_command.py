"""`reconciler sandbox`: error lines for bad addresses, roles seeded, a pasteable banner."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.cli import sandbox_command
from tests.support import sandbox as fx

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_a_busy_port_is_an_error_line_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    """Another listener on the port: `error:` and `hint:`, no traceback, exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli.main(["sandbox", "--port", str(port), "--roles-from", str(EXAMPLES)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: the port is in use" in err
    assert "hint: " in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("host", "port", "why"),
    [
        ("no-such-host.invalid", "0", "host name not found"),
        ("192.0.2.1", "0", "not an address of this machine"),
        ("127.0.0.1", "70000", "ports are 0-65535"),
    ],
)
def test_a_bad_address_is_an_error_line(
    capsys: pytest.CaptureFixture[str], host: str, port: str, why: str
) -> None:
    """An unknown host, a foreign address, an impossible port: one `error:` line each."""
    argv = ["sandbox", "--host", host, "--port", port, "--roles-from", str(EXAMPLES)]
    argv += ["--allow-remote"]  # past the loopback rule, to the address itself
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert f"error: cannot listen on {host}:{port}: {why}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.0.2.1", "sandbox.example", "127.0.0.1.nip.io"]
)
def test_a_non_loopback_host_is_refused_without_allow_remote(
    capsys: pytest.CaptureFixture[str], host: str
) -> None:
    """L1: the sandbox accepts its published fake credentials; it never listens beyond
    loopback unless --allow-remote says so (nothing is served)."""
    argv = ["sandbox", "--host", host, "--port", "0", "--roles-from", str(EXAMPLES)]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert f"error: --host {host!r} is not a loopback address" in captured.err
    assert "hint: reconciler sandbox --host 127.0.0.1" in captured.err
    assert "listening" not in captured.out


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"]
)
def test_loopback_hosts_need_no_flag(host: str) -> None:
    """L1: every loopback spelling is allowed as it is."""
    assert sandbox_command.is_loopback(host)


def test_an_unusable_roles_source_fails_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--roles-from naming an invalid desired state: its problems, then the error."""
    (tmp_path / "roles.yaml").write_text("version: 1\nroles:\n  agent: {id: 12x}\n")
    assert cli.main(["sandbox", "--roles-from", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "roles.yaml:3:" in err
    assert f"error: cannot seed the sandbox's roles from {tmp_path}" in err
    assert "hint: fix it (`reconciler validate" in err


def test_nothing_to_seed_from_is_said_loudly_in_the_banner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default `.` without a desired state: 0 roles, and why, and what 100-217 will mean."""
    monkeypatch.chdir(tmp_path)
    seeded = sandbox_command.seed_roles(None)
    assert seeded.role_ids == ()
    lines = sandbox_command.banner("http://127.0.0.1:1", seeded, {})
    warning = [line for line in lines if line.startswith("# WARNING:")]
    assert f"seeded 0 roles from {tmp_path}: no *.yaml or *.yml files there" in warning[0]
    assert "100-217" in warning[1]
    assert "--roles-from" in warning[1]


@pytest.fixture
def sandbox_in_examples(tmp_path: Path) -> Iterator[list[str]]:
    """`reconciler sandbox --port 0` started in a copy of examples/; yields its banner."""
    desired = tmp_path / "desired"
    shutil.copytree(EXAMPLES, desired, ignore=shutil.ignore_patterns("github-*", "gitlab-*"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "VOLCENGINE_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "sandbox", "--port", "0"],
        cwd=desired,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    banner: list[str] = []
    try:
        while not banner or "control endpoints" not in banner[-1]:
            banner.append(lines.get(timeout=20).rstrip("\n"))
        yield banner
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_banner_can_be_pasted_and_the_first_apply_succeeds(
    sandbox_in_examples: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Roles come from the current directory; the pasted exports make apply work at once."""
    banner = sandbox_in_examples
    assert all(line.startswith(("# ", "export ")) for line in banner), banner
    assert "# roles seeded: 4 from " in "\n".join(banner)
    script = "\n".join(
        [*banner, 'printf "%s|%s" "$RECONCILER_FEDERATION_APP_SECRET" "$VOLCENGINE_SECRET_KEY"']
    )
    pasted = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert pasted.stdout == "sandbox-app-secret|sandbox-secret-key"
    for line in banner:
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("RECONCILER_STATE", str(tmp_path / "state.json"))
    code = cli.main(["apply", str(tmp_path / "desired"), "--auto-approve"])
    assert code == 0, capsys.readouterr()
    assert "100-217" not in capsys.readouterr().out
    assert fx.APP_KEY == "sandbox-app-key"  # the banner's tenant is the fixtures' tenant
