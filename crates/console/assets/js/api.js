// Calls to the lakehouse HTTP API, with the signed-in token.
//
// The token lives in sessionStorage (gone when the tab closes) and goes
// out only in the Authorization header of calls to this origin.

import { h } from './dom.js';

const TOKEN_KEY = 'lakehouse.token';

/** The API root: the console is served at `<root>/ui/`. */
export const ROOT = new URL('../', document.baseURI);

export function url(path, params) {
  const u = new URL(path.replace(/^\//, ''), ROOT);
  if (params) for (const [k, v] of Object.entries(params)) if (v != null && v !== '') u.searchParams.set(k, v);
  return u;
}

export const session = {
  token() { return sessionStorage.getItem(TOKEN_KEY); },
  set(t) { sessionStorage.setItem(TOKEN_KEY, t); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); },
};

export function authHeaders(extra = {}) {
  const t = session.token();
  return t ? { ...extra, Authorization: 'Bearer ' + t } : { ...extra };
}

/** An error answer: status, the stable `code`, the message and any details. */
export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

let onUnauthorized = () => {};
/** Called on every 401 (the app shows the login form). */
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

/** The error a non-2xx response carries (`{"error":{code,message,…}}`). */
export async function errorOf(status, text) {
  let body = null;
  try { body = JSON.parse(text); } catch { /* not JSON */ }
  const e = body?.error;
  if (e && typeof e.code === 'string') {
    const { code, message, ...details } = e;
    return new ApiError(status, code, String(message ?? ''), details);
  }
  const snippet = String(text ?? '').slice(0, 300).trim();
  return new ApiError(status, 'http_' + status, snippet || 'the server answered ' + status);
}

/** fetch with the token; throws ApiError for an error status (but those in `accept`). */
export async function call(path, { method = 'GET', json, body, params, headers = {}, signal, accept = [] } = {}) {
  const init = { method, headers: authHeaders(headers), signal, cache: 'no-store' };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers['Content-Type'] = 'application/json';
  } else if (body !== undefined) {
    init.body = body;
  }
  let resp;
  try {
    resp = await fetch(url(path, params), init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'the server cannot be reached (' + e.message + ')');
  }
  if (!resp.ok && !accept.includes(resp.status)) {
    const err = await errorOf(resp.status, await resp.text());
    if (resp.status === 401) onUnauthorized(err);
    throw err;
  }
  return resp;
}

export async function getJson(path, opts) {
  return (await call(path, opts)).json();
}

export async function postJson(path, json, opts = {}) {
  return (await call(path, { ...opts, method: 'POST', json })).json();
}

const TITLES = {
  unauthorized: 'Sign-in needed',
  forbidden: 'Not allowed with this token',
  network: 'The server cannot be reached',
  bad_data: 'The file has data that cannot be read',
  empty_input: 'The file is empty',
  invalid_body: 'The upload broke off',
  invalid_option: 'An option is not valid',
  invalid_name: 'The name is not valid',
  schema_mismatch: 'The file’s columns differ from the dataset’s',
  contended: 'Too many writers at once',
  syntax_error: 'SQL syntax error',
  unknown_table: 'Unknown table',
  plan_error: 'The query cannot be planned',
  execution_error: 'The query failed on the data',
  forbidden_statement: 'Only queries can run here',
  not_supported: 'Not supported',
  query_timeout: 'The query took too long',
  memory_limit: 'The query needs too much memory',
  too_many_rows: 'The result is too large',
  invalid_item: 'A vector item is not valid',
  invalid_search: 'The search is not valid',
  invalid_params: 'The index parameters are not valid',
  not_found: 'Not found',
  no_route: 'Not available on this server',
  too_large: 'Too large',
  internal: 'Server error',
  unavailable: 'A service is unavailable',
  upstream_unavailable: 'A service is unavailable',
  upstream_timeout: 'A service did not answer in time',
  bad_gateway: 'A service answered badly',
};

/** A headline in plain words for an error. */
export function titleOf(err) {
  if (!(err instanceof ApiError)) return 'Something went wrong';
  return TITLES[err.code] ?? ('Error ' + (err.status || ''));
}

/** What a 403 needs, in words (the 403 body names the role). */
export function roleHint(err) {
  if (!(err instanceof ApiError) || err.status !== 403) return null;
  const need = err.details?.required_role;
  const have = err.details?.role;
  if (!need) return null;
  return 'This needs the ' + need + ' role' + (have ? '; your token has the ' + have + ' role.' : '.');
}

/** An error shown in a box: headline, role needed, the server's message. */
export function errorBox(err, extra) {
  const hint = roleHint(err);
  const code = err instanceof ApiError ? [err.status ? 'HTTP ' + err.status : null, err.code].filter(Boolean).join(' · ') : null;
  return h('div', { class: 'error-box', role: 'alert' },
    h('strong', { class: 'error-title' }, titleOf(err)),
    hint && h('p', { class: 'error-role' }, hint),
    h('p', { class: 'error-message' }, err?.message || String(err)),
    extra,
    code && h('p', { class: 'error-code' }, code));
}
