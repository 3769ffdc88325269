import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkDashboard, checkQuery } from '../src/check.mjs';

const here = dirname(fileURLToPath(import.meta.url));

test('valid PromQL, LogQL and TraceQL parse without errors', () => {
  assert.deepEqual(checkQuery('promql', 'histogram_quantile(0.95, sum by (le, route) (rate(http_server_request_duration_seconds_bucket{job="api"}[5m])))'), []);
  assert.deepEqual(checkQuery('logql', 'sum by (service_name, detected_level) (count_over_time({service_name=~"api|fastapi-app"} | trace_id="0af7651916cd43dd8448eb211c80319c" [5m]))'), []);
  assert.deepEqual(checkQuery('traceql', '{ status = error && resource.service.name = "api" } | select(span.http.route)'), []);
});

test('broken queries report an error with its position', () => {
  const [err] = checkQuery('promql', 'sum(rate(http_server_requests_total[5m])) by (');
  assert.match(err.message, /promql syntax error at offset/);
  assert.ok(checkQuery('logql', '{service_name="api" |= "x"').length > 0, 'unclosed stream selector');
  assert.ok(checkQuery('traceql', '{ status = = error }').length > 0, 'doubled operator');
  assert.ok(checkQuery('promql', '   ').length > 0, 'empty query');
  assert.match(checkQuery('sql', 'select 1')[0].message, /unknown query language/);
});

test('dashboard schema accepts a minimal dashboard and rejects a bad panel', () => {
  assert.deepEqual(checkDashboard({ schemaVersion: 41, title: 'ok', panels: [] }), []);
  const errors = checkDashboard({ schemaVersion: '41', panels: [{ type: 'timeseries', gridPos: { h: 8 } }] });
  const messages = errors.map((e) => e.message).join('\n');
  assert.match(messages, /\/schemaVersion must be number/);
  assert.match(messages, /gridPos must have required property 'w'/);
});

test('the committed schema is the one generated from the pinned @grafana/schema', () => {
  const pkg = JSON.parse(readFileSync(join(here, '..', 'package.json'), 'utf8'));
  const schema = JSON.parse(readFileSync(join(here, '..', 'schema', 'dashboard.schema.json'), 'utf8'));
  assert.equal(schema['x-grafana-schema-version'], pkg.devDependencies['@grafana/schema']);
});

test('cli: exit 1 and JSON findings for a bad batch, exit 2 for non-JSON input', () => {
  const cli = join(here, '..', 'src', 'cli.mjs');
  const bad = spawnSync(process.execPath, [cli], {
    input: JSON.stringify({ queries: [{ id: 'q1', lang: 'logql', expr: '{job=' }] }),
  });
  assert.equal(bad.status, 1);
  const out = JSON.parse(bad.stdout.toString());
  assert.equal(out.queries[0].id, 'q1');
  assert.ok(out.queries[0].errors.length > 0);
  const good = spawnSync(process.execPath, [cli], { input: JSON.stringify({ queries: [{ id: 'q', lang: 'promql', expr: 'up' }] }) });
  assert.equal(good.status, 0);
  const garbage = spawnSync(process.execPath, [cli], { input: 'not json' });
  assert.equal(garbage.status, 2);
  assert.match(garbage.stderr.toString(), /stdin is not JSON/);
});

test('inspectQuery reads metric names and Loki labels from the syntax tree', async () => {
  const { inspectQuery } = await import('../src/check.mjs');
  const prom = inspectQuery('promql', 'sum(rate(http_server_requests_total{status_class="5xx"}[5m])) / sum(rate({__name__="http_server_requests_total"}[5m])) + on() group_left up');
  assert.deepEqual(prom.metrics.sort(), ['http_server_requests_total', 'up']);
  const logs = inspectQuery('logql', 'sum by (detected_level) (count_over_time({service_name="api", env="x"} | trace_id="a" | json | level="e" [5m]))');
  assert.deepEqual(logs.streamLabels, ['service_name', 'env']);
  assert.deepEqual(logs.filterLabels, ['trace_id'], 'labels after a parser stage are extracted, not sent');
});
