"""JSON text that people read and that stays fast to write: keys one per line, each item of a
list on one compact line (a saved plan, an apply report).

``json.dumps(..., indent=2)`` switches to the pure-Python encoder, about 7x slower on 100k
items; this layout is as readable (a diff shows one line per item) and lets the C encoder do
the work. ``encoder`` makes that encoder once: ``json.dumps`` with options (and
``JSONEncoder.encode``) builds a new one per call, which costs more than encoding an item.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

BLOCK = 2048  # pre-encoded lines joined per piece: few writes, no copy of the whole list


@dataclass(frozen=True, slots=True)
class Lines:
    """List items already encoded (one compact JSON text each): laid out as they are."""

    items: tuple[str, ...]


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encoder(*, ascii_only: bool, sort_keys: bool) -> Callable[[Any], str]:
    """A compact JSON encoder (no spaces): make it once and keep it; the C encoder where the
    interpreter has one."""
    make: Callable[..., Callable[[Any, int], list[str]]] | None = getattr(
        json.encoder, "c_make_encoder", None
    )
    if make is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(
            sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=ascii_only
        ).encode
    strings = json.encoder.encode_basestring_ascii if ascii_only else json.encoder.encode_basestring
    made = make(None, _refuse, strings, None, ":", ",", sort_keys, False, True)
    return lambda value: made(value, 0)[0]


def string_objects(keys: Sequence[str], rows: Iterable[Sequence[str]]) -> Lines:
    """List items that are objects of ``keys`` (in that order) with a string for each, as
    the compact encoder writes them: each value through the same string encoder, the rest
    of the text made once. 50,000 of them take a string format each instead of a dict and
    an encoder call (an apply report's accounts: ~20 ms instead of ~150 ms)."""
    strings = _STRINGS
    members = ",".join(strings(key).replace("%", "%%") + ":%s" for key in keys)
    template = "{" + members + "}"  # a %-template: one format call per row
    return Lines(tuple(template % tuple(map(strings, row)) for row in rows))


def pieces(value: Any, *, sort_keys: bool, depth: int = 0) -> Iterator[str]:
    """``value`` laid out in pieces (for writing it without holding it whole): an object's
    keys one per line (recursively), a list's items one per line, each compact."""
    compact = _SORTED if sort_keys else _ORDERED
    inner, outer = "  " * (depth + 1), "  " * depth
    if isinstance(value, dict) and value:
        opening = "{\n"
        for key in sorted(value) if sort_keys else value:
            yield f"{opening}{inner}{compact(key)}: "
            yield from pieces(value[key], sort_keys=sort_keys, depth=depth + 1)
            opening = ",\n"
        yield f"\n{outer}}}"
    elif isinstance(value, Lines) and value.items:
        between = ",\n" + inner
        items = value.items
        for start in range(0, len(items), BLOCK):
            yield "[\n" + inner if start == 0 else between
            yield between.join(items[start : start + BLOCK])
        yield f"\n{outer}]"
    elif isinstance(value, list) and value:
        yield "[\n" + ",\n".join(inner + compact(item) for item in value) + f"\n{outer}]"
    else:
        yield compact([] if isinstance(value, Lines) else value)


_STRINGS: Callable[[str], str] = json.encoder.encode_basestring  # what encoder() uses
_SORTED = encoder(ascii_only=False, sort_keys=True)
_ORDERED = encoder(ascii_only=False, sort_keys=False)


def laid_out(value: Any) -> str:
    """:func:`pieces` joined, keys in their order."""
    return "".join(pieces(value, sort_keys=False))
