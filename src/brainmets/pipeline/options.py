"""Typed stage parameters: one frozen dataclass of options per stage.

A stage declares its options class (``Stage(options=SomeOptions)``); its parameters
(``[stages.<name>]``) are that class's fields, their defaults the fields' defaults.
:func:`build_options` turns a mapping of parameters into the options object and refuses, with
one clear :class:`ParamError`, an unknown name, a value of the wrong type and a value the class
itself rejects (its ``__post_init__`` or ``from_params`` checks). ``brainmets config set``
calls it before writing, so a bad value never reaches ``brainmets.toml``.

An options class may define

* ``defaults() -> dict`` (classmethod): the parameters and their defaults as written in the
  configuration (else the fields' defaults, tuples as lists);
* ``from_params(mapping)`` (classmethod): how parameters become options (coercions such as
  ``"100x50x10"`` -> ``(100, 50, 10)``); else the class is called with them.

The built object's field values are then checked against the field types (``bool``, ``int``,
``float`` (an int is fine), ``str``, ``tuple``/``list``/``Sequence`` of, ``dict``/``Mapping``
of, unions / ``X | None``, ``Literal`` and ``Any``).

For a stage whose parameters are a plain dict of defaults (the toy pipeline, or a stage whose
defaults are defined by a library), :func:`options_class` makes the dataclass, each field typed
by its default's type.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "ParamError",
    "build_options",
    "option_defaults",
    "option_names",
    "options_class",
]


class ParamError(ValueError):
    """A stage parameter is unknown or has a wrong type or value."""


def option_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]


def option_defaults(cls: type) -> dict[str, Any]:
    """The options' parameters and their defaults (JSON/TOML-like: tuples become lists)."""
    own = getattr(cls, "defaults", None)
    if callable(own):
        return dict(own())
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{f.name} has no default")
        out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def build_options(cls: type, params: Mapping[str, Any], stage: str = "") -> Any:
    """The options object of ``params`` (missing names take their defaults).

    Raises:
        ParamError: naming the stage, the parameter and what is wrong with it.
    """
    where = f"[stages.{stage}]" if stage else cls.__name__
    names = option_names(cls)
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ParamError(
            f"{where}: stage {stage or cls.__name__} has no parameter(s) {unknown}; "
            f"known: {sorted(names)}"
        )
    hints = typing.get_type_hints(cls)
    for name, value in params.items():  # as given (before any coercion of from_params)
        if not _pre_coercion_ok(value, hints.get(name, Any)):
            raise ParamError(_type_message(where, name, value, hints.get(name, Any)))
    build: Callable[..., Any] = getattr(cls, "from_params", None) or (lambda p: cls(**p))
    try:
        obj = build(dict(params))
    except ParamError:
        raise
    except (TypeError, ValueError) as exc:
        for name, value in params.items():  # a wrong type explains it better than the class
            if not _conforms(value, hints.get(name, Any)):
                raise ParamError(_type_message(where, name, value, hints.get(name, Any))) from exc
        msg = str(exc)
        raise ParamError(msg if msg.startswith(where) else f"{where}: {msg}") from exc
    for name in names:
        if name in params and not _conforms(getattr(obj, name), hints.get(name, Any)):
            raise ParamError(_type_message(where, name, params[name], hints.get(name, Any)))
    return obj


def _type_message(where: str, name: str, value: Any, tp: Any) -> str:
    return (
        f"{where}: {name} = {value!r} ({type(value).__name__}) is not a valid value; "
        f"expected {_type_name(tp)}"
    )


def _type_name(tp: Any) -> str:
    if tp is Any:
        return "any value"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("collections.abc.", "")


def _pre_coercion_ok(value: Any, tp: Any) -> bool:
    """Before ``from_params``: only refuse what no coercion turns into ``tp`` (a bool for a
    number or a text, a table for a scalar); exact checks follow on the built object."""
    if isinstance(value, bool):
        return _conforms(value, tp) or _accepts_text(tp)
    return True


def _accepts_text(tp: Any) -> bool:
    if tp is Any or tp is str:
        return True
    return any(_accepts_text(a) for a in _union_args(tp))


def _union_args(tp: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return ()


def _conforms(value: Any, tp: Any) -> bool:  # noqa: PLR0911, PLR0912 - one case per kind of type
    if tp is Any or tp is object:
        return True
    if tp is None or tp is type(None):
        return value is None
    arms = _union_args(tp)
    if arms:
        return any(_conforms(value, a) for a in arms)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return value in args
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (tuple, list, cabc.Sequence) or tp in (tuple, list):
        if not isinstance(value, tuple | list):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_conforms, value, args))
        item = args[0] if args else Any
        return all(_conforms(v, item) for v in value)
    if origin in (dict, cabc.Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            return False
        kt, vt = args if len(args) == 2 else (Any, Any)
        return all(_conforms(k, kt) and _conforms(v, vt) for k, v in value.items())
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # a type this checker does not know: the class's own checks decide


def _type_of(value: Any) -> Any:
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    if isinstance(value, str):
        return str
    if isinstance(value, list | tuple):
        kinds = {_type_of(v) for v in value}
        if kinds == {int, float}:
            kinds = {float}
        return types.GenericAlias(list, (kinds.pop() if len(kinds) == 1 else Any,))
    if isinstance(value, Mapping):
        return dict[str, Any]
    return Any


def options_class(
    name: str,
    defaults: Mapping[str, Any],
    check: Callable[[Any], None] | None = None,
    doc: str = "",
    module: str | None = None,
) -> type:
    """A frozen dataclass of options from a mapping of defaults (each field typed by its
    default's type; ``None`` defaults accept any value). ``check(options)`` runs when an
    options object is built and raises ``ValueError`` on a bad value.

    Bind the class to a module-level ``name`` in the calling module (``module``, default the
    caller's) so that it pickles by reference."""
    if module is None:
        module = sys._getframe(1).f_globals.get("__name__", __name__)
    specs: list[tuple[str, Any, Any]] = []
    for key, value in defaults.items():
        default = dataclasses.field(default_factory=_factory(value))
        specs.append((key, _type_of(value) if value is not None else Any, default))

    def __post_init__(self: Any) -> None:
        if check is not None:
            check(self)

    cls = dataclasses.make_dataclass(
        name,
        specs,
        frozen=True,
        namespace={
            "__post_init__": __post_init__,
            "__doc__": doc or f"Options of a stage (generated from its defaults): {name}.",
            "defaults": classmethod(lambda c: _plain(dict(defaults))),
        },
    )
    cls.__module__ = module
    return cls


def _factory(value: Any) -> Callable[[], Any]:
    import copy

    return lambda: copy.deepcopy(value)
