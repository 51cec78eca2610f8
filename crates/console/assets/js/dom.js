// DOM building without HTML parsing: every value is put in as text, so
// names, cells and messages from the server can never become markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v);
    else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function appendAll(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** `h('div', {class: 'x', onclick: f}, 'text', child…)`: an element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

/** Like `h`, for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

/** Replaces the children of `el`. */
export function put(el, ...children) {
  el.replaceChildren();
  appendAll(el, children);
  return el;
}

const intFmt = new Intl.NumberFormat('en-US');

export function fmtInt(n) {
  if (n == null) return '–';
  return typeof n === 'bigint' ? n.toLocaleString('en-US') : intFmt.format(n);
}

export function fmtBytes(n) {
  if (n == null || !isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + ' ' + units[i];
}

export function fmtMs(ms) {
  if (ms == null) return '–';
  if (ms < 1) return ms.toFixed(2) + ' ms';
  if (ms < 1000) return Math.round(ms) + ' ms';
  return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
}

/** "3 min ago", with the exact time for a tooltip. */
export function fmtAgo(iso) {
  const t = Date.parse(iso);
  if (!isFinite(t)) return String(iso ?? '–');
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  if (s < 86400 * 30) return Math.round(s / 86400) + ' d ago';
  return new Date(t).toISOString().slice(0, 10);
}

/** A value as the grid and tables show it. */
export function cellText(v) {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'string') return v;
  if (typeof v === 'object') return JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x));
  return String(v);
}

/** A dataset name as a SQL identifier. */
export function quoteIdent(name) {
  return '"' + String(name).replaceAll('"', '""') + '"';
}

/** A dataset name as URL path segments (names contain `/`). */
export function pathOf(name) {
  return String(name).split('/').map(encodeURIComponent).join('/');
}

/** A small table from rows of objects (keys of the first rows as columns). */
export function objectTable(rows, opts = {}) {
  const cols = opts.columns ?? [...new Set(rows.slice(0, 50).flatMap((r) => Object.keys(r ?? {})))];
  return h('table', { class: 'tbl' + (opts.class ? ' ' + opts.class : '') },
    h('thead', null, h('tr', null, cols.map((c) => h('th', null, c)))),
    h('tbody', null, rows.map((r) => h('tr', null, cols.map((c) => {
      const v = r?.[c];
      return h('td', { class: cellClass(v) }, cellText(v));
    })))));
}

export function cellClass(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number' || typeof v === 'bigint') return 'num';
  return null;
}

/** A button that runs `fn` and disables itself meanwhile. */
export function button(label, fn, attrs = {}) {
  const b = h('button', { type: 'button', ...attrs }, label);
  b.addEventListener('click', async (e) => {
    if (b.disabled) return;
    b.disabled = true;
    try { await fn(e); } finally { b.disabled = false; }
  });
  return b;
}
