// A distributed attack against the whole daemon (issue 13 §4): `attackers`
// distinct addresses reported once each at `rate` per second, every report
// blocking at once for `duration` seconds, the real blocklistd-helper on
// nftables in a network namespace of the daemon's own.  Measures how long
// the filter takes to block them all and how long blocks outlive their
// duration.  Shared by test/attack.test.ts (bounded) and test/bench/attack.ts.
import { spawn } from 'node:child_process';
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

export async function attack(attackers: number, rate: number, duration: number): Promise<AttackFigures> {
  const probe = await blprobe();
  const port = await freePort();
  const dir = tempDir('blocklistd-attack-');
  writeFileSync(join(dir, 'blocklistd.conf'), `${port} dgram * * * 1 ${duration}\n`);
  writeFileSync(join(dir, 'helper.conf'), 'backend=nftables\n');
  const socket = join(dir, 'blocklistd.sock');
  const argv = [process.execPath, join(repoRoot, 'bin/blocklistd'), '--foreground', '--log-format', 'json', '-c', join(dir, 'blocklistd.conf'), '-D', join(dir, 'blocklistd.db'), '-s', socket];
  // the helper's nft commands go to a namespace of the daemon's own; the control socket, to list what is left
  const daemon = spawn('unshare', ['-n', ...argv, '-C', join(repoRoot, 'bin/blocklistd-helper')], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, BLOCKLISTD_HELPER_CONF: join(dir, 'helper.conf') },
  });
  const blockedAt = new Map<string, number>();
  const releasedAt = new Map<string, number>();
  let rest = '';
  daemon.stdout!.on('data', (d: Buffer) => {
    const now = performance.now();
    const lines = (rest + d.toString()).split('\n');
    rest = lines.pop()!;
    for (const line of lines) {
      const m = /"msg":"(blocked|released) ([\d.]+)\/32:\d+ (?:for|after)/.exec(line);
      if (m) (m[1] === 'blocked' ? blockedAt : releasedAt).set(m[2]!, now);
    }
  });
  try {
    await until(() => existsSync(socket) || daemon.exitCode !== null, 10_000);
    const t0 = performance.now();
    const flood = await run(probe, ['-s', socket, '-u', '-p', String(port), '-F', String(attackers), '-M', String(attackers), '-R', String(rate), '-A', '10.0.0.1', '-m', '', '-w', '0']);
    if (!new RegExp(`sent ${attackers} notifications`).test(flood.stdout)) throw new Error(`blprobe: ${flood.stdout}${flood.stderr}`);
    const bound = (attackers / rate + duration) * 1000 + 600_000;
    await until(() => releasedAt.size >= attackers || daemon.exitCode !== null, bound);
    const overshoots = [...releasedAt].map(([a, at]) => (at - t0 - (reportIndex(a) * 1000) / rate) / 1000 - duration).sort((a, b) => a - b);
    const releases = [...releasedAt.values()];
    const left = await run('nsenter', ['-t', String(daemon.pid), '-n', 'nft', 'list', 'table', 'inet', 'blocklistd']);
    return {
      blockAll: (Math.max(...blockedAt.values()) - t0) / 1000,
      overshootMedian: overshoots[Math.floor(overshoots.length / 2)] ?? NaN,
      overshootMax: overshoots[overshoots.length - 1] ?? NaN,
      releaseRate: (releases.length - 1) / ((Math.max(...releases) - Math.min(...releases)) / 1000 || 1),
      blocked: blockedAt.size,
      released: releasedAt.size,
      leftInFilter: [...left.stdout.matchAll(/\d+\.\d+\.\d+\.\d+/g)].length,
    };
  } finally {
    daemon.kill('SIGKILL');
  }
}
