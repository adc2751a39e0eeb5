"""``values.frozen``: the class ``@dataclass(frozen=True, slots=True, kw_only=True)`` makes,
checked side by side with dataclasses' own for each behaviour reconciler relies on."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pickle
import pkgutil
import sys
import typing
from typing import Any, ClassVar

import pytest

import reconciler
from reconciler import values
from reconciler.plan.model import Change
from reconciler.values import FrozenInstanceError, frozen


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Twin:
    """The dataclass."""

    name: str
    roles: tuple[str, ...] = ()
    note: str | None = None
    secret: str = dataclasses.field(default="s", repr=False)
    tags: dict[str, int] = dataclasses.field(default_factory=dict)


@frozen
class Made:
    """The same fields as a frozen value."""

    name: str
    roles: tuple[str, ...] = ()
    note: str | None = None
    secret: str = values.field(default="s", repr=False)
    tags: dict[str, int] = values.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HashedTwin:
    """A dataclass whose fields all hash."""

    name: str
    roles: tuple[str, ...] = ()
    note: str | None = None


@frozen
class Hashed:
    """The same fields as a frozen value."""

    name: str
    roles: tuple[str, ...] = ()
    note: str | None = None


@frozen
class Other:
    """Another value with one field, named as one of Made's."""

    name: str


@frozen
class Empty:
    """A value with no fields."""


@frozen
class Checked:
    """A value with a __post_init__ that refuses an empty name."""

    name: str

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("empty name")


CASES = [
    {"name": "a"},
    {"name": "a", "roles": ("1", "2")},
    {"name": "a", "note": None, "secret": "hidden"},
    {"name": "a", "roles": ("x",), "note": "n", "tags": {"k": 1}},
]


def _twins(**given: Any) -> tuple[Any, Any]:
    return Twin(**given), Made(**given)


@pytest.mark.parametrize("given", CASES)
def test_the_same_fields_defaults_and_repr(given: dict[str, Any]) -> None:
    """Every field set, the defaults where none is given, the repr the dataclass shows."""
    twin, made = _twins(**given)
    assert values.as_dict(made) == {f.name: getattr(twin, f.name) for f in dataclasses.fields(twin)}
    assert repr(made) == repr(twin).replace("Twin(", "Made(")
    assert "hidden" not in repr(made)


@pytest.mark.parametrize("given", [{"name": "a"}, {"name": "a", "roles": ("1",), "note": "n"}])
def test_equal_and_hashed_as_the_dataclass(given: dict[str, Any]) -> None:
    """Equal to an equal value of its own class only; its hash is the dataclass's hash."""
    twin, made = HashedTwin(**given), Hashed(**given)
    assert made == Hashed(**given)
    assert hash(made) == hash(twin) == hash(Hashed(**given))
    assert made != values.replace(made, note="changed")
    assert made != twin  # another class, even with the same fields
    assert Other(name="a") != Hashed(name="a")
    assert made != values.as_dict(made)
    assert made != tuple(values.as_dict(made).values())
    assert Empty() == Empty()
    assert hash(Empty()) == hash(dataclasses.make_dataclass("E", [], frozen=True)())


def test_unhashable_fields_make_hash_fail_as_the_dataclass() -> None:
    """A dict in a field: both refuse to hash."""
    with pytest.raises(TypeError):
        hash(Twin(name="a", tags={"k": 1}))
    with pytest.raises(TypeError):
        hash(Made(name="a", tags={"k": 1}))


def test_default_factory_gives_each_value_its_own() -> None:
    """Two values made without ``tags`` hold two distinct dicts."""
    first, second = Made(name="a"), Made(name="b")
    assert first.tags == {}
    assert first.tags is not second.tags


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), (("a",), {}), ((), {"name": "a", "other": 1}), ((), {"roles": ()})],
)
def test_the_same_errors_for_wrong_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Missing, positional and unknown arguments: the TypeError the dataclass raises."""
    with pytest.raises(TypeError) as twin:
        Twin(*args, **kwargs)
    with pytest.raises(TypeError) as made:
        Made(*args, **kwargs)
    assert str(made.value) == str(twin.value).replace("Twin.", "Made.")


def test_the_same_signature() -> None:
    """Keyword-only parameters in field order, the same defaults (a factory shown as one)."""
    twin = inspect.signature(Twin).parameters
    made = inspect.signature(Made).parameters
    assert list(made) == list(twin)
    for name, param in made.items():
        assert param.kind is inspect.Parameter.KEYWORD_ONLY
        if name == "tags":
            assert repr(param.default) == repr(twin[name].default) == "<factory>"
        else:
            assert param.default == twin[name].default
    assert typing.get_type_hints(Made.__init__) == typing.get_type_hints(Twin.__init__)


def test_frozen_and_slotted() -> None:
    """Assignment and deletion refused as the dataclass refuses them; no __dict__."""
    made = Made(name="a")
    for action in (
        lambda: setattr(made, "name", "b"),
        lambda: setattr(made, "unknown", 1),
        lambda: delattr(made, "name"),
    ):
        with pytest.raises(FrozenInstanceError) as raised:
            action()
        assert isinstance(raised.value, AttributeError)
    with pytest.raises(dataclasses.FrozenInstanceError) as twin:
        Twin(name="a").name = "b"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError) as ours:
        made.name = "b"  # type: ignore[misc]
    assert str(ours.value) == str(twin.value)
    assert not hasattr(made, "__dict__")
    assert Made.__slots__ == Twin.__slots__ == ("name", "roles", "note", "secret", "tags")
    assert Made.__match_args__ == Twin.__match_args__ == ()
    assert made.name == "a"


def test_post_init_runs_after_the_fields_are_set() -> None:
    """__post_init__ sees the fields and its exception reaches the caller."""
    assert Checked(name="a").name == "a"
    with pytest.raises(ValueError, match="empty name"):
        Checked(name="")


@pytest.mark.parametrize("given", CASES)
def test_copy_and_pickle_give_equal_values(given: dict[str, Any]) -> None:
    """copy, deepcopy and pickle: equal values of the same class."""
    made = Made(**given)
    for again in (copy.copy(made), copy.deepcopy(made), pickle.loads(pickle.dumps(made))):
        assert type(again) is Made
        assert again == made


def test_replace_is_dataclasses_replace() -> None:
    """Unnamed fields kept as they are, named ones changed, unknown ones refused."""
    twin, made = _twins(name="a", roles=("1",))
    assert values.as_dict(values.replace(made, note="n")) == dataclasses.asdict(
        dataclasses.replace(twin, note="n")
    )
    assert values.replace(made) == made
    with pytest.raises(TypeError):
        values.replace(made, unknown=1)
    with pytest.raises(ValueError, match="empty name"):
        values.replace(Checked(name="a"), name="")
    with pytest.raises(TypeError, match="not a value"):
        values.replace(twin, name="b")


def test_replacer_is_replace_of_one_field() -> None:
    """Every other field kept (each set to its own object, so none can be left out or
    mixed up), the one named replaced: what ``replace`` gives."""
    given = {name: object() for name in values.fields(Change)}
    change = Change(**given)
    new = object()
    made = values.replacer(Change, "source")(change, new)
    assert type(made) is Change
    assert made == values.replace(change, source=new)
    for name in values.fields(Change):
        assert getattr(made, name) is (new if name == "source" else given[name])
    assert change.source is given["source"]  # the original is unchanged


def test_replacer_refuses_what_it_cannot_copy() -> None:
    """A field the class does not have, a class with a __post_init__, a non-value."""
    with pytest.raises(TypeError, match="replacer"):
        values.replacer(Made, "other")
    with pytest.raises(TypeError, match="replacer"):
        values.replacer(Checked, "name")
    with pytest.raises(TypeError, match="not a value"):
        values.replacer(Twin, "name")


def test_what_it_does_not_do_is_refused_when_the_class_is_made() -> None:
    """Inherited fields, ClassVar and InitVar annotations, a mutable default, a field with
    both a default and a factory: each an error at definition, never a silent difference."""
    with pytest.raises(TypeError, match="inherits fields"):

        @frozen
        class Child(Made):
            extra: int = 0

    with pytest.raises(TypeError, match="ClassVar"):

        @frozen
        class Shared:
            count: ClassVar[int] = 0

    with pytest.raises(TypeError, match="InitVar"):

        @frozen
        class Seeded:
            seed: dataclasses.InitVar[int] = 0

    with pytest.raises(ValueError, match="mutable default"):

        @frozen
        class Mutable:
            roles: list[str] = []  # noqa: RUF012  # the mistake under test

    with pytest.raises(ValueError, match="both default and default_factory"):
        values.field(default=1, default_factory=int)


@pytest.mark.parametrize(
    "body",
    [
        "def __repr__(self): return 'C(<redacted>)'",  # would be replaced: a secret shown
        "def __eq__(self, other): return True",
        "def __hash__(self): return 0",
        "def __init__(self, a): pass",
        "def __setattr__(self, name, value): pass",
        "def __getstate__(self): return ()",
        "__slots__ = ()",
        "__match_args__ = ('a',)",
    ],
)
def test_a_method_frozen_makes_is_refused_in_the_class_body(body: str) -> None:
    """The class's own would be replaced without a word (the dataclass keeps some, refuses
    others): refused when the class is made."""
    namespace: dict[str, Any] = {"frozen": frozen}
    source = f"@frozen\nclass C:\n    a: str = 'x'\n    {body}\n"
    with pytest.raises(TypeError, match="which frozen makes"):
        exec(source, namespace)


def test_the_other_field_maker_is_refused_either_way() -> None:
    """dataclasses.field in a frozen value (its repr=False would be lost), values.field in a
    dataclass (refused there as a mutable default), a field() without an annotation."""
    with pytest.raises(TypeError, match=r"dataclasses\.field"):

        @frozen
        class Secret:
            secret: str = dataclasses.field(default="s", repr=False)

    with pytest.raises(ValueError, match="mutable default"):

        @dataclasses.dataclass(frozen=True)
        class Mixed:
            secret: str = values.field(default="s", repr=False)

    with pytest.raises(TypeError, match="no type annotation"):

        @frozen
        class Unannotated:
            a: str
            b = values.field(default=1)


@pytest.mark.parametrize("name", ["self", "__frozen_self__", "__frozen_factory__"])
def test_a_field_named_as_the_generated_code_names_is_refused(name: str) -> None:
    """``self`` and the ``__frozen_`` names of the generated ``__init__``."""
    namespace: dict[str, Any] = {"frozen": frozen}
    with pytest.raises(TypeError, match="generated __init__"):
        exec(f"@frozen\nclass C:\n    a: int = 0\n    {name}: int = 0\n", namespace)


def test_fields_named_like_the_old_generated_names_work() -> None:
    """Names that once shadowed the generated code's (``_MISSING``, ``_set_a``, ``obj``)."""

    @frozen
    class Odd:
        a: dict[str, int] = values.field(default_factory=dict)
        _MISSING: int = 5  # the name under test
        _set_a: int = 1
        obj: int = 2

    made = Odd(_MISSING=7)
    assert made.a == {}
    assert (made._MISSING, made._set_a, made.obj) == (7, 1, 2)
    assert values.replacer(Odd, "obj")(made, 3).obj == 3


@pytest.mark.skipif(sys.version_info < (3, 13), reason="copy.replace is Python 3.13's")
def test_copy_replace_is_replace() -> None:
    """Python 3.13's copy.replace gives what values.replace gives."""
    made = Hashed(name="a")
    assert copy.replace(made, note="n") == values.replace(made, note="n")  # type: ignore[attr-defined]


def _package_values() -> list[type]:
    found: dict[str, type] = {}
    for module in pkgutil.walk_packages(reconciler.__path__, "reconciler."):
        if module.name.endswith("__main__"):
            continue  # running it is the CLI
        loaded = importlib.import_module(module.name)
        for item in vars(loaded).values():
            if isinstance(item, type) and "__value_fields__" in item.__dict__:
                found[f"{item.__module__}.{item.__qualname__}"] = item
    return list(found.values())


def test_every_value_of_the_package_takes_its_fields_as_keywords() -> None:
    """Each frozen class of reconciler: its __init__ takes exactly its annotated fields, in
    order, by keyword; its slots are those fields."""
    made = _package_values()
    assert len(made) > 100  # the package's values, not a handful found by accident
    for cls in made:
        names = tuple(cls.__annotations__)
        assert values.fields(cls) == names, cls
        assert cls.__slots__ == names, cls
        params = list(inspect.signature(cls).parameters.values())
        assert [p.name for p in params] == list(names), cls
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params), cls
