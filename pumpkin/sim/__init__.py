"""A deterministic network simulator: virtual time, links that delay, lose, duplicate and reorder, partitions and
crashes on a schedule, all from one random seed; a history of the run, checkers over it, and a timeline view.

Modules, one job each: ``clock`` (virtual time, event queue), ``links`` (latency distributions, loss...),
``wire`` (putting messages on links, partitions, down nodes), ``history`` (the records), ``check`` (checkers),
``node`` and ``network`` (the API for writing an algorithm), ``topology``, ``swarm`` (many seeds, replay),
``timeline`` (the HTML/SVG view). Nothing here opens a socket or reads a real clock.
"""
