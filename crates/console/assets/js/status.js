// The Status page: each service's readiness, request rate, latency and
// errors from /metrics as small graphs (polled), and this server's version
// and configuration (secrets hidden by the server).

import { h, s, put, fmtInt, fmtMs } from './dom.js';
import { call, getJson, errorBox } from './api.js';
import { parseMetrics, summarize, rates } from './prom.js';

const POLL_MS = 2000;
const POINTS = 60;

export function mount(root) {
  const page = new StatusPage();
  put(root, page.el);
  page.poll();
  const timer = setInterval(() => { if (!document.hidden) page.poll(); }, POLL_MS);
  return () => clearInterval(timer);
}

class StatusPage {
  constructor() {
    this.prev = null;
    this.series = { rps: [], p50: [], p95: [], errors: [] };
    this.ready = h('div', { class: 'cards', 'data-testid': 'ready' }, h('p', { class: 'muted' }, 'Checking…'));
    this.graphs = h('div', { class: 'graphs' });
    this.routes = h('div');
    this.info = h('div', { 'data-testid': 'info' }, h('p', { class: 'muted' }, 'Loading…'));
    this.updated = h('span', { class: 'muted' });
    this.includeOps = h('input', { type: 'checkbox', onchange: () => { this.prev = null; this.series = { rps: [], p50: [], p95: [], errors: [] }; this.poll(); } });
    this.el = h('div', { class: 'page' },
      h('div', { class: 'page-head' }, h('h1', null, 'Status'), h('span', { class: 'spacer' }), this.updated),
      h('section', { class: 'panel' }, h('h2', null, 'Services'), this.ready),
      h('section', { class: 'panel' },
        h('div', { class: 'side-head' }, h('h2', null, 'Traffic'),
          h('label', { class: 'check' }, this.includeOps, ' include the console and health probes')),
        this.graphs, this.routes),
      h('section', { class: 'panel' }, h('h2', null, 'This server'), this.info));
    this.renderGraphs();
    getJson('/ui/api/info').then((i) => put(this.info, infoView(i)), (e) => put(this.info, errorBox(e)));
  }

  async poll() {
    const [ready, metrics] = await Promise.allSettled([
      call('/ready', { accept: [503] }).then((r) => r.json()),
      call('/metrics').then((r) => r.text()),
    ]);
    if (ready.status === 'fulfilled') put(this.ready, readyCards(ready.value));
    else put(this.ready, errorBox(ready.reason));
    if (metrics.status === 'fulfilled') this.addScrape(metrics.value);
    else put(this.routes, errorBox(metrics.reason));
    this.updated.textContent = 'updated ' + new Date().toLocaleTimeString();
  }

  addScrape(text) {
    const now = performance.now();
    const cur = summarize(parseMetrics(text), { includeOps: this.includeOps.checked });
    if (this.prev) {
      const r = rates(this.prev.sum, cur, (now - this.prev.at) / 1000);
      const push = (k, v) => { this.series[k].push(v); if (this.series[k].length > POINTS) this.series[k].shift(); };
      push('rps', r.rps);
      push('errors', r.errors);
      push('p50', r.p50 == null ? null : r.p50 * 1000);
      push('p95', r.p95 == null ? null : r.p95 * 1000);
    }
    this.prev = { sum: cur, at: now };
    this.renderGraphs();
    const top = [...cur.routes.values()].sort((a, b) => b.requests - a.requests).slice(0, 15);
    put(this.routes, top.length ? h('table', { class: 'tbl compact' },
      h('thead', null, h('tr', null, ['Route', 'Requests', 'Errors', 'Mean time'].map((c) => h('th', null, c)))),
      h('tbody', null, top.map((r) => h('tr', null, h('td', null, h('code', null, r.key)), h('td', { class: 'num' }, fmtInt(r.requests)),
        h('td', { class: 'num' + (r.errors ? ' bad' : '') }, fmtInt(r.errors)), h('td', { class: 'num' }, fmtMs((1000 * r.sum) / r.requests))))))
      : h('p', { class: 'muted' }, 'No API requests yet.'));
  }

  renderGraphs() {
    const last = (a) => { for (let i = a.length - 1; i >= 0; i--) if (a[i] != null) return a[i]; return null; };
    const f1 = (v) => (v == null ? '–' : v < 10 ? v.toFixed(2) : v.toFixed(0));
    put(this.graphs,
      graph('Requests / s', [this.series.rps], f1(last(this.series.rps)), 'rps'),
      graph('Latency p50 · p95', [this.series.p50, this.series.p95], fmtMs(last(this.series.p50)) + ' · ' + fmtMs(last(this.series.p95)), 'latency'),
      graph('Errors / s (4xx + 5xx)', [this.series.errors], f1(last(this.series.errors)), 'errors'));
  }
}

function readyCards(r) {
  const checks = Object.entries(r.checks ?? {});
  if (!checks.length) return h('p', { class: 'muted' }, r.ready ? 'Ready.' : 'Not ready.');
  return checks.map(([name, c]) => h('div', { class: 'card svc ' + (c.ok ? 'up' : 'down'), dataset: { service: name } },
    h('div', { class: 'card-label' }, name),
    h('div', { class: 'card-value' }, h('span', { class: 'dot' }), c.ok ? 'ready' : 'down'),
    c.error && h('div', { class: 'card-note' }, c.error)));
}

/** A small line graph of one or more series (nulls are gaps). */
function graph(title, series, current, cls) {
  const W = 260, H = 56;
  const all = series.flat().filter((v) => v != null);
  const max = Math.max(1e-9, ...all);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'spark ' + cls, role: 'img', 'aria-label': title });
  series.forEach((vals, si) => {
    let d = '';
    let pen = false;
    vals.forEach((v, i) => {
      if (v == null) { pen = false; return; }
      const x = (i / (POINTS - 1)) * W;
      const y = H - 3 - (v / max) * (H - 6);
      d += (pen ? 'L' : 'M') + x.toFixed(1) + ' ' + y.toFixed(1);
      pen = true;
    });
    if (d) svg.append(s('path', { d, class: 'spark-line s' + si }));
  });
  return h('div', { class: 'graph' }, h('div', { class: 'graph-head' }, h('span', null, title), h('strong', null, current)), svg,
    all.length ? null : h('div', { class: 'muted small' }, 'collecting…'));
}

function infoView(i) {
  const row = (k, v) => h('tr', null, h('th', null, k), h('td', null, v));
  return h('div', { class: 'two-col' },
    h('table', { class: 'tbl kv' }, h('tbody', null,
      row('Version', i.version), row('Runs as', i.mode), row('Services', (i.services ?? []).join(', ')),
      row('Auth', i.auth ? 'bearer tokens' : 'off (loopback only)'),
      i.caller && row('Signed in as', i.caller.name + ' (' + i.caller.role + ')'),
      row('Console build', i.console))),
    h('details', { class: 'config' }, h('summary', null, 'Configuration (secrets hidden)'),
      h('pre', { class: 'mono', 'data-testid': 'config' }, JSON.stringify(i.config, null, 2))));
}
