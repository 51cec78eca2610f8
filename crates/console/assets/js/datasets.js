// The Datasets page: every dataset with its size and age; one dataset's
// schema, objects, sample rows and (where the server keeps it) history.

import { h, put, fmtInt, fmtBytes, fmtAgo, quoteIdent, pathOf, objectTable, button } from './dom.js';
import { call, getJson, postJson, errorBox, ApiError } from './api.js';
import { openInEditor } from './store.js';
import { Grid } from './grid.js';
import { readNdjson } from './ndjson.js';

const sizeOf = (m) => m.objects.reduce((a, o) => a + (o.size ?? 0), 0);

export function mount(root, { params }) {
  if (params.length) return detail(root, params.join('/'));
  return list(root);
}

function list(root) {
  const filter = h('input', { type: 'search', placeholder: 'Filter by name', 'aria-label': 'Filter datasets' });
  const body = h('div', { 'data-testid': 'datasets' }, h('p', { class: 'muted' }, 'Loading…'));
  put(root, h('div', { class: 'page' },
    h('div', { class: 'page-head' }, h('h1', null, 'Datasets'), filter,
      h('span', { class: 'spacer' }), h('a', { class: 'button', href: '#/upload' }, 'Upload a file')),
    body));
  let manifests = [];
  const render = () => {
    const q = filter.value.trim().toLowerCase();
    const shown = manifests.filter((m) => m.name.includes(q));
    if (!manifests.length) {
      put(body, h('div', { class: 'empty' }, h('p', null, 'No datasets yet.'),
        h('p', null, 'Drop a CSV, NDJSON or Parquet file on the ', h('a', { href: '#/upload' }, 'Upload'), ' page, or run ',
          h('code', null, 'lakehouse ingest file.csv'), '.')));
      return;
    }
    put(body, h('table', { class: 'tbl datasets' },
      h('thead', null, h('tr', null, ['Name', 'Rows', 'Size', 'Objects', 'Version', 'Last change', ''].map((c) => h('th', null, c)))),
      h('tbody', null, shown.map((m) => h('tr', { dataset: { name: m.name } },
        h('td', null, h('a', { href: '#/datasets/' + pathOf(m.name), class: 'ds-name' }, m.name)),
        h('td', { class: 'num' }, fmtInt(m.row_count)),
        h('td', { class: 'num' }, fmtBytes(sizeOf(m))),
        h('td', { class: 'num' }, fmtInt(m.objects.length)),
        h('td', { class: 'num' }, fmtInt(m.version)),
        h('td', { title: m.updated_at }, fmtAgo(m.updated_at)),
        h('td', { class: 'actions' }, h('button', { type: 'button', class: 'small', onclick: () => openInEditor(`SELECT * FROM ${quoteIdent(m.name)} LIMIT 100`) }, 'Query'))))),
      h('tfoot', null, h('tr', null, h('td', null, shown.length + ' of ' + manifests.length + ' datasets'),
        h('td', { class: 'num' }, fmtInt(shown.reduce((a, m) => a + m.row_count, 0))),
        h('td', { class: 'num' }, fmtBytes(shown.reduce((a, m) => a + sizeOf(m), 0))), h('td', { colspan: 4 })))));
  };
  filter.addEventListener('input', render);
  getJson('/catalog/list').then((r) => { manifests = r.manifests; render(); }, (e) => put(body, errorBox(e)));
}

function detail(root, name) {
  const head = h('div', { class: 'page-head' },
    h('h1', null, h('a', { href: '#/datasets' }, 'Datasets'), ' / ', h('span', { 'data-testid': 'dataset-title' }, name)));
  const summary = h('div', { class: 'cards' }, h('p', { class: 'muted' }, 'Loading…'));
  const schema = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const sample = h('div', { class: 'sample' });
  const objects = h('div');
  const historySection = h('section', { class: 'panel', hidden: true },
    h('h2', null, 'History'), h('div', { 'data-testid': 'history-body' }));
  const actions = h('div', { class: 'page-actions' });
  put(root, h('div', { class: 'page' }, head, actions, summary,
    h('div', { class: 'two-col' },
      h('section', { class: 'panel' }, h('h2', null, 'Schema'), schema),
      h('section', { class: 'panel' }, h('h2', null, 'Objects'), objects)),
    historySection,
    h('section', { class: 'panel' }, h('h2', null, 'Sample rows'), sample)));

  getJson('/catalog/manifest/' + pathOf(name)).then((m) => {
    put(actions,
      h('button', { type: 'button', class: 'primary', onclick: () => openInEditor(`SELECT * FROM ${quoteIdent(m.name)} LIMIT 100`) }, 'Query this'),
      h('a', { class: 'button', href: '#/upload/' + pathOf(m.name) }, 'Upload more'),
      button('Delete…', () => remove(m.name, actions), { class: 'danger' }));
    put(summary,
      card('Rows', fmtInt(m.row_count)), card('Size', fmtBytes(sizeOf(m))), card('Objects', fmtInt(m.objects.length)),
      card('Version', fmtInt(m.version)), card('Last change', fmtAgo(m.updated_at), m.updated_at),
      card('Created', fmtAgo(m.created_at), m.created_at));
    put(objects, m.objects.length
      ? objectTable(m.objects.map((o) => ({ key: o.key, rows: o.row_count, size: fmtBytes(o.size) })), { class: 'compact' })
      : h('p', { class: 'muted' }, 'No objects.'),
    h('p', { class: 'muted small' }, 'id ' + m.dataset_id + ' · ' + m.schema_fingerprint));
  }, (e) => put(summary, errorBox(e)));

  postJson('/query/sql', { sql: 'DESCRIBE ' + quoteIdent(name) }).then((rows) => {
    put(schema, objectTable(rows.map((r) => ({ column: r.column_name, type: r.data_type, nullable: r.is_nullable })), { class: 'compact' }));
  }, (e) => put(schema, errorBox(e)));

  loadSample(sample, name);
  loadHistory(historySection, name);
}

function card(label, value, title) {
  return h('div', { class: 'card', title }, h('div', { class: 'card-label' }, label), h('div', { class: 'card-value' }, value));
}

async function loadSample(el, name) {
  const grid = new Grid();
  grid.el.classList.add('short');
  put(el, grid.el);
  try {
    const resp = await call('/query/sql', { method: 'POST', json: { sql: `SELECT * FROM ${quoteIdent(name)} LIMIT 50`, format: 'ndjson' } });
    const n = await readNdjson(resp, { onColumns: (c) => grid.reset(c), onRows: (r) => grid.append(r) });
    if (!n) put(el, h('p', { class: 'muted' }, 'The dataset has no rows.'));
  } catch (e) {
    put(el, errorBox(e));
  }
}

/**
 * Version history, from `GET /catalog/history/<name>` (the dataset's Delta
 * table); hidden for a dataset without a table (409) or a server without
 * the route.
 */
async function loadHistory(section, name) {
  try {
    const body = await getJson('/catalog/history/' + pathOf(name));
    const versions = Array.isArray(body) ? body : body.versions ?? body.history ?? [];
    put(section.querySelector('[data-testid=history-body]'), versions.length
      ? objectTable(versions, { class: 'compact' }) : h('p', { class: 'muted' }, 'No history.'));
    section.hidden = false;
  } catch (e) {
    if (!(e instanceof ApiError) || (e.status !== 404 && e.status !== 405 && e.status !== 409)) {
      put(section.querySelector('[data-testid=history-body]'), errorBox(e));
      section.hidden = false;
    }
  }
}

async function remove(name, actions) {
  const confirmBox = h('div', { class: 'confirm' },
    h('span', null, 'Remove the dataset ', h('strong', null, name), ' from the catalog? Queries will no longer see it.'),
    button('Delete', async () => {
      try {
        await call('/catalog/manifest/' + pathOf(name), { method: 'DELETE' });
        location.hash = '#/datasets';
      } catch (e) {
        confirmBox.replaceWith(errorBox(e));
      }
    }, { class: 'danger' }),
    h('button', { type: 'button', onclick: () => confirmBox.remove() }, 'Keep it'));
  actions.append(confirmBox);
}
