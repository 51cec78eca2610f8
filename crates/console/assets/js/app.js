// The console's shell: sign-in, navigation and the page router (#/page/…).

import { h, put } from './dom.js';
import { getJson, session, setUnauthorizedHandler, errorBox, ApiError } from './api.js';
import * as datasets from './datasets.js';
import * as sql from './sql.js';
import * as upload from './upload.js';
import * as vectors from './vectors.js';
import * as status from './status.js';

const PAGES = [
  ['datasets', 'Datasets', datasets],
  ['sql', 'SQL', sql],
  ['upload', 'Upload', upload],
  ['vectors', 'Vectors', vectors],
  ['status', 'Status', status],
];

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
let unmount = null;
let info = null;

/** `#/datasets/web/events` → ['datasets', ['web', 'events']] (segments decoded). */
export function parseRoute(hash) {
  const parts = String(hash).replace(/^#\/?/, '').split('/').filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return [parts[0] || 'datasets', parts.slice(1)];
}

function route() {
  if (!info) return;
  const [name, params] = parseRoute(location.hash);
  const page = PAGES.find(([n]) => n === name);
  if (unmount) { try { unmount(); } catch { /* the old page is going anyway */ } unmount = null; }
  for (const a of nav.children) a.classList.toggle('active', a.dataset.page === name);
  if (!page) {
    put(main, errorBox(new ApiError(404, 'not_found', 'the console has no page ' + JSON.stringify(name))));
    return;
  }
  document.title = page[1] + ' · lakehouse';
  const root = h('div', { class: 'page-root', dataset: { page: name } });
  put(main, root);
  unmount = page[2].mount(root, { params }) ?? null;
}

function renderChrome() {
  put(nav, PAGES.map(([n, label]) => h('a', { href: '#/' + n, dataset: { page: n } }, label)));
  put(who,
    h('span', { class: 'muted', title: 'lakehouse version' }, 'v' + info.version),
    info.caller && h('span', { class: 'badge', 'data-testid': 'caller' }, info.caller.name + ' · ' + info.caller.role),
    info.auth && h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'));
}

function signOut() {
  session.clear();
  info = null;
  loginForm();
}

function loginForm(err) {
  if (unmount) { unmount(); unmount = null; }
  put(nav);
  put(who);
  const token = h('input', { type: 'password', autocomplete: 'current-password', placeholder: 'bearer token', 'aria-label': 'Token', 'data-testid': 'token', required: true });
  const form = h('form', { class: 'login panel', 'data-testid': 'login' },
    h('h1', null, 'Sign in'),
    h('p', { class: 'muted' }, 'This lakehouse needs a token. It is kept in this tab only (sessionStorage) and sent with every request.'),
    token,
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
    err && errorBox(err));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    session.set(token.value.trim());
    await boot();
  });
  put(main, form);
  token.focus();
}

async function boot() {
  try {
    info = await getJson('/ui/api/info');
  } catch (e) {
    info = null;
    if (e instanceof ApiError && e.status === 401) {
      const had = session.token();
      session.clear();
      loginForm(had ? e : null);
    } else {
      put(main, errorBox(e));
    }
    return;
  }
  renderChrome();
  route();
  document.documentElement.dataset.ready = '1';
  performance.mark('console-interactive');
}

setUnauthorizedHandler((err) => {
  // The token stopped working (or the server gained auth): sign in again.
  if (info) { session.clear(); info = null; loginForm(err); }
});
window.addEventListener('hashchange', route);
boot();
