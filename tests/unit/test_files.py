"""File payloads: descriptors, chunk messages, a transfer's bookkeeping, and the store's sealing and assembling."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pumpkin import File, files
from pumpkin.filemover import FileStore, hash_file
from pumpkin.files import CHUNK_TIMEOUT_S, MAX_BAD_CHUNK, Descriptor, FileError, Transfer

KEY = "0" * 32
SHA = "a" * 64


def desc(size: int, chunk: int = 4, name: str = "f.bin", node: str = "nodeA") -> Descriptor:
    return Descriptor(KEY, name, size, SHA, chunk, node)


# -- descriptors and messages ----------------------------------------------------------------------


def test_a_descriptor_survives_the_packet_data_round_trip_and_is_told_from_other_data():
    d = desc(10)
    assert files.descriptor_of(d.data()) == d
    assert files.is_file_data(d.data())
    for other in ("file:///x", {"pumpkin.file": 1, "more": 2}, [d.data()], None, 3):
        assert not files.is_file_data(other)
    assert files.descriptor_of({"n": 1}) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("key", "../../etc"), ("sha256", "zz"), ("size", -1), ("chunk", 0), ("node", ""), ("v", 2), ("name", 5)],
)
def test_a_malformed_descriptor_from_the_network_is_refused(field, value):
    data = desc(10).data()
    data["pumpkin.file"][field] = value
    with pytest.raises(FileError):
        files.descriptor_of(data)


@pytest.mark.parametrize(
    ("name", "safe"),
    [("../../etc/passwd", "passwd"), (".hidden", "hidden"), ("", "file"), ("a b.tar.gz", "a_b.tar.gz")],
)
def test_a_file_name_from_the_network_becomes_one_harmless_path_component(name, safe):
    data = desc(1).data()
    data["pumpkin.file"]["name"] = name
    got = files.descriptor_of(data)
    assert got is not None and got.name == safe


def test_chunk_messages_round_trip_and_garbage_is_refused():
    get = files.decode(files.encode_get("nodeB", KEY, [0, 3]))
    assert (get.kind, get.node, get.key, get.chunks) == (files.GET, "nodeB", KEY, (0, 3))
    chunk = files.decode(files.encode_chunk("nodeA", KEY, 3, SHA, b"data"))
    assert (chunk.index, chunk.sha256, chunk.data) == (3, SHA, b"data")
    missing = files.decode(files.encode_missing("nodeA", KEY, "gone"))
    assert missing.error == "gone"
    for frames in (
        [files.GET, b"not json"],
        [files.GET, b'{"id": "n", "key": "short", "chunks": []}'],
        [files.GET, b'{"id": "n", "key": "' + KEY.encode() + b'", "chunks": [-1]}'],
        [files.GET, b'{"id": "n", "key": "' + KEY.encode() + b'", "chunks": ' + str(list(range(65))).encode() + b"}"],
        [files.CHUNK, b'{"id": "n", "key": "' + KEY.encode() + b'", "i": 0, "sha256": "x"}', b""],
        [b"PMKX", b"{}"],
    ):
        with pytest.raises(FileError):
            files.decode(frames)


# -- a transfer ------------------------------------------------------------------------------------


def test_a_transfer_keeps_a_window_of_chunks_in_flight_and_completes():
    t = Transfer(desc(10 * 4))
    assert t.want(0.0, window=3) == [0, 1, 2]
    assert t.want(0.1, window=3) == []  # the window is full
    t.arrived(1, SHA, 0.2)
    assert t.want(0.3, window=3) == [3]
    for i in (0, 2, 3):
        t.arrived(i, SHA, 0.4)
    asked = t.want(0.5, window=100)
    assert asked == [4, 5, 6, 7, 8, 9]
    for i in asked:
        t.arrived(i, SHA, 0.6)
    assert t.complete and t.received == 10 and t.requested == 10 and t.asked_again == 0


def test_a_chunk_that_does_not_come_is_asked_for_again_after_the_timeout():
    t = Transfer(desc(3 * 4))
    assert t.want(0.0, window=2) == [0, 1]
    t.arrived(0, SHA, 1.0)
    assert t.want(1.0, window=2) == [2]
    assert t.want(CHUNK_TIMEOUT_S + 0.1, window=2) == [1]  # lost on a cut link
    assert t.asked_again == 1
    t.arrived(1, SHA, 6.0)
    t.arrived(1, SHA, 6.1)  # the first request's answer, late
    assert t.duplicates == 1 and t.received == 2


def test_a_resumed_transfer_asks_only_for_the_chunks_it_lacks():
    t = Transfer(desc(6 * 4), have={0: SHA, 1: SHA, 4: SHA, 99: SHA})
    assert t.resumed == 3  # an index past the end is dropped
    assert t.want(0.0, window=8) == [2, 3, 5]
    assert not t.expects(0) and t.expects(2)


def test_a_corrupt_chunk_is_asked_for_again_and_fails_the_transfer_when_it_stays_corrupt():
    t = Transfer(desc(2 * 4))
    t.want(0.0)
    t.arrived(0, None, 0.1)  # did not match its digest
    assert 0 not in t.have
    assert t.want(0.2) == [0]
    for _ in range(MAX_BAD_CHUNK - 2):
        t.arrived(0, None, 0.3)
        t.want(0.4)
    with pytest.raises(FileError, match="failed its sha256"):
        t.arrived(0, None, 0.5)


def test_an_empty_file_is_complete_at_once():
    assert Transfer(desc(0)).complete


# -- the store -------------------------------------------------------------------------------------


def write(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def assemble(src: FileStore, dst: FileStore, d: Descriptor, skip: set[int] = frozenset()) -> dict[int, str]:
    _, digests = src.served(d.key) or (None, [])
    have = dst.partial(d)
    for i in range(d.chunks):
        if i in skip or i in have:
            continue
        got = dst.write_chunk(d, i, digests[i], src.read_chunk(d, i))
        assert got == digests[i]
        have[i] = got
    return have


def test_sealing_moves_the_file_in_and_hashes_it_per_chunk_and_whole(tmp_path):
    store = FileStore(tmp_path / "files", "nodeA")
    src = tmp_path / "out.bin"
    whole = write(src, 3 * files.CHUNK_BYTES + 5)
    data = store.seal(File(src), legacy=False)
    d = files.descriptor_of(data)
    assert d is not None and d.sha256 == whole and d.node == "nodeA" and d.chunks == 4
    assert not src.exists() and store.path_of(d).is_file()
    served = store.served(d.key)
    assert served is not None and len(served[1]) == 4
    again = store.seal(store.localize(data, legacy=False), legacy=False)
    assert again == data  # a file already in the store is passed on as it is
    assert store.localize(data, legacy=True) == f"file://{store.path_of(d)}"


def test_a_legacy_file_url_is_sealed_and_keep_copies(tmp_path):
    store = FileStore(tmp_path / "files", "nodeA")
    src = tmp_path / "a.txt"
    src.write_text("some data")
    d = files.descriptor_of(store.seal(f"file://{src}", legacy=True))
    assert d is not None and d.name == "a.txt" and not src.exists()
    assert store.seal("file:///x", legacy=False) == "file:///x"  # only a legacy seed's strings are files
    kept = tmp_path / "b.txt"
    kept.write_text("keep me")
    assert files.descriptor_of(store.seal(File(kept, keep=True), legacy=False)) is not None and kept.exists()
    with pytest.raises(FileError, match="not a regular file"):
        store.seal(File(tmp_path / "missing"), legacy=False)


def test_chunks_assemble_into_the_file_and_a_partial_resumes(tmp_path):
    a = FileStore(tmp_path / "a", "nodeA")
    b = FileStore(tmp_path / "b", "nodeB")
    src = tmp_path / "big.bin"
    whole = write(src, 2 * files.CHUNK_BYTES + 100)
    d = a.seal_path(src)
    first = assemble(a, b, d, skip={1})
    assert sorted(first) == [0, 2]
    resumed = b.partial(d)  # what a new transfer finds: the chunks written before the cut
    assert resumed == first
    have = assemble(a, b, d)
    assert b.finish(d, have) == []
    assert b.complete(d) and hash_file(b.path_of(d))[1] == whole
    assert not (b.folder(d.key) / ".have").exists()


def test_a_chunk_that_does_not_match_its_digest_is_not_written(tmp_path):
    b = FileStore(tmp_path / "b", "nodeB")
    d = Descriptor(KEY, "x", 8, SHA, 4, "nodeA")
    b.partial(d)
    assert b.write_chunk(d, 0, hashlib.sha256(b"abcd").hexdigest(), b"abcX") is None
    assert b.write_chunk(d, 0, hashlib.sha256(b"abcd").hexdigest(), b"abcd") is not None
    assert b.partial(d) == {0: hashlib.sha256(b"abcd").hexdigest()}


def test_finishing_finds_a_chunk_spoilt_on_disk_and_a_holder_whose_copy_is_corrupt(tmp_path):
    a = FileStore(tmp_path / "a", "nodeA")
    b = FileStore(tmp_path / "b", "nodeB")
    src = tmp_path / "f.bin"
    write(src, 3 * files.CHUNK_BYTES)
    d = a.seal_path(src)
    have = assemble(a, b, d)
    with open(b.folder(d.key) / ".part", "r+b") as fh:  # spoilt after it was written and checked
        fh.seek(files.CHUNK_BYTES + 7)
        fh.write(b"\xff")
    assert b.finish(d, have) == [1]
    assert 1 not in b.partial(d)
    lying = Descriptor(d.key, d.name, d.size, "b" * 64, d.chunk, d.node)  # every chunk fine, the whole not
    c = FileStore(tmp_path / "c", "nodeC")
    with pytest.raises(FileError, match="corrupt"):
        c.finish(lying, assemble(a, c, lying))


def test_a_copy_is_removed_only_when_the_last_packet_lets_go_and_never_once_frozen(tmp_path):
    store = FileStore(tmp_path / "files", "nodeA")
    store.acquire(KEY)
    store.acquire(KEY)
    assert not store.release(KEY)
    assert store.release(KEY)
    store.acquire(KEY)
    store.frozen = True
    assert not store.release(KEY)
