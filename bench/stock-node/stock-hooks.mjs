// Module loader hooks (see register.mjs): a replaced service module is served with the source of
// its stock variant, at its own URL.

import { readFile } from 'node:fs/promises';

let replacements = {};

export function initialize(data) {
  replacements = data.replacements;
}

export async function load(url, context, nextLoad) {
  const stock = replacements[url];
  if (stock === undefined) {
    return nextLoad(url, context);
  }
  return { format: 'module', source: await readFile(new URL(stock), 'utf8'), shortCircuit: true };
}
