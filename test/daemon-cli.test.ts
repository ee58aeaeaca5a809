// blocklistd's command line and life cycle (daemon.md §1-§3): usage errors,
// -P files, detaching with its pid file, syslog and JSON logging, a second
// daemon, an unusable database, relative paths after detaching (G21).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { AUTH_FAIL, BAD_USER } from '../src/index.js';
import { StateStore } from '../src/state/store.js';
import { DaemonProcess, Reporter, SyslogReceiver, freePort, repoRoot, run, tempDir, until } from './support.js';

const daemonBin = join(repoRoot, 'bin/blocklistd');
const control = join(repoRoot, 'test/fixtures/control');
const USAGE =
  'Usage: blocklistd [-vdfr] [-c <config>] [-R <rulename>] [-P <sockpathsfile>] [-C <controlprog>] [-D ' +
  '<dbfile>] [-s <sockpath>] [-t <timeout>]\n';

const blocklistd = (args: string[], cwd?: string) =>
  run(process.execPath, [daemonBin, ...args], cwd === undefined ? {} : ({ cwd } as object));

/** Files for a daemon in a fresh directory. */
function files(config = '22 stream * * * 3 1h\n'): { dir: string; conf: string; db: string; sock: string; pid: string; args: string[] } {
  const dir = tempDir('blocklistd-cli-');
  const conf = join(dir, 'blocklistd.conf');
  writeFileSync(conf, config);
  const db = join(dir, 'blocklistd.db');
  const sock = join(dir, 'blocklistd.sock');
  const pid = join(dir, 'blocklistd.pid');
  return { dir, conf, db, sock, pid, args: ['-c', conf, '-C', control, '-D', db, '-s', sock, '--pidfile', pid] };
}

/** Entries in the database now; 0 while it does not exist. */
function dbSize(path: string): number {
  if (!existsSync(path)) return 0;
  const store = StateStore.open(path, { readonly: true });
  try {
    return store.size();
  } finally {
    store.close();
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('blocklistd command line', () => {
  test("usage errors: upstream's texts, exit 2; a -P file that cannot be read, exit 1", async () => {
    const cases: [string[], string][] = [
      [['-x'], `blocklistd: invalid option -- 'x'\n${USAGE}`],
      [['-c'], `blocklistd: option requires an argument -- 'c'\n${USAGE}`],
      [['extra'], USAGE],
      [['-t', '0'], `blocklistd: Bad timeout '0': a number of seconds from 1\n${USAGE}`], // G19
      [['-t', '-5'], `blocklistd: Bad timeout '-5': a number of seconds from 1\n${USAGE}`],
      [['-t', 'abc'], `blocklistd: Bad timeout 'abc': a number of seconds from 1\n${USAGE}`],
      [['-R', 'a\tb'], `blocklistd: bad rule name 'a\\x09b': control characters are not allowed\n${USAGE}`],
      [['-R', 'a b'], `blocklistd: bad rule name 'a b': blanks are not allowed\n${USAGE}`],
      [['-P', '/nonexistent/sockets'], "blocklistd: Can't open '/nonexistent/sockets': No such file or directory\n"],
      [['--log-format', 'json'], 'blocklistd: --log-format json writes on stdout: use it with --foreground or -d\n'],
    ];
    for (const [args, stderr] of cases) {
      const r = await blocklistd(args);
      assert.equal(r.code, args[0] === '-P' ? 1 : 2, args.join(' '));
      assert.equal(r.stderr, stderr, args.join(' '));
    }
  });

  test('-P: one socket per line, comments and blanks skipped, whitespace trimmed (G22); -s first', async (t) => {
    const f = files();
    const list = join(f.dir, 'sockets');
    writeFileSync(list, `# chroots\n\n  ${join(f.dir, 'a.sock')}  # first\n\t\n${join(f.dir, 'b.sock')}\t\n`);
    const daemon = await DaemonProcess.start({ config: '22 stream * * * 3 1h\n', args: ['-P', list], dir: f.dir });
    t.after(() => daemon.stop('SIGKILL'));
    await daemon.waitFor(/listening on .*b\.sock\n/);
    assert.match(
      daemon.stderr,
      new RegExp(`listening on ${daemon.socket}\\nlistening on ${join(f.dir, 'a.sock')}\\nlistening on ${join(f.dir, 'b.sock')}\\n`),
    );
    for (const s of ['a.sock', 'b.sock']) assert.ok(existsSync(join(f.dir, s)));
  });

  test('a second daemon on the same socket exits 1', async (t) => {
    const daemon = await DaemonProcess.start({ config: '22 stream * * * 3 1h\n' });
    t.after(() => daemon.stop('SIGKILL'));
    const r = await blocklistd(['-d', '-c', daemon.config, '-C', control, '-D', join(daemon.dir, 'other.db'), '-s', daemon.socket]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`bl_init: another daemon is handling '${daemon.socket}'`));
  });

  test('a file that is not a database: exit 1 with what to do; --rename-bad-db moves it aside', async () => {
    const f = files();
    writeFileSync(f.db, 'Berkeley DB 1.85 hash\n'.repeat(400));
    let r = await blocklistd(['-d', ...f.args]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(`'${f.db}' is not a blocklistd database \\(file is not a database\\): move it aside, or start with --rename-bad-db`),
    );
    const daemon = await DaemonProcess.start({ config: readFileSync(f.conf, 'utf8'), args: ['--rename-bad-db', '-D', f.db], dir: f.dir });
    await daemon.stop();
    r = await run('sh', ['-c', `ls ${f.dir} | grep -c '^blocklistd.db.invalid-'`]);
    assert.equal(r.stdout.trim(), '1');
  });
});

describe('blocklistd detached', () => {
  test('detaches, writes its pid file, logs to syslog, serves, and cleans up on SIGTERM', async (t) => {
    const port = await freePort();
    const f = files(`${port} stream * * * 3 1h\n`);
    const syslog = new SyslogReceiver();
    t.after(() => syslog.close());
    const t0 = Date.now();
    const r = await blocklistd([...f.args, '--syslog-socket', syslog.path]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout + r.stderr, '');
    assert.ok(Date.now() - t0 < 5000);
    const pid = Number(readFileSync(f.pid, 'utf8'));
    assert.equal(readFileSync(f.pid, 'utf8'), `${pid}\n`);
    assert.ok(alive(pid));
    t.after(() => {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    });
    assert.ok(existsSync(f.sock));

    const reporter = await Reporter.connect(f.sock, port);
    t.after(() => reporter.close());
    reporter.report(AUTH_FAIL, 'ssh');
    await until(() => dbSize(f.db) === 1);
    await until(() => syslog.records.some((l) => l.includes('processing type=1 ')));
    const record = syslog.records.find((l) => l.includes('processing type=1 '))!;
    assert.match(
      record,
      new RegExp(
        `^<30>[A-Z][a-z]{2} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d blocklistd\\[${pid}\\]: processing type=1 ` +
          `remote=127\\.0\\.0\\.1:\\d+ msg="ssh" uid=0 gid=0$`,
      ),
    );

    process.kill(pid, 'SIGTERM');
    await until(() => !alive(pid));
    assert.equal(existsSync(f.pid), false, 'pid file removed');
    assert.equal(existsSync(f.sock), false, 'socket file removed');
  });

  test('a start-up failure reaches the terminal: exit 1 with the error', async () => {
    const f = files();
    const r = await blocklistd([...f.args.slice(0, -4), '-s', join(f.dir, 'missing', 'x.sock'), '--pidfile', f.pid]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `blocklistd: bl_init: bind failed for '${join(f.dir, 'missing', 'x.sock')}' (No such file or directory)\n`);
    assert.equal(existsSync(f.pid), false);
  });

  test('relative paths still work after the daemon changed to / (G21)', async (t) => {
    const [a, b] = [await freePort(), await freePort()];
    const f = files(`${a} stream * * * 3 1h\n`);
    mkdirSync(join(f.dir, 'run'));
    const r = await blocklistd(
      ['-c', 'blocklistd.conf', '-C', control, '-D', 'blocklistd.db', '-s', 'run/bl.sock', '--pidfile', 'bl.pid'],
      f.dir,
    );
    assert.equal(r.code, 0, r.stderr);
    const pid = Number(readFileSync(join(f.dir, 'bl.pid'), 'utf8'));
    t.after(() => {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    });
    writeFileSync(f.conf, `${b} stream * * * 3 1h\n`);
    process.kill(pid, 'SIGHUP');
    const reporter = await Reporter.connect(join(f.dir, 'run/bl.sock'), b);
    t.after(() => reporter.close());
    // the reload is asynchronous: report until the new rule counts
    await until(() => {
      reporter.report(BAD_USER, 'x');
      return dbSize(f.db) > 0;
    });
    process.kill(pid, 'SIGTERM');
    await until(() => !alive(pid));
  });
});

describe('blocklistd in the foreground', () => {
  test('-d --log-format json: the debugging lines as JSON on stdout, nothing on stderr', async (t) => {
    const port = await freePort();
    const f = files(`${port} stream * * * 3 1h\n`);
    const child = spawn(process.execPath, [daemonBin, ...f.args, '-d', '--log-format', 'json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HELPER_LOG: `${f.db}.helper.log` },
    });
    t.after(() => child.kill('SIGKILL'));
    let [stdout, stderr] = ['', ''];
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await until(() => stdout.includes('listening on '));
    child.kill('SIGTERM');
    assert.equal(await new Promise((resolve) => child.once('exit', resolve)), 0);
    const records = stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { level: string; msg: string });
    assert.ok(
      records.some((r) => r.level === 'debug' && r.msg.startsWith('listening on ')),
      stdout,
    );
    assert.equal(stderr, '');
  });

  test('--foreground --log-format json: attached, JSON lines on stdout, no pid file', async (t) => {
    const port = await freePort();
    const f = files(`${port} stream * * * 3 1h\n`);
    const child = spawn(process.execPath, [daemonBin, ...f.args, '--foreground', '--log-format', 'json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.after(() => child.kill('SIGKILL'));
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    await until(() => existsSync(f.sock));
    const reporter = await Reporter.connect(f.sock, port);
    t.after(() => reporter.close());
    reporter.report(AUTH_FAIL, 'json');
    await until(() => stdout.includes('msg=\\"json\\"'));
    child.kill('SIGTERM');
    const code = await new Promise((resolve) => child.once('exit', resolve));
    assert.equal(code, 0);
    assert.equal(existsSync(f.pid), false);
    for (const line of stdout.trim().split('\n')) {
      const record = JSON.parse(line) as { level: string; msg: string; pid: number };
      assert.equal(record.pid, child.pid);
      if (record.msg.startsWith('processing')) assert.equal(record.level, 'info');
    }
  });
});
