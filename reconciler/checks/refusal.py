"""What a generated check raises when a document breaks its schema.

The generated source raises ``JsonSchemaValueException(message, value=, name=, definition=,
rule=)`` as fastjsonschema's own does; these classes take the same arguments, so the
generated modules need nothing of fastjsonschema (nor decimal) at run time (importing it, and its
generator, was part of the start-up the generated checks remove).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

_SPLIT = r"[\.\[\]]+"  # compiled where used (re caches it): only a refusal needs it


class Decimal:
    """What the generated checks test numbers against in place of ``decimal.Decimal``
    (``isinstance(x, (int, float, Decimal))``): the documents they check come from the
    JSON and YAML parsers, which never make a Decimal, and importing decimal cost
    start-up. Should one ever come, it is not a number here: refused, never let through."""


class JsonSchemaValueException(ValueError):
    """The first part of a document that breaks the schema: where (``name``) and which
    keyword (``rule``)."""

    def __init__(
        self,
        message: str,
        value: Any = None,
        name: str | None = None,
        definition: Any = None,
        rule: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.value = value
        self.name = name
        self.definition = definition
        self.rule = rule

    @property
    def path(self) -> list[str]:
        """``name`` split into its parts (``data.users[3].email`` -> data, users, 3, email)."""
        return [part for part in re.split(_SPLIT, self.name or "") if part]


class JsonSchemaValuesException(ValueError):
    """Several refusals at once (only raised by checks generated without fast failure)."""

    def __init__(self, errors: list[JsonSchemaValueException]) -> None:
        super().__init__("; ".join(error.message for error in errors))
        self.errors = errors
