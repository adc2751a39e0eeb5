"""Frozen values: what ``@dataclass(frozen=True, slots=True, kw_only=True)`` makes, made cheaply.

reconciler's values are frozen, slotted, keyword-only classes. ``dataclasses`` makes them
well but dearly at start-up: importing it imports ``inspect`` (with ``ast``, ``dis`` and
``tokenize``: 39M instructions) and each class costs about 3.5M more (six functions compiled
from text, the class built twice). ``validate`` defines 18 such classes on its path: together
a third of its start-up. :func:`frozen` makes the same class for a fraction of that: one
``__init__`` compiled per class (it sets each slot through its descriptor, the way the
planner's hot paths need it), and ``__eq__``, ``__hash__``, ``__repr__``, the frozen
``__setattr__``/``__delattr__`` and the pickling pair shared by every class, reading the
class's fields from one ``operator.attrgetter``.

Same behaviour as the dataclass for what reconciler uses (``tests/test_values.py`` checks
each against ``dataclasses`` side by side): keyword-only ``__init__`` with the same
defaults and errors, ``field(default=..., default_factory=..., repr=False)``,
``__post_init__``, equality only between instances of the same class comparing the fields
as a tuple, the hash of that tuple, ``Name(field=value, ...)`` as repr, assignment and
deletion refused with :class:`FrozenInstanceError` (an ``AttributeError``), copy and pickle.
What it does not do is refused when the class is defined, never guessed: inheritance from a
base with fields, ``ClassVar``/``InitVar`` annotations, a mutable default, a method it makes
defined in the class body (the dataclass would keep a custom ``__repr__``; this would replace
it, and one written to hide a secret would show it), ``dataclasses.field`` (whose
``repr=False`` it would not read), a field without an annotation, a field named ``self`` or
``__frozen_...`` (the generated ``__init__``'s own names). mypy checks each ``replace`` call
against the fields, as it checks ``dataclasses.replace``.

mypy sees :func:`frozen` as a dataclass maker through ``typing.dataclass_transform``.

Every frozen value of the package is made here. ``dataclasses`` stays for what this does not
make: mutable working objects (``apply.pacing.Pacer``, the apply report), positional ones
(``seals.Seal``, ``jsontext.Lines``), and the sandbox, a fake of the vendor APIs that imports
nothing of reconciler but the providers.
"""

from __future__ import annotations

from operator import attrgetter

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing on validate's path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform, overload

    T = TypeVar("T")

__all__ = ["FrozenInstanceError", "as_dict", "field", "fields", "frozen", "replace", "replacer"]

_FIELDS = "__value_fields__"  # the class's field names, in order
_KEY = "__value_key__"  # an attrgetter of every field, giving a tuple
_SHOWN = "__value_shown__"  # the names that repr shows


class FrozenInstanceError(AttributeError):
    """An assignment to (or deletion of) a field of a frozen value."""


class _Field:
    """A field's declared default: ``field(...)``'s result, read by :func:`frozen`."""

    __slots__ = ("default", "factory", "repr")
    __hash__ = None  # type: ignore[assignment]  # a dataclass refuses it as a mutable default

    def __init__(self, default: object, factory: object, shown: bool) -> None:
        self.default = default
        self.factory = factory
        self.repr = shown


class _Sentinel:
    """A marker shown by name (``inspect.signature`` shows a factory's default as the
    dataclass's ``<factory>``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_MISSING: Any = _Sentinel("<missing>")  # no default given
_FACTORY: Any = _Sentinel("<factory>")  # the default of a field with a default_factory
# What the class body may not define, as the dataclass keeps, refuses or would need told:
# the class's own would be replaced without a word (a custom __repr__ hiding a secret).
_MADE_HERE = (
    "__init__",
    "__repr__",
    "__eq__",
    "__hash__",
    "__setattr__",
    "__delattr__",
    "__getstate__",
    "__setstate__",
    "__replace__",
    "__slots__",
    "__match_args__",
)
_PREFIX = "__frozen_"  # the generated __init__'s own names; no field may start with it


def _field(
    *,
    default: object = _MISSING,
    default_factory: object = _MISSING,
    repr: bool = True,  # dataclasses' name for it
) -> Any:
    """A field's default (``default`` or ``default_factory``) and whether repr shows it."""
    if default is not _MISSING and default_factory is not _MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return _Field(default, default_factory, repr)


def _frozen(cls: type[T]) -> type[T]:
    """``cls`` as ``@dataclass(frozen=True, slots=True, kw_only=True)`` would make it."""
    where = cls.__qualname__
    # The class's own annotations (from Python 3.10 on, not a base's; inspect.get_annotations
    # would import inspect).
    annotations: dict[str, object] = cls.__annotations__
    for base in cls.__mro__[1:-1]:
        if _FIELDS in base.__dict__ or "__dataclass_fields__" in base.__dict__:
            raise TypeError(f"frozen: {where} inherits fields from {base.__qualname__}")
    for name in _MADE_HERE:
        if name in cls.__dict__:
            raise TypeError(f"frozen: {where} defines {name}, which frozen makes")
    for name, item in cls.__dict__.items():
        if _is_field(item) and name not in annotations:
            raise TypeError(f"frozen: {where}.{name} is a field but has no type annotation")
    names = tuple(annotations)
    specs: dict[str, _Field] = {}
    for name, annotation in annotations.items():
        kind = str(annotation).partition("[")[0].rpartition(".")[2]
        if kind in ("ClassVar", "InitVar"):
            raise TypeError(f"frozen: {where}.{name}: {kind} is not supported")
        if name.startswith(_PREFIX) or name == "self":
            raise TypeError(f"frozen: {where}.{name}: a name the generated __init__ uses")
        declared = cls.__dict__.get(name, _MISSING)
        if _is_field(declared) and not isinstance(declared, _Field):
            raise TypeError(f"frozen: {where}.{name}: dataclasses.field; use values.field")
        spec = declared if isinstance(declared, _Field) else _Field(declared, _MISSING, True)
        if spec.default is not _MISSING and type(spec.default).__hash__ is None:
            raise ValueError(
                f"mutable default {type(spec.default)} for field {name} is not allowed:"
                " use default_factory"
            )
        specs[name] = spec
    namespace = {
        key: item
        for key, item in cls.__dict__.items()
        if key not in specs and key not in ("__dict__", "__weakref__")
    }
    namespace.update(
        __slots__=names,
        __match_args__=(),
        __eq__=_eq,
        __hash__=_hash,
        __repr__=_repr,
        __setattr__=_setattr,
        __delattr__=_delattr,
        __getstate__=_getstate,
        __setstate__=_setstate,
        __replace__=_replace,  # copy.replace (Python 3.13)
    )
    namespace[_FIELDS] = names
    namespace[_KEY] = _key(names)
    namespace[_SHOWN] = tuple(name for name in names if specs[name].repr)
    metaclass: Any = type(cls)
    made: type[T] = metaclass(cls.__name__, cls.__bases__, namespace)
    made.__qualname__ = cls.__qualname__
    made.__init__ = _init(made, specs)  # type: ignore[method-assign]
    return made


if TYPE_CHECKING:  # what mypy sees: dataclasses' field() and a dataclass maker

    @overload
    def field(*, default: T, repr: bool = True) -> T: ...  # dataclasses' name
    @overload
    def field(*, default_factory: Callable[[], T], repr: bool = True) -> T: ...
    @overload
    def field(*, repr: bool = True) -> Any: ...
    def field(**kwargs: Any) -> Any:
        """Typing's view of :func:`_field`."""

    @dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
    def frozen(cls: type[T]) -> type[T]:
        """Typing's view of :func:`_frozen`: a frozen, keyword-only dataclass."""

else:
    field = _field
    frozen = _frozen


def _is_field(item: object) -> bool:
    """``values.field(...)`` or ``dataclasses.field(...)`` (told apart without importing
    dataclasses)."""
    kind = type(item)
    return kind is _Field or (kind.__name__ == "Field" and kind.__module__ == "dataclasses")


def fields(cls: type[object] | object) -> tuple[str, ...]:
    """The field names of a value class (or of a value), in order."""
    names: tuple[str, ...] | None = getattr(cls, _FIELDS, None)
    if names is None:
        raise TypeError(f"fields: {cls!r} is not a value")
    return names


def as_dict(obj: object) -> dict[str, Any]:
    """A value's fields by name, as they are (not copied: unlike ``dataclasses.asdict``,
    nested values and containers stay what they are)."""
    return {name: getattr(obj, name) for name in fields(obj)}


def _replace(obj: T, /, **changes: object) -> T:
    """A copy of ``obj`` with ``changes`` (``dataclasses.replace``): made by its ``__init__``."""
    for name in fields(obj):
        if name not in changes:
            changes[name] = getattr(obj, name)
    return type(obj)(**changes)


if TYPE_CHECKING:  # mypy's dataclasses plugin checks each change's name and type
    from dataclasses import replace
else:
    replace = _replace


def replacer(cls: type[T], name: str) -> Callable[[T, Any], T]:
    """``lambda obj, new: replace(obj, **{name: new})`` for a class without ``__post_init__``:
    every other slot copied as it is, generated from the class's fields (about 8 us a call
    less than :func:`replace`; the planner gives 100k changes their git commits with it)."""
    names = fields(cls)
    if name not in names:
        raise TypeError(f"replacer: {cls.__qualname__} has no field {name!r}")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"replacer: {cls.__qualname__} has a __post_init__: use replace")
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    namespace.update({f"_set_{n}": cls.__dict__[n].__set__ for n in names})
    body = "".join(f"\n    _set_{n}(made, {'new' if n == name else f'obj.{n}'})" for n in names)
    exec(f"def replace(obj, new):\n    made = _new(_cls){body}\n    return made\n", namespace)
    made: Callable[[T, Any], T] = namespace["replace"]
    made.__qualname__ = f"replacer({cls.__qualname__}, {name!r})"
    return made


def _key(names: tuple[str, ...]) -> Callable[[object], tuple[object, ...]]:
    """A function giving an instance's fields as a tuple (attrgetter gives a bare value for one
    name, and needs at least one)."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        get = attrgetter(names[0])
        return lambda obj: (get(obj),)
    return lambda obj: ()


def _init(cls: type[object], specs: dict[str, _Field]) -> Callable[..., None]:
    """The ``__init__`` of ``cls``: keyword-only parameters, each slot set through its
    descriptor, then ``__post_init__`` if the class has one. Its own names start with
    ``__frozen_`` (no field may), so no field name can shadow one."""
    me, unset = f"{_PREFIX}self__", f"{_PREFIX}factory__"
    namespace: dict[str, object] = {unset: _FACTORY}
    params = []
    body = []
    for name, spec in specs.items():
        setter, default, factory = (f"{_PREFIX}{what}_{name}" for what in ("set", "d", "f"))
        namespace[setter] = cls.__dict__[name].__set__
        if spec.factory is not _MISSING:
            namespace[factory] = spec.factory
            params.append(f"{name}={unset}")
            body.append(f"{setter}({me}, {factory}() if {name} is {unset} else {name})")
            continue
        if spec.default is not _MISSING:
            namespace[default] = spec.default
            params.append(f"{name}={default}")
        else:
            params.append(name)
        body.append(f"{setter}({me}, {name})")
    if hasattr(cls, "__post_init__"):
        body.append(f"{me}.__post_init__()")
    signature = f"{me}, *, {', '.join(params)}" if params else me
    lines = "".join(f"\n    {line}" for line in body) or "\n    pass"
    exec(f"def __init__({signature}):{lines}\n", namespace)
    made: Callable[..., None] = namespace["__init__"]  # type: ignore[assignment]
    made.__qualname__ = f"{cls.__qualname__}.__init__"  # TypeErrors name the class
    made.__module__ = cls.__module__
    made.__annotations__ = {**{n: cls.__annotations__[n] for n in specs}, "return": None}
    return made


def _eq(self: object, other: object) -> bool:
    if other.__class__ is self.__class__:
        key: Callable[[object], tuple[object, ...]] = getattr(self.__class__, _KEY)
        return key(self) == key(other)
    return NotImplemented  # type: ignore[no-any-return]  # typeshed's NotImplemented is Any


def _hash(self: object) -> int:
    return hash(getattr(self.__class__, _KEY)(self))


def _repr(self: object) -> str:
    cls = self.__class__
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in getattr(cls, _SHOWN))
    return f"{cls.__qualname__}({shown})"  # no recursion guard: a frozen value holds no cycle


def _setattr(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _getstate(self: object) -> list[object]:
    return [getattr(self, name) for name in getattr(self.__class__, _FIELDS)]


def _setstate(self: object, state: list[object]) -> None:
    for name, item in zip(getattr(self.__class__, _FIELDS), state, strict=True):
        object.__setattr__(self, name, item)
