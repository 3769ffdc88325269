// PII scrubbing rules, shared by Sentry events, logs and span attributes.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';

import { createLogger } from '../src/logger.mjs';
import { FILTERED, scrubSentryEvent, scrubStack, scrubText, scrubValue } from '../src/scrub.mjs';

describe('scrubText', () => {
  it('masks emails, also URL-encoded', () => {
    assert.equal(scrubText('mail ada@example.com now'), `mail ${FILTERED} now`);
    assert.equal(scrubText('/x?to=ada%40example.com'), `/x?to=${FILTERED}`);
  });

  it('masks card numbers that pass the Luhn check, keeps other long numbers', () => {
    assert.equal(scrubText('card 4111 1111 1111 1111 ok'), `card ${FILTERED} ok`);
    assert.equal(scrubText('card 4111-1111-1111-1111'), `card ${FILTERED}`);
    assert.equal(scrubText('order 1234567890123'), 'order 1234567890123');
    assert.equal(scrubText('ts 1795327913049'), 'ts 1795327913049');
  });

  it('masks secrets in key=value pairs, bearer tokens and URL credentials', () => {
    assert.equal(scrubText('?password=hunter2&name=ada'), `?password=${FILTERED}&name=ada`);
    assert.equal(scrubText('api_key: abc123'), `api_key: ${FILTERED}`);
    assert.equal(scrubText('Bearer eyJhbGciOi.x.y'), `Bearer ${FILTERED}`);
    assert.doesNotMatch(scrubText('Authorization: Bearer eyJhbGciOi.x.y'), /eyJ/);
    assert.equal(scrubText('http://ada:s3cret@db:5432/x'), `http://${FILTERED}@db:5432/x`);
  });

  it('leaves ordinary text and trace ids alone', () => {
    const text = 'GET /inventory/SB-1001 trace 0af7651916cd43dd8448eb211c80319c';
    assert.equal(scrubText(text), text);
  });
});

describe('scrubValue', () => {
  it('replaces values under sensitive keys whole and recurses', () => {
    assert.deepEqual(
      scrubValue('', { user: { password: 'x', name: 'ada', tokens: ['a'] }, note: 'ada@example.com' }),
      { user: { password: FILTERED, name: 'ada', tokens: FILTERED }, note: FILTERED },
    );
  });
});

describe('scrubSentryEvent', () => {
  it('scrubs request data, messages and user details but keeps module names', () => {
    const event = scrubSentryEvent({
      message: 'failed for ada@example.com',
      request: {
        url: 'http://api/error?token=abc&email=ada%40example.com',
        headers: { authorization: 'Bearer x', cookie: 'sid=1', 'user-agent': 'curl' },
        query_string: 'token=abc',
      },
      user: { id: '7', email: 'ada@example.com', ip_address: '10.0.0.1' },
      modules: { cookie: '0.7.2', 'js-tokens': '4.0.0' },
    });
    assert.equal(event.message, `failed for ${FILTERED}`);
    assert.equal(event.request.url, `http://api/error?token=${FILTERED}&email=${FILTERED}`);
    assert.equal(event.request.headers.authorization, FILTERED);
    assert.equal(event.request.headers.cookie, FILTERED);
    assert.equal(event.request.headers['user-agent'], 'curl');
    assert.deepEqual(event.user, { id: '7' });
    assert.deepEqual(event.modules, { cookie: '0.7.2', 'js-tokens': '4.0.0' });
  });
});

describe('scrubStack', () => {
  it('masks the message, over all its lines, and keeps the frame lines as they are', () => {
    const frames = [
      '    at charge (file:///srv/app/src/pay.mjs:12:9)',
      '    at Layer.handle (/srv/app/node_modules/router/lib/layer.js:152:17)',
    ];
    const stack = [
      'Error: charge 4111 1111 1111 1111 failed',
      'for ada@example.com with token=abc',
      ...frames,
      'Caused by: Error: Bearer abc.def refused',
      '    at retry (file:///srv/app/src/pay.mjs:30:5)',
    ].join('\n');
    const lines = scrubStack(stack).split('\n');
    assert.equal(lines[0], `Error: charge ${FILTERED} failed`);
    assert.equal(lines[1], `for ${FILTERED} with token=${FILTERED}`);
    assert.deepEqual(lines.slice(2, 4), frames);
    assert.equal(lines[4], `Caused by: Error: Bearer ${FILTERED} refused`);
    assert.equal(lines[5], '    at retry (file:///srv/app/src/pay.mjs:30:5)');
  });

  it('is what scrubValue applies to a `stack` field', () => {
    const error = new Error('user ada@example.com');
    const stack = scrubValue('', { stack: error.stack }).stack;
    assert.equal(stack.split('\n')[0], `Error: user ${FILTERED}`);
    assert.deepEqual(stack.split('\n').slice(1), error.stack.split('\n').slice(1));
  });
});

describe('scrubSentryEvent: exceptions', () => {
  it('scrubs exception messages and local variables, and keeps stack frames (code, not data)', () => {
    const frame = {
      filename: '/srv/app/node_modules/cookie/index.js',
      function: 'parseSession',
      context_line: "  const token = header.split('=')[1];",
      pre_context: ['// session=abc is the cookie format'],
      in_app: false,
    };
    const event = scrubSentryEvent({
      exception: {
        values: [
          {
            type: 'Error',
            value: 'login failed for ada@example.com',
            mechanism: { type: 'express', handled: false, data: { password: 'hunter2' } },
            stacktrace: { frames: [frame, { ...frame, in_app: true, vars: { password: 'hunter2', n: 1 } }] },
          },
        ],
      },
    });
    const [value] = event.exception.values;
    assert.equal(value.value, `login failed for ${FILTERED}`);
    assert.equal(value.mechanism.data.password, FILTERED);
    assert.equal(value.stacktrace.frames[0], frame);
    assert.equal(value.stacktrace.frames[1].context_line, frame.context_line);
    assert.deepEqual(value.stacktrace.frames[1].vars, { password: FILTERED, n: 1 });
  });
});

describe('logger', () => {
  it('scrubs fields, nested objects, messages and errors before writing', () => {
    const lines = [];
    const sink = new Writable({
      write(chunk, _encoding, callback) {
        lines.push(JSON.parse(chunk));
        callback();
      },
    });
    const logger = createLogger({ level: 'info', service: 'api', version: 't' }, sink);
    logger.info(
      { password: 'hunter2', req: { headers: { authorization: 'Bearer abc' } }, email: 'a@b.co', card: '4111111111111111' },
      'login by ada@example.com with token=abc',
    );
    logger.error({ err: new Error('charge 4111 1111 1111 1111 failed') }, 'payment');
    const [first, second] = lines;
    assert.equal(first.password, FILTERED);
    assert.equal(first.req.headers.authorization, FILTERED);
    assert.equal(first.email, FILTERED);
    assert.equal(first.card, FILTERED);
    assert.equal(first.message, `login by ${FILTERED} with token=${FILTERED}`);
    assert.equal(first.level, 'info');
    assert.equal(second.err.message, `charge ${FILTERED} failed`);
    assert.doesNotMatch(second.err.stack, /4111/);
    assert.doesNotMatch(JSON.stringify(lines), /hunter2|ada@|4111 1111/);
  });
});
