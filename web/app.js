/* Pumpkin's live page: three force-directed views of one network, fed by server-sent events.
 *
 * The daemon pushes two kinds of event on api/v1/events: "graph" (structure: automaton, seeds, hosts) when it
 * changes, and "stats" (counters, rates, waiting and failed packets, loads) when they change. Each view keeps
 * one d3 force simulation for its whole life: a new graph is merged into it (nodes keep their positions, new
 * ones start next to a neighbour), and stats only restyle what is drawn, without moving anything.
 */
"use strict";

const API = "api/v1";
const SPACING = 190;          // px between layers (distance from the data's entry point) in States and Seeds
const FAIL_HOT_MS = 30000;    // an arrow stays red this long after its seed's last failure
const MANY = 60;              // above this many nodes, labels give way when zoomed out
const CALM_LINKS = 120;       // above this many arrows, flowing ones are drawn thick and green but not animated
const HUB_SPLIT = 8;          // an in/out pseudo-state with more arrows than this is drawn once per arrow
const WARM_UP_TICKS = 150;    // a big new graph is laid out this far before its first frame

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const fmtRate = (r) => (r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2).replace(/\.?0+$/, "")) + "/s";
const fmtNum = (n) => (n ?? 0).toLocaleString("en");
const shortTag = (tag) => { const p = String(tag).split(":"); return p.length === 3 ? p[2] : String(tag); };
const shortNode = (id) => String(id);
const ago = (s) => (s < 1 ? "just now" : s < 90 ? `${Math.round(s)} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${(s / 3600).toFixed(1)} h ago`);
const fmtDuration = (s) => (s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : s < 172800 ? `${(s / 3600).toFixed(1)} h` : `${(s / 86400).toFixed(1)} days`);
const loadColour = d3.scaleLinear().domain([0, 1, 4, 10]).range(["#2ea043", "#3fb950", "#d29922", "#f85149"]).clamp(true);

/* The daemon's [http] token, kept for this tab only: with it GETs also show packet data, failure reasons and file
 * paths (the event stream never does: EventSource cannot send it), and POSTs are allowed. */
const token = () => sessionStorage.getItem("pumpkin-token") || "";
const authHeaders = () => (token() ? {Authorization: `Bearer ${token()}`} : {});

function tagMatches(a, b) {
  const x = String(a).split(":"), y = String(b).split(":");
  return x[0] === y[0] && x[2] === y[2] && (x[1] === y[1] || x[1] === "*" || y[1] === "*");
}

/* ---------------------------------------------------------------------------------------------- */
/* One force-directed view.                                                                        */

class GraphView {
  constructor(name, svgEl, opts) {
    this.name = name;
    this.opts = opts;
    this.svg = d3.select(svgEl);
    this.nodes = [];
    this.links = [];
    this.byId = new Map();
    this.active = false;
    this.dirty = false;
    this.autoFit = true;
    this.transform = d3.zoomIdentity;
    this.ticks = 0;

    const defs = this.svg.append("defs");
    for (const [cls, colour] of [["default", "#56606b"], ["active", "#3fb950"], ["failing", "#f85149"],
      ["disabled", "#6e7681"], ["highlight", "#ffffff"]]) {
      defs.append("marker").attr("id", `arrow-${name}-${cls}`).attr("viewBox", "0 -5 10 10").attr("refX", 10)
        .attr("refY", 0).attr("markerWidth", 9).attr("markerHeight", 9).attr("markerUnits", "userSpaceOnUse")
        .attr("orient", "auto").append("path").attr("d", "M0,-4.5L10,0L0,4.5Z").attr("fill", colour);
    }
    this.layer = this.svg.append("g").attr("class", "zoom-layer");
    this.gLinks = this.layer.append("g").attr("class", "links");
    this.gLabels = this.layer.append("g").attr("class", "link-labels");
    this.gNodes = this.layer.append("g").attr("class", "nodes");
    this.linkSel = this.gLinks.selectAll("path");
    this.labelSel = this.gLabels.selectAll("text");
    this.nodeSel = this.gNodes.selectAll("g.node");

    this.zoom = d3.zoom().scaleExtent([0.04, 4]).on("zoom", (ev) => {
      this.transform = ev.transform;
      this.layer.attr("transform", ev.transform);
      if (ev.sourceEvent) this.autoFit = false;
      const was = this.labelsShown();
      this.svg.classed("zoomed-out", ev.transform.k < 0.55);
      if (!was && this.labelsShown()) this.labelSel.attr("x", (d) => d._lx).attr("y", (d) => d._ly);
    });
    this.svg.call(this.zoom).on("dblclick.zoom", null);
    this.svg.on("click", (ev) => { if (ev.target === this.svg.node()) opts.onBackground(); });

    const layered = !!opts.layered;
    this.sim = d3.forceSimulation()
      .force("link", d3.forceLink().id((d) => d.id).distance(opts.linkDistance || 130).strength(0.35))
      .force("charge", d3.forceManyBody().strength(opts.charge || -520).distanceMax(900).theta(0.9))
      .force("collide", d3.forceCollide().radius((d) => d.r + 16).iterations(1))
      .force("x", d3.forceX((d) => (layered ? d.layer * SPACING : 0)).strength(layered ? 0.3 : 0.04))
      .force("y", d3.forceY(0).strength(layered ? 0.07 : 0.04))
      .velocityDecay(0.38)
      .on("tick", () => this.tick())
      .on("end", () => this.ended())
      .stop();

    this.drag = d3.drag()
      .on("start", (ev, d) => { if (!ev.active) this.sim.alphaTarget(0.15).restart(); d.fx = d.x; d.fy = d.y; })
      .on("drag", (ev, d) => { d.fx = ev.x; d.fy = ev.y; })
      .on("end", (ev, d) => { if (!ev.active) this.sim.alphaTarget(0); d.fx = null; d.fy = null; });
  }

  /* Merge a new structure in: existing nodes keep position and speed; returns true when anything changed. */
  setModel(nodes, links) {
    const before = this.signature;
    const next = new Map();
    for (const n of nodes) {
      const old = this.byId.get(n.id);
      next.set(n.id, old ? Object.assign(old, n, {entering: false}) : Object.assign(n, {entering: true}));
    }
    const ids = new Set(next.keys());
    const links2 = links.filter((l) => ids.has(l.source) && ids.has(l.target));
    // New nodes start beside a neighbour already placed (or on their layer), so the picture grows, not jumps.
    for (const n of next.values()) {
      if (n.x !== undefined) continue;
      const nb = links2.map((l) => (l.source === n.id ? l.target : l.target === n.id ? l.source : null))
        .map((id) => this.byId.get(id)).find((m) => m && m.x !== undefined);
      const jitter = () => (Math.random() - 0.5) * 60;
      if (nb) { n.x = nb.x + (this.opts.layered ? (n.layer - nb.layer) * SPACING * 0.8 : 0) + jitter(); n.y = nb.y + jitter(); }
      else { n.x = (this.opts.layered ? n.layer * SPACING : 0) + jitter() * 3; n.y = jitter() * 3; }
    }
    curve(links2);
    this.byId = next;
    this.nodes = [...next.values()];
    this.links = links2;
    this.signature = [...ids].sort().join("\n") + "\n--\n" + links2.map((l) => l.id).sort().join("\n");
    const changed = this.signature !== before;
    this.join();
    this.sim.nodes(this.nodes);
    this.sim.force("link").links(this.links);
    // Big graphs settle faster (fewer frames of motion), and a big batch of new nodes is laid out before it
    // is first drawn: a few hundred ms once, instead of seconds of a hairball untangling on screen.
    this.sim.alphaDecay(this.nodes.length > 100 ? 0.045 : 0.0228);
    const fresh = this.nodes.filter((n) => n.entering).length;
    if (fresh > 50) { this.sim.alpha(1); this.sim.tick(WARM_UP_TICKS); this.ticks = Math.max(this.ticks, 1); }
    this.svg.classed("calm", this.links.length > CALM_LINKS);
    if (changed) {
      if (this.active) this.sim.alpha(Math.max(this.sim.alpha(), this.ticks ? 0.45 : 1)).restart();
      else this.dirty = true;
    }
    this.tick();
    return changed;
  }

  join() {
    const o = this.opts;
    this.linkSel = this.gLinks.selectAll("path.link").data(this.links, (d) => d.id)
      .join((enter) => enter.append("path").attr("class", "link"))
      .attr("data-id", (d) => d.id);
    this.labelSel = this.gLabels.selectAll("text.link-label").data(this.links, (d) => d.id)
      .join((enter) => {
        const t = enter.append("text").attr("class", "link-label").attr("dy", -4);
        t.append("tspan").attr("class", "name");
        t.append("tspan").attr("class", "rate");
        t.append("tspan").attr("class", "fail");
        t.on("click", (ev, d) => { ev.stopPropagation(); o.onLinkClick?.(d); });
        return t;
      });
    this.labelSel.select("tspan.name").text((d) => d.label || "");
    this.nodeSel = this.gNodes.selectAll("g.node").data(this.nodes, (d) => d.id)
      .join((enter) => {
        const g = enter.append("g").attr("class", "node");
        g.append("circle").attr("class", "body");
        g.append("text").attr("class", "glyph");
        g.append("text").attr("class", "label");
        g.append("text").attr("class", "sublabel");
        const b = g.append("g").attr("class", "badge").style("display", "none");
        b.append("rect").attr("rx", 8).attr("height", 16).attr("y", -8);
        b.append("text");
        g.append("title");
        g.on("click", (ev, d) => { ev.stopPropagation(); o.onClick(d); });
        g.call(this.drag);
        return g;
      })
      .attr("data-id", (d) => d.id)
      .classed("entering", (d) => d.entering);
    this.nodeSel.select("circle.body").attr("r", (d) => d.r);
    this.nodeSel.select("text.glyph").text((d) => d.glyph || "");
    this.nodeSel.select("text.label").attr("y", (d) => d.r + 15).text((d) => d.label);
    this.nodeSel.select("text.sublabel").attr("y", (d) => d.r + 28).text((d) => d.sub || "");
    this.nodeSel.select("title").text((d) => d.title || d.id);
    this.svg.classed("many", this.nodes.length > MANY);
  }

  tick() {
    this.ticks++;
    this.nodeSel.attr("transform", (d) => `translate(${d.x.toFixed(1)},${d.y.toFixed(1)})`);
    this.linkSel.attr("d", (d) => geometry(d).path);
    if (this.labelsShown()) this.labelSel.attr("x", (d) => d._lx).attr("y", (d) => d._ly);
    if (this.autoFit && this.active && this.ticks % 3 === 0) this.fit(false);
  }

  ended() { if (this.autoFit && this.active) this.fit(true); }

  labelsShown() {
    const c = this.svg.node().classList;
    return !c.contains("hide-link-labels") && !(c.contains("zoomed-out") && c.contains("many"));
  }

  bounds() {
    if (!this.nodes.length) return null;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of this.nodes) {
      x0 = Math.min(x0, n.x - n.r - 50); x1 = Math.max(x1, n.x + n.r + 50);
      y0 = Math.min(y0, n.y - n.r - 30); y1 = Math.max(y1, n.y + n.r + 40);
    }
    for (const l of this.links) if (l._ly !== undefined) { y0 = Math.min(y0, l._ly - 20); y1 = Math.max(y1, l._ly + 10); }
    return [x0, y0, x1, y1];
  }

  /* Zoom so that everything shows; smooth=false eases a step towards it (called while the layout moves). */
  fit(smooth) {
    const b = this.bounds();
    const el = this.svg.node();
    const W = el.clientWidth, H = el.clientHeight;
    if (!b || !W || !H) return;
    const k = Math.min(W / (b[2] - b[0]), H / (b[3] - b[1]), 1.5) * 0.94;
    const target = d3.zoomIdentity.translate(W / 2 - k * (b[0] + b[2]) / 2, H / 2 - k * (b[1] + b[3]) / 2).scale(k);
    if (smooth) { this.svg.transition().duration(450).call(this.zoom.transform, target); return; }
    const t = this.transform, a = this.ticks < 4 ? 1 : 0.25;
    const mix = d3.zoomIdentity.translate(t.x + (target.x - t.x) * a, t.y + (target.y - t.y) * a).scale(t.k + (target.k - t.k) * a);
    this.svg.call(this.zoom.transform, mix);
  }

  activate() {
    this.active = true;
    if (this.dirty || this.ticks < 2) { this.dirty = false; this.sim.alpha(Math.max(this.sim.alpha(), 0.8)).restart(); }
    else this.tick();
    if (this.autoFit) this.fit(false);
  }

  deactivate() { this.active = false; this.sim.stop(); }

  get settled() { return this.sim.alpha() < this.sim.alphaMin() || (!this.active && !this.dirty); }
}

/* Multi-arrows between one pair of nodes bow apart; an arrow and its reverse too. */
function curve(links) {
  const groups = new Map();
  for (const l of links) {
    const key = l.source === l.target ? `loop:${l.source}` : [l.source, l.target].sort().join("\u0000");
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(l);
  }
  for (const group of groups.values()) {
    group.sort((a, b) => (a.id < b.id ? -1 : 1));
    const n = group.length;
    group.forEach((l, i) => {
      l.loop = l.source === l.target ? i : -1;
      const canonical = String(l.source) <= String(l.target);
      const off = n === 1 ? 0 : (i - (n - 1) / 2) * 44;
      l.offset = canonical ? off : -off;
    });
  }
}

function geometry(l) {
  const s = l.source, t = l.target;
  if (typeof s !== "object") return {path: ""};
  if (s === t) {
    const r = s.r, h = (r + 34) * (1 + l.loop * 0.45);
    const a = [s.x - r * 0.7, s.y - r * 0.7], b = [s.x + r * 0.7, s.y - r * 0.7];
    l._lx = s.x; l._ly = s.y - h * 0.98;
    return {path: `M${a}C${s.x - h},${s.y - h * 1.35} ${s.x + h},${s.y - h * 1.35} ${b}`};
  }
  const dx = t.x - s.x, dy = t.y - s.y, dist = Math.hypot(dx, dy) || 1;
  const nx = -dy / dist, ny = dx / dist;
  const cx = (s.x + t.x) / 2 + nx * l.offset, cy = (s.y + t.y) / 2 + ny * l.offset;
  const d0x = cx - s.x, d0y = cy - s.y, d0 = Math.hypot(d0x, d0y) || 1;
  const d1x = t.x - cx, d1y = t.y - cy, d1 = Math.hypot(d1x, d1y) || 1;
  const p0x = s.x + (d0x / d0) * s.r, p0y = s.y + (d0y / d0) * s.r;
  const p2x = t.x - (d1x / d1) * (t.r + 3), p2y = t.y - (d1y / d1) * (t.r + 3);
  l._lx = 0.25 * p0x + 0.5 * cx + 0.25 * p2x;
  l._ly = 0.25 * p0y + 0.5 * cy + 0.25 * p2y;
  return {path: `M${p0x.toFixed(1)},${p0y.toFixed(1)}Q${cx.toFixed(1)},${cy.toFixed(1)} ${p2x.toFixed(1)},${p2y.toFixed(1)}`};
}

/* Distance from where data enters, for a left-to-right reading order. */
function layers(ids, links, isSource) {
  const out = new Map(ids.map((id) => [id, []])), indeg = new Map(ids.map((id) => [id, 0]));
  for (const l of links) if (l.source !== l.target) { out.get(l.source).push(l.target); indeg.set(l.target, indeg.get(l.target) + 1); }
  const layer = new Map();
  let frontier = ids.filter((id) => isSource(id) || indeg.get(id) === 0);
  if (!frontier.length && ids.length) frontier = [ids[0]];
  frontier.forEach((id) => layer.set(id, 0));
  while (frontier.length) {
    const next = [];
    for (const id of frontier) for (const m of out.get(id)) if (!layer.has(m)) { layer.set(m, layer.get(id) + 1); next.push(m); }
    frontier = next;
    if (!frontier.length) {
      const left = ids.find((id) => !layer.has(id));
      if (left !== undefined) { layer.set(left, 0); frontier = [left]; }
    }
  }
  return layer;
}

/* ---------------------------------------------------------------------------------------------- */
/* Models: what each view draws, from the graph payload (and, for waiting-only states, the stats).  */

function statesModel(graph, stats) {
  const nodes = new Map();
  const addState = (id, extra = {}) => {
    if (nodes.has(id)) return;
    const [group, type, state] = String(id).split(":");
    const pseudo = type === "Seed" && (state === "INJECTION" || state === "EXTRACTION");
    nodes.set(id, {id, kind: "state", pseudo, ghost: false, label: pseudo ? (state === "INJECTION" ? "in" : "out") : state,
      sub: pseudo ? "" : `${type}${group !== graph.node.group ? " · " + group : ""}`, r: pseudo ? 13 : 22,
      glyph: "", title: id, ...extra});
  };
  for (const n of graph.automaton.nodes) addState(n.id);
  const links = graph.automaton.links.map((l) => ({id: `${l.seed}|${l.source}|${l.target}`, source: l.source,
    target: l.target, seed: l.seed, nodes: l.nodes, disabled: false,
    // An AND-join's arrows: the seed runs once data of a lineage is in every one of these states.
    label: l.join ? `${l.seed} (${l.join.map((t) => t.split(":").pop()).join(" & ")})` : l.seed}));
  for (const s of graph.seeds.filter((s) => !s.enabled)) {
    const group = graph.node.group;
    const ins = s.inputs.length ? s.inputs : [`${group}:Seed:INJECTION`];
    const outs = s.outputs.length ? s.outputs : [`${group}:Seed:EXTRACTION`];
    for (const i of ins) for (const o of outs) {
      addState(i); addState(o);
      links.push({id: `${s.name}|${i}|${o}`, source: i, target: o, seed: s.name, label: s.name, nodes: [], disabled: true});
    }
  }
  for (const w of stats?.waiting_on || []) {
    if (!w.nodes.length) addState(w.state, {ghost: true, sub: "no seed consumes this", r: 20});
  }
  // A pseudo-state many seeds lead to (or come from) would pull them all into one knot: give each arrow its own.
  for (const hub of [...nodes.values()].filter((n) => n.pseudo)) {
    const out = hub.id.endsWith(":Seed:EXTRACTION");
    const touching = links.filter((l) => (out ? l.target : l.source) === hub.id);
    if (touching.length <= HUB_SPLIT) continue;
    nodes.delete(hub.id);
    for (const l of touching) {
      const id = `${hub.id}#${l.seed}`;
      nodes.set(id, {...hub, id, alias: hub.id, label: "", r: 6, title: `${hub.id} (${l.seed})`});
      if (out) l.target = id; else l.source = id;
    }
  }
  const ids = [...nodes.keys()];
  const layer = layers(ids, links, (id) => id.endsWith(":Seed:INJECTION"));
  // "out" sits one column right of everything else, so arrows into it point right instead of crossing a column.
  const isOut = (n) => n.id.endsWith(":Seed:EXTRACTION") && !n.alias;
  const maxLayer = Math.max(0, ...[...nodes.values()].filter((n) => !isOut(n)).map((n) => layer.get(n.id) || 0));
  for (const n of nodes.values()) n.layer = isOut(n) ? maxLayer + 1 : layer.get(n.id) || 0;
  return {nodes: [...nodes.values()], links};
}

function seedsModel(graph) {
  const nodes = graph.seeds.map((s) => ({id: s.name, kind: "seed", label: s.name, seed: s,
    sub: s.nodes.length > 1 ? `on ${s.nodes.length} hosts` : s.nodes.length ? (s.local ? "this node" : shortNode(s.nodes[0])) : "disabled",
    r: 19, glyph: s.injector ? "▶" : s.extractor ? "■" : "", title: `${s.name}: ${s.inputs.join(", ") || "injector"} → ${s.outputs.join(", ") || "extractor"}`}));
  const byName = new Map(graph.seeds.map((s) => [s.name, s]));
  const links = [];
  for (const a of graph.seeds) for (const b of a.feeds) {
    const via = a.outputs.filter((o) => byName.get(b).inputs.some((i) => tagMatches(o, i))).map(shortTag);
    links.push({id: `${a.name}>${b}`, source: a.name, target: b, seed: a.name, label: [...new Set(via)].join(", ")});
  }
  const layer = layers(nodes.map((n) => n.id), links, (id) => byName.get(id).injector);
  nodes.forEach((n) => (n.layer = layer.get(n.id) || 0));
  return {nodes, links};
}

function hostsModel(graph) {
  const nodes = graph.hosts.nodes.map((h) => ({id: h.id, kind: "host", host: h, label: shortNode(h.id),
    sub: `${h.self ? "this node · " : ""}${h.seeds.length} seed${h.seeds.length === 1 ? "" : "s"}`,
    r: 20 + Math.min(16, Math.sqrt(h.seeds.length) * 4), glyph: String(h.seeds.length), title: h.id}));
  const links = graph.hosts.links.map((l) => ({id: `${l.source}>${l.target}`, source: l.source, target: l.target,
    seeds: l.seeds, label: l.seeds.length > 2 ? `${l.seeds.slice(0, 2).join(", ")} +${l.seeds.length - 2}` : l.seeds.join(", ")}));
  return {nodes, links};
}

/* ---------------------------------------------------------------------------------------------- */
/* The page.                                                                                       */

const page = {
  graph: null, stats: null, view: "states", selected: null, lastFailure: new Map(), failureSeen: 0,
  events: [], extra: new Map(), showLabels: true, connected: false, tokenError: "",
};

const views = {
  states: new GraphView("states", $("#view-states"), {layered: true, onClick: (d) => select("states", d.alias || d.id),
    onLinkClick: (d) => select("seeds", d.seed), onBackground: () => select(null)}),
  seeds: new GraphView("seeds", $("#view-seeds"), {layered: true, linkDistance: 150, onClick: (d) => select("seeds", d.id),
    onBackground: () => select(null)}),
  hosts: new GraphView("hosts", $("#view-hosts"), {linkDistance: 230, charge: -900, onClick: (d) => select("hosts", d.id),
    onBackground: () => select(null)}),
};

function seedRate(name) { return page.stats?.rates?.seeds?.[name] || 0; }
function seedFailures(name) { return page.stats?.seed_failures?.[name] || 0; }
function seedHot(name) { return Date.now() - (page.lastFailure.get(name) || 0) < FAIL_HOT_MS; }
function widthFor(rate) { return rate > 0 ? 2 + Math.min(5, 1.6 * Math.log10(1 + rate)) : 1.6; }
function flowDuration(rate) { return `${Math.max(0.25, 1.6 / Math.log2(2 + rate)).toFixed(2)}s`; }

function rebuild() {
  const g = page.graph;
  if (!g) return;
  views.states.setModel(...Object.values(statesModel(g, page.stats)));
  views.seeds.setModel(...Object.values(seedsModel(g)));
  views.hosts.setModel(...Object.values(hostsModel(g)));
  decorate();
}

function waitingByNode() {
  const m = new Map();
  for (const w of page.stats?.waiting_on || []) for (const id of (w.nodes.length ? w.nodes : [w.state])) m.set(id, (m.get(id) || 0) + w.count);
  return m;
}

function badge(sel, value, red) {
  const b = sel.select("g.badge");
  b.style("display", (d) => (value(d) ? null : "none")).classed("red", red);
  b.select("text").text((d) => fmtNum(value(d)));
  b.each(function (d) {
    const w = Math.max(16, 7 * String(fmtNum(value(d))).length + 8);
    d3.select(this).attr("transform", `translate(${(d.r * 0.72).toFixed(1)},${(-d.r * 0.72).toFixed(1)})`)
      .select("rect").attr("width", w).attr("x", -w / 2);
  });
}

function styleLinks(view, rateOf, failOf, hotOf, extraClass = () => "") {
  const marker = (cls) => `url(#arrow-${view.name}-${cls})`;
  view.linkSel
    .attr("class", (d) => {
      const rate = rateOf(d), cls = ["link", extraClass(d)];
      if (d.disabled) cls.push("disabled"); else if (hotOf(d)) cls.push("failing"); else if (rate > 0) cls.push("active");
      if (isSelectedLink(d)) cls.push("highlight");
      return cls.join(" ");
    })
    .attr("marker-end", (d) => marker(isSelectedLink(d) ? "highlight" : d.disabled ? "disabled" : hotOf(d) ? "failing" : rateOf(d) > 0 ? "active" : "default"))
    .style("stroke-width", (d) => `${widthFor(rateOf(d))}px`)
    .style("animation-duration", (d) => flowDuration(rateOf(d)));
  view.labelSel.select("tspan.rate").text((d) => (rateOf(d) > 0 ? `  ${fmtRate(rateOf(d))}` : ""));
  view.labelSel.select("tspan.fail").text((d) => (failOf(d) ? `  ⚠ ${failOf(d)}` : ""));
}

function isSelectedLink(d) {
  const s = page.selected;
  if (!s) return false;
  const src = typeof d.source === "object" ? d.source.id : d.source, dst = typeof d.target === "object" ? d.target.id : d.target;
  if (s.view === "states" && d.seed !== undefined && views.states.linkSel && page.view === "states") return src === s.id || dst === s.id;
  return src === s.id || dst === s.id;
}

/* Restyle from the latest stats. Only the visible view: the others are restyled when shown. */
function decorate() {
  const st = page.stats;
  if (!page.graph) return;
  chips();
  empty();
  const waiting = waitingByNode();
  const on = page.view;
  // States: waiting badges; arrows by their seed's rate and failures.
  const sv = views.states;
  if (on === "states") {
  sv.nodeSel.select("circle.body")
    .attr("fill", (d) => (d.ghost ? "#2a1f14" : d.pseudo ? "#21262d" : "#1f6feb"))
    .attr("stroke", (d) => (waiting.get(d.id) ? "#f0883e" : d.ghost ? "#f0883e" : d.pseudo ? "#6e7681" : "#79c0ff"))
    .attr("stroke-dasharray", (d) => (d.ghost ? "4 3" : null));
  sv.nodeSel.select("text.label").attr("fill", (d) => (d.pseudo ? "#8b949e" : null));
  badge(sv.nodeSel, (d) => waiting.get(d.id) || 0, false);
  sv.nodeSel.select("title").text((d) => `${d.id}${waiting.get(d.id) ? `\n${waiting.get(d.id)} packet(s) waiting` : ""}`);
  styleLinks(sv, (d) => (d.disabled ? 0 : seedRate(d.seed)), (d) => seedFailures(d.seed), (d) => seedHot(d.seed));
  }
  // Seeds: colour by kind; failing seeds ringed red; arrows carry the feeding seed's rate.
  const kv = views.seeds;
  if (on === "seeds") {
  kv.nodeSel.select("circle.body")
    .attr("fill", (d) => (!d.seed.enabled ? "#30363d" : d.seed.injector ? "#1b7c83" : d.seed.extractor ? "#9e6a03" : "#6e40c9"))
    .attr("stroke", (d) => (seedHot(d.id) ? "#f85149" : seedRate(d.id) > 0 ? "#3fb950" : d.seed.local ? "#d2a8ff" : "#6e7681"))
    .attr("stroke-dasharray", (d) => (d.seed.enabled ? null : "3 3"));
  badge(kv.nodeSel, (d) => seedFailures(d.id), true);
  kv.nodeSel.select("text.sublabel").text((d) => [d.sub, seedRate(d.id) > 0 ? fmtRate(seedRate(d.id)) : ""].filter(Boolean).join(" · "));
  styleLinks(kv, (d) => seedRate(d.seed), () => 0, (d) => seedHot(d.seed));
  }
  // Hosts: fill by load, outline by health; arrows from this node carry the measured send rate.
  const hv = views.hosts;
  const me = page.graph.node.id;
  if (on === "hosts") {
  const loads = st?.loads || {};
  hv.nodeSel.select("circle.body")
    .attr("fill", (d) => loadColour(loads[d.id] || 0))
    .attr("stroke", (d) => (d.host.state === "evasive" ? "#d29922" : d.host.self ? "#d2a8ff" : "#c9d1d9"))
    .attr("stroke-width", (d) => (d.host.self ? 4 : 2))
    .attr("stroke-dasharray", (d) => (d.host.state === "evasive" ? "5 4" : null));
  badge(hv.nodeSel, (d) => (d.host.self ? st?.failed_total || 0 : 0), true);
  const peerRate = (d) => ((typeof d.source === "object" ? d.source.id : d.source) === me ? st?.rates?.peers?.[typeof d.target === "object" ? d.target.id : d.target] || 0 : 0);
  styleLinks(hv, peerRate, () => 0, () => false, (d) => ((typeof d.source === "object" ? d.source.id : d.source) === me ? "" : "potential"));
  }
  views[on].nodeSel.classed("selected", (d) => page.selected?.view === on && (page.selected.id === d.id || page.selected.id === d.alias));
}

function chips() {
  const g = page.graph, st = page.stats || {};
  const states = g.automaton.nodes.filter((n) => !n.pseudo).length;
  const activity = Object.values(st.rates?.seeds || {}).reduce((a, b) => a + b, 0);
  const peers = g.hosts.nodes.length;
  const evasive = g.hosts.nodes.filter((h) => h.state === "evasive").length;
  const chip = (label, value, cls = "") => `<span class="chip ${cls}"><b>${value}</b> ${label}</span>`;
  $("#chips").innerHTML = [
    chip(states === 1 ? "state" : "states", fmtNum(states)),
    chip(g.seeds.length === 1 ? "seed" : "seeds", fmtNum(g.seeds.length)),
    chip(peers === 1 ? "host" : "hosts", fmtNum(peers) + (evasive ? ` (${evasive} evasive)` : ""), evasive ? "warn" : ""),
    chip("waiting", fmtNum(st.waiting_total || 0), st.waiting_total ? "warn" : ""),
    chip("failed", fmtNum(st.failed_total || 0), st.failed_total ? "bad" : ""),
    chip("packets/s", activity ? fmtRate(activity).replace("/s", "") : "0", activity ? "flow" : ""),
  ].join("");
  $("#node-id").textContent = g.node.id;
  document.title = `Pumpkin · ${g.node.id}`;
}

function empty() {
  const v = views[page.view], el = $("#empty");
  const msg = {states: "No states yet: no seed runs anywhere in this network.", seeds: "No seeds yet.", hosts: ""}[page.view];
  el.hidden = !!v.nodes.length || !msg;
  el.textContent = msg;
}

/* ---------------------------------------------------------------------------------------------- */
/* Views, selection, details.                                                                      */

function show(name) {
  if (!views[name]) return;
  page.view = name;
  for (const [n, v] of Object.entries(views)) {
    const on = n === name;
    v.svg.classed("active", on);
    if (on) v.activate(); else v.deactivate();
  }
  document.querySelectorAll(".tabs button").forEach((b) => b.classList.toggle("active", b.dataset.view === name));
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  legend();
  empty();
  decorate();
}

function select(view, id) {
  page.selected = view ? {view, id} : null;
  if (view && view !== page.view) show(view);
  decorate();
  renderDetails(true);
  if (page.selected) fetchExtra();
}

let extraTimer = 0;
const extraKey = () => (page.selected ? `${page.selected.view}:${page.selected.id}` : "overview");
/* What the details panel shows beyond the stream: a state's waiting packets, a seed's errors, and (with the
 * token) the latest failures with their reasons. */
async function fetchExtra() {
  const s = page.selected, key = extraKey();
  let url = null;
  if (!s && token()) url = `${API}/failed?limit=20`;
  else if (s?.view === "states") url = `${API}/waiting?limit=10&state=${encodeURIComponent(s.id)}`;
  else if (s?.view === "seeds") url = `${API}/seeds/${encodeURIComponent(s.id)}`;
  if (!url) return;
  try {
    const r = await fetch(url, {headers: authHeaders()});
    if (r.status === 401) { forgetToken("The daemon refused that token."); return; }
    if (r.ok) { page.extra.set(key, await r.json()); if (extraKey() === key) renderDetails(false); }
  } catch (e) { /* the stream's indicator already says when the daemon is gone */ }
}

function useToken(value) {
  sessionStorage.setItem("pumpkin-token", value);
  page.tokenError = "";
  page.extra.clear();
  renderDetails(true);
  fetchExtra();
}

function forgetToken(why) {
  sessionStorage.removeItem("pumpkin-token");
  page.tokenError = why;
  page.extra.clear();
  renderDetails(true);
}

function row(label, value, cls = "") { return `<tr><td>${esc(label)}</td><td class="${cls}">${value}</td></tr>`; }
function nodeLink(view, id, text) { return `<span class="link" data-goto="${esc(view)}" data-id="${esc(id)}">${esc(text ?? id)}</span>`; }

function renderDetails(fresh) {
  const el = $("#details");
  const s = page.selected, g = page.graph;
  if (!g) { el.innerHTML = `<p class="muted">Waiting for the daemon…</p>`; return; }
  let info;
  if (!s) info = overview();
  else if (s.view === "states") info = stateDetails(s.id);
  else if (s.view === "seeds") info = seedDetails(s.id);
  else info = hostDetails(s.id);
  if (info === null) { page.selected = null; info = overview(); }
  if (fresh || !$("#details .info")) {
    el.innerHTML = `<div class="info"></div><div class="act"></div>`;
    $("#details .act").innerHTML = tokenBox() + actions();
    bindActions();
  }
  $("#details .info").innerHTML = info;
  $("#details .info").querySelectorAll("[data-goto]").forEach((a) => a.addEventListener("click", () => select(a.dataset.goto, a.dataset.id)));
}

/* Without the token a failure has no reason (it may quote the packet's data) and no file. */
function failureList(items) {
  if (!items.length) return `<p class="muted">None.</p>`;
  const what = (f) => (f.reason !== undefined ? esc(f.reason) : `${esc(f.kind)}${f.state ? " in " + esc(f.state) : ""} <span class="muted locked">(the reason needs the token)</span>`);
  return `<ul>${items.map((f) => `<li class="err"><div>${what(f)}</div><div class="when">${new Date(f.time * 1000).toLocaleTimeString()} · ${esc(f.kind)}${f.seed ? " · " + nodeLink("seeds", f.seed) : ""}${f.file ? ` · <span class="mono">${esc(f.file)}</span>` : ""}</div></li>`).join("")}</ul>`;
}

function overview() {
  const g = page.graph, st = page.stats || {};
  const r = st.router || {};
  const kinds = Object.entries(st.failed || {}).map(([k, n]) => `${esc(k)} ${fmtNum(n)}`).join(", ") || "none";
  const failed = page.extra.get("overview");
  return `<div class="kind">Network</div><h2>${esc(g.node.id)}</h2>
    <div class="sub">this page's node · group <b>${esc(g.node.group)}</b> · up ${fmtDuration(st.uptime_s || 0)}</div>
    <p class="muted">Click a state, a seed or a host for its details. Drag to move, scroll to zoom. Rates are packets per second as seen from this node.</p>
    <h3>This node's counters</h3><table>
    ${row("injected", fmtNum(r.injected), "num")}${row("emitted by seeds", fmtNum(r.emitted), "num")}
    ${row("extracted", fmtNum(r.extracted), "num")}${row("sent to peers", fmtNum(r.remote), "num")}
    ${row("waiting now", fmtNum(st.waiting_total), st.waiting_total ? "num warn" : "num")}
    ${row("failed", `${fmtNum(st.failed_total)} <span class="muted">(${kinds})</span>`, st.failed_total ? "bad" : "")}
    ${failed?.folder ? row("kept in", `<span class="mono path">${esc(failed.folder)}</span>`) : ""}
    </table>
    <h3>Recent failures</h3>${failureList(failed?.recent || st.recent_failures || [])}
    <h3>API</h3><p class="muted">JSON for all of this: <a href="${API}" target="_blank">${API}</a> · <a href="${API}/openapi.json" target="_blank">OpenAPI</a></p>`;
}

function stateDetails(id) {
  const g = page.graph, st = page.stats || {};
  const node = views.states.byId.get(id) || views.states.nodes.find((n) => n.alias === id);
  if (!node) return null;
  const waiting = waitingByNode().get(id) || 0;
  const is = (n) => n.id === id || n.alias === id;
  const into = views.states.links.filter((l) => is(l.target)), from = views.states.links.filter((l) => is(l.source));
  const seedItem = (l) => `<li>${nodeLink("seeds", l.seed)} <span class="muted">${l.disabled ? "(disabled)" : seedRate(l.seed) ? fmtRate(seedRate(l.seed)) : ""}</span></li>`;
  const extra = page.extra.get(`states:${id}`);
  const packets = Object.values(extra?.states || {}).flatMap((s) => s.oldest);
  const kind = node.pseudo ? "Pseudo-state" : node.ghost ? "State without a seed" : "State";
  return `<div class="kind">${kind}</div><h2>${esc(node.label || shortTag(id))}</h2><div class="sub mono">${esc(id)}</div>
    ${node.pseudo ? `<p class="muted">${id.endsWith("INJECTION") ? "Where injectors' data comes from: outside the network." : "Where extractors' data goes: out of the network."}</p>` : ""}
    <h3>Waiting packets</h3>
    <table>${row("waiting for a consumer", `<b class="${waiting ? "warn" : ""}">${fmtNum(waiting)}</b>`)}</table>
    ${waiting ? (packets.length ? `<ul>${packets.map((p) => `<li class="pkt"><div class="mono">${esc(p.id)}</div><div>${p.data !== undefined ? esc(p.data) : `<span class="muted locked">data: needs the token</span>`}</div><div class="muted" style="font-size:11px">${ago(p.age_s)} · ${p.trail.length} hop(s): ${esc(p.trail.map((h) => h.seed).join(" → "))}</div></li>`).join("")}</ul>` : `<p class="muted">loading…</p>`) : ""}
    <h3>Produced by</h3>${into.length ? `<ul>${into.map(seedItem).join("")}</ul>` : `<p class="muted">No seed emits this state.</p>`}
    <h3>Consumed by</h3>${from.length ? `<ul>${from.map(seedItem).join("")}</ul>` : `<p class="muted">No seed consumes this state${node.pseudo ? "" : ": its packets wait"}.</p>`}`;
}

function seedDetails(name) {
  const g = page.graph, st = page.stats || {};
  const s = g.seeds.find((x) => x.name === name);
  if (!s) return null;
  const c = st.seeds?.[name];
  const extra = page.extra.get(`seeds:${name}`);
  const errors = extra?.recent_errors || (st.recent_failures || []).filter((f) => f.seed === name);
  const kind = s.injector ? "Injector seed" : s.extractor ? "Extractor seed" : "Seed";
  const status = !s.enabled ? `<span class="pill off">disabled</span>` : seedHot(name) ? `<span class="pill bad">failing</span>` : seedRate(name) ? `<span class="pill ok">flowing</span>` : "";
  const delivered = extra?.delivered || {};
  return `<div class="kind">${kind}</div><h2>${esc(name)} ${status}</h2>${s.description ? `<div class="sub">${esc(s.description)}</div>` : ""}
    <h3>Flow</h3><table>
    ${row("consumes", s.inputs.map((t) => nodeLink("states", t, t)).join("<br>") || `<span class="muted">nothing (injector)</span>`)}
    ${row("emits", s.outputs.map((t) => nodeLink("states", t, t)).join("<br>") || `<span class="muted">nothing (extractor)</span>`)}
    ${row("fed by", s.fed_by.map((n) => nodeLink("seeds", n)).join(", ") || `<span class="muted">—</span>`)}
    ${row("feeds", s.feeds.map((n) => nodeLink("seeds", n)).join(", ") || `<span class="muted">—</span>`)}
    </table>
    <h3>Runs on</h3><ul>${s.nodes.map((n) => `<li>${nodeLink("hosts", n)} ${n === g.node.id ? `<span class="pill" style="color:var(--purple)">this node</span>` : ""} <span class="muted">${delivered[n] ? fmtNum(delivered[n]) + " packets sent here" : ""}</span></li>`).join("") || `<li class="muted">nowhere right now${s.local && !s.enabled ? " (disabled on this node)" : ""}</li>`}</ul>
    <h3>Counters ${c ? "" : `<span class="muted" style="text-transform:none">(as seen from this node)</span>`}</h3><table>
    ${row("rate", seedRate(name) ? `<b class="ok">${fmtRate(seedRate(name))}</b>` : "0/s")}
    ${c ? row("processed", fmtNum(c.processed), "num") + row("queued or running", fmtNum(c.pending), c.pending ? "num warn" : "num") + row("workers", fmtNum(c.workers), "num") + row("failures", fmtNum(c.failures), c.failures ? "num bad" : "num") + row("busy", `${c.busy_s.toFixed(3)} s`, "num") : ""}
    ${row("recent failures", fmtNum(seedFailures(name)), seedFailures(name) ? "num bad" : "num")}
    </table>
    <h3>Recent errors</h3>${failureList(errors.slice(0, 10))}`;
}

function hostDetails(id) {
  const g = page.graph, st = page.stats || {};
  const h = g.hosts.nodes.find((x) => x.id === id);
  if (!h) return null;
  const load = st.loads?.[id] || 0, link = st.peers?.[id];
  const health = h.self ? `<span class="pill ok">this node</span>` : h.state === "alive" ? `<span class="pill ok">alive</span>` : `<span class="pill warn">${esc(h.state)}</span>`;
  return `<div class="kind">Host</div><h2>${esc(id)} ${health}</h2>
    <table>
    ${row("endpoint", `<span class="mono">${esc(h.endpoint)}</span>`)}
    ${row("addresses", h.addresses.length ? h.addresses.map((a) => `<span class="mono">${esc(a)}</span>`).join("<br>") : `<span class="muted">${h.self ? "see endpoint" : "—"}</span>`)}
    ${h.self ? row("web page", `<span class="mono">${esc(g.node.http)}</span>`) + row("up for", fmtDuration(st.uptime_s || 0)) : row("found by", esc(h.via || "—")) + row("last heard", ago(h.last_heard_s_ago || 0))}
    ${row("load", `${load.toFixed(2)} <span class="muted">queued per worker (busiest seed)</span><div class="bar"><span style="width:${Math.min(100, load * 10)}%;background:${loadColour(load)}"></span></div>`)}
    ${link ? row("sent to it", `${fmtNum(link.sent)} packets${link.rate ? ` · <b class="ok">${fmtRate(link.rate)}</b>` : ""}${link.backlog ? ` · <span class="warn">${fmtNum(link.backlog)} queued</span>` : ""}`) : ""}
    ${h.self ? row("failed here", fmtNum(st.failed_total), st.failed_total ? "bad" : "") : ""}
    </table>
    <h3>Seeds (${h.seeds.length})</h3><ul>${h.seeds.map((n) => `<li>${nodeLink("seeds", n)} <span class="muted">${seedRate(n) ? fmtRate(seedRate(n)) : ""}</span></li>`).join("") || `<li class="muted">none</li>`}</ul>`;
}

/* The token's field, while the daemon has a token and this tab has none. */
function tokenBox() {
  const g = page.graph;
  if (!g?.node.post || token()) return "";
  return `<form class="actions" id="token-form"><input id="token" type="password" placeholder="[http] token" autocomplete="off"><button id="use-token" type="submit">Use</button></form>
    <div class="note">${page.tokenError ? `<span class="bad">${esc(page.tokenError)}</span> ` : ""}With the daemon's token this page also shows packet data, failure reasons and file paths, and can inject packets and disable seeds (kept for this tab only).</div>`;
}

/* Actions need the daemon's [http] token. */
function actions() {
  const s = page.selected, g = page.graph;
  if (!s || !g) return "";
  const readOnly = !g.node.post;
  const note = readOnly ? `<div class="note">Read-only: this daemon has no <code>[http] token</code>.</div>` : "";
  if (s.view === "states") {
    const node = views.states.byId.get(s.id);
    if (!node || node.pseudo) return "";
    return `<h3>Inject a packet</h3><div class="actions"><input id="inject-data" placeholder='data: text or JSON, e.g. "Mars" or 42' ${readOnly ? "disabled" : ""}><button id="inject" ${readOnly ? "disabled" : ""}>Inject</button></div>${note}<div class="note" id="act-result"></div>`;
  }
  if (s.view === "seeds") {
    const seed = g.seeds.find((x) => x.name === s.id);
    if (!seed) return "";
    if (!seed.local) return `<h3>Control</h3><div class="note">Runs on another node: enable or disable it from that node's page.</div>`;
    return `<h3>Control</h3><div class="actions"><button id="toggle" ${readOnly ? "disabled" : ""}>${seed.enabled ? "Disable on this node" : "Enable on this node"}</button></div>${note}<div class="note" id="act-result"></div>`;
  }
  return "";
}

async function post(path, body) {
  const typed = $("#token")?.value.trim();
  if (typed) sessionStorage.setItem("pumpkin-token", typed);
  const r = await fetch(`${API}/${path}`, {method: "POST", headers: {"Content-Type": "application/json", ...authHeaders()}, body: JSON.stringify(body ?? {})});
  const json = await r.json().catch(() => ({error: r.statusText}));
  if (r.status === 401) sessionStorage.removeItem("pumpkin-token");
  else if (typed) useToken(typed);
  return {ok: r.ok, json};
}

function bindActions() {
  const result = (text, ok) => { const el = $("#act-result"); if (el) { el.textContent = text; el.className = `note ${ok ? "ok" : "bad"}`; } };
  $("#token-form")?.addEventListener("submit", (ev) => { ev.preventDefault(); const v = $("#token").value.trim(); if (v) useToken(v); });
  $("#inject")?.addEventListener("click", async () => {
    const raw = $("#inject-data").value;
    let data = raw;
    try { data = JSON.parse(raw); } catch (e) { /* not JSON: send it as text */ }
    const {ok, json} = await post("inject", {state: page.selected.id, data});
    result(ok ? `Injected ${json.id}` : json.error, ok);
    if (!ok && !$("#token")) renderDetails(true);
  });
  $("#inject-data")?.addEventListener("keydown", (ev) => { if (ev.key === "Enter") $("#inject").click(); });
  $("#toggle")?.addEventListener("click", async () => {
    const seed = page.graph.seeds.find((x) => x.name === page.selected.id);
    const {ok, json} = await post(`seeds/${encodeURIComponent(seed.name)}/${seed.enabled ? "disable" : "enable"}`);
    if (ok) renderDetails(true); else result(json.error, false);
  });
}

function legend() {
  const line = (cls, extra = "") => `<svg width="34" height="10"><path d="M2,5H30" class="link ${cls}" style="${extra}"/></svg>`;
  const dot = (fill, stroke, dash = "") => `<svg width="34" height="16"><circle cx="17" cy="8" r="6.5" fill="${fill}" stroke="${stroke}" stroke-width="2" ${dash ? `stroke-dasharray="${dash}"` : ""}/></svg>`;
  const rows = {
    states: [[dot("#1f6feb", "#79c0ff"), "state"], [dot("#21262d", "#6e7681"), "in / out of the network"], [dot("#1f6feb", "#f0883e"), "packets waiting (count)"],
      [line("active", "animation:none"), "seed, packets flowing"], [line("failing"), "seed failing (30 s)"], [line("disabled"), "seed disabled"]],
    seeds: [[dot("#1b7c83", "#d2a8ff"), "injector"], [dot("#6e40c9", "#d2a8ff"), "transforms"], [dot("#9e6a03", "#d2a8ff"), "extractor"],
      [dot("#6e40c9", "#6e7681"), "runs elsewhere only"], [line("active", "animation:none"), "feeds, with rate"]],
    hosts: [[dot("#3fb950", "#d2a8ff"), "this node"], [dot("#3fb950", "#c9d1d9"), "idle peer"], [dot("#d29922", "#c9d1d9"), "busy"], [dot("#f85149", "#c9d1d9"), "overloaded"],
      [dot("#3fb950", "#d29922", "3 2"), "evasive (not heard lately)"], [line("active", "animation:none"), "sent from this node"], [line("potential"), "data may flow"]],
  }[page.view];
  $("#legend").innerHTML = rows.map(([icon, text]) => `<div class="row">${icon}<span>${text}</span></div>`).join("");
}

/* A toast per event; a repeat of the same key within its lifetime updates that toast (with a count) instead. */
const toasts = new Map();
function toast(html, info = false, key = null) {
  const box = $("#toasts");
  const old = key && toasts.get(key);
  if (old && old.isConnected) {
    old.dataset.count = String(Number(old.dataset.count || 1) + 1);
    old.innerHTML = `${html} <span class="muted">(×${old.dataset.count})</span>`;
    clearTimeout(old._timer);
    old._timer = setTimeout(() => old.remove(), 6000);
    return;
  }
  const el = document.createElement("div");
  el.className = `toast${info ? " info" : ""}`;
  el.innerHTML = html;
  box.prepend(el);
  if (key) toasts.set(key, el);
  while (box.children.length > 4) box.lastChild.remove();
  el._timer = setTimeout(() => el.remove(), 6000);
}

/* ---------------------------------------------------------------------------------------------- */
/* The stream.                                                                                     */

function onGraph(g) {
  const old = page.graph;
  page.graph = g;
  if (old) {
    const was = new Set(old.seeds.map((s) => s.name)), now = new Set(g.seeds.map((s) => s.name));
    for (const s of g.seeds) if (!was.has(s.name)) toast(`<b style="color:var(--green)">+</b> seed <b>${esc(s.name)}</b> joined${s.nodes.length ? " on " + esc(s.nodes.join(", ")) : ""}`, true);
    for (const n of was) if (!now.has(n)) toast(`seed <b>${esc(n)}</b> left the network`);
    const hw = new Set(old.hosts.nodes.map((h) => h.id));
    for (const h of g.hosts.nodes) if (!hw.has(h.id)) toast(`<b style="color:var(--green)">+</b> host <b>${esc(h.id)}</b> joined`, true);
    for (const h of old.hosts.nodes) if (!g.hosts.nodes.some((x) => x.id === h.id)) toast(`host <b>${esc(h.id)}</b> left`);
  }
  rebuild();
  renderDetails(!old);
}

function onStats(st) {
  const ghostsBefore = (page.stats?.waiting_on || []).filter((w) => !w.nodes.length).map((w) => w.state).join();
  page.stats = st;
  for (const f of st.recent_failures || []) {
    if (f.seed && f.time * 1000 > (page.lastFailure.get(f.seed) || 0)) page.lastFailure.set(f.seed, f.time * 1000);
    if (f.time > page.failureSeen && page.failureSeen) toast(`<b>failed</b> ${esc(f.reason ?? `${f.kind}${f.seed ? ` in seed ${f.seed}` : ""}`)}`, false, `fail:${f.seed || f.kind}`);
  }
  page.failureSeen = Math.max(page.failureSeen || 1, ...(st.recent_failures || []).map((f) => f.time));
  const ghostsNow = (st.waiting_on || []).filter((w) => !w.nodes.length).map((w) => w.state).join();
  if (ghostsNow !== ghostsBefore) rebuild(); else decorate();
  renderDetails(false);
  const now = Date.now();
  if ((page.selected || token()) && now - extraTimer > 1000) { extraTimer = now; fetchExtra(); }
}

function connect() {
  const live = $("#live");
  const set = (cls, text) => { live.className = `live ${cls}`; live.querySelector(".text").textContent = text; };
  const es = new EventSource(`${API}/events`);
  const record = (type) => { page.events.push({type, t: Date.now()}); if (page.events.length > 500) page.events.shift(); };
  es.addEventListener("open", () => { page.connected = true; set("on", "live"); });
  es.addEventListener("error", () => {
    page.connected = false;
    set(es.readyState === 2 ? "off" : "connecting", "reconnecting…");
    if (es.readyState === 2) setTimeout(connect, 5000);  // refused (e.g. 503, too many streams): the browser gives up, we do not
  });
  es.addEventListener("graph", (ev) => { record("graph"); onGraph(JSON.parse(ev.data)); });
  es.addEventListener("stats", (ev) => { record("stats"); onStats(JSON.parse(ev.data)); });
  page.source = es;
}

document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));
$("#fit").addEventListener("click", () => { const v = views[page.view]; v.autoFit = true; v.fit(true); });
$("#labels").classList.add("on");
$("#labels").addEventListener("click", () => {
  page.showLabels = !page.showLabels;
  $("#labels").classList.toggle("on", page.showLabels);
  for (const v of Object.values(views)) v.svg.classed("hide-link-labels", !page.showLabels);
});
document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "INPUT") return;
  if (ev.key === "1") show("states"); else if (ev.key === "2") show("seeds"); else if (ev.key === "3") show("hosts");
  else if (ev.key === "f" || ev.key === "F") $("#fit").click(); else if (ev.key === "l" || ev.key === "L") $("#labels").click();
  else if (ev.key === "Escape") select(null);
});
window.addEventListener("resize", () => { const v = views[page.view]; if (v.autoFit) v.fit(false); });

// For tests and the curious: the live state of the page.
window.pumpkin = {page, views, show, select};
show(views[location.hash.slice(1)] ? location.hash.slice(1) : "states");
renderDetails(true);
connect();
