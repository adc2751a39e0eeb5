"""Where each change comes from: file:line of the YAML entry and the git commit behind it.

The only module that runs git. One ``git blame --porcelain`` per desired-state file (never
per change: plans can carry 100k changes); an entry spans from its start line to the line
before the next entry of its sequence, or the end of that sequence (found by indentation),
and the newest commit among those lines is the entry's commit. Outside a git work tree
nothing is added and nothing fails.

``blaming`` starts those ``git blame`` processes before the desired state is parsed, their
output going to temp files, and ``commits`` collects it: on a work tree with 100k entries
blame costs about a third of a plan, and it runs on another core while Python parses. At
most ``os.cpu_count()`` (at most 4) run at once, the next starting as one ends, so 100 team
files never mean 100 git processes; and all of them together are waited for at most
``_GIT_TIMEOUT`` seconds, not that long per file (a blame still running then is stopped, and
its entries get no commit, as an untracked file's).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Protocol

from reconciler.desired import loading
from reconciler.desired.model import Commit, DesiredState, Source
from reconciler.errors import ReconcilerError
from reconciler.plan.model import Change, Plan
from reconciler.stores.model import AccountRecord, State

_GIT_TIMEOUT = 60.0  # for one git command; for all the blames of a plan together
_MAX_RUNNING = 4  # git blames at once, at most (and at most one per core)
_UNCOMMITTED = "0" * 40


def _git(directory: Path, *args: str, stdin: str | None = None) -> str | None:
    """Stdout of ``git -C directory args`` (None when git is missing or fails)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), *args],
            input=stdin.encode() if stdin is not None else None,
            capture_output=True,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.decode("utf-8", errors="replace")


def _directory(path: Path) -> Path:
    return path if path.is_dir() else path.parent


class Process(Protocol):
    """What ``Blames`` needs of a started process (``subprocess.Popen`` has it)."""

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


@dataclass(slots=True, kw_only=True)
class Started:
    """One ``git blame`` started, its stdout going to a temp file."""

    process: Process
    output: IO[bytes]


def _start_blame(file: Path) -> Started | None:
    output = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Blames.collect/close
    try:
        process = subprocess.Popen(
            ["git", "-C", str(file.parent), "blame", "--porcelain", "--", file.name],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        output.close()
        return None
    return Started(process=process, output=output)


def _max_running() -> int:
    return max(1, min(_MAX_RUNNING, os.cpu_count() or 1))


@dataclass(slots=True, kw_only=True)
class Blames:
    """``git blame`` started early for each desired-state file, by the name its entries'
    sources carry (``inside``: PATH is in a git work tree; None: not asked yet).

    ``pending`` files wait for a free slot: at most ``limit`` blames run at once. The first
    :meth:`collect` sets one deadline, ``budget`` seconds of ``clock`` away, for them all.
    """

    inside: bool | None = None
    started: dict[str, Started] = field(default_factory=dict)
    pending: dict[str, Path] = field(default_factory=dict)  # name -> file, in start order
    limit: int = field(default_factory=_max_running)
    start: Callable[[Path], Started | None] = _start_blame
    clock: Callable[[], float] = time.monotonic
    budget: float = _GIT_TIMEOUT
    deadline: float | None = None

    def holds(self, file: str) -> bool:
        """Whether ``file``'s blame was asked for early (started or waiting to start)."""
        return file in self.started or file in self.pending

    def top_up(self) -> None:
        """Start waiting blames while fewer than ``limit`` run (none past the deadline)."""
        running = sum(1 for run in self.started.values() if run.process.poll() is None)
        while self.pending and running < self.limit and not self._late():
            name, file = next(iter(self.pending.items()))
            del self.pending[name]
            started = self.start(file)
            if started is not None:
                self.started[name] = started
                running += 1

    def _late(self) -> bool:
        return self.deadline is not None and self.clock() >= self.deadline

    def _left(self) -> float:
        if self.deadline is None:
            self.deadline = self.clock() + self.budget
        return max(0.0, self.deadline - self.clock())

    def collect(self, file: str) -> str | None:
        """The porcelain of ``file``'s blame if it was asked for (None otherwise, when git
        failed — untracked, ignored, no commit yet — or when the deadline passed); each is
        collected once."""
        self._left()  # the one deadline starts with the first collect
        while file in self.pending and not self._late():
            # Its turn comes as others end: wait for the oldest one still running.
            running = [run for run in self.started.values() if run.process.poll() is None]
            if running:
                self._wait(running[0])
            self.top_up()
        self.pending.pop(file, None)  # still waiting at the deadline: not started at all
        run = self.started.pop(file, None)
        if run is None:
            return None
        with run.output:
            code = self._wait(run)
            self.top_up()  # the next ones run while this one is parsed
            if code != 0:
                return None
            run.output.seek(0)
            return run.output.read().decode("utf-8", errors="replace")

    def _wait(self, run: Started) -> int | None:
        """``run``'s exit code; None (it stopped) when it outlives the deadline."""
        try:
            return run.process.wait(timeout=self._left())
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                run.process.kill()
            run.process.wait()
            return None

    def close(self) -> None:
        """Stop what was not collected (the plan needed no provenance, or failed)."""
        self.pending.clear()
        for run in self.started.values():
            with contextlib.suppress(OSError):
                run.process.kill()
            run.process.wait()
            run.output.close()
        self.started.clear()


@contextlib.contextmanager
def blaming(path: Path, blames: Blames | None = None) -> Iterator[Blames]:
    """Start ``git blame`` for every desired-state file at ``path`` (nothing outside a git
    work tree), a few at a time (:class:`Blames`); the processes are stopped on the way
    out if nobody collected them. ``blames``: an empty one to fill (tests inject its
    ``start``, ``limit`` and ``clock``)."""
    blames = blames if blames is not None else Blames()
    try:
        try:
            listing = loading.list_input(path)
        except ReconcilerError:
            yield blames  # loading reports it
            return
        blames.inside = _inside_work_tree(_directory(path))
        if blames.inside:
            # Only files that can hold a user entry (reading is safe: loading's own reader;
            # a file without the word is blamed later if ever asked for).
            for file, read in zip(listing.files, loading.read_listed(listing), strict=True):
                if read.raw is None or b"account" not in read.raw:
                    continue
                blames.pending[_source_name(file)] = file
            blames.top_up()
        yield blames
    finally:
        blames.close()


def _source_name(file: Path) -> str:
    """The name an entry's Source carries for ``file``, as loading shows it (a name shown
    otherwise, with escapes, is not found here and is blamed when asked for, as before)."""
    try:
        return os.path.relpath(file)
    except ValueError:  # another drive on Windows
        return str(file)


def _inside_work_tree(directory: Path) -> bool:
    return (_git(directory, "rev-parse", "--is-inside-work-tree") or "").strip() == "true"


def head_commit(path: Path) -> str | None:
    """The short hash of HEAD when ``path`` is in a git work tree (None otherwise)."""
    output = _git(_directory(path), "rev-parse", "--short", "HEAD")
    return (output or "").strip() or None


def repo_root(path: Path) -> Path | None:
    """The top of the git work tree holding ``path`` (None outside git)."""
    output = _git(_directory(path), "rev-parse", "--show-toplevel")
    return Path(output.strip()) if output and output.strip() else None


# -- pure: blame output and entry spans --------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BlameCommit:
    """What ``git blame --porcelain`` says of one commit."""

    sha: str
    author: str
    author_time: int
    author_tz: str  # +HHMM
    committer_time: int

    @property
    def uncommitted(self) -> bool:
        """Lines of the work tree that no commit holds."""
        return self.sha == _UNCOMMITTED


@dataclass(frozen=True, slots=True, kw_only=True)
class Blame:
    """One file's blame: per line (1-based, index 0 unused) its commit sha and text."""

    shas: tuple[str, ...]
    texts: tuple[str, ...]
    commits: Mapping[str, BlameCommit]


_HEADER = re.compile(r"^([0-9a-f]{40}) \d+ (\d+)", re.MULTILINE)
_CONTENT = re.compile(r"^\t(.*)$", re.MULTILINE)
_DETAILS = re.compile(r"^([0-9a-f]{40}) \d+ \d+ \d+\n((?:[^\t\n].*\n)+)", re.MULTILINE)


def parse_blame(porcelain: str) -> Blame:
    """Parse ``git blame --porcelain`` output (commit details come once per commit).

    Every line has a header and then its text after a tab, in order; the first group
    of a commit carries its details between the two. Regexes keep 100k-line files fast.
    """
    finals = [int(final) for _, final in _HEADER.findall(porcelain)]
    shas = [sha for sha, _ in _HEADER.findall(porcelain)]
    contents = _CONTENT.findall(porcelain)
    details: dict[str, dict[str, str]] = {}
    for match in _DETAILS.finditer(porcelain):
        fields = details.setdefault(match.group(1), {})
        for line in match.group(2).splitlines():
            key, _, value = line.partition(" ")
            fields.setdefault(key, value)
    count = max(finals, default=0)
    by_line = [_UNCOMMITTED] * (count + 1)
    texts = [""] * (count + 1)
    for final, sha, text in zip(finals, shas, contents, strict=False):
        by_line[final], texts[final] = sha, text
    commits = {
        sha: BlameCommit(
            sha=sha,
            author=fields.get("author", ""),
            author_time=int(fields.get("author-time", "0")),
            author_tz=fields.get("author-tz", "+0000"),
            committer_time=int(fields.get("committer-time", "0")),
        )
        for sha, fields in details.items()
        if "author" in fields
    }
    return Blame(shas=tuple(by_line), texts=tuple(texts), commits=commits)


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _content_column(text: str) -> int:
    """The column where a sequence entry's content starts (after ``- `` markers)."""
    column = _indent(text)
    while text[column : column + 2] in ("- ", "-\t") or text[column:].rstrip() == "-":
        column += 1
        while column < len(text) and text[column] in " \t":
            column += 1
        if column >= len(text):
            return _indent(text) + 1  # a bare "-": the mapping starts on the next line
    return column


def entry_spans(texts: tuple[str, ...], starts: Iterable[int]) -> dict[int, int]:
    """Start line → last line of each entry (``texts[n]`` is line n; index 0 unused).

    An entry ends before the next known entry start, or before the first later line
    indented less than its content (the next item or the end of the sequence), or at EOF.
    Blank and comment lines never end an entry.
    """
    last_line = len(texts) - 1
    ordered = sorted(set(starts))
    spans: dict[int, int] = {}
    for index, start in enumerate(ordered):
        if not 1 <= start <= last_line:
            continue
        limit = ordered[index + 1] - 1 if index + 1 < len(ordered) else last_line
        limit = max(limit, start)
        column = _content_column(texts[start])
        end = start
        for number in range(start + 1, limit + 1):
            text = texts[number]
            stripped = text.strip()
            if stripped and not stripped.startswith("#") and _indent(text) < column:
                break
            end = number
        spans[start] = end
    return spans


def newest(blame: Blame, start: int, end: int) -> BlameCommit | None:
    """The newest commit among lines ``start..end`` (uncommitted lines are newest)."""
    best: BlameCommit | None = None
    for number in range(start, min(end, len(blame.shas) - 1) + 1):
        commit = blame.commits.get(blame.shas[number])
        if commit is None:
            continue
        if commit.uncommitted:
            return commit
        if best is None or (commit.committer_time, commit.author_time) > (
            best.committer_time,
            best.author_time,
        ):
            best = commit
    return best


def _date(commit: BlameCommit) -> str:
    sign = -1 if commit.author_tz.startswith("-") else 1
    digits = commit.author_tz.lstrip("+-").rjust(4, "0")
    offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])) * sign
    moment = dt.datetime.fromtimestamp(commit.author_time, dt.timezone(offset))
    return moment.isoformat()


# -- I/O: git -------------------------------------------------------------------------


def commits(
    sources: Iterable[Source], path: Path, blames: Blames | None = None
) -> dict[tuple[str, int], Commit]:
    """(file, line) → the commit behind the entry starting there ({} outside git).

    ``sources`` should name every entry of a file that is looked up together: an entry
    also ends before the next one given. ``blames``: the blame of each file started
    earlier by ``blaming`` (a file it does not hold is blamed now).
    """
    by_file: dict[str, list[int]] = {}
    for source in sources:
        if source.line:
            by_file.setdefault(source.file, []).append(source.line)
    if not by_file:
        return {}
    directory = _directory(path)
    inside = blames.inside if blames is not None else None
    if not (inside if inside is not None else _inside_work_tree(directory)):
        return {}
    winners: dict[tuple[str, int], BlameCommit | None] = {}
    for file, starts in by_file.items():
        where = Path(file)
        porcelain = None
        if blames is not None and blames.holds(file):
            porcelain = blames.collect(file)
        else:
            porcelain = _git(where.parent, "blame", "--porcelain", "--", where.name)
        if porcelain is None:  # untracked, ignored, or no commit yet
            winners.update({(file, s): None for s in starts})
            continue
        blame = parse_blame(porcelain)
        for start, end in entry_spans(blame.texts, starts).items():
            winners[(file, start)] = newest(blame, start, end)
    short = _abbreviations(
        directory, {c.sha for c in winners.values() if c is not None and not c.uncommitted}
    )
    by_sha = {
        sha: Commit(hash=short.get(sha, sha[:7]), author=c.author, date=_date(c))
        for sha, c in {c.sha: c for c in winners.values() if c is not None}.items()
        if not c.uncommitted
    }
    uncommitted = Commit()
    return {
        key: by_sha[c.sha] if c is not None and not c.uncommitted else uncommitted
        for key, c in winners.items()
    }


def annotate(
    plan: Plan, path: Path, desired: DesiredState | None = None, blames: Blames | None = None
) -> Plan:
    """The plan with git provenance on each change's source (unchanged outside git).

    With ``desired``, every user entry bounds its neighbours' spans, not only the
    changed ones (matters for entries written in flow style). ``blames``: as ``commits``.
    """
    sources = [c.source for c in plan.changes if c.source is not None]
    if desired is not None and plan.changes:
        sources.extend(user.source for user in desired.users.values())
    found = commits(dict.fromkeys(sources), path, blames)
    if not found:
        return plan
    return replace(plan, changes=tuple(_with_commit(change, found) for change in plan.changes))


def locate(source: Source, path: Path) -> Source:
    """``source`` with the commit behind its entry (unchanged outside git)."""
    commit = commits([source], path).get((source.file, source.line))
    return replace(source, commit=commit) if commit is not None else source


def _abbreviations(directory: Path, shas: set[str]) -> dict[str, str]:
    """Full sha → the repository's short form (one git call for all of them)."""
    if not shas:
        return {}
    output = _git(
        directory,
        "log",
        "--no-walk=unsorted",
        "--stdin",
        "--format=%H %h",
        stdin="\n".join(sorted(shas)) + "\n",
    )
    pairs = (line.partition(" ") for line in (output or "").splitlines())
    return {full: abbreviated for full, _, abbreviated in pairs if abbreviated}


def _with_commit(change: Change, found: Mapping[tuple[str, int], Commit]) -> Change:
    source = change.source
    if source is None:
        return change
    commit = found.get((source.file, source.line))
    if commit is None:
        return change
    # Source built directly: dataclasses.replace dominates the cost on 100k changes
    return replace(change, source=Source(file=source.file, line=source.line, commit=commit))


# -- why ----------------------------------------------------------------------------


def _where(source: Source) -> str:
    if source.commit is None:
        return source.render()
    if source.commit.uncommitted:
        return f"{source.render()} (uncommitted)"
    return f"{source.render()} (commit {source.commit.render()})"


def _roles(plan: Plan, desired: DesiredState, account: str, record: AccountRecord | None) -> str:
    user = desired.users.get(account)
    shown: list[tuple[str, str, bool]] = []
    if user is not None:
        for name in user.roles:
            role = desired.roles.get(name)
            if role is not None:
                shown.append((role.name, role.id, role.sensitive))
    elif record is not None:
        for role_id in record.role_ids:
            info = plan.roles.get(role_id)
            shown.append((info.name if info else role_id, role_id, bool(info and info.sensitive)))
    parts = [f"{name} ({id_}{', sensitive' if flag else ''})" for name, id_, flag in shown]
    return ", ".join(parts) or "(none)"


def _planned(plan: Plan, change: Change) -> list[str]:
    lines = [f"  plan:     {change.action.value} ({change.reason.value})"]
    lines.extend(f"            {f.field}: {f.before!r} -> {f.after!r}" for f in change.fields)
    roles = [f"+{plan.role_name(r)}" for r in change.roles_added]
    roles += [f"-{plan.role_name(r)}" for r in change.roles_removed]
    if roles:
        lines.append(f"            roles: {' '.join(roles)}")
    for index, accounts in enumerate(plan.batches, start=1):
        if change.account in accounts:
            position = accounts.index(change.account) + 1
            lines.append(
                f"  batch:    {index} of {len(plan.batches)}, "
                f"position {position} of {len(accounts)}"
            )
    return lines


def explain(
    account: str,
    plan: Plan,
    desired: DesiredState,
    recorded: State | None,
    *,
    entry: Source | None = None,
) -> list[str]:
    """The chain YAML entry → roles → planned change → batch → recorded state, as lines.

    ``entry`` is the account's source with its commit (default: the change's or the
    desired user's source as they are).
    """
    user = desired.users.get(account)
    record = recorded.accounts.get(account) if recorded else None
    change = plan.change_for(account)
    lines = [account]
    source = entry or (change.source if change and change.source else None)
    source = source or (user.source if user else None)
    if source is None:
        lines.append("  entry:    not in the desired state")
    else:
        lines.append(f"  entry:    {_where(source)}")
    lines.append(f"  roles:    {_roles(plan, desired, account, record)}")
    if change is None:
        lines.append("  plan:     no change (the recorded state matches the desired state)")
    else:
        lines.extend(_planned(plan, change))
    if record is None:
        lines.append("  recorded: not in the state (never applied)")
    else:
        status = "enabled" if record.enabled else "disabled"
        if record.adopted:
            status += ", adopted by import (attributes unverified)"
        lines.append(
            f"  recorded: {status}, last task {record.last_task_id or '(none)'}, "
            f"applied from {record.source_commit or '(unknown commit)'}"
            + (f" at {record.updated_at}" if record.updated_at else "")
        )
    return lines
