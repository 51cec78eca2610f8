// Reading a streamed NDJSON result row by row as it arrives.

/** Integers beyond 2^53 come back exact (as BigInt), not rounded. */
function revive(_key, value, context) {
  if (typeof value === 'number' && !Number.isSafeInteger(value) && Number.isInteger(value)
      && context && /^-?\d+$/.test(context.source)) {
    return BigInt(context.source);
  }
  return value;
}

const LONG_DIGITS = /\d{16}/;

export function parseLine(line) {
  return LONG_DIGITS.test(line) ? JSON.parse(line, revive) : JSON.parse(line);
}

/**
 * The keys of a JSON object's text in the order written (Object.keys puts
 * integer-like keys first, which would reorder columns named "1", "2").
 */
export function keysInOrder(line) {
  const keys = [];
  let depth = 0;
  let i = 0;
  let expectKey = false;
  while (i < line.length) {
    const c = line[i];
    if (c === '"') {
      let j = i + 1;
      while (j < line.length && line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(line.slice(i, j + 1)));
      expectKey = false;
      i = j + 1;
      continue;
    }
    if (c === '{' || c === '[') { depth++; expectKey = depth === 1 && c === '{'; }
    else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1) expectKey = true;
    i++;
  }
  return keys;
}

/**
 * Reads `response` (NDJSON) to its end. `onColumns(names)` is called once
 * with the first row's keys, `onRows(rows)` with arrays in that order, per
 * received chunk. Resolves to the number of rows; rejects if the stream
 * breaks (a server error after the first byte cuts the response short) or
 * ends in the middle of a line — a partial result is never passed off as
 * whole.
 */
export async function readNdjson(response, { onColumns, onRows }) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let columns = null;
  let carry = '';
  let count = 0;
  // Parsing gives the page back every ~12 ms, so a large chunk never
  // freezes it (scrolling, Cancel and tab switches stay live).
  const take = async (text) => {
    let out = [];
    let started = performance.now();
    for (const line of text.split('\n')) {
      if (!line) continue;
      if (!columns) { columns = keysInOrder(line); onColumns(columns); }
      const obj = parseLine(line);
      out.push(columns.map((c) => obj[c]));
      if ((out.length & 255) === 0 && performance.now() - started > 12) {
        count += out.length;
        onRows(out);
        out = [];
        await new Promise((r) => setTimeout(r, 0));
        started = performance.now();
      }
    }
    count += out.length;
    if (out.length) onRows(out);
  };
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    carry += decoder.decode(value, { stream: true });
    const nl = carry.lastIndexOf('\n');
    if (nl < 0) continue;
    const text = carry.slice(0, nl);
    carry = carry.slice(nl + 1);
    await take(text);
  }
  carry += decoder.decode();
  if (carry.trim()) {
    throw new Error('the result ended in the middle of a row after ' + count + ' rows; it is incomplete');
  }
  if (!columns) onColumns([]);
  return count;
}
