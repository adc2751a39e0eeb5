"""Where each user entry starts: the line of every mapping with an ``account`` key.

The parser records them by the mapping's ``id`` as it builds the data, in document order.
A dict of ints held ~110 bytes a mapping (the dict's slot, an int for the id and one for
the line): at a million users, about as much memory as their names. Here they are two
arrays, 16 bytes a mapping, read back in the order they were recorded: the rules walk the
users in that order, so each lookup is one comparison. Asked in any other order, the
answer is the same, from a dict made for that one call.
"""

from __future__ import annotations

from array import array
from collections.abc import Collection, Iterable

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any


class AccountLines:
    """id(mapping) -> line, in the order the mappings were recorded."""

    __slots__ = ("_ids", "_lines")

    def __init__(self, pairs: Iterable[tuple[int, int]] = ()) -> None:
        self._ids = array("Q")
        self._lines = array("Q")
        for mapping_id, line in pairs:
            self.add(mapping_id, line)

    @classmethod
    def of(cls, ids: array[int], lines: array[int]) -> AccountLines:
        """The lines recorded as two arrays (``Q``) of the same length: kept, not copied."""
        if ids.typecode != "Q" or lines.typecode != "Q" or len(ids) != len(lines):
            raise ValueError("two arrays of unsigned 64-bit ints, of the same length")
        made = cls()
        made._ids, made._lines = ids, lines
        return made

    def add(self, mapping_id: int, line: int) -> None:
        """Record the line of the mapping whose ``id`` is ``mapping_id``."""
        self._ids.append(mapping_id)
        self._lines.append(line)

    def __len__(self) -> int:
        return len(self._ids)

    def as_dict(self) -> dict[int, int]:
        """id(mapping) -> line, every one recorded."""
        return dict(zip(self._ids, self._lines, strict=True))

    def lines_of(self, values: Collection[Any]) -> list[int | None]:
        """The line of each of ``values`` (by identity; None: not a mapping recorded)."""
        ids, lines = self._ids, self._lines
        if array("Q", map(id, values)) == ids:
            return list(lines)  # each one recorded, in order (the usual case): all in C
        count, at = len(ids), 0
        found: list[int | None] = []
        by_id: dict[int, int] | None = None
        for value in values:
            key = id(value)
            if by_id is None:
                if at < count and ids[at] == key:
                    found.append(lines[at])
                    at += 1
                    continue
                by_id = self.as_dict()  # not in the recorded order: look each one up
            found.append(by_id.get(key))
        return found
