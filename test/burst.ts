// Bursts from many servers at once (issue 13): 20 senders that send as
// libblocklist does (non-blocking, five tries, then given up), each
// reporting its own addresses as a UDP server, to a daemon whose every
// notification blocks (nfail 1) with a helper taking a few milliseconds.
// Shared by the bounded proof in attack.test.ts and the benchmark.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SyslogReceiver, blprobe, controlStatus, freePort, repoRoot, runBlprobe, tempDir, until } from './support.js';

export interface BurstOptions {
  senders: number;
  /** Notifications per sender, each for an address of its own. */
  each: number;
  /** Per sender and second; 0: as fast as it can. */
  rate: number;
  /** The helper's time per add. */
  helperMs: number;
  /** The daemon's --queue (its default without). */
  queue?: number;
}

export interface BurstResult {
  givenUp: number;
  entries: number;
  /** Helper adds that succeeded. */
  adds: number;
  seconds: number;
}

/** The sleeper helper (test/bench/sleeper.c), built once per process in a world-readable place. */
let sleeper: string | undefined;
function sleeperHelper(): string {
  if (sleeper === undefined) {
    const out = join(tempDir('blocklistd-sleeper-'), 'sleeper');
    execFileSync('cc', ['-O2', '-o', out, join(repoRoot, 'test/bench/sleeper.c')]);
    sleeper = out;
  }
  return sleeper;
}

/** Runs one burst against a fresh daemon (--foreground, logging to a syslog receiver); stops it after. */
export async function burst(o: BurstOptions): Promise<BurstResult> {
  const dir = tempDir('blocklistd-burst-');
  const socket = join(dir, 'blocklistd.sock');
  writeFileSync(join(dir, 'blocklistd.conf'), '* dgram * * * 1 1h\n');
  const syslog = new SyslogReceiver();
  const args = [
    join(repoRoot, 'bin/blocklistd'),
    '--foreground',
    '-c',
    join(dir, 'blocklistd.conf'),
    '-C',
    sleeperHelper(),
    '-D',
    join(dir, 'blocklistd.db'),
    '-s',
    socket,
    '--syslog-socket',
    syslog.path,
  ];
  if (o.queue !== undefined) args.push('--queue', String(o.queue));
  const daemon = spawn(process.execPath, args, {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, HELPER_SLEEP_MS: String(o.helperMs) },
  });
  const exited = new Promise((resolve) => daemon.once('exit', resolve));
  try {
    await until(() => existsSync(`${socket.replace(/\.sock$/, '')}.ctl`), 10_000);
    await blprobe();
    // a UDP port each: blprobe's loopback exchange on a shared port can reach another sender
    const ports = await Promise.all(Array.from({ length: o.senders }, () => freePort()));
    const started = Date.now();
    const runs = await Promise.all(
      ports.map((port, i) =>
        runBlprobe([
          '-s',
          socket,
          '-u',
          '-p',
          String(port),
          '-N',
          '-F',
          String(o.each),
          '-M',
          String(o.each),
          '-A',
          `10.${i}.0.1`,
          '-m',
          '',
          '-w',
          '120000',
          ...(o.rate > 0 ? ['-R', String(o.rate)] : []),
        ]),
      ),
    );
    const givenUp = runs.reduce((n, r) => n + Number(/(\d+) notifications given up/.exec(r.stdout)?.[1] ?? 0), 0);
    const control = `${socket.replace(/\.sock$/, '')}.ctl`;
    // every add the helper runs is counted once it ends: wait until the adds settle
    let status = await controlStatus(control);
    const addsOf = (s: typeof status): number => s.counters.helper_calls?.['add:ok'] ?? 0;
    const deadline = Date.now() + 120_000;
    while (addsOf(status) < status.entries && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      status = await controlStatus(control);
    }
    return { givenUp, entries: status.entries, adds: addsOf(status), seconds: (Date.now() - started) / 1000 };
  } finally {
    daemon.kill('SIGTERM');
    await exited;
    syslog.close();
  }
}
