// The engine when the wall clock steps (issue 13 §4): a block made while
// the clock was a day ahead lasted a day after the clock was set right.
// The engine in process, with a wall clock and a monotonic clock of the
// test's, a real database and the control fixture as its helper.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { loadConfig } from '../src/conf/load.js';
import { compileRules } from '../src/conf/match.js';
import { systemEnv } from '../src/conf/system.js';
import { Engine } from '../src/daemon/engine.js';
import { HelperRunner } from '../src/run/helper.js';
import { StateStore } from '../src/state/store.js';
import { LogCollector, repoRoot, stateKey, tcpNotification, tempDir, until } from './support.js';

const T = 1_800_000_000;
const DAY = 86_400;
const PORT = 2222;

/** An engine blocking at the first failure for 40 s, its clocks set by the test (seconds each). */
function setup(t: TestContext, seed?: (store: StateStore) => void) {
  const dir = tempDir('blocklistd-clock-');
  const env = systemEnv('blocklistd');
  writeFileSync(join(dir, 'blocklistd.conf'), `${PORT} stream * * * 1 40\n`);
  const store = StateStore.open(join(dir, 'state.db'));
  seed?.(store);
  process.env.HELPER_LOG = join(dir, 'helper.log');
  const helper = new HelperRunner({ program: join(repoRoot, 'test/fixtures/control'), log: () => {} });
  const clocks = { wall: T, monotonic: 0 };
  const log = new LogCollector();
  const engine = new Engine({
    store,
    helper,
    families: env.families,
    log: log.log,
    debug: () => 0,
    clock: () => clocks.wall,
    monotonic: () => clocks.monotonic * 1000,
    remRetry: 60,
  });
  engine.setRules(compileRules(loadConfig(join(dir, 'blocklistd.conf'), env).ruleSet), new Map());
  t.after(async () => {
    engine.stop();
    await helper.stop(1000);
    store.close();
  });
  /** Both clocks `seconds` on, the wall clock `step` more. */
  const pass = (seconds: number, step = 0): void => {
    clocks.wall += seconds + step;
    clocks.monotonic += seconds;
  };
  return { engine, store, pass, log, entries: () => [...store.entries()] };
}

test('a block made while the clock was a day ahead ends 40 s after it was made, once the clock is set right', async (t) => {
  const { engine, store, pass, log, entries } = setup(t);
  pass(0, DAY); // a day ahead
  engine.processBatch([tcpNotification(PORT, '192.0.2.9')]);
  await until(() => entries()[0]?.id !== '');
  assert.equal(entries()[0]!.last, T + DAY);
  pass(10, -DAY); // set right, 10 s later
  engine.expire();
  assert.equal(log.count('warning', 'the clock stepped back by 86400 s: the times of 1 entries moved with it'), 1);
  assert.equal(entries()[0]!.last, T, 'its time moved back with the clock');
  pass(29); // 39 s after the block
  engine.expire();
  assert.equal(store.size(), 1, 'not released before its 40 s');
  pass(2); // 41 s
  engine.expire();
  await until(() => store.size() === 0);
});

test('a block made before the clock stepped forward a day still lasts its 40 s', async (t) => {
  const { engine, store, pass, entries } = setup(t);
  engine.processBatch([tcpNotification(PORT, '192.0.2.10')]);
  await until(() => entries()[0]?.id !== '');
  pass(5, DAY);
  engine.expire();
  assert.equal(store.size(), 1, 'not released by the step');
  assert.equal(entries()[0]!.last, T + DAY);
  pass(36); // 41 s after the block
  engine.expire();
  await until(() => store.size() === 0);
});

test(
  'an entry whose last failure is in the future when the daemon starts (the clock was ahead while it ' + 'was down): now instead',
  async (t) => {
    const { engine, store, pass, entries } = setup(t, (s) =>
      s.put({ key: stateKey('192.0.2.11', { port: PORT, nfail: 1, duration: 40 }), count: 1, last: T + DAY, id: 'old' }),
    );
    engine.limitFutureTimes();
    engine.expire();
    assert.equal(entries()[0]!.last, T);
    pass(41);
    engine.expire();
    await until(() => store.size() === 0);
  },
);

test('without a monotonic clock the stored times are left alone', async (t) => {
  const dir = tempDir('blocklistd-clock-');
  const store = StateStore.open(join(dir, 'state.db'));
  t.after(() => store.close());
  store.put({ key: stateKey('192.0.2.12'), count: 1, last: T + DAY, id: '' });
  const helper = new HelperRunner({ program: join(repoRoot, 'test/fixtures/control'), log: () => {} });
  const engine = new Engine({
    store,
    helper,
    families: systemEnv('blocklistd').families,
    log: () => {},
    debug: () => 0,
    clock: () => T,
    remRetry: 60,
  });
  engine.expire();
  engine.stop();
  assert.equal([...store.entries()][0]!.last, T + DAY);
});
