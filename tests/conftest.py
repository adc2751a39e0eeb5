"""Shared fixtures: golden files (``--update-golden`` regenerates them), a clean environment,
a desired-state folder on disk for CLI tests, and PostgreSQL (one fresh database per run).

Helpers live in the package ``tests.support`` and are imported from there, one way:
``from tests.support import sandbox as fx``.
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import pg, stores

GOLDEN_DIR = Path(__file__).parent / "golden"

# Variables that would make a CLI test depend on the machine it runs on.
_ENV_TO_CLEAR = (
    "RECONCILER_STATE",
    "RECONCILER_AT",
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop this run's PostgreSQL database, whether the tests passed or not."""
    pg.drop_run_database()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Name the random order's seed even under ``-q`` (which hides pytest-randomly's header)."""
    if not config.pluginmanager.has_plugin("randomly"):
        return
    seed = config.getoption("randomly_seed", None)
    if isinstance(seed, int):
        terminalreporter.write_line(
            f"random order: seed {seed}; repeat it with -p randomly --randomly-seed={seed}"
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


@pytest.fixture(autouse=True)
def _no_date_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """RECONCILER_AT moves "today" for every command: a test sets it itself, or not at all."""
    monkeypatch.delenv("RECONCILER_AT", raising=False)


@pytest.fixture(autouse=True)
def cache_key_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Each test's own XDG_CACHE_HOME: the parse cache's key (reconciler.seals) is made
    there, never in the real home, and no test sees another's key."""
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


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


@pytest.fixture
def pg_schema_dsn() -> Iterator[str]:
    """A DSN whose tables live in a fresh schema of their own, dropped afterwards."""
    dsn = pg.pg_dsn()
    schema = f"reconciler_test_{uuid.uuid4().hex[:12]}"
    pg.pg_execute(dsn, f"CREATE SCHEMA {schema}")
    try:
        yield pg.with_query(dsn, options=f"-csearch_path={schema}")
    finally:
        pg.pg_execute(dsn, f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(name="backend", params=["local", "postgres"])
def backend_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[stores.Backend]:
    """Each state backend in turn, empty and private to the test."""
    with stores.backend(request.param, tmp_path) as made:
        yield made


@pytest.fixture(name="fresh_database")
def fresh_database_fixture() -> Iterator[str]:
    """The DSN of a brand-new database that has never seen reconciler, dropped afterwards."""
    with stores.fresh_database() as dsn:
        yield dsn
