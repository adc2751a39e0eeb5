"""Shared fixtures: golden files (``--update-golden`` regenerates them), a clean environment,
and a desired-state folder on disk for CLI tests."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).parent / "golden"

# Variables that would make a CLI test depend on the machine it runs on.
_ENV_TO_CLEAR = (
    "RECONCILER_STATE",
    "RECONCILER_MAX_FILE_BYTES",
    "NO_COLOR",
    "VOLCENGINE_ACCESS_KEY",
    "VOLCENGINE_SECRET_KEY",
    "VOLCENGINE_SESSION_TOKEN",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--update-golden``."""
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/* from the current output instead of comparing",
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """Compare text with ``tests/golden/<name>`` (or rewrite it under --update-golden)."""
    update = bool(request.config.getoption("--update-golden"))

    def check(name: str, actual: str) -> None:
        path = GOLDEN_DIR / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual, encoding="utf-8", newline="")
            return
        if not path.exists():
            pytest.fail(f"golden file {path} is missing; run pytest --update-golden and review it")
        expected = path.read_text(encoding="utf-8")
        if actual != expected:
            diff = "".join(
                difflib.unified_diff(
                    expected.splitlines(keepends=True),
                    actual.splitlines(keepends=True),
                    fromfile=f"golden/{name}",
                    tofile="actual",
                    n=2,
                )
            )
            pytest.fail(
                f"output differs from golden/{name} (review, then --update-golden):\n{diff[:6000]}"
            )

    return check


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment without state location, size limit, colour or provider settings."""
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    return monkeypatch


ROLES_YAML = """\
version: 1
roles:
  agent:
    id: "101"
  reporting:
    id: "103"
  admin:
    id: "109"
    sensitive: true
"""

USERS_YAML = """\
version: 1
users:
  - account: alice
    name: Alice
    email: alice@example.com
    roles: [agent]
  - account: bob
    name: Bob
    email: bob@example.com
    roles: [agent, reporting]
  - account: carol
    name: Carol
    email: carol@example.com
    roles: [admin]
    enabled: false
"""


@pytest.fixture
def workdir(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Path:
    """A current directory holding a valid two-file desired state (3 users, 3 roles)."""
    (tmp_path / "roles.yaml").write_text(ROLES_YAML, encoding="utf-8")
    (tmp_path / "users.yaml").write_text(USERS_YAML, encoding="utf-8")
    clean_env.chdir(tmp_path)
    return tmp_path
