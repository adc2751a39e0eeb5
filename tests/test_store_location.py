"""The state-location rule as a table: what selects which backend, what is refused, and
that no password survives into a message."""

from __future__ import annotations

import pytest

from reconciler.errors import ConfigError
from reconciler.stores.location import Backend, Location, classify, mask

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("text", "backend"),
    [
        ("postgresql://u@h:5432/db?workspace=prod", Backend.POSTGRES),
        ("postgres://h/db", Backend.POSTGRES),
        ("postgresql:///db", Backend.POSTGRES),  # libpq's local socket
        ("state.json", Backend.FILE),
        (".reconciler/state.json", Backend.FILE),
        ("/var/lib/reconciler/prod.json", Backend.FILE),
        ("./postgressql:/x", Backend.FILE),  # ./ makes anything a plain path
        ("./host=db.json", Backend.FILE),
        ("dir/a:b.json", Backend.FILE),
    ],
)
def test_a_url_of_postgresql_or_a_plain_path(text: str, backend: Backend) -> None:
    """Exactly two kinds of location."""
    assert classify(text, source="--state") is backend


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"postgressql://u:{SECRET}@h/db", "'postgressql' is not a supported URL scheme"),
        (f"postgresql:/u:{SECRET}@h/db", "'postgresql' is not a supported URL scheme"),
        (f"Postgresql://u:{SECRET}@h/db", "'Postgresql' is not a supported URL scheme"),
        (f"mysql://u:{SECRET}@h/db", "'mysql' is not a supported URL scheme"),
        ("file:///tmp/state.json", "'file' is not a supported URL scheme"),
        ("s3://bucket/state.json", "'s3' is not a supported URL scheme"),
        ("state:prod.json", "'state' is not a supported URL scheme"),
        (f"host=h password={SECRET} dbname=x", "key=value connection string"),
        (f"dbname=x password = {SECRET}", "key=value connection string"),
        (f"password='{SECRET} with space' host=h", "key=value connection string"),
        ("", "is set but empty"),
        ("state.json ", "has spaces around it"),
        (f" postgresql://u:{SECRET}@h/db", "has spaces around it"),
    ],
)
def test_anything_else_is_refused_with_the_password_masked(text: str, message: str) -> None:
    """A typo never becomes a file (or a file named after the password)."""
    with pytest.raises(ConfigError) as caught:
        classify(text, source="RECONCILER_STATE")
    rendered = f"{caught.value.message} {caught.value.hint}"
    assert caught.value.message.startswith("RECONCILER_STATE ")
    assert message in caught.value.message
    assert SECRET not in rendered
    assert caught.value.hint


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgressql://u:pw@h/db", "postgressql://u:***@h/db"),
        ("x://h/db?password=pw&sslpassword=pw2", "x://h/db?password=***&sslpassword=***"),
        ("host=h password=pw dbname=d", "host=h password=*** dbname=d"),
        ("password='p w' host=h", "password=*** host=h"),
        ("token=abc user=u", "token=*** user=u"),
        ("plain/path.json", "plain/path.json"),
    ],
)
def test_mask(text: str, shown: str) -> None:
    """Passwords in URLs, query strings and key=value forms become ***."""
    assert mask(text) == shown


def test_a_location_names_itself() -> None:
    """describe() is pasteable; named() and absent() are for sentences."""
    pg = Location(backend=Backend.POSTGRES, where="postgresql://u:***@h/db", workspace="prod")
    assert pg.describe() == "postgresql://u:***@h/db?workspace=prod"
    assert pg.absent() == "no state at postgresql://u:***@h/db (workspace prod)"
    query = Location(
        backend=Backend.POSTGRES, where="postgresql://h/db?sslmode=require", workspace="w"
    )
    assert query.describe() == "postgresql://h/db?sslmode=require&workspace=w"
    local = Location(backend=Backend.FILE, where=".reconciler/state.json")
    assert (local.describe(), local.absent()) == (
        ".reconciler/state.json",
        "no state at .reconciler/state.json",
    )
