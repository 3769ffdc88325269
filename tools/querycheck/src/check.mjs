// Syntax checks with the grammars Grafana's own query editors use, plus dashboard JSON schema
// validation. Syntax only: semantics (does a metric exist, is a function applied to the right
// type) are proved elsewhere, by promtool and by a real Prometheus in the tests.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parser as logqlParser } from '@grafana/lezer-logql';
import { parser as traceqlParser } from '@grafana/lezer-traceql';
import { parser as promqlParser } from '@prometheus-io/lezer-promql';
import Ajv from 'ajv';

const PARSERS = {
  promql: promqlParser,
  logql: logqlParser,
  traceql: traceqlParser,
};

export const LANGUAGES = Object.freeze(Object.keys(PARSERS));

/**
 * Parse `expr` as `lang` and return a list of syntax errors (empty when it parses).
 * lezer parsers never throw on bad input: they recover and mark the bad spans with error
 * nodes, so the tree has to be walked.
 */
export function checkQuery(lang, expr) {
  const parser = PARSERS[lang];
  if (!parser) {
    return [{ from: 0, to: 0, message: `unknown query language ${JSON.stringify(lang)}; expected one of ${LANGUAGES.join(', ')}` }];
  }
  if (typeof expr !== 'string' || expr.trim() === '') {
    return [{ from: 0, to: 0, message: 'empty query' }];
  }
  const errors = [];
  parser.parse(expr).iterate({
    enter(node) {
      if (node.type.isError) {
        const near = expr.slice(Math.max(0, node.from - 10), node.to + 10);
        const at = node.from === node.to ? `at offset ${node.from}` : `at offsets ${node.from}-${node.to}`;
        errors.push({ from: node.from, to: node.to, message: `${lang} syntax error ${at} near ${JSON.stringify(near)}` });
      }
    },
  });
  return errors;
}

let validateDashboard;

/** Validate a dashboard object against the committed schema generated from @grafana/schema. */
export function checkDashboard(doc) {
  if (!validateDashboard) {
    const here = dirname(fileURLToPath(import.meta.url));
    const schema = JSON.parse(readFileSync(join(here, '..', 'schema', 'dashboard.schema.json'), 'utf8'));
    const ajv = new Ajv({ allErrors: true, strict: false });
    validateDashboard = ajv.compile(schema);
  }
  if (validateDashboard(doc)) {
    return [];
  }
  // Shallow problems first (a wrong top-level type matters more than the many branch errors
  // an anyOf of panel shapes produces), each message once.
  const seen = new Set();
  return validateDashboard.errors
    .map((e) => ({
      path: e.instancePath || '/',
      message: `${e.instancePath || '/'} ${e.message}${e.params && e.params.allowedValues ? ` (${e.params.allowedValues.join(', ')})` : ''}`,
    }))
    .sort((a, b) => a.path.split('/').length - b.path.split('/').length)
    .filter((e) => !seen.has(e.message) && seen.add(e.message));
}

/**
 * Names a query refers to, read from the syntax tree rather than by regex:
 * promql -> metrics (vector selector names, including {__name__="..."});
 * logql -> streamLabels (stream selector matchers) and filterLabels (label filters that run
 * before any parser stage, so they can only be structured metadata or index labels).
 */
export function inspectQuery(lang, expr) {
  const facts = { metrics: [], streamLabels: [], filterLabels: [] };
  const parser = PARSERS[lang];
  if (!parser || typeof expr !== 'string') return facts;
  const text = (node) => expr.slice(node.from, node.to);
  const tree = parser.parse(expr);
  if (lang === 'promql') {
    tree.iterate({
      enter(node) {
        if (node.name === 'Identifier' && node.node.parent?.name === 'VectorSelector') {
          facts.metrics.push(text(node));
        }
        if (node.name === 'UnquotedLabelMatcher' && node.node.getChild('LabelName') && text(node.node.getChild('LabelName')) === '__name__') {
          const value = node.node.getChild('StringLiteral');
          if (value) facts.metrics.push(text(value).slice(1, -1));
        }
      },
    });
  } else if (lang === 'logql') {
    let parserSeen = false;
    tree.iterate({
      enter(node) {
        if (node.name === 'LabelParser' || node.name === 'JsonExpressionParser' || node.name === 'LogfmtParser' || node.name === 'LogfmtExpressionParser') {
          parserSeen = true;
        }
        if (node.name !== 'Identifier' || node.node.parent?.name !== 'Matcher') return;
        const owner = node.node.parent.parent;
        if (owner?.name === 'Matchers') facts.streamLabels.push(text(node));
        else if (owner?.name === 'LabelFilter' && !parserSeen) facts.filterLabels.push(text(node));
      },
    });
  }
  for (const key of Object.keys(facts)) facts[key] = [...new Set(facts[key])];
  return facts;
}

/**
 * Check a batch: {queries: [{id, lang, expr}], dashboards: [{id, doc}]}.
 * Returns {queries: [{id, errors, metrics, streamLabels, filterLabels}], dashboards: [{id, errors}]}
 * in input order.
 */
export function checkBatch(batch) {
  const queries = (batch.queries ?? []).map((q) => ({ id: q.id, errors: checkQuery(q.lang, q.expr), ...inspectQuery(q.lang, q.expr) }));
  const dashboards = (batch.dashboards ?? []).map((d) => ({ id: d.id, errors: checkDashboard(d.doc) }));
  return { queries, dashboards };
}
