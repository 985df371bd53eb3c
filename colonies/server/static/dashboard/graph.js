// The workflow DAG as SVG: layers by longest path from the roots, nodes coloured by state, each with
// where it runs (the executor that took it and that executor's location, or the site it asks for).
import { s, COLORS, STATES } from './dom.js';

const W = 170;   // node width
const H = 58;    // node height
const GX = 60;   // gap between layers
const GY = 18;   // gap between nodes of a layer

/**
 * Layer of each process: 0 for roots, else 1 + the deepest parent. Iterative (Kahn's topological
 * order), so a deep chain cannot exhaust the stack; nodes left on a cycle (impossible in a workflow)
 * get layer 0.
 */
export function layers(processes) {
  const ids = new Set(processes.map((p) => p.processid));
  const children = new Map();
  const pending = new Map();
  for (const p of processes) {
    const parents = [...new Set((p.parents || []).filter((x) => ids.has(x) && x !== p.processid))];
    pending.set(p.processid, parents.length);
    for (const x of parents) {
      if (!children.has(x)) children.set(x, []);
      children.get(x).push(p.processid);
    }
  }
  const depth = new Map();
  const ready = [];
  for (const [id, n] of pending) if (n === 0) { depth.set(id, 0); ready.push(id); }
  for (let i = 0; i < ready.length; i++) {
    const id = ready[i];
    for (const c of children.get(id) || []) {
      depth.set(c, Math.max(depth.get(c) || 0, depth.get(id) + 1));
      pending.set(c, pending.get(c) - 1);
      if (pending.get(c) === 0) ready.push(c);
    }
  }
  for (const id of ids) if (pending.get(id) !== 0) depth.set(id, 0);
  return depth;
}

const clip = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

/**
 * A node's third line from where(process) = {executor, location, title} (or null): "executor @ location"
 * once an executor took it, "→ location" (no executor) while it waits for an executor at that site.
 */
export function placeText(place) {
  if (!place) return '';
  if (place.executor) return place.location ? `${place.executor} @ ${place.location}` : place.executor;
  return place.location ? `→ ${place.location}` : '';
}

/**
 * Draw the DAG; returns {svg, update(process), relabel()}: update recolours one node in place and
 * re-reads its place (live updates), relabel re-reads every node's place. onClick(processid) opens a
 * process; where(process) says where it runs (placeText).
 */
export function drawGraph(processes, onClick, where = () => null) {
  const depth = layers(processes);
  const columns = [];
  for (const p of processes) {
    const d = depth.get(p.processid) || 0;
    (columns[d] = columns[d] || []).push(p);
  }
  const rows = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  const width = Math.max(1, columns.length) * (W + GX) - GX + 20;
  const height = rows * (H + GY) - GY + 20;
  const pos = new Map();
  columns.forEach((col, x) => (col || []).forEach((p, y) => {
    const offset = ((rows - col.length) * (H + GY)) / 2;
    pos.set(p.processid, { x: 10 + x * (W + GX), y: 10 + offset + y * (H + GY) });
  }));
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', preserveAspectRatio: 'xMinYMin meet',
    'aria-label': 'workflow graph' });
  for (const p of processes) {
    for (const parent of p.parents || []) {
      const a = pos.get(parent);
      const b = pos.get(p.processid);
      if (!a || !b) continue;
      const x1 = a.x + W; const y1 = a.y + H / 2; const x2 = b.x; const y2 = b.y + H / 2;
      const mx = (x1 + x2) / 2;
      svg.append(s('path', { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, 'marker-end': 'url(#arrow)' }));
    }
  }
  svg.prepend(s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7,
    markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#8a94a6' }))));
  const nodes = new Map();
  for (const p of processes) {
    const { x, y } = pos.get(p.processid);
    const label = p.spec.nodename || p.spec.funcname;
    const rect = s('rect', { x, y, width: W, height: H, rx: 8, fill: COLORS[p.state] || '#555' });
    const text = s('text', { x: x + 10, y: y + 18 }, clip(label, 23));
    const sub = s('text', { x: x + 10, y: y + 34, 'font-size': 10, opacity: 0.9 },
      `${p.spec.funcname} · ${STATES[p.state]}`);
    const at = s('text', { x: x + 10, y: y + 49, 'font-size': 10, class: 'place' });
    const title = s('title', {});
    const g = s('g', { class: 'node', dataset: { processid: p.processid, node: label, state: STATES[p.state] },
      onclick: () => onClick(p.processid) }, title, rect, text, sub, at);
    const n = { g, rect, sub, at, title, label, funcname: p.spec.funcname };
    nodes.set(p.processid, n);
    place(n, p);
    svg.append(g);
  }
  function place(n, p) {
    const w = where(p) || {};
    const line = placeText(w);
    n.p = p;
    n.at.textContent = clip(line, 28);
    n.at.setAttribute('opacity', w.executor ? 0.95 : 0.7);
    n.g.dataset.executor = w.executor || '';
    n.g.dataset.location = w.location || '';
    n.title.textContent = [`${n.label}: ${STATES[p.state]}`, line, w.title || ''].filter(Boolean).join('\n');
  }
  function update(p) {
    const n = nodes.get(p.processid);
    if (!n) return false;
    n.rect.setAttribute('fill', COLORS[p.state] || '#555');
    n.sub.textContent = `${n.funcname} · ${STATES[p.state]}`;
    n.g.dataset.state = STATES[p.state];
    place(n, p);
    return true;
  }
  // where() may know more now (an executor or location fetched since): re-read every node's place
  const relabel = () => { for (const n of nodes.values()) place(n, n.p); };
  return { svg, update, relabel };
}
