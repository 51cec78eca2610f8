// The SQL editor: a textarea over a highlighted copy of its text, with line
// numbers and an error marker at a line and column.

import { h, put } from './dom.js';
import { tokenize, offsetOf } from './sqltok.js';

export class SqlEditor {
  constructor({ value = '', onRun, onChange } = {}) {
    this.onRun = onRun;
    this.onChange = onChange;
    this.error = null;
    this.hl = h('pre', { class: 'ed-hl', 'aria-hidden': 'true' });
    this.gutter = h('div', { class: 'ed-gutter', 'aria-hidden': 'true' });
    this.input = h('textarea', {
      class: 'ed-input', wrap: 'off', spellcheck: 'false', autocapitalize: 'off',
      autocomplete: 'off', 'aria-label': 'SQL', 'data-testid': 'sql-input',
    });
    this.input.value = value;
    this.el = h('div', { class: 'editor' }, this.gutter, h('div', { class: 'ed-code' }, this.hl, this.input));
    this.input.addEventListener('input', () => { this.error = null; this.render(); this.onChange?.(this.value); });
    this.input.addEventListener('scroll', () => this.syncScroll());
    this.input.addEventListener('keydown', (e) => this.key(e));
    this.render();
  }

  get value() { return this.input.value; }
  set value(v) { this.input.value = v; this.error = null; this.render(); }
  focus() { this.input.focus(); }

  key(e) {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      this.onRun?.();
    } else if (e.key === 'Tab' && !e.shiftKey && !e.ctrlKey && !e.altKey) {
      e.preventDefault();
      this.input.setRangeText('  ', this.input.selectionStart, this.input.selectionEnd, 'end');
      this.input.dispatchEvent(new Event('input'));
    }
  }

  /** Underlines what is at `line`:`column` (1-based) and moves the caret there. */
  markError(line, column, message) {
    const offset = offsetOf(this.value, line, column);
    this.error = { line, column, offset, message };
    this.render();
    this.input.focus();
    this.input.setSelectionRange(offset, offset);
    // Bring the marked line into view.
    const lh = parseFloat(getComputedStyle(this.input).lineHeight) || 20;
    const top = (line - 1) * lh;
    if (top < this.input.scrollTop || top > this.input.scrollTop + this.input.clientHeight - lh) {
      this.input.scrollTop = Math.max(0, top - lh * 2);
    }
    this.syncScroll();
  }

  clearError() { if (this.error) { this.error = null; this.render(); } }

  render() {
    const text = this.value;
    const tokens = tokenize(text);
    const err = this.error;
    let marked = false;
    const spans = tokens.map((t) => {
      const hit = err && !marked && t.type !== 'ws' && err.offset < t.start + t.text.length && err.offset >= t.start - 0;
      if (hit) marked = true;
      return h('span', { class: 't-' + t.type + (hit ? ' err-token' : '') }, t.text);
    });
    if (err && !marked) {
      // The error is at whitespace or the end: a marker where it points.
      const at = spans.findIndex((_, i) => tokens[i].start >= err.offset && tokens[i].type !== 'ws');
      const caret = h('span', { class: 'err-token err-caret' }, ' ');
      if (at < 0) spans.push(caret); else spans.splice(at, 0, caret);
    }
    // A trailing newline needs a character after it to take up a line.
    put(this.hl, spans, ' ');
    const lines = text.split('\n').length;
    const nums = [];
    for (let i = 1; i <= lines; i++) {
      const bad = err && err.line === i;
      nums.push(h('div', { class: bad ? 'err-line' : null, title: bad ? err.message : null }, String(i)));
    }
    put(this.gutter, nums);
    this.syncScroll();
  }

  syncScroll() {
    this.hl.scrollTop = this.input.scrollTop;
    this.hl.scrollLeft = this.input.scrollLeft;
    this.gutter.scrollTop = this.input.scrollTop;
  }
}
