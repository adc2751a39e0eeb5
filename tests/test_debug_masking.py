"""``--debug`` tracebacks mask every known secret, everywhere in the exception chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.cli import masking
from reconciler.errors import BackendUnavailable, ReconcilerError

APP_SECRET = "app-secret-Zq81"
SECRET_KEY = "volc-secret-Mk29"
SESSION_TOKEN = "sts-token-Pp07"
DSN_PASSWORD = "p%40ss%zzW0rd"  # percent-encoded "@" and an invalid escape
DECODED = "p@ss%zzW0rd"
ENV = {
    "RECONCILER_FEDERATION_APP_SECRET": APP_SECRET,
    "VOLCENGINE_SECRET_KEY": SECRET_KEY,
    "VOLCENGINE_SESSION_TOKEN": SESSION_TOKEN,
    "RECONCILER_FEDERATION_APP_KEY": "app-key-is-not-secret",
}
DSN = f"postgresql://reconciler:{DSN_PASSWORD}@db.example:5432/identity"
EVERY_SECRET = (APP_SECRET, SECRET_KEY, SESSION_TOKEN, DSN_PASSWORD, DECODED, "tok-Bearer-99")


def _chain() -> ReconcilerError:
    """A ReconcilerError whose cause, contexts, args and notes each hold a secret."""
    # Each raise inside an except leaves the one handled as its implicit __context__.
    innermost = RuntimeError(f'{{"app_secret": "{APP_SECRET}"}}')
    middle = KeyError(f"lookup of {SECRET_KEY} failed", SESSION_TOKEN)
    try:
        try:
            try:
                raise innermost
            except RuntimeError:
                raise middle  # noqa: B904 - the implicit context is what is tested
        except KeyError:
            raise ValueError(f"cannot parse {DSN}", {"password": DECODED})  # noqa: B904 - same
    except ValueError as cause:
        error = BackendUnavailable(
            "cannot connect to the state", hint="Authorization: Bearer tok-Bearer-99"
        )
        error.add_note(f"while connecting as reconciler:{DSN_PASSWORD}")
        error.__cause__ = cause
        return error


def test_every_known_secret_is_collected() -> None:
    """Secret variables, names ending in _SECRET/_TOKEN, DSN passwords raw and decoded."""
    found = masking.known_secrets({**ENV, "GITHUB_TOKEN": "ghp-1"}, [DSN])
    assert set(found) == {APP_SECRET, SECRET_KEY, SESSION_TOKEN, DSN_PASSWORD, DECODED, "ghp-1"}
    assert "app-key-is-not-secret" not in found


def test_a_secret_in_each_place_of_the_chain_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """Cause, context, args, notes, message and hint: no secret survives in any line."""
    error = _chain()
    code = cli.report(error, debug=True, secrets=masking.known_secrets(ENV, [DSN]))
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" in err
    for kind in ("RuntimeError", "KeyError", "ValueError"):  # the whole chain is printed
        assert kind in err
    for secret in EVERY_SECRET:
        assert secret not in err, secret
    assert masking.MASK in err


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://u:unknown-pw@h/db", "postgresql://u:***@h/db"),
        ("host=h password=unknown-pw dbname=x", "host=h password=*** dbname=x"),
        ("Authorization: Bearer abc.DEF-123", "Authorization: Bearer ***"),
        ('{"AccessToken": "abc123", "Expires": "600"}', '{"AccessToken": "***", "Expires": "600"}'),
        ("x 1postgresql://u:unknown-pw@h", "x 1postgresql://u:***@h"),  # an odd scheme too
        ("a" * 5000 + " pg+x.y-z://u:unknown-pw@h", "a" * 5000 + " pg+x.y-z://u:***@h"),
    ],
)
def test_credential_shapes_are_masked_even_when_not_known(text: str, masked: str) -> None:
    """A password or token this process never saw is still masked by its shape."""
    assert masking.mask(text, ()) == masked


def test_a_dsn_password_never_reaches_a_debug_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`plan --state postgresql://postgres:PW%zz@… --debug`: psycopg's chained error is masked."""
    monkeypatch.delenv("RECONCILER_STATE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "users.yaml").write_text("version: 1\nusers: []\n", encoding="utf-8")
    dsn = "postgresql://postgres:PW%zz@127.0.0.1:5432/reconciler_nowhere"
    code = cli.main(["plan", "--no-refresh", "--state", dsn, "--debug"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" in err
    assert "PW%zz" not in err
    assert "PW" not in err.replace("PostgreSQL", "")


def test_an_unexpected_exception_prints_a_masked_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (not a ReconcilerError) still masks secrets, says it is a bug, and exits 1."""
    monkeypatch.setenv("RECONCILER_FEDERATION_APP_SECRET", APP_SECRET)

    def explode(*_: object, **__: object) -> int:
        raise RuntimeError(f"oops with {APP_SECRET}")

    monkeypatch.setattr(cli, "_dispatch", explode)
    assert cli.main(["validate"]) == 1
    err = capsys.readouterr().err
    assert APP_SECRET not in err
    assert "RuntimeError" in err
    assert "this is a bug in reconciler" in err


@pytest.mark.parametrize(
    "argv",
    [
        # a note (deprecated --path) and the error after it: --path is read as a path, so
        # its "://" became ":/", past the URL shape; the password is known from argv
        ["state", "pull", "--path", "postgresql://u:SECRETPW@127.0.0.1:1/db"],
        # a usage error whose hint repeats the command line: a password with a space
        ["plan", "--state", "postgresql://u:SECRET PW@127.0.0.1:1/db", "--no-refrsh"],
        ["plan", "--state=postgresql://u@h/db?pass%77ord=SECRETPW", "--no-refrsh"],
    ],
)
def test_a_password_on_the_command_line_is_never_printed(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
) -> None:
    """Notes, usage errors and their hints: a URL's password from argv is masked."""
    monkeypatch.delenv("RECONCILER_STATE", raising=False)
    monkeypatch.chdir(tmp_path)
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 1
    assert "SECRET" not in captured.err + captured.out
    assert masking.MASK in captured.err


def test_a_word_no_file_can_be_named_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`state rm` with a 300-character word (the system refuses to look it up): the usage
    error that says how accounts are named, not an OSError out of main."""
    monkeypatch.chdir(tmp_path)
    code = cli.main(["state", "rm", "a" * 300])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ")
    assert "Traceback" not in err
    assert "--account" in err
