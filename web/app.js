/* Pumpkin's live page: three views of one network (States, Seeds, Hosts), fed by server-sent events.
 *
 * The daemon pushes two kinds of event on api/v1/events: "graph" (structure: automaton, seeds, hosts) when it
 * changes, and "stats" (counters, rates, waiting and failed packets, loads) when they change. A new structure is
 * laid out in layers, left to right, by a Web Worker (static/layout.js, with dagre): every node, with its labels,
 * and every arrow's label gets a box of its own, measured here in the page's font, so nothing drawn overlaps; the
 * view then slides from the old places to the new ones and zooms to fit. Stats only restyle what is drawn.
 */
"use strict";

const API = "api/v1";
const FAIL_HOT_MS = 30000;    // an arrow stays red this long after its seed's last failure
const MANY = 60;              // above this many nodes, labels give way when zoomed out
const CALM_LINKS = 120;       // above this many arrows, flowing ones are drawn thick and green but not animated
const HUB_SPLIT = 8;          // an in/out pseudo-state with more arrows than this is drawn once per arrow
const SLIDE_MS = 450;         // nodes slide this long from one layout to the next
const FIT_MS = 450;           // the zoom-to-fit transition (on a new layout and on F)
const MAX_FIT_ZOOM = 1.6;     // fitting a small graph enlarges it at most this much
const LABEL_H = 30;           // an arrow label's box: its name above the arrow, rate and failures below it
const LINE_H = 15;            // px from one line of a node's text to the next
const FEW_HOSTS = 6;          // with this many hosts or fewer, each lists its seeds under its name
const SEEDS_LISTED = 8;       // ... at most this many of them
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

/* Text widths in the page's own font, so that the layout's boxes hold what is drawn (canvas and SVG text share
 * the font machinery; a hidden SVG cannot be measured, a canvas can). */
const measure = (() => {
  const ctx = document.createElement("canvas").getContext("2d");
  const family = getComputedStyle(document.documentElement).fontFamily;
  const cache = new Map();
  return (text, px, weight = 400) => {
    const key = `${weight}|${px}|${text}`;
    let w = cache.get(key);
    if (w === undefined) {
      ctx.font = `${weight} ${px}px ${family}`;
      w = ctx.measureText(String(text)).width;
      if (cache.size > 20000) cache.clear();
      cache.set(key, w);
    }
    return w;
  };
})();

/* Where a node's texts go (baselines below its circle) and the box around everything drawn for it, from the
 * circle's centre: labels, its waiting/failure badge, and the self-loops above it with their labels. */
function nodeBox(n, loops) {
  const r = n.r;
  n.labelY = r + 15;
  n.subY = n.labelY + (n.label ? LINE_H - 1 : 0);
  let y = n.sub ? n.subY : n.label ? n.labelY : r;
  n.lineYs = (n.lines || []).map(() => (y += LINE_H));
  const widths = [measure(n.label || "", 12, 600), n.sub ? measure(n.subSample || n.sub, 10) : 0,
    ...(n.lines || []).map((l) => measure(l.text, 11, l.cls === "note" ? 400 : 500))];
  // The badge sits on the circle's top right: up to five characters ("1,234") wide.
  let half = Math.max(r, 0.72 * r + 24, ...widths.map((w) => w / 2)) + 3;
  let top = Math.max(r, 0.72 * r + 9) + 3;
  for (const l of loops) {
    const {h, apex} = loopShape(r, l.loop);
    half = Math.max(half, l.w / 2 + 2, 0.35 * r + 0.3 * h + 3);
    top = Math.max(top, apex + LABEL_H / 2 + 2);
  }
  const bottom = (n.lineYs.length ? n.lineYs[n.lineYs.length - 1] : n.sub ? n.subY : n.label ? n.labelY : r) + 5;
  return {left: half, right: half, top, bottom};
}

/* The i-th self-loop of a node of radius r: its size and how far above the centre its top is (where its label's
 * centre goes; loops grow by a label's height so that their labels stack without touching). */
function loopShape(r, i) {
  const h = r + 30 + (i * (LABEL_H + 6)) / 1.0125;
  return {h, apex: 0.175 * r + 1.0125 * h};
}

/* An arrow label's box: the seed's name on one line, its rate and failures on the next (room is kept for
 * `sample`, so that counters going up do not move the layout; a longer text makes room for itself). */
function labelBox(l, sample) {
  if (!l.label) { l.w = 0; l.h = 0; return; }
  const second = Math.max(measure(sample, 10.5, 700), l.line2 ? measure(l.line2, 10.5, 700) : 0);
  l.w = Math.ceil(Math.max(measure(l.label, 10.5), second) + 8);
  l.h = LABEL_H;
}

/* The one Web Worker that lays out every view (layout.js); answers go to the view that asked. */
let worker = null;
function layoutWorker() {
  if (!worker) {
    worker = new Worker("static/layout.js");
    worker.onmessage = (ev) => views[ev.data.view]?.onLayout(ev.data);
    worker.onerror = (ev) => console.error("layout worker:", ev.message);
  }
  return worker;
}

/* Where a view may draw, in the SVG's pixels: all of it but the toolbar's row and the legend's strip. */
function drawingArea(svgEl) {
  const s = svgEl.getBoundingClientRect();
  if (!s.width || !s.height) return null;
  let top = 10, bottom = s.height - 10;
  const bar = $(".toolbar").getBoundingClientRect();
  if (bar.height) top = Math.max(top, bar.bottom - s.top + 10);
  const legend = $("#legend").getBoundingClientRect();
  if (legend.height) bottom = Math.min(bottom, legend.top - s.top - 10);
  return {x: 16, y: top, w: s.width - 32, h: Math.max(40, bottom - top)};
}

/* ---------------------------------------------------------------------------------------------- */
/* One view: a layered drawing of nodes and arrows, with zoom, pan and drag.                       */

class GraphView {
  constructor(name, svgEl, opts) {
    this.name = name;
    this.opts = opts;
    this.svg = d3.select(svgEl);
    this.nodes = [];
    this.links = [];
    this.byId = new Map();
    this.active = false;
    this.autoFit = true;
    this.transform = d3.zoomIdentity;
    this.seq = 0;            // layouts asked for
    this.laidOut = 0;        // the last one drawn
    this.layoutKey = "";
    this.slide = null;       // the d3.timer moving nodes to a new layout
    this.fitting = 0;        // a zoom-to-fit transition is running (its number)
    this.fittingNow = false; // an immediate fit is being applied
    this.fitCount = 0;
    this.layoutMs = 0;

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
      // A person zoomed or panned: stop fitting by ourselves. (Our own fits may carry a wheel's event: d3 reuses
      // the gesture of a wheel turned within the last 150 ms.)
      if (ev.sourceEvent && !this.fitting && !this.fittingNow) this.autoFit = false;
      this.svg.classed("zoomed-out", ev.transform.k < 0.55);
    });
    this.svg.call(this.zoom).on("dblclick.zoom", null);
    this.svg.on("click", (ev) => { if (ev.target === this.svg.node()) opts.onBackground(); });

    // A dragged node stays where it is dropped (its arrows go straight to it) until the next layout or F.
    this.drag = d3.drag()
      .on("start", () => this.stopSlide())
      .on("drag", (ev, d) => { d.x = ev.x; d.y = ev.y; d.moved = true; this.draw(); });
  }

  /* Merge a new structure in (nodes keep their places until the new layout comes); true when anything changed. */
  setModel(nodes, links) {
    const before = this.signature;
    const next = new Map();
    for (const n of nodes) {
      const old = this.byId.get(n.id);
      next.set(n.id, old ? Object.assign(old, n, {entering: false}) : Object.assign(n, {entering: true}));
    }
    const oldLinks = new Map(this.links.map((l) => [l.id, l]));
    const links2 = links.filter((l) => next.has(l.source) && next.has(l.target));
    const loopCount = new Map();
    for (const l of links2.sort((a, b) => (a.id < b.id ? -1 : 1))) {
      const old = oldLinks.get(l.id);
      if (old) Object.assign(l, {points: old.points, lx: old.lx, ly: old.ly, line2: old.line2});
      l.source = next.get(l.source);
      l.target = next.get(l.target);
      l.loop = l.source === l.target ? loopCount.get(l.source.id) || 0 : -1;
      if (l.loop >= 0) loopCount.set(l.source.id, l.loop + 1);
    }
    this.byId = next;
    this.nodes = [...next.values()];
    this.links = links2;
    this.signature = [...next.keys()].sort().join("\n") + "\n--\n" + links2.map((l) => l.id).sort().join("\n");
    const changed = this.signature !== before;
    this.join();
    this.svg.classed("calm", this.links.length > CALM_LINKS);
    this.relayout();
    this.texts();
    this.draw();
    return changed;
  }

  /* A node's texts, at the baselines nodeBox chose. */
  texts() {
    this.nodeSel.select("rect.hit").attr("x", (d) => -d.box.left).attr("y", (d) => -d.box.top)
      .attr("width", (d) => d.box.left + d.box.right).attr("height", (d) => d.box.top + d.box.bottom);
    this.nodeSel.select("text.label").attr("y", (d) => d.labelY).text((d) => d.label);
    this.nodeSel.select("text.sublabel").attr("y", (d) => d.subY).text((d) => d.sub || "");
    this.nodeSel.select("text.lines").each(function (d) {
      d3.select(this).selectAll("tspan").data(d.lines || []).join("tspan")
        .attr("x", 0).attr("y", (x, i) => d.lineYs[i]).attr("class", (x) => x.cls || null).text((x) => x.text);
    });
  }

  /* Measure every box; ask for a layout when any box or arrow changed. */
  relayout(force = false) {
    const loops = new Map();
    for (const l of this.links) {
      labelBox(l, this.opts.line2Sample || "999/s");
      if (l.loop >= 0) loops.set(l.source.id, [...(loops.get(l.source.id) || []), l]);
    }
    for (const n of this.nodes) n.box = nodeBox(n, loops.get(n.id) || []);
    const nodes = this.nodes.map((n) => ({id: n.id, ...n.box}));
    const links = this.links.filter((l) => l.loop < 0)
      .map((l) => ({id: l.id, source: l.source.id, target: l.target.id, w: l.w, h: l.h}));
    const key = JSON.stringify([nodes.map((n) => [n.id, Math.round(n.left), Math.round(n.top), Math.round(n.bottom)]), links]);
    if (key === this.layoutKey && !force) return;
    this.layoutKey = key;
    this.seq++;
    layoutWorker().postMessage({view: this.name, seq: this.seq, nodes, links});
  }

  /* A layout from the worker: slide there (a stale one, overtaken by a newer request, is dropped). */
  onLayout(res) {
    if (res.seq !== this.seq) return;
    const first = !this.laidOut;
    this.laidOut = res.seq;
    this.layoutMs = res.ms;
    for (const n of this.nodes) {
      const p = res.nodes[n.id];
      if (!p) continue;
      [n.tx, n.ty] = p;
      n.moved = false;
    }
    for (const l of this.links) {
      const r = res.links[l.id];
      if (!r) continue;
      l.points = r.points;
      [l.lx, l.ly] = r.label || [undefined, undefined];
    }
    this.slideTo(first || !this.active);
    if (this.active && this.autoFit) this.fit(!first, true);
  }

  slideTo(jump) {
    this.stopSlide();
    const from = this.nodes.map((n) => [n, n.x, n.y]);
    const land = () => { for (const n of this.nodes) if (n.tx !== undefined) { n.x = n.tx; n.y = n.ty; } };
    if (jump || from.every(([n, x]) => x === undefined || (x === n.tx && n.y === n.ty))) { land(); this.draw(); return; }
    this.slide = d3.timer((elapsed) => {
      const t = d3.easeCubicInOut(Math.min(1, elapsed / SLIDE_MS));
      for (const [n, x, y] of from) {
        if (n.tx === undefined) continue;
        if (x === undefined) { n.x = n.tx; n.y = n.ty; continue; }   // a new node appears in its place
        n.x = x + (n.tx - x) * t;
        n.y = y + (n.ty - y) * t;
      }
      this.draw();
      if (t >= 1) this.stopSlide();
    });
  }

  stopSlide() {
    if (!this.slide) return;
    this.slide.stop();
    this.slide = null;
    for (const n of this.nodes) if (n.tx !== undefined && !n.moved) { n.x = n.tx; n.y = n.ty; }
    this.draw();
  }

  join() {
    const o = this.opts;
    this.linkSel = this.gLinks.selectAll("path.link").data(this.links, (d) => d.id)
      .join((enter) => enter.append("path").attr("class", "link"))
      .attr("data-id", (d) => d.id);
    this.labelSel = this.gLabels.selectAll("text.link-label").data(this.links, (d) => d.id)
      .join((enter) => {
        const t = enter.append("text").attr("class", "link-label");
        t.append("tspan").attr("class", "name").attr("dy", -4);
        const second = t.append("tspan").attr("class", "line2").attr("dy", LINE_H);
        second.append("tspan").attr("class", "rate");
        second.append("tspan").attr("class", "fail");
        t.on("click", (ev, d) => { ev.stopPropagation(); o.onLinkClick?.(d); });
        return t;
      })
      .attr("data-id", (d) => d.id);
    this.labelSel.select("tspan.name").text((d) => d.label || "");
    this.nodeSel = this.gNodes.selectAll("g.node").data(this.nodes, (d) => d.id)
      .join((enter) => {
        const g = enter.append("g").attr("class", "node");
        g.append("rect").attr("class", "hit");  // the node's whole box takes clicks and drags, its texts too
        g.append("circle").attr("class", "body");
        g.append("text").attr("class", "glyph");
        g.append("text").attr("class", "label");
        g.append("text").attr("class", "sublabel");
        g.append("text").attr("class", "lines");
        const b = g.append("g").attr("class", "badge").style("display", "none");
        b.append("rect").attr("rx", 8).attr("height", 16).attr("y", -8);
        b.append("text");
        g.append("title");
        g.on("click", (ev, d) => { ev.stopPropagation(); o.onClick(d); });
        // A new node pops in once; settled waits for that, so screenshots show nodes as they stay.
        g.on("animationend", (ev, d) => { if (ev.animationName === "pop") { d.entering = false; d3.select(ev.currentTarget).classed("entering", false); } });
        g.call(this.drag);
        return g;
      })
      .attr("data-id", (d) => d.id)
      .classed("entering", (d) => d.entering);
    this.nodeSel.select("circle.body").attr("r", (d) => d.r);
    this.nodeSel.select("text.glyph").text((d) => d.glyph || "");
    this.nodeSel.select("title").text((d) => d.title || d.id);
    this.svg.classed("many", this.nodes.length > MANY);
  }

  /* Put everything where the nodes are now; nodes not laid out yet are hidden. */
  draw() {
    this.nodeSel
      .classed("unplaced", (d) => d.x === undefined)
      .attr("transform", (d) => (d.x === undefined ? null : `translate(${d.x.toFixed(1)},${d.y.toFixed(1)})`));
    this.linkSel.attr("d", (d) => geometry(d));
    this.labelSel
      .classed("unplaced", (d) => d._lx === undefined)
      .attr("x", (d) => d._lx ?? 0).attr("y", (d) => d._ly ?? 0);
    this.labelSel.select("tspan.line2").attr("x", (d) => d._lx ?? 0);
  }

  labelsShown() {
    const c = this.svg.node().classList;
    return !c.contains("hide-link-labels") && !(c.contains("zoomed-out") && c.contains("many"));
  }

  /* The box around everything drawn: where nodes are now, or where the coming layout puts them. */
  bounds(target = false) {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of this.nodes) {
      const x = target && n.tx !== undefined && !n.moved ? n.tx : n.x, y = target && n.ty !== undefined && !n.moved ? n.ty : n.y;
      if (x === undefined || !n.box) continue;
      x0 = Math.min(x0, x - n.box.left); x1 = Math.max(x1, x + n.box.right);
      y0 = Math.min(y0, y - n.box.top); y1 = Math.max(y1, y + n.box.bottom);
    }
    for (const l of this.links) {
      const lx = target ? l.lx : l._lx, ly = target ? l.ly : l._ly;
      if (lx === undefined || l.loop >= 0 || !l.w) continue;
      x0 = Math.min(x0, lx - l.w / 2); x1 = Math.max(x1, lx + l.w / 2);
      y0 = Math.min(y0, ly - l.h / 2); y1 = Math.max(y1, ly + l.h / 2);
    }
    return x0 < x1 ? [x0, y0, x1, y1] : null;
  }

  /* Zoom so that everything shows, as large as the drawing area allows (up to MAX_FIT_ZOOM). */
  fit(smooth, target = false) {
    const b = this.bounds(target);
    const area = drawingArea(this.svg.node());
    if (!b || !area) return;
    const k = Math.min(area.w / Math.max(1, b[2] - b[0]), area.h / Math.max(1, b[3] - b[1]), MAX_FIT_ZOOM);
    const to = d3.zoomIdentity.translate(area.x + area.w / 2 - (k * (b[0] + b[2])) / 2, area.y + area.h / 2 - (k * (b[1] + b[3])) / 2).scale(k);
    // Unnamed, so that d3-zoom's own interrupt() stops it when a person starts to zoom or pan.
    this.svg.interrupt();
    if (!smooth) {
      this.fitting = 0;
      this.fittingNow = true;
      this.svg.call(this.zoom.transform, to);
      this.fittingNow = false;
      return;
    }
    const mine = ++this.fitCount;
    this.fitting = mine;
    this.svg.transition().duration(FIT_MS).call(this.zoom.transform, to)
      .on("end interrupt", () => { if (this.fitting === mine) this.fitting = 0; });
  }

  /* F: dragged nodes go back, and the whole graph is fitted to the view. */
  refit() {
    this.autoFit = true;
    const moved = this.nodes.filter((n) => n.moved);
    for (const n of moved) n.moved = false;
    if (moved.length) this.slideTo(false);
    this.fit(true, true);
  }

  activate() {
    this.active = true;
    this.draw();
    if (this.autoFit) this.fit(false);
  }

  deactivate() { this.active = false; this.stopSlide(); this.svg.interrupt(); this.fitting = 0; }

  /* True once the latest structure is laid out, drawn in place and fitted (what tests and screenshots wait for). */
  get settled() {
    return this.laidOut === this.seq && !this.slide && !this.fitting && (!this.active || this.gNodes.select("g.node.entering").empty());
  }
}

// Through every bend: monotone where the arrow runs one way (no overshoot), Catmull-Rom where it turns back.
const lineOneWay = d3.line().curve(d3.curveMonotoneX);
const lineTurning = d3.line().curve(d3.curveCatmullRom.alpha(0.5));
const line = (pts) => {
  const rising = pts[1][0] > pts[0][0];
  const oneWay = pts.every((p, i) => i === 0 || (rising ? p[0] > pts[i - 1][0] : p[0] < pts[i - 1][0]));
  return (oneWay ? lineOneWay : lineTurning)(pts);
};

/* An arrow's path from circle to circle through its layout's bends (sets where its label goes: _lx, _ly). */
function geometry(l) {
  const s = l.source, t = l.target;
  l._lx = undefined; l._ly = undefined;
  if (s.x === undefined || t.x === undefined) return "";
  if (l.loop >= 0) {
    const {h, apex} = loopShape(s.r, l.loop);
    const a = [s.x - s.r * 0.7, s.y - s.r * 0.7], b = [s.x + s.r * 0.7, s.y - s.r * 0.7];
    l._lx = s.x; l._ly = s.y - apex;
    return `M${a}C${s.x - h},${s.y - h * 1.35} ${s.x + h},${s.y - h * 1.35} ${b}`;
  }
  const bends = !s.moved && !t.moved && l.points ? l.points : [];
  const first = bends[0] || [t.x, t.y], last = bends[bends.length - 1] || [s.x, s.y];
  const d0 = Math.hypot(first[0] - s.x, first[1] - s.y) || 1, d1 = Math.hypot(t.x - last[0], t.y - last[1]) || 1;
  const p0 = [s.x + ((first[0] - s.x) / d0) * s.r, s.y + ((first[1] - s.y) / d0) * s.r];
  const p2 = [t.x - ((t.x - last[0]) / d1) * (t.r + 3), t.y - ((t.y - last[1]) / d1) * (t.r + 3)];
  if (bends.length && l.lx !== undefined) { l._lx = l.lx; l._ly = l.ly; }
  else { l._lx = (p0[0] + p2[0]) / 2; l._ly = (p0[1] + p2[1]) / 2; }
  return line([p0, ...bends, p2]);
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
  return {nodes: [...nodes.values()], links};
}

function seedsModel(graph) {
  const nodes = graph.seeds.map((s) => ({id: s.name, kind: "seed", label: s.name, seed: s,
    sub: s.nodes.length > 1 ? `on ${s.nodes.length} hosts` : s.nodes.length ? (s.local ? "this node" : shortNode(s.nodes[0])) : "disabled",
    r: 19, glyph: s.injector ? "▶" : s.extractor ? "■" : "", title: `${s.name}: ${s.inputs.join(", ") || "injector"} → ${s.outputs.join(", ") || "extractor"}`}));
  for (const n of nodes) n.subSample = `${n.sub} · 99.9/s`;  // decorate() adds the seed's rate to it
  const byName = new Map(graph.seeds.map((s) => [s.name, s]));
  const links = [];
  for (const a of graph.seeds) for (const b of a.feeds) {
    const via = a.outputs.filter((o) => byName.get(b).inputs.some((i) => tagMatches(o, i))).map(shortTag);
    links.push({id: `${a.name}>${b}`, source: a.name, target: b, seed: a.name, label: [...new Set(via)].join(", ")});
  }
  return {nodes, links};
}

/* Hosts: with few of them each lists its seeds; a lone host also says how to get company. */
function hostsModel(graph) {
  const hosts = graph.hosts.nodes;
  const listed = (h) => {
    if (hosts.length > FEW_HOSTS) return [];
    const names = [...h.seeds].sort();
    const shown = names.length > SEEDS_LISTED ? names.slice(0, SEEDS_LISTED - 1) : names;
    const lines = shown.map((n) => ({text: n, cls: "seed"}));
    if (names.length > shown.length) lines.push({text: `+${names.length - shown.length} more`, cls: "note"});
    return lines;
  };
  const alone = hosts.length === 1 ? [{text: "No other host seen yet:", cls: "note"}, {text: "see README, “Several hosts”", cls: "note"}] : [];
  const nodes = hosts.map((h) => ({id: h.id, kind: "host", host: h, label: shortNode(h.id),
    sub: `${h.self ? "this node · " : ""}${h.seeds.length} seed${h.seeds.length === 1 ? "" : "s"}`,
    lines: [...listed(h), ...alone],
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
  // line2Sample: room kept on an arrow label's second line, so that rates and failure counts fit as they change.
  states: new GraphView("states", $("#view-states"), {line2Sample: "99.9/s ⚠ 99", onClick: (d) => select("states", d.alias || d.id),
    onLinkClick: (d) => select("seeds", d.seed), onBackground: () => select(null)}),
  seeds: new GraphView("seeds", $("#view-seeds"), {line2Sample: "99.9/s", onClick: (d) => select("seeds", d.id),
    onBackground: () => select(null)}),
  hosts: new GraphView("hosts", $("#view-hosts"), {line2Sample: "99.9/s", onClick: (d) => select("hosts", d.id),
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
  view.labelSel.select("tspan.rate").text((d) => (rateOf(d) > 0 ? fmtRate(rateOf(d)) : ""));
  view.labelSel.select("tspan.fail").text((d) => (failOf(d) ? `${rateOf(d) > 0 ? "  " : ""}⚠ ${fmtNum(failOf(d))}` : ""));
  // A second line longer than the room kept for it makes room for itself (a new layout).
  let grown = false;
  view.labelSel.each(function (d) {
    const text = this.querySelector("tspan.line2").textContent;
    if (text && measure(text, 10.5, 700) > d.w - 8) { d.line2 = text; grown = true; }
  });
  if (grown) view.relayout();
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
  }
  legend();  // before fitting: the legend's strip is not part of the drawing area
  for (const [n, v] of Object.entries(views)) if (n === name) v.activate(); else v.deactivate();
  document.querySelectorAll(".tabs button").forEach((b) => b.classList.toggle("active", b.dataset.view === name));
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
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

/* Toasts: news leaves by itself, errors stay longer and have a close button. A repeat of a toast that is showing
 * folds into it (its count goes up, its deadline does not move); once it has gone, repeats of it stay quiet for
 * a while and are counted into the next one (the red arrow and the header's "failed" count show them meanwhile). */
const TOAST_MS = {info: 6000, error: 12000};
const TOAST_QUIET_MS = 60000;
const TOASTS_SHOWN = 4;
const toasts = new Map();     // key -> {el, count}
const quiet = new Map();      // key -> {until, count}: repeats while quiet
function toast(html, info = false, key = null) {
  const now = Date.now();
  const hush = key && quiet.get(key);
  if (hush && hush.until > now) { hush.count++; return; }
  const shown = key && toasts.get(key);
  if (shown && shown.el.isConnected) {
    shown.count++;
    shown.el.querySelector(".count").textContent = ` (×${shown.count})`;
    return;
  }
  const count = 1 + (hush ? hush.count : 0);
  if (key) quiet.delete(key);
  const el = document.createElement("div");
  const ms = info ? TOAST_MS.info : TOAST_MS.error;
  el.className = `toast${info ? " info" : ""}`;
  el.dataset.deadline = String(now + ms);
  el.innerHTML = `<span class="msg">${html}</span><span class="count muted">${count > 1 ? ` (×${count})` : ""}</span>`;
  if (!info) {
    const close = document.createElement("button");
    close.className = "close";
    close.title = "Dismiss";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => dismiss(el, key));
    el.append(close);
  }
  $("#toasts").prepend(el);
  if (key) toasts.set(key, {el, count});
  setTimeout(() => dismiss(el, key), ms);
  const box = $("#toasts");
  while (box.children.length > TOASTS_SHOWN) box.lastChild.remove();
}

function dismiss(el, key) {
  if (!el.isConnected) return;
  el.remove();
  if (key && toasts.get(key)?.el === el) { toasts.delete(key); quiet.set(key, {until: Date.now() + TOAST_QUIET_MS, count: 0}); }
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
$("#fit").addEventListener("click", () => {
  views[page.view].refit();
  const b = $("#fit");
  b.classList.remove("flash");
  void b.offsetWidth;  // restart the flash animation
  b.classList.add("flash");
});
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
window.pumpkin = {page, views, show, select, drawingArea};
show(views[location.hash.slice(1)] ? location.hash.slice(1) : "states");
renderDetails(true);
connect();
