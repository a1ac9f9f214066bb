"""The failed/ area: every packet Pumpkin could not process is kept here with its reason, never dropped.

Each item is two files with the same stem: ``<stem>.pkt`` holds the packet in its file form (see
``packet``), so it can be read, fixed and dropped into an rx folder again, and ``<stem>.error`` holds the
reason on its first line, followed by a traceback when there is one. Bytes that were not even a packet
are kept as ``<stem>.raw`` (the frames, base64, one per line).
"""

from __future__ import annotations

import base64
import itertools
import logging
import re
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import orjson

from .packet import Packet, to_document

log = logging.getLogger(__name__)

RECENT_MAX = 200  # failures remembered in memory for the web page (all of them stay on disk)


class FailedStore:
    """Writes failed packets under ``root`` and counts them by kind of failure."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.counts: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_MAX)
        self._seq = itertools.count(1)
        self._logged: set[str] = set()

    def _stem(self, hint: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", hint)[:80]
        return self.root / f"{time.strftime('%Y%m%dT%H%M%S')}-{next(self._seq):06d}-{safe}"

    def keep(self, packet: Packet, kind: str, reason: str, detail: str = "", seed: str = "") -> Path:
        """Keep ``packet`` with a one-line ``reason``; ``kind`` names the counter (e.g. 'seed-error').

        ``seed`` names the seed the failure belongs to, when there is one (the page shows it there).
        """
        stem = self._stem(packet.id)
        try:
            body = orjson.dumps(to_document(packet), option=orjson.OPT_INDENT_2)
        except TypeError:
            doc = to_document(packet)
            doc["data"] = repr(doc.pop("data", None))
            doc["meta"] = {**packet.meta, "data_was_not_json": True}
            body = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        return self._write(stem, ".pkt", body, kind, reason, detail, seed, packet.id, str(packet.tag))

    def keep_raw(self, frames: list[bytes], kind: str, reason: str) -> Path:
        """Keep bytes that could not be decoded as a packet."""
        body = b"\n".join(base64.b64encode(bytes(f)) for f in frames) + b"\n"
        return self._write(self._stem(kind), ".raw", body, kind, reason, "")

    def _write(
        self,
        stem: Path,
        suffix: str,
        body: bytes,
        kind: str,
        reason: str,
        detail: str,
        seed: str = "",
        packet_id: str = "",
        state: str = "",
    ) -> Path:
        self.counts[kind] += 1
        reason = " ".join(reason.split())
        path = stem.with_suffix(suffix)
        self.recent.append(
            {
                "time": round(time.time(), 3),
                "kind": kind,
                "reason": reason,
                "seed": seed,
                "packet": packet_id,
                "state": state,
                "file": path.name,
            }
        )
        path.write_bytes(body)
        stem.with_suffix(".error").write_text(reason + "\n" + (detail.rstrip() + "\n" if detail else ""))
        # Loud once per kind, then quiet: a flood of bad input must not drown the log.
        if kind not in self._logged:
            self._logged.add(kind)
            log.error("%s (kept in %s; further '%s' failures are logged at debug level)", reason, path, kind)
        else:
            log.debug("%s (kept in %s)", reason, path)
        return path

    def items(self) -> list[Path]:
        """The kept items, oldest first (their packet files)."""
        if not self.root.exists():
            return []
        return sorted(p for p in self.root.iterdir() if p.suffix in (".pkt", ".raw"))
