"""Which peers get a PING each heartbeat: only those that need one (mesh's policy, with a recording transport)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pumpkin import messages
from pumpkin.mesh import Mesh
from pumpkin.messages import PING, Origin
from pumpkin.peers import PeerTable
from tests.unit.fakenet import Clock, Scheduler

HEARTBEAT_S = 0.5


class Links:
    """Stands in for the transport at its seam: records what would be sent to whom."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.links: dict[str, str] = {}

    def send_control(self, node: str, frames: list[bytes]) -> bool:
        self.sent.append((node, messages.decode(frames).body))
        return True

    send = send_control

    def connect(self, node: str, endpoint: str) -> None:
        pass

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        sent, self.sent = self.sent, []
        return sent


def origin(node: str) -> Origin:
    return Origin(node, f"tcp://10.0.0.1:{1000 + len(node)}", None, "host-" + node, "dg")


def mesh_with_peer() -> tuple[Mesh, Links]:
    links = Links()
    clock = Clock()
    peers = PeerTable(evasive_s=3 * HEARTBEAT_S, expired_s=10 * HEARTBEAT_S, clock=clock)
    router = SimpleNamespace(replan=lambda force=False: None)
    mesh = Mesh(
        node_id="me",
        host="host-me",
        me=lambda: origin("me"),
        local_seeds=list,
        local_load=dict,
        transport=links,
        router=lambda remotes: router,
        peers=peers,
        learn=None,
        forget=None,
        heartbeat_s=HEARTBEAT_S,
        scheduler=Scheduler(clock),
        clock=clock,
    )
    peer, _ = peers.heard("p", "tcp://10.0.0.1:1001", "hello")
    peer.seeds_digest = "dg"  # known, with the seeds its beacons announce
    return mesh, links


def heartbeat(mesh: Mesh, load: dict[str, float], done: dict[str, int] | None = None) -> None:
    mesh._ping("p", mesh.clock(), load, {}, only_if_needed=True, done=done or {})


def test_a_peer_whose_beacons_we_hear_gets_no_ping_while_we_are_idle():
    mesh, links = mesh_with_peer()
    heartbeat(mesh, {"greet": 0.0})  # not heard by beacon yet: a PING, asking for PINGs back
    assert links.take() == [("p", {**origin("me").fields(), "load": {"greet": 0.0}, "echo": True, "done": {}})]
    mesh.on_origin(origin("p"), "broadcast")  # its beacon
    heartbeat(mesh, {"greet": 0.0})
    assert links.take() == []


def test_load_travels_while_busy_and_once_more_when_back_to_zero():
    mesh, links = mesh_with_peer()
    mesh.on_origin(origin("p"), "broadcast")
    heartbeat(mesh, {"greet": 2.0})
    heartbeat(mesh, {"greet": 2.0})
    heartbeat(mesh, {"greet": 0.0})
    heartbeat(mesh, {"greet": 0.0})
    assert [body["load"] for _, body in links.take()] == [{"greet": 2.0}, {"greet": 2.0}, {"greet": 0.0}]


def test_a_peer_that_does_not_hear_our_beacons_asks_and_gets_pings():
    mesh, links = mesh_with_peer()
    mesh.on_origin(origin("p"), "broadcast")
    mesh.handle(messages.encode(PING, origin("p"), load={}, echo=True))
    assert [node for node, _ in links.take()] == ["p"]  # answered at once
    mesh.handle(messages.encode(PING, origin("p"), load={}, echo=True))
    assert links.take() == []  # not twice: from now on the heartbeat pings it
    heartbeat(mesh, {})
    assert [(node, body["echo"]) for node, body in links.take()] == [("p", False)]


def test_seed_counts_travel_when_they_change_so_every_page_shows_the_whole_network():
    mesh, links = mesh_with_peer()
    mesh.on_origin(origin("p"), "broadcast")  # its beacons are heard: no ping needed for liveness
    heartbeat(mesh, {"greet": 0.0}, {"greet": 5})
    heartbeat(mesh, {"greet": 0.0}, {"greet": 5})  # unchanged: nothing to say
    heartbeat(mesh, {"greet": 0.0}, {"greet": 9})
    assert [body["done"] for _, body in links.take()] == [{"greet": 5}, {"greet": 9}]
    mesh.handle(messages.encode(PING, origin("p"), load={}, done={"shout": 12}))
    assert mesh.done_of("p") == {"shout": 12} and mesh.done_of("nobody") == {}


def test_origins_that_never_answer_are_bounded_and_forgotten(tmp_path):
    from pumpkin.mesh import HELLO_GIVE_UP_S, MAX_UNANSWERED_ORIGINS
    from tests.unit.fakenet import Net

    net = Net(tmp_path)
    a = net.add("A")
    for i in range(MAX_UNANSWERED_ORIGINS + 50):  # made-up origins: nobody is there to answer
        a.mesh.on_origin(Origin(f"ghost{i}", f"tcp://10.9.9.9:{1000 + i}", None, "h", "dg"), "broadcast")
    assert len(a.mesh.remotes) == MAX_UNANSWERED_ORIGINS and a.mesh.counters["origins_ignored"] == 50
    assert len(a.mesh.transport.links) == MAX_UNANSWERED_ORIGINS
    net.clock.now += HELLO_GIVE_UP_S + 1
    a.mesh.heartbeat()
    assert a.mesh.remotes == {} and a.mesh.transport.links == {}
    assert a.mesh.counters["origins_given_up"] == MAX_UNANSWERED_ORIGINS


def test_a_peers_load_is_what_its_last_ping_said_and_shows_in_its_summary():
    mesh, _ = mesh_with_peer()
    mesh.handle(messages.encode(PING, origin("p"), load={"greet": 2.5}, done={}))
    peer = mesh.peers.peers["p"]
    assert peer.load == {"greet": 2.5} and mesh.load_of("p", "greet") == 2.5
    assert mesh.peers.summaries()[0]["load"] == {"greet": 2.5}
    mesh.handle(messages.encode(PING, origin("p"), load={}, done={}))  # idle again
    assert peer.load == {} and mesh.load_of("p", "greet") == 0.0


def test_a_peer_says_how_it_was_found(tmp_path):
    from tests.unit.fakenet import Net

    net = Net(tmp_path)
    a, b, c = net.add("A"), net.add("B"), net.add("C")
    a.mesh.on_origin(b.origin(), "broadcast")  # A hears B's beacon; B hears of A by A's HELLO
    c.mesh.on_origin(a.origin(), "mdns")
    net.scheduler.run_for(0.05)
    assert a.peers.peers["B"].via == "broadcast" and b.peers.peers["A"].via == "hello"
    assert c.peers.peers["A"].via == "mdns"
    # A's HELLO to C lists B: C greets B from what it heard by gossip.
    a.mesh.announce()
    net.scheduler.run_for(0.05)
    assert c.peers.peers["B"].via == "gossip"


def test_a_crashed_heartbeat_is_reported_counted_and_the_next_one_still_comes():
    mesh, _ = mesh_with_peer()
    reported: list[tuple[str, BaseException]] = []
    mesh.report = lambda what, error: reported.append((what, error))
    beats: list[float] = []

    def heartbeat() -> None:
        beats.append(mesh.clock())
        if len(beats) == 2:
            raise RuntimeError("injected")

    mesh.heartbeat = heartbeat  # type: ignore[method-assign]
    mesh.start()
    mesh.scheduler.run_for(4 * HEARTBEAT_S + 0.01)  # type: ignore[attr-defined]
    assert len(beats) == 5  # at 0, 0.5 (crashed), 1.0, 1.5, 2.0: the timer was armed again
    assert [(what, str(error)) for what, error in reported] == [("mesh heartbeat", "injected")]
    assert mesh.counters["heartbeat_errors"] == 1
    mesh.stop()
    mesh.scheduler.run_for(4 * HEARTBEAT_S)  # type: ignore[attr-defined]
    assert len(beats) == 5  # stopped: no more


def test_a_crashed_retransmit_round_is_reported_and_the_timer_armed_again():
    mesh, _ = mesh_with_peer()
    reported: list[str] = []
    mesh.report = lambda what, error: reported.append(what)
    rounds: list[float] = []

    def retransmit() -> bool:
        rounds.append(mesh.clock())
        if len(rounds) == 1:
            raise RuntimeError("injected")
        return len(rounds) < 3

    mesh.retransmit = retransmit  # type: ignore[method-assign]
    mesh._arm_retransmit()
    mesh.scheduler.run_for(10.0)  # type: ignore[attr-defined]
    assert len(rounds) == 3 and reported == ["mesh retransmit"]
    assert mesh.counters["retransmit_errors"] == 1


def test_a_known_beacon_does_constant_work_no_replan_and_no_message():
    mesh, links = mesh_with_peer()
    replans: list[bool] = []
    mesh.router = SimpleNamespace(replan=lambda force=False: replans.append(force))
    mesh.on_origin(origin("p"), "broadcast")
    links.take()
    remotes, counters = len(mesh.remotes), dict(mesh.counters)
    for seq in range(1, 1001):  # the same incarnation and seeds digest, as every beacon of an idle peer
        mesh.on_origin(Origin(**{**origin("p").__dict__, "seq": seq}), "broadcast")
    assert replans == [] and links.take() == []
    assert len(mesh.remotes) == remotes and dict(mesh.counters) == counters
    assert mesh.peers.peers["p"].last_heard == mesh.clock()


def test_a_peer_first_heard_of_by_gossip_is_not_gossiped_about_once_its_beacons_are_heard():
    mesh, links = mesh_with_peer()
    mesh._remote("p").found_via = "gossip"  # news of it came in another peer's HELLO
    mesh.on_origin(origin("p"), "broadcast")  # then its own beacons: the whole LAN hears it
    for _ in range(3 * mesh_gossip_heartbeats()):
        mesh.on_origin(origin("p"), "broadcast")
        mesh.heartbeat()
    assert [body for _, body in links.take() if "seeds" in body] == []  # no HELLO re-announcing what we know


def mesh_gossip_heartbeats() -> int:
    from pumpkin.mesh import GOSSIP_HEARTBEATS

    return GOSSIP_HEARTBEATS
