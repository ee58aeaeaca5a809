// Safe by default (issue 15 §1, §2): the start-up checks (checks.ts) and
// what the daemon does with them (refusing to start, --fail-open, warnings
// at start and reload), --check, one daemon per database, the loopback
// allow-list of the sample configuration and --allow-self.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { loadConfig } from '../src/conf/load.js';
import { parseIP } from '../src/conf/ip.js';
import { isSelfAddress, ownNetworks, systemEnv } from '../src/conf/system.js';
import type { IPAddress } from '../src/conf/types.js';
import { failOpen, fileProblems, loopbackExposed, startupProblems, type StartupFacts } from '../src/daemon/checks.js';
import { AUTH_FAIL } from '../src/index.js';
import {
  DaemonProcess,
  Reporter,
  blprobe,
  controlStatus,
  escapeRegExp,
  freePort,
  isRoot,
  repoRoot,
  run,
  sharedTree,
  succeeds,
  tempDir,
  until,
  vethPair,
  WatchedProcess,
} from './support.js';

const env = systemEnv('blocklistd');
const daemonBin = join(repoRoot, 'bin/blocklistd');
const CONTROL = join(repoRoot, 'test/fixtures/control');
const NOBODY = 65534;
const LOOPBACK_LINES = '[remote]\n127.0.0.0/8 * * * = * =\n[::1] * * * = * =\n';

/** A rule set from configuration text. */
function rules(text: string): ReturnType<typeof loadConfig>['ruleSet'] {
  const file = join(tempDir(), 'blocklistd.conf');
  writeFileSync(file, text);
  const loaded = loadConfig(file, env);
  assert.deepEqual(loaded.diagnostics, []);
  return loaded.ruleSet;
}

const facts = (more: Partial<StartupFacts> = {}): StartupFacts => ({
  config: '/etc/blocklistd.conf',
  configUnreadable: [],
  configSkipped: [],
  localRules: 4,
  helper: '/usr/local/libexec/blocklistd-helper',
  helperState: { state: 'ok' },
  backend: { ok: true, message: 'back end nftables: nft list tables works' },
  loopbackExposed: [],
  allowSelf: false,
  warnings: [],
  ...more,
});

describe('checks.ts: the problems the facts show', () => {
  test('a sound start has none', () => {
    assert.deepEqual(startupProblems(facts()), []);
  });

  test('fatal: an unreadable configuration, no local rule, a missing or non-executable helper, an unusable packet filter', () => {
    const codes = (f: Partial<StartupFacts>): string[] => startupProblems(facts(f)).map((p) => `${p.severity} ${p.code}`);
    assert.deepEqual(codes({ configUnreadable: ["Cannot open '/etc/blocklistd.conf' (No such file or directory)"], localRules: 0 }), [
      'fatal config_unreadable',
    ]);
    assert.deepEqual(codes({ localRules: 0 }), ['fatal no_rules']);
    // an entry of a configuration directory that cannot be read (a FIFO): the rest was, a warning
    assert.deepEqual(codes({ configSkipped: ["Cannot open '/etc/blocklistd.conf.d/fifo' (not a regular file)"] }), [
      'warning config_file_skipped',
    ]);
    assert.deepEqual(codes({ helperState: { state: 'missing', reason: 'No such file or directory' }, backend: undefined }), [
      'fatal helper_missing',
    ]);
    assert.deepEqual(codes({ helperState: { state: 'not_executable', reason: 'Permission denied' }, backend: undefined }), [
      'fatal helper_not_executable',
    ]);
    assert.deepEqual(codes({ backend: { ok: false, message: 'nft list tables: Operation not permitted' } }), ['fatal backend_unusable']);
    // upstream's helper offers no check: nothing is known, nothing is said
    assert.deepEqual(codes({ backend: undefined }), []);
    const [problem] = startupProblems(facts({ backend: { ok: false, message: 'nft list tables: Operation not permitted' } }));
    assert.equal(
      problem!.message,
      'helper /usr/local/libexec/blocklistd-helper: the packet filter cannot be used: nft list tables: Operation not permitted',
    );
  });

  test('warnings: loopback not allow-listed (not with --allow-self), and those found elsewhere, after the fatal ones', () => {
    const f = facts({ loopbackExposed: ['127.0.0.1', '::1'], warnings: ['the kernel cannot tell the network namespace'], localRules: 0 });
    assert.deepEqual(
      startupProblems(f).map((p) => `${p.severity} ${p.code}`),
      ['fatal no_rules', 'warning loopback_not_allowed', 'warning system'],
    );
    assert.match(startupProblems(f)[1]!.message, /^no \[remote\] rule with nfail \* covers 127\.0\.0\.1 and ::1 for every \[local\] rule/);
    assert.deepEqual(
      startupProblems({ ...f, allowSelf: true }).map((p) => p.code),
      ['no_rules', 'system'],
    );
  });

  test('--fail-open: every fatal problem a warning that says so', () => {
    const relaxed = failOpen(startupProblems(facts({ localRules: 0 })));
    assert.deepEqual(
      relaxed.map((p) => p.severity),
      ['warning'],
    );
    assert.match(relaxed[0]!.message, /nothing would ever be blocked \(--fail-open: running anyway\)$/);
  });

  test('the files of --check: a held database, an unusable one, a socket directory that cannot take the socket', () => {
    assert.deepEqual(
      fileProblems({
        db: '/d.db',
        dbHolder: undefined,
        dbProblem: undefined,
        sockets: [{ path: '/s', state: 'its directory is writable', problem: undefined }],
      }),
      [],
    );
    assert.deepEqual(
      fileProblems({
        db: '/d.db',
        dbHolder: 'pid 7',
        dbProblem: 'Permission denied',
        sockets: [{ path: '/x/s', state: '/x: No such file or directory', problem: '/x: No such file or directory' }],
      }).map((p) => `${p.severity} ${p.code}: ${p.message}`),
      [
        "fatal database_locked: database '/d.db' is in use by pid 7: one daemon per database",
        "fatal database_unusable: database '/d.db': Permission denied",
        "fatal socket_unusable: socket '/x/s': /x: No such file or directory",
      ],
    );
  });
});

describe('loopbackExposed: which loopback addresses some local rule could block', () => {
  const local = '[local]\nssh stream * * * 3 6h\n* * * * * 3 60\n';

  test('the sample configuration allow-lists both', () => {
    const loaded = loadConfig(join(repoRoot, 'etc/blocklistd.conf'), env);
    assert.deepEqual(loopbackExposed(loaded.ruleSet, env.families), []);
  });

  test('without [remote] lines both are exposed; with one of the two lines, the other', () => {
    assert.deepEqual(loopbackExposed(rules(local), env.families), ['127.0.0.1', '::1']);
    assert.deepEqual(loopbackExposed(rules(`${local}[remote]\n127.0.0.0/8 * * * = * =\n`), env.families), ['::1']);
    assert.deepEqual(loopbackExposed(rules(`${local}${LOOPBACK_LINES}`), env.families), []);
  });

  test('a [remote] line for one port does not cover a local rule of every port; an IPv4-only local rule needs no ::1', () => {
    assert.deepEqual(loopbackExposed(rules(`${local}[remote]\n127.0.0.0/8:ssh * * * = * =\n[::1]:ssh * * * = * =\n`), env.families), [
      '127.0.0.1',
      '::1',
    ]);
    assert.deepEqual(loopbackExposed(rules('[local]\nssh stream tcp * * 3 6h\n[remote]\n127.0.0.0/8 * * * = * =\n'), env.families), []);
  });

  test('the sort trap: a narrower [remote] line with a limit, tried first, leaves 127.0.0.1 exposed', () => {
    assert.deepEqual(loopbackExposed(rules(`${local}${LOOPBACK_LINES}127.0.0.0/24 * * * = 5 =\n`), env.families), ['127.0.0.1']);
  });
});

describe("isSelfAddress: the host's own addresses", () => {
  const ip = (text: string): IPAddress => parseIP(text)!;
  const interfaces = new Map([['eth0', [ip('192.0.2.10'), ip('2001:db8::10')]]]);

  test('loopback networks, interface addresses, IPv4-mapped addresses as their IPv4', () => {
    for (const own of ['127.0.0.1', '127.9.8.7', '::1', '::ffff:127.0.0.1', '192.0.2.10', '::ffff:192.0.2.10', '2001:db8::10'])
      assert.equal(isSelfAddress(ip(own), ownNetworks(interfaces)), true, own);
    for (const other of ['192.0.2.11', '128.0.0.1', '::2', '2001:db8::11', '::ffff:192.0.2.11', '::'])
      assert.equal(isSelfAddress(ip(other), ownNetworks(interfaces)), false, other);
  });
});

/** A configuration, database and socket in a fresh directory, and the daemon's arguments for them. */
function files(config: string): { dir: string; conf: string; db: string; sock: string; args: string[] } {
  const dir = tempDir('blocklistd-safety-');
  const conf = join(dir, 'blocklistd.conf');
  writeFileSync(conf, config);
  const db = join(dir, 'blocklistd.db');
  const sock = join(dir, 'blocklistd.sock');
  return { dir, conf, db, sock, args: ['-c', conf, '-D', db, '-s', sock] };
}

const blocklistd = (args: string[], environment: Record<string, string> = {}) =>
  run(process.execPath, [daemonBin, ...args], { env: environment });

describe('fail closed: the daemon refuses to start when it could protect nothing', () => {
  const cases: { what: string; config?: string; helper?: string; message: RegExp }[] = [
    { what: 'a missing configuration', message: /configuration \S+: Cannot open '\S+none\.conf' \(No such file or directory\)/ },
    {
      what: 'a configuration without a [local] rule',
      config: `${LOOPBACK_LINES}`,
      message: /no \[local\] rule, nothing would ever be blocked/,
    },
    {
      what: 'a missing helper',
      helper: '/nonexistent/helper',
      message: /helper \/nonexistent\/helper: No such file or directory, no block could be added/,
    },
    {
      what: 'a helper that is not executable',
      helper: join(repoRoot, 'test/fixtures/not-executable'),
      message: /fixtures\/not-executable: Permission denied, no block could be added/,
    },
  ];
  for (const c of cases) {
    test(`${c.what}: exit 1 with the reason, nothing created; --fail-open starts anyway with a warning`, async (t) => {
      const f = files(c.config ?? `22 stream * * * 3 1h\n${LOOPBACK_LINES}`);
      const conf = c.config === undefined && c.helper === undefined ? join(f.dir, 'none.conf') : f.conf;
      const args = ['-d', '-c', conf, '-C', c.helper ?? CONTROL, '-D', f.db, '-s', f.sock];
      const r = await blocklistd(args, { HELPER_LOG: join(f.dir, 'helper.log') });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, c.message);
      assert.match(r.stderr, /\(--fail-open would start anyway\)\n$/);
      assert.deepEqual(
        readdirSync(f.dir).filter((n) => !['blocklistd.conf', 'helper.log'].includes(n)),
        [],
        'no database, lock or socket',
      );

      const child = spawn(process.execPath, [daemonBin, ...args, '--fail-open'], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, HELPER_LOG: join(f.dir, 'helper.log') },
      });
      const daemon = new WatchedProcess('blocklistd', child);
      t.after(() => child.kill('SIGKILL'));
      await daemon.waitFor(/^listening on /m);
      assert.match(daemon.text, new RegExp(`${c.message.source}.*\\(--fail-open: running anyway\\)`));
    });
  }

  test(
    "a packet filter the daemon's privileges cannot change (uid 65534, the shipped helper): exit 1 naming the cause",
    { skip: !isRoot && 'needs root: runs the daemon as another user' },
    async () => {
      const f = files(`22 stream * * * 3 1h\n${LOOPBACK_LINES}`);
      chmodSync(f.dir, 0o777);
      const r = await run(process.execPath, [join(sharedTree(), 'bin/blocklistd'), '-d', ...f.args], {
        uid: NOBODY,
        gid: NOBODY,
        env: { BLOCKLISTD_HELPER_CONF: join(f.dir, 'absent.conf') },
      });
      assert.equal(r.code, 1, r.stderr);
      const unusable = String.raw`helper \S+blocklistd-helper: the packet filter cannot be used: .*nft list tables: `;
      assert.match(r.stderr, new RegExp(`${unusable}.*Operation not permitted.*not root, or no CAP_NET_ADMIN`));
      assert.equal(existsSync(f.db), false);
    },
  );
});

describe('warnings: logged at every start and reload, shown by status', () => {
  test("no loopback allow-list: a warning at start and at each reload; none with the sample's lines or with --allow-self", async (t) => {
    const warning = /^no \[remote\] rule with nfail \* covers 127\.0\.0\.1 and ::1 for every \[local\] rule/gm;
    const daemon = await DaemonProcess.start({ config: '22 stream * * * 3 1h\n' });
    t.after(() => daemon.stop('SIGKILL'));
    assert.equal(daemon.stderr.match(warning)?.length, 1);
    const mark = daemon.stderr.length;
    daemon.child.kill('SIGHUP');
    await daemon.waitFor(warning, mark);
    // the allow-list added: the next reload is silent, and status says so
    writeFileSync(daemon.config, `22 stream * * * 3 1h\n${LOOPBACK_LINES}`);
    const again = daemon.stderr.length;
    const r = await run(process.execPath, [join(repoRoot, 'bin/blocklistctl'), 'reload', '-s', daemon.socket]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(daemon.stderr.slice(again), warning);
    assert.deepEqual((await controlStatus(join(daemon.dir, 'blocklistd.ctl'))).problems, []);

    const allowSelf = await DaemonProcess.start({ config: '22 stream * * * 3 1h\n', args: ['--allow-self'] });
    t.after(() => allowSelf.stop('SIGKILL'));
    assert.doesNotMatch(allowSelf.stderr, warning);
  });
});

describe('a reload that finds a fatal problem', () => {
  test('the configuration gone: logged as an error, the rules kept, the daemon runs on, status shows it as fatal', async (t) => {
    const daemon = await DaemonProcess.start({ config: `22 stream * * * 3 1h\n${LOOPBACK_LINES}` });
    t.after(() => daemon.stop('SIGKILL'));
    rmSync(daemon.config);
    const mark = daemon.stderr.length;
    daemon.child.kill('SIGHUP');
    await daemon.waitFor(
      new RegExp(
        `^configuration ${escapeRegExp(daemon.config)}: Cannot open '${escapeRegExp(daemon.config)}' \\(No such file or directory\\)$`,
        'm',
      ),
      mark,
    );
    const status = await controlStatus(join(daemon.dir, 'blocklistd.ctl'));
    assert.deepEqual(
      status.problems.map((p) => `${p.severity} ${p.code}`),
      ['fatal config_unreadable'],
    );
    assert.deepEqual((status as unknown as { rules: unknown }).rules, { local: 1, remote: 2 }, 'the rules kept');
    assert.equal(daemon.child.exitCode, null, 'still running');
  });
});

describe('one daemon per database', () => {
  test('a second daemon on the same -D exits 1 naming the holder; after kill -9 of the first a new one starts', async (t) => {
    const first = await DaemonProcess.start({ config: `22 stream * * * 3 1h\n${LOOPBACK_LINES}` });
    t.after(() => first.stop('SIGKILL'));
    const other = tempDir();
    const args = ['-d', '-c', first.config, '-C', CONTROL, '-D', first.db, '-s', join(other, 'second.sock')];
    const second = await blocklistd(args, { HELPER_LOG: join(other, 'helper.log') });
    assert.equal(second.code, 1);
    assert.match(
      second.stderr,
      new RegExp(
        `^database '${escapeRegExp(first.db)}' is in use by pid ${first.child.pid} \\(blocklistd -dd -v -c ` +
          `${escapeRegExp(first.config)} .*\\): one daemon per database$`,
        'm',
      ),
    );
    assert.equal(existsSync(join(other, 'second.sock')), false, 'refused before its sockets');

    assert.equal(await first.stop('SIGKILL'), null);
    const third = await DaemonProcess.start({ config: `22 stream * * * 3 1h\n${LOOPBACK_LINES}`, dir: first.dir });
    t.after(() => third.stop('SIGKILL'));
    assert.ok(third.child.pid !== undefined);
  });
});

describe('blocklistd --check', () => {
  test('a sound set-up: what was checked, no problem, exit 0, nothing created (no database, lock, socket)', async () => {
    const f = files(`22 stream * * * 3 1h\n${LOOPBACK_LINES}`);
    const r = await blocklistd(['--check', ...f.args, '-C', join(repoRoot, 'bin/blocklistd-helper')], {
      BLOCKLISTD_BACKEND: 'log',
      BLOCKLISTD_HELPER_CONF: join(f.dir, 'absent.conf'),
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.stderr, '');
    assert.deepEqual(r.stdout.split('\n'), [
      `configuration  ${f.conf}: 1 local, 2 remote rules (${f.conf})`,
      `helper         ${join(repoRoot, 'bin/blocklistd-helper')}: back end log: BLOCKLISTD_BACKEND=log; ` +
        `ok: blocks nothing, records the calls in stderr`,
      `database       ${f.db}: will be created`,
      `socket         ${f.sock}: its directory is writable`,
      `socket         ${join(f.dir, 'blocklistd.ctl')}: its directory is writable`,
      'blocklistd --check: no problem',
      '',
    ]);
    assert.deepEqual(readdirSync(f.dir), ['blocklistd.conf']);
  });

  test("the configuration's diagnostics with file:line, warnings, fatal problems: exit 1", async () => {
    const f = files('22 stream * * * 3 1h\n23 stream * * * abc 1h\n');
    const r = await blocklistd(['--check', ...f.args, '-C', '/nonexistent/helper']);
    assert.equal(r.code, 1);
    assert.match(r.stdout, new RegExp(`^  ${escapeRegExp(f.conf)}:2: error: Bad number for nfail \\[abc\\]$`, 'm'));
    assert.match(r.stdout, /^fatal: helper \/nonexistent\/helper: No such file or directory, no block could be added/m);
    assert.match(r.stdout, /^warning: no \[remote\] rule with nfail \* covers 127\.0\.0\.1 and ::1/m);
    assert.match(r.stdout, /^blocklistd --check: 1 fatal problem, 1 warning$/m);
    assert.deepEqual(readdirSync(f.dir), ['blocklistd.conf']);
  });

  test('the database of a running daemon: locked, exit 1; not a database: exit 1', async (t) => {
    const daemon = await DaemonProcess.start({ config: `22 stream * * * 3 1h\n${LOOPBACK_LINES}` });
    t.after(() => daemon.stop('SIGKILL'));
    let r = await blocklistd(['--check', '-c', daemon.config, '-C', CONTROL, '-D', daemon.db, '-s', join(tempDir(), 's.sock')]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, new RegExp(`^fatal: database '${escapeRegExp(daemon.db)}' is in use by pid ${daemon.child.pid} `, 'm'));
    // the check took no lock: the daemon still holds it
    assert.match((await blocklistd(['--check', '-c', daemon.config, '-C', CONTROL, '-D', daemon.db])).stdout, /is in use by pid/);

    // a socket already there (systemd's socket units make them before ExecStartPre=) is no problem; another file is
    r = await blocklistd([
      '--check',
      '-c',
      daemon.config,
      '-C',
      CONTROL,
      '-D',
      join(tempDir(), 'x.db'),
      '-s',
      daemon.socket,
      '-s',
      daemon.config,
      '--no-control-socket',
    ]);
    assert.equal(r.code, 1);
    assert.match(
      r.stdout,
      new RegExp(`^socket         ${escapeRegExp(daemon.socket)}: a socket is there \\(systemd's, or one the daemon replaces\\)$`, 'm'),
    );
    assert.match(r.stdout, new RegExp(`^fatal: socket '${escapeRegExp(daemon.config)}': another kind of file is there$`, 'm'));

    const f = files(`22 stream * * * 3 1h\n${LOOPBACK_LINES}`);
    writeFileSync(f.db, 'Berkeley DB 1.85 hash\n'.repeat(10));
    r = await blocklistd(['--check', ...f.args, '-C', CONTROL]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^fatal: database '\S+': not an SQLite database: move it aside, or start with --rename-bad-db$/m);
  });
});

describe("--allow-self: the host's own addresses are never counted nor blocked", () => {
  async function failFromLoopback(t: TestContext, args: string[]): Promise<DaemonProcess> {
    const port = await freePort();
    const daemon = await DaemonProcess.start({ config: `${port} stream * * * 1 1h\n`, args });
    t.after(() => daemon.stop('SIGKILL'));
    const reporter = await Reporter.connect(daemon.socket, port, '127.0.0.1');
    t.after(() => reporter.close());
    reporter.report(AUTH_FAIL, 'self-1');
    reporter.report(AUTH_FAIL, 'self-2');
    await daemon.waitFor(/msg="self-2"/);
    return daemon;
  }

  test("without it, 127.0.0.1 is blocked (a configuration without the loopback lines: upstream's behaviour)", async (t) => {
    const daemon = await failFromLoopback(t, []);
    await until(() => daemon.helperCalls().some((c) => c.startsWith('add blocklistd tcp 127.0.0.1 32 ')));
  });

  test('with it, 127.0.0.1 is not counted: no entry, no helper call, dropped as "self", logged once a minute', async (t) => {
    const daemon = await failFromLoopback(t, ['--allow-self']);
    const status = await controlStatus(join(daemon.dir, 'blocklistd.ctl'));
    assert.equal(status.counters.notifications_dropped.self, 2);
    assert.deepEqual(daemon.entries(), []);
    assert.deepEqual(daemon.helperCalls(), ['capabilities']);
    assert.equal(daemon.stderr.match(/^127\.0\.0\.1 is an address of this host \(--allow-self\): not counted$/gm)?.length, 1);
  });
});

describe(
  '--allow-self: an address added to an interface is covered from the next refresh (-t)',
  { skip: !isRoot && 'needs root: a network namespace' },
  () => {
    test("in a namespace: the interface's addresses, one added while the daemon runs, not counted; another client blocked", async (t) => {
      const { srv } = await vethPair(t, 'bls', ['192.0.2.1/24'], ['192.0.2.2/24']);
      const dir = tempDir('blocklistd-self-');
      const port = 2222;
      writeFileSync(join(dir, 'blocklistd.conf'), `${port} stream * * * 1 1h\n`);
      const sock = join(dir, 'blocklistd.sock');
      const args = [
        '-d',
        '--allow-self',
        '-t',
        '1',
        '-c',
        join(dir, 'blocklistd.conf'),
        '-C',
        CONTROL,
        '-D',
        join(dir, 'blocklistd.db'),
        '-s',
        sock,
      ];
      const child = spawn(
        'ip',
        ['netns', 'exec', srv, 'env', `HELPER_LOG=${join(dir, 'helper.log')}`, process.execPath, daemonBin, ...args],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      const daemon = new WatchedProcess('blocklistd', child, [child.stderr]);
      t.after(() => child.kill('SIGKILL'));
      await daemon.waitFor(/^listening on /m);
      const probe = async (...more: string[]): Promise<void> => {
        await succeeds(
          run('ip', [
            'netns',
            'exec',
            srv,
            await blprobe(),
            '-s',
            sock,
            '-L',
            '192.0.2.1',
            '-p',
            String(port),
            '-n',
            '1',
            '-w',
            '0',
            ...more,
          ]),
          `blprobe ${more.join(' ')}`,
        );
      };
      const ignored = (address: string): RegExp =>
        new RegExp(`^${escapeRegExp(address)} is an address of this host \\(--allow-self\\): not counted$`, 'm');

      await probe('-b', '192.0.2.1');
      await daemon.waitFor(ignored('192.0.2.1'));
      await succeeds(run('ip', ['-n', srv, 'addr', 'add', '192.0.2.9/24', 'dev', 'bls0']), 'ip addr add');
      await new Promise((resolve) => setTimeout(resolve, 2500)); // -t 1: read again within a second
      await probe('-b', '192.0.2.9');
      await daemon.waitFor(ignored('192.0.2.9'));
      // a client that is not this host: counted and blocked (nfail 1)
      await probe('-a', '192.0.2.2');
      await until(
        () =>
          existsSync(join(dir, 'helper.log')) &&
          readFileSync(join(dir, 'helper.log'), 'utf8').includes(`add blocklistd tcp 192.0.2.2 32 ${port}`),
        5000,
      );
      assert.doesNotMatch(readFileSync(join(dir, 'helper.log'), 'utf8'), /192\.0\.2\.[19] /);
    });
  },
);
