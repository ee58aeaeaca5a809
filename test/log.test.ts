// The daemon logger on real sockets and real child processes: the syslog
// record format, stderr and JSON output, the two channels, a missing
// syslog socket and a process that exits on its own; a real daemon's
// audit trail in JSON (start, notifications, blocks, releases, manual
// actions, reloads, stop).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { createLogger, syslogRecords, type LogOutput } from '../src/daemon/log.js';
import type { LogLevel } from '../src/types.js';
import { AUTH_FAIL } from '../src/index.js';
import { elapsed } from '../src/time.js';
import { StateStore } from '../src/state/store.js';
import {
  DaemonProcess,
  Reporter,
  SyslogReceiver,
  WatchedProcess,
  ctl,
  freePort,
  openDescriptors,
  repoRoot,
  stateKey,
  tempDir,
} from './support.js';

// Local time is UTC unless a test says otherwise (Node applies TZ changes at once).
process.env.TZ = 'UTC';

const dir = tempDir('blocklistd-log-');
let sockets = 0;
/** A fresh socket path in the test's directory. */
const socketPath = (): string => join(dir, `log${++sockets}`);

const logModule = pathToFileURL(join(repoRoot, 'dist/src/daemon/log.js')).href;

/** `Mmm dd hh:mm:ss` of a time in UTC, derived from toUTCString rather than the getters log.ts uses. */
function utcStamp(ms: number): string {
  const [, day, month, , time] = new Date(ms).toUTCString().split(' ');
  return `${month} ${String(Number(day)).padStart(2, ' ')} ${time}`;
}

/** The stamps of every second from `from` to now. */
function stampsSince(from: number): Set<string> {
  const stamps = new Set<string>();
  for (let s = Math.floor(from / 1000) * 1000; s <= Date.now(); s += 1000) stamps.add(utcStamp(s));
  return stamps;
}

interface ChildResult {
  code: number | null;
  pid: number;
  stdout: Buffer;
  stderr: Buffer;
}

/** Runs ES module `code` (with `createLogger` and `unixDgram` in scope) in a child node; fails if it does not exit within `ms`. */
function child(code: string, args: string[] = [], ms = 5000): Promise<ChildResult> {
  const preamble =
    `import { createLogger } from ${JSON.stringify(logModule)};\n` +
    `import { createRequire } from 'node:module';\n` +
    `const unixDgram = createRequire(${JSON.stringify(logModule)})('unix-dgram');\n`;
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', preamble + code, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TZ: 'UTC' },
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    c.stdout.on('data', (d: Buffer) => stdout.push(d));
    c.stderr.on('data', (d: Buffer) => stderr.push(d));
    const timer = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`child did not exit within ${ms} ms; stderr: ${Buffer.concat(stderr).toString()}`));
    }, ms);
    c.on('error', reject);
    c.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, pid: c.pid ?? -1, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) });
    });
  });
}

const LEVELS: [LogLevel, number][] = [
  ['crit', 26],
  ['err', 27],
  ['warning', 28],
  ['notice', 29],
  ['info', 30],
  ['debug', 31],
];

test('syslogRecords: priority, padded day, local time, one record per line', () => {
  const time = new Date(Date.UTC(2026, 10, 1, 4, 5, 6));
  assert.deepEqual(syslogRecords('blocklistd', 42, 'notice', time, 'blocked 192.0.2.1/32:22 for 3600 seconds'), [
    '<29>Nov  1 04:05:06 blocklistd[42]: blocked 192.0.2.1/32:22 for 3600 seconds',
  ]);
  assert.deepEqual(syslogRecords('b', 1, 'debug', new Date(Date.UTC(2026, 0, 31, 23, 59, 9)), 'x'), ['<31>Jan 31 23:59:09 b[1]: x']);
  assert.deepEqual(syslogRecords('b', 1, 'err', time, 'one\r\ntwo\n<27>Nov  1 04:05:06 forged[1]: x\ry'), [
    '<27>Nov  1 04:05:06 b[1]: one',
    '<27>Nov  1 04:05:06 b[1]: two',
    '<27>Nov  1 04:05:06 b[1]: <27>Nov  1 04:05:06 forged[1]: xy',
  ]);
  process.env.TZ = 'Etc/GMT-14'; // UTC+14: the same instant is the evening of Nov 1
  try {
    assert.deepEqual(syslogRecords('b', 1, 'info', time, 'x'), ['<30>Nov  1 18:05:06 b[1]: x']);
  } finally {
    process.env.TZ = 'UTC';
  }
});

test('syslog output: one datagram per line with PRI, local time stamp and ident[pid]', async (t) => {
  const receiver = new SyslogReceiver(socketPath());
  t.after(() => receiver.close());
  const logger = createLogger({ ident: 'blocklistd', output: 'syslog', verbose: false, syslogPath: receiver.path });
  t.after(() => logger.close());
  const start = Date.now();
  for (const [level] of LEVELS) logger.log(level, `${level} message %s`);
  logger.log('debug', '[local]\nrule 1\nrule 2');
  const records = await receiver.wait(LEVELS.length + 3);
  const stamps = stampsSince(start);
  const parsed = records.map((r) => /^<(\d+)>(\w{3} [ \d]\d \d\d:\d\d:\d\d) blocklistd\[(\d+)\]: (.*)$/s.exec(r));
  for (const [i, m] of parsed.entries()) {
    assert.ok(m, `record ${i} shape: ${JSON.stringify(records[i])}`);
    assert.ok(stamps.has(m[2]), `stamp ${m[2]} not in ${[...stamps].join(', ')}`);
    assert.equal(Number(m[3]), process.pid);
  }
  assert.deepEqual(
    parsed.map((m) => [Number(m?.[1]), m?.[4]]),
    [...LEVELS.map(([level, pri]) => [pri, `${level} message %s`]), [31, '[local]'], [31, 'rule 1'], [31, 'rule 2']],
  );
  assert.equal(records.length, LEVELS.length + 3);
});

test('syslog output: lines of any length arrive whole, UTF-8 included (the addon converts short ones once, in 1,024 bytes)', async (t) => {
  const receiver = new SyslogReceiver(socketPath());
  t.after(() => receiver.close());
  const logger = createLogger({ ident: 'b', output: 'syslog', verbose: false, syslogPath: receiver.path });
  t.after(() => logger.close());
  const head = syslogRecords('b', process.pid, 'info', new Date(), '')[0].length;
  // records of 1,022 to 1,025 bytes around the buffer's 1,023, one ending in a character of 3 bytes cut by it, and a long one
  const messages = [1022, 1023, 1024, 1025].map((n) => 'x'.repeat(n - head));
  messages.push(`${'y'.repeat(1021 - head)}€ after`, `${'z'.repeat(5000)}ü`);
  for (const message of messages) logger.log('info', message);
  const records = await receiver.wait(messages.length);
  assert.deepEqual(
    records.map((r) => r.slice(r.indexOf(': ') + 2)),
    messages,
  );
});

test('syslog output: lines that find the queue full are dropped with the rest of their turn, and later lines go out', async (t) => {
  // the receiver reads on this thread: while this turn runs, the kernel queues what it can and refuses the rest
  const receiver = new SyslogReceiver(socketPath());
  t.after(() => receiver.close());
  const logger = createLogger({ ident: 'b', output: 'syslog', verbose: false, syslogPath: receiver.path });
  t.after(() => logger.close());
  const lines = Array.from({ length: 5000 }, (_, i) => `line ${i}`);
  for (const line of lines) logger.log('info', line);
  await new Promise((resolve) => setTimeout(resolve, 100));
  const kept = receiver.records.length;
  assert.ok(kept > 0 && kept < lines.length, `${kept} of ${lines.length} lines kept`);
  logger.log('info', 'after');
  await receiver.wait(kept + 1);
  assert.deepEqual(
    receiver.records.map((r) => r.slice(r.indexOf(': ') + 2)),
    [...lines.slice(0, kept), 'after'],
  );
});

test('syslog output: close() releases the socket at once, otherwise the next turn of the event loop does', async (t) => {
  const receiver = new SyslogReceiver(socketPath());
  t.after(() => receiver.close());
  const logger = createLogger({ ident: 'blocklistd', output: 'syslog', verbose: false, syslogPath: receiver.path });
  t.after(() => logger.close());
  const before = openDescriptors();
  logger.log('info', 'one');
  logger.library('info', 'two'); // same socket
  assert.equal(openDescriptors(), before + 1);
  logger.close();
  assert.equal(openDescriptors(), before);
  logger.log('info', 'three');
  assert.equal(openDescriptors(), before + 1);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(openDescriptors(), before);
  assert.deepEqual(
    (await receiver.wait(3)).map((r) => r.replace(/^.*: /, '')),
    ['one', 'two', 'three'],
  );
});

// The child logs once to a path where nothing listens, then binds a receiver
// there and logs every 10 ms for `ms`; it prints the records that arrived.
const missingSocket = `
const [path, retry, ms] = process.argv.slice(1);
const logger = createLogger({ ident: 'bltest', output: 'syslog', verbose: false, syslogPath: path, syslogRetryMs: Number(retry) });
logger.log('err', 'lost');
logger.log('err', 'lost too');
const records = [];
const receiver = unixDgram.createSocket('unix_dgram', (d) => records.push(d.toString()));
receiver.bind(path);
const start = performance.now();
const tick = setInterval(() => {
  const now = performance.now() - start;
  if (now < Number(ms)) return logger.log('info', 'at ' + Math.round(now));
  clearInterval(tick);
  setTimeout(() => {
    receiver.close();
    process.stdout.write(JSON.stringify(records));
  }, 50);
}, 10);
`;

test('syslog output: a missing socket drops lines, is reported once and is not retried within 10 s', async () => {
  const path = socketPath();
  const r = await child(missingSocket, [path, '10000', '1000']);
  assert.equal(r.code, 0, r.stderr.toString());
  assert.deepEqual(JSON.parse(r.stdout.toString()), []);
  assert.equal(
    r.stderr.toString(),
    `bltest: cannot log to ${path}: connect: no such file or directory (ENOENT); syslog messages are dropped\n`,
  );
});

test('syslog output: after the retry interval the logger connects again', async () => {
  const path = socketPath();
  const r = await child(missingSocket, [path, '300', '900']);
  assert.equal(r.code, 0, r.stderr.toString());
  const records = JSON.parse(r.stdout.toString()) as string[];
  const times = records.map((rec) => Number(/: at (\d+)$/.exec(rec)?.[1]));
  assert.ok(times.length >= 5, `${times.length} records`);
  assert.ok(times[0] >= 250 && times[0] <= 700, `first record at ${times[0]} ms`);
  assert.equal(r.stderr.toString().split('\n').length, 2, r.stderr.toString()); // one report line
});

test('stderr output: the bare message, one line each, nothing on stdout', async () => {
  const r = await child(`
const logger = createLogger({ ident: 'bltest', output: 'stderr', verbose: true });
logger.log('crit', 'crit line');
logger.log('debug', '[local]\\nrule 1');
logger.log('info', 'n\\u00e9e %s %d');
logger.library('err', 'no message (message too short)');
logger.log('notice', '');
logger.log('info', 'blocked 192.0.2.1/32:22 for 60 seconds', { event: 'block', address: '192.0.2.1', mask: 32, port: 22 });
`);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.length, 0);
  assert.deepEqual(
    r.stderr,
    Buffer.from('crit line\n[local]\nrule 1\nnée %s %d\nno message (message too short)\n\nblocked 192.0.2.1/32:22 for 60 seconds\n'),
  );
});

test('json output: pino lines on stdout with the level label', async () => {
  const before = Date.now();
  const r = await child(`
const logger = createLogger({ ident: 'bltest', output: 'json', verbose: false });
for (const level of ['crit', 'err', 'warning', 'notice', 'info', 'debug']) logger.log(level, level + ' "quoted"\\nline');
logger.library('err', 'library');
`);
  assert.equal(r.code, 0);
  assert.equal(r.stderr.length, 0);
  const text = r.stdout.toString();
  assert.ok(text.endsWith('\n'));
  const lines = text
    .slice(0, -1)
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(
    lines.map((l) => [l.level, l.msg]),
    [...LEVELS.map(([level]) => [level, `${level} "quoted"\nline`]), ['err', 'library']],
  );
  for (const l of lines) {
    assert.equal(l.pid, r.pid);
    assert.equal(l.hostname, hostname());
    assert.ok(typeof l.time === 'number' && l.time >= before && l.time <= Date.now());
  }
});

interface Routing {
  output: LogOutput;
  verbose: boolean;
  /** Where each channel's line should land. */
  daemon: 'syslog' | 'stderr' | 'stdout';
  library: 'syslog' | 'stderr' | 'stdout';
}

const ROUTING: Routing[] = [
  { output: 'syslog', verbose: false, daemon: 'syslog', library: 'syslog' },
  { output: 'syslog', verbose: true, daemon: 'syslog', library: 'stderr' },
  { output: 'stderr', verbose: false, daemon: 'stderr', library: 'syslog' },
  { output: 'stderr', verbose: true, daemon: 'stderr', library: 'stderr' },
  { output: 'json', verbose: false, daemon: 'stdout', library: 'stdout' },
  { output: 'json', verbose: true, daemon: 'stdout', library: 'stderr' },
];

test('json output: the fields beside the message; syslog records the message alone', async (t) => {
  const receiver = new SyslogReceiver(socketPath());
  t.after(() => receiver.close());
  const fields = {
    event: 'release',
    address: '2001:db8::1',
    mask: 64,
    port: 22,
    proto: 'tcp',
    rule: 'ssh',
    duration: 21612,
    names: ['a', 'b'],
  };
  const message = 'released 2001:db8::/64:22 after 21600 seconds (blocked 6h0m12s)';
  const r = await child(
    `
const [syslogPath, message, fields] = process.argv.slice(1);
createLogger({ ident: 'bltest', output: 'json', verbose: false }).log('info', message, JSON.parse(fields));
const syslog = createLogger({ ident: 'bltest', output: 'syslog', verbose: false, syslogPath });
syslog.log('info', message, JSON.parse(fields));
syslog.close();
`,
    [receiver.path, message, JSON.stringify(fields)],
  );
  assert.equal(r.code, 0, r.stderr.toString());
  const line = JSON.parse(r.stdout.toString()) as Record<string, unknown>;
  assert.deepEqual({ ...line, time: 0, hostname: '' }, { level: 'info', time: 0, pid: r.pid, hostname: '', ...fields, msg: message });
  assert.match((await receiver.wait(1))[0], new RegExp(`^<30>.{15} bltest\\[${r.pid}\\]: ${message.replace(/[()]/g, '\\$&')}$`));
});

test('channels: -d keeps the library channel on syslog, -v sends it to stderr; the child exits without close()', async () => {
  await Promise.all(
    ROUTING.map(async (routing) => {
      const receiver = new SyslogReceiver(socketPath());
      try {
        const r = await child(
          `
const [output, verbose, syslogPath] = process.argv.slice(1);
const logger = createLogger({ ident: 'bltest', output, verbose: verbose === 'true', syslogPath });
logger.log('notice', 'daemon line');
logger.library('err', 'library line');
`,
          [routing.output, String(routing.verbose), receiver.path],
        );
        const name = `${routing.output} verbose=${routing.verbose}`;
        assert.equal(r.code, 0, name);
        // The datagrams were queued before the child exited; let the receiver drain them.
        await new Promise((resolve) => setTimeout(resolve, 50));
        const expected = { syslog: [] as string[], stderr: '', stdout: [] as string[] };
        for (const [channel, pri, message] of [
          ['daemon', 29, 'daemon line'],
          ['library', 27, 'library line'],
        ] as const) {
          const where = routing[channel];
          if (where === 'syslog') expected.syslog.push(`<${pri}> bltest[${r.pid}]: ${message}`);
          if (where === 'stderr') expected.stderr += `${message}\n`;
          if (where === 'stdout') expected.stdout.push(message);
        }
        assert.deepEqual(
          receiver.records.map((rec) => rec.replace(/^(<\d+>).{15}/, '$1')),
          expected.syslog,
          name,
        );
        assert.equal(r.stderr.toString(), expected.stderr, name);
        const stdout = r.stdout.toString();
        assert.deepEqual(
          stdout === ''
            ? []
            : stdout
                .trimEnd()
                .split('\n')
                .map((l) => (JSON.parse(l) as { msg: string }).msg),
          expected.stdout,
          name,
        );
      } finally {
        receiver.close();
      }
    }),
  );
});

test('after close() a process that logged to syslog exits on its own', async (t) => {
  const receiver = new SyslogReceiver(socketPath());
  t.after(() => receiver.close());
  const r = await child(
    `
const logger = createLogger({ ident: 'bltest', output: 'syslog', verbose: false, syslogPath: process.argv[1] });
setTimeout(() => {
  logger.log('info', 'last words');
  logger.close();
}, 20);
`,
    [receiver.path],
    3000,
  );
  assert.equal(r.code, 0);
  assert.match((await receiver.wait(1))[0], /^<30>.{15} bltest\[\d+\]: last words$/);
});

test('elapsed: how long a block lasted, as the release line shows it', () => {
  assert.deepEqual([0, 45, 60, 180, 3600, 21612, 86400 + 3600 + 5, -3, 59.9].map(elapsed), [
    '0s',
    '45s',
    '1m0s',
    '3m0s',
    '1h0m0s',
    '6h0m12s',
    '1d1h0m5s',
    '0s',
    '59s',
  ]);
});

describe('a daemon logging JSON (--log-format json)', () => {
  type Line = Record<string, unknown> & { level: string; msg: string; event?: string };
  const lines = (p: WatchedProcess): Line[] =>
    p.text
      .split('\n')
      .slice(0, -1) // the last one may not be complete yet
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Line);
  /** The first line of `event` from line `from` on whose fields include `match`. */
  const line = async (p: WatchedProcess, event: string, match: Record<string, unknown> = {}, from = 0): Promise<Line> => {
    const find = (): Line | undefined =>
      lines(p)
        .slice(from)
        .find((l) => l.event === event && Object.entries(match).every(([k, v]) => JSON.stringify(l[k]) === JSON.stringify(v)));
    await p.waitFor(new RegExp(`"event":"${event}"`), 0);
    const deadline = Date.now() + 15_000;
    for (let found = find(); ; found = find()) {
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`no ${event} line with ${JSON.stringify(match)}:\n${p.text}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  test('start, notification, block, release with how long it lasted, manual actions with uid and pid, reload changes, stop', async (t) => {
    const dir = tempDir('blocklistd-jsonlog-');
    const [port, other] = await Promise.all([freePort(), freePort()]);
    const conf = join(dir, 'blocklistd.conf');
    writeFileSync(conf, `${port} stream * * * 1 2\n${other} stream * * * 3 1h\n`);
    const socket = join(dir, 'blocklistd.sock');
    const control = join(dir, 'blocklistd.ctl');
    const helper = join(repoRoot, 'test/fixtures/control');
    const child = spawn(
      process.execPath,
      [
        join(repoRoot, 'bin/blocklistd'),
        '--foreground',
        '--log-format',
        'json',
        '-c',
        conf,
        '-C',
        helper,
        '-D',
        join(dir, 'blocklistd.db'),
        '-s',
        socket,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, HELPER_LOG: join(dir, 'helper.log') },
      },
    );
    const daemon = new WatchedProcess('blocklistd', child, [child.stdout]);
    t.after(() => daemon.stop());

    const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    const start = await line(daemon, 'start');
    assert.equal(start.level, 'info');
    assert.deepEqual(
      {
        version: start.version,
        config: start.config,
        rules: start.rules,
        database: start.database,
        sockets: start.sockets,
        control: start.control,
        helper: start.helper,
      },
      { version, config: conf, rules: 2, database: join(dir, 'blocklistd.db'), sockets: [socket], control, helper },
    );
    assert.equal(
      start.msg,
      `blocklistd ${version} started: configuration ${conf} (2 rules: 2 local, 0 remote), database ` +
        `${join(dir, 'blocklistd.db')}, sockets ${socket}, control socket ${control}, helper ${helper}`,
    );

    // a failure reaches the limit of 1: blocked for 2 seconds, released by expiry
    const reporter = await Reporter.connect(socket, port, '127.0.0.5');
    t.after(() => reporter.close());
    reporter.report(AUTH_FAIL, 'bad password');
    const notification = await line(daemon, 'notification', { address: '127.0.0.5' });
    assert.deepEqual(
      { type: notification.type, uid: notification.uid, gid: notification.gid, peerPid: notification.peerPid, text: notification.text },
      { type: 'auth_fail', uid: process.getuid!(), gid: process.getgid!(), peerPid: process.pid, text: 'bad password' },
    );
    const block = await line(daemon, 'block', { address: '127.0.0.5' });
    const entry = { address: '127.0.0.5', mask: 32, port, proto: 'tcp', rule: 'blocklistd', nfail: 1 };
    assert.deepEqual(
      { ...block, time: 0, pid: 0, hostname: '' },
      {
        level: 'info',
        time: 0,
        pid: 0,
        hostname: '',
        event: 'block',
        ...entry,
        origin: 'limit',
        count: 2,
        duration: 2,
        msg: `blocked 127.0.0.5/32:${port} for 2 seconds`,
      },
    );
    const release = await line(daemon, 'release', { address: '127.0.0.5' });
    const lasted = release.duration as number;
    // expired means last + duration < now: the second after the duration, within a second of the pass
    assert.ok(lasted >= 3 && lasted <= 5, `lasted ${lasted} s`);
    assert.deepEqual(
      { ...release, time: 0, pid: 0, hostname: '' },
      {
        level: 'info',
        time: 0,
        pid: 0,
        hostname: '',
        event: 'release',
        ...entry,
        origin: 'expiry',
        duration: lasted,
        msg: `released 127.0.0.5/32:${port} after 2 seconds (blocked ${lasted}s)`,
      },
    );

    // manual actions: who asked (uid, the client's pid), what, and the outcome
    let r = await ctl(['block', '-t', '1h', '--control', control, '10.9.9.9']);
    assert.equal(r.code, 0, r.stderr);
    const manual = await line(daemon, 'manual', { command: 'block' });
    assert.equal(manual.level, 'notice');
    assert.equal(manual.uid, process.getuid!());
    assert.ok(
      typeof manual.peerPid === 'number' && manual.peerPid > 0 && manual.peerPid !== process.pid && manual.peerPid !== child.pid,
      `peer pid ${String(manual.peerPid)}`,
    );
    assert.match(
      manual.msg,
      new RegExp(
        `^control: block \\{.*"address":"10\\.9\\.9\\.9".*\\} requested by uid ${process.getuid!()} pid ${manual.peerPid as number}$`,
      ),
    );
    const manualBlock = await line(daemon, 'block', { address: '10.9.9.9' });
    assert.deepEqual(
      [manualBlock.origin, manualBlock.duration, manualBlock.port, manualBlock.proto],
      ['manual', 3600, undefined, undefined],
    );
    r = await ctl(['unblock', '--control', control, '10.9.9.9']);
    assert.equal(r.code, 0, r.stderr);
    await line(daemon, 'manual', { command: 'unblock' });
    const manualRelease = await line(daemon, 'release', { address: '10.9.9.9' });
    assert.equal(manualRelease.origin, 'manual');
    assert.match(manualRelease.msg, /^released 10\.9\.9\.9\/32:\* by hand \(blocked \d+s\)$/);
    // a refused request: the reason, with who asked
    r = await ctl(['unblock', '--control', control, '10.9.9.9']);
    assert.equal(r.code, 1);
    const refused = await line(daemon, 'manual', { command: 'unblock', error: 'no entry for 10.9.9.9' });
    assert.equal(refused.level, 'warning');

    // a reload: what changed against the rules before, as configuration lines
    writeFileSync(conf, `${port} stream * * * 1 5\n${other + 1} dgram * * * 3 1h\n`);
    const mark = lines(daemon).length;
    r = await ctl(['reload', '--control', control]);
    assert.equal(r.code, 0, r.stderr);
    await line(daemon, 'manual', { command: 'reload' }, mark);
    const reload = await line(daemon, 'reload', {}, mark);
    assert.deepEqual(
      { added: reload.added, removed: reload.removed, changed: reload.changed, rules: reload.rules },
      {
        added: [`[local] ${other + 1} dgram * * blocklistd 3 1h`],
        removed: [`[local] ${other} stream * * blocklistd 3 1h`],
        changed: [`[local] ${port} stream * * blocklistd: 1 2s -> 1 5s`],
        rules: 2,
      },
    );
    assert.equal(reload.msg, `reloaded ${conf}: 2 rules (2 local, 0 remote): 1 added, 1 removed, 1 changed`);
    const change = await line(daemon, 'reload', { change: 'changed' }, mark);
    assert.deepEqual(
      [change.line, change.msg],
      [`[local] ${port} stream * * blocklistd: 1 2s -> 1 5s`, `reload: changed [local] ${port} stream * * blocklistd: 1 2s -> 1 5s`],
    );

    const stopMark = lines(daemon).length;
    child.kill('SIGTERM');
    assert.equal(await daemon.exited, 0);
    const stop = await line(daemon, 'stop', {}, stopMark);
    assert.deepEqual([stop.reason, stop.status, stop.msg], ['SIGTERM', 0, 'stopping: SIGTERM']);
  });
});

test('after a restart the release line reckons from the last failure, and says nothing of a length it cannot know', async (t) => {
  const dir = tempDir('blocklistd-lasted-');
  const now = Math.floor(Date.now() / 1000);
  const store = StateStore.open(join(dir, 'blocklistd.db'));
  // a forever block lifted by AUTH_OK whose rem had not run: its last failure is gone (0)
  store.put({ key: stateKey('192.0.2.20', { duration: -1, nfail: 1 }), count: 2, last: 0, id: 'id-20' });
  // a block of 1 s whose last failure was 5 s ago
  store.put({ key: stateKey('192.0.2.21', { duration: 1 }), count: 3, last: now - 5, id: 'id-21' });
  store.close();
  const daemon = await DaemonProcess.start({ config: '22 stream * * * 3 1h\n', dir });
  t.after(() => daemon.stop('SIGKILL'));
  await daemon.waitFor(/^released 192\.0\.2\.20\/32:22 after -1 seconds$/m);
  const line = /^released 192\.0\.2\.21\/32:22 after 1 seconds \(blocked (\d+)s\)\n/m;
  const at = await daemon.waitFor(line);
  const m = line.exec(daemon.stderr.slice(at));
  assert.ok(m !== null && Number(m[1]) >= 5 && Number(m[1]) <= 8, daemon.stderr);
});
