// The state database on real SQLite files: operations, schema and
// ownership checks, a reader beside a writing process, and kill -9 of a
// writer mid-loop.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { APPLICATION_ID, SCHEMA_VERSION, StateError, StateStore } from '../src/state/store.js';
import type { Entry } from '../src/types.js';
import { stateKey as key, repoRoot, run, tempDir } from './support.js';

const plain = (e: Entry | undefined): Entry | undefined => e && { key: e.key, count: e.count, last: e.last, id: e.id };

describe('StateStore', () => {
  const dir = tempDir();

  test('a new file: parent directories created, mode 0600, WAL, marked as ours with its schema version', () => {
    const path = join(dir, 'a', 'b', 'blocklistd.db');
    const store = StateStore.open(path);
    store.put({ key: key('192.0.2.1'), count: 2, last: 100, id: '' });
    store.close();
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const db = new Database(path, { readonly: true });
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(db.pragma('application_id', { simple: true }), APPLICATION_ID);
    assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    db.close();
  });

  test('a restore as one: its lines, its entries in flight, its ids written where unchanged, the starts it keeps', () => {
    const store = StateStore.open(join(dir, 'restore.db'));
    store.put({ key: key('192.0.2.4'), count: 1, last: 100, id: '' }); // counting: no block
    store.put({ key: key('192.0.2.5', { name: 'other' }), count: 3, last: 100, id: 'old' }); // a name not restored
    store.put({ key: key('192.0.2.6', { port: -1 }), count: 3, last: 100, id: 'old' }); // every port: no batch line
    // the last the highest rowid: deleted, its rowid goes to the next entry
    for (const a of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) store.put({ key: key(a), count: 3, last: 100, id: 'old' });
    assert.equal(store.restoreBegin(['blocklistd']), 3);
    assert.deepEqual(
      store.restoreOthers(['blocklistd']).map((e) => e.key.address),
      ['192.0.2.5', '192.0.2.6'],
    );
    assert.equal(store.restoreLines(), ['1', '2', '3'].map((n) => `add blocklistd tcp 192.0.2.${n} 32 22 old\n`).join(''));
    assert.deepEqual(store.restoring(key('192.0.2.1')), { count: 3, last: 100 });
    assert.equal(store.restoring(key('192.0.2.4')), undefined);
    // 192.0.2.2 counted meanwhile; 192.0.2.3 deleted, and its rowid taken by another entry
    store.put({ ...store.get(key('192.0.2.2'))!, count: 4, last: 105 });
    store.delete(key('192.0.2.3'));
    store.put({ key: key('192.0.2.7'), count: 3, last: 106, id: '' });
    assert.equal(
      new Database(join(dir, 'restore.db'), { readonly: true })
        .prepare("SELECT rowid FROM entry WHERE address = '192.0.2.7'")
        .pluck()
        .get(),
      6,
    );
    assert.equal(store.restoring(key('192.0.2.3')), undefined, 'its entry gone');
    assert.equal(store.restoreWrite('OK'), 2);
    assert.deepEqual(
      store.restoreChanged().map((e) => [e.key.address, e.count, e.last, e.id]),
      [['192.0.2.3', 3, 100, 'old']],
    );
    assert.deepEqual([...store.restoreSettled()], [['blocklistd', 2]]);
    assert.deepEqual(
      [...store.entries()].map((e) => [e.key.address, e.id]),
      [
        ['192.0.2.1', 'OK'],
        ['192.0.2.2', 'OK'],
        ['192.0.2.4', ''],
        ['192.0.2.6', 'old'],
        ['192.0.2.7', ''],
        ['192.0.2.5', 'old'],
      ],
    );
    assert.equal(store.restoring(key('192.0.2.1')), undefined, 'the restore is over');
    assert.equal(store.restoredSince(key('192.0.2.2')), 100, 'the last failure read');
    // a second restore keeps the starts the first knew, and learns the others
    store.forgetRestoredSince(key('192.0.2.1'));
    store.put({ ...store.get(key('192.0.2.1'))!, last: 110 });
    assert.equal(store.restoreBegin(['blocklistd']), 3);
    assert.equal(store.restoreWrite('OK'), 1, 'only the id not in place yet');
    store.restoreChanged();
    assert.deepEqual([...store.restoreSettled()], [['blocklistd', 3]]);
    assert.deepEqual(
      ['192.0.2.1', '192.0.2.2', '192.0.2.7'].map((a) => store.restoredSince(key(a))),
      [110, 100, 106],
    );
    store.forgetRestoredSinceName('blocklistd');
    assert.equal(store.restoredSince(key('192.0.2.2')), undefined);
    store.close();
  });

  test('get, put, delete, size, truncate; a key is all ten fields', () => {
    const store = StateStore.open(join(dir, 'ops.db'));
    assert.equal(store.get(key('192.0.2.1')), undefined);
    store.put({ key: key('192.0.2.1'), count: 2, last: 100, id: '' });
    const e = store.get(key('192.0.2.1'))!;
    assert.deepEqual(plain(e), { key: key('192.0.2.1'), count: 2, last: 100, id: '' });
    store.put({ ...e, count: 4, last: 101, id: 'OK' });
    assert.deepEqual(plain(store.get(key('192.0.2.1'))), { key: key('192.0.2.1'), count: 4, last: 101, id: 'OK' });
    // any differing field is another entry (state-and-ctl.md §1.1)
    for (const other of [
      { nfail: 6 },
      { duration: -1 },
      { name: 'x' },
      { rmask: 24 },
      { uid: 0 },
      { port: 23 },
      { proto: 17 },
      { lmask: 24 },
      { family: 10 },
    ]) {
      assert.equal(store.get(key('192.0.2.1', other)), undefined, JSON.stringify(other));
    }
    // a plain entry for an existing key replaces it
    store.put({ key: key('192.0.2.1'), count: 9, last: 102, id: 'x' });
    assert.equal(store.size(), 1);
    assert.equal(store.get(key('192.0.2.1'))!.count, 9);
    // an entry read before a delete is written back as new
    const stale = store.get(key('192.0.2.1'))!;
    assert.equal(store.delete(key('192.0.2.1')), true);
    assert.equal(store.delete(key('192.0.2.1')), false);
    store.put({ ...stale, count: 1 });
    assert.equal(store.get(key('192.0.2.1'))!.count, 1);
    store.truncate();
    assert.equal(store.size(), 0);
    store.close();
  });

  test('an entry read before its row was deleted and the rowid reused updates nothing else', () => {
    const store = StateStore.open(join(dir, 'rowid.db'));
    store.put({ key: key('192.0.2.1'), count: 1, last: 1, id: '' });
    store.put({ key: key('192.0.2.2'), count: 1, last: 1, id: '' });
    const stale = store.get(key('192.0.2.2'))!;
    store.delete(key('192.0.2.2'));
    store.put({ key: key('192.0.2.3'), count: 7, last: 7, id: 'b' }); // takes the freed rowid
    store.put({ ...stale, count: 3, last: 300, id: 'OK' });
    assert.deepEqual(plain(store.get(key('192.0.2.3'))), { key: key('192.0.2.3'), count: 7, last: 7, id: 'b' });
    assert.deepEqual(plain(store.get(key('192.0.2.2'))), { key: key('192.0.2.2'), count: 3, last: 300, id: 'OK' });
    store.close();
  });

  test('processes opening a new database at the same time all succeed', async () => {
    const path = join(dir, 'race.db');
    const script = `import { StateStore } from ${JSON.stringify(join(repoRoot, 'dist/src/state/store.js'))};
      const s = StateStore.open(${JSON.stringify(path)});
      const address = '10.0.0.' + process.pid % 250;
      const key = { family: 2, address, lmask: 32, port: 22, proto: 6, uid: -1, name: 'x', rmask: -1, nfail: 3, duration: 60 };
      s.put({ key, count: 1, last: 1, id: '' }); s.close();`;
    const results = await Promise.all(Array.from({ length: 8 }, () => run(process.execPath, ['--input-type=module', '-e', script])));
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const store = StateStore.open(path, { readonly: true });
    assert.ok(store.size() >= 1);
    store.close();
  });

  test('a read-only open of a file no daemon has initialised shows no entries', () => {
    const path = join(dir, 'fresh.db');
    writeFileSync(path, '');
    const store = StateStore.open(path, { readonly: true });
    assert.deepEqual([...store.entries()], []);
    assert.equal(store.size(), 0);
    store.close();
  });

  test('a read-only store refuses every write with one error, whether the file was initialised or not', () => {
    const initialised = join(dir, 'read-only-initialised.db');
    const writer = StateStore.open(initialised);
    writer.put({ key: key('192.0.2.7'), count: 9, last: 100, id: '' });
    writer.close();
    const fresh = join(dir, 'read-only-fresh.db');
    writeFileSync(fresh, '');
    for (const path of [initialised, fresh]) {
      const store = StateStore.open(path, { readonly: true });
      const writes: Record<string, () => unknown> = {
        put: () => store.put({ key: key('192.0.2.8'), count: 1, last: 100, id: '' }),
        delete: () => store.delete(key('192.0.2.7')),
        evict: () => store.evict(1, () => false, 0),
        deleteName: () => store.deleteName('blocklistd'),
        shiftTimes: () => store.shiftTimes(10),
        limitTimes: () => store.limitTimes(0),
        truncate: () => store.truncate(),
      };
      for (const [method, write] of Object.entries(writes)) {
        const refused = (e: unknown): boolean =>
          e instanceof StateError && e.name === 'StateError' && e.code === 'read_only' && e.message === `'${path}' is opened read-only`;
        assert.throws(write, refused, `${method} on ${path}`);
      }
      assert.equal(store.size(), path === initialised ? 1 : 0, 'nothing written');
      store.close();
    }
  });

  test(
    'a database the daemon cannot write is an error, not a silent read-only open',
    { skip: process.getuid?.() === 0 && 'root may write any file' },
    () => {
      const path = join(dir, 'readonly.db');
      StateStore.open(path).close();
      chmodSync(path, 0o400);
      assert.throws(
        () => StateStore.open(path),
        (e: unknown) => e instanceof StateError && e.message === `Can't open '${path}': Permission denied`,
      );
    },
  );

  test('entries in order of name, address, port; next expiry and due entries without a scan', () => {
    const store = StateStore.open(join(dir, 'expiry.db'));
    store.put({ key: key('192.0.2.9', { name: 'b', duration: 60 }), count: 2, last: 1000, id: '' });
    store.put({ key: key('192.0.2.1', { name: 'b', port: 80, duration: 10 }), count: 2, last: 1000, id: '' });
    store.put({ key: key('192.0.2.1', { name: 'b', port: 22 }), count: 2, last: 1000, id: '' });
    store.put({ key: key('2001:db8::1', { name: 'a', family: 10, lmask: 128, duration: -1 }), count: 2, last: 1000, id: 'id' });
    store.put({ key: key('192.0.2.5', { name: 'c', duration: 5 }), count: 0, last: 0, id: '' });
    assert.deepEqual(
      [...store.entries()].map((e) => `${e.key.name} ${e.key.address} ${e.key.port}`),
      ['a 2001:db8::1 22', 'b 192.0.2.1 22', 'b 192.0.2.1 80', 'b 192.0.2.9 22', 'c 192.0.2.5 22'],
    );
    assert.equal(store.nextExpiry(), 5, 'a reset entry (last 0) expires at its duration');
    assert.deepEqual(
      store.due(5).map((e) => e.key.address),
      [],
      'expired means last + duration < now',
    );
    assert.deepEqual(
      store.due(1011).map((e) => `${e.key.address}:${e.key.port}`),
      ['192.0.2.5:22', '192.0.2.1:80'],
    );
    assert.deepEqual(store.due(1_000_000).length, 4, 'never the forever entry');
    // an escalated block's end is last + duration + hold (doc/escalation.md §3); the store's statements spell it so
    const plan = new Database(join(dir, 'expiry.db'), { readonly: true })
      .prepare('EXPLAIN QUERY PLAN SELECT min(last + duration + hold) FROM entry WHERE duration >= 0 AND hold >= 0')
      .all() as { detail: string }[];
    assert.match(plan.map((p) => p.detail).join('\n'), /USING (COVERING )?INDEX entry_expiry/);
    store.close();
  });

  test('a transaction groups writes, and a throw rolls them back', () => {
    const store = StateStore.open(join(dir, 'tx.db'));
    store.transaction(() => {
      for (let i = 0; i < 100; i++) store.put({ key: key(`10.0.0.${i}`), count: 1, last: i, id: '' });
    });
    assert.equal(store.size(), 100);
    assert.throws(() =>
      store.transaction(() => {
        store.truncate();
        throw new Error('abort');
      }),
    );
    assert.equal(store.size(), 100);
    store.close();
  });

  test('a file that is not a database is an error and is left alone, unless asked to move it aside', () => {
    const path = join(dir, 'upstream.db');
    writeFileSync(path, Buffer.alloc(8192, 0x61));
    assert.throws(
      () => StateStore.open(path),
      (e: unknown) =>
        e instanceof StateError && e.invalid && e.message.startsWith(`'${path}' is not a blocklistd database (file is not a database)`),
    );
    assert.equal(readFileSync(path).length, 8192);
    const store = StateStore.open(path, { renameInvalid: true });
    assert.equal(store.size(), 0);
    store.close();
    const aside = readdirSync(dir).filter((f) => f.startsWith('upstream.db.invalid-'));
    assert.equal(aside.length, 1);
    assert.equal(readFileSync(join(dir, aside[0])).length, 8192);
  });

  test("another program's SQLite database is refused", () => {
    const path = join(dir, 'foreign.db');
    const db = new Database(path);
    db.exec('CREATE TABLE t (x)');
    db.close();
    assert.throws(
      () => StateStore.open(path),
      (e: unknown) => e instanceof StateError && /not a blocklistd database \(application id 0\)/.test(e.message),
    );
  });

  test('a database from a newer blocklistd is refused', () => {
    const path = join(dir, 'newer.db');
    StateStore.open(path).close();
    const db = new Database(path);
    db.pragma('user_version = 99');
    db.close();
    assert.throws(
      () => StateStore.open(path),
      (e: unknown) => e instanceof StateError && /newer blocklistd \(schema 99/.test(e.message),
    );
  });

  test('a damaged database is refused, not used', () => {
    const path = join(dir, 'damaged.db');
    const store = StateStore.open(path);
    store.transaction(() => {
      for (let i = 0; i < 5000; i++)
        store.put({ key: key(`10.0.${i >> 8}.${i & 255}`, { name: 'x'.repeat(50) }), count: 1, last: i, id: '' });
    });
    store.close();
    const bytes = readFileSync(path);
    bytes.fill(0xff, 4096 * 5, 4096 * 12); // garble some pages, keep the header
    writeFileSync(path, bytes);
    assert.throws(
      () => StateStore.open(path),
      (e: unknown) => e instanceof StateError && e.invalid,
    );
  });

  test('a reader beside a writing process: never SQLITE_BUSY, at most one batch behind (G13)', async (t) => {
    const path = join(dir, 'live.db');
    StateStore.open(path).close();
    const writer = spawn(process.execPath, [join(repoRoot, 'dist/test/state-writer.js'), path, '0', '1'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => writer.kill('SIGKILL'));
    let acknowledged = 0;
    writer.stdout.on('data', (d: Buffer) => {
      const lines = d.toString().trim().split('\n');
      acknowledged = Number(lines[lines.length - 1]);
    });
    const reader = StateStore.open(path, { readonly: true });
    let reads = 0;
    const deadline = Date.now() + 1500;
    while (Date.now() < deadline) {
      const before = acknowledged;
      const seen = reader.size();
      assert.ok(seen >= before * 10, `saw ${seen} entries after ${before} acknowledged batches of 10`);
      reads++;
      await new Promise((resolve) => setImmediate(resolve));
    }
    reader.close();
    // blocklistctl itself, many times while the writer writes
    const dumps = await Promise.all(
      Array.from({ length: 8 }, () => run(process.execPath, [join(repoRoot, 'bin/blocklistctl'), 'dump', '-a', '-D', path])),
    );
    for (const d of dumps) assert.equal(d.code, 0, d.stderr);
    assert.ok(acknowledged > 10 && reads > 10, `${acknowledged} batches written, ${reads} reads`);
    t.diagnostic(`${acknowledged} batches written while ${reads} reads and 8 dumps ran`);
  });

  test('kill -9 of a writer mid-loop: the file opens, integrity ok, every acknowledged write present', async (t) => {
    const rounds = 5;
    let checked = 0;
    for (let round = 0; round < rounds; round++) {
      const path = join(dir, `killed-${round}.db`);
      const writer = spawn(process.execPath, [join(repoRoot, 'dist/test/state-writer.js'), path, String(round * 1_000_000)], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let output = '';
      // mid-loop: once it has written (a loaded machine may take longer than the delay to start node)
      const closed = new Promise((resolve) => writer.once('close', resolve));
      const writing = new Promise((resolve) => writer.stdout.once('data', resolve));
      writer.stdout.on('data', (d: Buffer) => (output += d.toString()));
      await Promise.race([writing, closed]);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 400));
      writer.kill('SIGKILL');
      await closed;
      const batches = output
        .split('\n')
        .filter((l) => /^\d+$/.test(l))
        .map(Number);
      const acknowledged = batches.length === 0 ? 0 : Math.max(...batches);
      assert.ok(existsSync(path));
      const store = StateStore.open(path);
      assert.equal(store.integrityCheck(), 'ok');
      for (let b = 1; b <= acknowledged; b++) {
        for (let i = 0; i < 10; i++) {
          const n = round * 1_000_000 + (b - 1) * 10 + i;
          const e = store.get(key(`10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`));
          assert.equal(e?.last, n, `round ${round}: batch ${b} entry ${i}`);
          checked++;
        }
      }
      store.close();
    }
    assert.ok(checked > 0);
    t.diagnostic(`${rounds} writers killed, ${checked} acknowledged writes found`);
  });
});
