"""Provenance: the git commit behind each planned change, the plan file, and ``why``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.apply import ledger
from reconciler.cli import main as cli
from reconciler.desired.commit import Commit
from reconciler.desired.model import Source
from reconciler.plan import git as plan_git
from reconciler.plan import planfile, planner, provenance
from reconciler.plan.model import Action, Change, Reason
from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord, State
from reconciler.values import replace
from tests.support import builders
from tests.support import sandbox as fx
from tests.support.builders import desired, user

GOLDEN_DAY = "2026-12-01"  # the date the review goldens name: never today's

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")

ADA = ("Ada Lovelace", "ada@example.com", "2024-03-01T10:00:00+01:00")
GRACE = ("Grace Hopper", "grace@example.com", "2024-04-02T09:30:00-04:00")


def git(directory: Path, *args: str, who: tuple[str, str, str] = ADA) -> str:
    """Run git in ``directory`` as ``who`` at ``who``'s fixed date (stable hashes)."""
    name, email, date = who
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
        "GIT_COMMITTER_DATE": date,
    }
    done = subprocess.run(
        ["git", "-C", str(directory), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def isolated_git(clean_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No user or system git configuration (signing, hooks, abbrev) leaks into the tests."""
    clean_env.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    clean_env.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return clean_env


@pytest.fixture
def history(workdir: Path, isolated_git: pytest.MonkeyPatch) -> Path:
    """``workdir`` as a repo: Ada commits all; Grace changes bob's email; dave is uncommitted."""
    git(workdir, "init", "-q", "-b", "main")
    git(workdir, "add", "roles.yaml", "users.yaml")
    git(workdir, "commit", "-q", "-m", "Declare the team")
    users = workdir / "users.yaml"
    text = users.read_text(encoding="utf-8").replace("bob@example.com", "robert@example.com")
    users.write_text(text, encoding="utf-8")
    git(workdir, "commit", "-q", "-am", "Bob's new address", who=GRACE)
    users.write_text(
        text + "  - account: dave\n    name: Dave\n    email: dave@example.com\n"
        "    roles: [reporting]\n",
        encoding="utf-8",
    )
    return workdir


def plan_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """``reconciler plan . --format json`` (no refresh), parsed."""
    capsys.readouterr()
    assert cli.main(["plan", ".", "--no-refresh", "--format", "json", *args]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def commits_by_account(document: dict[str, Any]) -> dict[str, Any]:
    """Account → the ``source.commit`` of its change (None when absent)."""
    return {c["account"]: (c["source"] or {}).get("commit") for c in document["changes"]}


# -- pure: blame output and entry spans ------------------------------------------------

SHA_A, SHA_B = "a" * 40, "b" * 40
PORCELAIN = f"""\
{SHA_A} 1 1 2
author Ada Lovelace
author-mail <ada@example.com>
author-time 1709283600
author-tz +0100
committer Ada Lovelace
committer-mail <ada@example.com>
committer-time 1709283600
committer-tz +0100
summary one
filename users.yaml
\tversion: 1
{SHA_A} 2 2
\tusers:
{SHA_B} 3 3 1
author Grace Hopper
author-mail <grace@example.com>
author-time 1712064600
author-tz -0400
committer Grace Hopper
committer-mail <grace@example.com>
committer-time 1712064600
committer-tz -0400
summary two
previous {SHA_A} users.yaml
filename users.yaml
\t  - account: alice
{"0" * 40} 4 4 1
author Not Committed Yet
author-mail <not.committed.yet>
author-time 1712064700
author-tz +0000
committer Not Committed Yet
committer-mail <not.committed.yet>
committer-time 1712064700
committer-tz +0000
summary Version of users.yaml from users.yaml
filename users.yaml
\t    name: Alice
"""


def test_parse_blame_reads_each_line_and_each_commit_once() -> None:
    """Every line gets its commit; details given once per commit are shared."""
    blame = provenance.parse_blame(PORCELAIN)
    assert blame.shas[1:] == (SHA_A, SHA_A, SHA_B, "0" * 40)
    assert blame.texts[3] == "  - account: alice"
    assert blame.commits[SHA_B].author == "Grace Hopper"
    assert blame.commits[SHA_B].author_tz == "-0400"
    assert blame.commits["0" * 40].uncommitted


def test_newest_prefers_uncommitted_then_the_latest_commit() -> None:
    """Uncommitted lines make the entry uncommitted; otherwise the latest commit wins."""
    blame = provenance.parse_blame(PORCELAIN)
    # A None here is a failure of the test, as it should be: no need to narrow first.
    assert provenance.newest(blame, 1, 2).sha == SHA_A  # type: ignore[union-attr]  # see above
    assert provenance.newest(blame, 1, 3).sha == SHA_B  # type: ignore[union-attr]  # see above
    assert provenance.newest(blame, 3, 4).uncommitted  # type: ignore[union-attr]  # see above


BLOCK = """\
version: 1
users:
  - account: a
    name: A
    roles:
      - agent

  # the next one joins in May
  - account: b
    name: B
policy:
  max_disable: {count: 3}
"""
INDENTLESS = """\
users:
- account: a
  roles:
  - agent
- account: b
  name: B
roles: {}
"""
BARE_DASH = """\
users:
  -
    account: a
    name: A
  -
    account: b
"""
FLOW = """\
users:
  - {account: a, name: A}
  - {account: b,
     name: B}
"""


@pytest.mark.parametrize(
    ("text", "starts", "expected"),
    [
        (BLOCK, [3], {3: 8}),  # comments and blanks stay with the entry above
        (BLOCK, [9], {9: 10}),  # the end of the users sequence ends the last entry
        (BLOCK, [3, 9], {3: 8, 9: 10}),
        (INDENTLESS, [2], {2: 4}),  # a nested list at the same column is part of it
        (INDENTLESS, [5], {5: 6}),
        (BARE_DASH, [3], {3: 4}),  # the mapping starts on the line after a bare "-"
        (BARE_DASH, [6], {6: 6}),
        (FLOW, [2], {2: 2}),
        (FLOW, [3], {3: 4}),
    ],
)
def test_entry_spans(text: str, starts: list[int], expected: dict[int, int]) -> None:
    """An entry runs to the line before the next item or the end of its sequence."""
    texts = ("", *text.splitlines())
    assert provenance.entry_spans(texts, starts) == expected


@pytest.mark.parametrize(
    ("commit", "text"),
    [
        (
            Commit(hash="1a2b3c4", author="Ada", date="2024-03-01T10:00:00+01:00"),
            "1a2b3c4 Ada 2024-03-01",
        ),
        (Commit(), "uncommitted"),
    ],
)
def test_commit_render(commit: Commit, text: str) -> None:
    """Short hash, author and date; or ``uncommitted``."""
    assert commit.render() == text


# -- git ---------------------------------------------------------------------------------


@needs_git
def test_each_change_names_the_newest_commit_of_its_entry(
    history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """alice: Ada's commit; bob: Grace's later edit of his lines; dave: uncommitted."""
    first = git(history, "rev-parse", "--short", "HEAD~1")
    second = git(history, "rev-parse", "--short", "HEAD")
    commits = commits_by_account(plan_json(capsys))
    assert commits["alice"] == {"hash": first, "author": ADA[0], "date": ADA[2]}
    assert commits["bob"] == {"hash": second, "author": GRACE[0], "date": GRACE[2]}
    assert commits["dave"] == {"uncommitted": True}


@needs_git
def test_untracked_file_in_a_repo_is_uncommitted(
    workdir: Path, isolated_git: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A desired-state file git does not track yet: every entry is uncommitted."""
    git(workdir, "init", "-q")
    commits = commits_by_account(plan_json(capsys))
    assert set(commits) == {"alice", "bob"}
    assert all(c == {"uncommitted": True} for c in commits.values())


def test_outside_git_the_plan_is_unchanged(
    workdir: Path, isolated_git: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No work tree (GIT_CEILING_DIRECTORIES stops the search): no commit, no error."""
    isolated_git.setenv("GIT_CEILING_DIRECTORIES", str(workdir.parent))
    document = plan_json(capsys)
    assert all("commit" not in c["source"] for c in document["changes"])
    capsys.readouterr()
    assert cli.main(["plan", ".", "--no-refresh"]) == 0
    assert "[users.yaml:3]" in capsys.readouterr().out


def test_without_a_git_binary_the_plan_is_unchanged(
    workdir: Path, isolated_git: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """git missing from PATH is not an error: provenance is simply absent."""
    isolated_git.setenv("PATH", str(workdir / "no-bin"))
    commits = commits_by_account(plan_json(capsys))
    assert set(commits.values()) == {None}


@needs_git
def test_one_blame_per_file_not_per_change(
    workdir: Path, isolated_git: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """250 changes in one file: one ``git blame`` (a logging git wrapper counts them)."""
    fx.write_desired(workdir, fx.users(250))
    git(workdir, "init", "-q")
    git(workdir, "add", ".")
    git(workdir, "commit", "-q", "-m", "many")
    bin_dir, log = workdir / "bin", workdir / "git.log"
    bin_dir.mkdir()
    wrapper = bin_dir / "git"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec "{GIT}" "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    isolated_git.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    commits = commits_by_account(plan_json(capsys))
    assert len(commits) == 250
    assert len({c["hash"] for c in commits.values()}) == 1
    calls = log.read_text(encoding="utf-8").splitlines()
    assert sum(" blame " in f" {c} " for c in calls) == 1
    assert len(calls) <= 4  # work-tree check, blame, abbreviations


@needs_git
def test_markdown_golden_with_provenance(
    history: Path, capsys: pytest.CaptureFixture[str], golden: Callable[[str, str], None]
) -> None:
    """The PR comment names each entry's commit (fixed authors and dates: stable hashes).

    alice is recorded as declared; bob's recorded email predates Grace's commit.
    """
    recorded = builders.state(
        builders.record("alice", "agent"), builders.record("bob", "agent", "reporting")
    )
    LocalStore(history / ".reconciler" / "state.json").write(recorded, force=True)
    capsys.readouterr()
    assert cli.main(["plan", ".", "--no-refresh", "--format", "markdown", "--at", GOLDEN_DAY]) == 0
    golden("review/plan-with-provenance.md", capsys.readouterr().out)


def test_markdown_golden_without_git(
    workdir: Path,
    isolated_git: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    golden: Callable[[str, str], None],
) -> None:
    """Outside git the comment shows file:line only."""
    isolated_git.setenv("GIT_CEILING_DIRECTORIES", str(workdir.parent))
    capsys.readouterr()
    assert cli.main(["plan", ".", "--no-refresh", "--format", "markdown", "--at", GOLDEN_DAY]) == 0
    golden("review/plan-without-git.md", capsys.readouterr().out)


@needs_git
def test_text_shows_the_commit_beside_file_and_line(
    history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``[users.yaml:3, <hash> Ada Lovelace 2024-03-01]``; uncommitted entries say so."""
    first = git(history, "rev-parse", "--short", "HEAD~1")
    capsys.readouterr()
    assert cli.main(["plan", ".", "--no-refresh"]) == 0
    text = capsys.readouterr().out
    assert f"[users.yaml:3, {first} Ada Lovelace 2024-03-01]" in text
    assert "[users.yaml:16, uncommitted]" in text


# -- plan file ---------------------------------------------------------------------------


def _change(commit: Commit | None) -> Change:
    after = AccountRecord(account="a", name="A", email="a@example.com", role_ids=(), enabled=True)
    return Change(
        action=Action.CREATE,
        account="a",
        reason=Reason.NEW,
        before=None,
        after=after,
        source=Source(file="users.yaml", line=3, commit=commit),
    )


@pytest.mark.parametrize(
    "commit",
    [None, Commit(), Commit(hash="1a2b3c4", author="Ada", date="2024-03-01T10:00:00+01:00")],
)
def test_plan_file_round_trips_provenance(commit: Commit | None) -> None:
    """The saved plan keeps the commit (schema-valid), and omits it when there is none."""
    made = replace(
        planner.plan(desired(user("a", "agent", line=3)), None, state_location="s.json"),
        changes=(_change(commit),),
    )
    text = planfile.dumps(made)
    assert ('"commit"' in text) is (commit is not None)
    back = planfile.loads(text, where="plan.json")
    assert back.changes[0].source == Source(file="users.yaml", line=3, commit=commit)


# -- state and why -----------------------------------------------------------------------


def test_applied_records_keep_the_commit_they_were_applied_from() -> None:
    """new_batch stamps the commit on each target; a DONE task records it in the state."""
    batch = ledger.new_batch([_change(None)], "2024-01-01T00:00:00Z", "1a2b3c4")
    batch = ledger.with_task_ids(
        State(lineage="l", serial=1, pending=(batch,)), {batch.batch_id: "task-9"}, "now"
    ).pending[0]
    state, applied, failed = ledger.with_results(
        State(lineage="l", serial=1, pending=(batch,)), [(batch, {})], "now"
    )
    assert (len(applied), failed) == (1, [])
    assert state.accounts["a"].source_commit == "1a2b3c4"
    assert state.accounts["a"].last_task_id == "task-9"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    """One loopback sandbox for the apply-then-why test."""
    with fx.loopback(FederationSettings(todo_seconds=0.0, doing_seconds=0.01)) as served:
        yield served


@needs_git
def test_why_shows_the_whole_chain_after_apply(
    tmp_path: Path,
    isolated_git: pytest.MonkeyPatch,
    sandbox: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Apply from a commit; ``why`` shows entry, roles, plan, batch and applied-from commit."""
    box, running = sandbox
    fx.reset(box)
    for name, value in fx.env_for(running).items():
        isolated_git.setenv(name, value)
    isolated_git.chdir(tmp_path)
    fx.write_desired(tmp_path, fx.users(3))
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "roles.yaml", "users.yaml")
    git(tmp_path, "commit", "-q", "-m", "three users")
    head = git(tmp_path, "rev-parse", "--short", "HEAD")
    assert cli.main(["apply", ".", "--auto-approve", "--no-refresh"]) == 0
    recorded = LocalStore(tmp_path / ".reconciler" / "state.json").read()
    assert recorded is not None
    assert {r.source_commit for r in recorded.accounts.values()} == {head}

    users = tmp_path / "users.yaml"
    users.write_text(
        users.read_text(encoding="utf-8").replace("user00001@example.com", "u1@example.com"),
        encoding="utf-8",
    )
    capsys.readouterr()
    assert cli.main(["why", "user00001", "."]) == 0
    lines = capsys.readouterr().out.splitlines()
    task = recorded.accounts["user00001"].last_task_id
    assert lines == [
        "user00001",
        "  entry:    users.yaml:7 (uncommitted)",
        f"  roles:    agent ({fx.ROLE_AGENT})",
        "  plan:     MODIFY (attributes changed)",
        "            email: 'user00001@example.com' -> 'u1@example.com'",
        "  batch:    1 of 1, position 1 of 1",
        f"  recorded: enabled, last task {task}, applied from {head} at "
        f"{recorded.accounts['user00001'].updated_at}",
        f"  state:    .reconciler/state.json (lineage {recorded.lineage}, "
        f"serial {recorded.serial})",
    ]
    capsys.readouterr()
    assert cli.main(["why", "user00002", "."]) == 0
    out = capsys.readouterr().out
    assert f"users.yaml:11 (commit {head} Ada Lovelace 2024-03-01)" in out
    assert "plan:     no change" in out


def test_why_marks_sensitive_roles_and_unknown_accounts_fail(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Roles show names, ids and the sensitive flag; an account known nowhere is an error."""
    capsys.readouterr()
    assert cli.main(["why", "carol", "."]) == 0
    assert "  roles:    admin (109, sensitive)" in capsys.readouterr().out
    assert cli.main(["why", "nobody", "."]) == 1
    assert "neither in the desired state" in capsys.readouterr().err


@needs_git
def test_markdown_golden_large_plan_with_provenance(
    workdir: Path,
    isolated_git: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    golden: Callable[[str, str], None],
) -> None:
    """2,000 committed users: the comment keeps provenance and still fits GitHub's limit."""
    fx.write_desired(workdir, fx.users(2000))
    git(workdir, "init", "-q", "-b", "main")
    git(workdir, "add", ".")
    git(workdir, "commit", "-q", "-m", "Onboard the contact centre")
    capsys.readouterr()
    assert cli.main(["plan", ".", "--no-refresh", "--format", "markdown", "--at", GOLDEN_DAY]) == 0
    comment = capsys.readouterr().out
    assert len(comment) <= 65_536
    golden("review/plan-large-with-provenance.md", comment)


@needs_git
def test_blame_starts_before_the_parse_and_is_collected_once(history: Path) -> None:
    """``blaming`` starts one blame per file with user entries; ``commits`` collects it
    (the same answer as blaming then), and what nobody collected is stopped on the way out."""
    users = [Source(file="users.yaml", line=line) for line in (3, 7, 11, 15)]
    expected = provenance.commits(users, Path("."))
    with plan_git.blaming(Path(".")) as blames:
        assert blames.inside is True
        assert set(blames.started) == {"users.yaml"}  # roles.yaml has no user entry
        process = blames.started["users.yaml"].process
        assert provenance.commits(users, Path("."), blames) == expected
        assert blames.started == {}
        assert process.returncode == 0
    with plan_git.blaming(Path(".")) as blames:
        process = blames.started["users.yaml"].process
    assert blames.started == {}
    assert process.returncode is not None  # stopped or finished: never left running


def test_blaming_outside_git_starts_nothing(
    workdir: Path, isolated_git: pytest.MonkeyPatch
) -> None:
    """No work tree: no blame is started, and commits finds none."""
    isolated_git.setenv("GIT_CEILING_DIRECTORIES", str(workdir.parent))
    with plan_git.blaming(Path(".")) as blames:
        assert blames.inside is False
        assert blames.started == {}
        assert provenance.commits([Source(file="users.yaml", line=3)], Path("."), blames) == {}


class _FakeGit:
    """Started blames that run until waited for (or forever, when ``hang``), on a fake
    clock that a timed-out wait moves on by its timeout: no wall time passes."""

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.now = 0.0
        self.running: set[str] = set()
        self.started: list[str] = []
        self.most = 0
        self.timeouts: list[float | None] = []

    def start(self, file: Path) -> plan_git.Started:
        """What Blames.start gives: one fake process, its output in a temp file."""
        import tempfile  # noqa: PLC0415 - only the fake writes output

        name = file.name
        self.started.append(name)
        self.running.add(name)
        self.most = max(self.most, len(self.running))
        output = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Blames
        output.write(f"blame of {name}".encode())
        return plan_git.Started(process=_FakeProcess(self, name), output=output)


class _FakeProcess:
    def __init__(self, world: _FakeGit, name: str) -> None:
        self.world, self.name = world, name
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self.world.timeouts.append(timeout)
        if self.returncode is None and self.world.hang and timeout is not None:
            self.world.now += timeout
            raise subprocess.TimeoutExpired("git", timeout)
        if self.returncode is None:
            self._end(0)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            self._end(-9)

    def _end(self, code: int) -> None:
        self.returncode = code
        self.world.running.discard(self.name)


def _team_files(workdir: Path, count: int) -> list[str]:
    """``count`` files with a user entry each, in a git work tree."""
    names = [f"team-{index:03d}.yaml" for index in range(count)]
    for name in names:
        (workdir / name).write_text(f"version: 1\nusers:\n  - account: {name[:-5]}\n")
    git(workdir, "init", "-q", "-b", "main")
    return names


@needs_git
def test_blames_run_a_few_at_a_time_not_one_per_file(
    workdir: Path, isolated_git: pytest.MonkeyPatch
) -> None:
    """100 files with user entries: at most ``limit`` blames run at once, the next starting
    as one ends, and every file's blame is still collected, in order."""
    names = _team_files(workdir, 100)
    fake = _FakeGit()
    blames = plan_git.Blames(start=fake.start, limit=3, clock=lambda: fake.now)
    with plan_git.blaming(Path("."), blames):
        assert fake.started == names[:3]
        for name in names:
            assert blames.collect(name) == f"blame of {name}"
            assert len(fake.running) <= 3
    assert fake.started == [*names, "users.yaml"]  # the fixture's own file comes last
    assert fake.most == 3
    assert fake.running == set()


def test_the_default_limit_is_bounded_by_the_cores() -> None:
    """Never more blames at once than cores, nor than four."""
    limit = plan_git.Blames().limit
    assert 1 <= limit <= min(4, os.cpu_count() or 1)


@needs_git
def test_all_blames_together_wait_at_most_the_budget(
    workdir: Path, isolated_git: pytest.MonkeyPatch
) -> None:
    """Blames that never end: the first collect waits out the one budget, every later one
    waits no more, the rest are never started, and nothing is left running."""
    names = _team_files(workdir, 10)
    fake = _FakeGit(hang=True)
    blames = plan_git.Blames(start=fake.start, limit=2, clock=lambda: fake.now, budget=60.0)
    with plan_git.blaming(Path("."), blames):
        assert [blames.collect(name) for name in names] == [None] * 10
        assert fake.now == 60.0  # one budget in all, not 60 s per file
        assert fake.started == names[:2]
        assert [t for t in fake.timeouts if t] == [60.0]
    assert fake.running == set()


def test_outside_a_work_tree_no_source_is_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the blamer found no work tree, annotate returns the plan as it is, without
    listing the sources (100k of them are hashed otherwise)."""

    def looked_up(*_args: Any) -> dict[tuple[str, int], Commit]:
        raise AssertionError("no source should be looked up outside a work tree")

    monkeypatch.setattr(provenance, "commits", looked_up)
    wanted = desired(user("alice", "agent"))
    made = planner.plan(wanted, None)
    outside = plan_git.Blames(inside=False)
    assert provenance.annotate(made, tmp_path, wanted, outside) is made
