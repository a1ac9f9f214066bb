"""Strategies shared by the property-based tests: JSON values, hostile values, and documents with one part broken.

Pure random bytes rarely get past a JSON parser, so most tests start from a valid document and break one part of
it (``mutated``): a value of the wrong type, a number no 64-bit integer or double holds, NaN, nesting deeper than
orjson reads or writes, a lone surrogate, a huge string, a missing or an unknown key. ``dumps`` writes such
documents, since orjson itself refuses to write most of them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from hypothesis import strategies as st

E = TypeVar("E", bound=BaseException)
R = TypeVar("R")

#: Python's own; the daemon never changes it.
DEFAULT_RECURSION_LIMIT = 1000
#: orjson reads JSON nested up to 1024 levels and writes up to 254: the depths around both limits.
DEPTHS = (2, 253, 254, 255, 256, 500, 900, 1000, 1023, 1024, 1025, 5000)


@dataclass(frozen=True)
class Raw:
    """JSON text that ``dumps`` puts into a document as it is (huge integers, NaN, deep nesting...)."""

    text: str

    def __repr__(self) -> str:
        text = self.text
        return f"Raw({text if len(text) <= 60 else f'{text[:25]}...({len(text)} chars)...{text[-25:]}'!r})"


def dumps(value: Any) -> bytes:
    """``value`` as JSON text; ``Raw`` parts verbatim, lone surrogates as the (invalid) UTF-8 of their code."""
    return _json(value).encode("utf-8", "surrogatepass")


def _json(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json(str(k))}:{_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def deep(depth: int, kind: str = "list") -> Raw:
    """A value nested ``depth`` levels deep: ``[[[...]]]`` or ``{"a":{"a":...}}``."""
    if kind == "list":
        return Raw("[" * depth + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


def only(error: type[E] | tuple[type[E], ...], parse: Callable[..., R], *args: Any, **kwargs: Any) -> R | None:
    """``parse(*args)``, or None when it raised ``error``: any other exception fails the test.

    It runs under Python's default recursion limit, as the daemon does: hypothesis raises the limit while a test
    runs, which would hide a RecursionError (e.g. from the repr of a value nested 1000 levels deep).
    """
    raised = sys.getrecursionlimit()
    sys.setrecursionlimit(DEFAULT_RECURSION_LIMIT)
    try:
        return parse(*args, **kwargs)
    except error:
        return None
    finally:
        sys.setrecursionlimit(raised)


def loaded(value: Any) -> tuple[bool, Any]:
    """(True, what orjson reads from ``dumps(value)``), or (False, None) when it cannot read it."""
    try:
        return True, orjson.loads(dumps(value))
    except orjson.JSONDecodeError:
        return False, None


# -- values --------------------------------------------------------------------------------------------------

#: Text as Python may hold it, lone surrogates included (environment variables, file names).
any_text = st.text(st.characters(exclude_categories=()), max_size=30)
#: Text orjson can write.
utf8_text = st.text(max_size=16)
#: A number orjson writes and reads back exactly.
json_ints = st.integers(-(2**63), 2**64 - 1)
json_floats = st.floats(allow_nan=False, allow_infinity=False)

json_scalars = st.one_of(st.none(), st.booleans(), json_ints, json_floats, utf8_text)
_shallow = st.lists(json_scalars, max_size=3) | st.dictionaries(utf8_text, json_scalars, max_size=3)
#: Any JSON value orjson writes and reads back unchanged, nested up to 2 levels: twice as fast to make as
#: st.recursive(), and the deep ones are ``nasty``'s job.
json_values: st.SearchStrategy[Any] = (
    json_scalars | _shallow | st.lists(_shallow, max_size=3) | st.dictionaries(utf8_text, _shallow, max_size=3)
)

_FIXED_NASTY: list[Any] = [
    Raw("99999999999999999999"),
    Raw("-99999999999999999999"),
    Raw("18446744073709551616"),  # 2**64
    Raw("9223372036854775808"),  # 2**63
    Raw("-9223372036854775809"),
    Raw("1" * 5000),  # past Python's 4300-digit limit on int() from text
    Raw("1e400"),
    Raw("-1e400"),
    Raw("1e-400"),
    Raw("-0"),
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw('"\\ud800"'),  # an escaped lone surrogate
    Raw('"\\udc00x"'),
    Raw('"\\u0000"'),
    Raw('"\ud800"'),  # a raw lone surrogate: invalid UTF-8 in the document
    Raw("tru"),
    Raw(""),
    None,
    True,
    False,
    0,
    -1,
    1.5,
    2**63,
    2**64,
    "",
    " ",
    ":::",
    "a:b:c",
    "default:String:OK",
    [],
    {},
    [[]],
    ["a", "b"],
    ["a", "b", "c", 1.0],
]

#: A value that breaks something somewhere.
nasty: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(_FIXED_NASTY),
    st.builds(deep, st.sampled_from(DEPTHS), st.sampled_from(["list", "dict"])),
    st.builds(lambda d, v: Raw("[" * d + _json(v) + "]" * d), st.sampled_from(DEPTHS), json_scalars),
    st.integers().map(lambda n: n * 10**30 if n else n),
    st.floats(),
    st.text(st.characters(exclude_categories=()), max_size=20),
    st.builds(lambda c, n: c * n, st.characters(), st.integers(0, 100_000)),
    json_values,
)


# -- one part broken -----------------------------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any, delete: bool = False) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if delete and not rest:
            del copy[head]
        else:
            copy[head] = _replace(value[head], rest, new, delete)
        return copy
    copy_list = list(value)
    if delete and not rest:
        del copy_list[head]
    else:
        copy_list[head] = _replace(value[head], rest, new, delete)
    return copy_list


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[Any], keys: tuple[str, ...] = ()) -> Any:
    """A valid document from ``valid`` with one part replaced by a ``nasty`` value, removed, or one key added
    (one of ``keys``, the ones the parser looks for, or any)."""
    doc = draw(valid)
    path = draw(st.sampled_from(_paths(doc)))
    action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if action == "delete" and path:
        return _replace(doc, path, None, delete=True)
    if action == "add":
        holders = [p for p in _paths(doc) if isinstance(_at(doc, p), dict)]
        if holders:
            where = draw(st.sampled_from(holders))
            key = draw(st.sampled_from(keys) | utf8_text) if keys else draw(utf8_text)
            return _replace(doc, where, {**_at(doc, where), key: draw(nasty)})
    return _replace(doc, path, draw(nasty))


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value
