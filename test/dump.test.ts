// blocklistctl dump: golden output of state-and-ctl.md §2 (TZ=UTC, a fixed
// clock) from a database filled through the store API, the fixes G45-G48,
// --json, and the command line's messages and exit codes.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { dumpCommand, remainingTime, type DumpOptions } from '../src/ctl/dump.js';
import { DEFAULT_DB_PATH, StateStore } from '../src/state/store.js';
import type { Entry } from '../src/types.js';
import { DaemonProcess, isRoot, stateKey as key, repoRoot, run, sharedTree, startDaemon, tempDir, until } from './support.js';

process.env.TZ = 'UTC';
const T = Date.UTC(2026, 10, 21, 4, 53, 0) / 1000; // 2026/11/21 04:53:00
const NOW = T + 52;

const options = (o: Partial<DumpOptions> = {}): DumpOptions => ({
  all: false,
  blocked: false,
  debug: 0,
  noHeader: false,
  remaining: false,
  wide: false,
  json: false,
  ...o,
});

/** The entries of the upstream examples in §2.4. */
const EXAMPLE: Entry[] = [
  { key: key('127.0.0.6', { name: 'blocklistd-int', port: 27161 }), count: 1, last: T + 46, id: '' },
  { key: key('::1', { family: 10, lmask: 128, port: 27163, nfail: 4, duration: 86400 }), count: 2, last: T + 47, id: '' },
  { key: key('127.0.0.7', { port: 27162, nfail: 2, duration: 10 }), count: 2, last: T + 46, id: 'id2' },
  { key: key('127.0.0.5', { name: 'blocklistd-int', port: 27161 }), count: 4, last: T + 43, id: 'id1' },
];

function database(entries: Entry[]): string {
  const path = join(tempDir(), 'blocklistd.db');
  const store = StateStore.open(path);
  store.transaction(() => entries.forEach((e) => store.put(e)));
  store.close();
  return path;
}

function dump(path: string, o: Partial<DumpOptions> = {}): { status: number; out: string; err: string } {
  let out = '';
  let err = '';
  const status = dumpCommand(path, options(o), { out: (t) => (out += t), err: (t) => (err += t) }, NOW);
  return { status, out, err };
}

const ctl = (...args: string[]) => run(process.execPath, [join(repoRoot, 'bin/blocklistctl'), ...args]);

const lines = (...rows: string[]): string => rows.map((r) => `${r}\n`).join('');

describe('blocklistctl dump output (state-and-ctl.md §2.3, §2.4)', () => {
  const path = database(EXAMPLE);

  test('-a: every entry, ordered by name, address and port (G49)', () => {
    assert.deepEqual(dump(path, { all: true }), {
      status: 0,
      err: '',
      out: lines(
        'rulename\t        address/ma:port\tid\tnfail\tlast access',
        'blocklistd\t      127.0.0.7/32:27162\tid2\t2/2\t2026/11/21 04:53:46',
        'blocklistd\t            ::1/128:27163\t\t2/4\t2026/11/21 04:53:47',
        'blocklistd-int\t      127.0.0.5/32:27161\tid1\t4/3\t2026/11/21 04:53:43',
        'blocklistd-int\t      127.0.0.6/32:27161\t\t1/3\t2026/11/21 04:53:46',
      ),
    });
  });

  test('default: the entries counting but not yet blocked; -b: the blocked ones', () => {
    assert.equal(
      dump(path).out,
      lines(
        'rulename\t        address/ma:port\tid\tnfail\tlast access',
        'blocklistd\t            ::1/128:27163\t\t2/4\t2026/11/21 04:53:47',
        'blocklistd-int\t      127.0.0.6/32:27161\t\t1/3\t2026/11/21 04:53:46',
      ),
    );
    assert.equal(
      dump(path, { blocked: true, noHeader: true }).out,
      lines(
        'blocklistd\t      127.0.0.7/32:27162\tid2\t2/2\t2026/11/21 04:53:46',
        'blocklistd-int\t      127.0.0.5/32:27161\tid1\t4/3\t2026/11/21 04:53:43',
      ),
    );
    assert.equal(dump(path, { all: true, blocked: true }).out.split('\n').length, 6, '-a wins over -b');
  });

  test('-a -r: remaining time', () => {
    assert.equal(
      dump(path, { all: true, remaining: true }).out,
      lines(
        'rulename\t        address/ma:port\tid\tnfail\tremaining time',
        'blocklistd\t      127.0.0.7/32:27162\tid2\t2/2\t4s',
        'blocklistd\t            ::1/128:27163\t\t2/4\t23h59m55s',
        'blocklistd-int\t      127.0.0.5/32:27161\tid1\t4/3\t59m51s',
        'blocklistd-int\t      127.0.0.6/32:27161\t\t1/3\t59m54s',
      ),
    );
  });

  test('-a -w: a 39-wide address column', () => {
    const out = dump(path, { all: true, wide: true }).out.split('\n');
    assert.equal(out[0], `rulename\t${' '.repeat(32)}address/ma:port\tid\tnfail\tlast access`);
    assert.equal(out[4], `blocklistd-int\t${' '.repeat(30)}127.0.0.6/32:27161\t\t1/3\t2026/11/21 04:53:46`);
  });
});

describe('dump rows: addresses, never, *, and the fixes', () => {
  const entries: Entry[] = [
    { key: key('127.0.0.5', { port: 27189, nfail: -1, duration: -1 }), count: 4, last: T, id: '' },
    { key: key('2001:db8:aaaa:bbbb:cccc:dddd:eeee:1', { family: 10, lmask: 128 }), count: 1, last: T, id: '' },
    { key: key('::ffff:198.51.100.7', { family: 10, lmask: 128, name: 'c' }), count: 1, last: T, id: '' },
    { key: key('fe80::1%eth0', { family: 10, lmask: 128, name: 'd' }), count: 1, last: T, id: '' },
    { key: key('192.0.2.0', { lmask: -1, port: -1, name: 'e' }), count: 1, last: T, id: '' },
    { key: key('192.0.2.1', { name: 'f', duration: 52 }), count: 1, last: T, id: '' },
    { key: key('192.0.2.2', { name: 'g', duration: 40 }), count: 1, last: T, id: '' },
    { key: key('192.0.2.3', { name: 'h' }), count: 0, last: 0, id: '' },
  ];
  const path = database(entries);

  test('never for forever entries, * for never-block nfail (visible only with -a); no address is cut (G45)', () => {
    assert.equal(
      dump(path, { all: true, noHeader: true }).out,
      lines(
        'blocklistd\t      127.0.0.5/32:27189\t\t4/*\tnever',
        'blocklistd\t2001:db8:aaaa:bbbb:cccc:dddd:eeee:1/128:22\t\t1/3\t2026/11/21 04:53:00',
        'c\t::ffff:198.51.100.7/128:22\t\t1/3\t2026/11/21 04:53:00',
        'd\t   fe80::1%eth0/128:22\t\t1/3\t2026/11/21 04:53:00',
        'e\t      192.0.2.0/*:*\t\t1/3\t2026/11/21 04:53:00',
        'f\t      192.0.2.1/32:22\t\t1/3\t2026/11/21 04:53:00',
        'g\t      192.0.2.2/32:22\t\t1/3\t2026/11/21 04:53:00',
        'h\t      192.0.2.3/32:22\t\t0/3\t1970/01/01 00:00:00',
      ),
    );
    assert.doesNotMatch(dump(path).out, /4\/\*/, 'the default view hides never-block entries');
  });

  test('-r: 0s at the expiry second (G46), expired after it (G47), never stays never', () => {
    const out = dump(path, { all: true, remaining: true, noHeader: true }).out;
    assert.match(out, /^blocklistd\t {6}127\.0\.0\.5\/32:27189\t\t4\/\*\tnever$/m);
    assert.match(out, /^f\t {6}192\.0\.2\.1\/32:22\t\t1\/3\t0s$/m);
    assert.match(out, /^g\t {6}192\.0\.2\.2\/32:22\t\t1\/3\texpired$/m);
    assert.match(out, /^h\t {6}192\.0\.2\.3\/32:22\t\t0\/3\texpired$/m);
  });

  test('remaining time: years, days, hours, minutes and seconds, zero parts left out', () => {
    const cases: [number, string][] = [
      [4, '4s'],
      [3596, '59m56s'],
      [86395, '23h59m55s'],
      [90061, '1d1h1m1s'],
      [365 * 86400 + 86400, '1y1d'],
      [3600, '1h'],
    ];
    for (const [seconds, text] of cases) assert.equal(remainingTime(seconds), text);
  });

  test('--json: every field, epoch and ISO-8601 times, the same selection', () => {
    const {
      ok,
      command,
      result: doc,
    } = JSON.parse(dump(path, { json: true, all: true }).out) as { ok: boolean; command: string; result: Record<string, unknown>[] };
    assert.deepEqual([ok, command], [true, 'dump']);
    assert.equal(doc.length, entries.length);
    assert.deepEqual(
      doc.find((e) => e.name === 'f'),
      {
        family: 2,
        address: '192.0.2.1',
        lmask: 32,
        port: 22,
        proto: 6,
        uid: -1,
        name: 'f',
        rmask: -1,
        nfail: 3,
        duration: 52,
        count: 1,
        id: '',
        blocked: false,
        last: T,
        lastTime: '2026-11-21T04:53:00.000Z',
        expires: T + 52,
        expiresTime: '2026-11-21T04:53:52.000Z',
        remaining: 0,
      },
    );
    const forever = doc.find((e) => e.port === 27189)!;
    assert.deepEqual([forever.expires, forever.expiresTime, forever.remaining], [null, null, null]);
    assert.deepEqual(JSON.parse(dump(path, { json: true, blocked: true }).out), { ok: true, command: 'dump', result: [] });
  });

  test('a read error mid-way stops the dump with exit 1 (G48)', () => {
    const big = database(
      Array.from({ length: 5000 }, (_, i) => ({
        key: key(`10.0.${i >> 8}.${i & 255}`, { name: 'x'.repeat(60) }),
        count: 1,
        last: T,
        id: '',
      })),
    );
    const bytes = readFileSync(big);
    bytes.fill(0xff, 4096 * 40, 4096 * 60);
    writeFileSync(big, bytes);
    const r = dump(big, { all: true });
    assert.equal(r.status, 1);
    assert.match(r.err, /^blocklistctl: reading '.*' failed: database disk image is malformed\n$/);
    // --json: the entries read, and the error, in the envelope; nothing on stderr
    const j = dump(big, { all: true, json: true });
    assert.equal(j.status, 1);
    assert.equal(j.err, '');
    const doc = JSON.parse(j.out) as { ok: boolean; command: string; result: unknown[]; error: { code: string; message: string } };
    assert.deepEqual([doc.ok, doc.command, doc.error.code], [false, 'dump', 'database_error']);
    assert.match(doc.error.message, /^reading '.*' failed: database disk image is malformed$/);
    assert.ok(
      Array.isArray(doc.result) && doc.result.length < 5000,
      'the entries read before the damage (none: the sort reads them all first)',
    );
  });

  test("the table's order is the JSON's (every key column): names that begin others, NUL in a name, ports, protocols", () => {
    // StateStore.dumpRows sorts by one key of the name and the address; --json reads entries() sorted column by column
    const names = ['a', 'a\0', 'a\0b', 'a\0\x01', 'a\x01', 'a-', 'ab', '', 'é', '\u{1F600}', 'z'];
    const addresses = ['10.0.0.1', '10.0.0.10', '10.0.0.2', '::1'];
    const sample: Entry[] = [];
    for (const [n, name] of names.entries())
      for (const [a, address] of addresses.entries()) {
        const e = { key: key(address, { name, port: 22 + ((n + a) % 3) }), count: 1, last: T, id: '' };
        sample.push(e, { ...e, key: { ...e.key, port: -1 } }, { ...e, key: { ...e.key, proto: 17 }, count: 2 });
      }
    const path = database(sample.reverse());
    const json = (
      JSON.parse(dump(path, { json: true, all: true }).out) as { result: { name: string; address: string; port: number; count: number }[] }
    ).result;
    const table = dump(path, { all: true, noHeader: true })
      .out.split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split('\t'));
    assert.equal(table.length, sample.length);
    assert.deepEqual(
      table.map(([name, address, , count]) => `${name} ${address.trim()} ${count}`),
      json.map((e) => `${e.name} ${e.address}/32:${e.port === -1 ? '*' : e.port} ${e.count}/3`),
    );
    // SQLite's BINARY order: the bytes of the UTF-8, a name before a longer one it begins
    const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');
    const distinct = json.map((e) => e.name).filter((n, i, all) => i === 0 || n !== all[i - 1]);
    assert.deepEqual(
      distinct,
      [...names].sort((x, y) => Buffer.compare(utf8(x), utf8(y))),
    );
  });
});

describe('blocklistctl dump, the command', () => {
  const path = database(EXAMPLE);
  const usage =
    'Usage: blocklistctl dump [-abdnorw] [-D dbname] [control options]\n' +
    '       blocklistctl config [-c config] [-R rulename] [--json]\n' +
    '       blocklistctl test [-c config] [-R rulename] [-u uid] [-t stream|dgram] [-l address] [-D dbname] [--json] address port\n' +
    '       blocklistctl history [-c config] [-R rulename] [-n name] [-D dbname] [--json] [address]\n' +
    '       blocklistctl block [-p port] [-P tcp|udp] [-n name] [-t duration] [--force] [control ' +
    'options] address[/mask] ... | - | --stdin\n' +
    '       blocklistctl unblock [-p port] [-n name] [--if-present] [--forget] [control options] address[/mask] | --all\n' +
    '       blocklistctl flush [control options] [name]\n' +
    '       blocklistctl report -t fail|baduser|abuse|ok -p port [-P tcp|udp] [--source label] [control options] address [message]\n' +
    '       blocklistctl reload [control options]\n' +
    '       blocklistctl status [control options]\n' +
    '       blocklistctl help [command]\n' +
    '       control options: [-s sockpath] [--control path] [--json]\n';

  test('upstream options, combined, extra words ignored', async () => {
    const r = await ctl('dump', '-an', '-D', path, 'extra', 'words');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.split('\n').length, 5);
    assert.match(r.stdout, /^blocklistd\t {6}127\.0\.0\.7\/32:27162\tid2\t2\/2\t\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d\n/);
  });

  test('-d prints each entry read on stderr', async () => {
    const r = await ctl('dump', '-d', '-D', path);
    assert.equal(r.code, 0);
    assert.equal(r.stderr.split('\n').filter((l) => l.startsWith('iterate: ')).length, 4);
  });

  test('no command, an unknown command, an unknown option: upstream texts, exit 2 (a usage error)', async () => {
    for (const args of [[], ['show']]) {
      const r = await ctl(...args);
      assert.equal(r.code, 2);
      assert.equal(r.stderr, `blocklistctl: Missing/unknown command\n${usage}`);
    }
    let r = await ctl('dump', '-x', '-D', path);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `dump: invalid option -- 'x'\n${usage}`);
    r = await ctl('dump', '-D');
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `dump: option requires an argument -- 'D'\n${usage}`);
    r = await ctl('-a');
    assert.equal(r.stderr, `blocklistctl: Missing/unknown command\n${usage}`);
  });

  test("a database that cannot be opened: Can't open, exit 1; an empty one: exit 0", async () => {
    const missing = join(tempDir(), 'none.db');
    let r = await ctl('dump', '-D', missing);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `blocklistctl: Can't open '${missing}': No such file or directory\n`);
    for (const empty of [database([]), join(tempDir(), 'zero.db')]) {
      if (!empty.endsWith('blocklistd.db')) writeFileSync(empty, '');
      r = await ctl('dump', '-D', empty);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'rulename\t        address/ma:port\tid\tnfail\tlast access\n');
    }
    const dir = tempDir();
    r = await ctl('dump', '-D', dir);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `blocklistctl: Can't open '${dir}': Is a directory\n`);
  });

  test('the output can be cut short by a pipe', async () => {
    const r = await run('sh', ['-c', `"${process.execPath}" "${join(repoRoot, 'bin/blocklistctl')}" dump -a -D "${path}" | head -1`]);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, '');
  });
});

describe('blocklistctl dump through the running daemon (issue 15 §3)', () => {
  /** A daemon started with -r on a database of `n` entries: some blocked (no id), most counting. */
  async function daemonWith(t: TestContext, n: number): Promise<DaemonProcess> {
    const dir = tempDir('blocklistd-dump-');
    const store = StateStore.open(join(dir, 'blocklistd.db'));
    const now = Math.floor(Date.now() / 1000);
    store.transaction(() => {
      for (let i = 0; i < n; i++)
        store.put({
          key: key(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, { name: i % 3 === 0 ? 'ssh' : 'mail', duration: 86400 }),
          count: i % 7 === 0 ? 3 : 1,
          last: now - (i % 100),
          id: i % 7 === 0 ? `id${i}` : '',
        });
      store.put({ key: key('2001:db8::7', { family: 10, lmask: 128, nfail: -1, duration: -1 }), count: 5, last: now, id: '' });
    });
    store.close();
    const daemon = await startDaemon(t, '22 stream * * * 3 1d\n', ['-r'], { dir });
    // -r adds the blocks again: their new ids recorded, the entries stay as they are
    await until(() => daemon.entries().every((e) => e.id === '' || e.id.startsWith('id-')), 30_000);
    return daemon;
  }

  test(
    'without -D the daemon answers, found by -s or --control: the same output as the file gives, for ' + 'every selection and form',
    async (t) => {
      const daemon = await daemonWith(t, 2500);
      const control = join(daemon.dir, 'blocklistd.ctl');
      for (const options of [['-a'], [], ['-b'], ['-a', '-n', '-w'], ['-b', '-n']]) {
        const fromFile = await ctl('dump', ...options, '-D', daemon.db);
        const fromDaemon = await ctl('dump', ...options, '-s', daemon.socket);
        assert.equal(fromDaemon.code, 0, fromDaemon.stderr);
        assert.equal(fromDaemon.stderr, '');
        assert.equal(fromDaemon.stdout, fromFile.stdout, `dump ${options.join(' ')}`);
        assert.equal((await ctl('dump', ...options, '--control', control)).stdout, fromFile.stdout);
      }
      const all = (await ctl('dump', '-a', '-n', '-s', daemon.socket)).stdout.split('\n').filter((l) => l !== '');
      assert.equal(all.length, 2501, 'every entry, in several chunks');
      assert.match(all[0]!, /^blocklistd\t {4}2001:db8::7\/128:22\t\t5\/\*\tnever$/);
      // -r's remaining time may differ by the second between two reads; the rows are the same
      const cut = (text: string): string => text.replace(/\t[^\t\n]*$/gm, '');
      assert.equal(
        cut((await ctl('dump', '-a', '-r', '-s', daemon.socket)).stdout),
        cut((await ctl('dump', '-a', '-r', '-D', daemon.db)).stdout),
      );
      // -d tells of every entry read, selected or not
      const debug = await ctl('dump', '-b', '-d', '-s', daemon.socket);
      assert.equal(debug.stderr.split('\n').filter((l) => l.startsWith('iterate: ')).length, 2501);
      assert.equal(debug.stdout, (await ctl('dump', '-b', '-D', daemon.db)).stdout);
    },
  );

  test('--json: the entry objects of the file, through the daemon', async (t) => {
    const daemon = await daemonWith(t, 1200);
    const strip = (text: string): Record<string, unknown>[] =>
      (JSON.parse(text) as { result: Record<string, unknown>[] }).result.map(({ remaining: _, ...e }) => e);
    const fromDaemon = await ctl('dump', '-a', '--json', '-s', daemon.socket);
    assert.equal(fromDaemon.code, 0, fromDaemon.stderr);
    assert.deepEqual(strip(fromDaemon.stdout), strip((await ctl('dump', '-a', '--json', '-D', daemon.db)).stdout));
  });

  test(
    'a member of --control-group, who may not read the database file, gets the dump from the daemon',
    { skip: isRoot ? false : 'not root: cannot run blocklistctl as another uid' },
    async (t) => {
      const NOBODY = 65534;
      const dir = tempDir('blocklistd-dump-');
      chmodSync(dir, 0o755);
      const daemon = await startDaemon(t, '22 stream * * * 3 1d\n', ['--control-group', String(NOBODY)], { dir });
      assert.equal(statSync(daemon.db).mode & 0o777, 0o600, 'the database is owner-only');
      const r = await run(process.execPath, [
        join(repoRoot, 'bin/blocklistctl'),
        'report',
        '-t',
        'fail',
        '-p',
        '22',
        '-s',
        daemon.socket,
        '198.51.100.9',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const as = (args: string[]) =>
        run('setpriv', [
          '--reuid=65533',
          `--regid=${NOBODY}`,
          '--clear-groups',
          process.execPath,
          join(sharedTree(), 'bin/blocklistctl'),
          ...args,
        ]);
      const fromFile = await as(['dump', '-n', '-D', daemon.db]);
      assert.equal(fromFile.code, 1);
      assert.match(fromFile.stderr, /Permission denied/);
      const fromDaemon = await as(['dump', '-n', '-s', daemon.socket]);
      assert.equal(fromDaemon.code, 0, fromDaemon.stderr);
      assert.match(fromDaemon.stdout, /^blocklistd\t {3}198\.51\.100\.9\/32:22\t\t2\/3\t/);
    },
  );

  test('no daemon: the default database file is read, as upstream does', async () => {
    const dead = join(tempDir(), 'blocklistd.sock');
    const r = await ctl('dump', '-s', dead);
    if (existsSync(DEFAULT_DB_PATH)) return;
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `blocklistctl: Can't open '${DEFAULT_DB_PATH}': No such file or directory\n`);
  });

  test('a daemon whose database cannot be read any more: an error, exit 1', async (t) => {
    const daemon = await daemonWith(t, 10);
    rmSync(daemon.db);
    const r = await ctl('dump', '-s', daemon.socket);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^blocklistctl: dump: Can't open '.*blocklistd\.db': /);
  });
});
