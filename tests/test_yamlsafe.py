"""Hostile and awkward YAML input: every failure is a located problem, never a crash or hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.desired import loading, validation, yamlsafe
from reconciler.desired.loading import RawFile
from reconciler.errors import InputError


def _laughs(levels: int = 9, width: int = 9) -> bytes:
    """The billion-laughs alias bomb: ``width ** levels`` strings from a few hundred bytes."""
    lines = [b'l0: &l0 ["lol"' + b', "lol"' * (width - 1) + b"]"]
    for level in range(1, levels):
        refs = b", ".join([b"*l%d" % (level - 1)] * width)
        lines.append(b"l%d: &l%d [%s]" % (level, level, refs))
    return b"\n".join(lines) + b"\n"


def _parse(raw: bytes, name: str = "in.yaml") -> loading.SourceFile:
    """Parse ``raw`` as one input file."""
    return loading.parse_file(RawFile(display=name, relative=name, raw=raw))


def _located(source: loading.SourceFile) -> list[tuple[int, int, str]]:
    """(line, col, message) of every problem of ``source``."""
    return [(p.line, p.col, p.message) for p in source.problems]


REFUSED = [
    pytest.param(b"version: 1\nversion: 1\n", (2, 1), "duplicate key 'version'", id="duplicate"),
    pytest.param(
        b"version: 1\nroles:\n  a:\n    id: '1'\n    id: '2'\n",
        (5, 5),
        "duplicate key 'id'",
        id="duplicate-nested",
    ),
    pytest.param(
        b"base: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n  y: 3\n",
        (5, 3),
        "duplicate key 'y'",
        id="duplicate-beside-merge-key",
    ),
    pytest.param(_laughs(), None, "alias bomb", id="billion-laughs"),
    pytest.param(b"a: &a [*a]\n", (1, 4), "recursive alias", id="recursive-alias"),
    pytest.param(b"a: &a {b: *a}\n", None, "recursive alias", id="recursive-alias-mapping"),
    pytest.param(b"[" * 100_000, (1, 257), "nesting is too deep", id="flow-sequence-100k"),
    pytest.param(b"{a: " * 100_000, (1, 1025), "nesting is too deep", id="flow-mapping-100k"),
    pytest.param(b"- " * 100_000 + b"x\n", (1, 513), "nesting is too deep", id="block-dash-100k"),
    pytest.param(b"? " * 100_000 + b"x\n", (1, 513), "nesting is too deep", id="block-key-100k"),
    pytest.param(
        b"a: !!python/object/apply:os.system ['true']\n",
        (1, 4),
        "tag !!python/object/apply:os.system is not allowed",
        id="python-object-apply",
    ),
    pytest.param(b"a: !!python/name:os.system\n", (1, 4), "is not allowed", id="python-name"),
    pytest.param(
        b"version: 1\nname: caf\xe9\n", (2, 10), "not UTF-8 (byte 0xe9)", id="latin-1-byte"
    ),
    pytest.param(b"version: 1\n\0\n", (1, 1), "binary file (contains NUL bytes)", id="nul"),
    pytest.param(b"", (1, 1), "empty file", id="empty"),
    pytest.param(b"# only\n# comments\n", (1, 1), "empty file", id="comments-only"),
    pytest.param(
        b"version: 1\n---\nversion: 1\n", (2, 1), "more than one YAML document", id="two-documents"
    ),
    pytest.param(
        b"version: 1\nusers: [a, b\n", (3, 1), "YAML syntax error", id="unclosed-flow-sequence"
    ),
    pytest.param(
        b"? [a]\n: 1\n", (1, 3), "a list is used as a key: keys are text", id="list-as-key"
    ),
]


@pytest.mark.parametrize(("raw", "where", "fragment"), REFUSED)
def test_hostile_input_becomes_one_located_problem(
    raw: bytes, where: tuple[int, int] | None, fragment: str
) -> None:
    """Each hostile input is reported with its position, without crashing or hanging."""
    located = _located(_parse(raw))
    assert located, "expected a problem"
    line, col, message = located[0]
    assert fragment in message
    if where is not None:
        assert (line, col) == where


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            b"base: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n",
            {"base": {"x": 1}, "m": {"x": 1, "y": 2}},
            id="merge-key",
        ),
        pytest.param(
            b"base: &b {x: 1, y: 1}\nm:\n  <<: *b\n  y: 2\n",
            {"base": {"x": 1, "y": 1}, "m": {"x": 1, "y": 2}},
            id="merge-key-overridden",
        ),
        pytest.param(
            b"common: &c [agent, reporting]\nu: [{roles: *c}, {roles: *c}]\n",
            {
                "common": ["agent", "reporting"],
                "u": [{"roles": ["agent", "reporting"]}, {"roles": ["agent", "reporting"]}],
            },
            id="shared-role-list-alias",
        ),
        pytest.param(b"\xef\xbb\xbfversion: 1\n", {"version": 1}, id="utf8-bom"),
        pytest.param(b"a: '" + b"x" * 10_000 + b"'\n", {"a": "x" * 10_000}, id="long-scalar"),
        pytest.param(
            b"".join(b" " * (2 * i) + b"k:\n" for i in range(200)) + b" " * 400 + b"v\n",
            None,
            id="200-levels-block-nesting",
        ),
    ],
)
def test_plain_yaml_still_loads(raw: bytes, expected: object) -> None:
    """Merge keys, aliases, a BOM and moderate nesting load without problems."""
    source = _parse(raw)
    assert source.problems == ()
    if expected is not None:
        assert source.data == expected


def test_duplicates_at_two_levels_are_all_reported() -> None:
    """A file with a top-level and a nested duplicate reports both, each at its key."""
    raw = b"version: 1\nroles:\n  a:\n    id: '1'\n    id: '2'\nversion: 1\n"
    located = _located(_parse(raw))
    assert sorted((line, col) for line, col, _ in located) == [(5, 5), (6, 1)]
    assert all("duplicate key" in message for _, _, message in located)


def test_duplicate_key_is_reported_by_validate_with_file_line_col(tmp_path: Path) -> None:
    """A duplicate key fails validation (it is not silently collapsed)."""
    file = tmp_path / "dup.yaml"
    file.write_text("version: 1\nusers: []\nusers: []\n", encoding="utf-8")
    raw = loading.read_files(file)
    with pytest.raises(validation.ValidationFailed) as failed:
        validation.validate(tuple(map(loading.parse_file, raw)), digest="d")
    (problem,) = failed.value.problems
    assert (Path(problem.file).name, problem.line, problem.col) == ("dup.yaml", 3, 1)


def test_alias_bomb_is_refused_by_yamlsafe_directly() -> None:
    """yamlsafe.parse raises HostileInput for a bomb instead of expanding it."""
    raw = _laughs()
    with pytest.raises(yamlsafe.HostileInput, match="alias bomb"):
        yamlsafe.parse(raw, raw.decode())


def test_wide_but_small_alias_graph_is_allowed() -> None:
    """Aliases that expand to a modest size are plain YAML, not a bomb."""
    source = _parse(_laughs(levels=3, width=9))
    assert source.problems == ()
    assert len(source.data["l2"]) == 9


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    """A file over max_bytes becomes a problem naming the limit and the override."""
    big = tmp_path / "big.yaml"
    big.write_bytes(b"version: 1\n" + b"# pad\n" * 200)
    (raw,) = loading.read_files(big, max_bytes=100)
    assert raw.raw is None
    located = _located(loading.parse_file(raw))
    assert len(located) == 1
    assert "over the 100-byte limit" in located[0][2]
    assert "RECONCILER_MAX_FILE_BYTES" in located[0][2]


def test_binary_file_on_disk_is_located(tmp_path: Path) -> None:
    """A binary file generated at test time is reported, not decoded."""
    blob = tmp_path / "blob.yaml"
    blob.write_bytes(bytes(range(256)) * 64)
    (raw,) = loading.read_files(blob)
    assert "binary file" in _located(loading.parse_file(raw))[0][2]


def test_missing_path_is_an_input_error(tmp_path: Path) -> None:
    """A path that does not exist raises InputError with a hint."""
    with pytest.raises(InputError, match="no such file or directory") as raised:
        loading.read_files(tmp_path / "absent")
    assert raised.value.hint


@pytest.mark.parametrize(
    ("text", "path", "on_key", "expected"),
    [
        ("a:\n  b: 1\n", ("a", "b"), False, (2, 6)),
        ("a:\n  b: 1\n", ("a", "b"), True, (2, 3)),
        ("a:\n  - x\n  - y\n", ("a", 1), False, (3, 5)),
        ("a:\n  b: 1\n", ("a", "missing"), False, (2, 3)),
        ("a: [\n", ("a",), False, (1, 1)),
    ],
)
def test_node_at_locates_paths(
    text: str, path: tuple[str | int, ...], on_key: bool, expected: tuple[int, int]
) -> None:
    """node_at finds values, keys and list items; the deepest existing part otherwise."""
    mark = yamlsafe.node_at(text, path, on_key)
    assert (mark.line, mark.col) == expected


HOSTILE = Path(__file__).parent / "hostile"


def test_hostile_folder_reports_every_file_once(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate over tests/hostile/ names each hostile file with its first problem, exit 1."""
    from reconciler.cli.main import main  # noqa: PLC0415 - only this test drives the CLI

    clean_env.chdir(HOSTILE)
    assert main(["validate"]) == 1
    bomb, *lines = capsys.readouterr().out.splitlines()
    # Where the bomb is caught depends on where the expansion crosses the limit.
    assert bomb.startswith("billion-laughs.yaml:")
    assert bomb.endswith(
        ": aliases expand to more than 2,000,000 nodes: refusing a possible alias bomb"
    )
    assert lines == [
        "duplicate-keys.yaml:6:5: duplicate key 'id': the later value would silently win; keep one",
        "duplicate-keys.yaml:7:1: duplicate key 'users': the later value would silently win; "
        "keep one",
        "latin1.yml:3:17: not UTF-8 (byte 0xe9); save the file as UTF-8",
        "python-tag.yaml:2:8: tag !!python/object/apply:os.system is not allowed: only plain "
        "YAML (mappings, lists, strings, numbers, booleans) is loaded",
        "recursive-alias.yaml:2:9: recursive alias: a node contains itself",
        "two-documents.yaml:2:1: more than one YAML document (---) in one file; use one file "
        "per document",
    ]


def test_brackets_inside_quotes_and_comments_are_not_nesting(tmp_path: Path) -> None:
    """Hundreds of brackets in a quoted value or a comment do not trip the depth guard."""
    deep = "[" * 400
    source = tmp_path / "d.yaml"
    source.write_text(f"version: 1\n# {deep}\nroles:\n  r: {{id: '1', description: '{deep}'}}\n")
    parsed = loading.parse_file(loading.read_files(source)[0])
    assert parsed.problems == ()
    assert parsed.data["roles"]["r"]["description"] == deep


def test_unreadable_scalars_are_located_problems(tmp_path: Path) -> None:
    """A date that is no date, or a bad !!int, is a located problem, not a crash."""
    for text, expected in (("a: 2024-13-45\n", "as a date"), ("a: !!int 0x\n", "as int")):
        source = tmp_path / "s.yaml"
        source.write_text(text)
        parsed = loading.parse_file(loading.read_files(source)[0])
        assert [(p.line, p.col) for p in parsed.problems] == [(1, 4)]
        assert expected in parsed.problems[0].message
