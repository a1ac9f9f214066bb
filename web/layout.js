/* Pumpkin's layout worker: places one view's nodes and arrow labels, off the page's thread.
 *
 * In:  {view, seq, nodes: [{id, left, right, top, bottom}], links: [{id, source, target, w, h}]}
 *      A node's extents are what is drawn for it (circle, labels, badge, self-loops) measured from its circle's
 *      centre; a link's w and h are its label's box (0 for none). Self-loops are not sent: the page draws them in
 *      the space the node's `top` reserves.
 * Out: {view, seq, nodes: {id: [x, y]} (circle centres), links: {id: {points: [[x, y]...], label: [x, y]}}, ms}
 *      `points` are the arrow's bends between its two circles; `label` is its label's centre.
 *
 * Graphs with arrows are laid out in layers, left to right, by dagre: each label is a node of the layout, so no
 * label overlaps a node or another label, and dagre orders each layer to avoid crossings. Nodes without a single
 * arrow (hosts that exchange nothing) are set in a grid instead of one tall column.
 */
"use strict";
importScripts("vendor/dagre/dagre.min.js");

const RANK_GAP = 26;   // px between a layer of nodes and the layer of labels beside it
const NODE_GAP = 22;   // px between boxes in one layer
const EDGE_GAP = 12;   // px between arrows that pass through a layer without a node there
const GRID_GAP = 40;   // px between boxes of the grid

onmessage = (ev) => {
  const t0 = performance.now();
  const out = ev.data.links.length ? layered(ev.data) : grid(ev.data);
  postMessage({view: ev.data.view, seq: ev.data.seq, ...out, ms: performance.now() - t0});
};

// dagre's result depends on the order nodes and edges are given in: sort them, so the same graph is drawn the
// same way whatever order the daemon listed it in.
const byId = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function layered({nodes, links}) {
  const g = new dagre.graphlib.Graph({multigraph: true});
  g.setGraph({rankdir: "LR", ranksep: RANK_GAP, nodesep: NODE_GAP, edgesep: EDGE_GAP, marginx: 0, marginy: 0});
  g.setDefaultEdgeLabel(() => ({}));
  const info = new Map();
  for (const n of [...nodes].sort(byId)) {
    info.set(n.id, n);
    g.setNode(n.id, {width: n.left + n.right, height: n.top + n.bottom});
  }
  for (const l of [...links].sort(byId)) {
    g.setEdge(l.source, l.target, {width: l.w, height: l.h, labelpos: "c"}, l.id);
  }
  dagre.layout(g, {customOrder: orderWithTranspose});

  // dagre centres each node's box; the circle sits where the node's extents put it inside that box.
  const shift = (id) => { const n = info.get(id); return [(n.left - n.right) / 2, (n.top - n.bottom) / 2]; };
  const placed = {};
  for (const id of g.nodes()) {
    const d = g.node(id), [sx, sy] = shift(id);
    placed[id] = [d.x + sx, d.y + sy];
  }
  // An arrow's bends move with its ends' circles (a label half-way moves half as much as each end), so an arrow
  // between two nodes drawn alike stays straight, and its label stays on it.
  const routed = {};
  const boxes = [];
  for (const e of g.edges()) {
    const d = g.edge(e), inner = (d.points || []).slice(1, -1);
    const [ax, ay] = shift(e.v), [bx, by] = shift(e.w);
    const m = inner.length;
    const points = inner.map((p, i) => {
      const t = (i + 1) / (m + 1);
      return [p.x + ax + (bx - ax) * t, p.y + ay + (by - ay) * t];
    });
    let label = null;
    if (d.width && d.x !== undefined) {
      let best = 0, dist = Infinity;
      inner.forEach((p, i) => { const q = Math.hypot(p.x - d.x, p.y - d.y); if (q < dist) { dist = q; best = i; } });
      const t = m ? (best + 1) / (m + 1) : 0.5;
      label = [d.x + ax + (bx - ax) * t, d.y + ay + (by - ay) * t];
      boxes.push({id: e.name, label, w: d.width, h: d.height});
    }
    routed[e.name] = {points, label};
  }
  separate(boxes, nodes.map((n) => ({x: placed[n.id][0], y: placed[n.id][1], n})));
  return {nodes: placed, links: routed};
}

/* The order of the nodes in each layer, which decides where arrows cross. dagre's own (barycentres swept up and
 * down) is the start; then sweeps that each end with the "transpose" step of Gansner et al. (swap neighbours in
 * a layer while that removes crossings), which dagre leaves out, keeping the best order seen. On a lattice of
 * five flows with cross-links (tests/web/test_layout.py) dagre alone leaves 20 crossings, this none. */
const SWEEPS = 24;
const RESTARTS = 8;
const ORDER_BUDGET_MS = 1000;  // fresh starts stop once ordering has taken this long (big graphs)
const ORDER_WORK_MAX = 3000;   // above this many nodes (with dummies), only one transpose pass: time is bounded
function orderWithTranspose(g, order) {
  const t0 = performance.now();
  order(g, {});
  const layers = [];
  for (const v of g.nodes()) {
    const d = g.node(v);
    if (typeof d.rank === "number") (layers[d.rank] ||= []).push(v);
  }
  const all = layers.filter(Boolean);
  for (const layer of all) layer.sort((a, b) => g.node(a).order - g.node(b).order);
  const pos = (v) => g.node(v).order;
  const renumber = (layer) => layer.forEach((v, i) => { g.node(v).order = i; });
  const preds = (v) => g.predecessors(v) || [], succs = (v) => g.successors(v) || [];
  const crossings = () => {
    let c = 0;
    for (const layer of all) {
      const ends = [];
      for (const v of layer) for (const w of succs(v)) ends.push([pos(v), pos(w)]);
      for (let i = 0; i < ends.length; i++) for (let j = i + 1; j < ends.length; j++) {
        const [a, b] = ends[i], [x, y] = ends[j];
        if ((a - x) * (b - y) < 0) c++;
      }
    }
    return c;
  };
  const between = (u, v, side) => {
    let c = 0;
    for (const a of side(u)) for (const b of side(v)) if (pos(a) > pos(b)) c++;
    return c;
  };
  const transpose = () => {
    for (let round = 0; round < 20; round++) {
      let improved = false;
      for (const layer of all) for (let i = 0; i + 1 < layer.length; i++) {
        const u = layer[i], v = layer[i + 1];
        if (between(v, u, preds) + between(v, u, succs) < between(u, v, preds) + between(u, v, succs)) {
          layer[i] = v; layer[i + 1] = u;
          g.node(v).order = i; g.node(u).order = i + 1;
          improved = true;
        }
      }
      if (!improved) return;
    }
  };
  if (g.nodeCount() > ORDER_WORK_MAX) { transpose(); return; }
  const snapshot = () => all.map((layer) => [...layer]);
  const restore = (layers) => layers.forEach((layer, i) => { all[i] = [...layer]; renumber(all[i]); });
  let best = null, bestCount = Infinity;
  const improve = () => {
    transpose();
    for (let sweep = 0; sweep <= SWEEPS && bestCount > 0; sweep++) {
      const count = crossings();
      if (count < bestCount) { bestCount = count; best = snapshot(); }
      const down = sweep % 2 === 0;
      for (const layer of down ? all.slice(1) : all.slice(0, -1).reverse()) {
        const key = new Map(layer.map((v) => {
          const nb = down ? preds(v) : succs(v);
          return [v, nb.length ? nb.reduce((s, n) => s + pos(n), 0) / nb.length : pos(v)];
        }));
        layer.sort((a, b) => key.get(a) - key.get(b) || pos(a) - pos(b));
        renumber(layer);
      }
      transpose();
    }
  };
  improve();
  // Sweeps settle in the nearest good order; a few fresh starts (shuffled layers, from a fixed seed so that a
  // graph is always drawn the same way) find better ones where crossings are left.
  const random = mulberry32(15);
  for (let start = 0; start < RESTARTS && bestCount > 0 && performance.now() - t0 < ORDER_BUDGET_MS; start++) {
    for (const layer of all) {
      for (let i = layer.length - 1; i > 0; i--) { const j = Math.floor(random() * (i + 1)); [layer[i], layer[j]] = [layer[j], layer[i]]; }
      renumber(layer);
    }
    improve();
  }
  restore(best);
}

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/* Labels that the arrows' bending brought together (nodes drawn differently side by side) are pushed apart
 * vertically: rare, and a few pixels when it happens. */
function separate(labels, nodes) {
  const overlap = (a, b) => Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0) > 0 && Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0) > 0;
  const boxOf = (l) => ({x0: l.label[0] - l.w / 2, x1: l.label[0] + l.w / 2, y0: l.label[1] - l.h / 2, y1: l.label[1] + l.h / 2});
  const fixed = nodes.map(({x, y, n}) => ({x0: x - n.left, x1: x + n.right, y0: y - n.top, y1: y + n.bottom}));
  for (let round = 0; round < 40; round++) {
    let moved = false;
    for (let i = 0; i < labels.length; i++) {
      const a = boxOf(labels[i]);
      for (const f of fixed) {
        if (!overlap(a, f)) continue;
        const up = a.y1 - f.y0, down = f.y1 - a.y0;
        labels[i].label[1] += up < down ? -(up + 2) : down + 2;
        moved = true;
      }
      for (let j = i + 1; j < labels.length; j++) {
        const b = boxOf(labels[j]), a2 = boxOf(labels[i]);
        if (!overlap(a2, b)) continue;
        const push = (Math.min(a2.y1, b.y1) - Math.max(a2.y0, b.y0)) / 2 + 1;
        const sign = labels[i].label[1] <= labels[j].label[1] ? 1 : -1;
        labels[i].label[1] -= sign * push;
        labels[j].label[1] += sign * push;
        moved = true;
      }
    }
    if (!moved) break;
  }
}

/* Nodes with no arrows between them: rows of a grid about as wide as it is tall (in boxes). */
function grid({nodes}) {
  const sorted = [...nodes].sort(byId);
  const w = Math.max(0, ...sorted.map((n) => n.left + n.right)) + GRID_GAP;
  const h = Math.max(0, ...sorted.map((n) => n.top + n.bottom)) + GRID_GAP;
  const cols = Math.max(1, Math.ceil(Math.sqrt((sorted.length * h) / w * 1.6)));
  const placed = {};
  sorted.forEach((n, i) => {
    const c = i % cols, r = Math.floor(i / cols);
    placed[n.id] = [c * w + w / 2 + (n.left - n.right) / 2, r * h + h / 2 + (n.top - n.bottom) / 2];
  });
  return {nodes: placed, links: {}};
}
