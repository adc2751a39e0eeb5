"""Fail once, early and clearly: configuration, credentials, dead endpoints, refused entries.

Driven through the real CLI: in-process against the sandbox on loopback, and as parallel
subprocesses against endpoints that refuse, speak bad TLS or never answer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.providers.federation.client import DEFAULT_RETRY
from reconciler.sandbox import app
from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.sandbox.server import RunningSandbox
from reconciler.values import replace
from tests.support import sandbox as fx

Served = tuple[app.Sandbox, RunningSandbox]
FAST = FederationSettings(todo_seconds=0.0, doing_seconds=0.02)
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/nowhere"  # touching it would fail


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """One loopback sandbox for the module."""
    with fx.loopback(FAST) as served:
        yield served


@pytest.fixture
def served(server: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """The sandbox reset; this process's CLI points at its federation API."""
    box, running = server
    fx.point_cli_at(box, running, monkeypatch)
    box.cloudidentity.reset()
    for name in ("RECONCILER_TASK_TIMEOUT", "RECONCILER_CLOUDIDENTITY_TIMEOUT", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    return box, running


def _with_cloudidentity(running: RunningSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CLOUDIDENTITY_URL", running.url)
    monkeypatch.setenv("VOLCENGINE_ACCESS_KEY", app.SANDBOX_ACCESS_KEY)
    monkeypatch.setenv("VOLCENGINE_SECRET_KEY", app.SANDBOX_SECRET_KEY)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# -- every setting before the first network call -------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("RECONCILER_FEDERATION_APP_SECRET", None, "RECONCILER_FEDERATION_APP_SECRET"),
        ("RECONCILER_TASK_TIMEOUT", "soon", "RECONCILER_TASK_TIMEOUT"),
        ("RECONCILER_CLOUDIDENTITY_TIMEOUT", "-3", "RECONCILER_CLOUDIDENTITY_TIMEOUT"),
    ],
)
@pytest.mark.parametrize("command", ["apply", "refresh"])
def test_a_bad_setting_fails_before_any_network_call(
    served: Served,
    tmp_path: Path,
    *,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    variable: str,
    value: str | None,
    named: str,
) -> None:
    """Nothing is listed, locked or sent: no CloudIdentity call, no PostgreSQL, no token."""
    box, running = served
    _with_cloudidentity(running, monkeypatch)
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)
    path = fx.write_desired(tmp_path / "desired", fx.users(3))
    extra = ["--auto-approve"] if command == "apply" else []
    code = cli.main([command, str(path), "--state", UNREACHABLE_PG, *extra])
    err = capsys.readouterr().err
    assert code == 1
    [error] = _errors(err)
    assert named in error
    assert "PostgreSQL" not in err  # the state's lock was never tried
    assert sum(box.cloudidentity.calls.values()) == 0
    assert sum(box.federation.stats().calls.values()) == 0


def test_refused_credentials_are_one_error_with_a_hint(
    served: Served,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A wrong app secret: one `error:` and its `hint:`, not one line per account."""
    box, _ = served
    monkeypatch.setenv(fx.ENV_SECRET, "not-the-secret")
    path = fx.write_desired(tmp_path / "desired", fx.users(250))
    code = cli.main(["apply", str(path), "--auto-approve", "--no-refresh"])
    captured = capsys.readouterr()
    assert code == 1
    [error] = _errors(captured.err)
    assert "app key/secret" in error
    assert "hint: copy the app key and secret" in captured.err
    assert "✗" not in captured.out
    stats = box.federation.stats()
    assert (stats.calls["token"], stats.calls["createTask"]) == (1, 0)
    assert fx.state_document(path) is None  # not even an intent


# -- transport failures, once, and said plainly ---------------------------------------------


@contextlib.contextmanager
def _listening(serve: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback listener whose connections ``serve`` handles; yields its port.

    The accept loop polls a stop flag, and the thread is joined on exit: no listener
    outlives the block (a thread blocked in accept would keep the port listening).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(32)
    listener.settimeout(0.05)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                connection = listener.accept()[0]
            except TimeoutError:
                continue
            connection.settimeout(None)
            with contextlib.suppress(OSError):
                serve(connection)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@contextlib.contextmanager
def _silent_endpoint() -> Iterator[tuple[str, list[socket.socket]]]:
    """A TCP endpoint that accepts connections and never answers; yields (URL, accepted)."""
    accepted: list[socket.socket] = []
    with _listening(accepted.append) as port:
        try:
            yield f"http://127.0.0.1:{port}", accepted
        finally:
            for connection in accepted:
                connection.close()


def _answer_in_plain_http(connection: socket.socket) -> None:
    with connection:
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


@contextlib.contextmanager
def _plaintext_endpoint() -> Iterator[str]:
    """An https:// URL whose server answers in plain HTTP: the TLS handshake fails."""
    with _listening(_answer_in_plain_http) as port:
        yield f"https://127.0.0.1:{port}"


@contextlib.contextmanager
def _untrusted_tls_endpoint(tmp_path: Path) -> Iterator[str]:
    """An https:// URL served with a self-signed certificate no CA bundle trusts."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def handshake(connection: socket.socket) -> None:
        with connection:
            context.wrap_socket(connection, server_side=True).close()

    with _listening(handshake) as port:
        yield f"https://127.0.0.1:{port}"


def _closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@dataclass
class _Run:
    """One `reconciler apply` subprocess against a broken endpoint."""

    url: str
    kind: str
    process: subprocess.Popen[str] | None = None


def _start(run: _Run, path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VOLCENGINE_", "RECONCILER_"))},
        fx.ENV_URL: run.url,
        fx.ENV_KEY: fx.APP_KEY,
        fx.ENV_SECRET: fx.APP_SECRET,
        "RECONCILER_FEDERATION_TIMEOUT": "0.3",
        "RECONCILER_STATE": str(path.parent / f"state-{run.kind.replace(' ', '-')}.json"),
    }
    command = [sys.executable, "-m", "reconciler", "apply", str(path), "--auto-approve"]
    run.process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_each_transport_failure_is_one_error_that_says_which(tmp_path: Path) -> None:
    """Refused, bad TLS, untrusted certificate, silent server: one error, one retry cycle."""
    path = fx.write_desired(tmp_path / "desired", fx.users(250))  # three batches
    with (
        _silent_endpoint() as (silent, accepted),
        _plaintext_endpoint() as plaintext,
        _untrusted_tls_endpoint(tmp_path) as untrusted,
    ):
        runs = [
            _Run(url=_closed_port(), kind="connection refused"),
            _Run(url=plaintext, kind="TLS handshake failed"),
            _Run(url=untrusted, kind="TLS certificate verification failed"),
            _Run(url=silent, kind="timed out waiting for the answer"),
        ]
        for run in runs:
            _start(run, path)
        for run in runs:
            assert run.process is not None
            out, err = run.process.communicate(timeout=90)
            assert run.process.returncode == 1, err
            [error] = _errors(err)
            assert run.kind in error, err
            assert "nothing else was sent" in error
            assert "✗" not in out
        # The silent server cost one token call's retries, not one cycle per batch.
        assert len(accepted) == DEFAULT_RETRY.max_attempts


# -- how long to wait for a task -----------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "env"),
    [(["--task-timeout", "0.3"], None), ([], "0.3"), (["--task-timeout", "0.3"], "900")],
    ids=["flag", "environment", "flag-wins"],
)
def test_the_longest_wait_for_a_task_is_a_flag_and_a_variable(
    served: Served,
    tmp_path: Path,
    *,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: list[str],
    env: str | None,
) -> None:
    """A task stuck in DOING is left for refresh after the timeout given, not after 1800 s."""
    box, _ = served
    box.federation.update_settings({"doing_seconds": 60.0})
    if env is not None:
        monkeypatch.setenv("RECONCILER_TASK_TIMEOUT", env)
    path = fx.write_desired(tmp_path / "desired", fx.users(2))
    started = time.monotonic()
    code = cli.main(["apply", str(path), "--auto-approve", "--no-refresh", *flag])
    out = capsys.readouterr().out
    assert code == 1
    assert time.monotonic() - started < 30
    assert "still not DONE after 0.3s" in out
    document = fx.state_document(path)
    assert document is not None
    assert [batch["task_id"] is not None for batch in document["pending"]] == [True]


@pytest.mark.parametrize("value", ["0", "-5", "soon", "inf"])
def test_a_bad_task_timeout_flag_is_a_usage_error(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """--task-timeout takes a positive, finite number of seconds."""
    path = fx.write_desired(tmp_path / "desired", fx.users(1))
    assert cli.main(["apply", str(path), "--auto-approve", "--task-timeout", value]) == 1
    assert "seconds" in capsys.readouterr().err


# -- one bad entry never blocks the rest -----------------------------------------------------


def test_a_role_deleted_on_the_tenant_is_one_grouped_line(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other accounts are applied; the role's 15 users are one line naming the role."""
    box, _ = served
    specs = [
        replace(spec, roles=("agent", "supervisor")) if i % 17 == 0 else spec
        for i, spec in enumerate(fx.users(250))
    ]
    path = fx.write_desired(tmp_path / "desired", specs)
    box.federation.change_roles(fx.APP_KEY, remove=(fx.ROLE_SUPERVISOR,))
    capsys.readouterr()
    code = cli.main(["apply", str(path), "--auto-approve", "--no-refresh"])
    out = capsys.readouterr().out
    assert code == 1
    failed = [line for line in out.splitlines() if "✗" in line]
    assert failed == [
        f"  ✗ 100-217 role `supervisor` ({fx.ROLE_SUPERVISOR}) is not on the tenant: 15 accounts: "
        + ", ".join(s.account for s in specs if "supervisor" in s.roles)
    ]
    assert sum("✓" in line for line in out.splitlines()) == 235
    assert box.federation.stats().calls["createTask"] == 6  # 3 batches, 3 resends
    assert "6 createTask" in out


# -- URLs and regions --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "variable"),
    [("apply", fx.ENV_URL), ("plan", "RECONCILER_CLOUDIDENTITY_URL")],
)
@pytest.mark.parametrize(
    "url",
    [
        "https://admin:hunter2@api.example.com",
        "https://api.example.com/?token=hunter2",
        "https://api.example.com/#hunter2",
    ],
)
def test_a_url_with_credentials_or_a_query_is_refused_without_echoing_it(
    served: Served,
    tmp_path: Path,
    *,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    variable: str,
    url: str,
) -> None:
    """Either API's URL: refused before anything is sent, its secret never printed (--debug too)."""
    box, running = served
    _with_cloudidentity(running, monkeypatch)
    monkeypatch.setenv(variable, url)
    path = fx.write_desired(tmp_path / "desired", fx.users(1))
    extra = ["--auto-approve"] if command == "apply" else []
    code = cli.main([command, str(path), "--debug", *extra])
    captured = capsys.readouterr()
    assert code == 1
    assert variable in captured.err
    assert "hunter2" not in captured.out + captured.err
    assert sum(box.federation.stats().calls.values()) == 0


def test_a_signature_for_another_region_is_refused_like_the_real_api(
    served: Served,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """VOLCENGINE_REGION naming another region fails against the sandbox, with a hint."""
    _, running = served
    _with_cloudidentity(running, monkeypatch)
    monkeypatch.setenv("VOLCENGINE_REGION", "cn-shanghai")
    path = fx.write_desired(tmp_path / "desired", fx.users(1))
    assert cli.main(["plan", str(path)]) == 1
    err = capsys.readouterr().err
    assert "InvalidCredential" in err
    assert "hint: check VOLCENGINE_REGION" in err
