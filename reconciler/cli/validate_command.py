"""``reconciler validate``: every problem of the desired state, located.

It loads the desired-state layer only (``inputs``), no planner, renderer or store.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from reconciler.cli.choices import ValidateFormat
from reconciler.cli.inputs import flush, max_bytes, out, parse_cache, today
from reconciler.cli.options_base import CacheOptions, ValidateOptions
from reconciler.desired import dates, loading, validation
from reconciler.errors import EXIT_OK, Severity, ValidationFailed

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    from reconciler.problems import Problem


def validate(options: ValidateOptions, *, now: dt.datetime) -> int:
    """``reconciler validate``: every problem, located; exit 1 if any error (warnings, such
    as an end date already past, are shown and do not fail)."""
    path, fmt = options.path, options.fmt
    when = today(options.at, now)
    listing = loading.list_input(path)
    for item in listing.ignored:
        sys.stderr.write(f"note: ignored {item.display}: {item.reason}\n")
    if fmt in (ValidateFormat.GITHUB, ValidateFormat.SARIF):
        return _validate_for_review(path, listing, fmt=fmt, when=when, cache=options.cache)
    ignored = {"ignored": [_ignored_json(i) for i in listing.ignored]} if listing.ignored else {}
    cache = parse_cache(path, options.cache)
    try:
        desired = validation.load_listed(listing, max_bytes=max_bytes(), today=when, cache=cache)
    except ValidationFailed as failed:
        if fmt is ValidateFormat.JSON:
            out(json.dumps(_problems_json(failed.problems) | ignored, indent=2))
        else:
            for problem in failed.problems:
                out(problem.render())
        raise
    if fmt is ValidateFormat.JSON:
        report = _problems_json(desired.warnings) | {"users": len(desired.users)} | ignored
        out(json.dumps(report, indent=2))
    else:
        for problem in desired.warnings:
            out(problem.render())
        count = len(desired.warnings)
        warned = f"; {count} warning{'s' if count != 1 else ''}" if count else ""
        out(
            f"Valid: {len(desired.users)} users, {len(desired.roles)} roles "
            f"in {len(desired.files)} file(s){warned}."
        )
    flush(cache)
    return EXIT_OK


def _ignored_json(item: loading.Ignored) -> dict[str, str]:
    return {"file": item.display, "reason": item.reason}


def _validate_for_review(
    path: Path,
    listing: loading.Listing,
    *,
    fmt: ValidateFormat,
    when: dates.Today,
    cache: CacheOptions,
) -> int:
    """SARIF or GitHub annotations (warnings as warnings), paths relative to the repository."""
    from reconciler.plan import git  # noqa: PLC0415 - git runs only for these formats
    from reconciler.render import findings  # noqa: PLC0415 - only these formats render findings

    def emit(problems: tuple[Problem, ...]) -> None:
        root = git.repo_root(path)
        if fmt is ValidateFormat.SARIF:
            out(json.dumps(findings.sarif(problems, root=root), indent=2, ensure_ascii=False))
        else:
            sys.stdout.write(findings.github(problems, root=root))

    parsed = parse_cache(path, cache)
    try:
        desired = validation.load_listed(listing, max_bytes=max_bytes(), today=when, cache=parsed)
    except ValidationFailed as failed:
        emit(failed.problems)
        raise
    emit(desired.warnings)
    flush(parsed)
    return EXIT_OK


def _problems_json(problems: tuple[Problem, ...]) -> dict[str, Any]:
    """``valid`` (no error among ``problems``), and every problem with its severity."""
    return {
        "valid": not any(p.severity is Severity.ERROR for p in problems),
        "problems": [
            {
                "file": p.file,
                "line": p.line,
                "col": p.col,
                "severity": p.severity.value,
                "message": p.message,
                "rule": p.rule,
                "path": list(p.path),
            }
            for p in problems
        ],
        "warnings": sum(1 for p in problems if p.severity is Severity.WARNING),
    }
