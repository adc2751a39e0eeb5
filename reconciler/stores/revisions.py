"""Mappings that remember how they were made, so a store writes only what changed.

An apply revises a 100k-account state a few hundred accounts at a time, and writes it
after each step. Copying the mapping at every step, and comparing the whole of it with
the stored one at every write, makes an apply quadratic. :func:`revise` returns a new
immutable mapping in time proportional to the change, and :func:`compare` tells a store
what differs between two revisions of one mapping, in time proportional to the revisions
between them.

It is a persistent map by rerooting (Baker's trick): all revisions of one mapping share
one dict, which holds the content of the newest revision used; every other revision is
the list of differences (``undo``) from a revision one step nearer to it. Using an older
revision moves the dict there first and turns the differences around, so every revision
keeps its own content for as long as it lives. The engine uses each state after the one
before, so the dict rarely moves. Revisions that nobody references are garbage, as the
links run from older revisions to newer ones only; the differences from the plain mapping
the first revision was made from are kept, so a store that read that mapping can compare
with it too (they cost what changed, not the size of the mapping).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar, overload

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")

_ABSENT: Any = object()  # a key that is not in the revision, in an undo list


class _Node:
    """One revision: the shared dict (the revision in use) or its differences from another."""

    __slots__ = ("data", "toward", "undo")

    def __init__(self, data: dict[Any, Any]) -> None:
        self.data: dict[Any, Any] | None = data
        self.toward: _Node | None = None  # one step nearer the node holding the dict
        self.undo: dict[Any, Any] | None = None  # key -> this revision's value, or _ABSENT


def _reroot(node: _Node) -> dict[Any, Any]:
    """Move the shared dict to ``node`` (turning the differences on its way around)."""
    path: list[_Node] = []
    walk = node
    while walk.data is None:
        path.append(walk)
        assert walk.toward is not None  # a node without the dict always points on
        walk = walk.toward
    data = walk.data
    for step in reversed(path):
        holder = step.toward
        assert holder is not None
        assert step.undo is not None
        redo: dict[Any, Any] = {}
        for key, value in step.undo.items():
            redo[key] = data.get(key, _ABSENT)
            if value is _ABSENT:
                data.pop(key, None)  # set and removed again by one revise(): never there
            else:
                data[key] = value
        holder.data, holder.toward, holder.undo = None, step, redo
        step.data, step.toward, step.undo = data, None, None
    return data


class _Tree:
    """What the revisions of one shared dict have in common."""

    __slots__ = ("lock", "origin", "start")

    def __init__(self, origin: Mapping[Any, Any], start: _Node) -> None:
        self.lock = threading.Lock()
        # The plain mapping the first revision was made from, and the node standing for it:
        # a store that read that mapping compares the revisions with it cheaply too.
        self.origin, self.start = origin, start


class Revision(Mapping[K, V], Generic[K, V]):
    """An immutable mapping made by :func:`revise`: one revision of a shared dict."""

    __slots__ = ("_lock", "_node", "_size", "_tree")

    def __init__(self, node: _Node, size: int, tree: _Tree) -> None:
        self._node, self._size, self._tree = node, size, tree
        self._lock = tree.lock

    def _data(self) -> dict[K, V]:
        data = self._node.data
        return data if data is not None else _reroot(self._node)

    def __getitem__(self, key: K) -> V:
        with self._lock:
            return self._data()[key]

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V | D, /) -> V | D: ...
    def get(self, key: K, default: Any = None, /) -> Any:
        """The value of ``key``, or ``default``."""
        with self._lock:
            return self._data().get(key, default)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data()

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[K]:
        with self._lock:  # a copy: a later revise() must not change what is being iterated
            return iter(list(self._data()))

    def __repr__(self) -> str:
        with self._lock:
            return f"Revision({self._data()!r})"


def revise(
    base: Mapping[K, V], changes: Mapping[K, V], removed: Iterable[K] = ()
) -> Revision[K, V]:
    """``base`` with ``changes`` set, then ``removed`` taken out, as a new revision.

    ``base`` itself does not change. The first revision of a plain mapping copies it once;
    revising a revision costs only the change.
    """
    if isinstance(base, Revision):
        old = base._node
        with base._lock:
            data = _reroot(old)
            undo = _apply(data, changes, removed)
            new = _Node(data)
            old.data, old.toward, old.undo = None, new, undo
            return Revision(new, len(data), base._tree)
    data = dict(base)
    new = _Node(data)
    start = _Node(data)  # stands for ``base`` itself: the differences from the first revision
    start.data, start.toward, start.undo = None, new, _apply(data, changes, removed)
    return Revision(new, len(data), _Tree(base, start))


def _apply(
    data: dict[Any, Any], changes: Mapping[Any, Any], removed: Iterable[Any]
) -> dict[Any, Any]:
    """Change ``data`` in place; what it held before, for every key touched."""
    undo: dict[Any, Any] = {}
    for key, value in changes.items():
        undo.setdefault(key, data.get(key, _ABSENT))
        data[key] = value
    for key in removed:
        if key in data:
            undo.setdefault(key, data[key])
            del data[key]
    return undo


def compare(old: Mapping[K, V], new: Mapping[K, V]) -> tuple[dict[K, V], list[K]] | None:
    """What turns ``old`` into ``new``: (keys set to a new value, keys removed).

    Costs the revisions between the two when ``new`` and ``old`` are revisions of one
    shared dict, ``old`` the plain mapping the first of them was made from, or the very
    same mapping; None otherwise, and the caller compares the mappings in full. A key set
    back to the very value it had is not reported.
    """
    if old is new:
        return {}, []
    if not isinstance(new, Revision):
        return None
    if isinstance(old, Revision) and old._tree is new._tree:
        start = old._node
    elif old is new._tree.origin:
        start = new._tree.start
    else:
        return None
    before: dict[K, V] = {}  # old's value of each key touched on the way, or _ABSENT
    with new._lock:
        data = _reroot(new._node)  # every other revision now points on toward new
        walk = start
        while walk.data is None:
            assert walk.toward is not None
            assert walk.undo is not None
            for key, value in walk.undo.items():
                before.setdefault(key, value)  # the nearest to old is old's own value
            walk = walk.toward
        changed = {k: data[k] for k, v in before.items() if k in data and data[k] is not v}
        removed = [k for k, v in before.items() if k not in data and v is not _ABSENT]
    return changed, removed
