"""Validation problems for code review: SARIF 2.1.0 and GitHub workflow annotations.

Both put each problem on its file and line of the pull request's diff. Paths are made
relative to ``root`` (the repository's top, when the input is in git), because GitHub
resolves them against the checkout. A file name is printed with its unprintable characters
escaped (loading already does; this holds for any Problem): a newline in a name must never
start a workflow command of its own.
"""

from __future__ import annotations

import os
import posixpath
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconciler import __version__
from reconciler.errors import printable
from reconciler.problems import Problem

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

# Problem.rule -> (name, short description, full description)
RULES: dict[str, tuple[str, str, str]] = {
    "input": (
        "UnreadableInput",
        "The desired-state file cannot be read as YAML",
        "The file is missing, too large, binary, not UTF-8, empty, or uses YAML features "
        "reconciler refuses (aliases, merge keys, custom tags, duplicate keys).",
    ),
    "schema": (
        "SchemaViolation",
        "The desired state does not match its schema",
        "A key is unknown or missing, or a value has the wrong type or format "
        "(schemas/desired-state.schema.json).",
    ),
    "rule": (
        "ApiRuleViolation",
        "The desired state breaks a rule of the federation API or of the merged files",
        "Duplicate accounts or emails, undefined or repeated roles, and limits the "
        "federation-user API enforces; the message names the API error code.",
    ),
    "expiry": (
        "EndDate",
        "An end date has passed, or a grant runs longer than policy.max_grant_days",
        "A warning for an expires or until date on or before today (the plan already "
        "disables the account or removes the role: clean the entry up); an error for a grant "
        "of a role limited by policy.max_grant_days without an end date, or with one further "
        "away than the limit.",
    ),
}


def relative(file: str, root: Path | None) -> str:
    """``file`` (relative to the working directory) as a POSIX path relative to ``root``."""
    if root is None:
        return Path(file).as_posix()
    try:
        return Path(os.path.relpath(os.path.abspath(file), root)).as_posix()
    except ValueError:  # another drive on Windows
        return Path(file).as_posix()


def _rule(rule: str) -> tuple[str, str, str]:
    return RULES.get(rule, (rule.title(), f"reconciler {rule} check", f"reconciler {rule} check"))


def sarif(problems: Sequence[Problem], *, root: Path | None = None) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one result per problem, at its level (error or warning)."""
    rule_ids = list(RULES)
    rule_ids += sorted({p.rule for p in problems} - set(rule_ids))
    rules = []
    for rule_id in rule_ids:
        name, short, full = _rule(rule_id)
        rules.append(
            {
                "id": rule_id,
                "name": name,
                "shortDescription": {"text": short},
                "fullDescription": {"text": full},
                "defaultConfiguration": {"level": "error"},
                "help": {"text": f"{full} Run `reconciler validate` to see every problem."},
            }
        )
    results = []
    for problem in problems:
        region: dict[str, int] = {"startLine": max(problem.line, 1)}
        if problem.line and problem.col:
            region["startColumn"] = problem.col
        uri = urllib.parse.quote(posixpath.normpath(relative(printable(problem.file), root)))
        results.append(
            {
                "ruleId": problem.rule,
                "ruleIndex": rule_ids.index(problem.rule),
                "level": problem.severity.value,  # SARIF's levels include "error", "warning"
                "message": {"text": problem.message},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": uri},
                            "region": region,
                        }
                    }
                ],
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "reconciler",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": rules,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github(problems: Sequence[Problem], *, root: Path | None = None) -> str:
    """GitHub workflow commands: one ``::error file=…,line=…,col=…,title=…::message`` each
    (``::warning`` for a warning)."""
    lines = []
    for problem in problems:
        properties = [("file", relative(printable(problem.file), root))]
        if problem.line:
            properties.append(("line", str(problem.line)))
            if problem.col:
                properties.append(("col", str(problem.col)))
        properties.append(("title", f"reconciler: {_rule(problem.rule)[1]}"))
        rendered = ",".join(f"{key}={_escape_property(value)}" for key, value in properties)
        lines.append(f"::{problem.severity.value} {rendered}::{_escape_data(problem.message)}")
    return "".join(line + "\n" for line in lines)
