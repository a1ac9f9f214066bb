"""A node's working directory: its stable identity, its lock, and where its sockets and files live."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .errors import ConfigError

DEFAULT_ROOT = Path("~/.pumpkin/nodes").expanduser()
MAX_SLOTS = 256


@dataclass
class Workdir:
    """A claimed working directory; held (locked) until ``release``."""

    path: Path
    node_id: str
    _lock: IO[str]

    @property
    def failed(self) -> Path:
        """Where packets that could not be processed are kept, each with its reason."""
        return self.path / "failed"

    @property
    def runtime(self) -> Path:
        """A short private folder for ipc:// sockets (their paths must stay under ~100 bytes).

        Named after the working directory, which this daemon holds locked, and not after the node id:
        two daemons given the same id (containers sharing /tmp, a copied working directory) must not
        take each other's sockets.
        """
        digest = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:12]
        path = runtime_base() / f"{self.node_id[:24]}-{digest}"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    @property
    def control_file(self) -> Path:
        """Holds the control endpoint of the daemon running here, for ``pmk graph`` and friends."""
        return self.path / "control"

    def release(self) -> None:
        """Give the directory up (the control file goes; the identity stays)."""
        self.control_file.unlink(missing_ok=True)
        self._lock.close()


def runtime_base() -> Path:
    """Where this user's daemons keep sockets and the same-host discovery folder."""
    return Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"pumpkin-{os.getuid()}"


def _try_lock(path: Path) -> IO[str] | None:
    path.mkdir(parents=True, exist_ok=True)
    fh = open(path / "lock", "a+", encoding="utf-8")  # noqa: SIM115 - held for the daemon's life
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def new_node_id() -> str:
    """A fresh id like the original's ``slimme-783d9470``: short host name plus random hex.

    The random part is what makes it unique: network namespaces on one machine share the host name.
    """
    host = re.sub(r"[^a-z0-9-]", "", socket.gethostname().split(".")[0].lower())[:16] or "pmk"
    return f"{host}-{os.urandom(4).hex()}"


def claim(configured: Path | None, node_id: str = "") -> Workdir:
    """Lock ``configured`` (or the first free default slot) and read or make the node's id there."""
    if configured is not None:
        lock = _try_lock(configured)
        if lock is None:
            raise ConfigError(f"config key node.workdir: {configured} is in use by another running pmk")
        path = configured
    else:
        for slot in range(MAX_SLOTS):
            path = DEFAULT_ROOT / f"node{slot}"
            lock = _try_lock(path)
            if lock is not None:
                break
        else:
            raise ConfigError(f"config key node.workdir: all {MAX_SLOTS} default slots in {DEFAULT_ROOT} are in use")
    id_file = path / "node-id"
    if node_id:
        id_file.write_text(node_id + "\n")
    elif id_file.exists():
        node_id = id_file.read_text().strip()
    if not node_id:
        node_id = new_node_id()
        id_file.write_text(node_id + "\n")
    return Workdir(path, node_id, lock)


def in_use(path: Path) -> bool:
    """True while a daemon holds ``path`` (its lock is taken)."""
    if not (path / "lock").exists():
        return False
    probe = _try_lock(path)
    if probe is None:
        return True
    probe.close()
    return False


def running_control_files(root: Path | None = None) -> list[Path]:
    """Control files of daemons that look alive under ``root`` (default: DEFAULT_ROOT); their lock is held."""
    root = DEFAULT_ROOT if root is None else root
    return [control for control in sorted(root.glob("node*/control")) if in_use(control.parent)]
