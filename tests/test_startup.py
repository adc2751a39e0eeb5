"""Start-up stays short: what `--help`, `validate` and `plan` load, seen from a fresh process.

Each command runs in a new interpreter (``sys.modules`` of this test process holds
everything), which then prints the heavy third-party packages it loaded. Timings are the
benchmark's subject (benchmarks/startup.py); this test holds the imports that cost them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("deepdiff", "httpx", "jsonschema", "psycopg")
PROBE = """
import contextlib, io, json, sys
from reconciler.cli.main import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _env() -> dict[str, str]:
    """This environment without reconciler's own variables (a RECONCILER_STATE would give
    validate a parse cache to load)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RECONCILER_", "VOLCENGINE_"))
    }
    return {**env, "PYTHONPATH": str(ROOT)}


def _loaded(tmp_path: Path, *argv: str) -> tuple[int, set[str]]:
    """(exit code, top-level packages loaded) of ``reconciler ARGV`` in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(done.stdout)
    return result["code"], {name.split(".")[0] for name in result["modules"]}


def _modules(tmp_path: Path, *argv: str) -> set[str]:
    """Every module ``reconciler ARGV`` loads (dotted names), in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(json.loads(done.stdout)["modules"])


def _ours(tmp_path: Path, *argv: str) -> set[str]:
    """The packages of reconciler (``reconciler.plan``…) that ``reconciler ARGV`` loads."""
    names = _modules(tmp_path, *argv)
    return {".".join(n.split(".")[:2]) for n in names if n.startswith("reconciler.")}


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(("--help",), id="help"),
        pytest.param(("validate", str(ROOT / "examples")), id="validate"),
    ],
)
def test_help_and_validate_load_no_heavy_module(tmp_path: Path, argv: tuple[str, ...]) -> None:
    """`--help` and `validate examples/` load neither deepdiff, httpx, jsonschema nor psycopg."""
    code, modules = _loaded(tmp_path, *argv)
    assert code == 0
    assert "reconciler" in modules  # the probe ran the CLI
    assert modules.isdisjoint(HEAVY), sorted(modules & set(HEAVY))


def test_help_builds_the_parser_only(tmp_path: Path) -> None:
    """`--help` needs the grammar and its choices, not the values a parsed command becomes
    (frozen dataclasses cost ~10 ms to create) nor the completion scripts."""
    names = _modules(tmp_path, "--help")
    assert "reconciler.cli.grammar" in names
    assert names.isdisjoint({"reconciler.cli.options", "reconciler.cli.completion"})
    # Importing dataclasses (with inspect, ast, dis, tokenize) was a third of --help's
    # start-up: errors.py and grammar.py define none, Problem lives in problems.py.
    assert "dataclasses" not in names
    # Nor typing (TYPE_CHECKING = False in the modules every command loads), shutil
    # (parsing.Formatter measures the terminal itself), pathlib (imported where a chosen
    # command is built) or urllib.parse (masking loads after parsing).
    assert names.isdisjoint({"typing", "shutil", "pathlib", "urllib.parse"})
    # Nor signal (its enums: main and cli.signals import it where a signal is named), nor
    # shlex (arguments.shell_line imports it for the hints that quote a command line).
    assert names.isdisjoint({"signal", "shlex"})


def test_validate_creates_only_its_own_option_values(tmp_path: Path) -> None:
    """validate builds its options from options_base: the other commands' frozen option
    classes (each costs its creation at start-up) never load."""
    names = _modules(tmp_path, "validate", str(ROOT / "examples"))
    assert "reconciler.cli.options_base" in names
    assert names.isdisjoint({"reconciler.cli.options", "reconciler.cli.completion"})


def test_validate_of_a_valid_input_loads_only_what_it_uses(tmp_path: Path) -> None:
    """`validate examples/` (valid, no state beside it) imports neither typing (only
    annotations name it) nor signal; it creates no class of the parse cache or its key
    (seals, hmac), of a located problem or a schema's report of errors (made with the
    first problem), of git provenance (desired.commit) or of the state's options."""
    code, _ = _loaded(tmp_path, "validate", str(ROOT / "examples"))
    assert code == 0
    names = _modules(tmp_path, "validate", str(ROOT / "examples"))
    assert names.isdisjoint({"typing", "signal", "hmac", "shlex"}), sorted(
        names & {"typing", "signal", "hmac", "shlex"}
    )
    unused = {
        "reconciler.seals",
        "reconciler.desired.cache",
        "reconciler.desired.commit",
        "reconciler.problems",
        "reconciler.schema_errors",
        "reconciler.cli.options",
    }
    assert names.isdisjoint(unused), sorted(names & unused)
    # urllib.parse stays: pathlib (Python 3.11) imports it, and validate reads paths.
    # Its values are reconciler.values' frozen classes: dataclasses would import inspect
    # (with ast, dis and tokenize) and cost 3.5M instructions a class, a third of validate's
    # start-up with its 18 classes.
    heavy = {"dataclasses", "inspect", "ast", "dis", "tokenize"}
    assert names.isdisjoint(heavy), sorted(names & heavy)


def test_validate_loads_only_the_desired_state_layer(tmp_path: Path) -> None:
    """validate needs no planner, renderer, store or API client of ours."""
    ours = _ours(tmp_path, "validate", str(ROOT / "examples"))
    assert "reconciler.desired" in ours
    assert ours.isdisjoint({"reconciler.plan", "reconciler.render", "reconciler.stores"})
    assert ours.isdisjoint({"reconciler.providers", "reconciler.apply"})


def test_plan_path_never_loads_deepdiff(tmp_path: Path) -> None:
    """A plan (offline, to a file state) compares records directly: no deepdiff, no psycopg."""
    state = tmp_path / "state.json"
    code, modules = _loaded(
        tmp_path, "plan", str(ROOT / "examples"), "--no-refresh", "--state", str(state)
    )
    assert code == 0
    assert "deepdiff" not in modules
    assert "psycopg" not in modules
    assert "jsonschema" not in modules


def test_invalid_input_loads_the_walker_not_jsonschema(tmp_path: Path) -> None:
    """The probe sees a lazy import happen: an invalid file's every problem is found by
    reconciler's schema walker, and jsonschema (the costlier import) is not loaded."""
    (tmp_path / "bad.yaml").write_text("version: 1\nteams: []\n", encoding="utf-8")
    code, modules = _loaded(tmp_path, "validate", str(tmp_path))
    assert code == 1
    assert "jsonschema" not in modules
    assert "reconciler.schema_walk" in _modules(tmp_path, "validate", str(tmp_path))


def test_validate_and_plan_load_no_fastjsonschema(tmp_path: Path) -> None:
    """The schemas' generated checks (reconciler/checks) need nothing of fastjsonschema,
    nor its code generator."""
    state = tmp_path / "state.json"
    for argv in (
        ("validate", str(ROOT / "examples")),
        ("plan", str(ROOT / "examples"), "--no-refresh", "--state", str(state)),
    ):
        assert "fastjsonschema" not in _modules(tmp_path, *argv), argv


def test_validate_in_utc_loads_no_zone_database(tmp_path: Path) -> None:
    """A policy in UTC (the default) needs no zone database: zoneinfo (which loads
    sysconfig) is imported only for another zone, as examples/ names Europe/Berlin."""
    desired = tmp_path / "desired"
    desired.mkdir()
    for name in ("roles.yaml", "team-support.yaml"):
        (desired / name).write_bytes((ROOT / "examples" / name).read_bytes())
    code, _ = _loaded(tmp_path, "validate", str(desired))
    assert code == 0
    assert "zoneinfo" not in _modules(tmp_path, "validate", str(desired))
    assert "zoneinfo" in _modules(tmp_path, "validate", str(ROOT / "examples"))
