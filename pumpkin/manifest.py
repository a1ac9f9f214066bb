"""Seed manifests: the legacy ``###START-CONF`` comment block, and modern class attributes.

Both turn into the same thing: the seed's name and the state tags it consumes and emits, and the AND-joins
among its inputs (``"state": "MRI_RAW&DTI_RAW"``, ``consumes = "A&B"``). An ``&`` among outputs
(``"DTI_PREPROC1&DTI_PREPROC2"``) declares each of those states as an output. Nothing here imports seed code,
so a manifest can be checked without running the seed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from . import tags
from .errors import ManifestError, TagError
from .tags import StateTag

T = TypeVar("T")

START_MARK = "###START-CONF"
END_MARK = "##END-CONF"


@dataclass(frozen=True)
class LegacyManifest:
    """A parsed ``###START-CONF`` block."""

    name: str
    poi: Any
    auto_load: bool
    inputs: tuple[StateTag, ...]
    outputs: tuple[StateTag, ...]
    raw: dict[str, Any]
    joins: tuple[tuple[StateTag, ...], ...] = ()

    @property
    def description(self) -> str:
        """The first parameter's or return value's description, for display."""
        for entry in [*self.raw.get("parameters", []), *self.raw.get("return", [])]:
            if isinstance(entry, dict) and entry.get("description"):
                return str(entry["description"])
        return ""


def find_legacy_block(source: str) -> tuple[str, int] | None:
    """The JSON text of the manifest block and the line it starts on, or None when there is no block."""
    # Python's own line ends: str.splitlines() also splits at \x0b, \x0c, \x1c-\x1e, \x85, \u2028 and \u2029,
    # which JSON may hold unescaped in a string.
    lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip().startswith(START_MARK)), None)
    if start is None:
        return None
    body: list[str] = []
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if stripped.startswith(END_MARK):
            return "\n".join(body), start + 2
        if stripped and not stripped.startswith("##"):
            raise ManifestError(
                f"line {start + 1}: {START_MARK} has no matching {END_MARK} before line "
                f"{start + 2 + len(body)}, which does not start with '##' ({stripped[:40]!r})"
            )
        body.append(stripped[2:] if stripped.startswith("##") else "")
    raise ManifestError(f"line {start + 1}: {START_MARK} has no matching {END_MARK}")


def parse_legacy(source: str, group: str) -> LegacyManifest | None:
    """The legacy manifest in ``source``, None when it has none; raises ManifestError when it is malformed."""
    found = find_legacy_block(source)
    if found is None:
        return None
    text, first_line = found
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"line {first_line + exc.lineno - 1}: manifest is not valid JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # an integer past 4300 digits; nesting past Python's stack
        raise ManifestError(f"line {first_line}: manifest is not valid JSON: {str(exc).split(';')[0]}") from None
    if not isinstance(raw, dict):
        raise ManifestError("the manifest must be a JSON object")
    name = raw.get("object_name")
    if not isinstance(name, str) or not name:
        raise ManifestError("the manifest has no 'object_name'")
    auto_load = raw.get("auto-load", True)
    if not isinstance(auto_load, bool):
        raise ManifestError(f"'auto-load' must be true or false, not {auto_load!r}")
    own = raw.get("group")
    if own is not None and (not isinstance(own, str) or not own.strip()):
        raise ManifestError(f"'group' must be a group name, not {own!r}")
    group = own.strip() if isinstance(own, str) else group  # the seed's own group, as the original's get_group()
    inputs, joins = _legacy_entries(raw, "parameters", group)
    outputs, _ = _legacy_entries(raw, "return", group)
    return LegacyManifest(name, raw.get("object_poi"), auto_load, inputs, outputs, raw, joins)


def _legacy_entries(
    raw: dict[str, Any], key: str, group: str
) -> tuple[tuple[StateTag, ...], tuple[tuple[StateTag, ...], ...]]:
    """The tags of a manifest's ``parameters`` or ``return`` entries, and the AND-joins among them."""
    entries = raw.get(key, [])
    if not isinstance(entries, list):
        raise ManifestError(f"'{key}' must be a list")
    out: list[StateTag] = []
    joins: list[tuple[StateTag, ...]] = []
    for i, entry in enumerate(entries):
        where = f"'{key}' entry {i + 1}"
        if not isinstance(entry, dict):
            raise ManifestError(f"{where} is not an object")
        state, typ = entry.get("state"), entry.get("type", tags.ANY_TYPE)
        if not isinstance(state, str) or not state.strip():
            raise ManifestError(
                f"{where} ({entry.get('name', '?')!r}) has no 'state': every input and output needs a state tag"
            )
        if not isinstance(typ, str) or not typ.strip():
            raise ManifestError(f"{where} has an empty 'type'")
        try:
            for alt in state.split("|"):
                parts: list[StateTag] = []
                for part in alt.split(tags.JOIN):
                    tag = tags.parse(part if ":" in part else f"{typ}:{part}", group)
                    if tag not in parts:
                        parts.append(tag)
                    if tag not in out:
                        out.append(tag)
                if len(parts) > 1 and tuple(parts) not in joins:
                    joins.append(tuple(parts))
        except TagError as exc:
            raise ManifestError(f"{where}: {exc}") from None
    return tuple(out), tuple(joins)


def parse_declared(value: str | Sequence[str], group: str, what: str) -> tuple[StateTag, ...]:
    """The tags of a modern ``consumes``/``emits`` declaration (a string or a list of strings)."""
    if not isinstance(value, (str, Sequence)):
        raise ManifestError(f"'{what}' must be a state tag or a list of them, not {type(value).__name__}")
    return _each_once(value, lambda item: tags.parse_alternatives(item, group), what)


def declared_joins(value: str | Sequence[str], group: str) -> tuple[tuple[StateTag, ...], ...]:
    """The AND-joins of a modern ``consumes`` declaration (``"A&B"``); () when it has none."""
    if not isinstance(value, (str, Sequence)):
        return ()
    return _each_once(value, lambda item: tags.parse_joins(item, group), "consumes")


def _each_once(value: str | Sequence[str], parse: Callable[[str], Iterable[T]], what: str) -> tuple[T, ...]:
    """What ``parse`` finds in each item of a declaration, in order, each once; a TagError names ``what``."""
    out: list[T] = []
    for item in [value] if isinstance(value, str) else list(value):
        try:
            found = list(parse(item))
        except TagError as exc:
            raise ManifestError(f"'{what}': {exc}") from None
        out += [x for i, x in enumerate(found) if x not in out and x not in found[:i]]
    return tuple(out)
