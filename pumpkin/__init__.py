"""Pumpkin: a self-organising data-transformation network.

Seed authors need only ``from pumpkin import Seed, seed, Emit``; seeds written for the original Pumpkin use
``from pumpkin import *`` and ``PmkSeed.Seed``.
"""

from . import PmkSeed
from .files import File
from .seed import Emit, Seed, seed

__version__ = "0.1.0"
__all__ = ["PmkSeed", "Seed", "seed", "Emit", "File", "__version__"]
