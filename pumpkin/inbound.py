"""Inbound dispatch: each message from the inbox goes to the part that reads it.

Peer-protocol messages (``messages.KINDS``) go to the mesh, file chunks (``files.KINDS``) to the file mover, trace
questions and answers (``trace.KINDS``) to the tracer, and
everything else is a batch of packets for the router, through the mesh (which owns custody and ACKs). Bytes that
are not what they claim are kept in failed/ with the reason and counted, never raised: input from the network
never crashes the daemon. In a keyed network a message from a key no member's HELLO bound is only counted.
"""

from __future__ import annotations

from . import files, messages, trace
from . import packet as packets
from .errors import PacketError
from .failed import FailedStore
from .filemover import FileMover
from .mesh import Mesh


class Inbound:
    """Dispatches one node's inbound messages (``on_frames``) and counts what it refuses."""

    def __init__(
        self, mesh: Mesh, files: FileMover, failed: FailedStore, message_max_bytes: int, tracer: trace.Tracer
    ) -> None:
        self.mesh = mesh
        self.tracer = tracer
        self.files = files
        self.failed = failed
        self.message_max_bytes = message_max_bytes
        self.bad_inbound = 0  # malformed or oversized messages, kept in failed/
        self.from_strangers = 0  # messages on the inbox from a key that is no member's (keyed network)
        self.forged_sender = 0  # packets from a member naming another node as their sender

    def on_frames(self, frames: list[bytes], key: str, now: float) -> None:
        """A message from the inbox; ``key``: the CurveZMQ key it came with (a keyed network); ``now``: the time."""
        mesh = self.mesh
        # Every kind is 4 bytes: a packed batch's one frame (megabytes, maybe) is never hashed to look it up.
        kind = bytes(frames[0]) if frames and len(frames[0]) == 4 else b""
        if kind in messages.KINDS:
            mesh.handle(frames, key, now)
            return
        member = mesh.member(key) if mesh.keyed else None
        if kind in files.KINDS:
            self.files.handle(frames, member, mesh.keyed)
            return
        if frames and bytes(frames[0]) in trace.KINDS:
            self.tracer.handle(frames, member, mesh.keyed)
            return
        if mesh.keyed and member is None:
            # Not from a member (a key no valid HELLO bound): not read at all, only counted.
            self.from_strangers += 1
            return
        batch = packets.split_batch(frames)
        last_sender: str | None = None  # (a peer is heard once per message, not once per packet of it)
        for one in batch:
            try:
                packet, to, sender = packets.decode_addressed(one)
            except PacketError as exc:
                self.bad_inbound += 1
                self.failed.keep_raw(one, "bad-packet", f"malformed packet from the network: {exc}")
                continue
            if member is not None and sender != member:
                self.forged_sender += 1  # a member claiming another's packets: refused
                continue
            mesh.on_packet(packet, to, sender, now, alone=len(batch) == 1, heard=sender != last_sender)
            last_sender = sender

    def on_oversized(self, head: list[bytes], frames: int, size: int) -> None:
        """A message past ``limits.message_max_bytes``: its head is kept in failed/, the rest was dropped."""
        self.bad_inbound += 1
        limit = self.message_max_bytes
        why = f"a message of {frames} frame(s) from the network exceeds limits.message_max_bytes ({limit}): dropped"
        self.failed.keep_raw(head, "oversized-message", why, total_bytes=size)
