// Benchmark of the state database: get+put per notification inside batch
// transactions, `blocklistctl dump -a` of 100,000 entries (wall time with
// Node's start-up), and the file size.  Prints figures only.  With
// BENCH_DUMP_DB=file only the dump runs, of that file (made by the random
// get+put, the dump's database in a whole run, when it does not exist).
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { StateStore } from '../../src/state/store.js';
import type { EffectiveRule } from '../../src/types.js';
import { repoRoot, tempDir } from '../support.js';
import { atLeast, atMost, record, recordStart, startEnvironments } from './results.js';

const ENTRIES = 100_000;
const NOTIFICATIONS = 400_000;
const BATCH = 500;

function key(i: number): EffectiveRule {
  return {
    family: 2,
    address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    lmask: 32,
    port: 22,
    proto: 6,
    uid: -1,
    name: 'blocklistd',
    rmask: -1,
    nfail: 6,
    duration: 3600,
  };
}

const dir = tempDir('blocklistd-bench-');

/** get+put for NOTIFICATIONS notifications whose keys `pick` chooses, in transactions of BATCH. */
function getPut(id: string, name: string, pick: (i: number) => number, path = join(dir, `${name}.db`)): string {
  const store = StateStore.open(path);
  const keys = Array.from({ length: NOTIFICATIONS }, (_, i) => key(pick(i)));
  const t0 = performance.now();
  for (let b = 0; b < NOTIFICATIONS; b += BATCH) {
    store.transaction(() => {
      for (let i = b; i < b + BATCH; i++) {
        const e = store.get(keys[i]) ?? { key: keys[i], count: 0, last: 0, id: '' };
        store.put({ ...e, count: e.count + 2, last: 1_700_000_000 + i });
      }
    });
  }
  const seconds = (performance.now() - t0) / 1000;
  console.log(
    `  ${name.padEnd(44)} ${Math.round(NOTIFICATIONS / seconds)
      .toLocaleString('en-US')
      .padStart(9)}/s  (${store.size().toLocaleString('en-US')} entries)`,
  );
  record({
    id: `state.${id}`,
    name: `state get+put: ${name}`,
    value: NOTIFICATIONS / seconds,
    unit: 'notifications/s',
    target: atLeast(200_000),
  });
  store.close();
  return path;
}

const dumpDatabase = process.env.BENCH_DUMP_DB;
const randomName = `random addresses over ${ENTRIES.toLocaleString('en-US')} entries`;
const randomPick = (i: number): number => (i * 7919) % ENTRIES;
let path: string;
if (dumpDatabase !== undefined) {
  if (!existsSync(dumpDatabase)) getPut('random', randomName, randomPick, dumpDatabase);
  path = dumpDatabase;
} else {
  console.log(
    `state: get+put per notification, ${NOTIFICATIONS.toLocaleString('en-US')} notifications in ` +
      `transactions of ${BATCH} (target >= 200,000/s)`,
  );
  getPut('attack', 'an attack from 1,000 addresses', (i) => (i * 7919) % 1000);
  getPut('ordered', `addresses in order over ${ENTRIES.toLocaleString('en-US')} entries`, (i) => i % ENTRIES);
  path = getPut('random', randomName, randomPick);
  getPut('spray', 'a spray: every notification a new address', (i) => (i * 7919) % NOTIFICATIONS);
  console.log(`state: file size at ${ENTRIES.toLocaleString('en-US')} entries: ${(statSync(path).size / 1e6).toFixed(1)} MB`);
  record({
    id: 'state.size',
    name: `database file at ${ENTRIES.toLocaleString('en-US')} entries`,
    value: statSync(path).size / 1e6,
    unit: 'MB',
  });
}

/** Median wall time of 3 runs of `dump -a` with each environment (startEnvironments()), the runs interleaved. */
function dumpSeconds(environments: NodeJS.ProcessEnv[]): number[] {
  const runs = environments.map((): number[] => []);
  for (let i = 0; i < 3; i++)
    environments.forEach((env, e) => {
      const t = performance.now();
      execFileSync(process.execPath, [join(repoRoot, 'bin/blocklistctl'), 'dump', '-a', '-D', path], {
        stdio: ['ignore', 'ignore', 'inherit'],
        maxBuffer: 1 << 30,
        env,
      });
      runs[e].push(performance.now() - t);
    });
  return runs.map((r) => r.sort((a, b) => a - b)[1] / 1000);
}

const [seconds, withExtraCaCerts] = dumpSeconds(startEnvironments());
const figure = {
  id: 'dump.seconds',
  name: `blocklistctl dump -a of ${ENTRIES.toLocaleString('en-US')} entries (wall, with Node's start-up)`,
  value: seconds,
  unit: 's',
  target: atMost(0.35),
};
console.log(
  `dump: blocklistctl dump -a of ${ENTRIES.toLocaleString('en-US')} entries, median of 3: ${seconds.toFixed(2)} s wall (target <= 0.35 s)` +
    recordStart(figure, withExtraCaCerts),
);
