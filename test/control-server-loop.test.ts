// The control server's loop per connection (src/daemon/control.ts), in
// process: requests answered one at a time in order, the idle limit
// counting only the wait for a request.  The daemon-level behaviour (caps, size limit,
// credentials, chunked dumps) is in test/control.test.ts, limits.test.ts
// and dump.test.ts.
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ControlServer, type ControlServerOptions } from '../src/daemon/control.js';
import { LogCollector, tempDir } from './support.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A control server at a fresh path whose `handle` is given; closed after the test. */
async function serverWith(
  t: TestContext,
  handle: ControlServerOptions['handle'],
  more: Partial<ControlServerOptions> = {},
): Promise<string> {
  const path = join(tempDir(), 'c.ctl');
  const server = await ControlServer.open({ path, log: new LogCollector().log, handle, ...more });
  t.after(() => server.close());
  return path;
}

/** Connects, writes `text` and collects what arrives until the server closes, or until `answers` lines came. */
async function exchange(
  path: string,
  text: string,
  answers = Infinity,
): Promise<{ lines: Record<string, unknown>[]; closedAfterMs: number }> {
  const socket = net.connect(path);
  await new Promise((resolve) => socket.once('connect', resolve));
  const start = performance.now();
  let data = '';
  socket.setEncoding('utf8').on('data', (d: string) => {
    data += d;
    if (data.split('\n').length > answers) socket.destroy();
  });
  socket.write(text);
  await new Promise((resolve) => socket.once('close', resolve));
  const lines = data
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { lines, closedAfterMs: performance.now() - start };
}

const request = (id: number, command = 'status'): string => `${JSON.stringify({ version: 1, id, command })}\n`;

test('pipelined requests with answers of different speeds: answered one at a time, in order', async (t) => {
  let running = 0;
  let overlapped = false;
  const path = await serverWith(t, async (command) => {
    overlapped ||= running > 0;
    running++;
    // the first the slowest: a server answering in parallel would answer it last
    await sleep(command === 'slow' ? 150 : 5);
    running--;
    return { command };
  });
  const { lines } = await exchange(path, request(1, 'slow') + request(2) + '\n   \n' + request(3, 'slow') + request(4), 4);
  assert.deepEqual(
    lines.map((l) => [l.id, (l.result as { command: string }).command]),
    [
      [1, 'slow'],
      [2, 'status'],
      [3, 'slow'],
      [4, 'status'],
    ],
  );
  assert.equal(overlapped, false, 'two requests of one connection were handled at once');
});

test('the idle limit counts the wait for a request, not the time an answer takes', async (t) => {
  const IDLE = 300;
  const path = await serverWith(t, async (command) => (command === 'slow' ? sleep(3 * IDLE).then(() => ({ slow: true })) : {}), {
    idleMs: IDLE,
  });
  // a request that takes three idle limits to answer is answered, then the silence closes the connection
  const { lines, closedAfterMs } = await exchange(path, request(1, 'slow'));
  assert.deepEqual(lines, [{ version: 1, id: 1, result: { slow: true } }]);
  assert.ok(closedAfterMs >= 4 * IDLE - 50 && closedAfterMs < 4 * IDLE + 2000, `closed after ${closedAfterMs.toFixed(0)} ms`);
  // silent from the start: closed after the limit
  const silent = await exchange(path, '');
  assert.deepEqual(silent.lines, []);
  assert.ok(silent.closedAfterMs >= IDLE - 50 && silent.closedAfterMs < IDLE + 2000, `closed after ${silent.closedAfterMs.toFixed(0)} ms`);
});
