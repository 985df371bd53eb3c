"""A declared function: how a process' args, kwargs and parents' outputs become a call.

* Type hints check and convert what arrives (`msgspec.convert`, lax: the string "5" becomes 5 for an
  `int`, "true" becomes True for a `bool`; `Optional`, containers and defaults work as in Python). A
  value that does not fit fails the process with "argument 'x': expected int, got 'abc'". Parameters
  without a hint, or hinted `Any`/`object`, take what comes.
* A parameter annotated `Context` is filled in by the kit.
* Parents' outputs: by default a workflow child's `in` (its parents' outputs, concatenated in parents
  order by the server) is prepended to its args, as in the original. With `parents="kwargs"` each
  parent's output is passed as a keyword argument named by the parent's node name instead: the whole
  output list when that parameter is hinted `list[...]`/`tuple[...]`, else the single value when the
  output has one element, else the list. (Roots of a cron-fired workflow have an `in` but no
  parents; it is then prepended as before.)
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import msgspec

from colonies.errors import ArgumentError
from colonies.executors.context import Context
from colonies.executors.retry import RetryPolicy

ParentsMode = Literal["positional", "kwargs"]
PARENTS_MODES = ("positional", "kwargs")



def type_name(t: Any) -> str:
    if t is type(None):
        return "None"
    if typing.get_origin(t) in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(t))
    if isinstance(t, type) and not typing.get_args(t):
        return t.__name__
    return str(t).replace("typing.", "")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_context(hint: Any) -> bool:
    return hint is Context or (isinstance(hint, str) and hint.rsplit(".", 1)[-1] == "Context")


@dataclass
class FunctionDef:
    """A function the executor serves, with its call conventions."""

    fn: Callable[..., Any]
    name: str
    retry: RetryPolicy | None = None
    parents: ParentsMode = "positional"
    is_async: bool = False
    signature: inspect.Signature | None = None
    hints: dict[str, Any] = field(default_factory=dict)
    context_param: str = ""

    @classmethod
    def of(cls, fn: Callable[..., Any], name: str, retry: RetryPolicy | None, parents: str) -> FunctionDef:
        if parents not in PARENTS_MODES:
            raise ValueError(f"parents must be one of {', '.join(PARENTS_MODES)}, not {parents!r}")
        try:
            sig: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have none: call them as they are
            sig = None
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # noqa: BLE001 - unresolvable hints: no conversion, raw annotations only
            hints = dict(getattr(fn, "__annotations__", {}))
        hints.pop("return", None)
        ctx = next((n for n, h in hints.items() if _is_context(h)), "")
        usable = {n: h for n, h in hints.items() if n != ctx and not isinstance(h, str) and h not in (Any, object)}
        return cls(fn, name, retry, typing.cast(ParentsMode, parents), inspect.iscoroutinefunction(fn), sig,
                   usable, ctx)

    def arguments(self, args: list[Any], kwargs: dict[str, Any], parent_outputs: Mapping[str, list[Any]] | None,
                  context: Context) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's positional and keyword arguments, checked and converted; ArgumentError if they do
        not fit. `parent_outputs` (node name -> output list) is given in "kwargs" mode only."""
        kwargs = dict(kwargs)
        for node, output in (parent_outputs or {}).items():
            if node in kwargs:
                raise ArgumentError(f"parent node {node!r} clashes with a keyword argument of the same name")
            kwargs[node] = list(output or []) if _wants_list(self.hints.get(node)) else parent_value(output)
        if self.context_param:
            kwargs[self.context_param] = context
        if self.signature is None:
            return tuple(args), kwargs
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentError(f"arguments do not fit {self.name}(): {exc}") from None
        for pname, value in bound.arguments.items():
            hint = self.hints.get(pname)
            if hint is None:
                continue
            kind = self.signature.parameters[pname].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                bound.arguments[pname] = tuple(_convert(f"{pname}[{i}]", v, hint) for i, v in enumerate(value))
            elif kind is inspect.Parameter.VAR_KEYWORD:
                bound.arguments[pname] = {k: _convert(k, v, hint) for k, v in value.items()}
            else:
                bound.arguments[pname] = _convert(pname, value, hint)
        return bound.args, bound.kwargs


def _convert(name: str, value: Any, hint: Any) -> Any:
    try:
        return msgspec.convert(value, hint, strict=False)
    except msgspec.ValidationError as exc:
        detail = str(exc)
        where = f" ({detail})" if " - at `" in detail else ""
        raise ArgumentError(f"argument {name!r}: expected {type_name(hint)}, got {_short(value)}{where}") from None
    except TypeError:  # a hint msgspec cannot check (a Callable, a Protocol...): pass the value as it is
        return value


def _wants_list(hint: Any) -> bool:
    return hint in (list, tuple) or typing.get_origin(hint) in (list, tuple)


def parent_value(output: list[Any] | None) -> Any:
    """A parent's output as one keyword argument: the value itself when there is exactly one."""
    out = list(output or [])
    return out[0] if len(out) == 1 else out
