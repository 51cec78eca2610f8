// The Vectors page: the indexes with their parameters, size and memory, and
// a search by vector (or by an item's neighbours, where the server can look
// an item up) with metadata filters.

import { h, put, fmtInt, fmtBytes, fmtMs, cellText, cellClass, pathOf } from './dom.js';
import { call, getJson, postJson, errorBox, ApiError } from './api.js';

export function mount(root, { params }) {
  const selected = params.join('/') || null;
  const list = h('div', { 'data-testid': 'indexes' }, h('p', { class: 'muted' }, 'Loading…'));
  const search = h('div');
  put(root, h('div', { class: 'page' }, h('div', { class: 'page-head' }, h('h1', null, 'Vectors')), list, search));
  getJson('/vectors/indexes').then(({ indexes }) => {
    if (!indexes.length) {
      put(list, h('div', { class: 'empty' }, h('p', null, 'No vector indexes yet.'), h('p', null, 'Create one with ',
        h('code', null, 'lakehouse vectors create docs --dim 384 --metric cosine'), ' and add vectors with ', h('code', null, 'lakehouse vectors add'), '.')));
      return;
    }
    put(list, h('table', { class: 'tbl' },
      h('thead', null, h('tr', null, ['Index', 'Dimensions', 'Metric', 'M', 'ef_construction', 'Vectors', 'Memory'].map((c) => h('th', null, c)))),
      h('tbody', null, indexes.map((x) => h('tr', { class: x.name === selected ? 'selected' : null },
        h('td', null, h('a', { href: '#/vectors/' + pathOf(x.name) }, x.name)),
        h('td', { class: 'num' }, fmtInt(x.dim)), h('td', null, x.metric), h('td', { class: 'num' }, fmtInt(x.m)),
        h('td', { class: 'num' }, fmtInt(x.ef_construction)), h('td', { class: 'num' }, fmtInt(x.count)),
        h('td', { class: 'num' }, fmtBytes(x.memory_bytes)))))));
    const index = indexes.find((x) => x.name === (selected ?? indexes[0].name));
    if (index) put(search, searchPanel(index));
    else put(search, errorBox(new ApiError(404, 'not_found', 'no vector index named ' + JSON.stringify(selected))));
  }, (e) => put(list, errorBox(e)));
}

/** Filter rows → `{key: value}`; a value that reads as JSON (42, true, "x") is taken as such. */
export function filterOf(pairs) {
  const out = {};
  for (const [k, raw] of pairs) {
    if (!k.trim()) continue;
    let v = raw;
    try { v = JSON.parse(raw); } catch { /* plain text */ }
    out[k.trim()] = v;
  }
  return Object.keys(out).length ? out : undefined;
}

/** A vector typed as `[0.1, 0.2]` or `0.1 0.2` / `0.1, 0.2`. */
export function parseVector(text, dim) {
  const t = text.trim();
  let v;
  if (t.startsWith('[')) {
    try { v = JSON.parse(t); } catch { throw new Error('the vector is not a JSON array of numbers'); }
  } else {
    v = t.split(/[\s,]+/).filter(Boolean).map(Number);
  }
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && isFinite(x))) throw new Error('every component must be a finite number');
  if (v.length !== dim) throw new Error('the index has ' + dim + ' dimensions; this vector has ' + v.length);
  return v;
}

function searchPanel(index) {
  const modes = h('div', { class: 'seg', role: 'radiogroup' });
  const vector = h('textarea', { class: 'mono', rows: 3, placeholder: '[' + Array.from({ length: Math.min(index.dim, 4) }, (_, i) => (0.1 * (i + 1)).toFixed(1)).join(', ') + (index.dim > 4 ? ', …' : '') + ']', 'data-testid': 'vector-input', 'aria-label': 'Query vector' });
  const itemId = h('input', { type: 'text', placeholder: 'an item id', 'aria-label': 'Item id', hidden: true });
  const k = h('input', { type: 'number', min: 1, max: 10000, value: '10', 'aria-label': 'k', class: 'narrow' });
  const ef = h('input', { type: 'number', min: 1, placeholder: 'auto', 'aria-label': 'ef', class: 'narrow' });
  const filters = h('div', { class: 'filters' });
  const addFilter = (key = '', value = '') => {
    const row = h('div', { class: 'filter-row' },
      h('input', { type: 'text', placeholder: 'metadata key', value: key, class: 'f-key', 'aria-label': 'Filter key' }), ' = ',
      h('input', { type: 'text', placeholder: 'value (text, 42, true)', value, class: 'f-val', 'aria-label': 'Filter value' }),
      h('button', { type: 'button', class: 'link', onclick: () => row.remove() }, 'remove'));
    filters.append(row);
  };
  const out = h('div', { class: 'search-results', 'data-testid': 'vector-results' });
  let mode = 'vector';
  const setMode = (m) => {
    mode = m;
    vector.hidden = m !== 'vector';
    itemId.hidden = m !== 'id';
    for (const b of modes.children) b.classList.toggle('active', b.dataset.mode === m);
  };
  modes.append(h('button', { type: 'button', dataset: { mode: 'vector' }, onclick: () => setMode('vector') }, 'By vector'));
  // Neighbours of an item need the item's vector: offered where the server
  // answers GET /vectors/indexes/<name>/items/<id>.
  itemLookup(index.name).then((ok) => {
    if (ok) modes.append(h('button', { type: 'button', dataset: { mode: 'id' }, onclick: () => setMode('id') }, 'Neighbours of an id'));
    setMode(mode);
  });
  const run = async () => {
    put(out, h('p', { class: 'muted' }, 'Searching…'));
    try {
      const body = { k: Number(k.value) || 10, filter: filterOf([...filters.children].map((r) => [r.querySelector('.f-key').value, r.querySelector('.f-val').value])) };
      if (ef.value) body.ef = Number(ef.value);
      body.vector = mode === 'id' ? await vectorOf(index.name, itemId.value.trim()) : parseVector(vector.value, index.dim);
      const t0 = performance.now();
      const hits = await postJson('/vectors/indexes/' + pathOf(index.name) + '/search', body);
      put(out, results(hits, performance.now() - t0));
    } catch (e) {
      put(out, errorBox(e instanceof ApiError ? e : new ApiError(400, 'invalid_search', e.message)));
    }
  };
  setMode('vector');
  return h('section', { class: 'panel' },
    h('h2', null, 'Search ', h('span', { class: 'muted' }, index.name + ' · ' + index.dim + '-d ' + index.metric)),
    modes, vector, itemId,
    h('div', { class: 'field-row' }, h('label', { class: 'field' }, h('span', null, 'k'), k), h('label', { class: 'field' }, h('span', null, 'ef'), ef),
      h('button', { type: 'button', class: 'link', onclick: () => addFilter() }, '+ metadata filter')),
    filters,
    h('div', { class: 'toolbar' }, h('button', { type: 'button', class: 'primary', onclick: run, 'data-testid': 'vector-search' }, 'Search')),
    out);
}

/** Whether the server can return one item (with its vector). */
async function itemLookup(name) {
  try {
    await call('/vectors/indexes/' + pathOf(name) + '/items/' + encodeURIComponent('__console_probe__'), { method: 'GET' });
    return true;
  } catch (e) {
    return e instanceof ApiError && e.status === 404 && e.code !== 'no_route';
  }
}

async function vectorOf(name, id) {
  if (!id) throw new Error('type the id of an item');
  const item = await getJson('/vectors/indexes/' + pathOf(name) + '/items/' + encodeURIComponent(id));
  return item.vector;
}

function results(hits, ms) {
  if (!hits.length) return h('p', { class: 'muted' }, 'No matches (' + fmtMs(ms) + ').');
  const keys = [...new Set(hits.flatMap((x) => Object.keys(x.metadata ?? {})))].slice(0, 12);
  return h('div', null,
    h('p', { class: 'muted' }, hits.length + ' nearest · ' + fmtMs(ms)),
    h('table', { class: 'tbl compact' },
      h('thead', null, h('tr', null, ['#', 'id', 'distance', ...keys].map((c) => h('th', null, c)))),
      h('tbody', null, hits.map((x, i) => h('tr', null,
        h('td', { class: 'num' }, String(i + 1)), h('td', null, x.id),
        h('td', { class: 'num' }, x.distance.toPrecision(5)),
        keys.map((key) => {
          const v = x.metadata?.[key];
          return h('td', { class: cellClass(v) }, v === undefined ? '' : cellText(v));
        }))))));
}
