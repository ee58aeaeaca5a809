// npm run bench: every benchmark of the project (or those named), one after the other (each
// a process of its own, so that none warms up or slows down the next), its
// lines printed as they come; then test/bench/RESULTS.md (the machine, each
// figure against its target, the ratios to the raw limits measured in the
// same run) and test/bench/notifications-vs-state.svg; a run of some of
// them writes both to var/bench/ instead, so that the committed results stay
// those of a full run.  Never fails on timing: only a benchmark that cannot
// run makes it exit non-zero.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { repoRoot, tempDir } from '../support.js';
import { atLeast, atMost, type Figure, type Target } from './results.js';

const BENCHMARKS = ['receive', 'address', 'conf', 'state', 'daemon', 'helper', 'watch', 'attack', 'burst', 'spray', 'fleet'];
/** Where a full run writes: the committed results, figures of every benchmark. */
const COMMITTED = join(repoRoot, 'test/bench');
/** Where a run of some benchmarks writes: it must not replace the committed full results with a part of them (git ignores var/). */
const PARTIAL = join(repoRoot, 'var/bench');
const CHART = 'notifications-vs-state.svg';

interface Ratio {
  what: string;
  ours: string;
  limit: string;
  /** How many times the raw limit is better. */
  slower: (ours: number, limit: number) => number;
  target?: number;
}

/** Our figure against the raw limit measured in the same run. */
const RATIOS: Ratio[] = [
  {
    what: 'receive path (TCP flood) vs a C recvmsg loop',
    ours: 'receive.node.tcp',
    limit: 'receive.c.tcp',
    slower: (o, l) => l / o,
    target: 1.5,
  },
  {
    what: 'receive path (UDP flood) vs a C recvmsg loop',
    ours: 'receive.node.udp',
    limit: 'receive.c.udp',
    slower: (o, l) => l / o,
    target: 1.5,
  },
  {
    what: 'whole daemon, empty state (UDP flood) vs a C recvmsg loop',
    ours: 'daemon.rate.0',
    limit: 'receive.c.udp',
    slower: (o, l) => l / o,
  },
  {
    what: 'whole daemon, 100,000 entries (UDP flood) vs a C recvmsg loop',
    ours: 'daemon.rate.100000',
    limit: 'receive.c.udp',
    slower: (o, l) => l / o,
  },
  {
    what: 'restore of the blocks (-r, from start) vs one nft -f transaction of as many elements',
    ours: 'restore.seconds',
    limit: 'restore.raw',
    slower: (o, l) => o / l,
  },
];

/**
 * Issue 19's table: each figure before the issue (the run of 2026-11-21,
 * test/bench/RESULTS.md then), in this run, and its target.  The C loop's
 * row tells how fast the machine was in each run: the shared host's speed
 * varies from day to day.
 */
interface Goal {
  what: string;
  before: string;
  value: (byId: ReadonlyMap<string, Figure>) => number | undefined;
  unit: string;
  target?: Target;
}

const figure =
  (id: string) =>
  (byId: ReadonlyMap<string, Figure>): number | undefined =>
    byId.get(id)?.value;
const ratio =
  (flood: 'tcp' | 'udp') =>
  (byId: ReadonlyMap<string, Figure>): number | undefined => {
    const [ours, limit] = [byId.get(`receive.node.${flood}`), byId.get(`receive.c.${flood}`)];
    return ours === undefined || limit === undefined ? undefined : limit.value / ours.value;
  };

const sum =
  (...ids: string[]) =>
  (byId: ReadonlyMap<string, Figure>): number | undefined => {
    const values = ids.map((id) => byId.get(id)?.value);
    return values.includes(undefined) ? undefined : values.reduce<number>((total, value) => total + value!, 0);
  };

const ISSUE_19: Goal[] = [
  { what: 'C recvmsg loop, UDP flood (the machine in this run)', before: '431,079', value: figure('receive.c.udp'), unit: 'datagrams/s' },
  {
    what: 'the same loop reading the four facts of each passed socket, one datagram a call (not measured before)',
    before: '',
    value: figure('receive.cfacts.udp'),
    unit: 'datagrams/s',
  },
  { what: 'whole daemon, UDP flood, 0 entries', before: '63,540', value: figure('daemon.rate.0'), unit: '/s', target: atLeast(120_000) },
  {
    what: 'whole daemon, UDP flood, 100,000 entries',
    before: '64,589',
    value: figure('daemon.rate.100000'),
    unit: '/s',
    target: atLeast(120_000),
  },
  {
    what: 'whole daemon, UDP flood, 1,000,000 entries',
    before: '59,385',
    value: figure('daemon.rate.1000000'),
    unit: '/s',
    target: atLeast(120_000),
  },
  {
    what: 'whole daemon, CPU per notification (all threads), 100,000 entries (not measured before issue 19)',
    before: '',
    value: figure('daemon.cpu.100000'),
    unit: 'µs',
  },
  { what: 'receive path vs C recvmsg loop, UDP flood', before: '2.56x', value: ratio('udp'), unit: 'x', target: atMost(1.5) },
  { what: 'receive path vs C recvmsg loop, TCP flood', before: '2.65x', value: ratio('tcp'), unit: 'x', target: atMost(1.5) },
  {
    what: "RSS at 100,000 entries, at the flood's end (as the 114 MB were measured)",
    before: '114',
    value: figure('daemon.rss.flood.100000'),
    unit: 'MB',
    target: atMost(80),
  },
  {
    what: 'the same after the flood, once the daemon has given its young generation back (not measured before)',
    before: '',
    value: figure('daemon.rss.100000'),
    unit: 'MB',
    target: atMost(80),
  },
  {
    what: "RSS at 1,000,000 entries, at the flood's end (as the 168 MB were measured)",
    before: '168',
    value: figure('daemon.rss.flood.1000000'),
    unit: 'MB',
    target: atMost(140),
  },
  {
    what: 'the same after the flood, once the daemon has given its young generation back',
    before: '',
    value: figure('daemon.rss.1000000'),
    unit: 'MB',
    target: atMost(140),
  },
  {
    what: "restore of 100,000 blocks through nftables, from start (without this machine's NODE_EXTRA_CA_CERTS)",
    before: '2.72',
    value: figure('restore.seconds'),
    unit: 's',
    target: atMost(1),
  },
  {
    what: 'the same with NODE_EXTRA_CA_CERTS, set here for the npm proxy (as the 2.72 s were measured)',
    before: '2.72',
    value: figure('restore.seconds.extraCaCerts'),
    unit: 's',
  },
  {
    what: 'one `nft -f` of as many addresses into a set of addresses alone (the raw figure before)',
    before: '0.28',
    value: figure('restore.raw.addresses'),
    unit: 's',
  },
  {
    what: "one `nft -f` of as many elements into a set of the helper's type (protocol . address . port, timeouts)",
    before: '',
    value: figure('restore.raw'),
    unit: 's',
  },
  {
    what: "node's start with the daemon's modules loaded, nothing run",
    before: '',
    value: figure('restore.start'),
    unit: 's',
  },
  {
    what: "the restore's floor here: the two above, before any entry is read (the helper's own work and the daemon's not counted)",
    before: '',
    value: sum('restore.start', 'restore.raw'),
    unit: 's',
  },
  { what: 'notification to helper start, median', before: '3.22', value: figure('daemon.latency.median'), unit: 'ms', target: atMost(1.5) },
  {
    what: "the same, a C program doing only the recvmsg and the posix_spawn (the machine's floor)",
    before: '',
    value: figure('daemon.latency.floor'),
    unit: 'ms',
  },
  {
    what: 'the same C program with a launcher forked in advance that only execs the helper, instead of posix_spawn',
    before: '',
    value: figure('daemon.latency.launcher.floor'),
    unit: 'ms',
  },
  {
    what: '10,000 adds through a 2 ms non-batch helper',
    before: '> 100',
    value: figure('daemon.singles.seconds'),
    unit: 's',
    target: atMost(30),
  },
  {
    what: "`blocklistctl dump -a` of 100,000 entries (without this machine's NODE_EXTRA_CA_CERTS)",
    before: '0.61',
    value: figure('dump.seconds'),
    unit: 's',
    target: atMost(0.35),
  },
  {
    what: 'the same with NODE_EXTRA_CA_CERTS, set here for the npm proxy (as the 0.61 s were measured)',
    before: '0.61',
    value: figure('dump.seconds.extraCaCerts'),
    unit: 's',
  },
  { what: 'idle daemon with 100,000 entries, 60 s', before: '0', value: figure('daemon.idle.ticks'), unit: 'CPU ticks', target: atMost(0) },
];

function machine(): [string, string][] {
  const nft = spawnSync('nft', ['--version'], { encoding: 'utf8', env: { PATH: `/usr/sbin:/sbin:${process.env.PATH ?? ''}` } });
  return [
    ['date', new Date().toISOString().replace(/\.\d+Z$/, 'Z')],
    ['machine', `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`],
    ['kernel', `${process.platform} ${release()}`],
    ['Node.js', process.version],
    ['nftables', nft.status === 0 ? nft.stdout.trim() : 'not installed'],
    [
      'net.unix.max_dgram_qlen',
      existsSync('/proc/sys/net/unix/max_dgram_qlen') ? readFileSync('/proc/sys/net/unix/max_dgram_qlen', 'utf8').trim() : 'n/a',
    ],
  ];
}

function format(value: number): string {
  if (Number.isInteger(value) || Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US');
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

const meets = (value: number, target: Target | undefined): string =>
  target === undefined ? '' : (target.op === '>=' ? value >= target.value : value <= target.value) ? 'yes' : '**no**';
const met = (f: Figure): string => meets(f.value, f.target);

/** Issue 19's table, the figures of this run against those before it. */
function issue19(byId: ReadonlyMap<string, Figure>): string[] {
  const lines = [
    '## Issue 19: before and after',
    '',
    "Before: the run of 2026-11-21 (the issue's figures); after: this run.",
    '',
    '| figure | before | after | unit | target | met |',
    '|---|--:|--:|---|--:|:-:|',
  ];
  for (const g of ISSUE_19) {
    const value = g.value(byId);
    const after = value === undefined ? 'not measured' : g.unit === 'x' ? `${value.toFixed(2)}x` : format(value);
    const target = g.target === undefined ? '' : `${g.target.op} ${format(g.target.value)}${g.unit === 'x' ? 'x' : ''}`;
    const unit = g.unit === 'x' ? '' : g.unit;
    lines.push(`| ${g.what} | ${g.before} | ${after} | ${unit} | ${target} | ${value === undefined ? '' : meets(value, g.target)} |`);
  }
  lines.push('');
  return lines;
}

function markdown(figures: Figure[], failed: string[]): string {
  const byId = new Map(figures.map((f) => [f.id, f]));
  const lines = [
    '# Benchmark results',
    '',
    'Written by `npm run bench` (test/bench/run.ts); the figures of the last run on this machine.',
    '',
  ];
  lines.push('| | |', '|---|---|', ...machine().map(([k, v]) => `| ${k} | ${v} |`), '');
  if (failed.length > 0) lines.push(`Benchmarks that could not run: ${failed.join(', ')}.`, '');
  lines.push(...issue19(byId), '## Every figure', '');
  lines.push('| figure | value | unit | target | met |', '|---|--:|---|--:|:-:|');
  for (const f of figures)
    lines.push(
      `| ${f.name} | ${format(f.value)} | ${f.unit} | ` +
        `${f.target === undefined ? '' : `${f.target.op} ${format(f.target.value)}`} | ${met(f)} |`,
    );
  lines.push(
    '',
    '## Against the raw limits of this machine',
    '',
    '| comparison | ours | raw limit | ratio | target |',
    '|---|--:|--:|--:|--:|',
  );
  for (const r of RATIOS) {
    const [ours, limit] = [byId.get(r.ours), byId.get(r.limit)];
    if (ours === undefined || limit === undefined) continue;
    lines.push(
      `| ${r.what} | ${format(ours.value)} ${ours.unit} | ${format(limit.value)} ${limit.unit} | ` +
        `${r.slower(ours.value, limit.value).toFixed(2)}x | ` +
        `${r.target === undefined ? '' : `<= ${r.target}x`} |`,
    );
  }
  lines.push(
    '',
    '## Notifications per second against the state size',
    '',
    `![notifications per second against the number of entries](${CHART})`,
    '',
  );
  return lines.join('\n');
}

/** Notifications/s of the whole daemon against the entries in its database (log scale), with the C loop and the target. */
function chart(figures: Figure[]): string {
  const points = figures.filter((f) => f.id.startsWith('daemon.rate.') && f.entries !== undefined).sort((a, b) => a.entries! - b.entries!);
  const limit = figures.find((f) => f.id === 'receive.c.udp')?.value;
  const target = points[0]?.target?.value ?? 30_000;
  const [w, h, left, right, top, bottom] = [720, 400, 80, 40, 50, 60];
  // the C loop is several times faster: a line for it would flatten the daemon's, so it is a note unless it fits
  const highest = Math.max(...points.map((p) => p.value), target);
  const showLimit = limit !== undefined && limit <= highest * 2;
  const yTop = (showLimit ? Math.max(highest, limit) : highest) * 1.15;
  const step = [1, 2, 5].map((m) => m * 10 ** Math.floor(Math.log10(yTop / 5))).find((s) => yTop / s <= 8)!;
  const yMax = Math.ceil(yTop / step) * step;
  // entries 0 drawn at the left, the rest on a log scale from 100 on
  const xs = points.map((p) => Math.log10(Math.max(p.entries!, 100)));
  const [xMin, xMax] = [1.7, Math.max(3, ...xs) + 0.3];
  const x = (v: number): number => left + ((v - xMin) / (xMax - xMin)) * (w - left - right);
  const y = (v: number): number => h - bottom - (v / yMax) * (h - top - bottom);
  const text = (tx: number, ty: number, s: string, anchor = 'middle'): string =>
    `<text x="${tx.toFixed(1)}" y="${ty.toFixed(1)}" text-anchor="${anchor}">${s}</text>`;
  const hline = (v: number, label: string, style: string): string =>
    `<line x1="${left}" x2="${w - right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" ` +
    `${style}/>${text(left + 6, y(v) + 16, label, 'start')}`;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="${w}" height="${h}" fill="white"/>`,
    text(w / 2, 20, 'blocklistd: notifications per second (UDP flood) against entries in the database'),
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${h - bottom}" stroke="black"/>`,
    `<line x1="${left}" x2="${w - right}" y1="${h - bottom}" y2="${h - bottom}" stroke="black"/>`,
  ];
  if (limit !== undefined && !showLimit)
    out.push(text(w / 2, 38, `(a C recvmsg loop takes the same flood at ${format(limit)}/s, off this scale)`));
  for (let v = 0; v <= yMax; v += step)
    out.push(`<line x1="${left - 4}" x2="${left}" y1="${y(v)}" y2="${y(v)}" stroke="black"/>`, text(left - 8, y(v) + 4, format(v), 'end'));
  for (const [i, p] of points.entries())
    out.push(
      `<line x1="${x(xs[i])}" x2="${x(xs[i])}" y1="${h - bottom}" y2="${h - bottom + 4}" stroke="black"/>`,
      text(x(xs[i]), h - bottom + 18, format(p.entries!)),
    );
  out.push(text((left + w - right) / 2, h - 15, 'entries in the state database (log scale; 0 at the left)'));
  if (showLimit) out.push(hline(limit, `C recvmsg loop, same flood: ${format(limit)}/s`, 'stroke="gray" stroke-dasharray="6 4"'));
  out.push(hline(target, `target: ${format(target)}/s`, 'stroke="red" stroke-dasharray="2 3"'));
  out.push(
    `<polyline fill="none" stroke="steelblue" stroke-width="2" ` +
      `points="${points.map((p, i) => `${x(xs[i]).toFixed(1)},${y(p.value).toFixed(1)}`).join(' ')}"/>`,
  );
  for (const [i, p] of points.entries())
    out.push(
      `<circle cx="${x(xs[i]).toFixed(1)}" cy="${y(p.value).toFixed(1)}" r="4" fill="steelblue"/>`,
      text(x(xs[i]), y(p.value) - 10, `${format(p.value)}/s`),
    );
  out.push('</svg>', '');
  return out.join('\n');
}

const USAGE = `usage: npm run bench [-- name ...]
  names: ${BENCHMARKS.join(' ')}
  every benchmark: the results go to test/bench/RESULTS.md (committed)
  some of them:    the results go to var/bench/RESULTS.md
  $BENCH_OUT: another directory for the results
`;

function main(): number {
  // `npm run bench -- daemon helper`: only those
  const names = process.argv.slice(2);
  if (names.includes('-h') || names.includes('--help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const unknown = names.filter((n) => !BENCHMARKS.includes(n));
  if (unknown.length > 0) {
    process.stderr.write(`bench: no benchmark named ${unknown.join(', ')}\n${USAGE}`);
    return 2;
  }
  const chosen = names.length > 0 ? BENCHMARKS.filter((b) => names.includes(b)) : BENCHMARKS;
  const out = process.env.BENCH_OUT ?? (chosen.length === BENCHMARKS.length ? COMMITTED : PARTIAL);
  mkdirSync(out, { recursive: true });
  const dir = tempDir('blocklistd-bench-run-');
  const results = join(dir, 'figures.jsonl');
  const failed: string[] = [];
  for (const name of chosen) {
    console.log(`\n== ${name} ==`);
    const r = spawnSync(process.execPath, [join(repoRoot, `dist/test/bench/${name}.js`)], {
      stdio: 'inherit',
      env: { ...process.env, BENCH_RESULTS: results },
    });
    if (r.status !== 0) failed.push(name);
  }
  const figures = existsSync(results)
    ? readFileSync(results, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Figure)
    : [];
  rmSync(dir, { recursive: true, force: true });
  writeFileSync(join(out, 'RESULTS.md'), markdown(figures, failed));
  writeFileSync(join(out, CHART), chart(figures));
  console.log('\n== against the raw limits ==');
  const byId = new Map(figures.map((f) => [f.id, f]));
  for (const r of RATIOS) {
    const [ours, limit] = [byId.get(r.ours), byId.get(r.limit)];
    if (ours !== undefined && limit !== undefined)
      console.log(
        `${r.what}: ${r.slower(ours.value, limit.value).toFixed(2)}x${r.target === undefined ? '' : ` (target <= ${r.target}x)`}`,
      );
  }
  const missed = figures.filter((f) => met(f) === '**no**');
  console.log(
    `\n${figures.length} figures, ${missed.length} below ` +
      `target${missed.length > 0 ? `: ${missed.map((f) => f.id).join(', ')}` : ''}; written to ` +
      `${join(out, 'RESULTS.md')} and ${join(out, CHART)}`,
  );
  if (failed.length > 0) console.log(`benchmarks that failed to run: ${failed.join(', ')}`);
  return failed.length > 0 ? 1 : 0;
}

process.exitCode = main();
