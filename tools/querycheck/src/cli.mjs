#!/usr/bin/env node
// Reads a JSON batch on stdin ({queries: [{id, lang, expr}], dashboards: [{id, doc}]}) and writes
// the findings as JSON on stdout. Exit 0 when every item is valid, 1 when any is not, 2 when the
// input itself is unusable. Used by `signalbox validate` (src/signalbox/checks/dashboards.py).
import { checkBatch } from './check.mjs';

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

let batch;
try {
  batch = JSON.parse(await readStdin());
} catch (err) {
  process.stderr.write(`querycheck: stdin is not JSON: ${err.message}\n`);
  process.exit(2);
}
if (batch === null || typeof batch !== 'object' || Array.isArray(batch)) {
  process.stderr.write('querycheck: expected a JSON object {queries: [...], dashboards: [...]}\n');
  process.exit(2);
}
const result = checkBatch(batch);
process.stdout.write(`${JSON.stringify(result)}\n`);
const failed = [...result.queries, ...result.dashboards].some((r) => r.errors.length > 0);
process.exit(failed ? 1 : 0);
