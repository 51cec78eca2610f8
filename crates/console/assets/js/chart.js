// A quick chart of a result: bar, line or scatter, drawn as SVG.

import { s, cellText } from './dom.js';

const W = 820;
const H = 320;
const M = { left: 64, right: 18, top: 14, bottom: 46 };
export const LIMITS = { bar: 60, line: 2000, scatter: 5000 };

function num(v) {
  if (typeof v === 'number') return isFinite(v) ? v : null;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string' && v.trim() !== '' && isFinite(Number(v))) return Number(v);
  return null;
}

function time(v) {
  if (typeof v !== 'string' || !/^\d{4}-\d\d-\d\d/.test(v)) return null;
  const t = Date.parse(v);
  return isFinite(t) ? t : null;
}

/** Columns whose first non-null values are numbers. */
export function numericColumns(columns, rows) {
  return columns.filter((_, i) => {
    const vals = rows.slice(0, 100).map((r) => r[i]).filter((v) => v !== null && v !== undefined);
    return vals.length > 0 && vals.every((v) => num(v) !== null);
  });
}

/** Round tick values from at or below `lo` to at or above `hi`. */
export function ticks(lo, hi, count = 5) {
  if (lo === hi) { lo -= 1; hi += 1; }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw);
  const out = [];
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  for (let i = first; i <= last; i++) out.push(+(i * step).toPrecision(12));
  return out;
}

function short(n) {
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toPrecision(3) + 'G';
  if (a >= 1e6) return (n / 1e6).toPrecision(3) + 'M';
  if (a >= 1e4) return (n / 1e3).toPrecision(3) + 'k';
  return String(+n.toPrecision(4));
}

/** Every `stride`-th row so at most `max` are drawn (a line keeps its shape). */
function sample(rows, max) {
  if (rows.length <= max) return { rows, note: null };
  const stride = Math.ceil(rows.length / max);
  return { rows: rows.filter((_, i) => i % stride === 0), note: 'every ' + stride + 'th row of ' + rows.length };
}

/**
 * The chart as an <svg>. `x`, `y` are column indexes. Returns {svg, note}
 * (note says when only part of the rows is drawn).
 */
export function drawChart(type, columns, rows, x, y) {
  let note = null;
  let data;
  if (type === 'bar') {
    data = rows.slice(0, LIMITS.bar);
    if (rows.length > LIMITS.bar) note = 'the first ' + LIMITS.bar + ' of ' + rows.length + ' rows';
  } else {
    ({ rows: data, note } = sample(rows, LIMITS[type]));
  }
  const pts = data.map((r, i) => {
    const xv = r[x];
    return { label: cellText(xv), xn: num(xv) ?? time(xv) ?? i, y: num(r[y]) };
  }).filter((p) => p.y !== null);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': type + ' chart of ' + columns[y] + ' by ' + columns[x] });
  if (!pts.length) {
    svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'chart-empty' }, 'no numeric values in ' + columns[y]));
    return { svg, note };
  }
  const ys = pts.map((p) => p.y);
  const yt = ticks(Math.min(0, ...ys), Math.max(0, ...ys));
  const y0 = yt[0], y1 = yt[yt.length - 1];
  const pw = W - M.left - M.right, ph = H - M.top - M.bottom;
  const Y = (v) => M.top + ph - ((v - y0) / (y1 - y0 || 1)) * ph;
  for (const t of yt) {
    svg.append(s('line', { x1: M.left, x2: W - M.right, y1: Y(t), y2: Y(t), class: 'grid-line' }),
      s('text', { x: M.left - 6, y: Y(t) + 4, 'text-anchor': 'end', class: 'tick' }, short(t)));
  }
  if (type === 'bar') drawBars(svg, pts, Y, y0, pw);
  else drawXY(svg, type, pts, Y, pw);
  svg.append(s('text', { x: M.left + pw / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis-label' }, columns[x]),
    s('text', { x: 14, y: M.top + ph / 2, 'text-anchor': 'middle', class: 'axis-label', transform: `rotate(-90 14 ${M.top + ph / 2})` }, columns[y]));
  return { svg, note };
}

function drawBars(svg, pts, Y, y0, pw) {
  const bw = pw / pts.length;
  const base = Y(Math.max(0, y0));
  const every = Math.ceil(pts.length / 12);
  pts.forEach((p, i) => {
    const top = Y(p.y);
    const rect = s('rect', { x: M.left + i * bw + bw * 0.1, y: Math.min(top, base), width: Math.max(1, bw * 0.8), height: Math.max(1, Math.abs(base - top)), class: 'bar' },
      s('title', null, p.label + ': ' + p.y));
    svg.append(rect);
    if (i % every === 0) {
      const label = p.label.length > 14 ? p.label.slice(0, 13) + '…' : p.label;
      svg.append(s('text', { x: M.left + i * bw + bw / 2, y: H - M.bottom + 16, 'text-anchor': 'middle', class: 'tick' }, label));
    }
  });
}

function drawXY(svg, type, pts, Y, pw) {
  const xs = pts.map((p) => p.xn);
  const xt = ticks(Math.min(...xs), Math.max(...xs));
  const x0 = xt[0], x1 = xt[xt.length - 1];
  const X = (v) => M.left + ((v - x0) / (x1 - x0 || 1)) * pw;
  const isTime = xs.length && pts.every((p) => time(p.label) !== null);
  for (const t of xt) {
    const label = isTime ? new Date(t).toISOString().slice(0, 10) : short(t);
    svg.append(s('text', { x: X(t), y: H - M.bottom + 16, 'text-anchor': 'middle', class: 'tick' }, label));
  }
  if (type === 'line') {
    const sorted = [...pts].sort((a, b) => a.xn - b.xn);
    const d = sorted.map((p, i) => (i ? 'L' : 'M') + X(p.xn).toFixed(1) + ' ' + Y(p.y).toFixed(1)).join('');
    svg.append(s('path', { d, class: 'line' }));
  } else {
    for (const p of pts) svg.append(s('circle', { cx: X(p.xn).toFixed(1), cy: Y(p.y).toFixed(1), r: 3, class: 'dot' }));
  }
}
