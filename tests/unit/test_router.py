"""Routing decisions, with the seed runners replaced by a recorder (the seam the router talks to)."""

import json
from collections import Counter
from pathlib import Path

from pumpkin import tags
from pumpkin.automaton import Automaton, SeedInfo
from pumpkin.custody import Custody
from pumpkin.failed import FailedStore
from pumpkin.packet import IdMaker, Packet
from pumpkin.router import NoOutputs, Router, pick_replica, replica_order
from pumpkin.runner import Emission, Outcome
from pumpkin.seed import SeedSpec
from pumpkin.spool import Spool
from pumpkin.waiting import WaitingRoom
from tests.unit.fakenet import Clock

T = tags.parse


class FakeRunner:
    def __init__(self, spec: SeedSpec) -> None:
        self.spec = spec
        self.pending = 0
        self.got: list = []

    def submit(self, packet, now: bool = False) -> None:
        self.pending += 1
        self.got.append(packet)

    def outcome_done(self, outcome) -> None:
        if outcome.packet is not None:
            self.pending -= 1

    throttled = False

    def throttle(self, on: bool) -> None:
        self.throttled = on


class FakeRemotes:
    """The mesh seam: ``send`` decides what a peer takes, ``room`` whether it has room."""

    def __init__(self) -> None:
        self.send = lambda node, seed, p: False
        self.room = lambda node, seed: True

    def send_packet(self, node, seed, packet, now) -> bool:
        return self.send(node, seed, packet)

    def load_of(self, node, seed) -> float:
        return 0.0

    def has_room(self, node, seed) -> bool:
        return self.room(node, seed)


def spec(name, ins=(), outs=(), workers=1) -> SeedSpec:
    return SeedSpec(name, tuple(map(T, ins)), tuple(map(T, outs)), object, Path(name), False, workers)


def make(tmp_path, max_wait=3, expiry=10.0, queue_max=100, spool=None):
    clock = Clock()
    r = Router(
        "me",
        Automaton(),
        IdMaker("5eed0000"),
        FailedStore(tmp_path / "failed"),
        WaitingRoom(max_wait, expiry, spool),
        remotes=FakeRemotes(),
        outputs=NoOutputs(),
        seed_queue_max=queue_max,
        clock=clock,
    )
    return r, clock


def add_local(r: Router, s: SeedSpec) -> FakeRunner:
    runner = FakeRunner(s)
    r.local[s.name] = runner  # type: ignore[assignment]
    r.automaton.add("me", SeedInfo(s.name, s.inputs, s.outputs))
    r.replan()
    return runner


def test_pick_replica_least_loaded_then_round_robin():
    loads = {"a": 2, "b": 0, "c": 0}
    assert [pick_replica(["a", "b", "c"], loads.get, t) for t in range(4)] == ["b", "c", "b", "c"]


def test_past_eight_replicas_a_packet_looks_at_four_and_equal_ones_still_share_evenly():
    nodes = [f"n{i}" for i in range(20)]
    looked: list[str] = []

    def load(node: str) -> float:
        looked.append(node)
        return 5.0 if node == "n1" else 0.0

    firsts = Counter(next(replica_order(nodes, load, turn)) for turn in range(200))
    assert len(looked) == 4 * 200  # four loads per packet, not twenty
    assert "n1" not in firsts  # the loaded one loses to its window's others ...
    assert firsts.pop("n2") == 20 and set(firsts.values()) == {10}  # ... its turn goes to the next; the rest share
    order = list(replica_order(nodes, lambda n: 0.0, 3))  # every one full: each tried once, then the packet waits
    assert sorted(order) == sorted(nodes) and order[:4] == ["n3", "n4", "n5", "n6"]


def test_fan_out_gives_each_distinct_seed_its_own_copy(tmp_path):
    r, _ = make(tmp_path)
    a = add_local(r, spec("square", ["N"], ["SQ"]))
    b = add_local(r, spec("log", ["N"]))
    r.inject(T("N"), {"v": [1]})
    assert len(a.got) == 1 and len(b.got) == 1
    assert a.got[0].data == b.got[0].data == {"v": [1]}
    assert a.got[0].data is not b.got[0].data


def test_packets_wait_for_a_consumer_then_flow_in_order(tmp_path):
    r, _ = make(tmp_path)
    ids = [r.inject(T("String:UNGREETED"), n).id for n in ("a", "b")]
    assert r.waiting.counts() == {"default:String:UNGREETED": 2}
    greet = add_local(r, spec("greet", ["String:UNGREETED"], ["String:GREETING"]))
    assert [p.id for p in greet.got] == ids and len(r.waiting) == 0


def test_full_waiting_queue_and_expiry_go_to_failed_with_reasons(tmp_path):
    r, clock = make(tmp_path, max_wait=2, expiry=5.0)
    for n in range(3):
        r.inject(T("X"), n)
    assert r.failed.counts["waiting-full"] == 1
    clock.now += 6
    r.expire()
    assert r.failed.counts["expired"] == 2
    reasons = sorted(p.read_text() for p in (tmp_path / "failed").glob("*.error"))
    assert any("2 packets already wait" in t for t in reasons)
    assert sum("waited 5 s" in t for t in reasons) == 2
    assert len(list((tmp_path / "failed").glob("*.pkt"))) == 3


def test_packets_past_memory_spill_and_past_the_spool_quota_fail_naming_it(tmp_path):
    spool = Spool(tmp_path / "spool", 2000)
    r, _ = make(tmp_path, max_wait=2, spool=spool)
    for n in range(20):
        r.inject(T("X"), n)
    parked = len(r.waiting)
    assert 2 < parked < 20 and r.failed.counts["waiting-full"] == 20 - parked
    reason = next((tmp_path / "failed").glob("*.error")).read_text()
    assert "of its 2000 bytes on disk (routing.spool_max_bytes)" in reason
    greet = add_local(r, spec("greet", ["X"]))
    assert [p.data for p in greet.got] == list(range(parked)) and spool.used_bytes == 0


def test_a_spooled_packet_keeps_its_custody(tmp_path):
    r, _ = make(tmp_path, max_wait=1, spool=Spool(tmp_path / "spool", 1 << 20))
    released: list = []
    for n in range(3):
        p = Packet(r.ids.root(), T("A"), n, custody=Custody(lambda n=n: released.append(n)))
        r.admit(p)
        p.custody.settle()
    assert r.waiting.in_memory == 1 and len(r.waiting) == 3 and released == []
    sink = add_local(r, spec("sink", ["A"]))
    for p in sink.got:
        r.on_outcome(Outcome(sink, p))  # type: ignore[arg-type]
    assert released == [0, 1, 2]


def test_waiting_does_not_delay_other_states(tmp_path):
    r, _ = make(tmp_path)
    ok = add_local(r, spec("ok", ["A"]))
    r.inject(T("NOBODY"), 1)
    r.inject(T("A"), 2)
    assert [p.data for p in ok.got] == [2]


def test_outcome_makes_children_with_trail_and_rejects_undeclared_states(tmp_path):
    r, _ = make(tmp_path)
    greet = add_local(r, spec("greet", ["String:UNGREETED"], ["String:GREETING"]))
    sink = add_local(r, spec("extract", ["String:GREETING"]))
    parent = r.inject(T("String:UNGREETED"), "World")
    r.on_outcome(Outcome(greet, parent, [Emission("GREETING", "Hello World")]))  # type: ignore[arg-type]
    child = sink.got[0]
    assert child.data == "Hello World" and child.lineage == parent.lineage
    assert [h.seed for h in child.trail] == ["inject", "greet"] and child.ttl == parent.ttl - 1
    # One undeclared state fails the whole input: none of its emissions goes out, the input is kept.
    again = r.inject(T("String:UNGREETED"), "Mars")
    r.on_outcome(Outcome(greet, again, [Emission("GREETING", "Hello Mars"), Emission("NOPE", 1)]))  # type: ignore[arg-type]
    assert [p.data for p in sink.got] == ["Hello World"]
    assert r.failed.counts["undeclared-state"] == 1
    error = next((tmp_path / "failed").glob("*.error")).read_text()
    assert "emitted state 'NOPE', which it does not declare" in error and "none of its 2 emission(s)" in error
    assert json.loads(next((tmp_path / "failed").glob("*.pkt")).read_text())["data"] == "Mars"


def test_seed_error_keeps_the_input_packet(tmp_path):
    r, _ = make(tmp_path)
    greet = add_local(r, spec("greet", ["A"], ["B"]))
    p = r.inject(T("A"), 1)
    r.on_outcome(Outcome(greet, p, error="seed greet raised ValueError: boom", traceback="Traceback..."))  # type: ignore[arg-type]
    err = next((tmp_path / "failed").glob("*.error")).read_text()
    assert err.startswith("seed greet raised ValueError: boom while processing") and "Traceback" in err


def test_ttl_stops_loops(tmp_path):
    r, _ = make(tmp_path)
    loop = add_local(r, spec("loop", ["A"], ["A"]))
    p = r.inject(T("A"), 1)
    for _ in range(200):
        if not loop.got:
            break
        p = loop.got.pop()
        r.on_outcome(Outcome(loop, p, [Emission(None, 1)]))  # type: ignore[arg-type]
    assert r.failed.counts["ttl"] == 1


def test_remote_replicas_share_and_a_refusing_peer_is_skipped(tmp_path):
    r, _ = make(tmp_path)
    r.automaton.add("B", SeedInfo("greet", (T("A"),), ()))
    r.automaton.add("C", SeedInfo("greet", (T("A"),), ()))
    sent: list[str] = []
    r.remotes.send = lambda node, seed, p: False if node == "B" else (sent.append(node) or True)
    for n in range(4):
        r.inject(T("A"), n)
    assert sent == ["C"] * 4
    ok: list[str] = []
    r.remotes.send = lambda node, seed, p: ok.append(node) or True
    for n in range(4):
        r.inject(T("A"), n)
    assert sorted(ok) == ["B", "B", "C", "C"]


def test_busy_local_seed_parks_then_drains(tmp_path):
    r, _ = make(tmp_path, max_wait=100, queue_max=2)
    slow = add_local(r, spec("slow", ["A"]))
    for n in range(5):
        r.inject(T("A"), n)
    assert len(slow.got) == 2 and len(r.waiting) == 3
    r.on_outcome(Outcome(slow, slow.got[0]))  # type: ignore[arg-type]
    assert len(slow.got) == 3


def test_a_packet_parked_for_a_busy_seed_goes_back_to_that_seed_only(tmp_path):
    r, _ = make(tmp_path, max_wait=100, queue_max=1)
    slow = add_local(r, spec("slow", ["A"]))
    fast = add_local(r, spec("fast", ["A"]))
    for n in range(3):
        r.inject(T("A"), n)
    assert len(slow.got) == 1 and len(fast.got) == 1  # fast is 'busy' too: queue_max 1
    r.on_outcome(Outcome(slow, slow.got[0]))  # type: ignore[arg-type]
    r.on_outcome(Outcome(fast, fast.got[0]))  # type: ignore[arg-type]
    for _ in range(4):
        for runner in (slow, fast):
            if runner.pending:
                r.on_outcome(Outcome(runner, runner.got[-1]))  # type: ignore[arg-type]
    assert sorted(p.data for p in slow.got) == [0, 1, 2]
    assert sorted(p.data for p in fast.got) == [0, 1, 2]


def test_custody_is_released_once_a_seed_finished_or_its_failure_is_durable(tmp_path):
    r, _ = make(tmp_path)
    s = add_local(r, spec("s", ["A"], ["B"]))
    add_local(r, spec("sink", ["B"]))
    released: list = []
    for n in (1, 2):
        p = Packet(r.ids.root(), T("A"), n, custody=Custody(lambda n=n: released.append(n)))
        r.admit(p)
        p.custody.settle()
    a, b = s.got
    r.on_outcome(Outcome(s, a, [Emission(None, "x")]))  # type: ignore[arg-type]
    assert released == []  # its child waits at sink: still held here
    r.on_outcome(Outcome(s, b, error="boom"))  # type: ignore[arg-type]
    assert released == [2]  # kept in failed/, fsynced (at once: no event loop runs here)
    sink = r.local["sink"]
    r.on_outcome(Outcome(sink, sink.got[0]))  # type: ignore[arg-type]
    assert released == [2, 1]


def test_a_remote_replica_at_its_window_gets_the_waiting_packets_as_it_acknowledges(tmp_path):
    r, _ = make(tmp_path, max_wait=100)
    r.automaton.add("B", SeedInfo("greet", (T("A"),), ()))
    window, sent = 3, []
    r.remotes.room = lambda node, seed: len(sent) < window
    r.remotes.send = lambda node, seed, p: r.remotes.room(node, seed) and (sent.append(p.data) or True)
    for n in range(5):
        r.inject(T("A"), n)
    assert sent == [0, 1, 2] and r.waiting.counts() == {"default:*:A": 2}
    window = 4  # one ACK came back
    r.kick("greet")
    assert sent == [0, 1, 2, 3] and len(r.waiting) == 1
    window = 10
    r.kick("greet")
    assert sent == [0, 1, 2, 3, 4] and len(r.waiting) == 0


def test_a_spooled_backlog_for_a_busy_seed_stays_put_when_the_automaton_changes(tmp_path):
    spool = Spool(tmp_path / "spool", 1 << 20)
    r, _ = make(tmp_path, max_wait=5, spool=spool)
    r.automaton.add("B", SeedInfo("greet", (T("A"),), ()))
    window, sent = 3, []
    r.remotes.room = lambda node, seed: len(sent) < window
    r.remotes.send = lambda node, seed, p: r.remotes.room(node, seed) and (sent.append(p.data) or True)
    for n in range(50):
        r.inject(T("A"), n)
    assert r.waiting.waiting_for(T("A"), "greet") == 47 and r.waiting.in_memory == 5
    files = {f.name: f.stat().st_size for f in spool.folder.iterdir()}
    r.automaton.add("C", SeedInfo("other", (T("Z"),), ()))
    r.replan()  # greet still has no room: its first packet comes straight back, the rest are not touched
    assert {f.name: f.stat().st_size for f in spool.folder.iterdir()} == files
    assert r.counters["released"] == 1 and r.waiting.in_memory == 5
    window = 100
    r.kick("greet")
    assert sent == list(range(50)) and len(r.waiting) == 0 and spool.used_bytes == 0


def test_a_kick_with_a_refusing_link_takes_each_packet_once(tmp_path):
    r, _ = make(tmp_path, max_wait=100)
    r.automaton.add("B", SeedInfo("greet", (T("A"),), ()))
    r.remotes.send = lambda node, seed, p: False  # says it has room, then refuses (a full socket)
    for n in range(3):
        r.inject(T("A"), n)
    r.kick("greet")  # must come back, with the packets still waiting in their order
    assert [p.data for p in r.waiting.peek(T("A"))] == [0, 1, 2]


def test_a_seed_whose_outputs_pile_up_is_throttled_until_they_drain(tmp_path, monkeypatch):
    import pumpkin.router as router_module

    monkeypatch.setattr(router_module, "THROTTLE_HIGH", 4)
    monkeypatch.setattr(router_module, "THROTTLE_LOW", 2)
    r, _ = make(tmp_path, max_wait=100, queue_max=1)
    make_ = add_local(r, spec("make", ["A"], ["B"]))
    slow = add_local(r, spec("slow", ["B"]))
    for n in range(6):
        p = r.inject(T("A"), n)
        r.on_outcome(Outcome(make_, make_.got[-1], [Emission(None, n)]))  # type: ignore[arg-type]
        del p
    # slow holds one packet (queue_max 1); the other five wait for it, past THROTTLE_HIGH.
    assert r.waiting.busy(T("B")) == 5 and make_.throttled
    for _ in range(2):
        r.on_outcome(Outcome(slow, slow.got[-1]))  # type: ignore[arg-type]
    assert r.waiting.busy(T("B")) == 3 and make_.throttled  # not yet under THROTTLE_LOW
    r.on_outcome(Outcome(slow, slow.got[-1]))  # type: ignore[arg-type]
    assert r.waiting.busy(T("B")) == 2 and make_.throttled
    r.on_outcome(Outcome(slow, slow.got[-1]))  # type: ignore[arg-type]
    assert r.waiting.busy(T("B")) == 1 and not make_.throttled
    assert [p.data for p in slow.got] == [0, 1, 2, 3, 4]


def test_seeds_throttling_each_other_in_a_cycle_are_let_go_when_nothing_moves(tmp_path, monkeypatch, caplog):
    import pumpkin.router as router_module

    monkeypatch.setattr(router_module, "THROTTLE_HIGH", 2)
    monkeypatch.setattr(router_module, "THROTTLE_LOW", 1)
    r, clock = make(tmp_path, max_wait=100, queue_max=1)
    a = add_local(r, spec("a", ["X"], ["Y"]))
    b = add_local(r, spec("b", ["Y"], ["X"]))
    for n in range(3):  # each a's queue and b's queue hold one; the rest piles up in front of them
        r.on_outcome(Outcome(a, None, [Emission(None, n)]))  # type: ignore[arg-type]
        r.on_outcome(Outcome(b, None, [Emission(None, n)]))  # type: ignore[arg-type]
    assert a.throttled and b.throttled  # each waits for the other: a throttled seed takes nothing in
    clock.now += 1.0
    r.expire()
    assert a.throttled and b.throttled  # not yet: THROTTLE_STUCK_S is 2 s
    clock.now += 1.5
    r.expire()
    assert not a.throttled and not b.throttled and r.counters["throttle_stuck"] == 2
    assert "none of them moved for 2 s" in caplog.text and "(a -> b -> a)" in caplog.text
    r.on_outcome(Outcome(a, None, [Emission(None, 9)]))  # type: ignore[arg-type]
    assert not a.throttled  # not again during the cool-down


def test_a_throttle_under_which_packets_move_stays(tmp_path, monkeypatch):
    import pumpkin.router as router_module

    monkeypatch.setattr(router_module, "THROTTLE_HIGH", 2)
    monkeypatch.setattr(router_module, "THROTTLE_LOW", 1)
    r, clock = make(tmp_path, max_wait=100, queue_max=1)
    make_ = add_local(r, spec("make", ["A"], ["B"]))
    slow = add_local(r, spec("slow", ["B"]))
    for n in range(5):
        r.on_outcome(Outcome(make_, None, [Emission(None, n)]))  # type: ignore[arg-type]
    assert make_.throttled
    for _ in range(2):  # slow finishes one packet a second: the pile moves, so the throttle is doing its job
        clock.now += 1.5
        r.on_outcome(Outcome(slow, slow.got[-1]))  # type: ignore[arg-type]
        r.expire()
    assert make_.throttled and r.counters["throttle_stuck"] == 0


def test_a_producer_stays_throttled_while_its_state_has_no_consumer_however_long(tmp_path, monkeypatch):
    import pumpkin.router as router_module

    monkeypatch.setattr(router_module, "THROTTLE_HIGH", 3)
    monkeypatch.setattr(router_module, "THROTTLE_LOW", 1)
    r, clock = make(tmp_path, max_wait=100, expiry=1e6)
    make_ = add_local(r, spec("make", [], ["B"]))  # an injector; nobody consumes B (its seed's hosts are down)
    for n in range(4):
        r.on_outcome(Outcome(make_, None, [Emission(None, n)]))  # type: ignore[arg-type]
    assert make_.throttled and r.waiting.counts() == {"default:*:B": 4}
    for _ in range(10):
        clock.now += 5.0
        r.expire()
    assert make_.throttled and r.counters["throttle_stuck"] == 0 and r.counters["failed"] == 0
    sink = add_local(r, spec("sink", ["B"]))  # a consumer comes back
    assert [p.data for p in sink.got] == [0, 1, 2, 3] and not make_.throttled


def test_fragments_in_the_input_state_pass_and_forks_keep_the_join_lineage(tmp_path):
    from pumpkin.gather import fragment_of, lineage_of

    r, _ = make(tmp_path)
    proc = add_local(r, spec("proc", ["RAW"], ["DONE"]))
    parent = r.inject(T("RAW"), "ab")
    fragments = [Emission("RAW", ch, fragment=(str(i), i == 2)) for i, ch in enumerate("ab", 1)]
    r.on_outcome(Outcome(proc, parent, fragments))  # type: ignore[arg-type]
    assert not r.failed.counts  # RAW is not a return state, yet a fragment is in the state of what it splits
    assert [(p.data, fragment_of(p).no) for p in proc.got[1:]] == [("a", "1"), ("b", "2")]

    inj = add_local(r, spec("inj", ["ALL"], ["MRI", "DTI"]))
    mri, dti = add_local(r, spec("mri", ["MRI"])), add_local(r, spec("dti", ["DTI"]))
    whole = r.inject(T("ALL"), "x")
    forks = [Emission("MRI", 1, forked=True, header={"ttl": "D"}), Emission("DTI", 2, forked=True)]
    r.on_outcome(Outcome(inj, whole, forks))  # type: ignore[arg-type]
    a, b = mri.got[0], dti.got[0]
    assert len({a.lineage, b.lineage, whole.lineage}) == 3  # new containers (the original's fork_dispatch)
    assert lineage_of(a) == lineage_of(b) == lineage_of(whole)  # ... that still join

    # A dispatch carries a header that names no ship: from a packet whose header names one (an injected
    # original-format packet), the child keeps the ship's lineage; from any other, the container is the lineage.
    step = add_local(r, spec("step", ["SHIP"], ["ON"]))
    after = add_local(r, spec("after", ["ON"]))
    shipped = r.inject(T("SHIP"), "p", meta={"legacy_header": {"ship": "patient_X", "ttl": "D"}})
    plain = r.inject(T("SHIP"), "q")
    for parent in (shipped, plain):
        r.on_outcome(Outcome(step, parent, [Emission("ON", parent.data, header={"ttl": "D"})]))  # type: ignore[arg-type]
    from_ship, from_plain = after.got
    assert lineage_of(from_ship) == "ship:patient_X" and from_ship.meta["lineage"] == "ship:patient_X"
    assert lineage_of(from_plain) == plain.lineage and "lineage" not in from_plain.meta
