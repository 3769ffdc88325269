// Where the service listens: a port in use or a bad HOST stops start-up in one line naming the
// variable (exit 2), as FastAPI does, instead of a TypeError and a stack trace.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';

const SERVICE_DIR = new URL('..', import.meta.url).pathname;

function start(env) {
  return spawnSync(process.execPath, ['--import', './src/instrument.mjs', 'src/server.mjs'], {
    cwd: SERVICE_DIR,
    env: { PATH: process.env.PATH, ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
}

describe('listening', () => {
  it('a port in use names PORT in one line', async () => {
    const taken = createServer();
    await new Promise((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address();
    try {
      const result = start({ PORT: String(port), HOST: '127.0.0.1' });
      assert.equal(result.status, 2);
      assert.equal(
        result.stderr.trim(),
        `api: PORT: ${port} is already in use ([127.0.0.1]:${port}); stop the other server or set PORT`,
      );
    } finally {
      taken.close();
    }
  });

  for (const [host, problem] of [
    ['no-such-host.invalid', 'is neither an address nor a name that resolves here'],
    ['192.0.2.1', 'is not an address of this machine'], // TEST-NET-1, never local
  ]) {
    it(`a bad HOST (${host}) names HOST in one line`, () => {
      const result = start({ HOST: host, PORT: '18998' });
      assert.equal(result.status, 2);
      assert.equal(result.stderr.trim(), `api: HOST: '${host}' ${problem}`);
    });
  }
});
