// Kernel expiry and the fleet (doc/fleet.md §5): learned blocks go into the
// packet filter with a kernel timeout, and an element shared by a local and
// a learned block keeps a timeout that covers the longer of them.  Real
// daemons, a NATS server, and a helper that records each add's timeout.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { ctl, freePort, repoRoot, startDaemon, tempDir, until, type DaemonProcess } from './support.js';
import { createBucket, natsClient, natsMissing, NatsServer } from './nats.js';

/**
 * The control fixture, offering kernel timeouts: each add and rem is also logged with its BLOCKLISTD_TIMEOUT in timeouts.log;
 * a rem fails while the file fail-rem exists.
 */
function timeoutHelper(dir: string): string {
  const program = join(dir, 'timeout-helper');
  writeFileSync(
    program,
    '#!/bin/sh\n' +
      '[ "$1" = capabilities ] && { echo timeout; exit 0; }\n' +
      `case $1 in add|rem) echo "$1 $4 timeout=\${BLOCKLISTD_TIMEOUT-none}" >>${join(dir, 'timeouts.log')} ;; esac\n` +
      `[ "$1" = rem ] && [ -e ${join(dir, 'fail-rem')} ] && { echo 'rem refused by the test' >&2; exit 1; }\n` +
      `exec ${join(repoRoot, 'test/fixtures/control')} "$@"\n`,
  );
  chmodSync(program, 0o755);
  return program;
}

interface Host {
  daemon: DaemonProcess;
  dir: string;
  /** The adds and rems of `address` so far: [action, timeout (undefined: none)]. */
  calls: (address: string) => [string, number | undefined][];
}

async function startHost(t: TestContext, server: string, origin: string, config: string, more: string[] = []): Promise<Host> {
  const dir = tempDir(`blocklistd-${origin}-`);
  const userFile = join(dir, 'fleet.user');
  writeFileSync(userFile, `${origin}:${origin}-secret\n`, { mode: 0o600 });
  const args = [
    '-C',
    timeoutHelper(dir),
    '--kernel-expiry',
    '--fleet',
    server,
    '--fleet-name',
    origin,
    '--fleet-user-file',
    userFile,
    ...more,
  ];
  const daemon = await startDaemon(t, config, args, { dir });
  await daemon.waitFor(/fleet: connected to /);
  const log = join(dir, 'timeouts.log');
  const calls = (address: string): [string, number | undefined][] =>
    (existsSync(log) ? readFileSync(log, 'utf8').split('\n') : [])
      .map((l) => l.split(' '))
      .filter((f) => f[1] === address)
      .map(([action, , timeout]) => [action!, timeout === 'timeout=none' ? undefined : Number(timeout!.slice('timeout='.length))]);
  return { daemon, dir, calls };
}

/** A timeout within a few seconds of `expected` (the test's own clock against the daemon's). */
function near(actual: number | undefined, expected: number, what: string): void {
  assert.ok(actual !== undefined && Math.abs(actual - expected) <= 5, `${what}: ${actual} is not about ${expected}`);
}

describe('fleet and kernel expiry', { skip: natsMissing() }, () => {
  test('learned blocks carry a kernel timeout (none forever); a shared element keeps the timeout of its longest holder', async (t) => {
    const nats = await NatsServer.start(t, { hosts: ['a', 'b', 'c'] });
    await createBucket(await natsClient(t, nats.url));
    const port = await freePort();
    const margin = 60;
    // A blocks for an hour, B for two, C forever
    const a = await startHost(t, nats.url, 'a', `${port} stream * * * 3 1h\n`);
    const b = await startHost(t, nats.url, 'b', `${port} stream * * * 3 2h\n`);
    const c = await startHost(t, nats.url, 'c', `${port} stream * * * 3 *\n`);
    const block = async (host: Host, address: string): Promise<void> =>
      assert.equal((await ctl(['block', '-p', String(port), '--control', host.daemon.control, address])).code, 0);
    const unblock = async (host: Host, address: string): Promise<void> =>
      assert.equal((await ctl(['unblock', '-p', String(port), '--control', host.daemon.control, address])).code, 0);
    const x = '198.51.100.9';
    const y = '198.51.100.10';

    // (b) A's block, learned by B and C, goes into their filters with what remains of it plus the margin
    await block(a, x);
    await until(() => b.calls(x).length === 1 && c.calls(x).length === 1);
    near(a.calls(x)[0]![1], 3600 + 1 + margin, "A's own add");
    assert.equal(b.calls(x)[0]![0], 'add');
    near(b.calls(x)[0]![1], 3600 + 1 + margin, "B's add of A's learned block");
    near(c.calls(x)[0]![1], 3600 + 1 + margin, "C's add of A's learned block");
    // C's forever block: learned without a timeout
    await block(c, y);
    await until(() => a.calls(y).length === 1);
    assert.deepEqual(a.calls(y), [['add', undefined]]);

    // (a) B blocks X for two hours: its add, which the learned block of A held, goes to the helper with B's longer timeout
    await block(b, x);
    await b.daemon.waitFor(new RegExp(`blocked ${x.replace(/\./g, '\\.')}/32:${port} for 7200 seconds`));
    await until(() => b.calls(x).length === 2);
    near(b.calls(x)[1]![1], 7200 + 1 + margin, "B's local add over the learned block");
    // on A, B's learned block joins A's local one: the element is added again with a timeout covering B's end
    await a.daemon.waitFor(/fleet: blocked 198\.51\.100\.9\/32:\d+ .* from b/);
    await until(() => a.calls(x).length === 2);
    assert.equal(a.calls(x)[1]![0], 'add');
    near(a.calls(x)[1]![1], 7200 + 1 + margin, "A's add again for B's learned block");
    // A lifts its own block: no rem (B's block holds the element), the element added again with B's block's timeout
    await unblock(a, x);
    await b.daemon.waitFor(/fleet: released 198\.51\.100\.9\/32:\d+ from a: deleted by its origin/);
    await until(() => a.calls(x).length === 3);
    assert.equal(a.calls(x)[2]![0], 'add');
    near(a.calls(x)[2]![1], 7200 + 1 + margin, "A's add again after its own block's release: B's end covered");
    // on B, A's learned block goes, B's own stays: added again with B's own timeout, no rem
    await until(() => b.calls(x).length === 3);
    assert.equal(b.calls(x)[2]![0], 'add');
    near(b.calls(x)[2]![1], 7200 + 1 + margin, "B's add again after A's learned block went");
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(a.calls(x).length, 3);
    assert.equal(b.calls(x).length, 3);

    // C learned both blocks of X: added for A's, again for B's longer one, again when A's went (B's stays)
    await c.daemon.waitFor(/fleet: released 198\.51\.100\.9\/32:\d+ from a: deleted by its origin/);
    await until(() => c.calls(x).length === 3);
    near(c.calls(x)[1]![1], 7200 + 1 + margin, "C's add again for B's learned block");
    near(c.calls(x)[2]![1], 7200 + 1 + margin, "C's add again when A's learned block went");
    // C's own forever block over B's: added again without a timeout
    await block(c, x);
    await until(() => c.calls(x).length === 4);
    assert.deepEqual(c.calls(x)[3], ['add', undefined]);
    // the holder that set the timeout goes, the learned one stays: added again with the timeout covering B's end
    await unblock(c, x);
    await until(() => c.calls(x).length === 5);
    assert.equal(c.calls(x)[4]![0], 'add');
    near(c.calls(x)[4]![1], 7200 + 1 + margin, "C's add again for B's learned block after its own forever block went");
  });

  test("a learned block renewed by its origin: added again when its new end passes the kernel's timeout by half a margin", async (t) => {
    const nats = await NatsServer.start(t, { hosts: ['a', 'b'] });
    await createBucket(await natsClient(t, nats.url));
    const port = await freePort();
    const a = await startHost(t, nats.url, 'a', `${port} stream * * * 3 20\n`);
    const b = await startHost(t, nats.url, 'b', `${port} stream * * * 3 20\n`, ['--kernel-expiry-margin', '2']);
    const x = '198.51.100.9';
    const block = async (): Promise<void> =>
      assert.equal((await ctl(['block', '-p', String(port), '--control', a.daemon.control, x])).code, 0);
    await block();
    await until(() => b.calls(x).length === 1);
    near(b.calls(x)[0]![1], 20 + 1 + 2, "B's add of A's learned block");
    // 4 s later A blocks it again: its end moves 4 s (published: more than a tenth of 20 s), more than half of B's margin
    await new Promise((resolve) => setTimeout(resolve, 4000));
    await block();
    await until(() => b.calls(x).length === 2);
    assert.equal(b.calls(x)[1]![0], 'add');
    near(b.calls(x)[1]![1], 20 + 1 + 2, "B's add again with the renewed end");
  });

  test('a failed rem of a released learned block is tried again (--rem-retry) until it works', async (t) => {
    const nats = await NatsServer.start(t, { hosts: ['a', 'b'] });
    await createBucket(await natsClient(t, nats.url));
    const port = await freePort();
    const a = await startHost(t, nats.url, 'a', `${port} stream * * * 3 1h\n`);
    const b = await startHost(t, nats.url, 'b', `${port} stream * * * 3 1h\n`, ['--rem-retry', '1']);
    const x = '198.51.100.11';
    assert.equal((await ctl(['block', '-p', String(port), '--control', a.daemon.control, x])).code, 0);
    await until(() => b.calls(x).length === 1);
    writeFileSync(join(b.dir, 'fail-rem'), '');
    assert.equal((await ctl(['unblock', '-p', String(port), '--control', a.daemon.control, x])).code, 0);
    await b.daemon.waitFor(/fleet: rem blocklistd 198\.51\.100\.11\/32:\d+ failed .*; retrying in 1 s/);
    const rems = (): number => b.calls(x).filter(([action]) => action === 'rem').length;
    await until(() => rems() >= 2);
    const failed = rems();
    rmSync(join(b.dir, 'fail-rem'));
    await until(() => rems() > failed);
    // one of the next tries works (the file is gone): then no more
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const settled = rems();
    await new Promise((resolve) => setTimeout(resolve, 2000));
    assert.equal(rems(), settled, 'no rem after one worked');
  });
});
