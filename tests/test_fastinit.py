"""``fast_init``: the same values, signature and errors as the dataclass's own ``__init__``."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import InitVar, dataclass, field
from typing import Any

import pytest

from reconciler.fastinit import fast_init, replacer
from reconciler.plan.model import Change, FieldChange
from reconciler.stores.model import AccountRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class Plain:
    """The twin without fast_init."""

    name: str
    roles: tuple[str, ...] = ()
    note: str | None = None


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Fast:
    """The same fields, with fast_init."""

    name: str
    roles: tuple[str, ...] = ()
    note: str | None = None


def _twins(**values: Any) -> tuple[Any, Any]:
    return Plain(**values), Fast(**values)


@pytest.mark.parametrize(
    "values", [{"name": "a"}, {"name": "a", "roles": ("1", "2")}, {"name": "a", "note": None}]
)
def test_the_same_fields_with_the_same_defaults(values: dict[str, Any]) -> None:
    """Every field set, the defaults where none is given; still frozen, equal, hashed alike."""
    plain, fast = _twins(**values)
    assert dataclasses.astuple(plain) == dataclasses.astuple(fast)
    assert hash(dataclasses.astuple(fast)) == hash(fast)  # the dataclass's own __hash__
    assert repr(fast) == repr(plain).replace("Plain(", "Fast(")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.name = "b"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), (("a",), {}), ((), {"name": "a", "other": 1}), ((), {"roles": ()})],
)
def test_the_same_errors_for_wrong_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Missing, positional and unknown arguments: the TypeError the generated one raises."""
    with pytest.raises(TypeError) as plain:
        Plain(*args, **kwargs)
    with pytest.raises(TypeError) as fast:
        Fast(*args, **kwargs)
    assert str(fast.value) == str(plain.value).replace("Plain.", "Fast.")


@pytest.mark.parametrize("cls", [Change, FieldChange, AccountRecord])
def test_the_classes_made_per_change_keep_their_signature(cls: type) -> None:
    """The hot value classes: the signature a dataclass of their fields would have."""
    twin = dataclass(frozen=True, slots=True, kw_only=True)(
        type(cls.__name__, (), {"__annotations__": dict(cls.__annotations__), **_defaults(cls)})
    )
    assert inspect.signature(cls) == inspect.signature(twin)
    assert cls.__init__.__qualname__ == f"{cls.__name__}.__init__"


def _defaults(cls: type) -> dict[str, Any]:
    return {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }


def test_account_records_are_the_same_values() -> None:
    """A record made through fast_init equals one made field by field through replace."""
    record = AccountRecord(account="a", name="A", email="a@x", role_ids=("1",), enabled=True)
    assert dataclasses.replace(record, adopted=True).adopted is True
    assert dataclasses.replace(record) == record
    assert record.last_task_id is None
    assert record.source_commit is None


def _refused(cls: type) -> None:
    with pytest.raises(TypeError, match="fast_init"):
        fast_init(cls)


def test_refuses_a_class_that_does_more_in_init() -> None:
    """__post_init__, default_factory, InitVar, not frozen, no slots, positional fields."""

    @dataclass(frozen=True, slots=True, kw_only=True)
    class Post:
        name: str

        def __post_init__(self) -> None:
            """Something the fast __init__ would skip."""

    @dataclass(frozen=True, slots=True, kw_only=True)
    class Factory:
        roles: list[str] = field(default_factory=list)

    @dataclass(frozen=True, slots=True, kw_only=True)
    class WithInitVar:
        name: str
        seed: InitVar[int] = 0

    @dataclass(slots=True, kw_only=True)
    class Thawed:
        name: str

    @dataclass(frozen=True, kw_only=True)
    class NoSlots:
        name: str

    @dataclass(frozen=True, slots=True)
    class Positional:
        name: str

    for cls in (Post, Factory, WithInitVar, Thawed, NoSlots, Positional):
        _refused(cls)
    _refused(type("NotADataclass", (), {}))


def test_replacer_is_replace_of_one_field() -> None:
    """Every other field kept (each set to its own object, so none can be left out or
    mixed up), the one named replaced: what ``dataclasses.replace`` gives."""
    values = {f.name: object() for f in dataclasses.fields(Change)}
    change = Change(**values)
    new = object()
    made = replacer(Change, "source")(change, new)
    assert type(made) is Change
    assert made == dataclasses.replace(change, source=new)
    for f in dataclasses.fields(Change):
        assert getattr(made, f.name) is (new if f.name == "source" else values[f.name])
    assert change.source is values["source"]  # the original is unchanged


def test_replacer_refuses_what_it_cannot_copy() -> None:
    """A class without fast_init, and a field the class does not have."""
    with pytest.raises(TypeError, match="replacer"):
        replacer(Plain, "name")
    with pytest.raises(TypeError, match="replacer"):
        replacer(Fast, "other")
