"""Pumpkin: a self-organising data-transformation network.

Seed authors need only ``from pumpkin import Seed, seed, Emit``; seeds written for the original Pumpkin use
``from pumpkin import *`` and ``PmkSeed.Seed``. That star import also brings the names the original's did and
its seeds relied on (``time``, ``os``, ``json``, ``threading``, ``shutil``, ``copy``, the ``*_BIT`` constants...):
see ``LEGACY_NAMES``.
"""

import base64
import collections
import copy
import datetime
import errno
import hashlib
import inspect
import json
import logging
import os
import queue as Queue  # noqa: N812 - the original's (Python 2) module name
import re
import shutil
import signal
import socket
import struct
import subprocess as sp
import sys
import tarfile
import threading
import time
import uuid
import zlib
from os import listdir
from os.path import expanduser, isfile, join
from threading import Event, Lock, RLock, Thread, Timer
from typing import Any

from . import PmkSeed, PmkShared
from .files import File
from .PmkSeed import hplugins, iplugins, plugins
from .PmkShared import (
    ACK_BIT,
    BROADCAST_BIT,
    FORCE_BIT,
    LAST_PKT,
    MORE_PKT,
    TIMING_BIT,
    TRACER_BIT,
    TRACK_BIT,
    SThread,
    _ensure_dir,
    get_cpu_util,
)
from .seed import Emit, Seed, seed

sjson = json

__version__ = "0.1.0"


class _LazyNetworkx:
    """``nx`` for the star import: networkx, imported at the first attribute a seed uses (``nx.DiGraph()``).

    The star import binds every name in ``__all__``, so a module-level ``__getattr__`` would import networkx
    (~15 MB, 450 modules) into every daemon that loads an original-format seed, which few of them use."""

    def __getattr__(self, name: str) -> Any:
        import networkx

        return getattr(networkx, name)

    def __repr__(self) -> str:
        return "<networkx, imported on first use>"


nx = _LazyNetworkx()


__all__ = [
    "PmkSeed",
    "Seed",
    "seed",
    "Emit",
    "File",
    "__version__",
    "PmkShared",
    "base64",
    "collections",
    "copy",
    "datetime",
    "errno",
    "hashlib",
    "inspect",
    "json",
    "sjson",
    "logging",
    "nx",
    "os",
    "Queue",
    "re",
    "shutil",
    "signal",
    "socket",
    "sp",
    "struct",
    "sys",
    "tarfile",
    "threading",
    "time",
    "uuid",
    "zlib",
    "listdir",
    "expanduser",
    "isfile",
    "join",
    "Event",
    "Lock",
    "RLock",
    "Thread",
    "Timer",
    "SThread",
    "_ensure_dir",
    "get_cpu_util",
    "TIMING_BIT",
    "TRACK_BIT",
    "ACK_BIT",
    "TRACER_BIT",
    "BROADCAST_BIT",
    "FORCE_BIT",
    "MORE_PKT",
    "LAST_PKT",
    "plugins",
    "hplugins",
    "iplugins",
]

#: What ``from pumpkin import *`` gave the original's seeds, and gives them here (modules and names).
LEGACY_NAMES = __all__[6:]
