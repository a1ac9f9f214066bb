"""The inbox's size bound, on real ZeroMQ sockets (inproc): a message is counted over all its frames."""

from __future__ import annotations

import time

import pytest
import zmq

from pumpkin.transport import OVERSIZED_HEAD_BYTES, recv_bounded


@pytest.fixture
def pair():
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind("inproc://bounded")
    push.connect("inproc://bounded")
    yield push, pull
    for s in (push, pull):
        s.close(linger=0)
    ctx.term()


def receive(pull, max_bytes):
    deadline = time.monotonic() + 5
    while True:
        try:
            return recv_bounded(pull, max_bytes)
        except zmq.Again:
            assert time.monotonic() < deadline, "nothing came"
            pull.poll(100)


def test_a_message_within_the_limit_comes_whole(pair):
    push, pull = pair
    push.send_multipart([b"a" * 400, b"b" * 400])
    got = receive(pull, 1000)
    assert got.whole and got.frames == [b"a" * 400, b"b" * 400] and (got.frame_count, got.size) == (2, 800)


def test_frames_each_under_the_limit_are_counted_together_and_only_a_head_is_kept(pair):
    push, pull = pair
    frame = b"x" * (300 << 10)
    push.send_multipart([b"PMK1", frame, frame, frame, frame])  # 4 x 300 KiB against a 1 MiB limit
    push.send_multipart([b"next"])
    got = receive(pull, 1 << 20)
    assert not got.whole and got.frame_count == 5 and got.size == 4 + 4 * (300 << 10)
    assert got.frames[0] == b"PMK1" and sum(map(len, got.frames)) <= OVERSIZED_HEAD_BYTES
    assert receive(pull, 1 << 20).frames == [b"next"]  # the rest of it was read and dropped: nothing left over


def test_a_first_frame_alone_past_the_limit(pair):
    push, pull = pair
    push.send_multipart([b"y" * 5000])
    got = receive(pull, 1000)
    assert not got.whole and got.frames == [b"y" * 5000]
    assert (got.frame_count, got.size) == (1, 5000)
