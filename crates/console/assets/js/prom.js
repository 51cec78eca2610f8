// Prometheus text exposition → samples, and the numbers the Status page
// draws from two scrapes: request rate, error rate and latency.

/** [{name, labels, value}] from exposition text. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    const re = /([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g;
    let l;
    while ((l = re.exec(m[3] ?? '')) !== null) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

const OPS = /^\/(metrics|ready|health)$|^\/ui(\/|$)/;

/** Whether a route is the console's own traffic (its files and polling). */
export function isOpsRoute(route) { return OPS.test(route ?? ''); }

/**
 * Totals over the API routes: requests, errors (5xx and 4xx apart), the
 * latency histogram (le → cumulative count), and per-route counts.
 */
export function summarize(samples, { includeOps = false } = {}) {
  const t = { requests: 0, e4: 0, e5: 0, sum: 0, count: 0, buckets: new Map(), routes: new Map() };
  for (const s of samples) {
    const route = s.labels.route;
    if (!includeOps && isOpsRoute(route)) continue;
    if (s.name === 'lakehouse_http_requests_total') {
      t.requests += s.value;
      const st = Number(s.labels.status);
      if (st >= 500) t.e5 += s.value; else if (st >= 400) t.e4 += s.value;
      const key = (s.labels.service ? s.labels.service + ' ' : '') + s.labels.method + ' ' + route;
      const r = t.routes.get(key) ?? { key, requests: 0, errors: 0, sum: 0 };
      r.requests += s.value;
      if (st >= 400) r.errors += s.value;
      t.routes.set(key, r);
    } else if (s.name === 'lakehouse_http_request_duration_seconds_bucket') {
      const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
      t.buckets.set(le, (t.buckets.get(le) ?? 0) + s.value);
    } else if (s.name === 'lakehouse_http_request_duration_seconds_sum') {
      t.sum += s.value;
      const key = (s.labels.service ? s.labels.service + ' ' : '') + s.labels.method + ' ' + route;
      const r = t.routes.get(key);
      if (r) r.sum += s.value;
    } else if (s.name === 'lakehouse_http_request_duration_seconds_count') {
      t.count += s.value;
    }
  }
  return t;
}

/** The q-quantile (seconds) of a cumulative histogram, interpolated in its bucket. */
export function quantile(buckets, q) {
  const les = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) ?? (les.length ? buckets.get(les[les.length - 1]) : 0);
  if (!total) return null;
  const rank = q * total;
  let prevLe = 0, prevCount = 0;
  for (const le of les) {
    const c = buckets.get(le);
    if (c >= rank) {
      if (le === Infinity) return prevLe;
      const inBucket = c - prevCount;
      return prevLe + (le - prevLe) * (inBucket ? (rank - prevCount) / inBucket : 1);
    }
    prevLe = le; prevCount = c;
  }
  return prevLe;
}

/** What happened between two summaries `dt` seconds apart. */
export function rates(prev, cur, dt) {
  const d = (a, b) => Math.max(0, b - a);
  const buckets = new Map();
  for (const [le, c] of cur.buckets) buckets.set(le, d(prev.buckets.get(le) ?? 0, c));
  const n = d(prev.count, cur.count);
  return {
    rps: d(prev.requests, cur.requests) / dt,
    errors: (d(prev.e4, cur.e4) + d(prev.e5, cur.e5)) / dt,
    e5: d(prev.e5, cur.e5) / dt,
    p50: n ? quantile(buckets, 0.5) : null,
    p95: n ? quantile(buckets, 0.95) : null,
    mean: n ? d(prev.sum, cur.sum) / n : null,
  };
}
