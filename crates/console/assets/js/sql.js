// The SQL page: editor, run / cancel, a streamed virtualised result, chart,
// plan, downloads and the query history.

import { h, put, fmtInt, fmtMs, fmtAgo, quoteIdent, button } from './dom.js';
import { call, getJson, errorBox, ApiError } from './api.js';
import { SqlEditor } from './editor.js';
import { Grid } from './grid.js';
import { readNdjson } from './ndjson.js';
import { errorPosition } from './sqltok.js';
import { drawChart, numericColumns } from './chart.js';
import { isPlan, renderPlan } from './explain.js';
import { handoff, draft, history } from './store.js';

const DEFAULT_SQL = '-- Ctrl+Enter runs the query\nSELECT 1 AS one';

export function mount(root) {
  const page = new SqlPage();
  put(root, page.el);
  if (handoff.sql != null) {
    page.editor.value = handoff.sql;
    draft.set(handoff.sql);
    const run = handoff.run;
    handoff.sql = null;
    if (run) page.run();
  }
  page.editor.focus();
  return () => page.cancel();
}

class SqlPage {
  constructor() {
    this.editor = new SqlEditor({ value: draft.get() ?? DEFAULT_SQL, onRun: () => this.run(), onChange: (v) => draft.set(v) });
    this.grid = new Grid();
    this.controller = null;
    this.lastSql = null;
    this.view = 'table';
    this.runBtn = h('button', { type: 'button', class: 'primary', onclick: () => this.run(), 'data-testid': 'run' }, 'Run');
    this.cancelBtn = h('button', { type: 'button', disabled: true, onclick: () => this.cancel(), 'data-testid': 'cancel' }, 'Cancel');
    this.csvBtn = button('CSV', () => this.download('csv'), { disabled: true, title: 'Download the result as CSV' });
    this.parquetBtn = button('Parquet', () => this.download('parquet'), { disabled: true, title: 'Download the result as Parquet' });
    this.status = h('span', { class: 'run-status', 'data-testid': 'run-status', 'aria-live': 'polite' });
    this.message = h('div', { class: 'run-message', 'data-testid': 'run-message' });
    this.tabs = h('div', { class: 'tabs', role: 'tablist' });
    this.output = h('div', { class: 'output' });
    this.historyEl = h('ol', { class: 'history', 'data-testid': 'history' });
    this.tablesEl = h('ul', { class: 'table-list' });
    this.el = h('div', { class: 'sql-page' },
      h('section', { class: 'sql-main' },
        this.editor.el,
        h('div', { class: 'toolbar' }, this.runBtn, this.cancelBtn, h('span', { class: 'kbd-hint' }, 'Ctrl+Enter'),
          this.status, h('span', { class: 'spacer' }), h('span', { class: 'muted' }, 'Download'), this.csvBtn, this.parquetBtn),
        this.message, this.tabs, this.output),
      h('aside', { class: 'sql-side' },
        h('h2', null, 'Datasets'), this.tablesEl,
        h('div', { class: 'side-head' }, h('h2', null, 'History'),
          h('button', { type: 'button', class: 'link', onclick: () => { history.clear(); this.renderHistory(); } }, 'clear')),
        this.historyEl));
    this.renderHistory();
    this.loadTables();
    this.showView();
  }

  async loadTables() {
    try {
      const { manifests } = await getJson('/catalog/list');
      put(this.tablesEl, manifests.length ? manifests.map((m) => h('li', null,
        h('button', { type: 'button', class: 'link', title: 'Insert the name', onclick: () => this.insert(quoteIdent(m.name)) }, m.name),
        h('span', { class: 'muted' }, ' ' + fmtInt(m.row_count))))
        : h('li', { class: 'muted' }, 'none yet'));
    } catch (e) {
      put(this.tablesEl, h('li', { class: 'muted' }, 'cannot list: ' + e.message));
    }
  }

  insert(text) {
    const ta = this.editor.input;
    ta.setRangeText(text, ta.selectionStart, ta.selectionEnd, 'end');
    ta.dispatchEvent(new Event('input'));
    ta.focus();
  }

  setRunning(on) {
    this.runBtn.disabled = on;
    this.cancelBtn.disabled = !on;
    this.el.classList.toggle('running', on);
  }

  async run() {
    const sql = this.editor.value;
    if (!sql.trim()) return;
    this.cancel();
    const controller = new AbortController();
    this.controller = controller;
    this.editor.clearError();
    put(this.message);
    this.result = { columns: [], rows: 0, complete: false, plan: null };
    this.grid.reset([]);
    this.setRunning(true);
    this.csvBtn.disabled = this.parquetBtn.disabled = true;
    const t0 = performance.now();
    const tick = setInterval(() => this.setStatus('Running… ' + fmtInt(this.grid.rows.length) + ' rows · ' + fmtMs(performance.now() - t0)), 100);
    this.setStatus('Running…');
    try {
      const resp = await call('/query/sql', { method: 'POST', json: { sql, format: 'ndjson' }, signal: controller.signal });
      const n = await readNdjson(resp, {
        onColumns: (cols) => { this.result.columns = cols; this.grid.reset(cols); this.showView(); },
        onRows: (rows) => this.grid.append(rows),
      });
      const ms = performance.now() - t0;
      this.result.complete = true;
      this.result.rows = n;
      this.lastSql = sql;
      this.csvBtn.disabled = this.parquetBtn.disabled = false;
      this.setStatus(fmtInt(n) + (n === 1 ? ' row' : ' rows') + ' · ' + fmtMs(ms), 'ok');
      if (isPlan(this.result.columns)) this.view = 'plan';
      else if (this.view === 'plan') this.view = 'table';
      this.showView();
      history.add({ sql, rows: n, ms: Math.round(ms) });
    } catch (e) {
      this.failed(e, sql, t0, controller);
    } finally {
      clearInterval(tick);
      if (this.controller === controller) { this.controller = null; this.setRunning(false); }
      this.renderHistory();
    }
  }

  failed(e, sql, t0, controller) {
    const ms = performance.now() - t0;
    const got = this.grid.rows.length;
    if (e.name === 'AbortError' || controller.signal.aborted) {
      this.setStatus('Cancelled after ' + fmtMs(ms) + (got ? ' · ' + fmtInt(got) + ' rows received (incomplete)' : ''), 'warn');
      return;
    }
    if (e instanceof ApiError) {
      const pos = errorPosition(e);
      const where = pos && h('p', { class: 'error-pos', 'data-testid': 'error-pos' }, 'At line ' + pos.line + ', column ' + pos.column);
      put(this.message, errorBox(e, where));
      if (pos) this.editor.markError(pos.line, pos.column, e.message);
      this.setStatus('Failed after ' + fmtMs(ms), 'bad');
    } else {
      // The stream broke after it began: what arrived is not the whole result.
      put(this.message, errorBox(new ApiError(0, 'incomplete', 'The result was cut short after ' + fmtInt(got) + ' rows: ' + e.message + '. The rows shown are incomplete.')));
      this.setStatus('Incomplete: ' + fmtInt(got) + ' rows', 'bad');
    }
    history.add({ sql, error: e.message.slice(0, 300), ms: Math.round(ms) });
  }

  cancel() {
    if (this.controller) this.controller.abort();
  }

  setStatus(text, cls) {
    this.status.textContent = text;
    this.status.className = 'run-status' + (cls ? ' ' + cls : '');
  }

  async download(format) {
    if (!this.lastSql) return;
    try {
      const resp = await call('/query/sql', { method: 'POST', json: { sql: this.lastSql, format } });
      const blob = await resp.blob();
      const href = URL.createObjectURL(blob);
      const a = h('a', { href, download: 'result.' + format, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 60_000);
    } catch (e) {
      put(this.message, errorBox(e));
    }
  }

  showView() {
    const cols = this.result?.columns ?? [];
    const views = [['table', 'Table'], ['chart', 'Chart']];
    if (isPlan(cols)) views.push(['plan', 'Plan']);
    if (!views.some(([v]) => v === this.view)) this.view = 'table';
    put(this.tabs, views.map(([v, label]) => h('button', {
      type: 'button', role: 'tab', class: 'tab' + (v === this.view ? ' active' : ''), 'aria-selected': String(v === this.view),
      onclick: () => { this.view = v; this.showView(); },
    }, label)));
    if (this.view === 'table' && this.result?.complete && this.result.rows === 0) {
      put(this.output, h('p', { class: 'muted empty' }, 'The query returned no rows.'));
    } else if (this.view === 'table') put(this.output, this.grid.el);
    else if (this.view === 'plan') put(this.output, renderPlan(this.grid.rows));
    else put(this.output, this.chartView());
  }

  chartView() {
    const cols = this.grid.columns;
    const rows = this.grid.rows;
    if (!rows.length) return h('p', { class: 'muted' }, 'Run a query to chart its result.');
    const nums = numericColumns(cols, rows);
    if (!nums.length) return h('p', { class: 'muted' }, 'The result has no numeric column to chart.');
    this.chart ??= { type: 'bar' };
    const c = this.chart;
    if (!cols.includes(c.y) || !nums.includes(c.y)) c.y = nums.find((n) => n !== cols[0]) ?? nums[0];
    if (!cols.includes(c.x)) c.x = cols.find((n) => n !== c.y) ?? cols[0];
    const select = (value, options, on) => h('select', { onchange: (e) => { on(e.target.value); this.showView(); } },
      options.map((o) => h('option', { value: o, selected: o === value }, o)));
    const { svg, note } = drawChart(c.type, cols, rows, cols.indexOf(c.x), cols.indexOf(c.y));
    return h('div', { class: 'chart-view', 'data-testid': 'chart' },
      h('div', { class: 'chart-controls' },
        h('label', null, 'Chart ', select(c.type, ['bar', 'line', 'scatter'], (v) => { c.type = v; })),
        h('label', null, 'x ', select(c.x, cols, (v) => { c.x = v; })),
        h('label', null, 'y ', select(c.y, nums, (v) => { c.y = v; })),
        note && h('span', { class: 'muted' }, 'showing ' + note)),
      svg);
  }

  renderHistory() {
    const list = history.list();
    put(this.historyEl, list.length ? list.map((e) => {
      const first = e.sql.split('\n').find((l) => l.trim() && !l.trim().startsWith('--')) ?? e.sql;
      const meta = e.error ? 'error' : fmtInt(e.rows) + ' rows · ' + fmtMs(e.ms);
      return h('li', null, h('button', {
        type: 'button', class: 'history-item' + (e.error ? ' failed' : ''), title: e.sql,
        onclick: () => { this.editor.value = e.sql; draft.set(e.sql); this.editor.focus(); },
      }, h('code', null, first.trim().slice(0, 90)), h('span', { class: 'muted' }, meta + ' · ' + fmtAgo(e.at))));
    }) : h('li', { class: 'muted' }, 'Queries you run are kept here (in this browser).'));
  }
}
