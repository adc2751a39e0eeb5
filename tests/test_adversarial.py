"""Red-team findings on inputs and outputs, each pinned by the repro that found it.

Driven through ``reconciler.cli.main`` like a user would: what a reviewer sees must be
what is applied, and hostile names must never forge output lines, cells or formulas.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli import main as cli


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


MERGED_DISABLE = """\
version: 1
roles:
  agent: {id: "101"}
users:
  - &alice
    account: alice
    name: Alice
    email: alice@example.com
    roles: [agent]
  - <<: *alice
    account: bob
    email: bob@example.com
    enabled: true
"""


def test_a_merge_key_is_a_located_error_and_nothing_is_planned(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """M3: `<<: *alice` would give bob alice's roles and name unseen in review: refused."""
    clean_env.chdir(tmp_path)
    (tmp_path / "users.yaml").write_text(MERGED_DISABLE, encoding="utf-8")
    code, out, _ = _run(capsys, "validate")
    assert code == 1
    assert "users.yaml:10:5: merge keys are not supported; write the keys out" in out
    code, _, _ = _run(capsys, "plan", "--no-refresh")
    assert code == 1
    assert not (tmp_path / ".reconciler").exists()
