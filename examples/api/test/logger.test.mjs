// stdout as the service writes it: buffered, bounded, and never waited for.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { createLogger, stdoutStream } from '../src/logger.mjs';
import { telemetryDropped } from '../src/metrics.mjs';

async function droppedLogs() {
  const { values } = await telemetryDropped.get();
  return values.find((value) => value.labels.signal === 'logs' && value.labels.reason === 'stdout_buffer_full')?.value ?? 0;
}

describe('stdout', () => {
  it('drops and counts lines a stalled reader cannot take, without blocking the caller', async (t) => {
    // A pipe nobody reads: it takes 64 KiB, then every write would wait.
    const dir = mkdtempSync(join(tmpdir(), 'api-stdout-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const fifo = join(dir, 'stdout');
    execFileSync('mkfifo', [fifo]);
    const writeFd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    const stream = stdoutStream({ fd: writeFd, maxLength: 128 * 1024 });
    const logger = createLogger({ level: 'info', service: 'api', version: 't' }, stream);
    const before = await droppedLogs();

    const started = performance.now();
    for (let i = 0; i < 4000; i++) {
      logger.info({ i, note: 'x'.repeat(200) }, 'line');
    }
    const elapsed = performance.now() - started;

    const dropped = (await droppedLogs()) - before;
    // ~1.2 MB of lines against 64 KiB of pipe and 128 KiB of buffer.
    assert.ok(dropped > 2000, `dropped ${dropped}`);
    assert.ok(dropped < 4000, `dropped ${dropped}`);
    assert.ok(elapsed < 2000, `logging took ${elapsed} ms`);

    // The reader comes back: what was buffered arrives, in order, and the stream closes.
    const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    let text = '';
    const buffer = Buffer.alloc(65536);
    const closed = new Promise((resolve) => stream.once('close', resolve));
    stream.end();
    const drain = () => {
      try {
        for (let n; (n = readSync(readFd, buffer)) > 0; ) {
          text += buffer.toString('utf8', 0, n);
        }
      } catch (error) {
        if (error.code !== 'EAGAIN') {
          throw error;
        }
      }
    };
    const reading = setInterval(drain, 5);
    await closed;
    clearInterval(reading);
    drain();
    closeSync(readFd);
    const lines = text.split('\n').filter(Boolean).map((line) => JSON.parse(line));
    assert.equal(lines.length, 4000 - dropped);
    assert.equal(lines[0].i, 0);
    assert.ok(lines.every((line, index) => index === 0 || line.i > lines[index - 1].i));
  });

  it('batches lines: nothing is written per line, a batch goes out within 100 ms', async () => {
    const writes = [];
    const stream = stdoutStream({ fd: openSync('/dev/null', 'w') });
    stream.on('write', (bytes) => writes.push(bytes));
    const logger = createLogger({ level: 'info', service: 'api', version: 't' }, stream);
    logger.info('one');
    logger.info('two');
    assert.equal(writes.length, 0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(writes.some((bytes) => bytes > 0), `writes ${writes}`);
    stream.end();
  });
});
