// bin/blocklistd as it stands: listens, logs each validated notification,
// refuses a socket another daemon holds, stops on SIGTERM.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { AUTH_FAIL, Blocklist } from '../src/index.js';
import { repoRoot, run, tempDir } from './support.js';

const daemon = join(repoRoot, 'bin/blocklistd');

test('bin/blocklistd receives, logs, refuses a taken socket and stops on SIGTERM', async (t) => {
  const path = join(tempDir(), 'blocklistd.sock');
  const child = spawn(process.execPath, [daemon, '-d', '-s', path], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  const waiters = new Set<() => void>();
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    for (const check of waiters) check();
  });
  const seen = (pattern: RegExp): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => {
        if (!pattern.test(stderr)) return;
        waiters.delete(check);
        resolve();
      };
      waiters.add(check);
      check();
    });
  await seen(/listening on /);

  const server = net.createServer((c) => {
    assert.equal(new Blocklist({ socketPath: path }).notify(AUTH_FAIL, c, 'ssh'), true);
    c.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const client = net.connect(port, '127.0.0.1');
  await new Promise((resolve) => client.once('connect', resolve));
  const clientPort = client.localPort;
  await new Promise((resolve) => client.once('close', resolve));
  server.close();
  await seen(new RegExp(`processing type=1 remote=127\\.0\\.0\\.1:${clientPort} local=127\\.0\\.0\\.1:${port}/stream msg="ssh" uid=\\d+ gid=\\d+\n`));

  const second = await run(process.execPath, [daemon, '-s', path]);
  assert.equal(second.code, 1);
  assert.equal(second.stderr, `bl_init: another daemon is handling '${path}'\n`);

  child.kill('SIGTERM');
  const [code] = await new Promise<[number | null]>((resolve) => child.once('exit', (c) => resolve([c])));
  assert.equal(code, 0);
});
