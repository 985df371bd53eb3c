// Tiny DOM helpers. Data from the server is only ever put in the page as text (never as HTML):
// the page holds a private key, so nothing a process carries may run as script here.
const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** h('a', {href: '#/'}, 'text', child, ...) */
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** The same for SVG elements. */
export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export const STATES = ['waiting', 'running', 'successful', 'failed', 'cancelled'];
export const EXECUTOR_STATES = ['pending', 'approved', 'rejected', 'unregistered'];
export const COLORS = ['#9aa4b2', '#2f6fde', '#1f9d55', '#d64545', '#b7791f'];

export function badge(state) {
  return h('span', { class: `badge s${state}`, dataset: { state: STATES[state] || String(state) } },
    STATES[state] || String(state));
}

export function short(id) {
  return id ? `${id.slice(0, 10)}…` : '';
}

const ZERO = '0001-01-01';

/** A Go RFC3339 time (or Unix ns) as local time; '' for the zero time. */
export function when(t) {
  if (t === undefined || t === null || t === '' || (typeof t === 'string' && t.startsWith(ZERO))) return '';
  const d = typeof t === 'number' ? new Date(t / 1e6) : new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toLocaleString();
}

export function ago(t) {
  if (!t || (typeof t === 'string' && t.startsWith(ZERO))) return 'never';
  const secs = Math.round((Date.now() - new Date(t).getTime()) / 1000);
  if (secs < 60) return `${Math.max(secs, 0)} s ago`;
  if (secs < 3600) return `${Math.round(secs / 60)} min ago`;
  return `${Math.round(secs / 3600)} h ago`;
}

export function json(value) {
  return h('pre', {}, JSON.stringify(value, null, 2));
}

/** A table; `phoneHidden` columns are hidden on a phone, `wrap` columns wrap (long text) instead of widening it. */
export function table(headers, rows, { empty = 'none', phoneHidden = [], wrap = [] } = {}) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  const cls = (i) => [phoneHidden.includes(i) ? 'hide-phone' : '', wrap.includes(i) ? 'wrap' : ''].filter(Boolean).join(' ') || undefined;
  return h('table', {},
    h('thead', {}, h('tr', {}, headers.map((x, i) => h('th', { class: cls(i) }, x)))),
    h('tbody', {}, rows.map((r) => h('tr', r.attrs || {}, r.cells.map((c, i) => h('td', { class: cls(i) }, c))))));
}
