"""State tags: the names of the states data can be in.

A full tag is ``group:type:STATE`` (``default:String:UNGREETED``). Shorthands are expanded against the
node's group: ``type:STATE`` takes the node's group, and a bare ``STATE`` also takes the wildcard type
``*``, which matches any type. Two tags match when group and state are equal and the types are equal or
either is ``*``. ``A|B`` declares alternatives; a later alternative inherits the parts it leaves out from
the first (``String:POSITIVE|NEGATIVE`` is ``String:POSITIVE`` or ``String:NEGATIVE``). ``A&B`` declares an
AND-join (as the original Pumpkin's ``MRI_RAW&DTI_RAW``): a seed consuming it runs once data of one lineage has
arrived in both states (see ``gather``); its parts inherit like alternatives, and ``A&B|C`` is the join or ``C``.
"""

from __future__ import annotations

import functools
import re
import reprlib
from typing import NamedTuple

from .errors import TagError

ANY_TYPE = "*"
JOIN = "&"
DEFAULT_GROUP = "default"
PSEUDO_TYPE = "Seed"
INJECTION = "INJECTION"
EXTRACTION = "EXTRACTION"

_PART = re.compile(r"^[A-Za-z0-9_.\-]+$")


class StateTag(NamedTuple):
    """One state: group, data type and state name.

    A named tuple rather than a dataclass: tags are dictionary keys on every packet's way (the automaton's
    consumer cache), and a tuple hashes and compares in C.
    """

    group: str
    type: str
    state: str

    def __str__(self) -> str:
        return f"{self.group}:{self.type}:{self.state}"

    @property
    def key(self) -> tuple[str, str]:
        """What routing looks up: the group and the state, since types may be wildcards."""
        return (self.group, self.state)

    def matches(self, other: StateTag) -> bool:
        """True when data in ``other`` may be consumed by a seed declaring ``self`` (or vice versa)."""
        return (
            self.group == other.group
            and self.state == other.state
            and (self.type == other.type or ANY_TYPE in (self.type, other.type))
        )

    @property
    def is_pseudo(self) -> bool:
        """True for the injection/extraction pseudo-states that stand for 'outside the network'."""
        return self.type == PSEUDO_TYPE and self.state in (INJECTION, EXTRACTION)


def injection(group: str = DEFAULT_GROUP) -> StateTag:
    """The pseudo-state injector seeds start from."""
    return StateTag(group, PSEUDO_TYPE, INJECTION)


def extraction(group: str = DEFAULT_GROUP) -> StateTag:
    """The pseudo-state extractor seeds lead to."""
    return StateTag(group, PSEUDO_TYPE, EXTRACTION)


def _check(part: str, what: str, text: str, allow_any: bool = False) -> str:
    part = part.strip()
    if allow_any and part == ANY_TYPE:
        return part
    if not _PART.match(part):
        raise TagError(
            f"state tag {text!r}: {what} {part!r} is empty or has characters other than letters, digits, '_', '.', '-'"
        )
    return part


def parse(text: str, group: str = DEFAULT_GROUP, inherit: StateTag | None = None) -> StateTag:
    """Parse one tag, expanding shorthands against ``group`` (or the parts of ``inherit``)."""
    if not isinstance(text, str) or not isinstance(group, str):  # (and so hashable, for the cache)
        raise TagError(
            f"state tag {reprlib.repr(text)} is not a string; expected group:type:STATE, type:STATE or STATE"
        )
    return _parse(text, group, inherit)


@functools.lru_cache(maxsize=4096)
def _parse(text: str, group: str, inherit: StateTag | None) -> StateTag:
    """``parse``, remembered: every packet and every HELLO names its states again, and a tag is immutable.
    Bounded, so that a stranger naming new states costs no memory (errors are not remembered)."""
    if not text.strip():
        raise TagError(f"state tag {reprlib.repr(text)} is empty; expected group:type:STATE, type:STATE or STATE")
    parts = text.strip().split(":")
    if len(parts) > 3:
        raise TagError(f"state tag {text!r} has {len(parts)} parts; expected at most group:type:STATE")
    if len(parts) == 3:
        g, t, s = parts
    elif len(parts) == 2:
        g, (t, s) = (inherit.group if inherit else group), parts
    else:
        g, t, s = (inherit.group if inherit else group), (inherit.type if inherit else ANY_TYPE), parts[0]
    return StateTag(_check(g, "group", text), _check(t, "type", text, allow_any=True), _check(s, "state", text))


def parse_alternatives(text: str, group: str = DEFAULT_GROUP) -> list[StateTag]:
    """Parse ``A|B|...`` into its tags, in order, without duplicates (the parts of an ``A&B`` join included)."""
    out: list[StateTag] = []
    for alternative in _parse_groups(text, group):
        for tag in alternative:
            if tag not in out:
                out.append(tag)
    return out


def parse_joins(text: str, group: str = DEFAULT_GROUP) -> list[tuple[StateTag, ...]]:
    """The AND-joins of ``A&B|C|...``: each alternative of two or more distinct states, its tags in order."""
    return [alt for alt in _parse_groups(text, group) if len(alt) > 1]


def _parse_groups(text: str, group: str) -> list[tuple[StateTag, ...]]:
    if not isinstance(text, str):
        raise TagError(f"state tag {reprlib.repr(text)} is not a string")
    first: StateTag | None = None
    out: list[tuple[StateTag, ...]] = []
    for alt in text.split("|"):
        parts: list[StateTag] = []
        for part in alt.split(JOIN):
            tag = parse(part, group, inherit=first)
            first = first or tag
            if tag not in parts:
                parts.append(tag)
        out.append(tuple(parts))
    return out
