"""Test injector: writes FILES_SIZE random bytes to FILES_OUT and returns the file (modern API)."""

import hashlib
import os

from pumpkin import File, Seed


class MakeFile(Seed):
    emits = "Blob:MADE"

    def run(self):
        path = os.environ["FILES_OUT"]
        size = int(os.environ.get("FILES_SIZE", "1000"))
        digest = hashlib.sha256()
        with open(path, "wb") as fh:
            left = size
            while left:
                piece = os.urandom(min(left, 1 << 20))
                digest.update(piece)
                fh.write(piece)
                left -= len(piece)
        print(f"made {os.path.basename(path)} {size} {digest.hexdigest()}", flush=True)
        return File(path)
