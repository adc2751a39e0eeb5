"""Validation: every schema rule and cross-file rule, with its message and file:line:col."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from reconciler import schemas
from reconciler.desired import loading, merging, validation
from reconciler.desired.lines import AccountLines
from reconciler.errors import InputError, ValidationFailed
from tests.support.builders import problems_of, rendered

ROLE_NAMES = [f"r{i}" for i in range(11)]
ROLES_BLOCK = "".join(f'  {name}:\n    id: "{100 + i}"\n' for i, name in enumerate(ROLE_NAMES))


def one_user(
    *,
    account: str = "alice",
    name: str = "Alice",
    email: str = "alice@example.com",
    roles: str = "[r0]",
    extra: str = "",
) -> str:
    """A desired-state file of 11 roles (lines 2-24) and one user starting at line 26."""
    return (
        f"version: 1\nroles:\n{ROLES_BLOCK}users:\n"
        f"  - account: {account}\n"  # line 26, value at col 14
        f"    name: {name}\n"  # line 27, value at col 11
        f"    email: {email}\n"  # line 28, value at col 12
        f"    roles: {roles}\n"  # line 29, value at col 12
        f"{extra}"
    )


LONG_DOMAIN = ".".join(["d" * 60] * 5)  # 304 characters
USER_RULES = [
    pytest.param(
        {"account": "'bad acc!'"},
        [
            "26:14: account 'bad acc!' has characters the API refuses; allowed: "
            "A-Z a-z 0-9 @ . _ - (API 100-207)"
        ],
        id="account-chars",
    ),
    pytest.param(
        {"account": "a" * 51},
        [f"26:14: account '{'a' * 40}…' is longer than 50 characters (API 100-205)"],
        id="account-length",
    ),
    pytest.param(
        {"account": "''"},
        None,  # the exact set is checked below: empty is at least "must not be empty"
        id="account-empty",
    ),
    pytest.param(
        {"name": "'has \"quote'"},
        [
            "27:11: name 'has \"quote' contains a character the API refuses: one of "
            "\" [ ] ' & ( ) = ; < > , or a control character (API 100-210)"
        ],
        id="name-chars",
    ),
    pytest.param(
        {"name": "n" * 21},
        [f"27:11: name '{'n' * 21}' is longer than 20 characters (API 100-213)"],
        id="name-length",
    ),
    pytest.param(
        {"email": "not-an-email"},
        ["28:12: email 'not-an-email' is not a valid address (API 100-212)"],
        id="email-malformed",
    ),
    pytest.param(
        {"email": "l" * 65 + "@example.com"},
        [
            f"28:12: email '{'l' * 40}…': the part before @ is longer than "
            "64 characters (API 100-214)"
        ],
        id="email-local-65",
    ),
    pytest.param(
        {"email": f"x@{LONG_DOMAIN}"},
        [
            f"28:12: email 'x@{LONG_DOMAIN[:38]}…': the domain is longer than 255 characters "
            "(API 100-214)"
        ],
        id="email-domain-256+",
    ),
    pytest.param(
        {"email": "x@" + "d" * 64 + ".com"},
        [
            "28:12: email 'x@" + "d" * 38 + "…': the first domain label is longer than "
            "63 characters (API 100-214)"
        ],
        id="email-label-64",
    ),
    pytest.param(
        {"roles": "[" + ", ".join(ROLE_NAMES) + "]"},
        ["29:12: more than 10 roles for one user (API 100-215)"],
        id="eleven-roles",
    ),
    pytest.param(
        {"roles": "[r0, nope]"},
        [
            "29:17: role 'nope' is not defined under `roles` (defined: "
            + ", ".join(sorted(ROLE_NAMES)[:10])
            + ", and 1 more)"
        ],
        id="unknown-role",
    ),
    pytest.param(
        {"roles": "[r0, r1, r0]"},
        ["29:21: role 'r0' is listed twice"],
        id="role-twice",
    ),
    pytest.param(
        {"extra": "    shoe_size: 44\n"},
        ["30:5: unknown key 'shoe_size' (allowed: account, email, enabled, expires, name, roles)"],
        id="unknown-user-key",
    ),
    pytest.param(
        {"extra": "    enabled: 'no'\n"},
        [
            "30:14: 'no' is not a boolean here: only true and false are (YAML 1.1 reads it as "
            "false); write `enabled: false`"
        ],
        id="enabled-not-boolean",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), USER_RULES)
def test_user_rule(tmp_path: Path, overrides: dict[str, str], expected: list[str] | None) -> None:
    """Each per-user rule reports its message at the offending value."""
    file = tmp_path / "users.yaml"
    file.write_text(one_user(**overrides), encoding="utf-8")
    found = rendered(problems_of(file))
    if expected is None:
        assert "users.yaml:26:14: account must not be empty (API 100-204)" in found
        assert all(line.startswith("users.yaml:26:14:") for line in found)
    else:
        assert found == [f"users.yaml:{line}" for line in expected]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"account": "a" * 50}, id="account-50"),
        pytest.param({"account": "a.b_c-d@e"}, id="account-all-allowed-chars"),
        pytest.param({"name": "n" * 20}, id="name-20"),
        pytest.param({"name": "李 伟"}, id="name-unicode"),
        pytest.param({"email": "l" * 64 + "@example.com"}, id="email-local-64"),
        pytest.param({"email": "x@" + "d" * 63 + ".com"}, id="email-label-63"),
        pytest.param({"email": "x@" + ".".join(["d" * 63] * 4)}, id="email-domain-255"),
        pytest.param({"roles": "[" + ", ".join(ROLE_NAMES[:10]) + "]"}, id="ten-roles"),
        pytest.param({"roles": "[]"}, id="no-roles"),
    ],
)
def test_values_at_the_limits_are_valid(tmp_path: Path, overrides: dict[str, str]) -> None:
    """Values exactly at each API limit are accepted."""
    file = tmp_path / "users.yaml"
    file.write_text(one_user(**overrides), encoding="utf-8")
    assert problems_of(file) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("users: []\n", ["1:1: 'version' is required"], id="version-missing"),
        pytest.param("version: 2\n", ["1:10: version must be 1 (got 2)"], id="version-wrong"),
        pytest.param(
            "version: 1\nteams: []\n",
            ["2:1: unknown key 'teams' (allowed: policy, provisioning, roles, users, version)"],
            id="unknown-top-key",
        ),
        pytest.param(
            "version: 1\nroles:\n  agent:\n    id: 1672380646005741601\n",
            [
                '4:9: role id must be a quoted string of digits, e.g. "1672380646005741634" '
                "(got 1672380646005741601); unquoted numbers lose precision"
            ],
            id="role-id-not-string",
        ),
        pytest.param(
            'version: 1\nroles:\n  agent:\n    id: "12a"\n',
            ["4:9: role id '12a' must be 1 to 19 digits (the API rejects it: 100-202/100-208)"],
            id="role-id-non-digit",
        ),
        pytest.param(
            'version: 1\nroles:\n  agent:\n    id: "12345678901234567890"\n',
            [
                "4:9: role id '12345678901234567890' must be 1 to 19 digits "
                "(the API rejects it: 100-202/100-208)"
            ],
            id="role-id-20-digits",
        ),
        pytest.param(
            'version: 1\nroles:\n  "bad name":\n    id: "1"\n',
            [
                "3:3: role name 'bad name' must start with a letter or digit and use only "
                "A-Z a-z 0-9 . _ - (at most 64)"
            ],
            id="role-name-chars",
        ),
        pytest.param(
            "version: 1\nroles:\n  agent:\n    description: x\n",
            ["4:5: 'id' is required"],
            id="role-id-missing",
        ),
        pytest.param(
            "version: 1\nusers:\n  - name: N\n    email: n@example.com\n    roles: []\n",
            ["3:5: 'account' is required"],
            id="account-missing",
        ),
        pytest.param(
            "version: 1\npolicy:\n  max_disable: {}\n",
            ["3:16: max_disable needs `count` and/or `percent`"],
            id="max-disable-empty",
        ),
        pytest.param(
            "version: 1\nprovisioning:\n  max_attempts: 0\n",
            ["3:17: 0 is less than the minimum of 1"],
            id="max-attempts-zero",
        ),
        pytest.param(
            "- version: 1\n",
            [
                "1:1: the file holds a list, not a mapping: a desired-state file is a mapping "
                "that starts with `version: 1`"
            ],
            id="top-level-list",
        ),
    ],
)
def test_document_rule(tmp_path: Path, text: str, expected: list[str]) -> None:
    """Document-level schema rules report their message at the offending node."""
    file = tmp_path / "state.yaml"
    file.write_text(text, encoding="utf-8")
    assert rendered(problems_of(file)) == [f"state.yaml:{line}" for line in expected]


USER = "  - account: {account}\n    name: N\n    email: {email}\n    roles: [agent]\n"


def _users(*pairs: tuple[str, str]) -> str:
    """A users file (no roles) with (account, email) pairs; entry i starts at line 3 + 4i."""
    return "version: 1\nusers:\n" + "".join(
        USER.format(account=account, email=email) for account, email in pairs
    )


ROLES_FILE = 'version: 1\nroles:\n  agent:\n    id: "101"\n'
CROSS_FILE = [
    pytest.param(
        {
            "a.yaml": _users(("alice", "a@example.com")),
            "b.yaml": _users(("alice", "b@example.com")),
        },
        [
            "a.yaml:3:14: account 'alice' is also declared at {b} (users[0])",
            "b.yaml:3:14: account 'alice' is also declared at {a} (users[0])",
        ],
        id="duplicate-account",
    ),
    pytest.param(
        {
            "a.yaml": _users(("Alice", "a@example.com")),
            "b.yaml": _users(("alice", "b@example.com")),
        },
        [
            "a.yaml:3:14: account 'Alice' is also declared at {b} (users[0]) "
            "(accounts differ only in case)",
            "b.yaml:3:14: account 'alice' is also declared at {a} (users[0]) "
            "(accounts differ only in case)",
        ],
        id="duplicate-account-case-insensitive",
    ),
    pytest.param(
        {"a.yaml": _users(("alice", "same@example.com"), ("bob", "SAME@example.com"))},
        [
            "a.yaml:5:12: email 'same@example.com' is also used by {a} (users[1])",
            "a.yaml:9:12: email 'SAME@example.com' is also used by {a} (users[0])",
        ],
        id="duplicate-email-one-file",
    ),
    pytest.param(
        {"a.yaml": _users(("alice", "x@example.com")), "b.yaml": _users(("bob", "x@example.com"))},
        [
            "a.yaml:5:12: email 'x@example.com' is also used by {b} (users[0])",
            "b.yaml:5:12: email 'x@example.com' is also used by {a} (users[0])",
        ],
        id="duplicate-email-two-files",
    ),
    pytest.param(
        {
            "a.yaml": _users(("alice", "a@example.com"), ("bob", "b@example.com")).replace(
                "[agent]", "[ghost]"
            ),
            "b.yaml": _users(("carol", "A@example.com")),
        },
        [
            "a.yaml:5:12: email 'a@example.com' is also used by {b} (users[0])",
            "a.yaml:6:13: role 'ghost' is not defined under `roles` (defined: agent)",
            "a.yaml:10:13: role 'ghost' is not defined under `roles` (defined: agent)",
            "b.yaml:5:12: email 'A@example.com' is also used by {a} (users[0])",
        ],
        id="duplicate-found-after-other-problems-reported-once",
    ),
]


@pytest.mark.parametrize(("files", "expected"), CROSS_FILE)
def test_cross_file_duplicates_flag_both_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], expected: list[str]
) -> None:
    """Duplicate accounts and emails are flagged where each copy is, naming the other."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "roles.yaml").write_text(ROLES_FILE, encoding="utf-8")
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    found = [f"{p.file}:{p.line}:{p.col}: {p.message}" for p in problems_of(Path("."))]
    assert found == [line.format(a="a.yaml", b="b.yaml") for line in expected]


ROLE_CONFLICTS = [
    pytest.param(
        'version: 1\nroles:\n  agent:\n    id: "999"\n',
        "b.yaml:3:3: role 'agent' is defined differently in a.yaml; define each role once",
        id="role-defined-differently",
    ),
    pytest.param(
        'version: 1\nroles:\n  helper:\n    id: "101"\n',
        "b.yaml:4:9: role id '101' is also used by role 'agent' (a.yaml); one id, one role",
        id="two-roles-one-id",
    ),
    pytest.param(
        "version: 1\npolicy:\n  protected_accounts: []\n",
        "b.yaml:2:1: `policy` is already set in a.yaml; keep it in one file",
        id="policy-twice",
    ),
    pytest.param(
        "version: 1\nprovisioning:\n  retry_failed: false\n",
        "b.yaml:2:1: `provisioning` is already set in a.yaml; keep it in one file",
        id="provisioning-twice",
    ),
]


@pytest.mark.parametrize(("second", "expected"), ROLE_CONFLICTS)
def test_settings_and_roles_conflict_across_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second: str, expected: str
) -> None:
    """A role, policy or provisioning block that a second file contradicts is reported there."""
    monkeypatch.chdir(tmp_path)
    first = ROLES_FILE + "policy:\n  protected_accounts: [x]\nprovisioning:\n  max_attempts: 2\n"
    (tmp_path / "a.yaml").write_text(first, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(second, encoding="utf-8")
    found = [f"{p.file}:{p.line}:{p.col}: {p.message}" for p in problems_of(Path("."))]
    assert found == [expected]


def test_identical_role_in_two_files_is_allowed(tmp_path: Path) -> None:
    """The same role definition repeated in two files is not a conflict."""
    (tmp_path / "a.yaml").write_text(ROLES_FILE, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(ROLES_FILE, encoding="utf-8")
    desired = validation.load_desired(tmp_path)
    assert [(r.name, r.id) for r in desired.roles.values()] == [("agent", "101")]


def test_all_problems_across_files_are_reported_at_once(tmp_path: Path) -> None:
    """Problems of several files (syntax, schema, rules) come in one report, sorted."""
    (tmp_path / "a.yaml").write_text(ROLES_FILE + "bogus: 1\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("version: 1\nusers: [\n", encoding="utf-8")
    (tmp_path / "c.yml").write_text(_users(("bad!", "x@example.com")), encoding="utf-8")
    (tmp_path / "d.yaml").write_bytes(b"version: 1\n\xff\n")
    found = rendered(problems_of(tmp_path))
    assert [line.split(": ", 1)[0] for line in found] == [
        "a.yaml:5:1",
        "b.yaml:3:1",
        "c.yml:3:14",
        "d.yaml:2:1",
    ]
    assert "unknown key 'bogus'" in found[0]
    assert "YAML syntax error" in found[1]
    assert "characters the API refuses" in found[2]
    assert "not UTF-8" in found[3]


def test_directory_merges_yaml_and_yml_and_skips_hidden_and_other_files(tmp_path: Path) -> None:
    """*.yaml and *.yml are merged; hidden files and other suffixes are ignored."""
    (tmp_path / "roles.yaml").write_text(ROLES_FILE, encoding="utf-8")
    (tmp_path / "team.yml").write_text(_users(("alice", "a@example.com")), encoding="utf-8")
    (tmp_path / ".hidden.yaml").write_text("not: [valid\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not: [valid\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.yaml").write_text("not: [valid\n", encoding="utf-8")
    desired = validation.load_desired(tmp_path)
    assert list(desired.users) == ["alice"]
    assert desired.users["alice"].role_ids == ("101",)
    assert [Path(f).name for f in desired.files] == ["roles.yaml", "team.yml"]
    assert desired.users["alice"].source.line == 3


def test_directory_without_yaml_is_an_input_error(tmp_path: Path) -> None:
    """A directory with no *.yaml/*.yml files is refused with a hint."""
    (tmp_path / "readme.md").write_text("hello\n", encoding="utf-8")
    (tmp_path / ".only-hidden.yaml").write_text("version: 1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"no \*\.yaml or \*\.yml files") as raised:
        validation.load_desired(tmp_path)
    assert raised.value.hint


def test_valid_state_is_merged_into_frozen_values(tmp_path: Path) -> None:
    """A valid input yields users with resolved, sorted role ids, policy and digest."""
    (tmp_path / "all.yaml").write_text(
        ROLES_FILE
        + '  boss:\n    id: "050"\n    sensitive: true\n'
        + "policy:\n  max_disable: {count: 3, percent: 5}\n  protected_accounts: [alice]\n"
        + "users:\n  - account: alice\n    name: Alice\n    email: a@example.com\n"
        + "    roles: [agent, boss]\n    enabled: false\n",
        encoding="utf-8",
    )
    desired = validation.load_desired(tmp_path)
    alice = desired.users["alice"]
    assert (alice.roles, alice.role_ids, alice.enabled) == (
        ("agent", "boss"),
        ("050", "101"),
        False,
    )
    assert desired.roles["boss"].sensitive is True
    assert desired.policy.max_disable_count == 3
    assert desired.policy.max_disable_percent == 5.0
    assert desired.policy.protected_accounts == frozenset({"alice"})
    assert desired.digest.startswith("sha256:")
    assert len(desired.digest) == 71


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        pytest.param(
            '  agent:\n    id: 101\n  helper:\n    id: "102"\n',
            "4:9: role id must be a quoted string of digits",
            id="role-with-unquoted-id",
        ),
        pytest.param(
            '  agent:\n    id: "101"\n  helper:\n    id: "101"\n',
            "6:9: role id '101' is also used by role 'agent'",
            id="role-sharing-an-id",
        ),
    ],
)
def test_reference_to_a_refused_role_reports_only_the_role(
    tmp_path: Path, roles: str, expected: str
) -> None:
    """A user of a role refused for its own reason gets no extra "not defined" problem."""
    file = tmp_path / "all.yaml"
    file.write_text(
        f"version: 1\nroles:\n{roles}users:\n  - account: a\n    name: A\n"
        "    email: a@example.com\n    roles: [agent, helper]\n",
        encoding="utf-8",
    )
    found = rendered(problems_of(file))
    assert len(found) == 1
    assert found[0].startswith(f"all.yaml:{expected}")


def test_empty_account_and_name_get_one_message_each(tmp_path: Path) -> None:
    """An empty account or name is "must not be empty", not also "has refused characters"."""
    source = tmp_path / "e.yaml"
    source.write_text(
        'version: 1\nusers:\n  - account: ""\n    name: ""\n    email: a@b.co\n    roles: []\n'
    )
    with pytest.raises(ValidationFailed) as failed:
        validation.load_desired(source)
    assert [p.message for p in failed.value.problems] == [
        "account must not be empty (API 100-204)",
        "name must not be empty (API 100-209)",
    ]


# -- a value means exactly what it says (issue 11, section 2) -------------------------

FULL_MATCH = [
    pytest.param(
        {"account": '"alice\\n"'}, "26:14: account 'alice\\n' has characters", id="account-nl"
    ),
    pytest.param(
        {"account": "|\n      alice"},
        "26:14: account 'alice\\n' has characters",
        id="account-block",
    ),
    pytest.param(
        {"account": '"alice\\r"'}, "26:14: account 'alice\\r' has characters", id="account-cr"
    ),
    pytest.param(
        {"name": '"Alice\\n"'}, "27:11: name 'Alice\\n' contains a character", id="name-nl"
    ),
    pytest.param(
        {"name": '"A\\x7fB"'}, "27:11: name 'A\\x7fB' contains a character", id="name-del"
    ),
    pytest.param(
        {"name": '"A\\u2028B"'}, "27:11: name 'A\\u2028B' contains a character", id="name-ls"
    ),
    pytest.param(
        {"email": '"alice@example.com\\n"'},
        "28:12: email 'alice@example.com\\n' is not a valid address",
        id="email-nl",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), FULL_MATCH)
def test_patterns_match_the_whole_value(
    tmp_path: Path, overrides: dict[str, str], expected: str
) -> None:
    """A trailing newline (which Python's ``$`` lets through) is refused like any character."""
    file = tmp_path / "users.yaml"
    file.write_text(one_user(**overrides), encoding="utf-8")
    (found,) = rendered(problems_of(file))
    assert found.startswith(f"users.yaml:{expected}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            'version: 1\nroles:\n  agent:\n    id: "101\\n"\n',
            "4:9: role id '101\\n' must be 1 to 19 digits",
            id="role-id-nl",
        ),
        pytest.param(
            'version: 1\nroles:\n  "agent\\n":\n    id: "101"\n',
            "3:3: role name 'agent\\n' must start with a letter or digit",
            id="role-name-nl",
        ),
        pytest.param(
            'version: 1\npolicy:\n  protected_accounts: ["root\\n"]\n',
            "3:24: account 'root\\n' has characters the API refuses",
            id="protected-account-nl",
        ),
    ],
)
def test_patterns_match_the_whole_key_or_id(tmp_path: Path, text: str, expected: str) -> None:
    """Role ids, role names and protected accounts are full matches too."""
    file = tmp_path / "state.yaml"
    file.write_text(text, encoding="utf-8")
    (found,) = rendered(problems_of(file))
    assert found.startswith(f"state.yaml:{expected}")


def _document(account: str = "alice", **user: object) -> dict[str, object]:
    return {
        "version": 1,
        "roles": {"agent": {"id": "101"}},
        "users": [
            {"account": account, "name": "Alice", "email": "a@example.com", "roles": [], **user}
        ],
        "policy": {"protected_accounts": [account]},
    }


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(_document(), id="valid"),
        *[
            pytest.param(_document(account=value), id=f"account-{index}")
            for index, value in enumerate(["alice\n", "alice\r\n", "\nalice", "al ice", "é", ""])
        ],
        *[
            pytest.param(_document(name=value), id=f"name-{index}")
            for index, value in enumerate(["Alice\n", "A\x00", "A\x7f", "A\x85", "A\u2029"])
        ],
        pytest.param(_document(email="a@example.com\n"), id="email-nl"),
        pytest.param(_document(enabled="no"), id="enabled-text"),
    ],
)
def test_both_schema_validators_agree(document: dict[str, object]) -> None:
    """fastjsonschema's yes/no and jsonschema's report never disagree (they did on ``$``)."""
    found = schemas.errors(validation.SCHEMA, document)
    assert schemas.is_valid(validation.SCHEMA, document) == (found == ())
    assert not any("breaks the schema rule" in error.message for error in found)


@pytest.mark.parametrize(
    ("spelled", "fix"),
    [
        ("no", "false"),
        ("No", "false"),
        ("NO", "false"),
        ("off", "false"),
        ("Off", "false"),
        ("OFF", "false"),
        ("yes", "true"),
        ("On", "true"),
        ("'no'", "false"),
        ('"true"', "true"),
    ],
)
@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param(one_user(extra="    enabled: {spelled}\n"), "enabled", id="enabled"),
        pytest.param(
            'version: 1\nroles:\n  admin:\n    id: "1"\n    sensitive: {spelled}\n',
            "sensitive",
            id="sensitive",
        ),
        pytest.param(
            "version: 1\nprovisioning:\n  retry_failed: {spelled}\n", "retry_failed", id="retry"
        ),
    ],
)
def test_booleans_are_true_or_false_only(
    tmp_path: Path, spelled: str, fix: str, text: str, key: str
) -> None:
    """``enabled: no`` must not be a disable a reviewer cannot see: the fix is named."""
    file = tmp_path / "flags.yaml"
    file.write_text(text.replace("{spelled}", spelled), encoding="utf-8")
    (problem,) = problems_of(file)
    assert problem.message.endswith(
        f"is not a boolean here: only true and false are (YAML 1.1 reads it as {fix}); "
        f"write `{key}: {fix}`"
    )


@pytest.mark.parametrize("spelled", ["010", "1_000", "1:30", "0b11"])
def test_numbers_are_plain_digits_only(tmp_path: Path, spelled: str) -> None:
    """Octal, underscores, sexagesimal and binary numbers of YAML 1.1 are refused."""
    file = tmp_path / "policy.yaml"
    file.write_text(f"version: 1\npolicy:\n  max_disable: {{count: {spelled}}}\n")
    (problem,) = problems_of(file)
    assert (problem.line, problem.col) == (3, 24)
    assert problem.message.startswith(f"{spelled!r} is not a plain number (YAML 1.1 reads it as")


@pytest.mark.parametrize(
    ("percent", "expected"),
    [
        (".nan", "percent must be a number from 0 to 100, not .nan"),
        (".NaN", "percent must be a number from 0 to 100, not .nan"),
        (".inf", "inf is more than the maximum of 100"),
        ("-.inf", "-inf is less than the minimum of 0"),
        ("-1", "-1 is less than the minimum of 0"),
        ("101", "101 is more than the maximum of 100"),
    ],
)
def test_max_disable_percent_is_a_real_percentage(
    tmp_path: Path, percent: str, expected: str
) -> None:
    """NaN passes every JSON Schema comparison: it is refused before plan divides by it."""
    file = tmp_path / "policy.yaml"
    file.write_text(f"version: 1\npolicy:\n  max_disable: {{percent: {percent}}}\n")
    assert rendered(problems_of(file)) == [f"policy.yaml:3:26: {expected}"]


def test_whole_numbers_written_with_a_point_keep_their_value(tmp_path: Path) -> None:
    """``count: 5.0`` is the count 5, not a silently dropped guard rail."""
    file = tmp_path / "policy.yaml"
    file.write_text(
        "version: 1\npolicy:\n  max_disable: {count: 5.0}\nprovisioning:\n  max_attempts: 2.0\n"
    )
    desired = validation.load_desired(file)
    assert (desired.policy.max_disable_count, desired.provisioning.max_attempts) == (5, 2)
    assert type(desired.policy.max_disable_count) is int


def test_a_file_that_is_not_a_mapping_is_named_without_its_content(tmp_path: Path) -> None:
    """An env file (a plain scalar to YAML) is refused without echoing a byte of it."""
    file = tmp_path / "env.yaml"
    file.write_text("AWS_SECRET_ACCESS_KEY=abc123SECRET DB_PASSWORD=hunter2\n")
    (problem,) = problems_of(file)
    assert problem.message == (
        "the file holds text, not a mapping: a desired-state file is a mapping that starts "
        "with `version: 1`"
    )


def test_every_echoed_value_is_clipped(tmp_path: Path) -> None:
    """Schema and rule messages show at most 40 characters of a value."""
    secret = "x" * 40 + "TAIL-SECRET"
    (tmp_path / "a.yaml").write_text(
        f'version: 1\nroles:\n  r:\n    id: "{secret}"\n'
        f"users:\n  - account: {secret}\n    name: {secret}\n    email: {secret}@example.com\n"
        f"    roles: [{secret}]\n",
        encoding="utf-8",
    )
    found = problems_of(tmp_path)
    assert {p.rule for p in found} == {"schema", "rule"}
    assert len(found) == 4
    assert not [p.message for p in found if "TAIL-SECRET" in p.message]


def test_problems_in_a_long_users_list_are_each_at_their_entry(tmp_path: Path) -> None:
    """Past the first chunk of users, each entry that breaks the schema is found at its
    own line, however many valid entries lie between (only failing ones are walked)."""
    bad = {3: ("name", "'n(1)'"), 64: ("colour", "blue"), 65: ("email", "nobody")}
    bad[299] = ("roles", "r0")
    lines = ["version: 1", "roles:", '  r0: {id: "100"}', "users:"]
    where = {}
    for index in range(300):
        where[index] = len(lines) + 1
        fields = {"name": f"U {index}", "email": f"u{index}@x.io", "roles": "[r0]"}
        fields.update([bad[index]] if index in bad else [])
        lines += [f"  - account: u{index}", *(f"    {k}: {v}" for k, v in fields.items())]
    file = tmp_path / "long.yaml"
    file.write_text("\n".join(lines) + "\n")
    found = [(p.line, p.path) for p in problems_of(file)]
    assert found == [
        (where[3] + 1, ("users", 3, "name")),
        (where[64] + 4, ("users", 64, "colour")),
        (where[65] + 2, ("users", 65, "email")),
        (where[299] + 3, ("users", 299, "roles")),
    ]


def test_problems_are_located_without_a_pass_over_the_file_for_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Problems in a few entries of a long file cost those entries' lines, not a pass over
    the file each (nor even one): what is walked to locate them is a fraction of the text."""
    from reconciler.desired.yamlsafe import events  # noqa: PLC0415 - the passes being counted

    walked: list[int] = []
    real = events._walk

    def counted(source: str, targets: object) -> object:
        walked.append(len(source))
        return real(source, targets)  # type: ignore[arg-type]

    monkeypatch.setattr(events, "_walk", counted)
    users = "".join(
        f"  - account: {'bad ' if i % 100 == 7 else ''}u{i}\n    name: N\n"
        f"    email: u{i}@x.io\n    roles: []\n"
        for i in range(2000)
    )
    text = f"version: 1\nusers:\n{users}"
    (tmp_path / "a.yaml").write_text(text)
    found = problems_of(tmp_path)
    assert [(p.line, p.col) for p in found] == [(3 + 4 * i, 14) for i in range(7, 2000, 100)]
    assert sum(walked) < len(text) / 10


def test_a_problem_in_an_entry_after_a_dash_line_is_located(tmp_path: Path) -> None:
    """Entries written as a ``-`` line, then the mapping; flow entries across lines: each
    problem at its place (an entry that is not one item on its own: the whole file)."""
    file = tmp_path / "a.yaml"
    file.write_text(
        "version: 1\nusers:\n"
        "  -\n    account: a\n    name: A\n    email: a@x.io\n    roles: []\n    x: 1\n"
        "  -\n    account: b\n    name: B\n    email: b@x.io\n    roles: []\n"
        "users_flow: 1\n"
    )
    assert [(p.line, p.col, p.path) for p in problems_of(file)] == [
        (8, 5, ("users", 0, "x")),
        (14, 1, ("users_flow",)),
    ]
    flow = tmp_path / "b.yaml"
    flow.write_text(
        "version: 1\nusers: [\n  {account: a, name: A, email: a@x.io, roles: [], x: 1},\n"
        "  {account: b, name: B, email: b@x.io, roles: []},\n]\n"
    )
    assert [(p.line, p.col) for p in problems_of(flow)] == [(3, 51)]


def test_users_with_the_same_roles_share_one_tuple_of_names(tmp_path: Path) -> None:
    """A million users hold a few role-name tuples, not a million."""
    users = "".join(
        f"  - {{account: u{i}, name: U, email: u{i}@x.io, roles: [r0, r1]}}\n" for i in range(3)
    )
    (tmp_path / "a.yaml").write_text(f"version: 1\nroles:\n{ROLES_BLOCK}users:\n{users}")
    desired = validation.load_desired(tmp_path)
    assert desired.users["u0"].roles is desired.users["u2"].roles


@pytest.mark.parametrize(
    ("accounts", "kept"),
    [
        (["alice", "Alice", "alice", "bob"], {"alice": 0, "bob": 3}),
        (["Alice", "alice", "Alice"], {"Alice": 0}),
        (["alice", "bob", "carol"], {"alice": 0, "bob": 1, "carol": 2}),
    ],
)
def test_merged_users_keep_each_accounts_first_entry(
    accounts: list[str], kept: dict[str, int]
) -> None:
    """Repeated accounts (also in another case) keep the first entry, in entry order, and
    each repeat is flagged at both places; distinct ones are not flagged."""
    users = [
        {"account": a, "name": f"N{i}", "email": f"e{i}@example.com", "roles": []}
        for i, a in enumerate(accounts)
    ]
    merged, problems = _merged(users)
    assert {a: int(u.name[1:]) for a, u in merged.users.items()} == kept
    assert list(merged.users) == list(kept)
    flagged = len(accounts) - len(kept)
    assert len([p for p in problems if p.path[-1] == "account"]) == 2 * flagged


def _merged(users: list[dict[str, object]]) -> tuple[Any, list[merging.Pending]]:
    """The merge of one file holding ``users`` (no text: nothing to locate)."""
    source = loading.SourceFile(
        display="u.yaml",
        relative="u.yaml",
        text="",
        data={"users": users},
        account_lines=AccountLines(),
        problems=(),
    )
    return merging.merge((source,))


@pytest.mark.parametrize(
    "texts",
    [
        ["alice", "bob", "carol"],
        ["alice", "Alice"],
        ["ALICE", "Alice"],
        ["Alice", "bob"],
        ["12", "alice"],  # no letter: not lower, its own lower case all the same
        ["ålice", "Ålice"],
        ["Ålice", "ÅLICE", "bob"],
        ["ǅemal", "ǆemal"],  # a title-case letter
        ["İstanbul", "i̇stanbul"],  # U+0130 folds to two characters
        ["straße", "STRASSE"],  # apart in lower case (casefold would join them)
        ["a@example.com", "A@example.com", "b@example.com"],
    ],
)
def test_texts_apart_in_lower_case_are_told_without_folding_each(texts: list[str]) -> None:
    """The merge's shortcut never calls texts apart that are not (lower case, as the
    one-by-one check folds them); for these it also says so of those that are."""
    apart = len({text.lower() for text in texts}) == len(texts)
    assert merging._apart_folded(texts, set(texts)) is apart


def test_accounts_apart_only_in_a_non_ascii_capital_are_flagged() -> None:
    """Ålice and ålice are one account, also when no ASCII capital tells them apart."""
    users = [
        {"account": account, "name": "N", "email": f"e{i}@example.com", "roles": []}
        for i, account in enumerate(["Ålice", "ålice"])
    ]
    merged, problems = _merged(users)
    assert list(merged.users) == ["Ålice"]
    assert len([p for p in problems if p.path[-1] == "account"]) == 2


@pytest.mark.parametrize("repeated", [False, True], ids=["all-distinct", "an-account-repeated"])
def test_long_emails_are_checked_whether_or_not_an_entry_repeats(
    tmp_path: Path, repeated: bool
) -> None:
    """An email's parts too long are flagged once each, at its entry: when every entry is
    its own (a pass over the long ones only) as when one repeats (the pass over all)."""
    local, label = "l" * 65 + "@x.io", "x@" + "d" * 64 + ".com"
    users = [("a", local), ("b", label), ("c", "c@x.io"), ("d", "l" * 60 + "@short.io")]
    if repeated:
        users.append(("c", "c2@x.io"))
    lines = ["version: 1", "users:"]
    for account, email in users:
        lines += [f"  - account: {account}", "    name: N", f"    email: {email}", "    roles: []"]
    (tmp_path / "team.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    found = [(p.line, p.message) for p in problems_of(tmp_path) if "longer than" in p.message]
    assert [(line, message.split(": ", 1)[1]) for line, message in found] == [
        (5, "the part before @ is longer than 64 characters (API 100-214)"),
        (9, "the first domain label is longer than 63 characters (API 100-214)"),
    ]
    accounts = [p for p in problems_of(tmp_path) if "also declared" in p.message]
    assert len(accounts) == (2 if repeated else 0)


def test_users_and_sources_are_values() -> None:
    """User and Source, one of each per desired user, are frozen values: every field in its
    place, equal, hashed and frozen."""
    from reconciler import values  # noqa: PLC0415 - only this test looks at the fields
    from reconciler.desired.model import Source, TimedGrant, User  # noqa: PLC0415

    source = Source(file="f.yaml", line=7)
    assert (source.file, source.line, source.commit) == ("f.yaml", 7, None)
    fields = {
        "account": "a",
        "name": "N",
        "email": "a@x.io",
        "roles": ("r", "s"),
        "role_ids": ("1", "2"),
        "enabled": False,
        "source": source,
        "expires": dt.date(2027, 3, 4),
        "timed": (TimedGrant(role="r", until=dt.date(2027, 1, 2)),),
    }
    made = User(**fields)  # type: ignore[arg-type]
    assert list(values.fields(User)) == list(fields)
    assert {name: getattr(made, name) for name in fields} == fields
    again = values.replace(made)
    assert made == again
    assert hash(made) == hash(again)
    assert repr(made) == repr(again)
    with pytest.raises(values.FrozenInstanceError):
        made.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("account", ["[1]", "{a: 1}"], ids=["a-list", "a-mapping"])
def test_an_account_that_is_no_text_beside_a_dated_grant_is_a_problem(
    tmp_path: Path, account: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One entry's account written as a list or a mapping, another's grant dated: the
    schema's problem at that account, never a crash of the end-date rules."""
    (tmp_path / "team.yaml").write_text(
        'version: 1\nroles:\n  agent: {id: "1"}\nusers:\n'
        "- {account: m, name: M, email: m@x.io, roles: [{role: agent, until: 2027-07-01}]}\n"
        f"- {{account: {account}, name: T, email: t@x.io, roles: [agent]}}\n",
        encoding="utf-8",
    )
    from reconciler.cli import main as cli  # noqa: PLC0415 - the end-date rules run with a date

    argv = ["validate", str(tmp_path), "--no-cache", "--format", "json", "--at", "2026-12-01"]
    assert cli.main(argv) == 1  # a date before the grant ends: its problem alone
    report = json.loads(capsys.readouterr().out)
    assert [(p["line"], p["path"]) for p in report["problems"]] == [(6, ["users", 1, "account"])]
