"""A faster ``__init__`` for the frozen, slotted, keyword-only dataclasses made 100k at a time.

A frozen dataclass's generated ``__init__`` sets each field with
``object.__setattr__(self, name, value)``: a global lookup, an attribute lookup, a call and a
search of the type's attributes per field. A plan of 100k modified accounts makes 300k such
values (a change, its target record, its field change), and that was about a third of the
planner's instructions. :func:`fast_init` gives a class an ``__init__`` of the same signature
(keyword-only, same defaults, same error messages) that calls each slot's descriptor directly:
the same slots set to the same values, nothing else done. Only classes whose generated
``__init__`` does nothing more qualify (no ``__post_init__``, ``default_factory`` or
``InitVar``); anything else is refused when the class is defined, never at a call.

:func:`replacer` is ``dataclasses.replace`` of one field for such a class, made the same way:
``replace`` looks up every field and calls ``__init__`` with keywords, about 8 us a change,
which was most of giving 100k changes their git commits.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing on validate's path
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")


def fast_init(cls: type[T]) -> type[T]:
    """``cls`` (a frozen, slotted, keyword-only dataclass) with the faster ``__init__``."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"fast_init: {cls.__qualname__} is not a dataclass")
    generated = cls.__init__
    params = dataclasses.fields(cls)
    settings = cls.__dataclass_params__  # type: ignore[attr-defined]
    # The generated __init__'s own signature, read from its code (inspect.signature costs
    # more than the rest of the decorator, at every start-up): keyword-only parameters
    # that are the fields in order, with the fields' defaults.
    code = generated.__code__
    names = code.co_varnames[1 : 1 + code.co_kwonlyargcount]
    defaults = generated.__kwdefaults__ or {}
    wanted = {f.name: f.default for f in params if f.default is not dataclasses.MISSING}
    plain_signature = (
        code.co_argcount == 1
        and not code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS)
        and list(names) == [field.name for field in params]
        and defaults.keys() == wanted.keys()
        and all(defaults[name] is wanted[name] for name in wanted)
    )
    if (
        not settings.frozen
        or not settings.init
        or hasattr(cls, "__post_init__")
        or any(
            not field.init or field.default_factory is not dataclasses.MISSING for field in params
        )
        or not plain_signature  # an InitVar, a positional field, another __init__
        or not all(isinstance(cls.__dict__.get(f.name), types.MemberDescriptorType) for f in params)
    ):
        raise TypeError(
            f"fast_init: {cls.__qualname__} is not a plain frozen slotted kw_only dataclass"
        )
    namespace = {f"_set_{f.name}": cls.__dict__[f.name].__set__ for f in params}
    namespace.update({f"_default_{f.name}": f.default for f in params})
    signature = ", ".join(
        f.name if f.default is dataclasses.MISSING else f"{f.name}=_default_{f.name}"
        for f in params
    )
    body = "".join(f"\n    _set_{f.name}(self, {f.name})" for f in params)
    exec(f"def __init__(self, *, {signature}):{body}\n", namespace)
    made = namespace["__init__"]
    made.__qualname__ = generated.__qualname__  # the same TypeError messages
    made.__module__ = generated.__module__
    made.__annotations__ = dict(generated.__annotations__)
    made.__doc__ = generated.__doc__
    made.__fast_init__ = True
    cls.__init__ = made  # type: ignore[method-assign]
    return cls


def replacer(cls: type[T], name: str) -> Callable[[T, Any], T]:
    """``lambda value, new: dataclasses.replace(value, **{name: new})`` for a class given
    :func:`fast_init`: every other slot copied, generated from the class's fields."""
    if not getattr(cls.__init__, "__fast_init__", False):
        raise TypeError(f"replacer: {cls.__qualname__} has no fast_init")
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if name not in names:
        raise TypeError(f"replacer: {cls.__qualname__} has no field {name!r}")
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    namespace.update({f"_set_{n}": cls.__dict__[n].__set__ for n in names})
    body = "".join(f"\n    _set_{n}(made, {'new' if n == name else f'value.{n}'})" for n in names)
    exec(f"def replace(value, new):\n    made = _new(_cls){body}\n    return made\n", namespace)
    made: Callable[[T, Any], T] = namespace["replace"]
    made.__qualname__ = f"replacer({cls.__qualname__}, {name!r})"
    return made
