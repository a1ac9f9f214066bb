"""The original seed's file helpers, with its path conventions: names are relative to the working directory
(``context.getWorkingDir()``, which ends in '/'), joined by plain string concatenation as the original did.

Archives are opened with the ``data`` extraction filter: a member that would land outside the destination
(an absolute path, ``..``, a link pointing out) is refused rather than written.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
from typing import Any

from .PmkShared import _ensure_dir

log = logging.getLogger("pumpkin.legacy")


class FileHelpers:
    """Mixed into ``PmkSeed.Seed``; needs ``self.context``."""

    context: Any

    def _wd(self) -> str:
        return str(self.context.getWorkingDir())

    def _ensure_dir(self, f: str) -> None:
        """Make the folder ``f`` and its parents."""
        _ensure_dir(f)

    def ifFile(self, msg: Any) -> bool:  # noqa: N802 - the original's names
        """True when ``msg`` is a ``file://`` reference."""
        return str(msg).startswith("file://")

    def fileparts(self, filepath: str) -> list[str]:
        """``[protocol, folder/, name, folder/name, path relative to the working directory]`` of a URL."""
        prot, _, rest = str(filepath).partition("://")
        pieces = rest.split("/")
        path = "".join(p + "/" for p in pieces[:-1]).replace("//", "/")
        name = pieces[-1]
        rpath = path.replace(self._wd(), "/") + name
        return [prot, path, name, path + name, rpath]

    def get_relative_path(self, file: str) -> str:
        """``"." + file``, as the original (a path relative to the working directory, for a subprocess)."""
        return "." + str(file)

    def move_file_to_wd(self, file: str) -> str:
        """Move ``file`` (relative to the working directory) to its top level; its name."""
        name = file.split("/")[-1]
        shutil.move(self._wd() + "/" + file, self._wd() + "/" + name)
        return name

    def copy_file_to_wd(self, file: str, mode: int = 0o644) -> str:
        """Copy ``file`` (any path) into the working directory with ``mode``; its name."""
        name = file.split("/")[-1]
        dst = self._wd() + "/" + name
        shutil.copy(file, dst)
        os.chmod(dst, mode)
        return name

    def moveto_fileserver(self, filename: str) -> None:
        """Nothing to do, as the original's (which only computed a path): dispatching ``file://`` + a path hands
        the file over to the node's file store, which moves it to the host of the next seed."""

    def move_data_file(self, src: str, dst: str, postfix: str | None = None) -> str:
        """Move ``src`` into the folder ``dst`` (both relative to the working directory); the new path."""
        wd = self._wd()
        _ensure_dir(wd + dst)
        target = (wd + "/" + dst + "/" + src + (f"-{postfix}" if postfix else "")).replace("//", "/")
        shutil.move(wd + src, target)
        return target

    def _tar_to_gz(self, source: str, destination: str | None = None, suffix: str | None = None) -> str:
        """Pack ``source`` (relative to the working directory) into a .tar.gz there, or in ``destination``."""
        wd = self._wd()
        src = wd + source
        tail = source + (f"-{suffix}" if suffix else "") + ".tar.gz"
        if destination is None:
            dst = wd + tail
        else:
            folder = (wd + destination).replace("//", "/")
            _ensure_dir(folder)
            dst = folder + tail
        dst = dst.replace("//", "/")
        with tarfile.open(name=dst, mode="w:gz") as t:
            t.add(src, os.path.basename(src.rstrip("/")))
        return dst

    def _untar_to_wd(self, source: str, destination: str | None = None, rename: str | None = None) -> Any:
        """Unpack an archive (a path, or one relative to the working directory); its members, None when missing."""
        fp = source if os.path.isfile(source) else (self._wd() + "/" + source).replace("//", "/")
        if not os.path.isfile(fp):
            log.error("Input file not found [%s]", source)
            return None
        destination = destination or self._wd()
        with tarfile.open(fp) as t:
            members = t.getmembers()
            t.extractall(destination, filter="data")
        if rename:
            for m in members:
                if os.path.isdir(destination + m.name):
                    shutil.move(destination + m.name, destination + rename)
        return members

    def _add_to_tar(self, file: str, tar: str, postfix: str | None = None, rename: str | None = None) -> str:
        """Add ``file`` to the folder packed in ``tar`` and pack it again; the new archive's path."""
        wd = self._wd()
        members = self._untar_to_wd(tar) or []
        name = os.path.basename(file) + (f"-{postfix}" if postfix else "")
        folder, base = None, None
        for m in members:
            if os.path.isdir(wd + str(m.name)):
                folder, base = wd + str(m.name), "/" + m.name
                break
        if folder is None or base is None:
            raise FileNotFoundError(f"{tar} holds no folder to add {file} to")
        shutil.copy(wd + file, folder + "/" + name)
        out = self._tar_to_gz(base, suffix=postfix)
        if rename is not None:
            renamed = wd + rename + ".tar.gz"
            shutil.move(out, renamed)
            out = renamed
        shutil.rmtree(folder)
        return out
