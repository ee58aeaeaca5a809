// Benchmark of blocklistd-watch's matcher (issue 14): lines per second of
// a mixed sshd log in syslog format (the real lines of the sshd corpus,
// with other programs' lines between them, addresses varied) through
// matchFileLine; journal entries (journalctl -o json lines) parsed and
// matched; one core, no I/O.  Then the watcher process at idle: the CPU it
// uses in 5 s with a file source and nothing to read.  Last, `report`
// requests per second through the daemon's control socket: 20,000
// pipelined on one connection, as the watcher sends them.
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { matchFileLine, matchJournalEntry, type JournalEntry } from '../../src/watch/matcher.js';
import { loadPattern } from '../../src/watch/main.js';
import { cpuTicks, repoRoot, tempDir } from '../support.js';
import { atLeast, record } from './results.js';

const LINES = 300_000;
const sshd = loadPattern('sshd', join(repoRoot, 'etc/blocklistd-watch.d'), () => {});

/** The messages of the sshd corpus, without CR. */
const messages = readFileSync(join(repoRoot, 'test/fixtures/watch/sshd.corpus'), 'utf8')
  .split('\n')
  .filter((l) => l !== '' && !l.startsWith('#'))
  .map((l) => l.slice(l.indexOf('\t') + 1).replace(/\r$/, ''));
const others = [
  'CRON[4242]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)',
  'systemd[1]: Started session-42.scope - Session 42 of User alice.',
  'kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:00 SRC=203.0.113.9 DST=192.0.2.1 LEN=40 PROTO=TCP SPT=4242 DPT=23',
  'postfix/smtpd[77]: connect from unknown[198.51.100.4]',
];

/** A syslog file of `n` lines: two thirds sshd, a third other programs; the client addresses varied. */
function mixedLog(n: number): string[] {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const body =
      i % 3 === 2
        ? others[i % others.length]
        : `sshd[${1000 + (i % 5000)}]: ${messages[i % messages.length].replace(/10\.98\.0\.\d+/g, address)}`;
    lines.push(`Dec  4 14:${String(((i / 60) % 60) | 0).padStart(2, '0')}:${String(i % 60).padStart(2, '0')} host ${body}`);
  }
  return lines;
}

function rate(what: string, n: number, run: () => number): number {
  run(); // warm up
  const start = performance.now();
  const matched = run();
  const seconds = (performance.now() - start) / 1000;
  const perSecond = n / seconds;
  console.log(`${what}: ${Math.round(perSecond).toLocaleString('en-US')} lines/s (${matched} of ${n} matched)`);
  return perSecond;
}

const log = mixedLog(LINES);
const fileRate = rate('file lines, mixed sshd syslog', LINES, () => {
  let matched = 0;
  for (const line of log) {
    const r = matchFileLine(sshd, line);
    if (r !== 'other' && r.match !== undefined) matched++;
  }
  return matched;
});
record({
  id: 'watch.file',
  name: 'blocklistd-watch matcher: mixed sshd syslog lines, one core',
  value: fileRate,
  unit: 'lines/s',
  target: atLeast(50_000),
});

const journal = log.map((line, i) => {
  const m = /^\S+ +\S+ \S+ \S+ ([^[:]+)(?:\[\d+\])?: (.*)$/.exec(line)!;
  const sshdLine = m[1] === 'sshd';
  return JSON.stringify({
    __CURSOR: `s=0;i=${i.toString(16)};b=0;m=0;t=0;x=0`,
    __REALTIME_TIMESTAMP: String(1_796_000_000_000_000 + i),
    _BOOT_ID: '75132041ae18464780ea3c12909581e7',
    PRIORITY: '6',
    SYSLOG_FACILITY: '4',
    SYSLOG_IDENTIFIER: m[1],
    _PID: String(1000 + (i % 5000)),
    _UID: '0',
    _GID: '0',
    _COMM: sshdLine ? 'sshd' : m[1],
    _EXE: sshdLine ? '/usr/sbin/sshd' : `/usr/bin/${m[1]}`,
    _SYSTEMD_UNIT: sshdLine ? 'ssh.service' : 'cron.service',
    _TRANSPORT: 'syslog',
    MESSAGE: m[2],
  });
});
const journalRate = rate('journal entries (JSON parsed, trusted fields checked), mixed', LINES, () => {
  let matched = 0;
  for (const line of journal) if (matchJournalEntry(sshd, JSON.parse(line) as JournalEntry)?.match !== undefined) matched++;
  return matched;
});
record({
  id: 'watch.journal',
  name: 'blocklistd-watch matcher: mixed journal entries (JSON), one core',
  value: journalRate,
  unit: 'entries/s',
  target: atLeast(50_000),
});

// at idle: the watcher with a journal source (journalctl waits in the kernel) and a file source (one stat a second)
const dir = tempDir();
const file = join(dir, 'auth.log');
writeFileSync(file, '');
const child = spawn(
  process.execPath,
  [
    join(repoRoot, 'bin/blocklistd-watch'),
    '--control',
    join(dir, 'none.ctl'),
    '--patterns',
    join(repoRoot, 'etc/blocklistd-watch.d'),
    '--state',
    join(dir, 'state.json'),
    '--file',
    file,
    '--pattern',
    'sshd',
  ],
  { stdio: 'ignore' },
);
await new Promise((resolve) => setTimeout(resolve, 2000));
const before = cpuTicks(child.pid!);
await new Promise((resolve) => setTimeout(resolve, 5000));
const ticks = cpuTicks(child.pid!) - before;
child.kill('SIGKILL');
console.log(`watcher at idle (a file source, no daemon): ${ticks} clock ticks of CPU in 5 s`);
record({ id: 'watch.idle', name: 'blocklistd-watch at idle (a file source): CPU in 5 s', value: ticks * 10, unit: 'ms' });

// reports through the control socket: the daemon without debug output, a rule that never blocks
const REPORTS = 20_000;
writeFileSync(join(dir, 'blocklistd.conf'), 'ssh stream * * * * 1h\n');
const daemon = spawn(
  process.execPath,
  [
    join(repoRoot, 'bin/blocklistd'),
    '-d',
    '-c',
    join(dir, 'blocklistd.conf'),
    '-C',
    join(repoRoot, 'test/fixtures/control'),
    '-D',
    join(dir, 'db'),
    '-s',
    join(dir, 'blocklistd.sock'),
  ],
  {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, HELPER_LOG: join(dir, 'helper.log') },
  },
);
await new Promise<void>((resolve) => {
  let text = '';
  daemon.stderr!.on('data', (d: Buffer) => {
    text += d.toString();
    if (text.includes('control socket') || text.includes('listening on')) resolve();
  });
});
await new Promise((resolve) => setTimeout(resolve, 300));
const reportArgs = (i: number) => ({
  type: 'fail',
  address: `10.1.${(i >> 8) & 255}.${i & 255}`,
  port: '22',
  message: 'Failed password for root',
  source: 'bench',
});
const requests = Array.from(
  { length: REPORTS },
  (_, i) => `${JSON.stringify({ version: 1, id: i, command: 'report', args: reportArgs(i) })}\n`,
).join('');
const reportStart = performance.now();
await new Promise<void>((resolve, reject) => {
  const socket = connect(join(dir, 'blocklistd.ctl'));
  let answers = 0;
  socket.on('connect', () => socket.write(requests));
  socket.on('data', (d: Buffer) => {
    for (let i = d.indexOf(10); i !== -1; i = d.indexOf(10, i + 1)) answers++;
    if (answers === REPORTS) {
      socket.destroy();
      resolve();
    }
  });
  socket.on('error', reject);
});
const reportRate = REPORTS / ((performance.now() - reportStart) / 1000);
daemon.kill('SIGKILL');
console.log(`report requests through the control socket, pipelined: ${Math.round(reportRate).toLocaleString('en-US')}/s`);
record({
  id: 'watch.reports',
  name: 'report requests through the control socket, 20,000 pipelined, 20,000 addresses',
  value: reportRate,
  unit: 'reports/s',
});
