// Bounded memory and database, and the hardening of issue 13: counts kept
// by triggers (no table scan per scrape or status), --max-entries eviction,
// owner-only database files, an unblock of everything that does not stall
// the event loop, capped control and metrics connections, --control-group
// read at each connection, and a configuration directory with a FIFO in it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { MAX_CONNECTIONS } from '../src/daemon/control.js';
import { METRICS_MAX_CONNECTIONS } from '../src/daemon/metrics.js';
import { APPLICATION_ID, StateStore } from '../src/state/store.js';
import {
  controlStatus,
  ctl,
  freePort,
  isRoot,
  run,
  runBlprobe,
  sharedTree,
  startDaemon,
  stateKey as key,
  tempDir,
  until,
} from './support.js';

const NOBODY = 65534;

/** What the table says, counted the slow way. */
function counted(path: string): { entries: number; blocked: number } {
  const db = new Database(path, { readonly: true });
  try {
    return db
      .prepare("SELECT count(*) AS entries, count(*) FILTER (WHERE id != '' OR (nfail >= 0 AND count >= nfail)) AS blocked FROM entry")
      .get() as { entries: number; blocked: number };
  } finally {
    db.close();
  }
}

/** `n` entries not blocked, counted at `last`, addresses from 10.0.0.0 on. */
function preload(path: string, n: number, last = Math.floor(Date.now() / 1000)): void {
  const store = StateStore.open(path);
  store.transaction(() => {
    for (let i = 0; i < n; i++)
      store.put({ key: key(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, { duration: 86400 * 365 }), count: 1, last, id: '' });
  });
  store.close();
}

describe('StateStore: kept counts, eviction, file modes', () => {
  const dir = tempDir();

  test('size and blocked count are kept exactly through inserts, updates across the limit, deletes, rollbacks and truncation', () => {
    const path = join(dir, 'counts.db');
    const store = StateStore.open(path);
    const check = (what: string): void => assert.deepEqual({ entries: store.size(), blocked: store.blockedCount() }, counted(path), what);
    for (let i = 0; i < 50; i++) store.put({ key: key(`192.0.2.${i}`), count: i % 4, last: 100 + i, id: i % 7 === 0 ? 'rule' : '' });
    check('inserted');
    // an entry reaching its limit, one getting a rule id, one losing it, one plain put over an existing key
    store.put({ ...store.get(key('192.0.2.1'))!, count: 3 });
    store.put({ ...store.get(key('192.0.2.2'))!, id: 'x' });
    store.put({ ...store.get(key('192.0.2.7'))!, id: '' });
    store.put({ key: key('192.0.2.5'), count: 9, last: 1, id: '' });
    check('updated');
    store.delete(key('192.0.2.3'));
    store.delete(key('192.0.2.14'));
    store.put({ key: key('198.51.100.1', { name: 'other' }), count: 5, last: 1, id: 'y' });
    assert.equal(store.deleteName('other'), 1);
    check('deleted');
    assert.throws(() =>
      store.transaction(() => {
        store.put({ key: key('203.0.113.1'), count: 3, last: 1, id: '' });
        store.delete(key('192.0.2.4'));
        throw new Error('rolled back');
      }),
    );
    check('rolled back');
    store.truncate();
    check('truncated');
    assert.equal(store.size(), 0);
    store.close();
  });

  test('size and blocked count cost no scan: 2,000 reads at 200,000 entries in well under a second', () => {
    const path = join(dir, 'large.db');
    preload(path, 200_000);
    const store = StateStore.open(path);
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) assert.equal(store.size() + store.blockedCount(), 200_000);
    const ms = performance.now() - t0;
    store.close();
    // a count(*) of 200,000 rows takes milliseconds: 2,000 of them would take seconds
    assert.ok(ms < 250, `${ms.toFixed(0)} ms`);
  });

  test('a database of schema 1 is upgraded with its counts right', () => {
    const path = join(dir, 'v1.db');
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma(`application_id = ${APPLICATION_ID}`);
    db.exec(`CREATE TABLE entry (name TEXT NOT NULL, address TEXT NOT NULL, port INTEGER NOT NULL,
       family INTEGER NOT NULL, lmask INTEGER NOT NULL,
       proto INTEGER NOT NULL, uid INTEGER NOT NULL, nfail INTEGER NOT NULL, rmask INTEGER NOT NULL, duration INTEGER NOT NULL,
       count INTEGER NOT NULL, last INTEGER NOT NULL, id TEXT NOT NULL,
       UNIQUE (address, port, name, family, lmask, proto, uid, nfail, rmask, duration));
       CREATE INDEX entry_expiry ON entry (last + duration) WHERE duration >= 0;
       PRAGMA user_version = 1;`);
    const insert = db.prepare("INSERT INTO entry VALUES ('blocklistd', ?, 22, 2, 32, 6, -1, 3, -1, 3600, ?, 100, ?)");
    for (let i = 0; i < 30; i++) insert.run(`192.0.2.${i}`, i % 5, i % 10 === 0 ? 'r' : '');
    db.close();
    const store = StateStore.open(path);
    assert.deepEqual({ entries: store.size(), blocked: store.blockedCount() }, counted(path));
    assert.deepEqual(counted(path), { entries: 30, blocked: 15 }); // count 3 or 4 of 3: 12; a rule id at count 0: 3
    store.close();
  });

  test('evict: the least recently counted entries not blocked go first; blocked ones and those held back never', () => {
    const store = StateStore.open(join(dir, 'evict.db'));
    for (let i = 0; i < 10; i++) store.put({ key: key(`192.0.2.${i}`), count: 1, last: 1000 - i, id: '' }); // .9 oldest
    store.put({ key: key('198.51.100.1'), count: 3, last: 1, id: '' }); // at its limit, oldest of all
    store.put({ key: key('198.51.100.2'), count: 0, last: 2, id: 'rule' }); // in the filter
    const held = (k: { address: string }): boolean => k.address === '192.0.2.8';
    assert.equal(store.evict(3, held, 1), 3);
    const left = new Set([...store.entries()].map((e) => e.key.address));
    for (const gone of ['192.0.2.9', '192.0.2.7', '192.0.2.6']) assert.ok(!left.has(gone), gone);
    for (const kept of ['192.0.2.8', '198.51.100.1', '198.51.100.2', '192.0.2.0']) assert.ok(left.has(kept), kept);
    // asked for more than can go: only the entries not blocked go
    assert.equal(
      store.evict(100, () => false, 0),
      7,
    );
    assert.deepEqual([...store.entries()].map((e) => e.key.address).sort(), ['198.51.100.1', '198.51.100.2']);
    assert.equal(store.size(), 2);
    store.close();
  });

  test('evict across durations: soonest expiry first, entries that never expire last and oldest first', () => {
    const store = StateStore.open(join(dir, 'evict-order.db'));
    store.put({ key: key('192.0.2.1', { duration: 60 }), count: 1, last: 1000, id: '' }); // expires at 1060
    store.put({ key: key('192.0.2.2', { duration: 3600 }), count: 1, last: 500, id: '' }); // 4100
    store.put({ key: key('192.0.2.3', { duration: 10 }), count: 1, last: 900, id: '' }); // 910
    store.put({ key: key('192.0.2.4', { duration: -1 }), count: 1, last: 10, id: '' }); // never, oldest
    store.put({ key: key('192.0.2.5', { duration: -1 }), count: 1, last: 20, id: '' }); // never
    store.put({ key: key('192.0.2.6', { duration: -1 }), count: 3, last: 1, id: '' }); // never, at its limit
    const order: string[] = [];
    for (let i = 0; i < 6; i++) {
      const before = new Set([...store.entries()].map((e) => e.key.address));
      if (store.evict(1, () => false, 0) === 0) break;
      const after = new Set([...store.entries()].map((e) => e.key.address));
      order.push([...before].find((a) => !after.has(a))!);
    }
    assert.deepEqual(order, ['192.0.2.3', '192.0.2.1', '192.0.2.2', '192.0.2.4', '192.0.2.5']);
    assert.deepEqual({ entries: store.size(), blocked: store.blockedCount() }, { entries: 1, blocked: 1 });
    store.close();
  });

  test('the kept counts match the table after 20,000 random writes of every kind', () => {
    const path = join(dir, 'random.db');
    const store = StateStore.open(path);
    let seed = 42;
    const random = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const k = (): ReturnType<typeof key> =>
      key(`198.51.100.${random(60)}`, {
        nfail: random(3) === 0 ? -1 : 3,
        duration: random(4) === 0 ? -1 : 3600,
        name: random(5) === 0 ? 'other' : 'blocklistd',
      });
    for (let i = 0; i < 20_000; i++) {
      const op = random(10);
      const e = store.get(k());
      if (op < 5 && e !== undefined) store.put({ ...e, count: random(6), last: random(5000), id: random(4) === 0 ? 'r' : e.id });
      else if (op < 7) store.put({ key: k(), count: random(6), last: random(5000), id: random(5) === 0 ? 'r' : '' });
      else if (op === 7) store.delete(k());
      else if (op === 8 && random(20) === 0) store.deleteName('other', random(5) + 1);
      else if (op === 8) store.evict(random(3) + 1, () => random(2) === 0, 10);
      else {
        assert.throws(() =>
          store.transaction(() => {
            store.put({ key: k(), count: random(6), last: 1, id: 'x' });
            store.delete(k());
            throw new Error('rolled back');
          }),
        );
      }
      if (i % 500 === 0) assert.deepEqual({ entries: store.size(), blocked: store.blockedCount() }, counted(path), `after ${i} writes`);
    }
    assert.deepEqual({ entries: store.size(), blocked: store.blockedCount() }, counted(path));
    store.close();
  });

  test('an existing database and its -wal and -shm readable by others are made owner-only, and said so', () => {
    const path = join(dir, 'modes.db');
    const first = StateStore.open(path);
    first.put({ key: key('192.0.2.1'), count: 1, last: 1, id: '' });
    // a second connection keeps the -wal and -shm files in place
    const other = new Database(path);
    for (const file of [path, `${path}-wal`, `${path}-shm`]) chmodSync(file, 0o644);
    const store = StateStore.open(path);
    assert.deepEqual(store.modesFixed, [`${path} (0644)`, `${path}-wal (0644)`, `${path}-shm (0644)`]);
    for (const file of [path, `${path}-wal`, `${path}-shm`]) assert.equal(statSync(file).mode & 0o777, 0o600, file);
    store.close();
    other.close();
    first.close();
    assert.deepEqual(StateStore.open(path).modesFixed, [], 'nothing to change the next time');
  });
});

describe('blocklistd --max-entries', () => {
  test(
    'a spray of distinct addresses: the oldest entries not blocked are evicted, blocked ones stay; a ' + 'lowered limit applies at start',
    async (t) => {
      const [blockPort, countPort] = [await freePort(), await freePort()];
      const config = `${blockPort} dgram * * * 1 1h\n${countPort} dgram * * * 1000000 1h\n`;
      const daemon = await startDaemon(t, config, ['--max-entries', '100']);
      const control = daemon.control;
      const spray = async (port: number, n: number, base: string): Promise<void> => {
        const r = await runBlprobe([
          '-s',
          daemon.socket,
          '-u',
          '-p',
          String(port),
          '-F',
          String(n),
          '-M',
          String(n),
          '-A',
          base,
          '-w',
          '30000',
        ]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
      };
      await spray(blockPort, 5, '10.1.0.1');
      await until(() => daemon.helperCalls().filter((c) => c.startsWith('add ')).length === 5);
      await spray(countPort, 500, '10.2.0.1');
      // a second later: the next 95 are younger than every one of the 500
      await new Promise((resolve) => setTimeout(resolve, 1100));
      await spray(countPort, 95, '10.3.0.1');
      let s = await controlStatus(control);
      assert.equal(s.entries, 100);
      assert.equal(s.blocked, 5);
      assert.equal(s.counters.evictions.total, 500);
      let entries = daemon.entries();
      assert.equal(entries.filter((e) => e.key.address.startsWith('10.1.')).length, 5, 'the blocked entries');
      assert.equal(entries.filter((e) => e.key.address.startsWith('10.3.')).length, 95, 'the youngest');
      await daemon.waitFor(/--max-entries 100 reached: evicted \d+ entries not blocked, soonest expiry first/);

      await daemon.stop();
      const again = await startDaemon(t, config, ['--max-entries', '50'], { dir: daemon.dir });
      s = await controlStatus(again.control);
      assert.equal(s.entries, 50);
      assert.equal(s.blocked, 5);
      entries = again.entries();
      assert.equal(entries.filter((e) => e.key.address.startsWith('10.1.')).length, 5, 'the blocked entries stay');
    },
  );
});

/** How long status requests on one connection wait for their answers, one after another, until `work` is done. */
async function statusLatencies<T>(control: string, work: Promise<T>): Promise<{ result: T; latencies: number[] }> {
  let done = false;
  const working = work.finally(() => (done = true));
  // a raw connection: a blocklistctl process per request would measure its own start-up
  const c = net.connect(control);
  c.setEncoding('utf8');
  let buffered = '';
  const answer = (): Promise<void> =>
    new Promise((resolve) => {
      const onData = (d: string): void => {
        buffered += d;
        if (!buffered.includes('\n')) return;
        buffered = buffered.slice(buffered.indexOf('\n') + 1);
        c.off('data', onData);
        resolve();
      };
      c.on('data', onData);
      c.write('{"version":1,"command":"status"}\n');
    });
  const latencies: number[] = [];
  while (!done) {
    const t0 = performance.now();
    await answer();
    latencies.push(performance.now() - t0);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  c.destroy();
  return { result: await working, latencies };
}

describe('no stalls, no descriptor hoarding', () => {
  test('unblock --all of 100,000 entries: done a page at a time; status requests meanwhile answered within 1 s', async (t) => {
    const dir = tempDir('blocklistd-daemon-');
    preload(join(dir, 'blocklistd.db'), 100_000);
    const daemon = await startDaemon(t, `${await freePort()} stream * * * 3 1h\n`, [], { dir });
    const control = daemon.control;
    const { result: r, latencies } = await statusLatencies(control, ctl(['unblock', '--all', '--json', '--control', control]));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as { result: { counts: unknown } }).result.counts, { released: 0, deleted: 100_000, failed: 0 });
    assert.equal((await controlStatus(control)).entries, 0);
    const worst = Math.max(...latencies);
    t.diagnostic(`${latencies.length} status requests during the unblock, the slowest ${worst.toFixed(0)} ms`);
    assert.ok(latencies.length >= 2, 'the unblock took turns with the status requests');
    assert.ok(worst < 1000, `a status request waited ${worst.toFixed(0)} ms`);
  });

  test('flush of a name with 300,000 entries: deleted a chunk at a time; status requests meanwhile answered within 400 ms', async (t) => {
    const dir = tempDir('blocklistd-daemon-');
    preload(join(dir, 'blocklistd.db'), 300_000);
    const daemon = await startDaemon(t, `${await freePort()} stream * * * 3 1h\n`, [], { dir });
    const control = daemon.control;
    const { result: r, latencies } = await statusLatencies(control, ctl(['flush', '--json', '--control', control, 'blocklistd']));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as { result: unknown }).result, { names: [{ name: 'blocklistd', ok: true, deleted: 300_000 }] });
    assert.equal((await controlStatus(control)).entries, 0);
    const worst = Math.max(...latencies);
    t.diagnostic(`${latencies.length} status requests during the flush, the slowest ${worst.toFixed(0)} ms`);
    // one DELETE of them all holds the event loop for most of a second
    assert.ok(worst < 400, `a status request waited ${worst.toFixed(0)} ms`);
  });

  test(`control connections beyond ${MAX_CONNECTIONS} are told busy and closed; a slot freed is served again`, async (t) => {
    const daemon = await startDaemon(t, `${await freePort()} stream * * * 3 1h\n`);
    const control = daemon.control;
    const open = (): Promise<net.Socket> =>
      new Promise((resolve, reject) => {
        const s = net.connect(control, () => resolve(s));
        s.once('error', reject);
      });
    const held: net.Socket[] = [];
    t.after(() => held.forEach((s) => s.destroy()));
    for (let i = 0; i < MAX_CONNECTIONS; i++) held.push(await open());
    // all accepted and served: a status on the last one answers
    const ask = (s: net.Socket): Promise<string> =>
      new Promise((resolve) => {
        let text = '';
        s.setEncoding('utf8');
        s.on('data', (d: string) => (text += d));
        s.on('close', () => resolve(text));
        s.on('end', () => resolve(text));
        s.write('{"version":1,"id":1,"command":"status"}\n');
        setTimeout(() => resolve(text), 3000).unref();
      });
    const extra = await open();
    const refused = await ask(extra);
    assert.match(refused, /"code":"busy"/);
    assert.match(refused, new RegExp(`${MAX_CONNECTIONS} control connections are open`));
    held.pop()!.destroy();
    await until(() => daemon.stderr.length > 0); // a turn for the daemon to see the close
    await new Promise((resolve) => setTimeout(resolve, 200));
    const s = await controlStatus(control);
    assert.equal(s.pid, daemon.child.pid);
  });

  test(`metrics connections beyond ${METRICS_MAX_CONNECTIONS} are closed at once; scrapes go on once they are fewer`, async (t) => {
    const port = await freePort();
    const daemon = await startDaemon(t, `${await freePort()} stream * * * 3 1h\n`, ['--metrics', `127.0.0.1:${port}`]);
    await daemon.waitFor(/metrics on http/);
    const held: net.Socket[] = [];
    t.after(() => held.forEach((s) => s.destroy()));
    const open = (): Promise<net.Socket> =>
      new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => resolve(s));
        s.once('error', reject);
      });
    for (let i = 0; i < METRICS_MAX_CONNECTIONS; i++) held.push(await open());
    await new Promise((resolve) => setTimeout(resolve, 200));
    const extra = await open();
    const closed = await new Promise<boolean>((resolve) => {
      extra.on('close', () => resolve(true));
      extra.on('error', () => {});
      extra.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n');
      setTimeout(() => resolve(false), 3000).unref();
    });
    assert.ok(closed, 'the connection beyond the cap is closed');
    held.splice(0).forEach((s) => s.destroy());
    await new Promise((resolve) => setTimeout(resolve, 200));
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /blocklistd_entries 0/);
    assert.equal(daemon.child.exitCode, null);
  });
});

describe('hardening', () => {
  test('a FIFO (and a directory) in blocklistd.conf.d: start and reloads read the rest, the FIFO is an error, nothing hangs', async (t) => {
    const dir = tempDir('blocklistd-daemon-');
    const port = await freePort();
    mkdirSync(join(dir, 'blocklistd.conf.d'));
    writeFileSync(join(dir, 'blocklistd.conf.d', 'a.conf'), `${port} stream * * * 3 1h\n`);
    execFileSync('mkfifo', [join(dir, 'blocklistd.conf.d', 'fifo')]);
    mkdirSync(join(dir, 'blocklistd.conf.d', 'sub'));
    const daemon = await startDaemon(t, '', [], { dir });
    await daemon.waitFor(/blocklistd\.conf\.d\/fifo: Cannot open '[^']*fifo' \(not a regular file\)/);
    const control = daemon.control;
    const r = await ctl(['reload', '--json', '--control', control]);
    assert.equal(r.code, 1);
    const answer = JSON.parse(r.stdout) as { error: { code: string; details: { diagnostics: string[] } } };
    assert.equal(answer.error.code, 'config_error');
    assert.ok(
      answer.error.details.diagnostics.some((d) => /fifo' \(not a regular file\)$/.test(d)),
      JSON.stringify(answer),
    );
    assert.ok(
      answer.error.details.diagnostics.some((d) => /sub' \(Is a directory\)$/.test(d)),
      JSON.stringify(answer),
    );
    // SIGHUP applies what could be read
    const from = daemon.stderr.length;
    daemon.child.kill('SIGHUP');
    await daemon.waitFor(/not a regular file/, from);
    const s = await controlStatus(control);
    assert.deepEqual((s as unknown as { rules: unknown }).rules, { local: 1, remote: 0 });
  });

  test('a database left 0644 by an older version is made 0600, its -wal and -shm too, with a warning', async (t) => {
    const dir = tempDir('blocklistd-daemon-');
    const path = join(dir, 'blocklistd.db');
    preload(path, 10);
    chmodSync(path, 0o644);
    const daemon = await startDaemon(t, `${await freePort()} stream * * * 3 1h\n`, [], { dir });
    await daemon.waitFor(/blocklistd\.db \(0644\): others could read the database; mode changed to owner-only/);
    for (const file of [path, `${path}-wal`, `${path}-shm`]) assert.equal(statSync(file).mode & 0o777, 0o600, file);
  });

  test(
    '--control-group: the group database is read at each connection; a member removed is refused from then on',
    { skip: !isRoot && 'needs root to create a group and run blocklistctl as another user' },
    async (t) => {
      const group = `bltest${process.pid}`;
      execFileSync('groupadd', [group]);
      t.after(() => execFileSync('groupdel', [group]));
      execFileSync('gpasswd', ['-a', 'nobody', group], { stdio: 'ignore' });
      const daemon = await startDaemon(t, `${await freePort()} stream * * * 3 1h\n`, ['--control-group', group]);
      chmodSync(daemon.dir, 0o755);
      const control = daemon.control;
      // the file lets anyone in: what is tried is the daemon's own check, by the listed membership alone
      chmodSync(control, 0o666);
      const asNobody = (): Promise<{ code: number | null; stdout: string; stderr: string }> =>
        run('setpriv', [
          `--reuid=${NOBODY}`,
          `--regid=${NOBODY}`,
          '--clear-groups',
          process.execPath,
          join(sharedTree(), 'bin/blocklistctl'),
          'status',
          '--json',
          '--control',
          control,
        ]);
      let r = await asNobody();
      assert.equal(r.code, 0, r.stdout + r.stderr);
      execFileSync('gpasswd', ['-d', 'nobody', group], { stdio: 'ignore' });
      r = await asNobody();
      assert.equal(r.code, 1);
      assert.match(r.stdout, /access_denied/);
      execFileSync('gpasswd', ['-a', 'nobody', group], { stdio: 'ignore' });
      r = await asNobody();
      assert.equal(r.code, 0, 'added again: served again');
    },
  );
});
