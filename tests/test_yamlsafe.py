"""Hostile and awkward YAML input: every failure is a located problem, never a crash or hang."""

from __future__ import annotations

from array import array
from pathlib import Path

import pytest

from reconciler.desired import loading, validation, yamlsafe
from reconciler.desired.lines import AccountLines
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
        b"base: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n",
        (3, 3),
        "merge keys are not supported; write the keys out",
        id="merge-key",
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
        ("a:\n  1: x\n", ("a", 1), False, (2, 6)),
        ("a:\n  b: 1\n  b: 2\n", ("a", "b"), True, (3, 3)),  # the later key: its value is read
        ("a: [{b: 1}, {c: [x, {d: 2}]}]\n", ("a", 1, "c", 1, "d"), False, (1, 25)),
    ],
)
def test_node_at_locates_paths(
    text: str, path: tuple[str | int, ...], on_key: bool, expected: tuple[int, int]
) -> None:
    """node_at finds values, keys and list items; the deepest existing part otherwise."""
    mark = yamlsafe.node_at(text, path, on_key)
    assert (mark.line, mark.col) == expected


HOSTILE = Path(__file__).parent / "hostile"


API_CHARS = "one of \" [ ] ' & ( ) = ; < > , or a control character (API 100-210)"
ACCOUNT_CHARS = "has characters the API refuses; allowed: A-Z a-z 0-9 @ . _ - (API 100-207)"
NOT_A_BOOLEAN = "is not a boolean here: only true and false are (YAML 1.1 reads it as"
HOSTILE_REPORT = [
    "bool-tag.yaml:7:14: cannot read 'maybe' as a boolean: write true or false",
    "deep-flow.yaml:1:257: nesting is too deep for a desired-state file (more than 256 levels)",
    "duplicate-keys.yaml:6:5: duplicate key 'id': the later value would silently win; keep one",
    "duplicate-keys.yaml:7:1: duplicate key 'users': the later value would silently win; keep one",
    "env-file.yaml:1:1: the file holds text, not a mapping: a desired-state file is a mapping "
    "that starts with `version: 1`",
    "float-tag.yaml:4:11: cannot read '' as float: write a valid float, or drop the !!float tag",
    "int-tag.yaml:3:14: cannot read '' as int: write a valid int, or drop the !!int tag",
    "latin1.yml:3:17: not UTF-8 (byte 0xe9); save the file as UTF-8",
    f"long-value.yaml:4:11: name 'token=ghp_0123456789abcdefghijklmnopqrst…' contains a "
    f"character the API refuses: {API_CHARS}",
    "long-value.yaml:4:11: name 'token=ghp_0123456789abcdefghijklmnopqrst…' is longer than 20 "
    "characters (API 100-213)",
    "newline-values.yaml:3:3: role name 'agent\\n' must start with a letter or digit and use "
    "only A-Z a-z 0-9 . _ - (at most 64)",
    "newline-values.yaml:4:16: role id '2\\n' must be 1 to 19 digits (the API rejects it: "
    "100-202/100-208)",
    f"newline-values.yaml:6:14: account 'alice\\n' {ACCOUNT_CHARS}",
    f"newline-values.yaml:7:11: name 'Alice\\n' contains a character the API refuses: {API_CHARS}",
    "newline-values.yaml:8:12: email 'alice@example.com\\n' is not a valid address (API 100-212)",
    f"newline-values.yaml:10:14: account 'bob\\n' {ACCOUNT_CHARS}",
    "non-text-keys.yaml:3:3: key '1' is read as a number, not as text: put it in quotes",
    "non-text-keys.yaml:4:3: key 'true' is read as a boolean, not as text: put it in quotes",
    "non-text-keys.yaml:5:3: key '~' is read as null, not as text: put it in quotes",
    "policy-nan.yaml:3:26: percent must be a number from 0 to 100, not .nan",
    f"policy-nan.yaml:4:24: account 'root\\n' {ACCOUNT_CHARS}",
    "python-tag.yaml:2:8: tag !!python/object/apply:os.system is not allowed: only plain "
    "YAML (mappings, lists, strings, numbers, booleans) is loaded",
    "recursive-alias.yaml:2:9: recursive alias: a node contains itself",
    "two-documents.yaml:2:1: more than one YAML document (---) in one file; use one file "
    "per document",
    f"yaml11-booleans.yaml:3:31: 'yes' {NOT_A_BOOLEAN} true); write `sensitive: true`",
    f"yaml11-booleans.yaml:9:14: 'no' {NOT_A_BOOLEAN} false); write `enabled: false`",
    f"yaml11-booleans.yaml:14:14: 'Off' {NOT_A_BOOLEAN} false); write `enabled: false`",
    f"yaml11-booleans.yaml:16:17: 'on' {NOT_A_BOOLEAN} true); write `retry_failed: true`",
    "yaml11-booleans.yaml:17:17: '010' is not a plain number (YAML 1.1 reads it as 8): write "
    "digits only, without a leading 0, _ or :",
]
SECRETS = ("wJalrXUtnFEMI", "hunter2", "SECRETTAIL", "Sup3rS3cret")


def test_hostile_folder_reports_every_file_once(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate over tests/hostile/ names each hostile file with its problems, exit 1."""
    from reconciler.cli.main import main  # noqa: PLC0415 - only this test drives the CLI

    clean_env.chdir(HOSTILE)
    assert main(["validate"]) == 1
    bomb, *lines = capsys.readouterr().out.splitlines()
    # Where the bomb is caught depends on where the expansion crosses the limit.
    assert bomb.startswith("billion-laughs.yaml:")
    assert bomb.endswith(
        ": aliases expand to more than 2,000,000 nodes: refusing a possible alias bomb"
    )
    assert lines == HOSTILE_REPORT


@pytest.mark.parametrize("fmt", ["text", "json", "github", "sarif"])
def test_hostile_folder_never_echoes_a_secret(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """An env file, or a long value, shows at most a clipped excerpt in every format."""
    from reconciler.cli.main import main  # noqa: PLC0415 - only this test drives the CLI

    clean_env.chdir(HOSTILE)
    assert main(["validate", "--format", fmt]) == 1
    captured = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in captured.out + captured.err


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


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"a: !!bool maybe\n", "cannot read 'maybe' as a boolean", id="bool-maybe"),
        pytest.param(b"a: !!bool yes\n", "cannot read 'yes' as a boolean", id="bool-yes-tagged"),
        pytest.param(b'a: !!int ""\n', "cannot read '' as int", id="int-empty"),
        pytest.param(b'a: !!float ""\n', "cannot read '' as float", id="float-empty"),
        pytest.param(b"a: !!seq x\n", "tag !!seq does not fit a scalar", id="seq-on-scalar"),
        pytest.param(b"a: !!str [x]\n", "tag !!str does not fit a list", id="str-on-list"),
        pytest.param(b"a: !local x\n", "tag !local is not allowed", id="local-tag"),
        pytest.param(b"a: !!set {x}\n", "tag !!set is not allowed", id="set"),
        pytest.param(b"<<: 1\n", "merge keys are not supported", id="merge-scalar"),
    ],
)
def test_explicit_tags_with_bad_values_are_located_problems(raw: bytes, expected: str) -> None:
    """Tags PyYAML would crash on (KeyError, IndexError) or accept loosely are refused."""
    located = _located(_parse(raw))
    assert len(located) == 1
    assert located[0][2].startswith(expected)


SPELLINGS = [
    *[(word, word) for word in ("yes", "No", "ON", "off", "y", "n", "Yes", "OFF")],
    *[(word, word) for word in ("010", "0777", "1_000", "1:30", "0b101", "-0x1F", "1_0.5")],
    ("true", True),
    ("True", True),
    ("TRUE", True),
    ("false", False),
    ("False", False),
    ("10", 10),
    ("-5", -5),
    ("0", 0),
    ("0x1F", 31),
    ("1.5", 1.5),
    (".5", 0.5),
    ("1.5e+3", 1500.0),
    (".inf", float("inf")),
    ("~", None),
    ("null", None),
]


@pytest.mark.parametrize(("spelled", "expected"), SPELLINGS)
def test_only_yaml_1_2_spellings_are_booleans_and_numbers(spelled: str, expected: object) -> None:
    """What only YAML 1.1 reads as a boolean or number (no, on, 010, 1_000) stays text."""
    source = _parse(f"a: {spelled}\nb: [{spelled}]\n".encode())
    assert source.problems == ()
    assert source.data == {"a": expected, "b": [expected]}
    assert type(source.data["a"]) is type(expected)


@pytest.mark.parametrize(
    ("spelled", "expected"),
    [
        *[("no", False), ("On", True), ("010", 8), ("1_000", 1000), ("1:30", 90)],
        *[("true", True), ("hello", None), ("2024-01-01", None), ("", None), ("0b2", None)],
    ],
)
def test_yaml11_reading_says_what_yaml_1_1_would_make_of_text(
    spelled: str, expected: object
) -> None:
    """The reading validation quotes when it asks for true/false or plain digits."""
    assert yamlsafe.yaml11_reading(spelled) == expected


def test_keys_that_are_not_text_are_reported_each_at_its_key() -> None:
    """``1:``, ``true:``, ``~:`` keys would silently drop a role: each is a problem."""
    source = _parse(b"roles:\n  1: {id: '1'}\n  true: {id: '2'}\n  ~: {id: '3'}\n  on: x\n")
    assert _located(source) == [
        (2, 3, "key '1' is read as a number, not as text: put it in quotes"),
        (3, 3, "key 'true' is read as a boolean, not as text: put it in quotes"),
        (4, 3, "key '~' is read as null, not as text: put it in quotes"),
    ]
    assert source.data["roles"]["on"] == "x"  # YAML 1.2: text, as written


@pytest.mark.parametrize(
    ("raw", "where", "message"),
    [
        pytest.param(
            b"version: 1\nusers: [a, b\n",
            (3, 1),
            "YAML syntax error: unexpected end of the file in the [ ] list that starts at "
            "line 2, column 8",
            id="unclosed-flow-list",
        ),
        pytest.param(
            b"a: {b: 1\n",
            (2, 1),
            "YAML syntax error: unexpected end of the file in the { } mapping that starts at "
            "line 1, column 4",
            id="unclosed-flow-mapping",
        ),
        pytest.param(
            b'a: "x\n',
            (2, 1),
            "YAML syntax error: unexpected end of the file in the quoted text that starts at "
            "line 1, column 4",
            id="unclosed-quote",
        ),
        pytest.param(
            b"a: b: c\n", (1, 5), "YAML syntax error: unexpected character ':'", id="colon"
        ),
        pytest.param(
            b"- a\nb: 1\n",
            (2, 1),
            "YAML syntax error: unexpected character 'b' in the list that starts at line 1, "
            "column 1",
            id="list-then-mapping",
        ),
        pytest.param(
            b"a: *x\n", (1, 4), "alias *x refers to no anchor: define &x before it", id="alias"
        ),
        pytest.param(
            b"a: \x07\n",
            (1, 4),
            "the character U+0007 is not allowed in YAML: remove it",
            id="control-character",
        ),
    ],
)
def test_syntax_errors_are_described_in_reconcilers_words(
    raw: bytes, where: tuple[int, int], message: str
) -> None:
    """The message comes from the error's kind, position and the text there, never from
    the parser's own message text (which changes between PyYAML releases)."""
    assert _located(_parse(raw)) == [(*where, message)]


def test_a_tab_used_for_indentation_is_named() -> None:
    """A tab where YAML expects spaces says so."""
    ((line, col, message),) = _located(_parse(b"a:\n\tb: 1\n"))
    assert (line, col) == (2, 1)
    assert message.startswith("YAML syntax error: unexpected tab (YAML indents with spaces")


def test_block_nesting_past_libyamls_own_limit_is_ours_to_report() -> None:
    """1,100 block levels: libyaml >= 0.2.6 stops at 1,000 itself; the message and
    position are ours either way (the first level past 256)."""
    raw = "".join(" " * i + "k:\n" for i in range(1100)).encode()
    assert _located(_parse(raw)) == [
        (257, 257, "nesting is too deep for a desired-state file (more than 256 levels)")
    ]


def test_a_long_duplicate_key_is_clipped() -> None:
    """Messages echo at most 40 characters of what was written."""
    key = "k" * 39 + "SECRET"
    ((_, _, message),) = _located(_parse(f"{key}: 1\n{key}: 2\n".encode()))
    assert "SECRET" not in message
    assert message.startswith(f"duplicate key '{'k' * 39}S…'")


def test_an_alias_the_text_scan_misses_is_still_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """The event builder hands any alias to the composing loader, which measures the
    expanded graph first: a bomb is refused even when the cheap text scan says no alias."""
    from reconciler.desired.yamlsafe import parsing  # noqa: PLC0415 - the scan being bypassed

    monkeypatch.setattr(parsing, "_has_aliases", lambda source: False)
    raw = _laughs()
    with pytest.raises(yamlsafe.HostileInput, match="alias bomb"):
        yamlsafe.parse(raw, raw.decode())


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"a: ! 10\nb: ! '10'\nc: !!str x\n", id="tags"),
        pytest.param(b"1:\n  true: 2\n  ~: 3\nk: v\nk: w\n", id="odd-keys"),
        pytest.param(b"- 1\n- [a, {b: [c, 2024-01-01]}]\n- {account: x}\n", id="nested"),
        pytest.param(b"a: &x 1\nb: {c: 0x1F, d: .inf, e: ''}\n", id="anchor-without-alias"),
    ],
)
def test_built_from_events_as_the_composing_loader_builds(raw: bytes) -> None:
    """Plain documents (events) and the rest (composed) read the same values, problems
    and account lines: the event builder hands over what it does not build itself."""
    from reconciler.desired.yamlsafe import parsing  # noqa: PLC0415 - both paths compared

    text = raw.decode()
    try:
        built = parsing._from_events(text)
    except yamlsafe.events.Unusual:
        built = None  # handed over: parse composes it
    composed = parsing._composed(text)
    assert composed is not None
    parsed = yamlsafe.parse(raw, text)
    assert parsed is not None
    assert parsed.data == composed.data
    assert sorted(parsed.problems, key=str) == sorted(composed.problems, key=str)
    if built is not None:
        assert built.data == composed.data
        assert sorted(built.account_lines.as_dict().values()) == sorted(
            composed.account_lines.as_dict().values()
        )


def test_keys_and_role_names_are_one_copy_each() -> None:
    """100k users must not hold 100k copies of ``account`` or of a role name."""
    raw = b"users:\n  - {account: a, roles: [agent, billing]}\n  - {account: b, roles: [agent]}\n"
    parsed = yamlsafe.parse(raw, raw.decode())
    assert parsed is not None
    first, second = parsed.data["users"]
    assert next(iter(first)) is next(iter(second))  # the key "account"
    assert first["roles"][0] is second["roles"][0]


def test_marks_inside_user_entries_agree_with_one_pass_over_the_file() -> None:
    """A path inside users[i] found in the entry's own lines is where the walk over the
    whole file finds it, in every way of writing entries (block, flow, after a dash line);
    a few entries among many are read on their own."""
    text = (
        "version: 1\nusers:\n"
        "  - account: a\n    name: A\n    roles: [r0, {role: r1, until: x}]\n"
        "  # a comment between entries\n\n"
        "  -\n    account: b\n    email: b@x.io\n"
        "  - {account: c, name: 'C',\n     roles: [r2]}\n"
        "  - account: d\n    name: |\n      D\n      more\n    enabled: true\n"
        "  - account: e\n"
        + "".join(f"  - account: f{i}\n    name: F\n" for i in range(200))
        + "policy: {}\n"
    )
    parsed = yamlsafe.parse(text.encode(), text)
    assert parsed is not None
    users = parsed.data["users"]
    entries = parsed.account_lines.lines_of(users)
    wanted = [
        (("users", index, *rest), on_key)
        for index, entry in enumerate(users[:6])
        for rest in [(), *((key,) for key in entry), ("roles", 1, "until"), ("missing", 3)]
        for on_key in (False, True)
    ]
    assert yamlsafe.marks_at(text, wanted, entries) == yamlsafe.marks_at(text, wanted)


def test_account_lines_answer_in_any_order_as_a_dict_would() -> None:
    """The lines of mappings asked in the recorded order, in another order, with values
    never recorded among them: each answer is the recorded line (None when not recorded)."""
    entries = [{"account": f"a{i}"} for i in range(6)]
    lines = AccountLines((id(entry), 10 + i) for i, entry in enumerate(entries))
    other = {"account": "x"}
    assert len(lines) == 6
    assert lines.lines_of(entries) == [10, 11, 12, 13, 14, 15]
    assert lines.lines_of(entries[::-1]) == [15, 14, 13, 12, 11, 10]
    assert lines.lines_of([entries[0], other, entries[1], "text"]) == [10, None, 11, None]
    assert lines.lines_of(entries[2:]) == [12, 13, 14, 15]
    assert lines.lines_of([]) == []
    assert lines.as_dict() == {id(entry): 10 + i for i, entry in enumerate(entries)}
    ids = array("Q", map(id, entries))
    assert AccountLines.of(ids, array("Q", range(6))).lines_of(entries[:2]) == [0, 1]
    with pytest.raises(ValueError, match="same length"):
        AccountLines.of(ids, array("Q", [1]))


def test_each_user_entry_has_its_line_from_the_parse() -> None:
    """The parser records the first line of every mapping with an account, in document
    order (nested ones too), and the users' lines read back entry by entry."""
    text = (
        "version: 1\nusers:\n"
        "  - account: a\n    name: A\n"
        "  - name: no account\n"
        "  - account: b\n    manager: {account: m}\n"
    )
    parsed = yamlsafe.parse(text.encode(), text)
    assert parsed is not None
    users = parsed.data["users"]
    assert parsed.account_lines.lines_of(users) == [3, None, 6]
    assert len(parsed.account_lines) == 3
    assert parsed.account_lines.lines_of([users[2]["manager"]]) == [7]
