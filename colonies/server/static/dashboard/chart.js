// Throughput over the last hour: processes finished per minute (successful stacked under failed).
import { s } from './dom.js';

const MINUTES = 60;

/** Per-minute counts for the last hour, oldest first: [{ok, failed}] (index 59 = this minute). */
export function buckets(successful, failed, now = Date.now()) {
  const out = Array.from({ length: MINUTES }, () => ({ ok: 0, failed: 0 }));
  const add = (list, key) => {
    for (const p of list) {
      const t = new Date(p.endtime).getTime();
      const age = Math.floor((now - t) / 60000);
      if (Number.isFinite(age) && age >= 0 && age < MINUTES) out[MINUTES - 1 - age][key]++;
    }
  };
  add(successful, 'ok');
  add(failed, 'failed');
  return out;
}

export function drawChart(data) {
  const W = 600; const H = 140; const left = 28; const bottom = 18;
  const max = Math.max(1, ...data.map((d) => d.ok + d.failed));
  const bw = (W - left) / data.length;
  const scale = (H - bottom - 6) / max;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img',
    'aria-label': 'processes finished per minute, last hour' });
  svg.append(s('line', { class: 'axis', x1: left, y1: H - bottom, x2: W, y2: H - bottom }));
  svg.append(s('text', { x: 2, y: 12 }, String(max)), s('text', { x: 2, y: H - bottom }, '0'));
  svg.append(s('text', { x: left, y: H - 4 }, '−60 min'), s('text', { x: W - 30, y: H - 4 }, 'now'));
  data.forEach((d, i) => {
    const x = left + i * bw + 1;
    const hOk = d.ok * scale; const hFail = d.failed * scale;
    if (hOk) svg.append(s('rect', { class: 'bar-ok', x, y: H - bottom - hOk, width: bw - 2, height: hOk },
      s('title', {}, `${d.ok} successful`)));
    if (hFail) svg.append(s('rect', { class: 'bar-failed', x, y: H - bottom - hOk - hFail, width: bw - 2, height: hFail },
      s('title', {}, `${d.failed} failed`)));
  });
  return svg;
}
