// The interactive graph page of archdsl.viz.html: groups open and close, a layered layout,
// zoom and pan, tooltips. Reads its graph from the JSON in <script id="data">.
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const SVG = "http://www.w3.org/2000/svg";
const svg = document.getElementById("view");
const scene = document.getElementById("scene");
const tip = document.getElementById("tip");
const groups = new Map(D.groups.map(g => [g.id, g]));
const level = id => id.split(".").length;
let rankdir = D.rankdir;
let opened = new Set(D.groups.filter(g => D.depth === null || level(g.id) < D.depth).map(g => g.id));

// The item that shows node `id`: its outermost closed group, else the node itself.
function itemOf(id) {
  const parts = id.split(".");
  for (let k = 1; k <= parts.length; k++) {
    const p = parts.slice(0, k).join(".");
    if (groups.has(p) && !opened.has(p)) return p;
  }
  return id;
}

function visible() {
  const items = new Map();
  D.nodes.forEach((n, k) => {
    const id = itemOf(n.id);
    if (!items.has(id)) items.set(id, {id, group: groups.has(id) && !opened.has(id), node: n,
                                        order: items.size, output: false});
    if (n.output) items.get(id).output = true;
  });
  const edges = [], seen = new Set();
  for (const [u, v] of D.edges) {
    const a = itemOf(D.nodes[u].id), b = itemOf(D.nodes[v].id);
    const key = a + "\u0000" + b + "\u0000" + u;
    if (a === b || seen.has(key)) continue;
    seen.add(key);
    edges.push({from: items.get(a), to: items.get(b), shape: D.nodes[u].shape});
  }
  return {items: [...items.values()], edges};
}

function lines(it) {
  if (it.group) {
    const g = groups.get(it.id);
    return [it.id, g.type, "→ " + g.shape, [g.params && g.params + " params", g.macs && g.macs + " MACs"]
      .filter(Boolean).join(" · ")].filter(Boolean);
  }
  const n = it.node;
  const name = n.id.split(".").pop();
  return [name === n.op ? n.id : n.id + "  " + n.op, n.attrs, n.shape,
          [n.params && n.params + " params", n.macs && n.macs + " MACs"].filter(Boolean).join(" · ")]
    .filter(Boolean);
}

// Layered layout: rank = 1 + the highest rank of the inputs; in each rank, boxes sorted by the
// mean position of their inputs; the rank axis runs down (TB) or right (LR).
// The open groups around item `id`, outermost first.
const framesAround = id => [...opened].filter(g => id.startsWith(g + ".")).sort((a, b) => level(a) - level(b));
const FRAME = 22;   // what one frame takes above its contents (margin and title)

function layout(view) {
  const LINE = 14, PAD = 8, GAP_ORDER = 22;
  const nest = Math.max(0, ...view.items.map(it => framesAround(it.id).length));
  const GAP_RANK = 30 + FRAME * nest;
  for (const it of view.items) {
    it.lines = lines(it);
    it.w = Math.max(...it.lines.map(t => t.length)) * 6.3 + 2 * PAD;
    it.h = it.lines.length * LINE + 2 * PAD - 4;
    it.rank = 0; it.ins = [];
  }
  for (const e of view.edges) if (e.from.order < e.to.order) e.to.ins.push(e.from);
  for (const it of view.items) for (const p of it.ins) it.rank = Math.max(it.rank, p.rank + 1);
  // a source (an input, a parameter) sits just above its first consumer, not at the top
  const uses = new Map(view.items.map(it => [it, []]));
  for (const it of view.items) for (const p of it.ins) uses.get(p).push(it.rank);
  for (const it of view.items) {
    if (!it.ins.length && uses.get(it).length) it.rank = Math.max(0, Math.min(...uses.get(it)) - 1);
  }
  const ranks = [];
  for (const it of view.items) (ranks[it.rank] = ranks[it.rank] || []).push(it);
  const along = it => rankdir === "TB" ? it.w : it.h;     // size along a rank
  const across = it => rankdir === "TB" ? it.h : it.w;    // size across ranks
  let pos = 0;
  for (const row of ranks) {
    if (!row) continue;
    for (const it of row) it.key = it.ins.length ? it.ins.reduce((s, p) => s + p.o, 0) / it.ins.length : it.order;
    row.sort((a, b) => a.key - b.key || a.order - b.order);
    let total = row.reduce((s, it) => s + along(it), 0) + GAP_ORDER * (row.length - 1);
    let o = -total / 2;
    const depth = Math.max(...row.map(across));
    for (const it of row) {
      it.o = o + along(it) / 2; o += along(it) + GAP_ORDER;
      it.r = pos + depth / 2;
    }
    pos += depth + GAP_RANK;
  }
  for (const it of view.items) {
    [it.x, it.y] = rankdir === "TB" ? [it.o, it.r] : [it.r, it.o];
  }
}

function el(name, attrs, parent, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

function frames(view) {
  // an open group with something drawn inside: a frame around it, titled, deepest last
  const open = [...opened].filter(id => view.items.some(it => it.id.startsWith(id + ".")))
    .sort((a, b) => level(a) - level(b));
  for (const id of open) {
    const inside = view.items.filter(it => it.id.startsWith(id + "."));
    // frames nested in this one sit inside its margin
    const inner = Math.max(...inside.map(it => framesAround(it.id).filter(g => level(g) > level(id)).length));
    const m = 6 + 8 * inner;
    const x0 = Math.min(...inside.map(it => it.x - it.w / 2)) - m;
    const y0 = Math.min(...inside.map(it => it.y - it.h / 2)) - 8 - FRAME * inner - 14;
    const x1 = Math.max(...inside.map(it => it.x + it.w / 2)) + m;
    const y1 = Math.max(...inside.map(it => it.y + it.h / 2)) + m;
    const g = el("g", {class: "frame", "data-id": id}, scene);
    el("rect", {x: x0, y: y0, width: x1 - x0, height: y1 - y0, rx: 6,
                fill: D.frames[(level(id) - 1) % D.frames.length]}, g);
    const t = el("text", {x: x0 + 6, y: y0 + 13}, g, "▾ " + id + " · " + groups.get(id).type);
    t.addEventListener("click", ev => { ev.stopPropagation(); opened.delete(id); draw(); });
  }
}

function edgePath(a, b) {
  if (rankdir === "TB") {
    const y0 = a.y + a.h / 2, y1 = b.y - b.h / 2, c = (y1 - y0) / 2;
    return `M ${a.x} ${y0} C ${a.x} ${y0 + c}, ${b.x} ${y1 - c}, ${b.x} ${y1}`;
  }
  const x0 = a.x + a.w / 2, x1 = b.x - b.w / 2, c = (x1 - x0) / 2;
  return `M ${x0} ${a.y} C ${x0 + c} ${a.y}, ${x1 - c} ${b.y}, ${x1} ${b.y}`;
}

function tooltip(it) {
  if (it.group) {
    const g = groups.get(it.id);
    return [`${it.id}  (click to open)`, `${g.type}, ${g.members} nodes`, `output ${g.shape}`,
            g.params && `params ${g.params}`, g.macs && `MACs ${g.macs}`, g.flops && `FLOPs ${g.flops}`]
      .filter(Boolean).join("\n");
  }
  const n = it.node;
  return [n.id, `${n.op}${n.attrs ? " " + n.attrs : ""}`, `output ${n.shape}`,
          n.params && `params ${n.params}`, n.macs && `MACs ${n.macs}`, n.flops && `FLOPs ${n.flops}`]
    .filter(Boolean).join("\n");
}

let current = null;
function draw() {
  scene.textContent = "";
  const view = visible();
  layout(view);
  frames(view);
  for (const e of view.edges) {
    const p = el("path", {class: "edge", d: edgePath(e.from, e.to), "marker-end": "url(#arrow)"}, scene);
    el("title", {}, p, e.shape);
  }
  for (const it of view.items) {
    const kind = it.group ? "group" : ["input", "param", "buffer"].includes(it.node.op) ?
      (it.node.op === "input" ? "input" : "param") : "node";
    const g = el("g", {class: `item ${kind}${it.output ? " output" : ""}`, "data-id": it.id,
                       transform: `translate(${it.x - it.w / 2},${it.y - it.h / 2})`}, scene);
    el("rect", {width: it.w, height: it.h, rx: it.group ? 2 : 7}, g);
    it.lines.forEach((t, k) => el("text", {x: 8, y: 18 + 14 * k,
      class: k === 0 ? "name" : (k === it.lines.length - 1 && /params|MACs/.test(t) ? "cost" : "")}, g, t));
    g.addEventListener("mousemove", ev => {
      tip.textContent = tooltip(it); tip.style.display = "block";
      tip.style.left = ev.clientX + 14 + "px"; tip.style.top = ev.clientY + 14 + "px";
    });
    g.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    if (it.group) g.addEventListener("click", ev => {
      ev.stopPropagation(); tip.style.display = "none"; opened.add(it.id); draw();
    });
  }
  current = view;
  if (!box) fit();
  else setBox(box);
}

// zoom and pan through the viewBox
let box = null;
function setBox(b) { box = b; svg.setAttribute("viewBox", `${b.x} ${b.y} ${b.w} ${b.h}`); }
function fit() {
  const its = current.items;
  const x0 = Math.min(...its.map(it => it.x - it.w / 2)) - 30, x1 = Math.max(...its.map(it => it.x + it.w / 2)) + 30;
  const y0 = Math.min(...its.map(it => it.y - it.h / 2)) - 30, y1 = Math.max(...its.map(it => it.y + it.h / 2)) + 30;
  const W = svg.clientWidth || 1000, H = svg.clientHeight || 700;
  let s = Math.min(1.5, W / (x1 - x0), H / (y1 - y0));
  if (s < 0.35) s = Math.min(1.5, rankdir === "TB" ? W / (x1 - x0) : H / (y1 - y0));  // long: fit across, start at the top
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const w = W / s, h = H / s;
  setBox(rankdir === "TB" ? {x: cx - w / 2, y: s * (y1 - y0) > H ? y0 : cy - h / 2, w, h}
                          : {x: s * (x1 - x0) > W ? x0 : cx - w / 2, y: cy - h / 2, w, h});
}
svg.addEventListener("wheel", ev => {
  ev.preventDefault();
  const r = svg.getBoundingClientRect(), f = Math.exp(ev.deltaY * 0.0015);
  const px = box.x + (ev.clientX - r.left) / r.width * box.w, py = box.y + (ev.clientY - r.top) / r.height * box.h;
  setBox({x: px - (px - box.x) * f, y: py - (py - box.y) * f, w: box.w * f, h: box.h * f});
}, {passive: false});
let drag = null;
svg.addEventListener("mousedown", ev => { drag = {x: ev.clientX, y: ev.clientY, box}; svg.style.cursor = "grabbing"; });
window.addEventListener("mouseup", () => { drag = null; svg.style.cursor = ""; });
window.addEventListener("mousemove", ev => {
  if (!drag) return;
  const r = svg.getBoundingClientRect(), b = drag.box;
  setBox({x: b.x - (ev.clientX - drag.x) * b.w / r.width, y: b.y - (ev.clientY - drag.y) * b.h / r.height,
          w: b.w, h: b.h});
});
document.getElementById("open-all").onclick = () => { opened = new Set(groups.keys()); box = null; draw(); };
document.getElementById("close-all").onclick = () => { opened = new Set(); box = null; draw(); };
document.getElementById("fit").onclick = () => fit();
const flip = document.getElementById("flip");
const flipText = () => { flip.textContent = rankdir === "TB" ? "left to right" : "top to bottom"; };
flip.onclick = () => { rankdir = rankdir === "TB" ? "LR" : "TB"; flipText(); box = null; draw(); };
flipText();
draw();
