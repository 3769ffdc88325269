// `make bench`'s stock variants of the Node service: each hand-written piece of examples/api
// replaced by the libraries' documented way, to measure what the piece saves.
//
//   cd examples/api
//   BENCH_STOCK=request-telemetry node --import ../../bench/stock-node/register.mjs \
//     --import ./src/instrument.mjs src/server.mjs
//
// BENCH_STOCK names one or more pieces (comma-separated keys of pieces.json). For each, a loader
// hook serves the source of the stock module(s) in this directory at the URL of the service module
// it replaces, so the stock code's relative imports and bare specifiers resolve exactly as the
// service's own do (from examples/api/src and its node_modules).

import { readFileSync } from 'node:fs';
import { register } from 'node:module';

const PIECES = JSON.parse(readFileSync(new URL('./pieces.json', import.meta.url), 'utf8'));
const SERVICE = new URL('../../examples/api/', import.meta.url);

const keys = (process.env.BENCH_STOCK ?? '')
  .split(',')
  .map((key) => key.trim())
  .filter(Boolean);
const replacements = {};
for (const key of keys) {
  const piece = PIECES.find((one) => one.key === key);
  if (!piece) {
    const known = PIECES.map((one) => one.key).join(', ');
    throw new Error(`BENCH_STOCK=${process.env.BENCH_STOCK}: no piece '${key}' in bench/stock-node/pieces.json (${known})`);
  }
  for (const [original, stock] of Object.entries(piece.replaces)) {
    const url = new URL(original, SERVICE).href;
    if (replacements[url]) {
      throw new Error(`BENCH_STOCK=${process.env.BENCH_STOCK}: two pieces replace ${original}`);
    }
    replacements[url] = new URL(stock, import.meta.url).href;
  }
}

if (keys.length > 0) {
  register('./stock-hooks.mjs', import.meta.url, { data: { replacements } });
}
