// blocklistctl block of many addresses (one request, one helper batch),
// the refusal of the host's own addresses without --force (issue 15 §2, §6),
// end to end against the daemon with the recording helper fixture.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { DaemonProcess, ctl, freePort, parsed, repoRoot, run, startDaemon, tempDir } from './support.js';

describe('block of many addresses', () => {
  test('1,000 addresses from standard input cost one batch call of the helper; each is blocked and recorded', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n`, [], { env: { HELPER_BATCH: '1' } });
    const { control } = daemon;
    const addresses = Array.from({ length: 1000 }, (_, i) => `10.77.${i >> 8}.${i & 255}`);
    const before = daemon.helperCalls().length;
    const r = await ctl(['block', '-p', String(port), '--control', control, '-'], { input: `# from a list\n${addresses.join('\n')}\n\n` });
    assert.equal(r.code, 0, r.stderr);
    const calls = daemon.helperCalls().slice(before);
    assert.deepEqual(
      calls.filter((l) => l.startsWith('batch')),
      ['batch 1000'],
      'one batch call',
    );
    assert.equal(calls.filter((l) => l.startsWith('add ')).length, 1000);
    const lines = r.stdout.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1001);
    assert.match(lines[0]!, new RegExp(`^blocked 10\\.77\\.0\\.0/32 port ${port}/tcp \\(blocklistd\\) for 1h, until `));
    assert.equal(lines[1000], '1000 blocked, 0 renewed, 0 failed');
    assert.equal(daemon.entries().filter((e) => e.id.startsWith('id-10.77.')).length, 1000);
  });

  test('several arguments and --stdin; more than 1,000 go as requests of 1,000; --json has one result per address', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n`, [], { env: { HELPER_BATCH: '1' } });
    const { control } = daemon;
    let r = await ctl(['block', '-p', String(port), '--control', control, '198.51.100.1', '198.51.100.2', '198.51.100.1']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^blocked 198\.51\.100\.1\/32 .*\nblocked 198\.51\.100\.2\/32 .*\n2 blocked, 0 renewed, 0 failed\n$/);
    const before = daemon.helperCalls().length;
    const addresses = Array.from({ length: 2500 }, (_, i) => `10.78.${i >> 8}.${i & 255}`);
    r = await ctl(['block', '-p', String(port), '--stdin', '--json', '--control', control], {
      input: ['198.51.100.2', ...addresses].join('\n'),
    });
    assert.equal(r.code, 0, r.stderr);
    const { result } = parsed(r);
    assert.deepEqual(result.counts, { blocked: 2500, renewed: 1, failed: 0 });
    assert.equal(result.results.length, 2501);
    assert.deepEqual(Object.keys(result.results[0]).sort(), ['address', 'entry', 'renewed']);
    assert.equal(result.results[0].renewed, true);
    assert.deepEqual(
      daemon
        .helperCalls()
        .slice(before)
        .filter((l) => l.startsWith('batch')),
      ['batch 999', 'batch 1000', 'batch 501'],
      'the renewal calls no helper',
    );
  });

  test('a bad address anywhere in the list blocks nothing; an address the filter refuses fails alone (exit 1)', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n`, [], { env: { HELPER_BATCH: '1', HELPER_REFUSE: '192.0.2.9' } });
    const { control } = daemon;
    let r = await ctl(['block', '-p', String(port), '--control', control, '-'], { input: '192.0.2.7\n192.0.2.300\n' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^blocklistctl: block: bad address '192\.0\.2\.300'\n$/);
    assert.equal(daemon.entries().length, 0);
    r = await ctl(['block', '-p', String(port), '--control', control, '192.0.2.8', '192.0.2.9']);
    assert.equal(r.code, 1);
    assert.match(
      r.stdout,
      /^blocked 192\.0\.2\.8\/32 .*\nfailed 192\.0\.2\.9: the packet filter did not take the block .*\n1 blocked, 0 renewed, 1 failed\n$/,
    );
  });

  test('a request of a long list refused as a whole stops the list there: the requests before it done and shown, exit 1', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n`, [], { env: { HELPER_BATCH: '1' } });
    const { control } = daemon;
    const addresses = Array.from({ length: 1500 }, (_, i) => (i === 1200 ? '127.0.0.1' : `10.80.${i >> 8}.${i & 255}`));
    let r = await ctl(['block', '-p', String(port), '--control', control, '-'], { input: addresses.join('\n') });
    assert.equal(r.code, 1);
    assert.match(r.stdout, /\n1000 blocked, 0 renewed, 0 failed\n$/);
    assert.match(
      r.stderr,
      /^blocklistctl: block: refusing to block this host's own address: 127\.0\.0\.1 covers 127\.0\.0\.0\/8 \(loopback\)/,
    );
    assert.equal(daemon.entries().length, 1000);
    r = await ctl(['block', '-p', String(port), '--json', '--control', control, '-'], { input: addresses.join('\n') });
    assert.equal(r.code, 1);
    const doc = parsed(r);
    assert.deepEqual([doc.ok, doc.error.code, doc.result.counts], [false, 'self_address', { blocked: 0, renewed: 1000, failed: 0 }]);
  });

  test('--stdin with addresses, or nothing to read: usage errors', async () => {
    let r = await ctl(['block', '--stdin', '192.0.2.1']);
    assert.match(r.stderr, /^block: --stdin reads the addresses: give none on the command line\n/);
    r = await ctl(['block', '-'], { input: '# nothing\n\n' });
    assert.match(r.stderr, /^block: no address on standard input\n/);
  });
});

describe("the host's own addresses (issue 15 §2)", () => {
  /** An address of an interface of this host that is not loopback, if it has one. */
  const own = Object.values(networkInterfaces())
    .flat()
    .find((a) => a !== undefined && !a.internal && a.family === 'IPv4')?.address;

  test(
    'loopback, a network holding it, or an address of an interface: refused by the daemon (self_address, ' + 'exit 1) unless --force',
    async (t) => {
      const port = await freePort();
      const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n`);
      const { control } = daemon;
      const refusals: [string[], RegExp][] = [
        [['127.0.0.1'], /127\.0\.0\.1 covers 127\.0\.0\.0\/8 \(loopback\)/],
        [['127.3.4.5/16'], /127\.3\.4\.5\/16 covers 127\.0\.0\.0\/8 \(loopback\)/],
        [['::1'], /::1 covers ::1 \(loopback\)/],
        [['::ffff:127.0.0.9'], /::ffff:127\.0\.0\.9 covers 127\.0\.0\.0\/8 \(loopback\)/],
        [['0.0.0.0/0'], /0\.0\.0\.0\/0 covers 127\.0\.0\.0\/8 \(loopback\)/],
        [['::/0'], /::\/0 covers ::1 \(loopback\)/],
        [['198.51.100.1', '127.0.0.2'], /127\.0\.0\.2 covers/],
        ...(own === undefined
          ? []
          : [
              [[own], new RegExp(`${own.replace(/\./g, '\\.')} covers ${own.replace(/\./g, '\\.')} \\(an address of `)] as [
                string[],
                RegExp,
              ],
            ]),
      ];
      for (const [addresses, message] of refusals) {
        const r = await ctl(['block', '-t', '1h', '--control', control, ...addresses]);
        assert.equal(r.code, 1, addresses.join(' '));
        assert.match(r.stderr, /^blocklistctl: block: refusing to block this host's own address: /);
        assert.match(r.stderr, message);
        assert.match(r.stderr, /\(force it with --force\)\n$/);
      }
      assert.equal(daemon.entries().length, 0, 'nothing blocked');
      assert.equal(daemon.helperCalls().filter((l) => l.startsWith('add')).length, 0);
      // a raw client of the control socket meets the same policy
      const raw = await ctl(['block', '--json', '-t', '1h', '--control', control, '127.0.0.1']);
      assert.equal(parsed(raw).error.code, 'self_address');
      // next to loopback is not loopback
      assert.equal((await ctl(['block', '-t', '1h', '--control', control, '128.0.0.1'])).code, 0);
      // --force: blocked all the same
      const r = await ctl(['block', '--force', '-t', '1h', '--control', control, '127.0.0.1']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^blocked 127\.0\.0\.1\/32 every port/);
    },
  );
});

describe('unblock: --if-present, and progress on a terminal', () => {
  test('--if-present: an address without entry is success (exit 0), said so; without it, not_found (exit 1)', async (t) => {
    const { control } = await startDaemon(t, '22 stream * * * 3 1h\n');
    let r = await ctl(['unblock', '--control', control, '198.51.100.40']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^blocklistctl: unblock: no entry for 198\.51\.100\.40\n$/);
    r = await ctl(['unblock', '--if-present', '--control', control, '198.51.100.40']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'no entry: nothing to unblock\n0 released, 0 deleted without a block, 0 failed\n');
    r = await ctl(['unblock', '--if-present', '--json', '--control', control, '198.51.100.40']);
    assert.equal(r.code, 0);
    assert.deepEqual(parsed(r).result.counts, { released: 0, deleted: 0, failed: 0 });
  });

  /** A daemon with 3,000 blocks of port 22 (one batch helper call each 1,000). */
  async function blocked(t: TestContext): Promise<{ daemon: DaemonProcess; control: string }> {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n`, [], { env: { HELPER_BATCH: '1', HELPER_BATCH_DELAY: '0.3' } });
    const input = Array.from({ length: 3000 }, (_, i) => `10.79.${i >> 8}.${i & 255}`).join('\n');
    const r = await ctl(['block', '-p', String(port), '--control', daemon.control, '-'], { input });
    assert.equal(r.code, 0, r.stderr);
    return { daemon, control: daemon.control };
  }

  test('not on a terminal: no progress, only the answer', async (t) => {
    const { control } = await blocked(t);
    const r = await ctl(['unblock', '--all', '--control', control]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /\n3000 released, 0 deleted without a block, 0 failed\n$/);
  });

  test('on a terminal (script -qc): a counter on standard error while the daemon releases, erased at the end', async (t) => {
    const { daemon, control } = await blocked(t);
    const command = `${process.execPath} ${join(repoRoot, 'bin/blocklistctl')} unblock --all --control ${control}`;
    const r = await run('script', ['-qec', command, '/dev/null']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /\runblock: 0 of 3000\x1b\[K/);
    assert.match(r.stdout, /\runblock: 3000 of 3000\x1b\[K\r\x1b\[K/);
    assert.match(r.stdout, /3000 released, 0 deleted without a block, 0 failed\r?\n$/);
    assert.equal(daemon.entries().length, 0);
  });

  test('block of more than 1,000 addresses on a terminal: a counter of the addresses sent; in a pipe none', async (t) => {
    const port = await freePort();
    const { control } = await startDaemon(t, `${port} stream * * * 3 1h\n`, [], { env: { HELPER_BATCH: '1' } });
    const dir = tempDir();
    writeFileSync(join(dir, 'list'), Array.from({ length: 2500 }, (_, i) => `10.81.${i >> 8}.${i & 255}`).join('\n'));
    const command =
      `${process.execPath} ${join(repoRoot, 'bin/blocklistctl')} block -p ${port} --control ${control} - < ` + `${join(dir, 'list')}`;
    const r = await run('script', ['-qec', command, '/dev/null']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /\rblock: 0 of 2500\x1b\[K\r\x1b\[K\rblock: 1000 of 2500\x1b\[K\r\x1b\[K\rblock: 2000 of 2500\x1b\[K\r\x1b\[K/);
    assert.match(r.stdout, /2500 blocked, 0 renewed, 0 failed\r?\n$/);
    const piped = await ctl(['block', '-p', String(port), '--control', control, '-'], { input: readFileSync(join(dir, 'list'), 'utf8') });
    assert.equal(piped.stderr, '');
    assert.match(piped.stdout, /0 blocked, 2500 renewed, 0 failed\n$/);
  });
});
