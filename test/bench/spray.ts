// Benchmark of bounded memory (issue 13): a spray of BENCH_SPRAY
// (default 10,000,000) notifications, each from a distinct address, at a
// daemon with its default --max-entries (or BENCH_SPRAY_MAX); RSS (now and
// peak), the database's size on disk, its entries and the evictions, the
// rate.  Without the limit the entries would stay until last + duration.
// Prints figures only.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DEFAULT_MAX_ENTRIES } from '../../src/daemon/options.js';
import { SyslogReceiver, controlStatus, cpuTicks, freePort, repoRoot, runBlprobe, tempDir, until } from '../support.js';
import { atMost, record } from './results.js';

const SPRAY = Number(process.env.BENCH_SPRAY ?? 10_000_000);
const MAX = Number(process.env.BENCH_SPRAY_MAX ?? DEFAULT_MAX_ENTRIES);
/** blprobe runs this many notifications at a time: a progress line each. */
const STEP = 1_000_000;

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

function status(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** The database with its -wal and -shm, in MB. */
function diskMB(db: string): number {
  return ['', '-wal', '-shm'].reduce((sum, s) => sum + (existsSync(db + s) ? statSync(db + s).size : 0), 0) / 2 ** 20;
}

async function main(): Promise<void> {
  const syslog = new SyslogReceiver();
  const dir = tempDir('blocklistd-bench-');
  const port = await freePort();
  writeFileSync(join(dir, 'blocklistd.conf'), `${port} dgram * * * 3 1d\n`);
  const socket = join(dir, 'blocklistd.sock');
  const db = join(dir, 'blocklistd.db');
  const child = spawn(
    process.execPath,
    [
      join(repoRoot, 'bin/blocklistd'),
      '--foreground',
      '-c',
      join(dir, 'blocklistd.conf'),
      '-C',
      join(repoRoot, 'test/fixtures/control'),
      '-D',
      db,
      '-s',
      socket,
      '--syslog-socket',
      syslog.path,
      '--max-entries',
      String(MAX),
    ],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, HELPER_LOG: join(dir, 'helper.log') } },
  );
  await until(() => existsSync(join(dir, 'blocklistd.ctl')), 10_000);
  const pid = child.pid!;
  console.log(
    `spray: ${fmt(SPRAY)} notifications, each from a distinct address (AUTH_FAIL, nfail 3: none blocks), --max-entries ${fmt(MAX)}`,
  );
  const t0 = performance.now();
  const ticks0 = cpuTicks(pid);
  for (let done = 0; done < SPRAY; done += STEP) {
    const n = Math.min(STEP, SPRAY - done);
    // -A: the step's first address; -M n: each one once
    const base = `10.${(done >> 16) & 255}.${(done >> 8) & 255}.${done & 255}`;
    const r = await runBlprobe(['-s', socket, '-u', '-p', String(port), '-F', String(n), '-M', String(n), '-A', base, '-w', '600000']);
    if (r.code !== 0 || !/processed all/.test(r.stdout)) throw new Error(`blprobe: ${r.stdout}${r.stderr}`);
    const s = await controlStatus(join(dir, 'blocklistd.ctl'));
    const seconds = (performance.now() - t0) / 1000;
    console.log(
      `  ${fmt(done + n).padStart(10)} sent: ${fmt(s.entries)} entries, ${fmt(s.counters.evictions.total)} ` +
        `evicted, RSS ${(status(pid, 'VmRSS') / 1024).toFixed(0)} MB, database ${diskMB(db).toFixed(0)} MB, ` +
        `${fmt((done + n) / seconds)}/s so far`,
    );
  }
  // blprobe's barrier says every datagram was received; the last batches may still be committing
  const ctl = join(dir, 'blocklistd.ctl');
  for (let s = await controlStatus(ctl); s.entries + s.counters.evictions.total < SPRAY; s = await controlStatus(ctl))
    await new Promise((resolve) => setTimeout(resolve, 100));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = (cpuTicks(pid) - ticks0) / 100;
  const s = await controlStatus(ctl);
  const rss = status(pid, 'VmRSS') / 1024;
  const peak = status(pid, 'VmHWM') / 1024;
  const disk = diskMB(db);
  console.log(
    `spray done in ${seconds.toFixed(0)} s (${fmt(SPRAY / seconds)}/s, daemon CPU ${cpu.toFixed(0)} s): ` +
      `${fmt(s.entries)} entries, ${fmt(s.counters.evictions.total)} evicted; RSS ${rss.toFixed(0)} MB ` +
      `(peak ${peak.toFixed(0)} MB), database ${disk.toFixed(0)} MB on disk`,
  );
  record({
    id: 'spray.rate',
    name: `spray of ${fmt(SPRAY)} distinct addresses, --max-entries ${fmt(MAX)}: notifications/s`,
    value: SPRAY / seconds,
    unit: 'notifications/s',
  });
  record({
    id: 'spray.entries',
    name: `spray of ${fmt(SPRAY)} distinct addresses: entries at the end`,
    value: s.entries,
    unit: 'entries',
    target: atMost(MAX),
  });
  record({
    id: 'spray.evicted',
    name: `spray of ${fmt(SPRAY)} distinct addresses: evictions`,
    value: s.counters.evictions.total,
    unit: 'entries',
  });
  record({ id: 'spray.rss', name: `spray of ${fmt(SPRAY)} distinct addresses: RSS at the end`, value: rss, unit: 'MB' });
  record({ id: 'spray.rss.peak', name: `spray of ${fmt(SPRAY)} distinct addresses: peak RSS`, value: peak, unit: 'MB' });
  record({ id: 'spray.disk', name: `spray of ${fmt(SPRAY)} distinct addresses: database, -wal and -shm on disk`, value: disk, unit: 'MB' });
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  syslog.close();
}

await main();
