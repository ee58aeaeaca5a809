// Benchmark of the receive path (drain, decode, descriptor facts, close)
// under a blprobe flood, against a plain C recvmsg loop on the same flood.
// Prints figures; never fails on timing.  Run: npm run bench
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { blprobe, repoRoot, runBlprobe, tempDir } from '../support.js';

const FLOOD = Number(process.env.BENCH_FLOOD ?? 300_000);
const ROUNDS = 3;
const dir = tempDir('blocklistd-bench-');

async function startReceiver(command: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const [data] = (await once(child.stdout!, 'data')) as [Buffer];
  if (!data.toString().startsWith('ready')) throw new Error(`${command}: ${data.toString()}`);
  return child;
}

async function stopReceiver(child: ChildProcess): Promise<string> {
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.kill('SIGTERM');
  await once(child, 'close');
  return out.trim();
}

/** Rates of ROUNDS floods: [sent per second, processed per second]; the median round. */
async function flood(path: string, extra: string[]): Promise<{ sent: number; processed: number }> {
  const rounds: { sent: number; processed: number }[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const { stdout, code } = await runBlprobe(['-s', path, '-F', String(FLOOD), '-w', '60000', ...extra]);
    const sent = /in [\d.]+ s = (\d+)\/s/.exec(stdout);
    const processed = /processed all after [\d.]+ s = (\d+)\/s/.exec(stdout);
    if (code !== 0 || !sent || !processed) throw new Error(`blprobe failed (${code}): ${stdout}`);
    rounds.push({ sent: Number(sent[1]), processed: Number(processed[1]) });
  }
  rounds.sort((a, b) => a.processed - b.processed);
  return rounds[Math.floor(ROUNDS / 2)];
}

const fmt = (n: number): string => n.toLocaleString('en-US').padStart(9);

async function main(): Promise<void> {
  await blprobe();
  const recvloop = join(dir, 'recvloop');
  execFileSync('cc', ['-O2', '-o', recvloop, join(repoRoot, 'test/bench/recvloop.c')]);

  const floods: [string, string[]][] = [
    ['TCP, connected socket', []],
    ['UDP, 1000 explicit peers', ['-u', '-M', '1000']],
  ];
  console.log(`receive path: ${ROUNDS} floods of ${FLOOD} notifications each, median round (datagrams per second)`);
  console.log(`${'flood'.padEnd(28)}${'C recvmsg'.padStart(10)}${'node'.padStart(10)}   ratio`);
  for (const [name, args] of floods) {
    const cPath = join(dir, 'c.sock');
    const c = await startReceiver(recvloop, [cPath]);
    const baseline = await flood(cPath, args);
    await stopReceiver(c);

    const nodePath = join(dir, 'node.sock');
    const node = await startReceiver(process.execPath, [join(repoRoot, 'dist/test/bench/receiver.js'), nodePath]);
    const ours = await flood(nodePath, args);
    const [received, dropped, batches] = (await stopReceiver(node)).split(' ').map(Number);
    const expected = (FLOOD + 1) * ROUNDS; // each flood ends with a barrier notification
    console.log(
      `${name.padEnd(28)}${fmt(baseline.processed)} ${fmt(ours.processed)}   ${(baseline.processed / ours.processed).toFixed(2)}x` +
        `   (decoded ${received}/${expected}, ${dropped} dropped, ${(received / batches).toFixed(1)} per wake-up)`,
    );
  }
  console.log('targets: node >= 100,000/s and within 3x of the C loop');
}

await main();
