// A distributed attack against the whole daemon (issue 13 §4): `attackers`
// distinct addresses reported once each at `rate` per second, every report
// blocking at once for `duration` seconds, the real blocklistd-helper on
// nftables in a network namespace of the daemon's own.  Measures how long
// the filter takes to block them all and how long blocks outlive their
// duration.  Shared by test/engine-load.test.ts (bounded) and
// test/bench/attack.ts, with the daemon in its namespace (NetnsDaemon).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { blprobe, freePort, repoRoot, run, tempDir, until } from './support.js';

export interface AttackFigures {
  /** From the first report to the last "blocked" line, in seconds. */
  blockAll: number;
  /** Of each block, its report time plus its duration to its "released" line, in seconds. */
  overshootMedian: number;
  overshootMax: number;
  /** Blocks released per second, from the first "released" line to the last. */
  releaseRate: number;
  /** Blocks and releases logged: each attacker once. */
  blocked: number;
  released: number;
  /** Elements left in the nftables sets at the end. */
  leftInFilter: number;
}

/** Which report an address was: blprobe -M counts up from 10.0.0.1. */
const reportIndex = (address: string): number => {
  const [, b = 0, c = 0, d = 0] = address.split('.').map(Number);
  return (b << 16) + (c << 8) + d - 1;
};

/** blocklistd in a network namespace of its own, the real helper on nftables; its JSON log lines as they come. */
export class NetnsDaemon {
  private rest = '';

  private constructor(
    readonly child: ChildProcess,
    readonly dir: string,
    onLine: (line: string, at: number) => void,
  ) {
    child.stdout!.on('data', (d: Buffer) => {
      const at = performance.now();
      const lines = (this.rest + d.toString()).split('\n');
      this.rest = lines.pop()!;
      for (const line of lines) onLine(line, at);
    });
  }

  get socket(): string {
    return join(this.dir, 'blocklistd.sock');
  }

  /**
   * `netns`: a named namespace (ip netns) instead of one of the daemon's
   * own, which would go with the daemon: what it leaves in the packet
   * filter when killed can then be looked at.
   */
  static async start(
    config: string,
    options: { dir?: string; args?: string[]; netns?: string; onLine?: (line: string, at: number) => void } = {},
  ): Promise<NetnsDaemon> {
    const dir = options.dir ?? tempDir('blocklistd-netns-');
    writeFileSync(join(dir, 'blocklistd.conf'), config);
    writeFileSync(join(dir, 'helper.conf'), 'backend=nftables\n');
    const argv = [
      process.execPath,
      join(repoRoot, 'bin/blocklistd'),
      '--foreground',
      '--log-format',
      'json',
      '-c',
      join(dir, 'blocklistd.conf'),
      '-D',
      join(dir, 'blocklistd.db'),
      '-s',
      join(dir, 'blocklistd.sock'),
    ];
    const [wrapper, ...wrap] = options.netns === undefined ? ['unshare', '-n'] : ['ip', 'netns', 'exec', options.netns];
    const child = spawn(wrapper!, [...wrap, ...argv, '-C', join(repoRoot, 'bin/blocklistd-helper'), ...(options.args ?? [])], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, BLOCKLISTD_HELPER_CONF: join(dir, 'helper.conf'), BLOCKLISTD_HELPER_LOCK: join(dir, 'helper.lock') },
    });
    const daemon = new NetnsDaemon(child, dir, options.onLine ?? (() => {}));
    await until(() => existsSync(daemon.socket) || child.exitCode !== null, 10_000);
    if (child.exitCode !== null) throw new Error(`blocklistd exited with status ${child.exitCode}`);
    // reporters run in this namespace (the daemon refuses sockets of another one) and need its loopback
    const lo = await run('nsenter', ['-t', String(child.pid), '-n', 'ip', 'link', 'set', 'lo', 'up']);
    if (lo.code !== 0) throw new Error(`ip link set lo up: ${lo.stderr}`);
    return daemon;
  }

  /** The IPv4 addresses in the daemon's nftables table now (when nothing changes it meanwhile). */
  async addresses(): Promise<number> {
    const r = await run('nsenter', ['-t', String(this.child.pid), '-n', 'nft', 'list', 'table', 'inet', 'blocklistd']);
    return [...r.stdout.matchAll(/\d+\.\d+\.\d+\.\d+/g)].length;
  }

  /**
   * Whether every one of `elements` (`tcp . 10.3.0.1 . 22`) is in `set` now:
   * asked one by one, not listed, since a listing that meets a
   * transaction can come out partial.  Only nft's "No such file or
   * directory" says an element is missing.  A query that meets a
   * transaction of the helper may fail with "Interrupted system call"
   * (EINTR, about 1 in 100 while a set of 5,000 is replaced in a loop,
   * without an element ever missing): it says nothing about the set and
   * is asked again.  Any other failure of nft is the test's, thrown
   * (nft runs in the C locale: the messages are matched).
   */
  async holds(set: string, elements: readonly string[]): Promise<boolean> {
    const args = ['-t', String(this.child.pid), '-n', 'nft', 'get', 'element', 'inet', 'blocklistd', set, `{ ${elements.join(', ')} }`];
    for (let tries = 1; ; tries++) {
      const r = await run('nsenter', args, { env: { LC_ALL: 'C' } });
      if (r.code === 0) return true;
      if (r.stderr.includes('No such file or directory')) return false;
      if (!r.stderr.includes('Interrupted system call') || tries === 10)
        throw new Error(`nft get element: exit status ${r.code}: ${r.stderr.trim()}`);
    }
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

export async function attack(attackers: number, rate: number, duration: number): Promise<AttackFigures> {
  const probe = await blprobe();
  const port = await freePort();
  const blockedAt = new Map<string, number>();
  const releasedAt = new Map<string, number>();
  const daemon = await NetnsDaemon.start(`${port} dgram * * * 1 ${duration}\n`, {
    onLine: (line, at) => {
      const m = /"msg":"(blocked|released) ([\d.]+)\/32:\d+ (?:for|after)/.exec(line);
      if (m) (m[1] === 'blocked' ? blockedAt : releasedAt).set(m[2]!, at);
    },
  });
  try {
    const t0 = performance.now();
    // from the daemon's network namespace: it refuses sockets of another one
    const flood = await run('nsenter', [
      '-t',
      String(daemon.child.pid),
      '-n',
      probe,
      '-s',
      daemon.socket,
      '-u',
      '-p',
      String(port),
      '-F',
      String(attackers),
      '-M',
      String(attackers),
      '-R',
      String(rate),
      '-A',
      '10.0.0.1',
      '-m',
      '',
      '-w',
      '0',
    ]);
    if (!new RegExp(`sent ${attackers} notifications`).test(flood.stdout)) throw new Error(`blprobe: ${flood.stdout}${flood.stderr}`);
    const bound = (attackers / rate + duration) * 1000 + 60_000;
    await until(() => releasedAt.size >= attackers || daemon.child.exitCode !== null, bound);
    const overshoots = [...releasedAt].map(([a, at]) => (at - t0 - (reportIndex(a) * 1000) / rate) / 1000 - duration).sort((a, b) => a - b);
    const releases = [...releasedAt.values()];
    return {
      blockAll: (Math.max(...blockedAt.values()) - t0) / 1000,
      overshootMedian: overshoots[Math.floor(overshoots.length / 2)] ?? NaN,
      overshootMax: overshoots[overshoots.length - 1] ?? NaN,
      releaseRate: (releases.length - 1) / ((Math.max(...releases) - Math.min(...releases)) / 1000 || 1),
      blocked: blockedAt.size,
      released: releasedAt.size,
      leftInFilter: await daemon.addresses(),
    };
  } finally {
    daemon.kill();
  }
}
