// Starts the real service as a child process, exactly as `npm start` does, on a free port.

import { spawn } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

import { waitFor } from './receivers.mjs';

const _ROOT = fileURLToPath(new URL('../..', import.meta.url));

// Defaults that keep tests quick: short export delays, no probing unless a test asks for it.
const _FAST = {
  OTEL_BSP_SCHEDULE_DELAY: '100',
  OTEL_BLRP_SCHEDULE_DELAY: '100',
  OTEL_EXPORTER_OTLP_TIMEOUT: '2000',
  SENTRY_TIMEOUT_MS: '2000',
  MONITOR_TARGETS: 'none',
  LOG_LEVEL: 'debug',
};

/**
 * @param {Record<string, string>} env added to a clean environment (PORT=0: the OS picks)
 * @returns {Promise<Service>}
 */
export async function startService(env = {}) {
  const service = new Service({ PATH: process.env.PATH, ..._FAST, PORT: '0', ...env });
  await service.ready();
  return service;
}

export class Service {
  constructor(env) {
    this.logs = [];
    this.stderr = '';
    this.exit = new Promise((resolve) => {
      this.child = spawn(process.execPath, ['--import', './src/instrument.mjs', 'src/server.mjs'], {
        cwd: _ROOT,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      this.child.on('exit', (code, signal) => resolve({ code, signal }));
    });
    let pending = '';
    this.child.stdout.setEncoding('utf8').on('data', (chunk) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines.filter(Boolean)) {
        try {
          this.logs.push(JSON.parse(line));
        } catch {
          this.logs.push({ unparsed: line });
        }
      }
    });
    this.child.stderr.setEncoding('utf8').on('data', (chunk) => {
      this.stderr += chunk;
    });
  }

  async ready() {
    const exited = this.exit.then(({ code }) => {
      throw new Error(`service exited (${code}) before listening: ${this.stderr}`);
    });
    const listening = waitFor(() => this.logs.find((line) => line.message === 'listening'), {
      timeout: 20_000,
      message: 'the service to listen',
    });
    const line = await Promise.race([listening, exited]);
    this.port = line.port;
    this.url = `http://127.0.0.1:${this.port}`;
  }

  /** GET (or another method) on the service; resolves with status, headers, text and json. */
  request(path, { method = 'GET', headers = {}, host = '127.0.0.1' } = {}) {
    return httpRequest({ host, port: this.port, path, method, headers });
  }

  /** Parsed samples of /metrics as { name, labels, value, exemplar }. */
  async metrics({ openMetrics = true } = {}) {
    const response = await this.request('/metrics', {
      headers: openMetrics ? { accept: 'application/openmetrics-text; version=1.0.0' } : {},
    });
    return parseMetrics(response.text);
  }

  async stop(signal = 'SIGTERM') {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill(signal);
    }
    return this.exit;
  }
}

export function httpRequest({ host, port, path, method = 'GET', headers = {}, timeout = 15_000 }) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.request({ host, port, path, method, headers, timeout }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        text += chunk;
      });
      res.on('end', () => {
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json, ms: performance.now() - started });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`request to ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** A small parser of the Prometheus / OpenMetrics text formats (samples and exemplars). */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) {
      continue;
    }
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*?)\})? (\S+)(?: \S+)?(?: # \{(.*?)\} (\S+)(?: (\S+))?)?$/.exec(line);
    if (!match) {
      throw new Error(`unparseable metrics line: ${line}`);
    }
    samples.push({
      name: match[1],
      labels: _labels(match[2]),
      value: Number(match[3]),
      exemplar: match[4] === undefined ? undefined : { labels: _labels(match[4]), value: Number(match[5]) },
    });
  }
  return samples;
}

function _labels(text) {
  const labels = {};
  if (text) {
    for (const [, key, value] of text.matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value.replace(/\\"/g, '"').replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
    }
  }
  return labels;
}

/** The samples of `name` whose labels include `labels`. */
export function samples(all, name, labels = {}) {
  return all.filter(
    (sample) => sample.name === name && Object.entries(labels).every(([k, v]) => sample.labels[k] === v),
  );
}
