// EXPLAIN output, shown as indented plan trees instead of a two-column table.

import { h } from './dom.js';

/** Whether a result is an EXPLAIN's (plan_type, plan). */
export function isPlan(columns) {
  return columns.length === 2 && columns[0] === 'plan_type' && columns[1] === 'plan';
}

/** One operator line: the operator name stands out, its details follow. */
function planLine(line) {
  const m = /^(\s*)([A-Za-z][\w]*)(:?)(.*)$/.exec(line);
  if (!m) return h('div', { class: 'plan-line' }, line);
  const [, indent, op, colon, rest] = m;
  const metrics = /(metrics=\[.*\])/.exec(rest);
  const before = metrics ? rest.slice(0, metrics.index) : rest;
  return h('div', { class: 'plan-line' }, indent, h('span', { class: 'plan-op' }, op), colon,
    h('span', { class: 'plan-args' }, before),
    metrics && h('span', { class: 'plan-metrics' }, metrics[1]));
}

/** rows: [[plan_type, plan], …]. */
export function renderPlan(rows) {
  return h('div', { class: 'plan', 'data-testid': 'plan' }, rows.map(([type, plan]) =>
    h('section', { class: 'plan-part' },
      h('h3', null, String(type).replaceAll('_', ' ')),
      h('div', { class: 'plan-tree' }, String(plan ?? '').split('\n').map(planLine)))));
}
