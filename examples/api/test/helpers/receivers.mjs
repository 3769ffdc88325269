// Real HTTP receivers for the service's telemetry, decoding the wire formats it sends:
// OTLP/HTTP JSON (traces and logs) and Sentry envelopes (chunked, possibly gzip-compressed).
// Each can also misbehave like a broken backend: refuse connections, hang, or answer 500.

import http from 'node:http';
import { gunzipSync, inflateSync } from 'node:zlib';

/** @typedef {'ok' | 'hang' | 'fail'} Mode */

class _Receiver {
  constructor() {
    this.mode = 'ok';
    this.requests = [];
    this.openRequests = 0;
    this.maxOpenRequests = 0;
    this._hanging = new Set();
    this._server = http.createServer((req, res) => this._handle(req, res));
    this._server.keepAliveTimeout = 1000;
  }

  /** Listens on a free loopback port, or on `port` (a backend coming back where it was). */
  async start(port = 0) {
    await new Promise((resolve) => this._server.listen(port, '127.0.0.1', resolve));
    this.port = this._server.address().port;
    this.origin = `http://127.0.0.1:${this.port}`;
    return this;
  }

  async close() {
    for (const res of this._hanging) {
      res.destroy();
    }
    this._server.closeAllConnections();
    await new Promise((resolve) => this._server.close(resolve));
  }

  _handle(req, res) {
    const chunks = [];
    let size = 0;
    this.openRequests += 1;
    this.maxOpenRequests = Math.max(this.maxOpenRequests, this.openRequests);
    res.on('close', () => {
      this.openRequests -= 1;
      this._hanging.delete(res);
    });
    req.on('data', (chunk) => {
      size += chunk.length;
      chunks.push(chunk);
    });
    req.on('end', () => {
      const record = {
        method: req.method,
        path: req.url,
        headers: req.headers,
        chunked: req.headers['transfer-encoding'] === 'chunked',
        size,
      };
      if (this.mode === 'hang') {
        // Read the request, never answer: the sender's own timeout must save it.
        this._hanging.add(res);
        this.requests.push(record);
        return;
      }
      if (this.mode === 'fail') {
        this.requests.push(record);
        res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"down"}');
        return;
      }
      try {
        record.body = _decompress(Buffer.concat(chunks), req.headers['content-encoding']);
        this.requests.push(record);
        this._accept(record, res);
      } catch (error) {
        record.error = String(error);
        this.requests.push(record);
        res.writeHead(400, { 'content-type': 'text/plain' }).end(String(error));
      }
    });
  }
}

/** OTLP/HTTP receiver: POST /v1/traces and /v1/logs, JSON encoding. */
export class OtlpReceiver extends _Receiver {
  constructor() {
    super();
    this.spanList = [];
    this.logList = [];
    this.rejected = [];
  }

  get tracesEndpoint() {
    return `${this.origin}/v1/traces`;
  }

  get logsEndpoint() {
    return `${this.origin}/v1/logs`;
  }

  spans() {
    return this.spanList;
  }

  logRecords() {
    return this.logList;
  }

  _accept(record, res) {
    const type = record.headers['content-type'] ?? '';
    if (!type.startsWith('application/json')) {
      this.rejected.push(record);
      res.writeHead(415).end();
      return;
    }
    const payload = JSON.parse(record.body.toString('utf8'));
    if (record.path === '/v1/traces' || record.path.endsWith('/otlp/v1/traces/')) {
      this.spanList.push(...decodeOtlpSpans(payload));
    } else if (record.path === '/v1/logs') {
      this.logList.push(...decodeOtlpLogs(payload));
    } else {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  }
}

/**
 * Sentry receiver: envelopes at POST /api/<project>/envelope/, and OTLP spans at Sentry's
 * /api/<project>/integration/otlp/v1/traces/ endpoint.
 */
export class SentryReceiver extends _Receiver {
  constructor() {
    super();
    this.envelopes = [];
    this.spanList = [];
  }

  get dsn() {
    return `http://public@127.0.0.1:${this.port}/1`;
  }

  /** Payloads of `event` items (errors and messages). */
  events() {
    return this.envelopes.flatMap((envelope) =>
      envelope.items.filter((item) => item.header.type === 'event').map((item) => item.payload),
    );
  }

  spans() {
    return this.spanList;
  }

  _accept(record, res) {
    if (/^\/api\/\d+\/envelope\/?/.test(record.path)) {
      this.envelopes.push(parseEnvelope(record.body));
    } else if (/^\/api\/\d+\/integration\/otlp\/v1\/traces\/?$/.test(record.path)) {
      this.spanList.push(...decodeOtlpSpans(JSON.parse(record.body.toString('utf8'))));
    } else {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  }
}

/** Parses a Sentry envelope: a header line, then items of (header line, payload). */
export function parseEnvelope(buffer) {
  let offset = 0;
  const readLine = () => {
    let end = buffer.indexOf(0x0a, offset);
    if (end === -1) {
      end = buffer.length;
    }
    const line = buffer.subarray(offset, end);
    offset = end + 1;
    return line;
  };
  const header = JSON.parse(readLine().toString('utf8'));
  const items = [];
  while (offset < buffer.length) {
    const line = readLine();
    if (line.length === 0) {
      continue;
    }
    const itemHeader = JSON.parse(line.toString('utf8'));
    let payload;
    if (typeof itemHeader.length === 'number') {
      payload = buffer.subarray(offset, offset + itemHeader.length);
      offset += itemHeader.length + 1;
    } else {
      payload = readLine();
    }
    const text = payload.toString('utf8');
    let parsed = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // attachments and the like stay raw text
    }
    items.push({ header: itemHeader, payload: parsed });
  }
  return { header, items };
}

export function decodeOtlpSpans(payload) {
  const spans = [];
  for (const resourceSpans of payload.resourceSpans ?? []) {
    const resource = attributesToObject(resourceSpans.resource?.attributes);
    for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
      for (const span of scopeSpans.spans ?? []) {
        spans.push({
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId || '',
          name: span.name,
          kind: span.kind,
          status: span.status ?? {},
          attributes: attributesToObject(span.attributes),
          events: (span.events ?? []).map((event) => ({
            name: event.name,
            attributes: attributesToObject(event.attributes),
          })),
          serviceName: resource['service.name'],
          scope: scopeSpans.scope?.name,
        });
      }
    }
  }
  return spans;
}

export function decodeOtlpLogs(payload) {
  const records = [];
  for (const resourceLogs of payload.resourceLogs ?? []) {
    const resource = attributesToObject(resourceLogs.resource?.attributes);
    for (const scopeLogs of resourceLogs.scopeLogs ?? []) {
      for (const record of scopeLogs.logRecords ?? []) {
        records.push({
          traceId: record.traceId ?? '',
          spanId: record.spanId ?? '',
          flags: record.flags ?? 0,
          timeUnixNano: record.timeUnixNano,
          observedTimeUnixNano: record.observedTimeUnixNano,
          severityNumber: record.severityNumber,
          severityText: record.severityText,
          body: anyValue(record.body),
          attributes: attributesToObject(record.attributes),
          serviceName: resource['service.name'],
          scope: scopeLogs.scope,
        });
      }
    }
  }
  return records;
}

function attributesToObject(attributes = []) {
  return Object.fromEntries(attributes.map(({ key, value }) => [key, anyValue(value)]));
}

function anyValue(value) {
  if (value === undefined || value === null) {
    return undefined;
  }
  if ('stringValue' in value) return value.stringValue;
  if ('boolValue' in value) return value.boolValue;
  if ('intValue' in value) return Number(value.intValue);
  if ('doubleValue' in value) return value.doubleValue;
  if ('arrayValue' in value) return (value.arrayValue.values ?? []).map(anyValue);
  if ('kvlistValue' in value) return attributesToObject(value.kvlistValue.values);
  return undefined;
}

function _decompress(body, encoding) {
  if (encoding === 'gzip') return gunzipSync(body);
  if (encoding === 'deflate') return inflateSync(body);
  if (encoding && encoding !== 'identity') throw new Error(`unsupported content-encoding ${encoding}`);
  return body;
}

/** A loopback port with nothing listening on it (connections are refused). */
export async function refusedPort() {
  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Polls `predicate` until it returns a truthy value, or fails with `message`. */
export async function waitFor(predicate, { timeout = 10_000, interval = 50, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await predicate();
    if (value) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${message}`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}
