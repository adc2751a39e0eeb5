"""The parse cache: same results as the parser, verified entries, private files, --no-cache."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from reconciler import schemas, seals
from reconciler.cli import inputs
from reconciler.cli import main as cli
from reconciler.cli.options import CacheOptions, Common
from reconciler.desired import cache, loading, validation, yamlsafe
from reconciler.desired.cache import Entry, Key, ParseCache
from reconciler.desired.lines import AccountLines
from reconciler.errors import ValidationFailed
from reconciler.seals import Seal
from reconciler.stores.local import LocalStore
from reconciler.stores.model import State
from tests.support.blocking import returns_within

SEAL = Seal(b"\x01" * 32)  # a key of the tests' own; the CLI makes the user's
KEY = Key(content="c" * 64, tool="reconciler test cache 1", schema="s" * 64)
TEAM = """\
version: 1
users:
  - account: {account}
    name: Team {index}
    email: {account}@example.com
    roles: [agent]
"""
ROLES = 'version: 1\nroles:\n  agent:\n    id: "101"\n'


def parsed(text: str) -> loading.SourceFile:
    """``text`` through the parser, as one file."""
    raw = loading.RawFile(display="t.yaml", relative="t.yaml", raw=text.encode())
    return loading.parse_file(raw)


def entry_of(text: str) -> Entry:
    """The cache entry the parser's result for ``text`` makes."""
    source = parsed(text)
    return Entry(data=source.data, account_lines=source.account_lines)


def lines_by_account(entry: Entry) -> dict[str, int]:
    """account -> line, through the ids of ``account_lines``."""
    users = entry.data.get("users", [])
    lines = entry.account_lines.as_dict()
    return {u["account"]: lines[id(u)] for u in users if id(u) in lines}


def team_repo(directory: Path, teams: int) -> Path:
    """A desired state of one roles file and ``teams`` team files of one user each."""
    directory.mkdir(exist_ok=True)
    (directory / "roles.yaml").write_text(ROLES, encoding="utf-8")
    for index in range(teams):
        text = TEAM.format(account=f"user{index:03d}", index=index)
        (directory / f"team-{index:03d}.yaml").write_text(text, encoding="utf-8")
    return directory


def counting_parser(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A spy on yamlsafe.parse: one item per call (the parser itself still runs)."""
    calls: list[int] = []
    real = yamlsafe.parse

    def parse(raw: bytes, source: str) -> yamlsafe.Parsed | None:
        calls.append(1)
        return real(raw, source)

    monkeypatch.setattr(yamlsafe, "parse", parse)
    return calls


def load(path: Path, store: ParseCache | None) -> Any:
    """Load and validate ``path`` through ``store``, then flush what it learned."""
    desired = validation.load_desired(path, cache=store)
    if store is not None:
        store.flush()
    return desired


# -- the codec -------------------------------------------------------------------------


def test_round_trip_keeps_the_data_and_the_line_of_each_entry() -> None:
    """Decoding gives the same data, and each user mapping's line through its new id."""
    text = (
        "version: 1\nusers:\n  - account: ana\n    name: Ana\n    roles: [agent]\n"
        "  # a comment\n"
        '  - {account: bo, name: "Bo \\u00e9 \\u2603", roles: []}\n'  # stays exact
    )
    original = entry_of(text)
    blob = cache.encode(KEY, original, SEAL)
    assert blob is not None
    decoded = cache.decode(KEY, blob, SEAL)
    assert isinstance(decoded, Entry)
    assert decoded.data == original.data
    assert lines_by_account(decoded) == lines_by_account(original) == {"ana": 3, "bo": 7}
    assert decoded.data["users"][1]["name"] == "Bo \u00e9 \u2603"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({1: "a"}, id="key-not-text"),
        pytest.param({"expires": dt.date(2027, 1, 1)}, id="date"),
        pytest.param({"b": b"bytes"}, id="bytes"),
        pytest.param({"s": {1, 2}}, id="set"),
    ],
)
def test_data_json_would_change_is_never_encoded(data: Any) -> None:
    """A value JSON would not give back as it is makes no entry."""
    assert cache.encode(KEY, Entry(data=data, account_lines=AccountLines()), SEAL) is None


def test_a_shared_user_entry_is_never_encoded() -> None:
    """An alias shares one user mapping twice: its line could go to one copy only."""
    user = {"account": "ana"}
    data = {"users": [user, user]}
    assert (
        cache.encode(KEY, Entry(data=data, account_lines=AccountLines([(id(user), 3)])), SEAL)
        is None
    )


def _tampered(blob: bytes) -> bytes:
    return blob.replace(b'"Team 1"', b'"Team X"')


def _resealed_header(blob: bytes, **changes: Any) -> bytes:
    head, _, payload = blob.partition(b"\n")
    header = json.loads(head) | changes
    header["seal"] = SEAL.sign(cache.signed_part(header))
    return json.dumps(header).encode() + b"\n" + payload


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        pytest.param(_tampered, "digest", id="tampered"),
        pytest.param(lambda b: b[:-10], "truncated", id="truncated"),
        pytest.param(lambda b: b + b" ", "truncated or grown", id="grown"),
        pytest.param(lambda b: b[:20], "no header", id="cut-in-header"),
        pytest.param(lambda b: b"", "no header", id="empty"),
        pytest.param(lambda b: b"\x00\xff garbage\n{}", "not JSON", id="garbage"),
        pytest.param(lambda b: _resealed_header(b, tool="reconciler 0.0.1"), "tool", id="version"),
        pytest.param(lambda b: _resealed_header(b, schema="0" * 64), "schema", id="schema"),
        pytest.param(lambda b: _resealed_header(b, format=99), "format", id="format"),
        pytest.param(lambda b: _resealed_header(b, content="0" * 64), "content", id="content"),
    ],
)
def test_an_entry_that_does_not_check_out_is_refused(spoil: Any, why: str) -> None:
    """Corrupt, truncated, foreign or edited: decode says why, never raises, never trusts."""
    blob = cache.encode(KEY, entry_of(TEAM.format(account="ana", index=1)), SEAL)
    assert blob is not None
    reason = cache.decode(KEY, spoil(blob), SEAL)
    assert isinstance(reason, str)
    assert why in reason


@pytest.mark.parametrize(
    ("users", "line"),
    [([], 3), ([{"account": "ana"}], 0), ([{"account": "ana"}], 2**64)],
    ids=["leads-nowhere", "line-0", "line-past-any-file"],
)
def test_lines_that_do_not_fit_the_data_are_refused(users: list[Any], line: int) -> None:
    """A payload whose sealed line paths lead nowhere, or name no line a file can have, is
    not an entry."""
    payload = json.dumps({"data": {"users": users}, "lines": [["users", 0, line]]}).encode()
    blob = _sealed(payload)
    assert cache.decode(KEY, blob, SEAL) == "the payload's lines do not fit its data"


@pytest.mark.parametrize(
    ("text", "form"),
    [
        pytest.param(
            "version: 1\nusers:\n  - {account: ana, name: A}\n  - {account: bo, name: B}\n",
            b'"user_lines":[3,4]',
            id="every-entry-a-user-in-order",
        ),
        pytest.param(
            "version: 1\nusers:\n  - {account: ana, name: A}\n  - just text\n",
            b'"lines":[["users",0,3]]',
            id="an-entry-that-is-no-mapping",
        ),
    ],
)
def test_the_lines_of_a_users_list_are_kept_as_ints_alone(text: str, form: bytes) -> None:
    """A file whose entries are exactly its users keeps their lines as one list of ints;
    any other shape keeps each line's path. Both decode to the same lines."""
    original = entry_of(text)
    blob = cache.encode(KEY, original, SEAL)
    assert blob is not None
    assert form in blob
    decoded = cache.decode(KEY, blob, SEAL)
    assert isinstance(decoded, Entry)
    assert decoded.data == original.data
    assert lines_by_account(decoded) == lines_by_account(original)


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"users": [{"account": "a"}]}, "user_lines": []},
        {"data": {"users": [{"account": "a"}]}, "user_lines": [0]},
        {"data": {"users": [{"account": "a"}]}, "user_lines": [2**64]},
        {"data": {"users": [{"account": "a"}]}, "user_lines": [True]},
        {"data": {"users": [{"account": "a"}]}, "user_lines": [3.0]},
        {"data": {"users": ["a"]}, "user_lines": [3]},
        {"data": {"users": {"a": 1}}, "user_lines": [3]},
        {"data": [], "user_lines": []},
        {"data": {"users": [{"account": "a"}]}, "user_lines": 3},
    ],
    ids=[
        "too-few",
        "line-0",
        "past-any-file",
        "a-boolean",
        "a-float",
        "not-a-mapping",
        "users-not-a-list",
        "data-not-a-mapping",
        "not-a-list",
    ],
)
def test_user_lines_that_do_not_fit_are_refused(body: dict[str, Any]) -> None:
    """A sealed list of lines that does not name one line (an int from 1) per user mapping
    is not an entry; nor is a payload with both shapes."""
    blob = _sealed(json.dumps(body).encode())
    assert cache.decode(KEY, blob, SEAL) == "the payload's lines do not fit its data"
    both = {"data": {"users": []}, "user_lines": [], "lines": []}
    assert cache.decode(KEY, _sealed(json.dumps(both).encode()), SEAL) == (
        "the payload is not an entry"
    )


def _sealed(payload: bytes) -> bytes:
    import hashlib  # noqa: PLC0415 - only this helper forges entries

    header = {
        "format": cache.FORMAT,
        "content": KEY.content,
        "tool": KEY.tool,
        "schema": KEY.schema,
        "payload": hashlib.sha256(payload).hexdigest(),
        "bytes": len(payload),
    }
    header["seal"] = SEAL.sign(cache.signed_part(header))
    return json.dumps(header).encode() + b"\n" + payload


# -- loading through the cache ---------------------------------------------------------


def test_the_second_load_parses_nothing_and_gives_the_same_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unchanged files come from the cache: no parser call, the same users and sources."""
    repo = team_repo(tmp_path / "repo", 3)
    fresh = load(repo, None)
    calls = counting_parser(monkeypatch)
    store = ParseCache(tmp_path / "cache", seal=SEAL)
    assert load(repo, store) == fresh
    assert (len(calls), store.writes) == (4, 4)
    calls.clear()
    again = ParseCache(tmp_path / "cache", seal=SEAL)
    assert load(repo, again) == fresh
    assert (len(calls), again.hits, again.writes) == (0, 4, 0)


def test_one_edited_file_of_a_hundred_is_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-team edit in a 100-file repository re-parses that one file."""
    repo = team_repo(tmp_path / "repo", 99)
    load(repo, ParseCache(tmp_path / "cache", seal=SEAL))
    edited = repo / "team-042.yaml"
    edited.write_text(edited.read_text().replace("Team 42", "Team Forty-Two"), encoding="utf-8")
    calls = counting_parser(monkeypatch)
    store = ParseCache(tmp_path / "cache", seal=SEAL)
    desired = load(repo, store)
    assert (len(calls), store.hits, store.misses, store.writes) == (1, 99, 1, 1)
    assert desired.users["user042"].name == "Team Forty-Two"


def test_rules_across_files_still_run_and_locate_in_cached_files(tmp_path: Path) -> None:
    """Two files, each valid and cached on its own, declaring one account: both located."""
    repo = team_repo(tmp_path / "repo", 2)
    load(repo, ParseCache(tmp_path / "cache", seal=SEAL))
    (repo / "team-001.yaml").write_text(TEAM.format(account="user000", index=1), encoding="utf-8")
    (repo / "team-000.yaml").rename(tmp_path / "aside.yaml")
    load(repo, ParseCache(tmp_path / "cache", seal=SEAL))  # without team-000 it is valid: cached
    (tmp_path / "aside.yaml").rename(repo / "team-000.yaml")
    store = ParseCache(tmp_path / "cache", seal=SEAL)
    with pytest.raises(ValidationFailed) as failed:
        load(repo, store)
    assert store.misses == 0
    where = sorted((p.file.rsplit("/", 1)[-1], p.line, p.col) for p in failed.value.problems)
    assert where == [  # the account and the email, in both files
        ("team-000.yaml", 3, 14),
        ("team-000.yaml", 5, 12),
        ("team-001.yaml", 3, 14),
        ("team-001.yaml", 5, 12),
    ]


def test_files_with_problems_are_never_cached(tmp_path: Path) -> None:
    """A file the parser or the schema refuses always goes through the parser."""
    repo = team_repo(tmp_path / "repo", 1)
    (repo / "bad.yaml").write_text("version: 1\nusers:\n  - account: x\n  - {1: 2}\n")
    (repo / "dup.yaml").write_text("version: 1\nversion: 1\n")
    store = ParseCache(tmp_path / "cache", seal=SEAL)
    with pytest.raises(ValidationFailed):
        validation.load_desired(repo, cache=store)
    store.flush()
    assert store.writes == 2  # roles.yaml and team-000.yaml
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2


def test_a_spoilt_entry_is_ignored_with_a_debug_note_and_rebuilt(tmp_path: Path) -> None:
    """An edited entry is noted (debug), parsed again, and written back whole."""
    repo = team_repo(tmp_path / "repo", 1)
    load(repo, ParseCache(tmp_path / "cache", seal=SEAL))
    entries = sorted((tmp_path / "cache").glob("*.json"))
    spoilt = next(p for p in entries if b"Team 0" in p.read_bytes())
    spoilt.write_bytes(spoilt.read_bytes().replace(b"Team 0", b"Team 9"))
    notes: list[str] = []
    store = ParseCache(tmp_path / "cache", seal=SEAL, debug=notes.append)
    desired = load(repo, store)
    assert desired.users["user000"].name == "Team 0"
    assert (store.hits, store.misses, store.writes) == (1, 1, 1)
    assert len(notes) == 1
    assert "digest does not match" in notes[0]
    assert (
        ParseCache(tmp_path / "cache", seal=SEAL).load(store.key(spoilt_source(repo))) is not None
    )


def spoilt_source(repo: Path) -> bytes:
    """The raw bytes of the one team file."""
    return (repo / "team-000.yaml").read_bytes()


def test_entries_are_private_and_the_directory_is_ignored_by_git(tmp_path: Path) -> None:
    """Entries 0600 in a 0700 directory with a .gitignore of ``*``; no temp file is left."""
    repo = team_repo(tmp_path / "repo", 1)
    load(repo, ParseCache(tmp_path / "cache", seal=SEAL))
    directory = tmp_path / "cache"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert (directory / ".gitignore").read_text() == "*\n"
    names = sorted(p.name for p in directory.iterdir())
    assert len(names) == 3
    assert names[0] == ".gitignore"
    for name in names[1:]:
        assert name.endswith(".json")
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600


def test_an_entry_others_could_write_is_not_read(tmp_path: Path) -> None:
    """An entry whose mode is not 0600 is ignored (someone else may have written it)."""
    repo = team_repo(tmp_path / "repo", 1)
    load(repo, ParseCache(tmp_path / "cache", seal=SEAL))
    for entry in (tmp_path / "cache").glob("*.json"):
        entry.chmod(0o664)
    notes: list[str] = []
    store = ParseCache(tmp_path / "cache", seal=SEAL, debug=notes.append)
    load(repo, store)
    assert store.hits == 0
    assert store.misses == 2
    assert all("not 0600" in note for note in notes)


def test_a_fifo_entry_never_blocks_the_run(tmp_path: Path) -> None:
    """A FIFO where an entry belongs (anyone who can write the folder can make one) is
    ignored at once, never opened to wait for a writer; the file is parsed."""
    repo = team_repo(tmp_path / "repo", 1)
    load(repo, ParseCache(tmp_path / "cache", seal=SEAL))
    entry = (
        tmp_path / "cache" / ParseCache(tmp_path / "cache", seal=SEAL).key(spoilt_source(repo)).name
    )
    entry.unlink()
    os.mkfifo(entry, 0o600)
    notes: list[str] = []
    store = ParseCache(tmp_path / "cache", seal=SEAL, debug=notes.append)
    returns_within(lambda: load(repo, store))
    assert (store.hits, store.misses) == (1, 1)
    assert any("not a regular file" in note for note in notes)


def _filled(tmp_path: Path) -> tuple[Path, Path]:
    """A one-team repo and a cache folder holding its two entries (intact, 0600, ours)."""
    repo = team_repo(tmp_path / "repo", 1)
    load(repo, ParseCache(tmp_path / "filled", seal=SEAL))
    return repo, tmp_path / "filled"


def test_a_symlinked_cache_folder_is_neither_read_nor_written(tmp_path: Path) -> None:
    """``<state>.cache`` as a symlink to a folder of intact entries: not one is read, and
    nothing (not even a .gitignore) is written through the link."""
    repo, filled = _filled(tmp_path)
    (filled / ".gitignore").unlink()
    before = sorted(p.name for p in filled.iterdir())
    (tmp_path / "link").symlink_to(filled)
    notes: list[str] = []
    store = ParseCache(tmp_path / "link", seal=SEAL, debug=notes.append)
    load(repo, store)
    assert (store.hits, store.misses, store.writes) == (0, 2, 0)
    assert sorted(p.name for p in filled.iterdir()) == before
    assert len([n for n in notes if "link" in n]) == 2  # once reading, once writing


def test_a_cache_folder_others_can_write_is_not_read(tmp_path: Path) -> None:
    """Entries in a group- or world-writable folder are not read: anyone could have put
    them there (and not written: the folder is not private)."""
    repo, filled = _filled(tmp_path)
    filled.chmod(0o777)
    notes: list[str] = []
    store = ParseCache(filled, seal=SEAL, debug=notes.append)
    load(repo, store)
    assert (store.hits, store.misses, store.writes) == (0, 2, 0)
    assert any("not private to this user" in note for note in notes)


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a file to another user")
@pytest.mark.parametrize("whose", ["folder", "entries"])
def test_another_users_cache_is_not_read(tmp_path: Path, whose: str) -> None:
    """A folder or entries owned by someone else are not read, however intact."""
    repo, filled = _filled(tmp_path)
    for path in [filled] if whose == "folder" else list(filled.glob("*.json")):
        os.chown(path, 65534, 65534)
    store = ParseCache(filled, seal=SEAL)
    assert load(repo, store).users
    assert store.hits == 0


def test_an_unwritable_cache_is_only_a_debug_note(tmp_path: Path) -> None:
    """A cache directory that cannot be made never fails the run."""
    repo = team_repo(tmp_path / "repo", 1)
    (tmp_path / "file").write_text("not a directory")
    notes: list[str] = []
    store = ParseCache(tmp_path / "file" / "cache", seal=SEAL, debug=notes.append)
    assert load(repo, store).users
    assert store.writes == 0
    assert notes


def test_concurrent_writers_and_readers_see_whole_entries(tmp_path: Path) -> None:
    """Writers racing on the same entries, a reader meanwhile: every read is whole or none."""
    repo = team_repo(tmp_path / "repo", 5)
    raws = loading.read_files(repo)
    sources = [loading.parse_file(raw) for raw in raws]
    directory = tmp_path / "cache"
    stop = threading.Event()
    notes: list[str] = []

    def write() -> None:
        for _ in range(20):
            store = ParseCache(directory, seal=SEAL, debug=notes.append)
            for raw, source in zip(raws, sources, strict=True):
                assert raw.raw is not None
                store.store(
                    store.key(raw.raw), Entry(data=source.data, account_lines=AccountLines())
                )
            store.flush()

    def read() -> None:
        store = ParseCache(directory, seal=SEAL, debug=notes.append)
        while not stop.is_set():
            for raw in raws:
                assert raw.raw is not None
                store.load(store.key(raw.raw))

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write) for _ in range(4)]
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()
    assert notes == []
    assert sorted(p.suffix for p in directory.iterdir()) == ["", *[".json"] * 6]


def test_a_folder_another_run_made_meanwhile_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs make the cache folder at once: the one whose mkdir finds it made uses it
    (checked as found), not 'cannot use ... File exists'."""
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    monkeypatch.setattr(cache.os.path, "lexists", lambda _: False)  # it did not exist a moment ago
    notes: list[str] = []
    store = ParseCache(directory, seal=SEAL, debug=notes.append)
    raw = TEAM.format(account="ana", index=1).encode()
    store.store(store.key(raw), entry_of(raw.decode()))
    store.flush()
    assert notes == []
    assert store.writes == 1


# -- the command line ------------------------------------------------------------------


def written_state(path: Path) -> Path:
    """A state at ``path`` with no accounts, written as an apply would (folder and all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    LocalStore(path).write(State.empty().successor())
    return path


def default_cache(workdir: Path) -> Path:
    """The default state written (as the first apply would), and its cache's path."""
    state = written_state(workdir / ".reconciler" / "state.json")
    return state.with_name("state.json.cache")


def test_plan_caches_beside_the_state_and_no_cache_writes_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--no-cache`` writes neither the cache nor the state's check record."""
    directory = default_cache(workdir)
    before = sorted((workdir / ".reconciler").iterdir())
    assert cli.main(["plan", ".", "--no-refresh", "--no-cache"]) == 0
    assert sorted((workdir / ".reconciler").iterdir()) == before
    assert cli.main(["plan", ".", "--no-refresh"]) == 0
    assert len(list(directory.glob("*.json"))) == 2
    assert capsys.readouterr().err == ""


def test_the_state_folder_is_never_made_for_the_cache(workdir: Path) -> None:
    """Before the state's first write there is no folder for the cache: nothing is made."""
    assert cli.main(["validate", "."]) == 0
    assert cli.main(["plan", ".", "--no-refresh"]) == 0
    assert sorted(p.name for p in workdir.iterdir()) == ["roles.yaml", "users.yaml"]


def test_a_state_elsewhere_keeps_its_cache_beside_it(workdir: Path, tmp_path: Path) -> None:
    """With --state elsewhere, the desired-state folder stays as it is."""
    state = written_state(tmp_path / "states" / "prod.json")
    assert cli.main(["plan", ".", "--no-refresh", "--state", str(state)]) == 0
    assert len(list((state.parent / "prod.json.cache").glob("*.json"))) == 2
    assert not (workdir / ".reconciler").exists()


@pytest.mark.parametrize("errno_", [28, 30], ids=["disk-full", "read-only"])
def test_a_full_or_read_only_disk_fails_nothing_and_skips_no_check(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    errno_: int,
) -> None:
    """Neither an entry nor the state's check record can be written: the plan still
    succeeds, no temp file is left, and the next run checks the state's schema again."""
    directory = default_cache(workdir)

    def fail(*_: object, **__: object) -> None:
        raise OSError(errno_, os.strerror(errno_))

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", fail)
        assert cli.main(["plan", ".", "--no-refresh", "--debug"]) == 0
    assert "parse cache: cannot write" in capsys.readouterr().err
    left = [p.name for p in (workdir / ".reconciler").rglob("*")]
    assert not [name for name in left if name.endswith(".tmp")]
    assert "state.json.checked" not in left
    assert list(directory.glob("*.json")) == []
    calls: list[str] = []
    real = schemas.check

    def check(name: str, document: object) -> tuple[str, ...]:
        calls.append(name)
        return real(name, document)

    monkeypatch.setattr(schemas, "check", check)
    assert cli.main(["plan", ".", "--no-refresh"]) == 0
    assert "state" in calls


@pytest.mark.parametrize("given", ["prod.jsn", "-", "states/prod.json"])
def test_a_state_not_written_yet_gets_no_cache(
    workdir: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    """A misspelt ``--state`` (or ``-``, or one before its first write): the plan says there
    is no state, and no ``<state>.cache/`` is left beside nothing."""
    (workdir / "states").mkdir()
    before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    assert cli.main(["plan", ".", "--no-refresh", "--state", given]) == 0
    assert "no state at" in capsys.readouterr().out
    assert cli.main(["validate", "."]) == 0
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before


def test_a_postgresql_state_caches_beside_the_desired_state_and_says_so(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PostgreSQL state has no folder: .reconciler/cache/ beside PATH, announced once."""
    dsn = "postgresql://ci@db.invalid/identity"
    assert inputs.cache_directory(workdir, Common(state=dsn)) == (
        workdir / ".reconciler" / "cache",
        True,
    )
    (workdir / ".reconciler").mkdir()
    store = inputs.parse_cache(workdir, CacheOptions(), common=Common(state=dsn))
    assert store is not None
    load(workdir, store)
    assert "note: created the parse cache" in capsys.readouterr().err
    load(workdir, inputs.parse_cache(workdir, CacheOptions(), common=Common(state=dsn)))
    assert capsys.readouterr().err == ""


def test_no_cache_reads_nothing(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An entry sealed with the user's own key is believed by a cached run, never by
    --no-cache."""
    directory = default_cache(workdir)
    assert cli.main(["validate", "."]) == 0
    store = ParseCache(directory, seal=user_seal())
    raw = (workdir / "users.yaml").read_bytes()
    forged = entry_of((workdir / "users.yaml").read_text().replace("Alice", "Mallory"))
    store.store(store.key(raw), forged)
    store.flush()
    capsys.readouterr()
    assert cli.main(["plan", ".", "--no-refresh", "--format", "json"]) == 0
    assert "Mallory" in capsys.readouterr().out
    assert cli.main(["plan", ".", "--no-refresh", "--format", "json", "--no-cache"]) == 0
    output = capsys.readouterr().out
    assert "Mallory" not in output
    assert "Alice" in output


def test_bad_input_writes_no_cache(workdir: Path) -> None:
    """A run refused for its input (problems, or a corrupt state) leaves nothing behind."""
    directory = default_cache(workdir)
    (workdir / "users.yaml").write_text("version: 1\nusers: nope\n")
    assert cli.main(["validate", "."]) == 1
    (workdir / "users.yaml").unlink()
    state = workdir / "s.json"
    state.write_text("{not json")
    assert cli.main(["plan", ".", "--no-refresh", "--state", str(state)]) == 1
    assert not directory.exists()
    assert not (workdir / "s.json.cache").exists()


def test_debug_says_why_an_entry_was_not_used(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --debug, a spoilt entry is named on stderr; without, nothing is said."""
    directory = default_cache(workdir)
    assert cli.main(["validate", "."]) == 0
    for entry in directory.glob("*.json"):
        entry.write_bytes(entry.read_bytes()[:-1])
    capsys.readouterr()
    assert cli.main(["validate", ".", "--debug"]) == 0
    err = capsys.readouterr().err
    assert err.count("debug: parse cache: ignored") == 2
    assert "truncated" in err
    assert cli.main(["validate", "."]) == 0
    assert capsys.readouterr().err == ""


# -- the seal: only entries this user's runs wrote are believed ------------------------


def user_seal() -> Seal:
    """The key the command line uses (made in this test's XDG_CACHE_HOME if need be)."""
    where = seals.key_path(os.environ)
    assert where is not None
    found = seals.load(where)
    assert isinstance(found, Seal)
    return found


def forge(directory: Path, raw: bytes, text: str, **header: Any) -> None:
    """Write, as a copied or committed file would be, an entry for a file with bytes
    ``raw`` that holds ``text``'s data: right key, right payload digest, 0600, ours."""
    import hashlib  # noqa: PLC0415 - only this helper forges entries

    source = parsed(text)
    users = source.data.get("users", [])
    found = source.account_lines.as_dict()
    lines = [["users", i, found[id(u)]] for i, u in enumerate(users)]
    payload = json.dumps({"data": source.data, "lines": lines}).encode()
    key = cache.key_for(raw, tool=cache.tool_version(), schema=cache.schema_digest())
    fields = {
        "format": cache.FORMAT,
        "content": key.content,
        "tool": key.tool,
        "schema": key.schema,
        "payload": hashlib.sha256(payload).hexdigest(),
        "bytes": len(payload),
    }
    blob = json.dumps(fields | header).encode() + b"\n" + payload
    path = directory / key.name
    path.write_bytes(blob)
    path.chmod(0o600)


def planned(capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """The JSON plan's text, after a run that must succeed."""
    capsys.readouterr()
    assert cli.main(["plan", ".", "--no-refresh", "--format", "json", *extra]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({}, id="digest-only"),
        pytest.param({"seal": "0" * 64}, id="wrong-seal"),
        pytest.param({"seal": 7}, id="seal-not-text"),
        pytest.param({"seal": "é" * 64}, id="seal-not-ascii"),
    ],
)
def test_a_forged_entry_with_a_correct_digest_is_refused(
    workdir: Path, capsys: pytest.CaptureFixture[str], header: dict[str, Any]
) -> None:
    """An entry made by anyone who can write files as the user (a checkout under umask
    077, a restored CI cache) has the right key and digest but no seal of the user's key:
    it is ignored (said under --debug) and rewritten, and the plan is the files' own."""
    directory = default_cache(workdir)
    assert cli.main(["validate", "."]) == 0
    raw = (workdir / "users.yaml").read_bytes()
    forge(directory, raw, raw.decode().replace("Alice", "Mallory"), **header)
    capsys.readouterr()
    assert cli.main(["validate", ".", "--debug"]) == 0
    assert "not sealed by this user's key" in capsys.readouterr().err
    output = planned(capsys)
    assert "Mallory" not in output
    assert "Alice" in output


def test_a_cache_copied_from_another_user_is_refused(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Entries sealed under another key (another user, machine or CI job) never check
    out: every file is parsed again, and the entries are resealed with this user's key."""
    directory = default_cache(workdir)
    other = ParseCache(directory, seal=Seal(b"\x02" * 32))
    raw = (workdir / "users.yaml").read_bytes()
    other.store(other.key(raw), entry_of(raw.decode().replace("Alice", "Mallory")))
    other.flush()
    assert "Mallory" not in planned(capsys)
    calls = counting_parser(monkeypatch)
    assert "Alice" in planned(capsys)
    assert calls == []  # the refused entry was rewritten under this user's key


def test_a_key_others_can_read_is_not_used(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key with mode 0644 (or in a folder others can open) is no secret: no cache and no
    check record are used, --debug says why, and the run still checks everything."""
    directory = default_cache(workdir)
    where = seals.key_path(os.environ)
    assert where is not None
    user_seal().sign(b"")  # made
    where.chmod(0o644)
    calls = counting_parser(monkeypatch)
    capsys.readouterr()
    assert cli.main(["plan", ".", "--no-refresh", "--debug"]) == 0
    err = capsys.readouterr().err
    assert "parse cache: not used: the key" in err
    assert "mode 0644" in err
    assert not directory.exists()
    assert not (workdir / ".reconciler" / "state.json.checked").exists()
    assert cli.main(["plan", ".", "--no-refresh"]) == 0
    assert len(calls) == 4  # both files, both runs
    assert capsys.readouterr().err == ""
    where.chmod(0o600)
    where.parent.chmod(0o755)
    assert seals.load(where) == "the key folder " + str(where.parent) + (
        " has mode 0755, not 0700 (chmod 700 it)"
    )


def test_deleting_the_key_invalidates_every_entry_and_record(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotating the key (deleting it: a new one is made) makes every entry and the state's
    check record unbelieved: the next run parses and checks everything once."""
    default_cache(workdir)
    planned(capsys)
    where = seals.key_path(os.environ)
    assert where is not None
    old = where.read_bytes()
    where.unlink()
    parses = counting_parser(monkeypatch)
    checks: list[str] = []
    real = schemas.check

    def check(name: str, document: object) -> tuple[str, ...]:
        checks.append(name)
        return real(name, document)

    monkeypatch.setattr(schemas, "check", check)
    planned(capsys)
    assert (len(parses), checks.count("state")) == (2, 1)
    assert where.read_bytes() != old
    assert stat.S_IMODE(where.stat().st_mode) == 0o600
    assert stat.S_IMODE(where.parent.stat().st_mode) == 0o700
    planned(capsys)
    assert (len(parses), checks.count("state")) == (2, 1)


@pytest.mark.parametrize(
    "environ",
    [{}, {"HOME": "relative"}, {"XDG_CACHE_HOME": "rel", "HOME": ""}],
    ids=["unset", "relative-home", "relative-xdg"],
)
def test_without_a_home_there_is_no_cache_and_no_error(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    environ: dict[str, str],
) -> None:
    """No absolute XDG_CACHE_HOME or HOME: no key, no cache, the run succeeds."""
    directory = default_cache(workdir)
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("HOME", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert "Alice" in planned(capsys)
    assert not directory.exists()


def test_an_unusable_key_folder_means_no_cache_and_no_error(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cache_key_home: Path,
) -> None:
    """A cache home where no key can be made (here a file, not a folder): no cache, no
    error, and --debug says why."""
    directory = default_cache(workdir)
    blocker = cache_key_home / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert "Alice" in planned(capsys, "--debug")
    capsys.readouterr()
    assert cli.main(["validate", ".", "--debug"]) == 0
    assert "debug: parse cache: not used: cannot use the key folder" in capsys.readouterr().err
    assert not directory.exists()


def test_the_key_is_never_shown() -> None:
    """Neither a Seal's repr nor its str shows the key's bytes."""
    secret = b"\xab" * 32
    assert "ab" not in repr(Seal(secret)).lower().replace("seal", "")
    assert secret.hex() not in str(Seal(secret))


def test_a_rule_changed_without_a_new_version_makes_every_entry_another_key(
    tmp_path: Path,
) -> None:
    package = tmp_path / "desired"
    (package / "yamlsafe").mkdir(parents=True)
    (package / "merging.py").write_text("RULE = 1\n")
    (package / "yamlsafe" / "events.py").write_text("DEPTH = 64\n")
    before = cache.rules_digest(package)
    assert cache.rules_digest(package) == before  # the same sources, the same digest
    (package / "yamlsafe" / "events.py").write_text("DEPTH = 65\n")
    assert cache.rules_digest(package) != before
    # the installed package's own sources are part of every entry's key
    assert cache.rules_digest() in cache.tool_version()
    raw = b"version: 1\n"
    schema = cache.schema_digest()
    old = cache.key_for(raw, tool=f"t rules {before}", schema=schema)
    new = cache.key_for(raw, tool=f"t rules {cache.rules_digest(package)}", schema=schema)
    assert old.name != new.name
