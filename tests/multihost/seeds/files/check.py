"""Test extractor: prints the name, size, sha256 and local path of every file it receives (modern API)."""

import hashlib

from pumpkin import File, Seed


class CheckFile(Seed):
    consumes = "Blob:MADE"

    def run(self, blob):
        assert isinstance(blob, File), type(blob)
        digest = hashlib.sha256()
        with blob.open() as fh:
            for piece in iter(lambda: fh.read(1 << 20), b""):
                digest.update(piece)
        print(f"got {blob.name} {blob.path.stat().st_size} {digest.hexdigest()} {blob.path}", flush=True)
