// Benchmark of the whole daemon (issue 5): notifications per second under
// a blprobe flood at 0, 10k and 100k entries (the median of 3 floods each,
// issue 19); the receive rate while a slow helper blocks; the time from a
// blocking notification to the helper's start, and its floor on the machine
// (test/bench/spawnfloor.c, and with a launcher); BENCH_ADDS (default 10,000)
// new addresses blocked through a 2 ms helper that runs one process per
// call (issue 19); RSS; wake-ups when idle; lost sends under bursts from
// 20 senders.  Prints figures only.  BENCH_IDLE_SECONDS (default 60) sets
// the idle watch; BENCH_PARTS (default all: flood,slow,latency,singles,lost)
// the parts that run; BENCH_DAEMON (default this checkout's bin/blocklistd)
// the daemon measured, e.g. another checkout's for an A/B comparison with
// the same harness.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { AUTH_FAIL } from '../../src/index.js';
import { QUIET_MS } from '../../src/daemon/heap.js';
import { StateStore } from '../../src/state/store.js';
import { Reporter, SyslogReceiver, blprobe, cpuTicks, freePort, repoRoot, runBlprobe, tempDir, until } from '../support.js';
import { atLeast, atMost, record } from './results.js';

const FLOOD = Number(process.env.BENCH_FLOOD ?? 200_000);
/** Floods per state size: the figure is their median. */
const FLOODS = 3;
/** New addresses blocked one helper process each. */
const ADDS = Number(process.env.BENCH_ADDS ?? 10_000);
const PARTS = new Set((process.env.BENCH_PARTS ?? 'flood,slow,latency,singles,lost').split(','));
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 60);
/**
 * Before the idle daemon is watched: the time V8 takes to shrink its heap after the flood.  Its memory reducer's
 * main round comes about 100 s after a flood and its tail can go on to about 3 minutes (doc/daemon.md §12): with
 * 30 s the main round fell in the idle minute, with 120 s a tick or two of its tail.
 */
const SETTLE_SECONDS = Number(process.env.BENCH_SETTLE_SECONDS ?? 240);
const DAEMON = process.env.BENCH_DAEMON ?? join(repoRoot, 'bin/blocklistd');
/** The state sizes of the flood runs (entries in the database before it). */
const SIZES = (process.env.BENCH_SIZES ?? '0,1000,10000,100000,1000000').split(',').map(Number);
/**
 * How long after a flood its RSS is read again: the daemon gives V8's young generation back once nothing has been received
 * for QUIET_MS, at its second check of the quiet spell at the latest (src/daemon/heap.ts), each check up to 2 x QUIET_MS
 * after the last notification.
 */
const QUIET_WAIT_MS = 4 * QUIET_MS;
/** The size at which RSS and the idle daemon are watched. */
const WATCHED = 100_000;
/** Issue 19's targets for the RSS after a flood, in MB, by state size. */
const RSS_TARGETS = new Map([
  [100_000, 80],
  [1_000_000, 140],
]);
const fixtures = join(repoRoot, 'test/fixtures');
/** The kernel's clock ticks per second (USER_HZ), the unit of cpuTicks(). */
const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
/** BENCH_ESCALATE=1: every daemon with an [escalate] policy for its rules (issue 18: the cost of escalation, doc/escalation.md). */
const ESCALATE = process.env.BENCH_ESCALATE === '1' ? '[escalate]\nblocklistd factor=2 max=1d jitter=1m forget=1d\n' : '';

/** The malloc settings etc/systemd/blocklistd.service gives the daemon (doc/daemon.md §12): it runs as installed. */
const UNIT_MALLOC = Object.fromEntries(
  [...readFileSync(join(repoRoot, 'etc/systemd/blocklistd.service'), 'utf8').matchAll(/^Environment=(MALLOC_\w+)=(\S+)$/gm)].map((m) =>
    m.slice(1),
  ),
);

interface Daemon {
  child: ChildProcess;
  dir: string;
  socket: string;
}

/** A detached-style daemon in the foreground, logging to a syslog receiver like a production one. */
async function startDaemon(config: string, helper: string, env: Record<string, string> = {}, preload = 0, qlen?: number): Promise<Daemon> {
  const dir = tempDir('blocklistd-bench-');
  writeFileSync(join(dir, 'blocklistd.conf'), config + ESCALATE);
  if (preload > 0) {
    const store = StateStore.open(join(dir, 'blocklistd.db'));
    store.transaction(() => {
      for (let i = 0; i < preload; i++) {
        const key = {
          family: 2,
          address: `172.${16 + ((i >> 16) & 15)}.${(i >> 8) & 255}.${i & 255}`,
          lmask: 32,
          port: 1,
          proto: 6,
          uid: -1,
          name: 'old',
          rmask: -1,
          nfail: 3,
          duration: 86400 * 365,
        };
        store.put({ key, count: 1, last: Math.floor(Date.now() / 1000), id: '' });
      }
    });
    store.close();
  }
  const socket = join(dir, 'blocklistd.sock');
  const argv = [
    // through its #! line, as installed: it gives node the heap size the daemon runs with (doc/daemon.md §12)
    DAEMON,
    '--foreground',
    '-c',
    join(dir, 'blocklistd.conf'),
    '-C',
    helper,
    '-D',
    join(dir, 'blocklistd.db'),
    '-s',
    socket,
    '--syslog-socket',
    syslog.path,
    // no limit: a preload of 1,000,000 is the default --max-entries, and the flood's new entries (the marker's too)
    // would go in the transaction that made them (soonest expiry first); test/bench/spray.ts measures eviction
    '--max-entries',
    '0',
  ];
  // the queue length is per network namespace: a namespace of its own changes it for this daemon only
  const [command, ...args] =
    qlen === undefined ? argv : ['unshare', '-n', 'sh', '-c', `sysctl -qw net.unix.max_dgram_qlen=${qlen} && exec "$@"`, 'sh', ...argv];
  // the control fixture records its calls (here: capabilities) in $HELPER_LOG
  const child = spawn(command, args, {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, ...UNIT_MALLOC, HELPER_LOG: join(dir, 'helper.log'), ...env },
  });
  // a benchmark that fails leaves no daemon running through the ones after it
  const orphan = (): boolean => child.kill('SIGKILL');
  process.once('exit', orphan);
  child.once('exit', () => process.off('exit', orphan));
  await until(() => existsSync(socket), 10_000);
  return { child, dir, socket };
}

async function stopDaemon(d: Daemon): Promise<void> {
  d.child.kill('SIGTERM');
  await new Promise((resolve) => d.child.once('exit', resolve));
}

function status(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/**
 * The resident memory of process `pid` by kind of mapping, in MB (/proc/PID/smaps; doc/daemon.md §12): node's own pages,
 * the other files mapped (libraries), malloc's main arena ([heap]) and the anonymous rest (V8's heap, the receive ring,
 * malloc's thread arenas).
 */
function rssParts(pid: number): Record<string, number> {
  const parts: Record<string, number> = { node: 0, libraries: 0, 'malloc heap': 0, anonymous: 0 };
  const node = readlinkSync(`/proc/${pid}/exe`);
  let part = 'anonymous';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping !== null) {
      const path = mapping[1];
      part = path === node ? 'node' : path.startsWith('/') ? 'libraries' : path === '[heap]' ? 'malloc heap' : 'anonymous';
    } else if (line.startsWith('Rss:')) parts[part] += Number(line.split(/\s+/)[1]) / 1024;
  }
  return parts;
}

const partsText = (parts: Record<string, number>): string =>
  Object.entries(parts)
    .map(([part, mb]) => `${part} ${mb.toFixed(1)}`)
    .join(', ');

/**
 * A flood of FLOOD notifications; the rate until the daemon has processed
 * them all: after the flood a marker notification for another rule, whose
 * entry shows up in the database once everything before it is committed.
 */
async function flood(d: Daemon, port: number, marker: Reporter): Promise<{ rate: number; cpu: number }> {
  const ticks0 = cpuTicks(d.child.pid!);
  const t0 = performance.now();
  await udpFlood(d, port, FLOOD, 1000, '10.0.0.1');
  const count = markerCount(d) + 2;
  marker.report(AUTH_FAIL, 'marker');
  await until(() => markerCount(d) >= count, 120_000);
  const rate = FLOOD / ((performance.now() - t0) / 1000);
  // the daemon's CPU (all its threads, user and system) per notification: unlike the rate, it does not depend on what
  // else the machine's cores are doing (the floods of other benchmarks, blprobe itself)
  return { rate, cpu: ((cpuTicks(d.child.pid!) - ticks0) * 1e6) / TICKS_PER_SECOND / FLOOD };
}

/** `count` UDP notifications over `distinct` addresses from `base`, once the daemon has received them all. */
async function udpFlood(d: Daemon, port: number, count: number, distinct: number, base: string): Promise<void> {
  const { stdout, code } = await runBlprobe([
    '-s',
    d.socket,
    '-u',
    '-p',
    String(port),
    '-F',
    String(count),
    '-M',
    String(distinct),
    '-A',
    base,
    '-w',
    '120000',
  ]);
  if (code !== 0 || !/processed all/.test(stdout)) throw new Error(`blprobe: ${stdout}`);
}

/** The marker's count, looked up by its address (the unique index's first column): no scan of a large table. */
function markerCount(d: Daemon): number {
  const path = join(d.dir, 'blocklistd.db');
  if (!existsSync(path)) return 0;
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return (
      (db.prepare("SELECT count FROM entry WHERE address = '127.0.0.1' AND name = 'blocklistd-marker'").pluck().get() as
        number | undefined) ?? 0
    );
  } finally {
    db.close();
  }
}

/** Entries whose block the helper confirmed with a rule id. */
function blockedCount(d: Daemon): number {
  const path = join(d.dir, 'blocklistd.db');
  if (!existsSync(path)) return 0;
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.prepare("SELECT count(*) FROM entry WHERE id != ''").pluck().get() as number;
  } finally {
    db.close();
  }
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[values.length >> 1]!;
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const syslog = new SyslogReceiver();

/** The receive rate while a helper taking 200 ms blocks every new address. */
async function slowHelper(port: number, markerPort: number, markerRule: string): Promise<void> {
  // a slow helper: every notification blocks a new address
  const slowLog = join(tempDir('blocklistd-bench-'), 'helper.log');
  const blocking = `${port} dgram * * * 1 1h\n${markerRule}`;
  const d = await startDaemon(blocking, join(fixtures, 'record'), { HELPER_LOG: slowLog, HELPER_SLEEP: '0.2', HELPER_REPLY: 'OK\\n' });
  const marker = await Reporter.connect(d.socket, markerPort);
  const { rate } = await flood(d, port, marker);
  marker.close();
  const started = existsSync(slowLog)
    ? readFileSync(slowLog, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('start')).length
    : 0;
  console.log(
    `daemon: receive rate while a helper taking 200 ms blocks every new address: ${fmt(rate)}/s (target ` +
      `>= 10,000/s), ${started} helper calls started meanwhile`,
  );
  record({
    id: 'daemon.slowhelper',
    name: 'daemon, receive rate while a 200 ms helper blocks every new address',
    value: rate,
    unit: 'notifications/s',
    target: atLeast(10_000),
  });
  await stopDaemon(d);
}

/** The time from a blocking notification to the helper's start, on an idle daemon; its floor on the machine, and with a launcher. */
async function latency(): Promise<void> {
  // latency from the blocking notification to the helper's start, on an idle daemon
  const latencyDir = tempDir('blocklistd-bench-');
  const latencyLog = join(latencyDir, 'helper.log');
  const stamp = join(latencyDir, 'stamp');
  execFileSync('cc', ['-O2', '-o', stamp, join(repoRoot, 'test/bench/stamp.c')]);
  const tcpPort = await freePort();
  const d = await startDaemon(`${tcpPort} stream * * * 1 1h\n`, stamp, { HELPER_LOG: latencyLog });
  const latencies: number[] = [];
  for (let i = 0; i < 40; i++) {
    const reporter = await Reporter.connect(d.socket, tcpPort, `127.0.1.${i + 1}`);
    // read before the clock starts: the time of this read is the benchmark's, not the daemon's
    const before = existsSync(latencyLog) ? readFileSync(latencyLog, 'utf8').length : 0;
    // CLOCK_MONOTONIC nanoseconds, as the helper's clock_gettime gives them (stamp.c: why not the wall clock)
    const sent = process.hrtime.bigint();
    reporter.report(AUTH_FAIL, 'ssh');
    await until(() => existsSync(latencyLog) && readFileSync(latencyLog, 'utf8').length > before, 5000);
    const line = readFileSync(latencyLog, 'utf8').slice(before).split('\n')[0];
    latencies.push(Number(BigInt(line.split(' ')[1]) - sent) / 1e6);
    reporter.close();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  latencies.sort((a, b) => a - b);
  console.log(
    `daemon: blocking notification to helper start: median ${latencies[20].toFixed(2)} ms, max ` +
      `${latencies[39].toFixed(2)} ms (target <= 1.5 ms median, issue 19)`,
  );
  record({
    id: 'daemon.latency.median',
    name: 'blocking notification to helper start: median',
    value: latencies[20],
    unit: 'ms',
    target: atMost(1.5),
  });
  record({ id: 'daemon.latency.max', name: 'blocking notification to helper start: max of 40', value: latencies[39], unit: 'ms' });
  await stopDaemon(d);
  // the floor: a C program that only receives the same datagram and starts the same helper (test/bench/spawnfloor.c)
  const floor = join(latencyDir, 'spawnfloor');
  execFileSync('cc', ['-O2', '-o', floor, join(repoRoot, 'test/bench/spawnfloor.c')]);
  // the floor, and the same with a launcher forked in advance that only execs the helper (spawnfloor.c's prototype)
  const floorOf = (...mode: string[]): number =>
    execFileSync(floor, [join(latencyDir, 'floor.sock'), stamp, join(latencyDir, 'floor.log'), '40', ...mode], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map(Number)
      .sort((a, b) => a - b)[20]!;
  const [floorMedian, launcherMedian] = [floorOf(), floorOf('launcher')];
  console.log(
    `C floor (recvmsg and posix_spawn of the same helper, nothing else): median ${floorMedian.toFixed(2)} ms; with a launcher ` +
      `forked in advance instead of posix_spawn: ${launcherMedian.toFixed(2)} ms`,
  );
  record({
    id: 'daemon.latency.floor',
    name: 'notification to helper start, C floor (recvmsg + posix_spawn only): median',
    value: floorMedian,
    unit: 'ms',
  });
  record({
    id: 'daemon.latency.launcher.floor',
    name: 'notification to helper start, C floor with a launcher forked in advance (recvmsg + a request to it + its exec): median',
    value: launcherMedian,
    unit: 'ms',
  });
}

/**
 * ADDS new addresses, each reported once under a rule of nfail 1, blocked
 * through a 2 ms helper that does not know batch mode: the time from the
 * first report until the last add answered.
 */
async function singles(port: number): Promise<void> {
  const dir = tempDir('blocklistd-bench-');
  const sleeper = join(dir, 'sleeper');
  execFileSync('cc', ['-O2', '-o', sleeper, join(repoRoot, 'test/bench/sleeper.c')]);
  const d = await startDaemon(`${port} dgram * * * 1 1h\n`, sleeper, { HELPER_SLEEP_MS: '2' });
  const t0 = performance.now();
  await udpFlood(d, port, ADDS, ADDS, '10.64.0.1');
  // looked at every 50 ms: the benchmark's own reads must not take the daemon's CPU
  while (blockedCount(d) < ADDS) {
    if (performance.now() - t0 > 600_000) throw new Error(`${blockedCount(d)} of ${ADDS} blocked after 600 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const seconds = (performance.now() - t0) / 1000;
  console.log(
    `daemon: ${fmt(ADDS)} new addresses blocked through a 2 ms helper, one process per call: ${seconds.toFixed(1)} s, ` +
      `${fmt(ADDS / seconds)} calls/s (target <= 30 s)`,
  );
  record({
    id: 'daemon.singles.seconds',
    name: `${fmt(ADDS)} adds through a 2 ms non-batch helper (one process per call)`,
    value: seconds,
    unit: 's',
    target: atMost(30),
  });
  record({ id: 'daemon.singles.rate', name: 'non-batch helper calls per second (2 ms helper)', value: ADDS / seconds, unit: 'calls/s' });
  await stopDaemon(d);
}

/** Bursts from 20 senders. */
async function lostSends(): Promise<void> {
  // bursts from 20 senders that send as libblocklist does (non-blocking, 5 retries), paced and unpaced,
  // with the default queue length and, as root, with a longer one
  for (const qlen of process.getuid?.() === 0 ? [undefined, 512] : [undefined]) {
    // a UDP port each: blprobe's loopback exchange on a port shared with SO_REUSEADDR can reach another sender and hang
    const d = await startDaemon('* dgram * * * 1000000 1h\n', join(fixtures, 'control'), {}, 0, qlen);
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    const length = qlen ?? readFileSync('/proc/sys/net/unix/max_dgram_qlen', 'utf8').trim();
    for (const pace of [1500, 0]) {
      const runs = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          runBlprobe([
            '-s',
            d.socket,
            '-u',
            '-p',
            String(ports[i]),
            '-N',
            '-F',
            '5000',
            '-M',
            '100',
            '-A',
            `10.${i}.0.1`,
            '-w',
            '60000',
            ...(pace > 0 ? ['-R', String(pace)] : []),
          ]),
        ),
      );
      const lost = runs.reduce((n, r) => n + Number(/(\d+) notifications given up/.exec(r.stdout)?.[1] ?? 0), 0);
      const offered = pace > 0 ? `${fmt(20 * pace)}/s offered` : 'as fast as they can';
      console.log(
        `daemon: 20 libblocklist-style senders, 5,000 notifications each, ${offered}: ${fmt(lost)} of ` +
          `100,000 lost (net.unix.max_dgram_qlen = ${length})`,
      );
      record({
        id: `daemon.lost.${length}.${pace}`,
        name: `20 libblocklist-style senders, ${offered}, max_dgram_qlen ${length}: lost of 100,000`,
        value: lost,
        unit: 'notifications',
      });
    }
    await stopDaemon(d);
  }
}

async function main(): Promise<void> {
  await blprobe();
  const port = await freePort();
  const markerPort = await freePort();
  const markerRule = `${markerPort} stream * * -marker 1000000 1h\n`;
  const noHelper = `${port} dgram * * * 1000000 1h\n${markerRule}`;

  if (PARTS.has('flood'))
    console.log(
      `daemon: notifications per second, ${fmt(FLOOD)}-notification UDP floods over 1,000 reported ` +
        `addresses, no helper calls (target >= 120,000/s, flat: issue 19)`,
    );
  for (const preload of PARTS.has('flood') ? SIZES : []) {
    const d = await startDaemon(noHelper, join(fixtures, 'control'), {}, preload);
    const marker = await Reporter.connect(d.socket, markerPort);
    // the same 1,000 addresses each time: the floods after the first update their entries
    const rates: number[] = [];
    const cpus: number[] = [];
    for (let i = 0; i < FLOODS; i++) {
      const { rate, cpu } = await flood(d, port, marker);
      rates.push(rate);
      cpus.push(cpu);
    }
    const rate = median(rates);
    const cpu = median(cpus);
    marker.close();
    const floodRss = status(d.child.pid!, 'VmRSS') / 1024;
    const floodParts = rssParts(d.child.pid!);
    console.log(
      `  ${fmt(preload).padStart(9)} entries: ${fmt(rate).padStart(7)}/s (median of ${rates.map(fmt).join(', ')})   CPU ` +
        `${cpu.toFixed(2)} µs/notification (median of ${cpus.map((c) => c.toFixed(2)).join(', ')})`,
    );
    console.log(`             RSS at the flood's end ${floodRss.toFixed(1)} MB: ${partsText(floodParts)}`);
    await new Promise((resolve) => setTimeout(resolve, QUIET_WAIT_MS));
    const rss = status(d.child.pid!, 'VmRSS') / 1024;
    console.log(
      `             ${QUIET_WAIT_MS / 1000} s later ${rss.toFixed(1)} MB` +
        `${RSS_TARGETS.has(preload) ? ` (target <= ${RSS_TARGETS.get(preload)} MB)` : ''}: ${partsText(rssParts(d.child.pid!))}`,
    );
    record({
      id: `daemon.rate.${preload}`,
      name: `daemon, UDP flood, ${fmt(preload)} entries`,
      value: rate,
      unit: 'notifications/s',
      target: atLeast(120_000),
      entries: preload,
    });
    record({
      id: `daemon.cpu.${preload}`,
      name: `daemon CPU per notification (user and system, all threads), UDP flood, ${fmt(preload)} entries`,
      value: cpu,
      unit: 'µs',
      entries: preload,
    });
    record({
      id: `daemon.rss.flood.${preload}`,
      name: `daemon RSS at the flood's end, ${fmt(preload)} entries`,
      value: floodRss,
      unit: 'MB',
    });
    record({
      id: `daemon.rss.${preload}`,
      name: `daemon RSS ${QUIET_WAIT_MS / 1000} s after the flood (its young generation given back), ${fmt(preload)} entries`,
      value: rss,
      unit: 'MB',
      ...(RSS_TARGETS.has(preload) ? { target: atMost(RSS_TARGETS.get(preload)!) } : {}),
    });
    if (preload === WATCHED) {
      const pid = d.child.pid!;
      // after a flood V8's memory reducer shrinks the heap, a one-off that can go on for about 3 minutes (daemon.md §12),
      // counted in daemon.settle.ticks; then the daemon is idle (nothing expires for a year), and the figure is what it
      // costs then
      const settled = cpuTicks(pid);
      await new Promise((resolve) => setTimeout(resolve, SETTLE_SECONDS * 1000));
      const settleTicks = cpuTicks(pid) - settled;
      console.log(`  in the ${SETTLE_SECONDS} s after the flood: ${settleTicks} clock ticks of CPU (V8 shrinking its heap)`);
      record({
        id: 'daemon.settle.ticks',
        name: `daemon, ${fmt(WATCHED)} entries: CPU clock ticks in the ${SETTLE_SECONDS} s after the flood`,
        value: settleTicks,
        unit: 'ticks',
      });
      const ticks0 = cpuTicks(pid);
      const switches0 = status(pid, 'voluntary_ctxt_switches') + status(pid, 'nonvoluntary_ctxt_switches');
      await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
      const ticks = cpuTicks(pid) - ticks0;
      const switches = status(pid, 'voluntary_ctxt_switches') + status(pid, 'nonvoluntary_ctxt_switches') - switches0;
      console.log(
        `  idle with ${fmt(WATCHED)} entries for ${IDLE_SECONDS} s: ${switches} context switches, ${ticks} clock ticks of CPU (target ~0)`,
      );
      record({
        id: 'daemon.idle.switches',
        name: `idle daemon, ${fmt(WATCHED)} entries: context switches in ${IDLE_SECONDS} s`,
        value: switches,
        unit: '',
      });
      record({
        id: 'daemon.idle.ticks',
        name: `idle daemon, ${fmt(WATCHED)} entries: CPU clock ticks in ${IDLE_SECONDS} s`,
        value: ticks,
        unit: 'ticks',
      });
    }
    await stopDaemon(d);
  }

  if (PARTS.has('slow')) await slowHelper(port, markerPort, markerRule);
  if (PARTS.has('latency')) await latency();
  if (PARTS.has('singles')) await singles(port);
  if (PARTS.has('lost')) await lostSends();
  syslog.close();
}

await main();
