// The Upload page: drop a CSV / NDJSON / Parquet / Arrow file on a dataset
// (a new name or an existing one); the file streams to POST /ingest/<name>
// with a progress bar, and the ingest's answer is shown in plain words.

import { h, put, fmtInt, fmtBytes, fmtMs, pathOf, quoteIdent } from './dom.js';
import { getJson, errorOf, errorBox, authHeaders, url, ApiError } from './api.js';
import { openInEditor } from './store.js';

const FORMATS = { csv: 'csv', tsv: 'csv', txt: 'csv', ndjson: 'ndjson', jsonl: 'ndjson', json: 'ndjson', parquet: 'parquet', arrow: 'arrow', arrows: 'arrow', ipc: 'arrow', feather: 'arrow' };

/** The format a file name suggests, or null. */
export function formatOf(fileName) {
  const ext = String(fileName).toLowerCase().split('.').pop();
  return FORMATS[ext] ?? null;
}

/** A dataset name from a file name: `Sales 2024.csv` → `sales_2024`. */
export function nameFrom(fileName) {
  return String(fileName).replace(/\.[^.]*$/, '').toLowerCase().replace(/[^a-z0-9_\-./]+/g, '_').replace(/^_+|_+$/g, '') || 'upload';
}

export function mount(root, { params }) {
  const page = new UploadPage(params.join('/'));
  put(root, page.el);
  return () => page.abort();
}

class UploadPage {
  constructor(preset) {
    this.xhr = null;
    this.name = h('input', { type: 'text', placeholder: 'dataset name, e.g. sales or web/events', value: preset, 'aria-label': 'Dataset name', 'data-testid': 'upload-name' });
    this.format = h('select', { 'aria-label': 'Format' }, ['auto', 'csv', 'ndjson', 'parquet', 'arrow'].map((f) => h('option', { value: f }, f === 'auto' ? 'format from the file name' : f)));
    this.mode = h('select', { 'aria-label': 'Mode' }, h('option', { value: 'append' }, 'append'), h('option', { value: 'replace' }, 'replace'));
    this.header = h('input', { type: 'checkbox', checked: true });
    this.delimiter = h('select', { 'aria-label': 'Delimiter' }, [[',', 'comma'], ['tab', 'tab'], [';', 'semicolon'], ['|', 'pipe']].map(([v, l]) => h('option', { value: v }, l)));
    this.picker = h('input', { type: 'file', hidden: true, 'data-testid': 'upload-file', onchange: () => this.picker.files[0] && this.start(this.picker.files[0]) });
    this.drop = h('div', { class: 'dropzone', 'data-testid': 'dropzone', tabindex: '0', role: 'button' },
      h('strong', null, 'Drop a file here'), h('span', { class: 'muted' }, 'CSV, NDJSON, Parquet or Arrow — or click to choose one'));
    this.drop.addEventListener('click', () => this.picker.click());
    this.drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); this.picker.click(); } });
    dropTarget(this.drop, (f) => this.start(f));
    this.progress = h('div', { class: 'upload-progress', hidden: true });
    this.result = h('div', { class: 'upload-result', 'data-testid': 'upload-result', 'aria-live': 'polite' });
    this.targets = h('div', { class: 'drop-targets' });
    this.el = h('div', { class: 'page' },
      h('div', { class: 'page-head' }, h('h1', null, 'Upload')),
      h('section', { class: 'panel upload-form' },
        h('label', { class: 'field' }, h('span', null, 'Dataset'), this.name),
        h('div', { class: 'field-row' },
          h('label', { class: 'field' }, h('span', null, 'Format'), this.format),
          h('label', { class: 'field' }, h('span', null, 'Mode'), this.mode),
          h('label', { class: 'field' }, h('span', null, 'CSV delimiter'), this.delimiter),
          h('label', { class: 'field check' }, this.header, h('span', null, 'CSV has a header line'))),
        this.drop, this.picker, this.progress, this.result),
      h('section', { class: 'panel' }, h('h2', null, 'Or drop a file on an existing dataset'), this.targets));
    this.loadTargets();
  }

  async loadTargets() {
    try {
      const { manifests } = await getJson('/catalog/list');
      put(this.targets, manifests.length ? manifests.map((m) => {
        const t = h('div', { class: 'drop-target', dataset: { name: m.name }, title: 'Drop a file to append it to ' + m.name },
          h('span', { class: 'ds-name' }, m.name), h('span', { class: 'muted' }, fmtInt(m.row_count) + ' rows'));
        dropTarget(t, (f) => { this.name.value = m.name; this.start(f); });
        return t;
      }) : h('p', { class: 'muted' }, 'No datasets yet.'));
    } catch (e) {
      put(this.targets, errorBox(e));
    }
  }

  params(file) {
    const format = this.format.value === 'auto' ? formatOf(file.name) : this.format.value;
    const p = { mode: this.mode.value };
    if (format) p.format = format;
    if (format === 'csv') {
      p.header = String(this.header.checked);
      const tsv = /\.tsv$/i.test(file.name) && this.delimiter.value === ',';
      if (tsv) p.delimiter = 'tab';
      else if (this.delimiter.value !== ',') p.delimiter = this.delimiter.value;
    }
    return p;
  }

  start(file) {
    if (this.xhr) return;
    if (!this.name.value.trim()) this.name.value = nameFrom(file.name);
    const name = this.name.value.trim();
    const xhr = new XMLHttpRequest();
    this.xhr = xhr;
    const bar = h('div', { class: 'bar-fill' });
    const label = h('span', { class: 'progress-label', 'data-testid': 'progress-label' }, 'Starting…');
    const cancel = h('button', { type: 'button', onclick: () => xhr.abort() }, 'Cancel');
    put(this.progress, h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' }, bar), label, cancel);
    this.progress.hidden = false;
    put(this.result);
    const t0 = performance.now();
    xhr.upload.addEventListener('progress', (e) => {
      const pct = e.lengthComputable ? (100 * e.loaded) / e.total : 0;
      bar.style.width = pct.toFixed(1) + '%';
      bar.parentElement.setAttribute('aria-valuenow', pct.toFixed(0));
      const rate = e.loaded / Math.max(0.001, (performance.now() - t0) / 1000);
      label.textContent = fmtBytes(e.loaded) + ' of ' + fmtBytes(e.total) + ' · ' + fmtBytes(rate) + '/s';
    });
    xhr.upload.addEventListener('load', () => { label.textContent = 'Sent ' + fmtBytes(file.size) + '; writing Parquet and registering…'; bar.style.width = '100%'; });
    const done = () => { this.xhr = null; this.progress.hidden = true; };
    xhr.addEventListener('load', async () => {
      done();
      if (xhr.status >= 200 && xhr.status < 300) this.succeeded(JSON.parse(xhr.responseText), performance.now() - t0);
      else put(this.result, errorBox(await errorOf(xhr.status, xhr.responseText)));
    });
    xhr.addEventListener('error', () => { done(); put(this.result, errorBox(new ApiError(0, 'network', 'the upload could not reach the server'))); });
    xhr.addEventListener('abort', () => { done(); put(this.result, h('p', { class: 'muted' }, 'Upload cancelled; nothing was added.')); });
    xhr.open('POST', url('/ingest/' + pathOf(name), this.params(file)));
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.send(file);
  }

  succeeded(r, ms) {
    const m = r.manifest ?? {};
    put(this.result, h('div', { class: 'ok-box', role: 'status' },
      h('strong', null, (r.replayed ? 'Already added earlier: ' : 'Added ') + fmtInt(r.rows) + ' rows to ', h('a', { href: '#/datasets/' + pathOf(r.dataset) }, r.dataset)),
      h('p', null, 'The dataset now has ' + fmtInt(m.row_count) + ' rows in ' + fmtInt(m.objects?.length) + ' objects (version ' + m.version + '); took ' + fmtMs(ms) + '.'),
      h('button', { type: 'button', onclick: () => openInEditor(`SELECT * FROM ${quoteIdent(r.dataset)} LIMIT 100`) }, 'Query it')));
    this.loadTargets();
  }

  abort() { this.xhr?.abort(); }
}

/** Makes `el` accept a dropped file. */
function dropTarget(el, onFile) {
  el.addEventListener('dragover', (e) => { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; el.classList.add('over'); });
  el.addEventListener('dragleave', () => el.classList.remove('over'));
  el.addEventListener('drop', (e) => {
    e.preventDefault();
    el.classList.remove('over');
    const f = e.dataTransfer.files[0];
    if (f) onFile(f);
  });
}
