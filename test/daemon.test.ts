// The daemon's processing (daemon.md §5-§7) against the real process, with
// the control fixture as its helper: the thresholds table, resets and
// expiry, forever entries, helper failures, restore, flush and reload.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, test, type TestContext } from 'node:test';
import { ABUSIVE_BEHAVIOR, AUTH_FAIL, AUTH_OK, BAD_USER, type BlocklistAction } from '../src/index.js';
import { encodeNotification } from '../src/protocol/wire.js';
import { StateStore } from '../src/state/store.js';
import { DaemonProcess, Reporter, cpuTicks, freePort, repoRoot, run, runBlprobe, startDaemon, tempDir, until } from './support.js';

const ACTIONS: [string, BlocklistAction][] = [
  ['AUTH_FAIL', AUTH_FAIL],
  ['BAD_USER', BAD_USER],
  ['ABUSIVE_BEHAVIOR', ABUSIVE_BEHAVIOR],
];

/** daemon.md §5.3: which failure blocks, per nfail and action; 0 for never. */
const THRESHOLDS: [string, number, number, number][] = [
  ['0', 1, 1, 1],
  ['1', 1, 1, 1],
  ['2', 1, 2, 1],
  ['3', 2, 3, 1],
  ['6', 3, 6, 1],
  ['10', 5, 10, 1],
  ['*', 0, 0, 0],
];

let serial = 0;
const tag = (): string => `n${++serial}`;

async function reporter(t: TestContext, daemon: DaemonProcess, port: number, client = '127.0.0.1'): Promise<Reporter> {
  const r = await Reporter.connect(daemon.socket, port, client);
  t.after(() => r.close());
  return r;
}

/** Reports and waits until the daemon has committed it. */
async function report(daemon: DaemonProcess, r: Reporter, action: BlocklistAction): Promise<void> {
  const text = tag();
  r.report(action, text);
  await daemon.settled(text);
}

const adds = (daemon: DaemonProcess, port: number): string[] =>
  daemon.helperCalls().filter((c) => c.startsWith('add ') && c.includes(` ${port} `));

describe('blocklistd processing', () => {
  test('the thresholds table: which failure blocks, for each nfail and action (daemon.md §5.3)', async (t) => {
    const ports = await Promise.all(THRESHOLDS.map(() => freePort()));
    const config = THRESHOLDS.map(([nfail], i) => `${ports[i]}\tstream\t*\t*\t-n${nfail === '*' ? 'never' : nfail}\t${nfail}\t1h`).join(
      '\n',
    );
    const daemon = await startDaemon(t, `${config}\n`);
    for (const [i, [nfail, ...blocksAt]] of THRESHOLDS.entries()) {
      for (const [a, [name, action]] of ACTIONS.entries()) {
        const client = `127.0.0.${10 + a}`;
        const r = await reporter(t, daemon, ports[i], client);
        const at = blocksAt[a];
        const sends = at === 0 ? 6 : at;
        for (let k = 1; k <= sends; k++) {
          await report(daemon, r, action);
          if (k < sends || at === 0) {
            await new Promise((resolve) => setTimeout(resolve, k === sends ? 200 : 0));
            assert.deepEqual(
              adds(daemon, ports[i]).filter((c) => c.includes(client)),
              [],
              `nfail ${nfail}, ${name}: no block after ${k}`,
            );
          }
        }
        if (at > 0) {
          await daemon.waitFor(new RegExp(`blocked ${client.replace(/\./g, '\\.')}/32:${ports[i]} for 3600 seconds`));
          assert.deepEqual(
            adds(daemon, ports[i]).filter((c) => c.includes(client)),
            [`add blocklistd-n${nfail} tcp ${client} 32 ${ports[i]} ''`],
            `nfail ${nfail}, ${name}: blocked at ${at}`,
          );
        } else {
          const entry = daemon.entries().find((e) => e.key.port === ports[i] && e.key.address === client)!;
          assert.equal(entry.count, name === 'BAD_USER' ? 6 : 12, `nfail *, ${name}: counts on`);
        }
        r.close();
      }
    }
  });

  test('mixed types add up: BAD_USER then AUTH_FAIL reach nfail 3', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n`);
    const r = await reporter(t, daemon, port);
    await report(daemon, r, BAD_USER);
    assert.equal(daemon.entries()[0].count, 1);
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/blocked 127\.0\.0\.1\/32:\d+ for 3600 seconds/);
    await until(() => daemon.entries()[0]?.id === `id-127.0.0.1:${port}`);
    assert.equal(daemon.entries()[0].count, 3);
  });

  test('AUTH_OK resets a blocked entry; the next expiry releases it through the helper', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 2 1h\n`);
    const r = await reporter(t, daemon, port);
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/add returns OK/);
    await report(daemon, r, AUTH_OK);
    await daemon.waitFor(new RegExp(`released 127\\.0\\.0\\.1/32:${port} after 3600 seconds`));
    assert.deepEqual(daemon.helperCalls().slice(-1), [`rem blocklistd tcp 127.0.0.1 32 ${port} id-127.0.0.1:${port}`]);
    await until(() => daemon.entries().length === 0);
  });

  test('AUTH_OK without an entry or on a reset entry writes nothing', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 10 1h\n`);
    const r = await reporter(t, daemon, port);
    await report(daemon, r, AUTH_OK);
    assert.deepEqual(daemon.entries(), []);
  });

  test('a block expires after its duration, measured from the last failure, at most a second late', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 1 2\n`);
    const r = await reporter(t, daemon, port);
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/add returns OK/);
    const blockedAt = daemon.entries()[0].last;
    await daemon.waitFor(/released 127\.0\.0\.1\/32:\d+ after 2 seconds/);
    const releasedAt = Date.now() / 1000;
    assert.ok(releasedAt >= blockedAt + 3 && releasedAt < blockedAt + 4.5, `released ${releasedAt - blockedAt} s after the failure`);
    await until(() => daemon.entries().length === 0);
  });

  test('forever: never released by time; AUTH_OK lifts it at once (G15)', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 1 *\n`);
    const r = await reporter(t, daemon, port);
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/add returns OK/);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(daemon.entries().length, 1);
    await report(daemon, r, AUTH_OK);
    await daemon.waitFor(new RegExp(`released 127\\.0\\.0\\.1/32:${port} after -1 seconds`));
    await until(() => daemon.entries().length === 0);
  });

  test('an unknown type is logged and dropped without a state entry (G26)', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 3 1h\n`);
    const r = await reporter(t, daemon, port);
    r.reportRaw(encodeNotification(99, null, Buffer.from('weird')), daemon.socket);
    await daemon.waitFor(/unknown message 99/);
    await report(daemon, r, AUTH_OK);
    assert.deepEqual(daemon.entries(), []);
  });

  test('a helper that prints nothing: the count is not saved, the next failure tries again (G16)', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 2 1h\n`);
    daemon.helperMode('silent');
    const r = await reporter(t, daemon, port);
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/add blocklistd tcp 127\.0\.0\.1\/32:\d+: the helper gave no rule id/);
    await until(() => daemon.entries().length === 0); // the first failure, which needed the helper, is not saved
    daemon.helperMode('ok');
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/blocked 127\.0\.0\.1\/32/);
    await until(() => daemon.entries()[0]?.id !== '');
    assert.equal(adds(daemon, port).length, 2);
    assert.equal(daemon.entries()[0].count, 2);
  });

  test('a helper that prints an empty line: a warning, and add runs again on the next failure (G16)', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 2 1h\n`);
    daemon.helperMode('empty');
    const r = await reporter(t, daemon, port);
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/printed an empty rule id; add will run again on the next failure/);
    daemon.helperMode('ok');
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/add returns OK/);
    assert.equal(adds(daemon, port).length, 2);
  });

  test('a hanging helper is killed after --helper-timeout; the daemon keeps counting meanwhile (G27)', async (t) => {
    const [slow, other] = [await freePort(), await freePort()];
    const daemon = await startDaemon(t, `${slow} stream * * -slow 1 1h\n${other} stream * * -other 10 1h\n`, ['--helper-timeout', '2']);
    daemon.helperMode('hang');
    const r = await reporter(t, daemon, slow);
    const o = await reporter(t, daemon, other);
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/run .* \[control add blocklistd-slow/);
    const t0 = Date.now();
    for (let i = 0; i < 5; i++) await report(daemon, o, BAD_USER);
    assert.ok(Date.now() - t0 < 1000, 'notifications are processed while the helper hangs');
    assert.equal(daemon.entries().find((e) => e.key.port === other)?.count, 5);
    await daemon.waitFor(/add timed out after 2 s, killed/);
    await daemon.waitFor(/the helper gave no rule id \(timed out\); the block may be in the packet filter: kept until it expires/);
  });

  test('a timed-out add may have reached the filter: the entry stays at its limit without id, and expiry runs rem for it', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 1 2\n`, ['--helper-timeout', '1']);
    daemon.helperMode('hang');
    const r = await reporter(t, daemon, port);
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/the helper gave no rule id \(timed out\); the block may be in the packet filter/);
    const [entry] = daemon.entries();
    assert.deepEqual([entry?.count, entry?.id], [2, ''], 'at its limit, no rule id: not forgotten');
    daemon.helperMode('ok');
    await until(() => daemon.entries().length === 0, 10_000);
    assert.deepEqual(
      daemon.helperCalls().filter((c) => c.includes(` ${port} `)),
      [`add blocklistd tcp 127.0.0.1 32 ${port} ''`, `rem blocklistd tcp 127.0.0.1 32 ${port} ''`],
    );
  });

  test('a failed rem keeps the entry and is tried again, without spinning, until it works (G17)', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 1 1\n`, ['--rem-retry', '2']);
    const r = await reporter(t, daemon, port);
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/add returns OK/);
    daemon.helperMode('remfail');
    await daemon.waitFor(/rem blocklistd tcp 127\.0\.0\.1\/32:\d+ failed \(exit status 1\); retrying in 2 s/);
    assert.equal(daemon.entries().length, 1);
    const ticks = cpuTicks(daemon.child.pid!);
    await daemon.waitFor(/failed \(exit status 1\); retrying in 2 s[^]*failed \(exit status 1\); retrying in 2 s/);
    assert.ok(cpuTicks(daemon.child.pid!) - ticks < 50, 'no busy loop while waiting to retry');
    daemon.helperMode('ok');
    await daemon.waitFor(/released 127\.0\.0\.1\/32:\d+ after 1 seconds/);
    await until(() => daemon.entries().length === 0);
  });

  test('a forever block whose release failed is released when the helper works again (G15, G17)', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 1 *\n`, ['--rem-retry', '1']);
    const r = await reporter(t, daemon, port);
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/add returns OK/);
    daemon.helperMode('remfail');
    await report(daemon, r, AUTH_OK);
    await daemon.waitFor(/failed \(exit status 1\); retrying in 1 s/);
    assert.equal(daemon.entries()[0].last, 0, 'lifted, waiting for its rem');
    daemon.helperMode('ok');
    await daemon.waitFor(/released 127\.0\.0\.1\/32:\d+ after -1 seconds/);
    await until(() => daemon.entries().length === 0);
  });

  test('a database write that fails loses the batch, not the daemon', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 10 1h\n`);
    const r = await reporter(t, daemon, port);
    const lock = new Database(daemon.db);
    lock.exec('BEGIN IMMEDIATE');
    t.after(() => lock.close());
    r.report(BAD_USER, 'locked');
    await daemon.waitFor(/state_put: failed \(database is locked\), 1 notifications lost/);
    lock.exec('COMMIT');
    await report(daemon, r, BAD_USER);
    assert.equal(daemon.entries()[0].count, 1);
  });

  test('expiring thousands of blocks at once: released in chunks, notifications still served at once', async (t) => {
    const port = await freePort();
    const dir = tempDir('blocklistd-daemon-');
    const store = StateStore.open(join(dir, 'blocklistd.db'));
    store.transaction(() => {
      for (let i = 0; i < 2000; i++) {
        const key = {
          family: 2,
          address: `10.1.${i >> 8}.${i & 255}`,
          lmask: 32,
          port,
          proto: 6,
          uid: -1,
          name: 'blocklistd',
          rmask: -1,
          nfail: 1,
          duration: 1,
        };
        store.put({ key, count: 2, last: 1000, id: `id${i}` });
      }
    });
    store.close();
    // the report goes in while the releases run: not after the control socket opens
    const daemon = await startDaemon(t, `${port} stream * * * 10 1h\n`, [], { dir, listeningOnly: true });
    await daemon.waitFor(/released 10\.1\./);
    const r = await reporter(t, daemon, port);
    const t0 = Date.now();
    await report(daemon, r, BAD_USER);
    assert.ok(Date.now() - t0 < 1000, `a notification waited ${Date.now() - t0} ms behind the releases`);
    await until(() => daemon.entries().length === 1, 60_000);
    assert.equal(daemon.helperCalls().filter((c) => c.startsWith('rem ')).length, 2000);
  });
});

describe('blocklistd memory', () => {
  test("a flood's young generation is given back once nothing is received for 5 s (daemon.md §12)", async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} dgram * * * 1000000 1h\n`);
    const { stdout, code } = await runBlprobe(['-s', daemon.socket, '-u', '-p', String(port), '-F', '10000', '-M', '100', '-w', '60000']);
    assert.equal(code, 0, stdout);
    const flooded = Date.now();
    const at = await daemon.waitFor(/quiet after a flood: V8's young generation [\d.]+ -> [\d.]+ MB/, 0, 30_000);
    const [before, after] = /young generation ([\d.]+) -> ([\d.]+) MB/.exec(daemon.stderr.slice(at))!.slice(1).map(Number);
    assert.ok(after < before, `${before} -> ${after} MB`);
    assert.ok(Date.now() - flooded >= 4_000, 'not before 5 s of quiet');
  });
});

describe('blocklistd start-up, reload and stop', () => {
  test('-r: after a restart the blocks are flushed and added again with their old ids (daemon.md §7.2)', async (t) => {
    const port = await freePort();
    const config = `${port} stream * * -r 1 1h\n`;
    let daemon = await startDaemon(t, config);
    const r = await reporter(t, daemon, port);
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/add returns OK/);
    assert.equal(await daemon.stop(), 0);
    const calls = daemon.helperCalls().length;
    daemon = await startDaemon(t, config, ['-r'], { dir: daemon.dir });
    await daemon.waitFor(/add returns OK/);
    assert.deepEqual(daemon.helperCalls().slice(calls), [
      'capabilities',
      'flush blocklistd-r',
      `add blocklistd-r tcp 127.0.0.1 32 ${port} id-127.0.0.1:${port}`,
    ]);
  });

  test('-f: every configured and stored rule name is flushed (G18), the database emptied without -r', async (t) => {
    const port = await freePort();
    let daemon = await startDaemon(t, `${port} stream * * -old 1 1h\n`);
    const r = await reporter(t, daemon, port);
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/add returns OK/);
    await daemon.stop();
    const calls = daemon.helperCalls().length;
    daemon = await startDaemon(t, `${port} stream * * -new 1 1h\n[remote]\n10.0.0.0/8 * * * -remote * *\n`, ['-f'], { dir: daemon.dir });
    // the socket comes first: the flush follows it
    await until(() => daemon.helperCalls().length >= calls + 4);
    assert.deepEqual(daemon.helperCalls().slice(calls), [
      'capabilities',
      'flush blocklistd-remote',
      'flush blocklistd-new',
      'flush blocklistd-old',
    ]);
    await until(() => daemon.entries().length === 0);
  });

  test('SIGHUP replaces the rule set (G14)', async (t) => {
    const [a, b] = [await freePort(), await freePort()];
    const daemon = await startDaemon(t, `${a} stream * * * 3 1h\n`);
    const ra = await reporter(t, daemon, a);
    const rb = await reporter(t, daemon, b);
    await report(daemon, rb, BAD_USER);
    assert.deepEqual(daemon.entries(), [], 'no rule for b yet');
    writeFileSync(daemon.config, `${b} stream * * * 3 1h\n`);
    const at = daemon.stderr.length;
    daemon.child.kill('SIGHUP');
    await daemon.waitFor(/\[local\]/, at);
    await report(daemon, ra, BAD_USER);
    await report(daemon, rb, BAD_USER);
    assert.deepEqual(
      daemon.entries().map((e) => e.key.port),
      [b],
      'the rule removed from the file is gone, the new one is used',
    );
  });

  test('SIGTERM while an add runs: its rule id is recorded before the database closes', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 1 1h\n`);
    daemon.helperMode('slow');
    const r = await reporter(t, daemon, port);
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/run .* \[control add /);
    assert.equal(await daemon.stop('SIGTERM'), 0);
    assert.equal(daemon.entries()[0].id, `id-127.0.0.1:${port}`);
  });

  test('a second daemon started with -f touches neither the packet filter nor the database', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 10 1h\n`);
    const r = await reporter(t, daemon, port);
    await report(daemon, r, BAD_USER);
    const second = await run(
      process.execPath,
      [
        join(repoRoot, 'bin/blocklistd'),
        '-d',
        '-f',
        '-c',
        daemon.config,
        '-C',
        join(repoRoot, 'test/fixtures/control'),
        '-D',
        daemon.db,
        '-s',
        daemon.socket,
      ],
      {},
    );
    assert.equal(second.code, 1);
    // the database's lock refuses it first, naming the holder
    assert.match(
      second.stderr,
      new RegExp(`database '${daemon.db.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}' is in use by pid ${daemon.child.pid} \\(`),
    );
    assert.equal(daemon.entries().length, 1);
    assert.deepEqual(
      daemon.helperCalls().filter((c) => c.startsWith('flush')),
      [],
    );
  });

  test('SIGTERM: running helper calls finish, the socket file goes, exit 0', async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${port} stream * * * 1 1h\n`);
    const r = await reporter(t, daemon, port);
    await report(daemon, r, AUTH_FAIL);
    await daemon.waitFor(/add returns OK/);
    assert.equal(await daemon.stop('SIGTERM'), 0);
    assert.equal(existsSync(daemon.socket), false);
    assert.equal(daemon.entries().length, 1, 'the database is intact');
  });

  test('SIGUSR1 and SIGUSR2 raise and lower the debug level, never below 0 (G20)', async (t) => {
    const daemon = await startDaemon(t, '22 stream * * * 3 1h\n');
    daemon.child.kill('SIGUSR1');
    await daemon.waitFor(/debug level 3/);
    // one at a time: the kernel merges signals still pending
    for (const level of [2, 1, 0, 0]) {
      const at = daemon.stderr.length;
      daemon.child.kill('SIGUSR2');
      await daemon.waitFor(new RegExp(`debug level ${level}\n`), at);
    }
    assert.doesNotMatch(daemon.stderr, /debug level -1/);
  });
});

describe('batch mode: a helper that answers "batch" to capabilities', () => {
  /** A database of `n` blocked entries on `port` (10.2.x.y), last failure at `last`. */
  function seeded(n: number, port: number, last: number): string {
    const dir = tempDir('blocklistd-daemon-');
    const store = StateStore.open(join(dir, 'blocklistd.db'));
    store.transaction(() => {
      for (let i = 0; i < n; i++) {
        const key = {
          family: 2,
          address: `10.2.${i >> 8}.${i & 255}`,
          lmask: 32,
          port,
          proto: 6,
          uid: -1,
          name: 'blocklistd',
          rmask: -1,
          nfail: 1,
          duration: 3600,
        };
        store.put({ key, count: 1, last, id: `old${i}` });
      }
    });
    store.close();
    return dir;
  }

  async function batchDaemon(
    t: TestContext,
    port: number,
    dir: string,
    args: string[] = [],
    env: Record<string, string> = {},
  ): Promise<DaemonProcess> {
    return startDaemon(t, `${port} stream * * * 1 1h\n`, args, { dir, env: { HELPER_BATCH: '1', ...env } });
  }

  /** The sizes of the batch calls among `calls`, and the operations they carried. */
  function batches(calls: string[]): { sizes: number[]; ops: string[]; singles: string[] } {
    const sizes = calls.filter((c) => c.startsWith('batch ')).map((c) => Number(c.slice(6)));
    const ops = calls.filter((c) => /^(add|rem) /.test(c));
    return { sizes, ops, singles: calls.filter((c) => !c.startsWith('batch ') && !/^(add|rem) /.test(c)) };
  }

  test('-r: 1500 blocks re-added in one batch, with their old ids', async (t) => {
    const port = await freePort();
    const now = Math.floor(Date.now() / 1000);
    const daemon = await batchDaemon(t, port, seeded(1500, port, now), ['-r']);
    await until(() => daemon.entries().every((e) => e.id.startsWith('id-')), 30_000);
    const { sizes, ops, singles } = batches(daemon.helperCalls());
    assert.deepEqual(singles, ['capabilities', 'flush blocklistd']);
    assert.deepEqual(sizes, [1500]);
    assert.equal(ops.length, 1500);
    const expected = Array.from({ length: 1500 }, (_, i) => `add blocklistd tcp 10.2.${i >> 8}.${i & 255} 32 ${port} old${i}`);
    assert.deepEqual([...ops].sort(), expected.sort());
  });

  test('adds of notifications arriving one at a time, 5 ms apart, go in a few helper calls (issue 13)', async (t) => {
    const port = await freePort();
    // batches that take 50 ms, as an nft -f transaction may: with two in flight, what arrives meanwhile
    // waits and goes together (with an instant helper the count would hang on the 5 ms window and the timers alone)
    const daemon = await startDaemon(t, `${port} dgram * * * 1 1h\n`, [], { env: { HELPER_BATCH: '1', HELPER_BATCH_DELAY: '0.05' } });
    await runBlprobe([
      '-s',
      daemon.socket,
      '-u',
      '-p',
      String(port),
      '-F',
      '100',
      '-M',
      '100',
      '-R',
      '200',
      '-A',
      '10.0.0.1',
      '-m',
      '',
      '-w',
      '0',
    ]);
    await until(() => batches(daemon.helperCalls()).ops.length === 100, 20_000);
    const calls = daemon.helperCalls();
    const { sizes, ops } = batches(calls);
    assert.equal(new Set(ops).size, 100, 'each address added once');
    // every line but the capabilities and the operations of batches is a helper process of its own
    const processes = calls.length - 1 - sizes.reduce((a, b) => a + b, 0);
    t.diagnostic(`100 adds in ${processes} helper calls, batches of ${sizes.join(' ')}`);
    assert.ok(processes <= 50, `${processes} helper calls`);
  });

  test('a line answered empty fails that operation only: the others get their ids', async (t) => {
    const port = await freePort();
    const now = Math.floor(Date.now() / 1000);
    const daemon = await batchDaemon(t, port, seeded(3, port, now), ['-r'], { HELPER_REFUSE: '10.2.0.1' });
    await daemon.waitFor(new RegExp(`add blocklistd tcp 10\\.2\\.0\\.1/32:${port}: the helper gave no rule id`));
    await until(() => daemon.entries().filter((e) => e.id.startsWith('id-')).length === 2);
    assert.deepEqual(batches(daemon.helperCalls()).sizes, [3]);
    // a restore keeps the old id of a block the helper could not confirm
    assert.deepEqual(
      daemon
        .entries()
        .map((e) => [e.key.address, e.id])
        .sort(),
      [
        ['10.2.0.0', `id-10.2.0.0:${port}`],
        ['10.2.0.1', 'old1'],
        ['10.2.0.2', `id-10.2.0.2:${port}`],
      ],
    );
  });

  test('expiry: the blocks due in one pass are released by one batch of rems', async (t) => {
    const port = await freePort();
    const daemon = await batchDaemon(t, port, seeded(200, port, 1000));
    await until(() => daemon.entries().length === 0, 30_000);
    const { sizes, ops } = batches(daemon.helperCalls());
    assert.equal(ops.length, 200);
    assert.ok(
      ops.every((op) => op.startsWith('rem blocklistd tcp 10.2.')),
      ops.join('\n'),
    );
    assert.equal(
      sizes.reduce((a, b) => a + b, 0),
      200,
    );
    assert.ok(sizes.length < 200 / 10, `${sizes.length} batches: ${sizes.join(' ')}`);
  });

  test('a rem answered by an empty line is kept and tried again, though the batch exited 0 (G17)', async (t) => {
    const port = await freePort();
    const daemon = await batchDaemon(t, port, seeded(2, port, 1000), ['--rem-retry', '1'], { HELPER_MODE: 'remfail' });
    await daemon.waitFor(new RegExp(`rem blocklistd tcp 10\\.2\\.0\\.0/32:${port} failed; retrying in 1 s`));
    await daemon.waitFor(new RegExp(`rem blocklistd tcp 10\\.2\\.0\\.1/32:${port} failed; retrying in 1 s`));
    assert.ok(daemon.helperCalls().includes('batch 2'), 'the rems went in one batch');
    assert.equal(daemon.entries().length, 2);
    daemon.helperMode('ok');
    await until(() => daemon.entries().length === 0);
    assert.match(daemon.stderr, new RegExp(`released 10\\.2\\.0\\.1/32:${port} after 3600 seconds`));
  });

  test(
    'SIGHUP with -r, a helper answering batch-flush: one batch, the flush first, then the blocks (one ' +
      'transaction); a block of every port after it',
    async (t) => {
      const port = await freePort();
      const now = Math.floor(Date.now() / 1000);
      const dir = seeded(3, port, now);
      const store = StateStore.open(join(dir, 'blocklistd.db'));
      store.put({
        key: {
          family: 2,
          address: '10.2.9.9',
          lmask: 32,
          port: -1,
          proto: -1,
          uid: -1,
          name: 'blocklistd',
          rmask: -1,
          nfail: 1,
          duration: 3600,
        },
        count: 1,
        last: now,
        id: 'old',
      });
      store.close();
      const daemon = await batchDaemon(t, port, dir, ['-r'], { HELPER_BATCH: 'flush' });
      await until(() => daemon.entries().every((e) => e.id.startsWith('id-')));
      const start = daemon.helperCalls();
      assert.deepEqual(start.slice(0, 3), ['capabilities', 'batch 4', 'flush blocklistd'], 'the restore at start too');
      daemon.child.kill('SIGHUP');
      await until(() => daemon.helperCalls().length === start.length + 6);
      assert.deepEqual(daemon.helperCalls().slice(start.length), [
        'batch 4',
        'flush blocklistd',
        ...[0, 1, 2].map((i) => `add blocklistd tcp 10.2.0.${i} 32 ${port} id-10.2.0.${i}:${port}`),
        // batch lines have no empty fields
        "add blocklistd '' 10.2.9.9 32 '' id-10.2.9.9:",
      ]);
    },
  );

  test('100 reloads in a burst with -r: the packet filter refreshed a few times, not 100, the last time with the last rules', async (t) => {
    const port = await freePort();
    const now = Math.floor(Date.now() / 1000);
    const daemon = await batchDaemon(t, port, seeded(50, port, now), ['-r'], { HELPER_BATCH: 'flush' });
    await until(() => daemon.entries().every((e) => e.id.startsWith('id-')));
    const from = daemon.helperCalls().length;
    for (let i = 0; i < 100; i++) {
      // the last reload brings a rule name: the last refresh flushes it too
      if (i === 99) writeFileSync(daemon.config, `${port} stream * * * 1 1h\n${port + 1} stream * * -new 1 1h\n`);
      daemon.child.kill('SIGHUP');
      // 2 ms apart: the kernel delivers each (a signal pending twice is delivered once)
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    // done when the helper has had nothing to do for a second
    const t0 = Date.now();
    for (let seen = -1; daemon.helperCalls().length !== seen;) {
      seen = daemon.helperCalls().length;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const calls = daemon.helperCalls().slice(from);
    const refreshes = calls.filter((c) => c === 'flush blocklistd').length;
    t.diagnostic(`${refreshes} refreshes of the packet filter for 100 SIGHUPs, done after ${((Date.now() - t0) / 1000 - 1).toFixed(1)} s`);
    assert.ok(refreshes <= 20, `${refreshes} refreshes`);
    assert.deepEqual(
      calls.slice(-53, -50).sort(),
      ['batch 52', 'flush blocklistd', 'flush blocklistd-new'],
      'the last refresh: one batch, both names flushed first',
    );
    assert.equal(calls.slice(-50).filter((c) => c.startsWith('add blocklistd tcp 10.2.0.')).length, 50, 'then every block');
  });

  test('SIGHUP with -r: flush, then the blocks again in one batch; -dd traces each operation', async (t) => {
    const port = await freePort();
    const now = Math.floor(Date.now() / 1000);
    const daemon = await batchDaemon(t, port, seeded(2, port, now), ['-r']);
    await until(() => daemon.entries().every((e) => e.id.startsWith('id-')));
    const calls = daemon.helperCalls().length;
    daemon.child.kill('SIGHUP');
    await until(() => daemon.helperCalls().length === calls + 4);
    assert.deepEqual(daemon.helperCalls().slice(calls), [
      'flush blocklistd',
      'batch 2',
      `add blocklistd tcp 10.2.0.0 32 ${port} id-10.2.0.0:${port}`,
      `add blocklistd tcp 10.2.0.1 32 ${port} id-10.2.0.1:${port}`,
    ]);
    await daemon.waitFor(
      new RegExp(`run \\S+ \\[control add blocklistd tcp 10\\.2\\.0\\.1 32 ${port} id-10\\.2\\.0\\.1:${port}\\] \\(batch\\)`),
    );
    await daemon.waitFor(new RegExp(`add returns OK id-10\\.2\\.0\\.1:${port}`));
  });
});
