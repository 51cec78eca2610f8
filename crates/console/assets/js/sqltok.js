// A small SQL tokenizer for highlighting, and where an error points.

const KEYWORDS = new Set(`select from where group by order having limit offset as and or not null is in
like ilike between case when then else end join inner left right full outer cross on using union all
distinct with recursive values explain analyze verbose describe asc desc nulls first last true false cast
try_cast interval exists any some over partition rows range unbounded preceding following current row
window filter within lateral natural insert into update delete set create table view drop alter
copy external show except intersect date timestamp time array struct map qualify pivot unpivot
escape collate similar to at zone extract`.split(/\s+/));

/**
 * Tokens of `text`, each {type, text, start}; the types are
 * ws, comment, string, ident (quoted), number, keyword, func, name, op.
 * Every character is in exactly one token.
 */
export function tokenize(text) {
  const out = [];
  let i = 0;
  const n = text.length;
  const push = (type, end) => { out.push({ type, text: text.slice(i, end), start: i }); i = end; };
  while (i < n) {
    const c = text[i];
    const rest = text.startsWith.bind(text);
    if (/\s/.test(c)) {
      let j = i + 1;
      while (j < n && /\s/.test(text[j])) j++;
      push('ws', j);
    } else if (rest('--', i)) {
      const j = text.indexOf('\n', i);
      push('comment', j < 0 ? n : j);
    } else if (rest('/*', i)) {
      const j = text.indexOf('*/', i + 2);
      push('comment', j < 0 ? n : j + 2);
    } else if (c === "'" || c === '"') {
      push(c === "'" ? 'string' : 'ident', quotedEnd(text, i, c));
    } else if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(text[i + 1] ?? ''))) {
      const m = /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(text.slice(i, i + 64));
      push('number', i + m[0].length);
    } else if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_$]/.test(text[j])) j++;
      const word = text.slice(i, j);
      let k = j;
      while (k < n && text[k] === ' ') k++;
      const type = KEYWORDS.has(word.toLowerCase()) ? 'keyword' : text[k] === '(' ? 'func' : 'name';
      push(type, j);
    } else {
      push('op', i + 1);
    }
  }
  return out;
}

/** End of a quoted token starting at `i` (a doubled quote is an escape). */
function quotedEnd(text, i, q) {
  let j = i + 1;
  for (;;) {
    const k = text.indexOf(q, j);
    if (k < 0) return text.length;
    if (text[k + 1] === q) { j = k + 2; continue; }
    return k + 1;
  }
}

/**
 * The line and column (1-based) an error points at: from the error's own
 * `line`/`column` fields, else from "line L, column C" in its message
 * (DataFusion's parser says "at Line: 1, Column: 8").
 */
export function errorPosition(err) {
  const d = err?.details ?? {};
  if (Number.isInteger(d.line) && Number.isInteger(d.column)) return { line: d.line, column: d.column };
  const m = /line:?\s*(\d+)\s*,\s*column:?\s*(\d+)/i.exec(String(err?.message ?? ''));
  return m ? { line: Number(m[1]), column: Number(m[2]) } : null;
}

/** The character offset of a 1-based line and column, clamped to the text. */
export function offsetOf(text, line, column) {
  let off = 0;
  for (let l = 1; l < line; l++) {
    const nl = text.indexOf('\n', off);
    if (nl < 0) return text.length;
    off = nl + 1;
  }
  const eol = text.indexOf('\n', off);
  const lineEnd = eol < 0 ? text.length : eol;
  return Math.min(off + Math.max(0, column - 1), lineEnd);
}

/** The statement's first keyword, comments skipped (`EXPLAIN`, `SELECT`, …). */
export function leadingKeyword(sql) {
  const t = tokenize(sql).find((x) => x.type !== 'ws' && x.type !== 'comment');
  return t ? t.text.toUpperCase() : '';
}
