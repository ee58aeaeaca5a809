// systemd integration (issue 7) against the real daemon: sd_notify
// datagrams to a socket the test binds in systemd's place (a path or an
// abstract name), the watchdog, what the helpers inherit; socket activation
// through systemd-socket-activate and through a launcher that passes a mix
// of sockets; the unit files as systemd-analyze reads them.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { AUTH_FAIL } from '../src/index.js';
import {
  Reporter,
  WatchedProcess,
  controlStatus as status,
  ctl,
  escapeRegExp,
  freePort,
  isRoot,
  repoRoot,
  run,
  runBlprobe,
  startDaemon,
  succeeds,
  tempDir,
  until,
} from './support.js';

const FIXTURES = join(repoRoot, 'test/fixtures/systemd-tests');
const CONTROL_FIXTURE = join(repoRoot, 'test/fixtures/control');
const SOCKET_ACTIVATE = '/usr/bin/systemd-socket-activate';
const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze';
const UNITS = join(repoRoot, 'etc/systemd');
const SECCOMP_HEADER = '/usr/include/seccomp.h';

interface Notice {
  pid: number | null;
  /** CLOCK_MONOTONIC at receipt, in microseconds. */
  usec: number;
  message: string;
  fields: Map<string, string>;
}

/** What the test uses of unix-dgram: a sender for the sentinel. */
const unixDgram = createRequire(import.meta.url)('unix-dgram') as {
  createSocket(type: 'unix_dgram'): {
    send(data: Buffer, offset: number, length: number, path: string, callback?: (error?: Error) => void): void;
    close(): void;
  };
};

/** systemd's end of $NOTIFY_SOCKET: the notify-receiver fixture, its datagrams in `notices`. */
class NotifyReceiver {
  readonly notices: Notice[] = [];
  private constructor(readonly address: string) {}

  static async bind(t: TestContext, address: string): Promise<NotifyReceiver> {
    const child = spawn('python3', [join(FIXTURES, 'notify-receiver'), address], { stdio: ['pipe', 'pipe', 'inherit'] });
    t.after(() => child.stdin!.end());
    const receiver = new NotifyReceiver(address);
    let pending = '';
    let ready: () => void;
    const bound = new Promise<void>((resolve, reject) => {
      ready = resolve;
      child.once('exit', (code) => reject(new Error(`notify-receiver ${address} exited (${code})`)));
    });
    child.stdout!.on('data', (d: Buffer) => {
      const lines = (pending + d.toString()).split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        const o = JSON.parse(line) as { ready?: boolean; pid: number | null; usec: number; message: string };
        if (o.ready) ready();
        else
          receiver.notices.push({
            ...o,
            fields: new Map(o.message.split('\n').map((f) => [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)])),
          });
      }
    });
    await bound;
    return receiver;
  }

  /** Resolves with the first notice from index `from` on that has `field`. */
  async next(field: string, from = 0): Promise<{ notice: Notice; index: number }> {
    let index = -1;
    await until(() => (index = this.notices.findIndex((n, i) => i >= from && n.fields.has(field))) !== -1, 10_000);
    return { notice: this.notices[index], index };
  }

  /** Every datagram sent before this call has been read (path sockets only: the sentinel goes through unix-dgram). */
  async drained(): Promise<void> {
    const marker = `SENTINEL=${randomBytes(4).toString('hex')}`;
    const socket = unixDgram.createSocket('unix_dgram');
    await new Promise<void>((resolve, reject) =>
      socket.send(Buffer.from(marker), 0, marker.length, this.address, (e) => (e ? reject(e) : resolve())),
    );
    socket.close();
    await until(() => this.notices.some((n) => n.message === marker));
  }

  /** The notices of the daemon, the sentinels left out. */
  messages(from = 0): string[] {
    return this.notices
      .slice(from)
      .filter((n) => !n.fields.has('SENTINEL'))
      .map((n) => n.message);
  }
}

/** A daemon started through a launcher (which execs it, keeping its pid), its stderr watched; killed after the test. */
function startThroughLauncher(t: TestContext, command: string[], env: Record<string, string> = {}): WatchedProcess {
  const child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  t.after(() => child.kill('SIGKILL'));
  return new WatchedProcess('launched blocklistd', child, [child.stderr]);
}

/** A directory with a configuration for `port`, and the daemon's arguments for it (no socket: the caller adds those). */
function setup(port = 22): { dir: string; args: string[]; env: Record<string, string> } {
  const dir = tempDir('blocklistd-systemd-');
  writeFileSync(join(dir, 'blocklistd.conf'), `${port} stream * * * 1 1h\n`);
  return {
    dir,
    args: [
      process.execPath,
      join(repoRoot, 'bin/blocklistd'),
      '-dd',
      '-v',
      '-c',
      join(dir, 'blocklistd.conf'),
      '-D',
      join(dir, 'blocklistd.db'),
      '-C',
      CONTROL_FIXTURE,
    ],
    env: { HELPER_LOG: join(dir, 'helper.log'), HELPER_MODE_FILE: join(dir, 'helper.mode') },
  };
}

/** The configuration of the sd_notify tests; they wait for "listening on" only: what comes after it is theirs to see. */
const SSH_RULE = '22 stream * * * 3 1h\n';

const notifyPath = (): string => join(tempDir('blocklistd-notify-'), 'notify');

describe('sd_notify', () => {
  test(
    'READY=1 once listening; RELOADING=1 and READY=1 around SIGHUP and control reloads, refused ones ' + 'too; STOPPING=1 last',
    async (t) => {
      const receiver = await NotifyReceiver.bind(t, notifyPath());
      const daemon = await startDaemon(t, SSH_RULE, [], { env: { NOTIFY_SOCKET: receiver.address }, listeningOnly: true });
      const pid = daemon.child.pid!;
      const control = join(daemon.dir, 'blocklistd.ctl');
      const { notice: ready } = await receiver.next('READY');
      assert.equal(ready.message, `READY=1\nSTATUS=listening on ${daemon.socket}\nMAINPID=${pid}`);
      assert.equal(ready.pid, pid, 'sent by the daemon itself');
      assert.equal(existsSync(control), true, 'READY comes once everything listens');

      const reloads: [string, () => Promise<void>][] = [
        ['SIGHUP', async () => void daemon.child.kill('SIGHUP')],
        ['blocklistctl reload', async () => assert.equal((await ctl(['reload', '--control', control])).code, 0)],
        [
          'a refused blocklistctl reload',
          async () => {
            writeFileSync(daemon.config, '22 stream * * * nonsense 1h\n');
            const r = await ctl(['reload', '--control', control]);
            assert.equal(r.code, 1);
            assert.match(r.stderr, /error.* in the configuration: nothing changed/);
          },
        ],
      ];
      for (const [what, reload] of reloads) {
        const from = receiver.notices.length;
        await reload();
        const { notice: reloading, index } = await receiver.next('RELOADING', from);
        const { notice: again } = await receiver.next('READY', index);
        assert.match(reloading.message, /^RELOADING=1\nMONOTONIC_USEC=\d+$/, what);
        // systemd compares it with its own CLOCK_MONOTONIC
        const monotonic = Number(reloading.fields.get('MONOTONIC_USEC'));
        assert.ok(
          monotonic <= reloading.usec && monotonic > reloading.usec - 5_000_000,
          `${what}: MONOTONIC_USEC ${monotonic}, receiver's clock ${reloading.usec}`,
        );
        assert.equal(again.message, `READY=1\nSTATUS=configuration reloaded\nMAINPID=${pid}`, what);
        assert.deepEqual(receiver.messages(from), [reloading.message, again.message], `${what}: nothing else`);
      }

      const from = receiver.notices.length;
      assert.equal(await daemon.stop('SIGTERM'), 0);
      await receiver.drained();
      assert.deepEqual(receiver.messages(from), ['STOPPING=1']);
      assert.ok(
        receiver.notices.every((n) => n.pid === pid || n.fields.has('SENTINEL')),
        'nothing from a helper',
      );
    },
  );

  test('WATCHDOG=1 at once and every WATCHDOG_USEC/2 while WATCHDOG_PID is unset; none after STOPPING=1', async (t) => {
    const receiver = await NotifyReceiver.bind(t, notifyPath());
    const daemon = await startDaemon(t, SSH_RULE, [], {
      env: { NOTIFY_SOCKET: receiver.address, WATCHDOG_USEC: '300000' },
      listeningOnly: true,
    });
    await daemon.waitFor(/systemd watchdog: a ping every 150 ms/);
    const { index: ready } = await receiver.next('READY');
    await until(() => receiver.messages(ready).filter((m) => m === 'WATCHDOG=1').length >= 8);
    const pings = receiver.notices.slice(ready).filter((n) => n.message === 'WATCHDOG=1');
    assert.equal(receiver.notices[ready + 1].message, 'WATCHDOG=1', 'the first ping right after READY=1');
    const gaps = pings.slice(1).map((n, i) => (n.usec - pings[i].usec) / 1000);
    const median = gaps.sort((a, b) => a - b)[Math.floor(gaps.length / 2)];
    assert.ok(median > 100 && median < 400, `pings ${median} ms apart (150 expected)`);

    await daemon.stop('SIGTERM');
    await receiver.drained();
    const stopping = receiver.messages().indexOf('STOPPING=1');
    assert.ok(stopping > 0);
    assert.deepEqual(receiver.messages().slice(stopping), ['STOPPING=1']);
  });

  test('WATCHDOG_PID: pings when it names the daemon, none when it names another process', async (t) => {
    const own = await NotifyReceiver.bind(t, notifyPath());
    const s = setup();
    // sh execs the daemon: $$ is then the daemon's pid
    const daemon = startThroughLauncher(
      t,
      ['sh', '-c', 'WATCHDOG_PID=$$ exec "$@"', 'sh', ...s.args, '-s', join(s.dir, 'blocklistd.sock')],
      {
        ...s.env,
        NOTIFY_SOCKET: own.address,
        WATCHDOG_USEC: '200000',
      },
    );
    await daemon.waitFor(/systemd watchdog: a ping every 100 ms/);
    await until(() => own.messages().filter((m) => m === 'WATCHDOG=1').length >= 3);
    assert.ok(own.notices.every((n) => n.pid === daemon.child.pid));

    const other = await NotifyReceiver.bind(t, notifyPath());
    const unwatched = await startDaemon(t, SSH_RULE, [], {
      env: { NOTIFY_SOCKET: other.address, WATCHDOG_USEC: '200000', WATCHDOG_PID: String(process.pid) },
      listeningOnly: true,
    });
    await other.next('READY');
    // four periods: a watchdog would have pinged by now
    await new Promise((resolve) => setTimeout(resolve, 400));
    await unwatched.stop('SIGTERM');
    await other.drained();
    assert.deepEqual(other.messages().slice(1), ['STOPPING=1']);
    assert.doesNotMatch(unwatched.stderr, /systemd watchdog/);
  });

  test("a watchdog period beyond a timer's range does not make the pings continuous", async (t) => {
    const receiver = await NotifyReceiver.bind(t, notifyPath());
    // 58 days: WatchdogSec=58d
    const daemon = await startDaemon(t, SSH_RULE, [], {
      env: { NOTIFY_SOCKET: receiver.address, WATCHDOG_USEC: String(58 * 86_400 * 1_000_000) },
      listeningOnly: true,
    });
    const { index } = await receiver.next('READY');
    await new Promise((resolve) => setTimeout(resolve, 300));
    await daemon.stop('SIGTERM');
    await receiver.drained();
    assert.deepEqual(receiver.messages(index + 1), ['WATCHDOG=1', 'STOPPING=1']);
  });

  test('an abstract NOTIFY_SOCKET (@name)', async (t) => {
    const receiver = await NotifyReceiver.bind(t, `@blocklistd-test-${process.pid}-${randomBytes(4).toString('hex')}`);
    const daemon = await startDaemon(t, SSH_RULE, [], { env: { NOTIFY_SOCKET: receiver.address }, listeningOnly: true });
    const { notice } = await receiver.next('READY');
    assert.equal(notice.message, `READY=1\nSTATUS=listening on ${daemon.socket}\nMAINPID=${daemon.child.pid}`);
    daemon.child.kill('SIGHUP');
    await receiver.next('RELOADING');
    await daemon.stop('SIGTERM');
    await receiver.next('STOPPING');
    assert.doesNotMatch(daemon.stderr, /cannot notify/);
  });

  test('a NOTIFY_SOCKET nobody listens on: one warning, and the daemon carries on', async (t) => {
    const path = notifyPath();
    const daemon = await startDaemon(t, SSH_RULE, [], { env: { NOTIFY_SOCKET: path }, listeningOnly: true });
    await daemon.waitFor(new RegExp(`cannot notify systemd at ${escapeRegExp(path)}: `));
    const at = daemon.stderr.length;
    daemon.child.kill('SIGHUP');
    await daemon.waitFor(/\[local\]/, at);
    await status(join(daemon.dir, 'blocklistd.ctl'));
    assert.equal(daemon.stderr.match(/cannot notify systemd/g)!.length, 1);
    assert.equal(await daemon.stop('SIGTERM'), 0);
  });

  test('the helpers inherit neither NOTIFY_SOCKET nor LISTEN_*, and no WATCHDOG_* once the watchdog runs', async (t) => {
    const receiver = await NotifyReceiver.bind(t, notifyPath());
    const port = await freePort();
    const s = setup(port);
    const sock = join(s.dir, 'blocklistd.sock');
    // as systemd starts it: a passed socket, $NOTIFY_SOCKET, the watchdog for its own pid (sh and the launcher exec)
    const launch = [
      join(FIXTURES, 'listen-fds'),
      `dgram:${sock}`,
      '--',
      ...s.args,
      '-C',
      join(FIXTURES, 'env-helper'),
      '--control-socket',
      join(s.dir, 'blocklistd.ctl'),
    ];
    const daemon = startThroughLauncher(t, ['sh', '-c', 'WATCHDOG_PID=$$ exec "$@"', 'sh', ...launch], {
      ...s.env,
      NOTIFY_SOCKET: receiver.address,
      WATCHDOG_USEC: '60000000',
    });
    await receiver.next('WATCHDOG');
    const r = await Reporter.connect(sock, port);
    t.after(() => r.close());
    r.report(AUTH_FAIL, 'env');
    await daemon.waitFor(/add returns OK/);
    const calls = readFileSync(`${s.env.HELPER_LOG}.env`, 'utf8')
      .split(/^call /m)
      .slice(1);
    const action = (call: string): string => /^\w+/.exec(call)![0];
    const has = (call: string, name: string): boolean => new RegExp(`^${name}=`, 'm').test(call);
    assert.deepEqual(calls.map(action), ['capabilities', 'add']);
    for (const call of calls) {
      assert.ok(has(call, 'HELPER_LOG'), 'the environment is recorded');
      for (const name of ['NOTIFY_SOCKET', 'LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES'])
        assert.equal(has(call, name), false, `${action(call)}: ${name}`);
    }
    const add = calls[1];
    for (const name of ['WATCHDOG_USEC', 'WATCHDOG_PID']) assert.equal(has(add, name), false, `add: ${name}`);

    await t.test('nor the capabilities call at start-up', () => {
      for (const name of ['WATCHDOG_USEC', 'WATCHDOG_PID']) assert.equal(has(calls[0], name), false, `capabilities: ${name}`);
    });
  });
});

describe('socket activation', () => {
  test(
    'systemd-socket-activate --datagram: the socket adopted, the notification that woke the daemon ' +
      'processed, no default socket bound, the file left at stop',
    { skip: existsSync(SOCKET_ACTIVATE) ? false : `no ${SOCKET_ACTIVATE}` },
    async (t) => {
      const port = await freePort();
      const s = setup(port);
      const sock = join(s.dir, 'blocklistd.sock');
      const control = join(s.dir, 'blocklistd.ctl');
      // it passes on only the environment it is told to
      const env = Object.entries(s.env).flatMap(([k, v]) => ['-E', `${k}=${v}`]);
      const daemon = startThroughLauncher(t, [
        SOCKET_ACTIVATE,
        '--datagram',
        '-l',
        sock,
        '--fdname=notify',
        ...env,
        ...s.args,
        '--control-socket',
        control,
      ]);
      await daemon.waitFor(/Listening on /);
      const probe = await runBlprobe(['-s', sock, '-p', String(port), '-m', 'wake-up']);
      assert.equal(probe.code, 0, probe.stdout + probe.stderr);
      await daemon.waitFor(new RegExp(`listening on ${escapeRegExp(sock)} \\(from systemd, descriptor 3\\)`));
      await daemon.waitFor(new RegExp(`blocked 127\\.0\\.0\\.1/32:${port} for 3600 seconds`));
      assert.match(daemon.text, /msg="wake-up"/);
      assert.equal(daemon.text.match(/listening on /g)!.length, 1, 'the default path is not bound');
      const st = await status(control);
      assert.equal(st.pid, daemon.child.pid, 'systemd-socket-activate execs the daemon: LISTEN_PID is its pid');
      assert.deepEqual(st.sockets, [sock]);
      assert.equal(await daemon.stop(), 0);
      assert.equal(existsSync(sock), true, 'the socket systemd passed stays');
      assert.equal(existsSync(control), false, 'the control socket the daemon bound is removed');
    },
  );

  test(
    'a datagram and a listening stream socket passed: notifications through one, blocklistctl through the other, -s besides; ' +
      "only the daemon's own file removed at stop",
    async (t) => {
      const receiver = await NotifyReceiver.bind(t, notifyPath());
      const port = await freePort();
      const s = setup(port);
      const [control, passed, own] = ['passed.ctl', 'passed.sock', 'own.sock'].map((f) => join(s.dir, f));
      // the stream socket first: a socket's kind decides its role, not its place
      const daemon = startThroughLauncher(
        t,
        [
          join(FIXTURES, 'listen-fds'),
          `stream:${control}=control`,
          `dgram:${passed}=notify`,
          'file:/dev/null=junk',
          '--',
          ...s.args,
          '-s',
          own,
        ],
        {
          ...s.env,
          NOTIFY_SOCKET: receiver.address,
        },
      );
      const { notice } = await receiver.next('READY');
      assert.equal(notice.fields.get('STATUS'), `listening on ${passed}, ${own}`);
      assert.match(daemon.text, new RegExp(`listening on ${escapeRegExp(passed)} \\(from systemd, descriptor 4\\)`));
      assert.match(daemon.text, new RegExp(`listening on ${escapeRegExp(own)}\n`));
      assert.match(daemon.text, new RegExp(`control socket ${escapeRegExp(control)}\n`));
      assert.match(
        daemon.text,
        /systemd passed descriptor 5 \(junk\), neither a unix datagram nor a listening unix stream socket: ignored/,
      );

      for (const [sock, text] of [
        [passed, 'through-passed'],
        [own, 'through-own'],
      ]) {
        const probe = await runBlprobe(['-s', sock, '-p', String(port), '-t', 'baduser', '-m', text]);
        assert.equal(probe.code, 0, probe.stdout + probe.stderr);
        await daemon.waitFor(new RegExp(`msg="${text}"`));
      }
      const st = await status(control);
      assert.equal(st.pid, daemon.child.pid);
      assert.deepEqual(st.sockets, [passed, own]);
      assert.equal(st.control, control);

      assert.equal(await daemon.stop(), 0);
      assert.equal(existsSync(passed), true, 'the passed datagram socket stays');
      assert.equal(existsSync(control), true, 'the passed control socket stays');
      assert.equal(existsSync(own), false, 'the socket the daemon bound is removed');
    },
  );

  test('-s naming the socket systemd passed: that socket, not a second bind', async (t) => {
    const s = setup();
    const passed = join(s.dir, 'blocklistd.sock');
    const daemon = startThroughLauncher(t, [join(FIXTURES, 'listen-fds'), `dgram:${passed}`, '--', ...s.args, '-s', passed], s.env);
    await daemon.waitFor(/control socket /);
    assert.deepEqual((await status(join(s.dir, 'blocklistd.ctl'))).sockets, [passed]);
    assert.equal(await daemon.stop(), 0);
    assert.equal(existsSync(passed), true);
  });

  test('LISTEN_PID naming another process: the passed sockets are not used', async (t) => {
    const s = setup();
    const [passed, own] = ['passed.sock', 'own.sock'].map((f) => join(s.dir, f));
    const daemon = startThroughLauncher(
      t,
      [join(FIXTURES, 'listen-fds'), '--listen-pid', '1', `dgram:${passed}`, '--', ...s.args, '-s', own],
      s.env,
    );
    await daemon.waitFor(/control socket /);
    assert.doesNotMatch(daemon.text, /from systemd|systemd passed/);
    assert.deepEqual((await status(join(s.dir, 'own.ctl'))).sockets, [own]);
    assert.equal(await daemon.stop(), 0);
  });
});

describe('etc/systemd units', () => {
  /** A unit file's settings: section → key → values in order. */
  function unit(name: string): Map<string, Map<string, string[]>> {
    const sections = new Map<string, Map<string, string[]>>();
    let section = new Map<string, string[]>();
    for (const line of readFileSync(join(UNITS, name), 'utf8').split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const header = /^\[(\w+)\]$/.exec(line);
      if (header !== null) sections.set(header[1], (section = new Map()));
      else {
        const [key, value] = [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)];
        section.set(key, [...(section.get(key) ?? []), value]);
      }
    }
    return sections;
  }

  test('systemd-analyze verify finds nothing wrong', { skip: existsSync(SYSTEMD_ANALYZE) ? false : `no ${SYSTEMD_ANALYZE}` }, async () => {
    const r = await run(SYSTEMD_ANALYZE, [
      'verify',
      '--man=no',
      ...['blocklistd.service', 'blocklistd.socket', 'blocklistd-control.socket', 'blocklistd-watch.service'].map((u) => join(UNITS, u)),
    ]);
    // this machine has neither the daemon installed in /usr/local/sbin nor its man pages
    const complaints = `${r.stdout}${r.stderr}`
      .split('\n')
      .filter((l) => l !== '' && !/Command \/usr\/local\/sbin\/blocklistd(-watch)? is not executable|Command 'man .*' failed/.test(l));
    assert.deepEqual(complaints, []);
  });

  // systemd 252 (Debian 12) reads a unit file offline; below 2.5 is "OK" on its scale
  for (const [name, most] of [
    ['blocklistd.service', 2.5],
    ['blocklistd-watch.service', 1.0],
  ] as const) {
    test(
      `systemd-analyze security: ${name}'s exposure is at most ${most}`,
      { skip: existsSync(SYSTEMD_ANALYZE) ? false : `no ${SYSTEMD_ANALYZE}` },
      async (t) => {
        const r = await run(SYSTEMD_ANALYZE, ['security', '--offline=yes', '--no-pager', join(UNITS, name)]);
        const overall = /Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout);
        assert.ok(overall !== null, `no exposure level in: ${r.stdout}${r.stderr}`);
        t.diagnostic(`${name}: exposure ${overall[1]}`);
        assert.ok(
          Number(overall[1]) <= most,
          `${name}: exposure ${overall[1]}\n${r.stdout
            .split('\n')
            .filter((l) => l.startsWith('✗'))
            .join('\n')}`,
        );
      },
    );
  }

  test(
    'the sandbox leaves the helper what it writes: the lock of iptables-legacy, made outside it; ' +
      "the database and the helper lock in the unit's own directories",
    () => {
      const s = unit('blocklistd.service').get('Service')!;
      assert.deepEqual(s.get('ProtectSystem'), ['strict']);
      assert.deepEqual(s.get('StateDirectory'), ['blocklistd']);
      assert.deepEqual(s.get('RuntimeDirectory'), ['blocklistd']);
      assert.ok(s.get('ExecStart')![0].includes(' -D /var/lib/blocklistd/'), 'the database in the StateDirectory');
      assert.ok(
        s.get('Environment')?.includes('BLOCKLISTD_HELPER_LOCK=/run/blocklistd/helper.lock'),
        'the helper lock in the RuntimeDirectory',
      );
      assert.ok(s.get('ExecStartPre')?.includes("+/bin/sh -c ': >>/run/xtables.lock'"), 'the xtables lock made before the start');
      assert.deepEqual(s.get('ReadWritePaths'), ['-/run/xtables.lock']);
      // V8's JIT needs memory it makes executable
      assert.equal(s.get('MemoryDenyWriteExecute'), undefined);
    },
  );

  /**
   * Every system call the SystemCallFilter= lines allow (an allow-list, then
   * ~ lines taking calls out), groups expanded as systemd-analyze lists them.
   */
  async function allowedSyscalls(lines: string[]): Promise<string[]> {
    const listing = await succeeds(run(SYSTEMD_ANALYZE, ['syscall-filter', '--no-pager']), 'systemd-analyze syscall-filter');
    const groups = new Map<string, string[]>();
    let current: string[] = [];
    for (const line of listing.stdout.split('\n')) {
      const item = line.trim();
      if (item === '' || item.startsWith('#')) continue;
      if (!line.startsWith(' ') && item.startsWith('@')) groups.set(item, (current = []));
      else current.push(item);
    }
    const expand = (name: string): string[] =>
      name.startsWith('@') ? (groups.get(name) ?? assert.fail(`no group ${name}`)).flatMap(expand) : [name];
    const allowed = new Set<string>();
    for (const line of lines) {
      const denied = line.startsWith('~');
      for (const name of line.replace(/^~/, '').split(/\s+/).flatMap(expand)) {
        if (denied) allowed.delete(name);
        else allowed.add(name);
      }
    }
    return [...allowed];
  }

  const sandboxSkip = !isRoot
    ? 'needs root (namespaces, nftables)'
    : !existsSync(SECCOMP_HEADER)
      ? `no ${SECCOMP_HEADER} (libseccomp-dev)`
      : !existsSync(SYSTEMD_ANALYZE)
        ? `no ${SYSTEMD_ANALYZE}`
        : !existsSync('/usr/sbin/nft')
          ? 'no nft'
          : false;

  // No systemd runs here: its sandbox is rebuilt from the unit's settings (a
  // mount and a network namespace, the file system read-only but for the
  // state directory, the capability bounding set, no new privileges, the
  // system call allow-list failing the others with EPERM) around the daemon,
  // which must still block and release through nft.
  test(
    "the unit's sandbox, rebuilt without systemd: the helper blocks and releases through nftables (IPv4, " +
      'IPv6); the receiving thread gets its priority',
    { skip: sandboxSkip },
    async (t) => {
      const s = unit('blocklistd.service').get('Service')!;
      assert.deepEqual(s.get('SystemCallErrorNumber'), ['EPERM']);
      assert.deepEqual(s.get('NoNewPrivileges'), ['yes']);
      assert.deepEqual(s.get('ProtectSystem'), ['strict']);
      const dir = tempDir('blocklistd-sandbox-');
      const state = join(dir, 'state');
      mkdirSync(state);
      const allow = join(dir, 'allowed');
      writeFileSync(allow, `${(await allowedSyscalls(s.get('SystemCallFilter')!)).join('\n')}\n`);
      const seccompExec = join(dir, 'seccomp-exec');
      await succeeds(run('cc', ['-O2', '-o', seccompExec, join(FIXTURES, 'seccomp-exec.c'), '-lseccomp']), 'cc seccomp-exec.c');
      const caps = s
        .get('CapabilityBoundingSet')![0]
        .split(' ')
        .map((c) => `+${c.toLowerCase().replace(/^cap_/, '')}`);
      const conf = join(dir, 'blocklistd.conf');
      writeFileSync(conf, '22 stream * * * 3 1h\n');
      const sock = join(state, 'blocklistd.sock');
      const script = [
        'set -e',
        'ip link set lo up',
        'mount --make-rprivate /',
        `mount --bind '${state}' '${state}'`,
        // ProtectSystem=strict: every mount read-only but the API file systems and the state directory
        `findmnt -rno TARGET | while read -r m; do case $m in ` +
          `/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|'${state}') ;; *) mount -o remount,bind,ro "$m" 2>/dev/null ` +
          `|| true ;; esac; done`,
        `! touch '${dir}/writable' 2>/dev/null`,
        `exec setpriv --no-new-privs --bounding-set -all,${caps.join(',')} --inh-caps=-all '${seccompExec}' ` +
          `'${allow}' '${process.execPath}' '${join(repoRoot, 'bin/blocklistd')}' -d -c '${conf}' -D ` +
          `'${state}/db' -s '${sock}'`,
      ].join('\n');
      const child = spawn('unshare', ['--mount', '--net', 'sh', '-c', script], {
        env: { ...process.env, BLOCKLISTD_BACKEND: 'nftables', BLOCKLISTD_HELPER_LOCK: join(state, 'helper.lock') },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const daemon = new WatchedProcess('sandboxed blocklistd', child);
      t.after(() => daemon.stop());
      await daemon.waitFor(/^control socket /m);
      const pid = child.pid!;
      const procStatus = readFileSync(`/proc/${pid}/status`, 'utf8');
      assert.match(procStatus, /^Seccomp:\s+2$/m, 'the filter is in force');
      assert.match(procStatus, /^NoNewPrivs:\s+1$/m);
      assert.match(procStatus, /^CapBnd:\s+0000000000803000$/m, 'CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_NICE only');
      // the receiving thread at nice -10: setpriority passed the filter and CAP_SYS_NICE was kept
      const nices = (): number[] =>
        readdirSync(`/proc/${pid}/task`).map((task) =>
          Number(
            readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8')
              .replace(/^.*\) /s, '')
              .split(' ')[16],
          ),
        );
      await until(() => nices().includes(-10)).catch(() => assert.fail(`thread priorities ${nices().join(' ')}`));

      const set = async (family: 'v4' | 'v6'): Promise<string> =>
        (
          await succeeds(
            run('nsenter', ['-t', String(pid), '-n', 'nft', 'list', 'set', 'inet', 'blocklistd', `blocklistd-${family}`]),
            'nft list set',
          )
        ).stdout;
      for (const address of ['192.0.2.9', '2001:db8::9'])
        await succeeds(ctl(['report', '-t', 'abuse', '-p', '22', '-s', sock, address]), `report ${address}`);
      await daemon.waitFor(/^blocked 2001:db8::9\/128:22 /m);
      await daemon.waitFor(/^blocked 192\.0\.2\.9\/32:22 /m);
      assert.match(await set('v4'), /elements = \{ tcp \. 192\.0\.2\.9 \. 22 \}/);
      assert.match(await set('v6'), /elements = \{ tcp \. 2001:db8::9 \. 22 \}/);
      await succeeds(ctl(['unblock', '-s', sock, '192.0.2.9']), 'unblock');
      await daemon.waitFor(/^released 192\.0\.2\.9\/32:22 /m);
      assert.doesNotMatch(await set('v4'), /192\.0\.2\.9/);
      assert.doesNotMatch(daemon.text, /not permitted|EPERM|Read-only file system/i);
      assert.equal(await daemon.stop(), 0);
    },
  );

  test("the units' key settings", () => {
    const service = unit('blocklistd.service');
    const s = service.get('Service')!;
    assert.deepEqual(s.get('Type'), ['notify']);
    assert.deepEqual(s.get('WatchdogSec'), ['60s']);
    assert.deepEqual(s.get('Sockets'), ['blocklistd.socket blocklistd-control.socket']);
    assert.deepEqual(s.get('ExecReload'), ['/bin/kill -HUP $MAINPID']);
    // Type=notify: the process systemd started must be the daemon, not a parent that exits
    const exec = s.get('ExecStart')![0].split(' ');
    assert.ok(exec.includes('--foreground'), 'stays in the foreground');
    assert.ok(
      !exec.includes('-s') && !exec.includes('-P') && !exec.some((a) => a.startsWith('--control-socket')),
      'its sockets come from the socket units',
    );
    // the start-up checks first, with the daemon's own options
    assert.deepEqual(s.get('ExecStartPre')![0].split(' '), [exec[0], '--check', ...exec.slice(1)]);
    assert.deepEqual(service.get('Unit')!.get('Requires'), ['blocklistd.socket blocklistd-control.socket']);

    const notify = unit('blocklistd.socket').get('Socket')!;
    assert.deepEqual(notify.get('ListenDatagram'), ['/run/blocklistd.sock']);
    assert.deepEqual(notify.get('SocketMode'), ['0666']);
    assert.deepEqual(notify.get('PassCredentials'), ['yes']);
    assert.deepEqual(notify.get('Service'), ['blocklistd.service']);
    const control = unit('blocklistd-control.socket').get('Socket')!;
    assert.deepEqual(control.get('ListenStream'), ['/run/blocklistd.ctl']);
    // root and the group the daemon serves (--control-group)
    assert.deepEqual(control.get('SocketMode'), ['0660']);
    assert.deepEqual(control.get('SocketGroup'), ['blocklistd']);
    assert.ok(exec.join(' ').includes('--control-group blocklistd'), 'the daemon checks the same group');
    assert.deepEqual(unit('blocklistd-watch.service').get('Service')!.get('SupplementaryGroups'), ['systemd-journal adm blocklistd']);
    assert.deepEqual(control.get('Service'), ['blocklistd.service']);
  });
});
