// State shared between pages, and the query history kept in the browser.

const HISTORY_KEY = 'lakehouse.sql.history';
const DRAFT_KEY = 'lakehouse.sql.draft';
const HISTORY_MAX = 100;

/** A query for the SQL page to open (and run) next time it mounts. */
export const handoff = { sql: null, run: false };

export function openInEditor(sql, run = true) {
  handoff.sql = sql;
  handoff.run = run;
  location.hash = '#/sql';
}

export const draft = {
  get() { return sessionStorage.getItem(DRAFT_KEY); },
  set(sql) { sessionStorage.setItem(DRAFT_KEY, sql); },
};

export const history = {
  list() {
    try {
      const v = JSON.parse(localStorage.getItem(HISTORY_KEY) ?? '[]');
      return Array.isArray(v) ? v.filter((e) => e && typeof e.sql === 'string') : [];
    } catch { return []; }
  },
  add(entry) {
    const list = this.list();
    if (list.length && list[0].sql === entry.sql) list.shift();
    list.unshift({ at: new Date().toISOString(), ...entry });
    try {
      localStorage.setItem(HISTORY_KEY, JSON.stringify(list.slice(0, HISTORY_MAX)));
    } catch { /* storage full or disabled: history is a convenience */ }
  },
  clear() { localStorage.removeItem(HISTORY_KEY); },
};
