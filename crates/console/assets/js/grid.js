// A virtualised result table: only the rows in view exist in the DOM, so a
// result of a million rows scrolls like one of ten.

import { h, cellText, fmtInt } from './dom.js';

const ROW_H = 24;
const OVERSCAN = 8;
const CHAR_W = 7.4;

export class Grid {
  constructor() {
    this.columns = [];
    this.rows = [];
    this.widths = [];
    this.head = h('div', { class: 'grid-head', role: 'row' });
    this.body = h('div', { class: 'grid-body', role: 'rowgroup' });
    this.el = h('div', { class: 'grid', role: 'table', tabindex: '0', 'data-testid': 'grid' }, this.head, this.body);
    this.pool = [];
    this.pending = false;
    this.el.addEventListener('scroll', () => this.schedule(), { passive: true });
    new ResizeObserver(() => this.schedule()).observe(this.el);
  }

  /** Starts a new result with these column names. */
  reset(columns) {
    this.columns = columns;
    this.rows = [];
    this.widths = [];
    this.el.scrollTop = 0;
    this.head.replaceChildren();
    for (const r of this.pool) r.remove();
    this.pool = [];
    this.schedule();
  }

  /** Adds rows (arrays in column order). */
  append(rows) {
    for (const r of rows) this.rows.push(r);
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.render(); });
  }

  measure() {
    const sample = this.rows.slice(0, 200);
    this.measuredRows = sample.length;
    const numW = Math.max(4, String(this.rows.length * 10).length) * CHAR_W + 16;
    this.widths = [numW, ...this.columns.map((c, i) => {
      let chars = String(c).length + 2;
      for (const r of sample) chars = Math.max(chars, Math.min(48, cellText(r[i]).length));
      return Math.round(Math.min(380, Math.max(64, chars * CHAR_W + 18)));
    })];
    const total = this.widths.reduce((a, b) => a + b, 0);
    this.body.style.width = total + 'px';
    const cells = [h('div', { class: 'gc gc-num', role: 'columnheader' }, '#'),
      ...this.columns.map((c) => h('div', { class: 'gc', role: 'columnheader', title: c }, c))];
    cells.forEach((c, i) => { c.style.width = this.widths[i] + 'px'; });
    this.head.replaceChildren(...cells);
    this.head.style.width = total + 'px';
  }

  render() {
    if (!this.columns.length) return;
    // Widths come from the header and the first rows; measured again once
    // the first rows arrive, then kept so columns do not jump while streaming.
    if (!this.widths.length || (this.measuredRows === 0 && this.rows.length > 0)) {
      this.measure();
      for (const r of this.pool) r.remove();
      this.pool = [];
    }
    this.body.style.height = this.rows.length * ROW_H + 'px';
    const top = Math.max(0, this.el.scrollTop - this.head.offsetHeight);
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + this.el.clientHeight) / ROW_H) + OVERSCAN);
    const need = Math.max(0, last - first);
    while (this.pool.length < need) this.pool.push(this.makeRow());
    for (let k = 0; k < this.pool.length; k++) {
      const rowEl = this.pool[k];
      const i = first + k;
      if (k >= need) { rowEl.hidden = true; continue; }
      rowEl.hidden = false;
      if (rowEl._index !== i || rowEl._data !== this.rows[i]) this.fill(rowEl, i);
    }
  }

  makeRow() {
    const el = h('div', { class: 'grid-row', role: 'row' });
    this.widths.forEach((w, i) => {
      const c = h('div', { class: i === 0 ? 'gc gc-num' : 'gc', role: 'cell' });
      c.style.width = w + 'px';
      el.append(c);
    });
    this.body.append(el);
    return el;
  }

  fill(el, i) {
    const row = this.rows[i];
    el._index = i;
    el._data = row;
    el.style.transform = 'translateY(' + i * ROW_H + 'px)';
    el.classList.toggle('odd', i % 2 === 1);
    const cells = el.children;
    cells[0].textContent = fmtInt(i + 1);
    for (let c = 0; c < this.columns.length; c++) {
      const v = row[c];
      const cell = cells[c + 1];
      const text = cellText(v);
      cell.textContent = text.length > 500 ? text.slice(0, 500) + '…' : text;
      cell.title = text.length > 40 ? text.slice(0, 2000) : '';
      cell.className = 'gc' + (v === null || v === undefined ? ' null' : typeof v === 'number' || typeof v === 'bigint' ? ' num' : '');
    }
  }
}
