"""The exceptions Pumpkin raises: one base class and a few specific kinds."""

from __future__ import annotations

import os
import traceback
from types import TracebackType


class PumpkinError(Exception):
    """Base of every error Pumpkin raises on purpose."""


class ConfigError(PumpkinError):
    """A configuration key has a value Pumpkin cannot use; the message names the key."""


class TagError(PumpkinError):
    """A state tag is not of the form ``group:type:STATE`` (or one of its shorthands)."""


class PacketError(PumpkinError):
    """A packet (from the wire, a file or a seed) is malformed."""


class ManifestError(PumpkinError):
    """A seed's manifest is missing, malformed or inconsistent."""


class SeedLoadError(PumpkinError):
    """A seed file could not be loaded; the message names the file and the reason."""


class SeedStartError(PumpkinError):
    """A seed's ``__init__`` or ``on_load`` raised: that instance cannot run; the message names the seed."""

    def __init__(self, seed: str, stage: str, cause: BaseException) -> None:
        super().__init__(f"seed {seed}: {stage} raised {type(cause).__name__}: {cause}")
        self.seed = seed
        self.stage = stage  # "__init__" or "on_load" (or "on_unload", when pmk seeds check calls it)
        self.traceback = "".join(traceback.format_exception(type(cause), cause, _seed_frames(cause.__traceback__)))


def _seed_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without its leading frames in Pumpkin's own code: the seed's author needs only theirs."""
    here = os.path.dirname(__file__)
    while tb is not None and tb.tb_next is not None and os.path.dirname(tb.tb_frame.f_code.co_filename) == here:
        tb = tb.tb_next
    return tb


class IntakeError(PumpkinError):
    """Packets from outside could not be accepted now (the journal is not open, or its commit failed)."""


class SeedError(PumpkinError):
    """A seed did something its manifest does not allow (e.g. emitted an undeclared state)."""


class DaemonNotRunning(PumpkinError):
    """No running daemon answered on the control endpoint."""
