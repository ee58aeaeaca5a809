// The daemon logger on real sockets and real child processes: the syslog
// record format, stderr and JSON output, the two channels, a missing
// syslog socket and a process that exits on its own.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { createLogger, syslogRecords, type LogOutput } from '../src/daemon/log.js';
import type { LogLevel } from '../src/types.js';
import { SyslogReceiver, openDescriptors, repoRoot, tempDir } from './support.js';

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
  assert.deepEqual(r.stderr, Buffer.from('crit line\n[local]\nrule 1\nnée %s %d\nno message (message too short)\n\nblocked 192.0.2.1/32:22 for 60 seconds\n'));
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
  const fields = { event: 'release', address: '2001:db8::1', mask: 64, port: 22, proto: 'tcp', rule: 'ssh', duration: 21612, names: ['a', 'b'] };
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
          stdout === '' ? [] : stdout.trimEnd().split('\n').map((l) => (JSON.parse(l) as { msg: string }).msg),
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
