"""The exceptions Pumpkin raises: one base class and a few specific kinds."""

from __future__ import annotations


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


class SeedError(PumpkinError):
    """A seed did something its manifest does not allow (e.g. emitted an undeclared state)."""


class DaemonNotRunning(PumpkinError):
    """No running daemon answered on the control endpoint."""
