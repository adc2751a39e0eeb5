"""A PostgreSQL state DSN is read exactly as libpq reads it, or refused; never shown with a secret.

libpq's own parser (``psycopg.conninfo.conninfo_to_dict`` calls ``PQconninfoParse``) is the
oracle: what reconciler hands to libpq must mean the host, database and password the user
wrote, and what it prints must hold no password.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.cli import masking
from reconciler.errors import ConfigError
from reconciler.stores import pg_dsn
from reconciler.stores.location import Backend, classify

conninfo = pytest.importorskip("psycopg.conninfo")


def _libpq(dsn: str) -> dict[str, str]:
    """What libpq makes of ``dsn``."""
    parsed: dict[str, str] = conninfo.conninfo_to_dict(dsn)
    return parsed


def test_sslpassword_is_masked_in_the_location_and_kept_for_libpq() -> None:
    """C2: ``sslpassword`` is a secret like ``password``; ``passfile`` (a path) is shown."""
    dsn = "postgresql://u@h/db?sslpassword=SSL-Secret-9&passfile=/etc/pgpass&workspace=w"
    parsed = pg_dsn.split(dsn)
    assert "SSL-Secret-9" not in parsed.redacted
    assert "sslpassword=***" in parsed.redacted
    assert "passfile=" in parsed.redacted
    assert "SSL-Secret-9" in parsed.secrets
    assert _libpq(parsed.connect)["sslpassword"] == "SSL-Secret-9"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("host=h sslpassword=unknown-pw dbname=x", "host=h sslpassword=*** dbname=x"),
        ("postgresql://h/db?sslpassword=unknown-pw&x=1", "postgresql://h/db?sslpassword=***&x=1"),
    ],
)
def test_sslpassword_shapes_are_masked_in_printed_lines(text: str, masked: str) -> None:
    """C2: the CLI's last line of defence masks ``sslpassword=`` by its shape too."""
    assert masking.mask(text, ()) == masked


def test_an_sslpassword_in_state_is_a_known_secret() -> None:
    """C2: a --state DSN's sslpassword is masked wherever it appears, even unshaped."""
    found = masking.known_secrets({}, ["postgresql://u@h/db?sslpassword=S%2Fecret"])
    assert {"S%2Fecret", "S/ecret"} <= set(found)


def test_an_sslpassword_never_reaches_the_cli_output(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """C2: a failing connection with ``--debug`` prints the location without its sslpassword."""
    monkeypatch.delenv("RECONCILER_STATE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "users.yaml").write_text("version: 1\nusers: []\n", encoding="utf-8")
    dsn = "postgresql://postgres@127.0.0.1:1/nowhere?sslpassword=Ssl-Pw-31&sslmode=disable"
    code = cli.main(["plan", "--no-refresh", "--state", dsn, "--debug"])
    captured = capsys.readouterr()
    assert code == 1
    assert "Ssl-Pw-31" not in captured.err + captured.out


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:p#w@host/db",  # '#': Python takes a fragment, libpq does not
        "postgresql://u:p/w@host/db",  # '/': the host would be "u", the password printed
        "postgresql://u:p?w@host/db",  # '?': the rest would become a parameter name
        "postgresql://u:p@w@host/db",  # libpq splits at the first '@', Python at the last
        "postgresql://u:p@w@host",
        "postgres://u:a/b?c#d@host:5432/db?workspace=x",
    ],
)
def test_a_password_with_raw_special_characters_is_refused_unshown(dsn: str) -> None:
    """C3: never mis-split into host/database, and the error does not echo the password."""
    with pytest.raises(ConfigError) as raised:
        pg_dsn.split(dsn)
    shown = raised.value.message + (raised.value.hint or "")
    assert "u:p" not in shown
    assert "host/db" not in shown
    assert "%40" in shown  # the hint says how to write it


@pytest.mark.parametrize(
    ("password", "encoded"),
    [
        ("p#w", "p%23w"),
        ("p/w", "p%2Fw"),
        ("p?w", "p%3Fw"),
        ("p@w", "p%40w"),
        ("a#b/c?d@e:f", "a%23b%2Fc%3Fd%40e%3Af"),
    ],
)
def test_a_percent_encoded_password_parses_exactly(password: str, encoded: str) -> None:
    """C3: the encoded forms reach libpq as the password, with the right host and database."""
    parsed = pg_dsn.split(f"postgresql://u:{encoded}@db.example:5432/identity?workspace=w")
    libpq = _libpq(parsed.connect)
    assert (libpq["user"], libpq["password"]) == ("u", password)
    assert (libpq["host"], libpq["port"], libpq["dbname"]) == ("db.example", "5432", "identity")
    assert encoded not in parsed.redacted
    assert password not in parsed.redacted
    assert password in parsed.secrets
    assert parsed.workspace == "w"


@pytest.mark.parametrize(
    ("dsn", "host", "dbname"),
    [
        ("postgresql:///db?host=/var/run/postgresql", "/var/run/postgresql", "db"),
        ("postgresql://%2Fvar%2Frun%2Fpostgresql/db", "/var/run/postgresql", "db"),
        ("postgresql:///db?host=%2Ftmp&workspace=w", "/tmp", "db"),
    ],
)
def test_a_unix_socket_dsn_reaches_libpq_exactly(dsn: str, host: str, dbname: str) -> None:
    """M4: an empty host part keeps its ``//`` (``postgresql:/db`` is refused by libpq)."""
    parsed = pg_dsn.split(dsn)
    libpq = _libpq(parsed.connect)
    assert (libpq["host"], libpq["dbname"]) == (host, dbname)
    assert parsed.redacted.startswith(dsn.partition("?")[0])
    # What the plan header shows can be pasted back as --state.
    assert classify(parsed.redacted, source="--state") is Backend.POSTGRES
    assert _libpq(pg_dsn.split(parsed.redacted).connect)["host"] == host


@pytest.mark.parametrize("dsn", ["postgresql:///db?host=", "postgresql:///db?host=&workspace=w"])
def test_an_empty_host_parameter_is_refused(dsn: str) -> None:
    """M4: ``host=`` (an unset variable, say) is not silently libpq's default socket."""
    with pytest.raises(ConfigError, match="host="):
        pg_dsn.split(dsn)


@pytest.mark.parametrize(
    "args",
    [
        ["--state", "postgresql://postgres@127.0.0.1:1/db", "--workspace", ""],
        ["--state", "postgresql://postgres@127.0.0.1:1/db?workspace="],
    ],
    ids=["flag", "dsn"],
)
def test_an_empty_workspace_is_an_error_not_the_default(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """M1: `--workspace ""` (an unset CI variable) never plans against the default workspace."""
    monkeypatch.delenv("RECONCILER_STATE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "users.yaml").write_text("version: 1\nusers: []\n", encoding="utf-8")
    code = cli.main(["plan", "--no-refresh", *args])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: " in err
    assert "empty" in err


@pytest.mark.parametrize(
    "query",
    ["password=a&sslpassword=b%2Fc&passfile=/x", "PASSWORD=x&user=y", "sslpassword=&x=1", ""],
)
def test_masking_and_the_dsn_reader_agree_on_what_is_secret(query: str) -> None:
    """The CLI's masking keeps its own copy of the rule (start-up loads no store)."""
    raw = set(pg_dsn.query_secrets(query))
    decoded = {form for value in raw for form in (value, urllib.parse.unquote(value))}
    assert set(masking.known_secrets({}, [f"postgresql://h/db?{query}"])) == decoded
