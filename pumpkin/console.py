"""Standard output that many seed threads can print to without their lines mixing."""

from __future__ import annotations

import io
import threading
from typing import TextIO


class LineAtomicWriter(io.TextIOBase):
    """Buffers each thread's text until a newline, then writes whole lines under one lock.

    ``print`` writes the text and the newline in two calls, so two seeds printing at once can otherwise
    produce ``square: 2 -> 4parity: 3 is odd``.
    """

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._local = threading.local()

    def write(self, text: str) -> int:
        buf = getattr(self._local, "buf", "") + text
        if "\n" in buf:
            head, _, buf = buf.rpartition("\n")
            with self._lock:
                self._target.write(head + "\n")
                self._target.flush()
        self._local.buf = buf
        return len(text)

    def flush(self) -> None:
        buf = getattr(self._local, "buf", "")
        with self._lock:
            if buf:
                self._target.write(buf)
                self._local.buf = ""
            self._target.flush()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._target.encoding
