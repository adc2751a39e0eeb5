"""From parsed files to a DesiredState, or every problem at once (pure but for load_*).

Layers: each file is a mapping (never echoed when it is not: it may be anything, an env
file), then the JSON Schema (structure and the API's per-field rules, with friendly
messages kept in the schema), then the rules the schema cannot say (``merging``), then,
given today's date, the rules of end dates (``date_rules``). Every problem is located at
``file:line:col``; every value a message echoes is clipped. Warnings (an end date already
past) are located the same way and kept on the DesiredState; only errors make it invalid.
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler import schemas
from reconciler.desired import date_rules, dates, loading, merging, yamlsafe
from reconciler.desired.model import DesiredState
from reconciler.errors import Severity, ValidationFailed, excerpt
from reconciler.values import replace

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    # The parse cache (and its key) loads only when a run has one to use; a located
    # problem, and a schema's report of errors, with the first problem found.
    from reconciler.desired.cache import Entry, ParseCache
    from reconciler.problems import Problem
    from reconciler.schema_errors import SchemaError

SCHEMA = "desired-state"
_NUMBERS = ("integer", "number")
_CHUNK = 16  # users checked at once when looking for the entries that break the schema


def validate(
    files: tuple[loading.SourceFile, ...],
    *,
    digest: str,
    today: dates.Today | None = None,
    checked: frozenset[int] = frozenset(),
) -> DesiredState:
    """The merged desired state; ValidationFailed listing every problem.

    With ``today``, end dates are checked at its date in the policy's timezone (the
    state records that date as ``at``), and past ones are kept as warnings. The files at
    the indexes in ``checked`` passed their own checks already (the parse cache's): only
    the rules across files run on them.
    """
    located: list[Problem] = []
    pending: list[merging.Pending] = []
    for index, source in enumerate(files):
        located.extend(source.problems)
        if source.data is None or index in checked:
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
        dates.as_text(source.data, source.text)
        for error in _schema_errors(source.data):
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
    at = None
    if today is not None and dates.zone_of(desired.policy.timezone) is not None:
        at = today.date(desired.policy.timezone)
        pending.extend(date_rules.check(files, desired, at))
    located.extend(_locate(files, pending))
    located.sort(key=lambda p: (p.file, p.line, p.col, p.message))
    if any(problem.severity is Severity.ERROR for problem in located):
        raise ValidationFailed(tuple(located))
    return replace(
        desired,
        digest=digest,
        files=tuple(f.display for f in files),
        at=at,
        warnings=tuple(located),
    )


def _schema_errors(data: dict[Any, Any]) -> list[SchemaError]:
    """The schema's errors in ``data``; for a long ``users`` list, only the entries that
    fail are walked by the slow, every-error validator (each item is checked on its own
    by the schema, so a chunk of them can be too)."""
    if schemas.is_valid(SCHEMA, data):
        return []
    users = data.get("users")
    if type(users) is not list or len(users) <= _CHUNK:
        return list(schemas.errors(SCHEMA, data))
    found = list(schemas.errors(SCHEMA, {**data, "users": []}))
    for start in range(0, len(users), _CHUNK):
        _failing_users(users, start, min(start + _CHUNK, len(users)), found)
    return found


def _failing_users(users: list[Any], start: int, stop: int, found: list[SchemaError]) -> None:
    """Add the schema's errors of ``users[start:stop]`` to ``found``, halving the range
    until each failing entry is checked on its own (valid halves cost one fast check)."""
    if schemas.is_valid(SCHEMA, {"version": 1, "users": users[start:stop]}):
        return
    if stop - start > 1:
        middle = (start + stop) // 2
        _failing_users(users, start, middle, found)
        _failing_users(users, middle, stop, found)
        return
    for error in schemas.errors(SCHEMA, {"version": 1, "users": [users[start]]}):
        found.append(replace(error, path=("users", start, *error.path[2:])))


def _schema_message(error: SchemaError) -> str:
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
    """Each pending problem at its file:line:col: those inside a user entry from the
    entry's own lines, the others from one pass over the file."""
    by_file: dict[int, list[merging.Pending]] = {}
    for item in pending:
        by_file.setdefault(item.file, []).append(item)
    if not by_file:
        return []
    # Created with the first problem found: a valid input never loads its class.
    from reconciler.problems import Problem  # noqa: PLC0415

    out = []
    for index, items in by_file.items():
        source = files[index]
        users = source.data.get("users") if isinstance(source.data, dict) else None
        entries = source.account_lines.lines_of(users) if type(users) is list else []
        wanted = [(item.path, item.on_key) for item in items]
        marks = yamlsafe.marks_at(source.text, wanted, entries)
        for item, mark in zip(items, marks, strict=True):
            out.append(
                Problem(
                    file=source.display,
                    line=mark.line,
                    col=mark.col,
                    message=item.message,
                    path=item.path,
                    rule=item.rule,
                    severity=item.severity,
                )
            )
    return out


def load_desired(
    path: Any,
    *,
    max_bytes: int = loading.DEFAULT_MAX_FILE_BYTES,
    today: dates.Today | None = None,
    cache: ParseCache | None = None,
) -> DesiredState:
    """Read, parse and validate the input at ``path`` (the one I/O entry point)."""
    listing = loading.list_input(path)
    return load_listed(listing, max_bytes=max_bytes, today=today, cache=cache)


def load_listed(
    listing: loading.Listing,
    *,
    max_bytes: int = loading.DEFAULT_MAX_FILE_BYTES,
    today: dates.Today | None = None,
    cache: ParseCache | None = None,
) -> DesiredState:
    """Read, parse and validate the files of ``listing`` (end dates at ``today``, if given);
    with a ``cache``, files it holds skip the parser and their own schema check."""
    # Loading only allocates, and nothing cyclic: each collection would rescan it for nothing.
    with yamlsafe.gc_paused():
        raw = list(loading.read_listed(listing, max_bytes=max_bytes))
        digest = loading.digest(tuple(raw))
        if cache is None:
            return validate(_parse_all(raw), digest=digest, today=today)
        parsed, checked = _parse_cached(raw, cache)
        return validate(parsed, digest=digest, today=today, checked=checked)


def _parse_all(raw: list[loading.RawFile]) -> tuple[loading.SourceFile, ...]:
    """Each file parsed; its bytes let go once its text is parsed (``raw`` ends empty)."""
    raw.reverse()
    parsed = []
    while raw:
        parsed.append(loading.parse_file(raw.pop()))
    return tuple(parsed)


def _parse_cached(
    raw: list[loading.RawFile], cache: ParseCache
) -> tuple[tuple[loading.SourceFile, ...], frozenset[int]]:
    """Each file from the cache, else parsed (and cached when it passes its own checks);
    the indexes of the files that passed them. Each file's bytes are let go once read
    (``raw`` ends empty)."""
    from reconciler.desired.cache import Entry  # noqa: PLC0415 - see the imports

    parsed: list[loading.SourceFile] = []
    checked: set[int] = set()
    raw.reverse()
    while raw:
        index, file = len(parsed), raw.pop()
        if file.raw is None:
            parsed.append(loading.parse_file(file))
            continue
        key = cache.key(file.raw)
        entry = cache.load(key)
        if entry is not None:
            parsed.append(_from_entry(file, entry))
            checked.add(index)
            continue
        source = loading.parse_file(file)
        parsed.append(source)
        if _passes_own_checks(source):
            cache.store(key, Entry(data=source.data, account_lines=source.account_lines))
            checked.add(index)
    return tuple(parsed), frozenset(checked)


def _passes_own_checks(source: loading.SourceFile) -> bool:
    """Whether ``source`` parsed without problems into a mapping its schema accepts (its
    dates turned into text first, as validate does)."""
    if source.problems or not isinstance(source.data, dict):
        return False
    dates.as_text(source.data, source.text)
    return schemas.is_valid(SCHEMA, source.data)


def _from_entry(file: loading.RawFile, entry: Entry) -> loading.SourceFile:
    """A cached file as the parser would have given it (the text kept to locate the
    problems the rules across files may find in it)."""
    assert file.raw is not None  # only readable files have a key
    return loading.SourceFile(
        display=file.display,
        relative=file.relative,
        text=file.raw.decode("utf-8-sig"),  # it decoded when it was parsed: same bytes
        data=entry.data,
        account_lines=entry.account_lines,
        problems=(),
    )
