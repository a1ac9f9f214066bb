"""A history drawn as a message-sequence diagram: one self-contained HTML page of plain SVG (no script, no CDN).

Each node is a vertical lane, time runs down, a delivered message is an arrow from its sender's lane at the send
to its receiver's lane at the arrival, a lost one is a dashed red arrow that stops short with a cross and says why.
Timers, crashes, restarts and notes are marks on their lane; hovering anything shows its details (SVG titles).
Rows are events, not seconds, so bursts stay readable: the time of each row is written at the left.
"""

from __future__ import annotations

from html import escape

from pumpkin.sim.history import History, Record

LANE_W = 130
ROW_H = 18
TOP = 60
LEFT = 90
MAX_ROWS = 2000  # a bigger history is cut, and the page says so

STYLE = """
body { font: 13px sans-serif; margin: 16px; }
.lane { stroke: #bbb; stroke-width: 1; }
.name { font-weight: bold; text-anchor: middle; }
.t { fill: #888; font-size: 10px; text-anchor: end; }
.arrow { stroke-width: 1.3; fill: none; }
.deliver { stroke: #2a6ebb; }
.lost { stroke: #c62828; stroke-dasharray: 4 3; }
.label { font-size: 10px; fill: #333; }
.lostlabel { font-size: 10px; fill: #c62828; }
.timer { fill: #f9a825; }
.crash { fill: #c62828; }
.restart { fill: #2e7d32; }
.note { fill: #6a1b9a; }
.fault { fill: #555; font-size: 10px; }
"""


def render(history: History, title: str = "pumpkin.sim run") -> str:
    """The page for ``history``."""
    records = list(history)
    cut = len(records) > MAX_ROWS
    records = records[:MAX_ROWS]
    nodes: list[str] = []
    for r in records:
        for name in (r.node, r.peer):
            if name and name not in nodes:
                nodes.append(name)
    nodes.sort()
    x = {n: LEFT + LANE_W * i + LANE_W // 2 for i, n in enumerate(nodes)}
    sends: dict[int, tuple[int, Record]] = {}
    rows = 0
    body: list[str] = []
    for r in records:
        y = TOP + rows * ROW_H
        rows += 1
        body.append(f'<text class="t" x="{LEFT - 8}" y="{y + 4}">{r.t:.4f}</text>')
        if r.kind == "send":
            sends[r.id] = (y, r)
            body.append(f'<circle cx="{x[r.node]}" cy="{y}" r="2" fill="#2a6ebb"/>')
        elif r.kind == "deliver":
            sy, sent = sends.get(r.id, (y, r))
            x1, x2 = x[r.peer], x[r.node]
            tip = f"{r.msg} #{r.id} {r.peer} -> {r.node}, sent {sent.t:.6f}, arrived {r.t:.6f} {sent.data}"
            body.append(_arrow("arrow deliver", x1, sy, x2, y, r.msg, tip))
        elif r.kind == "drop":
            sy, _ = sends.get(r.id, (y, r))
            x1, x2 = x[r.node], x[r.peer]
            xm, ym = x1 + (x2 - x1) * 0.6, sy + (y - sy) * 0.6 + ROW_H * 0.6
            tip = f"{r.msg} #{r.id} {r.node} -> {r.peer} lost ({r.why}) at {r.t:.6f}"
            body.append(_arrow("arrow lost", x1, sy, xm, ym, f"{r.msg} lost: {r.why}", tip, cross=True))
        elif r.kind in ("timer", "crash", "restart", "note"):
            tip = escape(f"{r.kind} {r.msg} at {r.t:.6f} {r.data if r.data else ''}")
            mark = {"timer": "◷", "crash": "✖", "restart": "↻", "note": "●"}[r.kind]
            label = f"{mark} {escape(r.msg)}<title>{tip}</title>"
            body.append(f'<text class="{r.kind}" x="{x[r.node] + 4}" y="{y + 4}">{label}</text>')
        else:
            body.append(f'<text class="fault" x="{LEFT}" y="{y + 4}">{escape(r.kind)} {escape(str(r.data))}</text>')
    height = TOP + rows * ROW_H + 20
    width = LEFT + LANE_W * len(nodes) + 20
    lanes = [
        f'<line class="lane" x1="{x[n]}" y1="{TOP - 10}" x2="{x[n]}" y2="{height - 10}"/>'
        f'<text class="name" x="{x[n]}" y="{TOP - 20}">{escape(n)}</text>'
        for n in nodes
    ]
    note = f"<p>Showing the first {MAX_ROWS} of {len(history)} records.</p>" if cut else ""
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        '<defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#2a6ebb"/></marker></defs>'
        + "".join(lanes)
        + "\n".join(body)
        + "</svg>"
    )
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{note}\n{svg}\n</body></html>\n"
    )


def _arrow(cls: str, x1: float, y1: float, x2: float, y2: float, label: str, tip: str, cross: bool = False) -> str:
    head = "" if cross else ' marker-end="url(#head)"'
    parts = [
        f'<g class="{cls}"><title>{escape(tip)}</title>',
        f'<line class="{cls}" x1="{x1}" y1="{y1}" x2="{x2:.1f}" y2="{y2:.1f}"{head}/>',
        f'<text class="{"lostlabel" if cross else "label"}" x="{(x1 + x2) / 2 + 3:.1f}" y="{(y1 + y2) / 2 - 3:.1f}">'
        f"{escape(label)}</text>",
    ]
    if cross:
        parts.append(
            f'<path d="M{x2 - 4:.1f},{y2 - 4:.1f} L{x2 + 4:.1f},{y2 + 4:.1f} M{x2 - 4:.1f},{y2 + 4:.1f} '
            f'L{x2 + 4:.1f},{y2 - 4:.1f}" stroke="#c62828" stroke-width="2"/>'
        )
    parts.append("</g>")
    return "".join(parts)
