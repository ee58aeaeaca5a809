// Benchmark of configuration matching and parsing: 1,000 local and 1,000
// remote rules, time per notification (indexed, and a plain walk for
// comparison); a 10,000-line configuration parsed.  Prints figures only.
import { performance } from 'node:perf_hooks';
import { toText } from '../../src/conf/ip.js';
import { compileRules, firstMatchLinear, matchProbe, matchWith } from '../../src/conf/match.js';
import { parseConfig } from '../../src/conf/parse.js';
import { buildRuleSet } from '../../src/conf/ruleset.js';
import { systemEnv } from '../../src/conf/system.js';
import { probeOf } from '../../src/daemon/probe.js';
import { tcpNotification } from '../support.js';
import { atMost, record } from './results.js';

const env = systemEnv();
const NO_INTERFACES = new Map();

/** A deterministic generator, so that runs compare. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}
const rnd = random(42);
const int = (n: number): number => Math.floor(rnd() * n);
const ipv4 = (): string =>
  toText({ family: 'inet', words: [(((1 + int(223)) << 24) | (int(256) << 16) | (int(256) << 8) | int(256)) >>> 0] });

function config(localRules: number, remoteRules: number): string {
  const lines = ['[local]'];
  for (let i = 0; i < localRules; i++) {
    const kind = i % 10;
    // most services on any address, some per address and network, some IPv6
    if (kind < 6) lines.push(`${1000 + i}\tstream\t*\t*\t-svc${i}\t${1 + int(10)}\t${1 + int(24)}h`);
    else if (kind < 8) lines.push(`${ipv4()}:${1000 + int(localRules)}\tstream\ttcp\t*\t-host${i}\t5\t1h`);
    else if (kind < 9) lines.push(`${ipv4()}/${8 + int(17)}:${1000 + int(localRules)}\t*\t*\t*\t-net${i}/24\t5\t1h`);
    else lines.push(`[2001:db8:${i.toString(16)}::]/48:${1000 + int(localRules)}\tstream\ttcp6\t*\t-v6${i}\t5\t1h`);
  }
  lines.push('*\t*\t*\t*\t*\t3\t60', '[remote]');
  for (let i = 0; i < remoteRules; i++) {
    const kind = i % 4;
    if (kind === 0) lines.push(`${ipv4()}\t*\t*\t*\t=\t*\t*`);
    else if (kind === 1) lines.push(`${ipv4()}/${8 + int(17)}:${1000 + int(localRules)}\t*\t*\t*\t=/24\t=\t=`);
    else if (kind === 2) lines.push(`${ipv4()}/${16 + int(9)}\t*\t*\t*\t-r${i}\t2\t1d`);
    else lines.push(`[2001:db8:${i.toString(16)}::]/${32 + int(33)}\t*\t*\t*\t=\t1\t*`);
  }
  return lines.join('\n') + '\n';
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

function timeEach(n: number, fn: (i: number) => unknown): { median: number; p99: number; mean: number } {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    fn(i);
    times.push((performance.now() - t0) * 1000);
  }
  const mean = times.reduce((a, b) => a + b, 0) / n;
  times.sort((a, b) => a - b);
  return { median: percentile(times, 0.5), p99: percentile(times, 0.99), mean };
}

function main(): void {
  const parsed = parseConfig(config(1000, 1000), 'bench.conf', env);
  const { ruleSet } = buildRuleSet([parsed], env.families);
  const compiled = compileRules(ruleSet);
  const notifications = Array.from({ length: 20000 }, () => tcpNotification(1000 + int(1100), ipv4(), { text: 'ssh' }));
  const probes = notifications.map((n) => probeOf(n, env.families));
  let matched = 0;
  for (const p of probes) if (matchProbe(compiled, p, NO_INTERFACES)) matched++;

  for (let round = 0; round < 3; round++) for (const p of probes) matchProbe(compiled, p, NO_INTERFACES); // warm up
  const indexed = timeEach(probes.length, (i) => matchProbe(compiled, probes[i], NO_INTERFACES));
  const end2end = timeEach(notifications.length, (i) => matchProbe(compiled, probeOf(notifications[i], env.families), NO_INTERFACES));
  const linear = timeEach(2000, (i) => matchWith((list, x) => firstMatchLinear(ruleSet[list], x, NO_INTERFACES), probes[i]));

  const fmt = (t: { median: number; p99: number; mean: number }): string =>
    `median ${t.median.toFixed(2)} µs, p99 ${t.p99.toFixed(2)} µs, mean ${t.mean.toFixed(2)} µs`;
  console.log(
    `matching: ${ruleSet.local.length} local and ${ruleSet.remote.length} remote rules, ${probes.length} ` +
      `notifications (${matched} matched)`,
  );
  console.log(`  indexed             ${fmt(indexed)}`);
  console.log(`  with probeOf()      ${fmt(end2end)}`);
  console.log(`  linear walk         ${fmt(linear)}`);
  console.log('  target: median <= 5 µs');
  record({
    id: 'match.median',
    name: `matching over ${ruleSet.local.length + ruleSet.remote.length} rules: median`,
    value: indexed.median,
    unit: 'µs',
    target: atMost(5),
  });
  record({
    id: 'match.p99',
    name: `matching over ${ruleSet.local.length + ruleSet.remote.length} rules: 99th percentile`,
    value: indexed.p99,
    unit: 'µs',
  });

  const big = config(7000, 3000);
  const lines = big.split('\n').length - 1;
  const runs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    buildRuleSet([parseConfig(big, 'big.conf', env)], env.families);
    runs.push(performance.now() - t0);
  }
  runs.sort((a, b) => a - b);
  console.log(`parsing: ${lines} lines, median of 5: ${runs[2].toFixed(1)} ms (target <= 200 ms)`);
  record({ id: 'parse.ms', name: `parsing a ${lines}-line configuration`, value: runs[2], unit: 'ms', target: atMost(200) });
}

main();
