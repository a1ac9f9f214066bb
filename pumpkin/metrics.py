"""``GET /metrics``: a node's counters in Prometheus's text format, read from ``NodeQuery`` at each scrape.

Nothing is counted here: a custom collector reads what ``pmk stats`` prints (``NodeQuery.stats``) when Prometheus
asks, so the two cannot disagree. Names follow the key paths of ``pmk stats``: ``router.emitted`` is
``pumpkin_router_emitted_total``; a table keyed by names (seeds, kinds of failure, states, peers, tasks) is a
label instead (``seeds.Pick.failed.bad-data`` is ``pumpkin_seeds_failed_total{seed="Pick",kind="bad-data"}``).
Levels (queue depths, limits, uptime) are gauges, everything else counts up and is a counter; text values
(keys, folders) are left out. Beside them:

- ``pumpkin_seed_run_seconds`` (histogram, per local seed): how long one run of its code took;
- ``pumpkin_peer_inflight_packets`` (per known peer, 0 included): packets sent to it and not acknowledged yet
  (``inflight`` of ``pmk stats``, which lists only peers with some);
- ``pumpkin_peer_rtt_seconds`` and ``pumpkin_peer_rto_seconds`` (per peer and seed): the smoothed time from
  sending a packet to its ACK, and the timeout after which it is asked about (see ``custody``);
- ``pumpkin_waiting_packets`` per state for the ``WAITING_STATES_SHOWN`` fullest states (a stranger's packets
  can make thousands of states wait), with ``pumpkin_waiting_packets_all`` and ``pumpkin_waiting_states``;
- ``pumpkin_node_info{node, group, version}``, always 1.

This module imports ``prometheus_client``, so the web server imports it only at the first scrape (idle memory).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from . import __version__

if TYPE_CHECKING:
    from .query import NodeQuery

PREFIX = "pumpkin"
WAITING_STATES_SHOWN = 100

#: Tables of ``pmk stats`` keyed by names, not fixed keys: (path of fixed keys) -> the label their keys become.
LABELLED: dict[tuple[str, ...], str] = {
    ("tasks", "running"): "task",
    ("tasks", "crashes"): "task",
    ("tasks", "restarts"): "task",
    ("failed",): "kind",
    ("discovery",): "discovery",
    ("seeds",): "seed",
    ("seeds", "failed"): "kind",
    ("limits", "failed", "not_kept"): "kind",
    ("limits", "connections", "refused"): "reason",
    ("limits", "connections", "busiest"): "address",
    ("files", "fetching"): "file",
}
#: Paths (and everything under them) that are levels, not counts: gauges.
GAUGES: set[tuple[str, ...]] = {
    ("uptime_s",),
    ("tasks", "running"),
    ("gathering",),
    ("seeds", "pending"),
    ("seeds", "workers"),
    ("limits", "failed", "used_bytes"),
    ("limits", "failed", "max_bytes"),
    ("limits", "log", "lines_per_minute"),
    ("limits", "open_files"),
    ("limits", "inbox", "message_max_bytes"),
    ("limits", "connections", "open"),
    ("limits", "connections", "open_peak"),
    ("limits", "connections", "max"),
    ("limits", "connections", "per_address_max"),
    ("limits", "connections", "busiest"),
    ("network", "keyed"),
    ("journal", "unfinished"),
    ("files", "queued"),
}
#: Shown by the families of their own below (waiting: the fullest states only), or not numbers.
SKIPPED = {"ok", "node", "waiting", "inflight"}

_Samples = dict[str, tuple[bool, tuple[str, ...], list[tuple[tuple[str, ...], float]]]]


def metric_name(path: tuple[str, ...]) -> str:
    """``pumpkin_`` and the path's keys joined by ``_`` (characters a name cannot hold become ``_``)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", "_".join((PREFIX, *path)))


def is_gauge(path: tuple[str, ...]) -> bool:
    """True when the value at ``path`` (fixed keys only) is a level rather than a count."""
    return any(path[:i] in GAUGES for i in range(1, len(path) + 1))


def flatten(stats: dict[str, Any]) -> _Samples:
    """The numbers of ``pmk stats``: metric name -> (gauge?, label names, [(label values, value)])."""
    out: _Samples = {}

    def add(path: tuple[str, ...], labels: tuple[tuple[str, str], ...], value: float) -> None:
        name = metric_name(path)
        entry = out.setdefault(name, (is_gauge(path), tuple(k for k, _ in labels), []))
        entry[2].append((tuple(v for _, v in labels), value))

    def walk(value: Any, path: tuple[str, ...], labels: tuple[tuple[str, str], ...], named: bool = False) -> None:
        # named: ``value`` is one entry of a labelled table, so its own keys are fixed ones again
        label = None if named else LABELLED.get(path)
        if isinstance(value, int | float):  # bool too: 1 or 0
            add(path, labels, float(value))
        elif isinstance(value, list) and label:
            for item in value:  # a list of names: each one present, 1
                add(path, (*labels, (label, str(item))), 1.0)
        elif isinstance(value, dict):
            for key, item in value.items():
                if label:
                    walk(item, path, (*labels, (label, str(key))), named=True)
                else:
                    walk(item, (*path, str(key)), labels)

    for key, value in stats.items():
        if key not in SKIPPED:
            walk(value, (key,), ())
    return out


class NodeCollector(Collector):
    """A Prometheus collector that reads one node's ``NodeQuery`` at each scrape (on the daemon's loop)."""

    def __init__(self, query: NodeQuery) -> None:
        self.query = query

    def collect(self) -> Iterator[Metric]:
        """Every family, as the node stands now."""
        q = self.query
        node = q.node()
        info = GaugeMetricFamily(f"{PREFIX}_node_info", "this node", labels=["node", "group", "version"])
        info.add_metric([node["id"], node["group"], __version__], 1.0)
        yield info
        for name, (gauge, labels, samples) in sorted(flatten(q.stats()).items()):
            what = f"pmk stats: {name[len(PREFIX) + 1 :]}"
            family: GaugeMetricFamily | CounterMetricFamily = (
                GaugeMetricFamily(name, what, labels=list(labels))
                if gauge
                else CounterMetricFamily(name, what, labels=list(labels))
            )
            for values, value in samples:
                family.add_metric(list(values), value)
            yield family
        yield from self._waiting()
        yield from self._latency()
        yield from self._peers()

    def _waiting(self) -> Iterator[Metric]:
        q = self.query
        shown = GaugeMetricFamily(
            f"{PREFIX}_waiting_packets",
            f"packets waiting for a consumer, per state (the {WAITING_STATES_SHOWN} fullest states)",
            labels=["state"],
        )
        for state, n in q.waiting_largest(WAITING_STATES_SHOWN):
            shown.add_metric([state], float(n))
        yield shown
        yield GaugeMetricFamily(f"{PREFIX}_waiting_packets_all", "packets waiting, in all states", q.waiting_total())
        yield GaugeMetricFamily(f"{PREFIX}_waiting_states", "states with packets waiting", q.waiting_states())

    def _latency(self) -> Iterator[Metric]:
        runs = HistogramMetricFamily(
            f"{PREFIX}_seed_run_seconds", "how long one run of a local seed's code took", labels=["seed"]
        )
        for seed, (buckets, total) in sorted(self.query.seed_latency().items()):
            runs.add_metric([seed], [(_le(b), float(n)) for b, n in buckets], total)
        yield runs

    def _peers(self) -> Iterator[Metric]:
        rtt = GaugeMetricFamily(
            f"{PREFIX}_peer_rtt_seconds", "smoothed time from sending a packet to its ACK", labels=["peer", "seed"]
        )
        rto = GaugeMetricFamily(
            f"{PREFIX}_peer_rto_seconds",
            "time after which an unacknowledged packet is asked about",
            labels=["peer", "seed"],
        )
        for peer, seeds in sorted(self.query.peer_rtt().items()):
            for seed, (srtt, timeout) in sorted(seeds.items()):
                rtt.add_metric([peer, seed], srtt)
                rto.add_metric([peer, seed], timeout)
        yield rtt
        yield rto
        inflight = GaugeMetricFamily(
            f"{PREFIX}_peer_inflight_packets", "packets sent to a peer and not acknowledged yet", labels=["peer"]
        )
        for peer, n in sorted(self.query.peer_inflight().items()):
            inflight.add_metric([peer], float(n))
        yield inflight


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class Exporter:
    """What ``GET /metrics`` answers: the node's families, collected now."""

    def __init__(self, query: NodeQuery) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(query))

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """(body, content type) in the format the scraper's ``Accept`` header asks for: Prometheus's text format
        (0.0.4 unless it asks for a later one), or OpenMetrics."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type
