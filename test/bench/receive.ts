// Benchmark of the receive path (drain, decode, descriptor facts, close)
// under a blprobe flood, against a plain C recvmsg loop on the same flood,
// and against the same loop reading the four facts of each passed socket
// (recvloop.c `facts`): what the facts cost a receiver of one datagram a
// call on one thread, as upstream's daemon is.
// Prints figures; never fails on timing.  Run: npm run bench
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { blprobe, repoRoot, runBlprobe, tempDir, until } from '../support.js';
import { atLeast, record } from './results.js';

const FLOOD = Number(process.env.BENCH_FLOOD ?? 300_000);
const ROUNDS = 3;
const dir = tempDir('blocklistd-bench-');

async function startReceiver(command: string, args: string[]): Promise<{ child: ChildProcess; lines: string[] }> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  await until(() => lines.includes('ready'), 10_000);
  return { child, lines };
}

async function stopReceiver(r: { child: ChildProcess; lines: string[] }): Promise<string> {
  r.child.kill('SIGTERM');
  await once(r.child, 'close');
  return r.lines[r.lines.length - 1];
}

/**
 * ROUNDS floods; the median round, in datagrams per second until the
 * receiver has them all: for the C loop when blprobe's barrier returns, for
 * Node when the receiver says it decoded the round (the barrier only shows
 * that the receiving thread took them from the kernel).
 */
async function flood(path: string, extra: string[], decoded?: string[]): Promise<number> {
  const rates: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now();
    const { stdout, code } = await runBlprobe(['-s', path, '-F', String(FLOOD), '-w', '60000', ...extra]);
    if (code !== 0 || !/processed all/.test(stdout)) throw new Error(`blprobe failed (${code}): ${stdout}`);
    if (decoded !== undefined) await until(() => decoded.includes(`round ${i + 1}`), 60_000);
    rates.push(FLOOD / ((performance.now() - t0) / 1000));
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(ROUNDS / 2)];
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US').padStart(9);

async function main(): Promise<void> {
  await blprobe();
  const recvloop = join(dir, 'recvloop');
  execFileSync('cc', ['-O2', '-o', recvloop, join(repoRoot, 'test/bench/recvloop.c')]);

  const floods: [string, string, string[]][] = [
    ['tcp', 'TCP, connected socket', []],
    ['udp', 'UDP, 1000 explicit peers', ['-u', '-M', '1000']],
  ];
  console.log(`receive path: ${ROUNDS} floods of ${FLOOD} notifications each, median round (datagrams per second until all are decoded)`);
  console.log(`${'flood'.padEnd(28)}${'C recvmsg'.padStart(10)}${'+ facts'.padStart(10)}${'node'.padStart(10)}   ratio`);
  for (const [id, name, args] of floods) {
    const cPath = join(dir, 'c.sock');
    const c = await startReceiver(recvloop, [cPath]);
    const baseline = await flood(cPath, args);
    await stopReceiver(c);
    const factsLoop = await startReceiver(recvloop, [cPath, 'facts']);
    const withFacts = await flood(cPath, args);
    await stopReceiver(factsLoop);

    const nodePath = join(dir, 'node.sock');
    // each flood ends with blprobe's barrier notification
    const node = await startReceiver(process.execPath, [join(repoRoot, 'dist/test/bench/receiver.js'), nodePath, String(FLOOD + 1)]);
    const ours = await flood(nodePath, args, node.lines);
    const [received, dropped, batches] = (await stopReceiver(node)).split(' ').map(Number);
    record({ id: `receive.c.${id}`, name: `receive path, ${name}: C recvmsg loop (raw limit)`, value: baseline, unit: 'datagrams/s' });
    record({
      id: `receive.cfacts.${id}`,
      name: `receive path, ${name}: C recvmsg loop reading the four facts of each passed socket, one datagram a call`,
      value: withFacts,
      unit: 'datagrams/s',
    });
    record({ id: `receive.node.${id}`, name: `receive path, ${name}: Node`, value: ours, unit: 'datagrams/s', target: atLeast(100_000) });
    console.log(
      `${name.padEnd(28)}${fmt(baseline)} ${fmt(withFacts)} ${fmt(ours)}   ${(baseline / ours).toFixed(2)}x` +
        `   (decoded ${received}/${(FLOOD + 1) * ROUNDS}, ${dropped} dropped, ${(received / batches).toFixed(1)} per batch)`,
    );
  }
  console.log('targets: node >= 100,000/s and within 1.5x of the C loop (issue 19)');
}

await main();
