"""The mesh as a sans-I/O protocol object: events in, with explicit times; actions out (``pumpkin.actions``).

No transport, no scheduler, no clock, no sleep: each test feeds a mesh messages and timer firings at the times
it chooses and reads what the mesh asks its shell to do.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pumpkin import messages
from pumpkin.actions import SOON, Action, CancelTimer, Connect, Disconnect, Send, SendBeacon, SendKind, SetTimer
from pumpkin.automaton import Automaton, SeedInfo
from pumpkin.beacons import seeds_digest
from pumpkin.custody import RTO_INITIAL_S
from pumpkin.driver import MeshDriver
from pumpkin.failed import FailedStore
from pumpkin.mesh import ACKS, FEEDER_HEARTBEATS, GREET_ALL_UP_TO, HEARTBEAT, RETRANSMIT, RETRANSMIT_TICK_S, Mesh
from pumpkin.messages import ACK, BYE, HELLO, PING, QUERY, Origin
from pumpkin.packet import IdMaker, Packet
from pumpkin.peers import Liveness, PeerTable
from pumpkin.router import NoOutputs, Router
from pumpkin.runner import Outcome
from pumpkin.sim.clock import Clock, Scheduler
from pumpkin.simnet import FakeRunner, T, spec
from pumpkin.ticks import Ticks
from pumpkin.waiting import WaitingRoom

HEARTBEAT_S = 0.5
T0 = 1000.0
WORK = spec("work", ("RAW",), ("DONE",))


def origin(node: str, inc: int = 1, port: int = 0, digest: str = "dg") -> Origin:
    return Origin(node, f"tcp://10.0.0.1:{port or 1000 + len(node)}", None, "host-" + node, digest, inc=inc)


def make_mesh(tmp_path: Path, clock: Clock | None = None, **kw: Any) -> Mesh:
    """Node A's mesh and real router; ``clock`` is the router's (it still reads one: see README)."""
    router_clock = clock or Clock(T0)

    def make_router(remotes: Any) -> Router:
        return Router(
            "A",
            Automaton(),
            IdMaker("aaaaaaaa", seed=1),
            FailedStore(tmp_path / "failed"),
            WaitingRoom(100, 600.0),
            remotes=remotes,
            outputs=NoOutputs(),
            clock=router_clock,
        )

    return Mesh(
        node_id="A",
        host="host-A",
        me=lambda: origin("A"),
        local_seeds=list,
        local_load=dict,
        router=make_router,
        peers=PeerTable(evasive_s=3 * HEARTBEAT_S, expired_s=10 * HEARTBEAT_S),
        heartbeat_s=HEARTBEAT_S,
        **kw,
    )


def hello(node: str, inc: int = 1, port: int = 0, reply: bool = False, seeds: tuple[Any, ...] = (WORK,)) -> list[bytes]:
    summaries = [s.summary() for s in seeds]
    return messages.encode(HELLO, origin(node, inc, port), seeds=summaries, peers=[], reply=reply)


def sends(actions: list[Action], kind: SendKind | None = None) -> list[Send]:
    return [a for a in actions if isinstance(a, Send) and (kind is None or a.kind is kind)]


def said(actions: list[Action]) -> list[tuple[str, bytes, dict[str, Any]]]:
    """(to whom, which message, its body) of every protocol message among ``actions``."""
    out = []
    for a in sends(actions):
        if a.kind is not SendKind.PACKET:
            msg = messages.decode(a.frames)
            out.append((a.node, msg.kind, msg.body))
    return out


def with_peers(tmp_path: Path, *nodes: str, clock: Clock | None = None) -> Mesh:
    """A mesh whose peers ``nodes`` said HELLO at T0, each running ``work``; the actions so far are taken."""
    mesh = make_mesh(tmp_path, clock)
    for node in nodes:
        mesh.handle(hello(node), "", T0)
    mesh.take_actions()
    return mesh


def packet(n: int = 1) -> Packet:
    return Packet(f"s:{n}:0:1", T("RAW"), n, [], 64)


# -- the shape: events with explicit times in, actions out -------------------------------------------------------


def test_a_hello_asking_for_one_back_gets_a_hello_over_a_link_to_its_endpoint(tmp_path):
    mesh = make_mesh(tmp_path)
    assert mesh.take_actions() == []
    mesh.handle(hello("B", reply=True), "", T0)
    actions = mesh.take_actions()
    assert actions[0] == Connect("B", "tcp://10.0.0.1:1001")  # the link comes before anything sent on it
    assert [(to, kind, body["reply"]) for to, kind, body in said(actions)] == [("B", HELLO, False)]
    assert mesh.peers.peer("B") is not None and mesh.router.automaton.nodes_of("work") == ["B"]
    mesh.handle(hello("B"), "", T0 + 0.1)  # a HELLO that asks for nothing back gets nothing back
    assert said(mesh.take_actions()) == []


def test_our_hello_reaches_a_new_peer_before_the_packets_that_waited_for_its_seeds(tmp_path):
    # The peer routes what its seeds make of our packets with the seeds it knows then: if our packets came first,
    # an output for one of ours went only to its other consumers (a flaky multihost test found it).
    mesh = make_mesh(tmp_path)
    mesh.router.route(packet(1))  # no consumer of RAW yet: it waits
    mesh.take_actions()
    mesh.handle(hello("B", reply=True), "", T0)
    order = [(a.kind, messages.decode(a.frames).kind if a.kind is not SendKind.PACKET else "packet")
             for a in sends(mesh.take_actions())]  # fmt: skip
    assert order == [(SendKind.MESSAGE, HELLO), (SendKind.PACKET, "packet")]


def test_after_its_goodbye_a_mesh_greets_nobody(tmp_path):
    mesh = with_peers(tmp_path, "B")
    mesh.stop()
    mesh.take_actions()
    mesh.on_origin(origin("C"), "broadcast", T0 + 1)  # a beacon of a node it does not know
    mesh.handle(hello("B", reply=True), "", T0 + 1)  # a peer that took it for new again
    assert [kind for _, kind, _ in said(mesh.take_actions())] == []


def test_with_a_daemons_ticks_heartbeats_stay_on_them_however_late_each_one_fires(tmp_path):
    mesh = make_mesh(tmp_path, ticks=Ticks(HEARTBEAT_S, phase=0.1))
    mesh.start(T0)
    assert mesh.take_actions() == [SetTimer(HEARTBEAT, T0)]  # the first at once
    due = T0
    for late in (0.0003, 0.002, 0.2, 0.0):
        mesh.on_timer(HEARTBEAT, due + late)
        (timer,) = [a for a in mesh.take_actions() if isinstance(a, SetTimer)]
        assert round((timer.at - 0.1) / HEARTBEAT_S, 9) == round((timer.at - 0.1) / HEARTBEAT_S)  # on a tick
        assert HEARTBEAT_S / 2 <= timer.at - (due + late) <= HEARTBEAT_S * 1.5
        due = timer.at
    # Without ticks (the simulator's nodes): a heartbeat after the last one fired, as before.
    plain = make_mesh(tmp_path)
    plain.start(T0)
    plain.on_timer(HEARTBEAT, T0 + 0.2)
    assert plain.take_actions()[-1] == SetTimer(HEARTBEAT, T0 + 0.2 + HEARTBEAT_S)


def test_timers_are_actions_with_times_and_stop_cancels_them(tmp_path):
    mesh = with_peers(tmp_path, "B")
    mesh.start(T0)
    assert mesh.take_actions() == [SetTimer(HEARTBEAT, T0)]
    mesh.on_timer(HEARTBEAT, T0)
    actions = mesh.take_actions()
    assert actions[-1] == SetTimer(HEARTBEAT, T0 + HEARTBEAT_S)
    # B's beacons are not heard: it gets a PING asking for PINGs back ...
    assert [(to, body["echo"]) for to, kind, body in said(actions) if kind == PING] == [("B", True)]
    mesh.on_timer(HEARTBEAT, T0 + 1.2)  # (a late timer: the shell's loop was busy)
    actions = mesh.take_actions()
    # ... and, still unheard once settled (another subnet, say), a UDP beacon to its host as well.
    assert SendBeacon("10.0.0.1") in actions and actions[-1] == SetTimer(HEARTBEAT, T0 + 1.2 + HEARTBEAT_S)
    mesh.stop()
    actions = mesh.take_actions()
    assert actions[0] == CancelTimer(HEARTBEAT)
    assert [(to, kind) for to, kind, _ in said(actions)] == [("B", BYE)]
    mesh.on_timer(HEARTBEAT, T0 + HEARTBEAT_S)  # fired by a shell that had it queued already: nothing happens
    assert mesh.take_actions() == []


def test_a_silent_peers_heartbeat_makes_it_evasive_and_its_flights_go_to_another_replica(tmp_path):
    clock = Clock(T0)
    mesh = with_peers(tmp_path, "B", "C", clock=clock)
    p = packet()
    mesh.router.route(p)
    [sent] = sends(mesh.take_actions(), SendKind.PACKET)
    silent, other = sent.node, "C" if sent.node == "B" else "B"
    assert sent.keys == ((p.id, "work"),) and mesh.inflight_counts() == {silent: 1}
    t = T0 + 3 * HEARTBEAT_S + 0.01  # the silent one is not heard from for evasive_s
    mesh.handle(messages.encode(PING, origin(other), load={}), "", t - 0.1)  # the other one is
    clock.now = t
    mesh.heartbeat(t)  # what the heartbeat timer does when it fires
    actions = mesh.take_actions()
    assert mesh.peers.peer(silent).state is Liveness.EVASIVE
    assert [(a.node, a.keys) for a in sends(actions, SendKind.PACKET)] == [(other, ((p.id, "work"),))]
    assert mesh.inflight_counts() == {other: 1} and mesh.counters["rerouted"] == 1


def test_a_new_incarnation_gets_disconnect_and_connect_before_anything_is_sent_to_it(tmp_path):
    mesh = with_peers(tmp_path, "B", "C")
    for n in range(4):
        mesh.router.route(packet(n))
    mesh.take_actions()
    assert sorted(mesh.inflight_counts().values()) == [2, 2]
    mesh.on_origin(origin("B", inc=2, port=2002), "broadcast", T0 + 1)  # B restarted, on another port
    actions = mesh.take_actions()
    to_b = [a for a in actions if getattr(a, "node", "") == "B"]
    assert to_b[:2] == [Disconnect("B"), Connect("B", "tcp://10.0.0.1:2002")]
    assert [messages.decode(a.frames).kind for a in to_b[2:]] == [HELLO]
    # What the old B had not acknowledged went to C at once, before B's successor was even greeted.
    assert [a.node for a in sends(actions, SendKind.PACKET)] == ["C", "C"]
    assert mesh.inflight_counts() == {"C": 4} and mesh.counters["restarts"] == 1


def test_a_lost_ack_is_answered_again_when_the_sender_asks(tmp_path):
    mesh = with_peers(tmp_path, "B")
    runner = FakeRunner(spec("sink", ("RAW",)))
    mesh.router.local["sink"] = runner  # type: ignore[assignment]
    mesh.router.automaton.add("A", SeedInfo("sink", (T("RAW"),), ()))
    p = packet()
    mesh.on_packet(p, "sink", "B", T0 + 1)
    assert runner.got == [p] and mesh.take_actions() == []  # held here: no ACK while the sink has it
    mesh.router.on_outcome(Outcome(runner, runner.got.pop()))  # type: ignore[arg-type]
    assert mesh.take_actions() == [SetTimer(ACKS, SOON)]  # the ACKs of this turn leave together
    mesh.on_timer(ACKS, T0 + 1.001)
    assert [(to, kind, body["acks"]) for to, kind, body in said(mesh.take_actions())] == [("B", ACK, [[p.id, "sink"]])]
    # That ACK was lost. B asks after its timeout; A took the packet and is done with it: ACK again, no rerun.
    mesh.handle(messages.encode(QUERY, origin("B"), ask=[[p.id, "sink"]]), "", T0 + 2.5)
    assert [(kind, body["acks"], body["held"], body["unknown"]) for _, kind, body in said(mesh.take_actions())] == [
        (ACK, [[p.id, "sink"]], [], [])
    ]
    mesh.on_packet(p, "sink", "B", T0 + 3)  # and the packet itself, sent again, is a duplicate: not run twice
    assert runner.got == [] and mesh.counters["duplicates"] == 1


def test_an_overdue_packet_is_asked_about_and_the_answer_ends_its_flight(tmp_path):
    clock = Clock(T0)
    mesh = with_peers(tmp_path, "B", clock=clock)
    p = packet()
    mesh.router.route(p)
    actions = mesh.take_actions()
    assert SetTimer(RETRANSMIT, T0 + RETRANSMIT_TICK_S) in actions
    mesh.on_timer(RETRANSMIT, T0 + RETRANSMIT_TICK_S)  # not due yet: the timer is only set again
    assert mesh.take_actions() == [SetTimer(RETRANSMIT, T0 + RETRANSMIT_TICK_S + RETRANSMIT_TICK_S)]
    t = T0 + RTO_INITIAL_S + 0.01
    mesh.on_timer(RETRANSMIT, t)
    actions = mesh.take_actions()
    assert [(to, kind, body["ask"]) for to, kind, body in said(actions)] == [("B", QUERY, [[p.id, "work"]])]
    mesh.handle(messages.encode(ACK, origin("B"), acks=[[p.id, "work"]], held=[], unknown=[]), "", t + 0.01)
    assert mesh.inflight_counts() == {}
    mesh.on_timer(RETRANSMIT, t + RETRANSMIT_TICK_S)
    assert mesh.take_actions() == []  # nothing in flight: no timer is set


def test_a_peer_that_answers_nothing_we_send_gets_one_packet_at_a_time_until_it_answers(tmp_path):
    # B is heard (its PINGs come) but nothing we send reaches it (its firewall drops our connections).
    clock = Clock(T0)
    mesh = with_peers(tmp_path, "B", "C", clock=clock)

    def answer_for(node: str, t: float) -> None:  # the peer acknowledges everything we sent it
        keys = [[pid, seed] for pid, seed in mesh.peers.peer(node).inflight.flights]
        mesh.handle(messages.encode(ACK, origin(node), acks=keys, held=[], unknown=[]), "", t)

    for n in range(4):
        mesh.router.route(packet(n))
    answer_for("C", T0 + 0.01)
    b = mesh.peers.peer("B")
    assert len(b.inflight) == 2
    t = T0
    while len(b.inflight) and t < T0 + 30:  # B is asked about them, backing off, and never answers
        t += 0.25
        clock.now = t
        for node in "BC":
            mesh.handle(messages.encode(PING, origin(node), load={}), "", t)
        mesh.on_timer(RETRANSMIT, t)
        answer_for("C", t)  # they went to C, which answers
    assert not len(b.inflight) and mesh.counters["rerouted"] == 2 and b.unanswering
    assert next(p for p in mesh.peers.summaries(t, t) if p["id"] == "B")["answering"] is False
    mesh.take_actions()
    for n in range(4, 10):
        mesh.router.route(packet(n))
    assert [a.node for a in sends(mesh.take_actions(), SendKind.PACKET)].count("B") == 1  # one at a time
    answer_for("B", t + 0.1)  # it answers again (its data port was opened)
    assert not b.unanswering and mesh.has_room("B", "work")


def test_a_packet_the_link_refused_goes_to_another_replica(tmp_path):
    mesh = with_peers(tmp_path, "B", "C")
    mesh.router.route(packet())
    [refused] = sends(mesh.take_actions(), SendKind.PACKET)
    mesh.on_unsent(refused, T0)  # its link's backlog was full: the shell says so
    other = "C" if refused.node == "B" else "B"
    assert [a.node for a in sends(mesh.take_actions(), SendKind.PACKET)] == [other]
    assert mesh.inflight_counts() == {other: 1} and mesh.counters["unsent_packets"] == 1


# -- which peers get a PING each heartbeat: only those that need one ---------------------------------------------


def mesh_with_peer(tmp_path: Path) -> Mesh:
    mesh = make_mesh(tmp_path)
    mesh.learn("p", "tcp://10.0.0.1:1001", [], "hello", T0)  # a peer, linked to (as after its HELLO)
    mesh.peers.entries["p"].seeds_digest = "dg"  # known, with the seeds its beacons announce
    mesh.take_actions()
    return mesh


def heartbeat(
    mesh: Mesh, load: dict[str, float], done: dict[str, int] | None = None, at: float = T0
) -> list[tuple[str, Any]]:
    mesh._ping("p", at, load, {}, only_if_needed=True, done=done or {})
    return [(to, body) for to, kind, body in said(mesh.take_actions()) if kind == PING]


def test_a_peer_whose_beacons_we_hear_gets_no_ping_while_we_are_idle(tmp_path):
    mesh = mesh_with_peer(tmp_path)
    # Not heard by beacon yet: a PING, asking for PINGs back.
    assert heartbeat(mesh, {"greet": 0.0}) == [
        ("p", {**origin("A").fields(), "load": {}, "echo": True, "done": {}})  # our load: none of its business
    ]
    mesh.on_origin(origin("p"), "broadcast", T0)  # its beacon
    assert heartbeat(mesh, {"greet": 0.0}) == []


def feeding(mesh: Mesh, at: float = T0) -> None:
    """Peer p sends us packets (as of ``at``): our load is news to it."""
    mesh.peers.peer("p").fed_at = at


def test_load_travels_while_busy_and_once_more_when_back_to_zero(tmp_path):
    mesh = mesh_with_peer(tmp_path)
    mesh.on_origin(origin("p"), "broadcast", T0)
    feeding(mesh)
    pings = [heartbeat(mesh, load) for load in ({"greet": 2.0}, {"greet": 2.0}, {"greet": 0.0}, {"greet": 0.0})]
    assert [[body["load"] for _, body in p] for p in pings] == [
        [{"greet": 2.0}],
        [{"greet": 2.0}],
        [{"greet": 0.0}],
        [],
    ]


def test_our_load_goes_only_to_peers_that_send_us_packets_and_once_empty_when_they_stop(tmp_path):
    mesh = mesh_with_peer(tmp_path)
    mesh.on_origin(origin("p"), "broadcast", T0)
    assert heartbeat(mesh, {"greet": 2.0}) == []  # busy, but p sends us nothing: no PING each heartbeat
    feeding(mesh)
    assert [body["load"] for _, body in heartbeat(mesh, {"greet": 2.0})] == [{"greet": 2.0}]
    later = T0 + (FEEDER_HEARTBEATS + 1) * HEARTBEAT_S  # p stopped sending: it is told we show no load, once
    mesh.on_origin(origin("p"), "broadcast", later)  # (its beacons still heard: no PING for liveness)
    assert [body["load"] for _, body in heartbeat(mesh, {"greet": 2.0}, at=later)] == [{}]
    assert heartbeat(mesh, {"greet": 2.0}, at=later + HEARTBEAT_S) == []


def test_a_ping_the_link_refused_is_sent_at_the_next_heartbeat(tmp_path):
    mesh = mesh_with_peer(tmp_path)
    mesh.on_origin(origin("p"), "broadcast", T0)
    feeding(mesh)
    heartbeat(mesh, {"greet": 2.0})
    mesh._ping("p", T0, {"greet": 0.0}, {}, only_if_needed=True, done={})
    [ping] = sends(mesh.take_actions())
    mesh.on_unsent(ping, T0)  # the peer never learnt that we are idle again ...
    assert [body["load"] for _, body in heartbeat(mesh, {"greet": 0.0})] == [{"greet": 0.0}]  # ... so it is told now
    assert heartbeat(mesh, {"greet": 0.0}) == []


def test_a_peer_that_does_not_hear_our_beacons_asks_and_gets_pings(tmp_path):
    mesh = mesh_with_peer(tmp_path)
    mesh.on_origin(origin("p"), "broadcast", T0)
    mesh.handle(messages.encode(PING, origin("p"), load={}, echo=True), "", T0)
    assert [to for to, _, _ in said(mesh.take_actions())] == ["p"]  # answered at once
    mesh.handle(messages.encode(PING, origin("p"), load={}, echo=True), "", T0)
    assert said(mesh.take_actions()) == []  # not twice: from now on the heartbeat pings it
    assert [(to, body["echo"]) for to, body in heartbeat(mesh, {})] == [("p", False)]


def test_seed_counts_travel_when_they_change_so_every_page_shows_the_whole_network(tmp_path):
    mesh = mesh_with_peer(tmp_path)
    mesh.on_origin(origin("p"), "broadcast", T0)  # its beacons are heard: no ping needed for liveness
    beats = [(0.0, {"greet": 5}), (0.5, {"greet": 5}), (1.0, {"greet": 9}), (2.0, {"greet": 9})]
    pings = [heartbeat(mesh, {"greet": 0.0}, done, at=T0 + t) for t, done in beats]
    # On their own, counts go every DONE_HEARTBEATS (2 s) at most: N^2 PINGs a heartbeat on a busy network else.
    assert [[body["done"] for _, body in p] for p in pings] == [[{"greet": 5}], [], [], [{"greet": 9}]]
    mesh.handle(messages.encode(PING, origin("p"), load={}, done={"shout": 12}), "", T0)
    assert mesh.done_of("p") == {"shout": 12} and mesh.done_of("nobody") == {}


def test_origins_that_never_answer_are_bounded_and_forgotten(tmp_path):
    from pumpkin.mesh import HELLO_GIVE_UP_S, MAX_UNANSWERED_ORIGINS

    mesh = make_mesh(tmp_path)
    for i in range(MAX_UNANSWERED_ORIGINS + 50):  # made-up origins: nobody is there to answer
        mesh.on_origin(Origin(f"ghost{i}", f"tcp://10.9.9.9:{1000 + i}", None, "h", "dg"), "broadcast", T0)
    assert len(mesh.peers) == MAX_UNANSWERED_ORIGINS and mesh.counters["origins_ignored"] == 50
    assert len(mesh.links) == MAX_UNANSWERED_ORIGINS and mesh.peers.peers == {}
    mesh.take_actions()
    mesh.heartbeat(T0 + HELLO_GIVE_UP_S + 1)
    assert len(mesh.peers) == 0 and mesh.links == {}
    assert mesh.counters["origins_given_up"] == MAX_UNANSWERED_ORIGINS
    assert sum(isinstance(a, Disconnect) for a in mesh.take_actions()) == MAX_UNANSWERED_ORIGINS


def test_a_peers_load_is_what_its_last_ping_said_and_shows_in_its_summary(tmp_path):
    mesh = mesh_with_peer(tmp_path)
    mesh.handle(messages.encode(PING, origin("p"), load={"greet": 2.5}, done={}), "", T0)
    peer = mesh.peers.peers["p"]
    assert peer.load == {"greet": 2.5} and mesh.load_of("p", "greet") == 2.5
    assert mesh.peers.summaries(T0, 0.0)[0]["load"] == {"greet": 2.5}
    mesh.handle(messages.encode(PING, origin("p"), load={}, done={}), "", T0)  # idle again
    assert peer.load == {} and mesh.load_of("p", "greet") == 0.0


def test_a_peer_says_how_it_was_found(tmp_path):
    from tests.unit.fakenet import Net

    net = Net(tmp_path)
    a, b, c = net.add("A"), net.add("B"), net.add("C")
    a.mesh.on_origin(b.origin(), "broadcast", net.clock.now)  # A hears B's beacon; B hears of A by A's HELLO
    c.mesh.on_origin(a.origin(), "mdns", net.clock.now)
    net.scheduler.run_for(0.05)
    assert a.peers.peers["B"].via == "broadcast" and b.peers.peers["A"].via == "hello"
    assert c.peers.peers["A"].via == "mdns"
    # A's HELLO to C lists B: C greets B from what it heard by gossip.
    a.mesh.announce()
    net.scheduler.run_for(0.05)
    assert c.peers.peers["B"].via == "gossip"


def test_a_crashed_heartbeat_is_reported_counted_and_the_next_one_still_comes(tmp_path):
    reported: list[tuple[str, str]] = []
    mesh = make_mesh(tmp_path, report=lambda what, error: reported.append((what, str(error))))

    def crash(now: float) -> None:
        raise RuntimeError("injected")

    mesh.heartbeat = crash  # type: ignore[method-assign]
    mesh.start(T0)
    mesh.take_actions()
    mesh.on_timer(HEARTBEAT, T0)
    assert mesh.take_actions() == [SetTimer(HEARTBEAT, T0 + HEARTBEAT_S)]  # set again all the same
    assert reported == [("mesh heartbeat", "injected")] and mesh.counters["heartbeat_errors"] == 1


def test_a_crashed_retransmit_round_is_reported_and_the_timer_set_again(tmp_path):
    reported: list[str] = []
    mesh = with_peers(tmp_path, "B")
    mesh.report = lambda what, error: reported.append(what)
    mesh.router.route(packet())
    mesh.take_actions()

    def crash(now: float) -> bool:
        raise RuntimeError("injected")

    mesh.retransmit = crash  # type: ignore[method-assign]
    mesh.on_timer(RETRANSMIT, T0 + RETRANSMIT_TICK_S)
    assert mesh.take_actions() == [SetTimer(RETRANSMIT, T0 + RETRANSMIT_TICK_S + RETRANSMIT_TICK_S)]
    assert reported == ["mesh retransmit"] and mesh.counters["retransmit_errors"] == 1


# -- the driver: a shell doing the actions at once, feeding refusals and timers back --------------------------


class RefusingLinks:
    """Links that take nothing for the nodes in ``full`` (their backlog is full) and record what they take."""

    def __init__(self, *full: str) -> None:
        self.full = set(full)
        self.taken: list[tuple[str, str, bytes]] = []  # (how, node, first frame)
        self.connected: dict[str, str] = {}

    def connect(self, node: str, endpoint: str) -> None:
        self.connected[node] = endpoint

    def disconnect(self, node: str) -> None:
        self.connected.pop(node, None)

    def _take(self, how: str, node: str, frames: list[bytes]) -> bool:
        if node in self.full:
            return False
        self.taken.append((how, node, bytes(frames[0])))
        return True

    def send(self, node: str, frames: list[bytes]) -> bool:
        return self._take("message", node, frames)

    def send_packet(self, node: str, frames: list[bytes]) -> bool:
        return self._take("packet", node, frames)

    def send_control(self, node: str, frames: list[bytes]) -> bool:
        return self._take("control", node, frames)


def driven(tmp_path: Path, links: RefusingLinks) -> tuple[MeshDriver, Scheduler]:
    clock = Clock(T0)
    scheduler = Scheduler(clock)
    driver = MeshDriver(
        links=links, scheduler=scheduler, clock=clock, mesh=lambda wake: make_mesh(tmp_path, clock, wake=wake)
    )
    for node in ("B", "C"):
        driver.mesh.handle(hello(node), "", T0)
    return driver, scheduler


def test_the_driver_sends_at_once_and_a_refused_packet_goes_to_the_other_replica_in_the_same_run(tmp_path):
    links = RefusingLinks("B")
    driver, _ = driven(tmp_path, links)
    mesh = driver.mesh
    for n in range(4):
        mesh.router.route(packet(n))
    assert mesh.take_actions() == []  # all done already, as they came
    assert [node for how, node, _ in links.taken if how == "packet"] == ["C"] * 4
    assert mesh.inflight_counts() == {"C": 4} and mesh.counters["unsent_packets"] >= 1
    assert links.connected == {"B": "tcp://10.0.0.1:1001", "C": "tcp://10.0.0.1:1001"}


def test_the_driver_fires_timers_and_a_refused_ping_is_sent_at_the_next_heartbeat(tmp_path):
    links = RefusingLinks()
    driver, scheduler = driven(tmp_path, links)
    mesh = driver.mesh
    mesh.on_origin(origin("B"), "broadcast", T0)  # B's beacons are heard: B needs no PING while we are idle ...
    mesh.peers.peer("B").fed_at = T0  # ... it sends us packets
    mesh.start(T0)
    scheduler.run_for(0.01)
    links.taken.clear()
    links.full.add("B")
    mesh.local_load = lambda: {"greet": 1.0}  # ... but busy, we tell B our load, and B's link is full
    scheduler.run_for(HEARTBEAT_S)
    assert mesh.peers.peer("B").ping_unsent and mesh.counters["unsent"] >= 1
    links.full.clear()
    mesh.local_load = dict  # idle again: B still has to hear it, once
    mesh.on_origin(origin("B"), "broadcast", T0 + HEARTBEAT_S)
    scheduler.run_for(HEARTBEAT_S)
    assert ("control", "B", PING) in links.taken and not mesh.peers.peer("B").ping_unsent
    driver.halt()
    assert driver.timers == {}


# -- an idle LAN: beacons of known peers cost nothing (issue 14's idle cost) -----------------------------------


def test_a_known_beacon_does_constant_work_no_replan_and_no_message(tmp_path):
    mesh = with_peers(tmp_path, "B")
    replans: list[bool] = []
    mesh.router.replan = lambda force=False: replans.append(force)  # type: ignore[method-assign]
    mesh.on_origin(origin("B"), "broadcast", T0 + 0.1)
    mesh.take_actions()
    peers, counters = len(mesh.peers.entries), dict(mesh.counters)
    for seq in range(1, 1001):  # the same incarnation and seeds digest, as every beacon of an idle peer
        mesh.on_origin(Origin(**{**origin("B").__dict__, "seq": seq}), "broadcast", T0 + 0.2)
    assert replans == [] and mesh.take_actions() == []
    assert len(mesh.peers.entries) == peers and dict(mesh.counters) == counters
    peer = mesh.peers.peer("B")
    assert peer is not None and peer.last_heard == T0 + 0.2


def test_a_peer_first_heard_of_by_gossip_is_not_gossiped_about_once_its_beacons_are_heard(tmp_path):
    from pumpkin.mesh import GOSSIP_HEARTBEATS

    mesh = with_peers(tmp_path, "B")
    peer = mesh.peers.peer("B")
    assert peer is not None
    peer.found_via = "gossip"  # news of it came in another peer's HELLO
    mesh.start(T0)
    mesh.on_timer(HEARTBEAT, T0)  # B, new to us by its own HELLO, is announced to the others once: as it should
    mesh.take_actions()
    now = T0 + HEARTBEAT_S
    for _ in range(3 * GOSSIP_HEARTBEATS):
        mesh.on_origin(origin("B"), "broadcast", now)  # then its own beacons: the whole LAN hears it
        mesh.on_timer(HEARTBEAT, now)
        now += HEARTBEAT_S
    assert [body for _, kind, body in said(mesh.take_actions()) if kind == HELLO] == []  # no HELLO re-announcing


# -- gossip: what a peer hears of by itself is left out of the HELLOs to it ---------------------------------------


def gossiped(mesh: Mesh, to: str) -> list[str]:
    """The peers our HELLO to ``to`` lists."""
    mesh._send_hello(origin(to), T0 + 5, reply=False, force=True)
    [body] = [body for node, kind, body in said(mesh.take_actions()) if kind == HELLO and node == to]
    return sorted(entry[0] for entry in body["peers"])


def test_a_lan_peer_is_told_only_of_the_peers_it_cannot_hear_itself(tmp_path):
    mesh = make_mesh(tmp_path)
    for node, via in (("B", "broadcast"), ("C", "broadcast"), ("D", "unicast"), ("E", "static")):
        mesh.on_origin(replace(origin(node), seq=1), via, T0)  # heard of: a HELLO to each
        mesh.handle(hello(node), "", T0)  # and its HELLO back
    mesh.take_actions()
    # B hears C's broadcasts as we do; D (a supernode beacon from another subnet) and E (static) it may not.
    assert gossiped(mesh, "B") == ["D", "E"]
    assert gossiped(mesh, "D") == ["B", "C", "D", "E"]  # off our LAN: everything (itself aside is its business)
    mesh.one_lan = False  # on two networks: B may be on the other one, where C is not heard
    assert gossiped(mesh, "B") == ["B", "C", "D", "E"]


# -- a crowded LAN: peers learnt from their beacons ---------------------------------------------------------------


def beacon_of(node: str, seeds: list[dict[str, Any]], seq: int = 1, digest: str = "") -> Origin:
    return replace(origin(node), seq=seq, seeds=seeds, digest=digest or seeds_digest(seeds))


def test_a_newcomer_that_has_not_heard_a_paced_lan_yet_is_learnt_but_a_deaf_one_is_greeted(tmp_path):
    # A crowded LAN whose beacons come every 3 heartbeats (paced). A newcomer beacons every heartbeat and counts
    # what it heard in its last two: after 3 beacons it has heard few, deaf or not. Judged after 3 of the LAN's.
    mesh = make_mesh(tmp_path)
    for i in range(GREET_ALL_UP_TO + 4):
        paced = replace(beacon_of(f"P{i}", [WORK.summary()], seq=50), every=3 * HEARTBEAT_S, hears=GREET_ALL_UP_TO + 4)
        mesh.on_origin(paced, "broadcast", T0)
    mesh.take_actions()
    before = mesh.counters["learnt_from_beacons"]
    for seq, node in ((3, "N"), (8, "M")):  # newcomers that hear 2 so far
        mesh.on_origin(replace(beacon_of(node, [WORK.summary()], seq=seq), hears=2), "broadcast", T0 + 1)
    assert said(mesh.take_actions()) == [] and mesh.counters["learnt_from_beacons"] == before + 2
    mesh.on_origin(replace(beacon_of("D", [WORK.summary()], seq=9), hears=2), "broadcast", T0 + 2)  # 3 periods
    assert [(to, kind) for to, kind, _ in said(mesh.take_actions())] == [("D", HELLO)]  # deaf: greeted


def test_past_the_first_peers_a_beacon_with_seeds_makes_a_peer_with_no_hello_and_no_link(tmp_path):
    mesh = make_mesh(tmp_path)
    first = [f"P{i}" for i in range(GREET_ALL_UP_TO)]
    for node in first:  # the first ones heard are greeted, as on a small LAN
        mesh.on_origin(beacon_of(node, [WORK.summary()]), "broadcast", T0)
    assert sorted(to for to, kind, _ in said(mesh.take_actions()) if kind == HELLO) == sorted(first)
    mesh.on_origin(beacon_of("B", [WORK.summary()]), "broadcast", T0 + 0.1)
    assert mesh.take_actions() == []  # learnt: no HELLO, no link
    peer = mesh.peers.peer("B")
    assert peer is not None and peer.state is Liveness.ALIVE and peer.via == "broadcast"
    assert mesh.router.automaton.nodes_of("work") == ["B"] and peer.workers == {"work": 1}
    # A beacon whose seeds do not parse, or do not match its digest, is reported, and its sender greeted instead.
    mesh.on_origin(beacon_of("C", [{"name": "bad", "inputs": [7]}]), "broadcast", T0 + 0.2)
    mesh.on_origin(beacon_of("D", [{"name": "other"}], digest=seeds_digest([WORK.summary()])), "broadcast", T0 + 0.2)
    assert [(to, kind) for to, kind, _ in said(mesh.take_actions())] == [("C", HELLO), ("D", HELLO)]
    assert mesh.counters["rejected"] == 2 and mesh.peers.peer("C") is None and mesh.peers.peer("D") is None
    # The first packet to B opens its link, then our HELLO (asking for one back) goes before the packet.
    assert mesh.send_packet("B", "work", packet(1), T0 + 0.3)
    actions = mesh.take_actions()
    assert actions[0] == Connect("B", "tcp://10.0.0.1:1001")
    kinds = [(a.node, a.kind) for a in actions if isinstance(a, Send)]
    assert kinds == [("B", SendKind.MESSAGE), ("B", SendKind.PACKET)]
    assert said(actions)[0][1] == HELLO and said(actions)[0][2]["reply"] is True
    assert mesh.send_packet("B", "work", packet(2), T0 + 0.4)  # once greeted, packets only
    assert [a.kind for a in mesh.take_actions() if isinstance(a, Send)] == [SendKind.PACKET]
