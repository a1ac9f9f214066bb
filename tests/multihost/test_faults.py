"""Issue 10's fault table, as real pmk daemons on namespace hosts: nothing accepted is lost, nothing twice.

The chain (tests/multihost/faults.py): a numbered source on A, a transform replicated on B and C, a sink on D
(the other subnet) writing every result to tx/. Each test breaks it in one way a real LAN does every day and
then counts, at the sink, the numbers its seed ran on (across every incarnation of D) and the tx files: each of
the N numbers must be there exactly once, and no node may keep anything in failed/.

Liveness timings are the defaults users get, unless a row says otherwise: a daemon restarted 1-3 s after a
crash must come back while its peers still know it (expiry 5 s), which is the case the issue reports.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pumpkin.daemon import TX_AHEAD_MAX
from tests.conftest import PMK, PmkProcess, dump_on_failure
from tests.helpers import wait_until
from tests.multihost.conftest import FAST
from tests.multihost.faults import FaultChain, Outcome, node_id
from tests.multihost.lan import Lan
from tests.netns import CI

pytestmark = pytest.mark.slow

COUNT = 10_000  # numbers per run, as in the issue
RESTART_AFTER_S = 2.0  # kill -9, then the same daemon again this much later (the issue: 1-3 s)
DEADLINE_S = 60.0  # from the go until every number is at the sink and in tx/ (a healthy run: 3-10 s here)
STALL_S = 15.0  # ... or until nothing at all has moved at the sink for this long: what is missing then is lost
LOSS_PERCENT = 20
LOSS_COUNT = 3_000  # fewer under loss: one run of 10,000 took 63-151 s in the issue, too long for the suite
LOSS_DEADLINE_S = 150.0  # ~100 x a run without loss: a run slower than that has lost packets, in effect
ACK_GRACE_S = 10.0  # after the last delivery, until every sender has heard every acknowledgement


@pytest.fixture
def chains(lan: Lan, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., FaultChain]]:
    """Make FaultChains on the LAN; all stopped, the network restored and logs dumped on failure afterwards."""
    made: list[FaultChain] = []

    def make(count: int, **kw: Any) -> FaultChain:
        chain = FaultChain(lan, tmp_path / f"run{len(made)}", count, **kw)
        made.append(chain)
        return chain

    try:
        yield make
    finally:
        for chain in made:
            chain.close()
        lan.reset()
        dump_on_failure(request, [p for chain in made for p in chain.all_procs])


def assert_exactly_once(out: Outcome) -> None:
    """0 lost and 0 duplicated at the sink, in the seed's inputs and in tx/, and nothing in failed/."""
    problems = out.problems()
    assert not problems, "\n".join([*problems, out.summary()])


def tcp_endpoint(p: PmkProcess) -> str:
    """The tcp:// endpoint a daemon logged at start."""
    for line in p.err:
        m = re.search(r"Node endpoint: (tcp://\S+)", line)
        if m:
            return m.group(1)
    return ""


def run(chain: FaultChain, deadline_s: float = DEADLINE_S, stall_s: float | None = STALL_S) -> Outcome:
    """Wait for the stream to be delivered (or to stop moving), stop the chain, and print what happened."""
    out = chain.finish(chain.wait_delivered(deadline_s, stall_s))
    print("\n" + out.summary())
    return out


def restart_mid_stream(chain: FaultChain, host: str) -> tuple[PmkProcess, PmkProcess]:
    """kill -9 ``host`` a quarter into the stream, and start it again RESTART_AFTER_S later."""
    chain.up()
    chain.go()
    chain.progress(COUNT // 4)
    before = chain.current(host)
    chain.kill(host)
    time.sleep(RESTART_AFTER_S)  # the length of the outage is the point: a supervisor restarting a crashed daemon
    after = chain.start(host)
    after.wait_for(f"Seed loaded: {'Sink' if host == 'D' else 'Relay'}", stream="err")
    return before, after


def test_a_replica_restarted_with_the_same_workdir_loses_nothing(chains):
    chain = chains(COUNT)
    before, after = restart_mid_stream(chain, "B")
    out = run(chain)
    # The case: B comes back on another tcp port (port 0 picks one), with the same id and workdir.
    assert tcp_endpoint(before) != tcp_endpoint(after), "B came back on the same port: not the case under test"
    assert_exactly_once(out)


def test_a_replica_killed_for_good_with_results_on_their_way_loses_nothing(chains):
    # A transform with no work feeds a sink that waits for its tx files: results pile up between them, so the
    # kill finds B holding results it made but the sink has not taken yet. B acknowledges A's packets only once
    # those are safe at D, so A still holds them and they run again on C (same ids: D takes each once).
    chain = chains(COUNT, work_s=0.0, pmk_args=tuple(FAST))
    chain.up()
    chain.go()
    chain.progress(COUNT // 4)
    chain.kill("B")
    out = run(chain)
    assert_exactly_once(out)


def assert_once_across_a_sink_kill(out: Outcome) -> None:
    """``assert_exactly_once``, except that the sink's seed may have run again, after a kill -9 of D, on packets
    it had run just before the kill and whose results were not durable yet.

    Those are honest re-runs: D had not acknowledged them, so their senders still held them and sent them again.
    D's seed runs at most TX_AHEAD_MAX packets beyond its durable results (pumpkin.daemon), so such re-runs can
    only be among the last of its runs before the kill; a result that was durable is not run again (the tx file
    is found). Anything else run twice is a duplicate; tx/ must hold each number exactly once.
    """
    first, later = out.runs[0], [n for runs in out.runs[1:] for n, _ in runs]
    last = {n for n, _ in first[-2 * TX_AHEAD_MAX :]}
    reran = {n for n, _ in first} & set(later)
    twice_in_one = {i: [n for n, c in Counter(n for n, _ in runs).items() if c > 1] for i, runs in enumerate(out.runs)}
    print(
        f"D ran {len(first)} packets before the kill; {len(reran)} of them ran again after the restart "
        f"({len(reran - last)} outside its last {2 * TX_AHEAD_MAX} runs)"
    )
    problems = out.problems(inputs=False)
    if out.lost_inputs:
        problems.append(f"{len(out.lost_inputs)} numbers never ran in the sink seed")
    if any(twice_in_one.values()):
        problems.append(f"ran twice in one incarnation of D: { {i: len(v) for i, v in twice_in_one.items()} }")
    if reran - last:
        stale = sorted(reran - last)
        problems.append(f"{len(stale)} re-runs of packets whose results were durable long before, e.g. {stale[:5]}")
    assert not problems, "\n".join([*problems, out.summary()])


def test_a_sink_restarted_with_the_same_workdir_loses_nothing(chains):
    chain = chains(COUNT)
    before, after = restart_mid_stream(chain, "D")
    out = run(chain)
    assert tcp_endpoint(before) != tcp_endpoint(after), "D came back on the same port: not the case under test"
    assert_once_across_a_sink_kill(out)


def test_a_sink_that_starts_after_the_stream_gets_every_result_in_tx(chains):
    chain = chains(COUNT)
    chain.up("BCA")
    chain.go()
    time.sleep(4.0)  # D joins 4 s into the stream: the delay is the point (results wait for it meanwhile)
    chain.start("D")
    out = run(chain)
    assert_exactly_once(out)


def test_a_sink_killed_while_writing_results_loses_none_and_writes_each_once(chains):
    # A Relay with no work: the sink's seed then runs faster than its results can be written (an fsync each
    # batch), so the kill finds the tx writer busy. FAST liveness, and D restarts only once B and C have
    # forgotten it: this row is about what D made durable before acknowledging, not about a quick restart.
    chain = chains(COUNT, work_s=0.0, pmk_args=tuple(FAST))
    chain.up()
    chain.go()
    chain.progress(COUNT // 4, tx=True)
    logged = {h: len(chain.current(h).err) for h in "BC"}
    chain.kill("D")
    tx_at_kill = len(chain.tx_names())
    wait_until(
        lambda: all(
            any(f"Peer {node_id('D')} expired" in line for line in chain.current(h).err[logged[h] :]) for h in "BC"
        ),
        15,
        what="B and C to forget the killed D",
    )
    chain.start("D")
    out = run(chain)
    print(f"{tx_at_kill} tx files at the kill")
    assert_once_across_a_sink_kill(out)


@pytest.mark.timeout(LOSS_DEADLINE_S + ACK_GRACE_S + 90)
def test_twenty_percent_loss_on_every_link_loses_nothing(chains, lan):
    if not shutil.which("nft"):
        if CI:
            pytest.fail("CI=true but needs nftables ('nft') to make links lossy")
        pytest.skip("needs nftables ('nft') to make links lossy")
    clean = chains(LOSS_COUNT)
    clean.up()
    clean.go()
    baseline = run(clean)
    assert_exactly_once(baseline)
    lan.reset()
    lossy = chains(LOSS_COUNT)
    lossy.up()  # on a clean network: this row is about the stream, not about finding peers under loss
    lan.lossy(LOSS_PERCENT)
    lossy.go()
    elapsed = lossy.wait_delivered(LOSS_DEADLINE_S)  # stalls of tens of seconds are the issue: no early give-up
    # Every packet delivered is acknowledged to its sender soon after (the issue saw ~1,000 ACKs never arrive, and
    # A held 1,000 packets in flight to C, a full credit window, until the end). What is left is asserted below.
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not lossy.unacknowledged(), ACK_GRACE_S, interval_s=0.5, what="every ACK")
    unacknowledged = lossy.unacknowledged()
    out = lossy.finish(elapsed)
    print("\n" + out.summary())
    assert baseline.elapsed_s is not None
    took = f"{out.elapsed_s:.1f} s" if out.elapsed_s is not None else f"more than {LOSS_DEADLINE_S:g} s"
    ratio = out.elapsed_s / baseline.elapsed_s if out.elapsed_s is not None else float("inf")
    print(f"{LOSS_COUNT} packets: {baseline.elapsed_s:.1f} s without loss, {took} with {LOSS_PERCENT}% (x{ratio:.1f})")
    # The target is a ratio within 3 x; it is printed, not asserted. One run says little: in 24 runs of
    # this test while the loss handling was built its ratio went from 0.9 to 5.3 (median about 2), and a 1-3 s
    # baseline on 2 shared cores moves by 30%. bench/reliability.py measures it (medians of repeats).
    assert_exactly_once(out)
    assert not unacknowledged, f"{ACK_GRACE_S:g} s after the last delivery, still unacknowledged: {unacknowledged}"


def test_a_replica_whose_host_takes_no_connections_loses_nothing(chains, lan):
    # B's firewall drops every new inbound TCP connection (its data port), while its beacons and HELLOs go out:
    # A takes it for a replica of Relay, and nothing A sends it arrives. What A sent it goes to C once B has left
    # it unanswered (about 12 s: the timeout doubles from 1 s); what comes after goes to C, as B's window is full.
    if not shutil.which("nft"):
        if CI:
            pytest.fail("CI=true but needs nftables ('nft') to block B's inbound connections")
        pytest.skip("needs nftables ('nft') to block B's inbound connections")
    lan.nft("B", "chain in { type filter hook input priority 0; policy accept; tcp flags & (syn | ack) == syn drop; }")
    chain = chains(COUNT)
    chain.up(unreachable="B")
    chain.go()
    elapsed = chain.wait_delivered(DEADLINE_S, STALL_S)
    # A says so: B is alive (heard) but answers nothing it sends; one packet at a time goes to it meanwhile.
    a = chain.current("A")
    assert a.stderr_has(f"Peer {node_id('B')} answered nothing about packets sent to it")
    peers = subprocess.run(
        lan.wrap("A", [*PMK, "peers", "--json", "--workdir", str(chain.workdir("A"))]),
        capture_output=True, text=True, timeout=20, env=chain.env, check=True,
    )  # fmt: skip
    assert [p["answering"] for p in json.loads(peers.stdout) if p["id"] == node_id("B")] == [False]
    out = chain.finish(elapsed)
    print("\n" + out.summary())
    assert_exactly_once(out)
    assert {by for run_ in chain.sink_runs() for _, by in run_} == {node_id("C")}  # B never got one


@pytest.mark.timeout(DEADLINE_S + 120)
def test_both_replicas_down_for_10_s_under_30000_packets_loses_nothing(chains):
    # 3 x COUNT: more than routing.waiting_max_packets (10,000) must wait somewhere while no replica runs.
    count = 3 * COUNT
    chain = chains(count)
    chain.up()
    chain.go()
    chain.progress(COUNT // 4)
    for host in "BC":
        chain.kill(host)
    time.sleep(10.0)  # both replicas down for 10 s: the length of the outage is the point
    for host in "BC":
        chain.start(host)
    out = run(chain, deadline_s=DEADLINE_S + 40)
    assert_exactly_once(out)
