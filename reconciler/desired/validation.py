"""From parsed files to a DesiredState, or every problem at once (pure but for load_*).

Layers: each file is a mapping (never echoed when it is not: it may be anything, an env
file), then the JSON Schema (structure and the API's per-field rules, with friendly
messages kept in the schema), then the rules the schema cannot say (``merging``). Every
problem is located at ``file:line:col``; every value a message echoes is clipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reconciler import schemas
from reconciler.desired import loading, merging, yamlsafe
from reconciler.desired.model import DesiredState
from reconciler.errors import Problem, ValidationFailed, excerpt

SCHEMA = "desired-state"
_NUMBERS = ("integer", "number")


def validate(files: tuple[loading.SourceFile, ...], *, digest: str) -> DesiredState:
    """The merged desired state; ValidationFailed listing every problem."""
    located: list[Problem] = []
    pending: list[merging.Pending] = []
    for index, source in enumerate(files):
        located.extend(source.problems)
        if source.data is None:
            continue
        if not isinstance(source.data, dict):
            # Never echoed: a file that is not a mapping may be anything (an env file).
            kind = yamlsafe.kind_of(source.data)
            message = f"the file holds {kind}, not a mapping: a desired-state file is a "
            pending.append(
                merging.Pending(
                    file=index,
                    path=(),
                    message=message + "mapping that starts with `version: 1`",
                    rule="schema",
                )
            )
            continue
        for error in schemas.errors(SCHEMA, source.data):
            pending.append(
                merging.Pending(
                    file=index,
                    path=error.path,
                    message=_schema_message(error),
                    on_key=error.on_key,
                    rule="schema",
                )
            )
    desired, rule_problems = merging.merge(files)
    pending.extend(rule_problems)
    located.extend(_locate(files, pending))
    if located:
        located.sort(key=lambda p: (p.file, p.line, p.col, p.message))
        raise ValidationFailed(tuple(located))
    return DesiredState(
        roles=desired.roles,
        users=desired.users,
        policy=desired.policy,
        provisioning=desired.provisioning,
        digest=digest,
        files=tuple(f.display for f in files),
    )


def _schema_message(error: schemas.SchemaError) -> str:
    """The schema's message, or how to write a boolean or number that YAML 1.1 alone reads
    from text like ``no``, ``on`` or ``010`` (the loader keeps those as text)."""
    spelled = error.instance
    if error.keyword != "type" or not isinstance(spelled, str):
        return error.message
    reading = yamlsafe.yaml11_reading(spelled)
    key = error.path[-1] if error.path and isinstance(error.path[-1], str) else ""
    if isinstance(reading, bool) and error.expected == "boolean":
        fix = "true" if reading else "false"
        write = f"`{key}: {fix}`" if key else fix
        return (
            f"{excerpt(spelled)} is not a boolean here: only true and false are (YAML 1.1 "
            f"reads it as {fix}); write {write}"
        )
    if reading is not None and not isinstance(reading, bool) and error.expected in _NUMBERS:
        return (
            f"{excerpt(spelled)} is not a plain number (YAML 1.1 reads it as {reading!r}): "
            "write digits only, without a leading 0, _ or :"
        )
    return error.message


def _locate(
    files: tuple[loading.SourceFile, ...], pending: Iterable[merging.Pending]
) -> list[Problem]:
    out = []
    for item in pending:
        source = files[item.file]
        mark = yamlsafe.node_at(source.text, item.path, item.on_key)
        out.append(
            Problem(
                file=source.display,
                line=mark.line,
                col=mark.col,
                message=item.message,
                path=item.path,
                rule=item.rule,
            )
        )
    return out


def load_desired(path: Any, *, max_bytes: int = loading.DEFAULT_MAX_FILE_BYTES) -> DesiredState:
    """Read, parse and validate the input at ``path`` (the one I/O entry point)."""
    return load_listed(loading.list_input(path), max_bytes=max_bytes)


def load_listed(
    listing: loading.Listing, *, max_bytes: int = loading.DEFAULT_MAX_FILE_BYTES
) -> DesiredState:
    """Read, parse and validate the files of ``listing``."""
    # Loading only allocates, and nothing cyclic: each collection would rescan it for nothing.
    with yamlsafe.gc_paused():
        raw = loading.read_listed(listing, max_bytes=max_bytes)
        parsed = tuple(loading.parse_file(file) for file in raw)
        return validate(parsed, digest=loading.digest(raw))
