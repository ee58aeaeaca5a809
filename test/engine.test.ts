// The engine in process (issue 16 §8): counting, blocking, expiry, AUTH_OK,
// retries, batches and restore, with a clock of the test's, a real database
// and the control fixture as the helper.  The assertions are on the
// database and on the helper calls the fixture recorded, not on log lines.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { loadConfig } from '../src/conf/load.js';
import { compileRules } from '../src/conf/match.js';
import { systemEnv } from '../src/conf/system.js';
import { Engine } from '../src/daemon/engine.js';
import { EngineBusy, ManualCommands } from '../src/daemon/manual.js';
import { HelperRunner } from '../src/run/helper.js';
import { StateStore } from '../src/state/store.js';
import { elapsed } from '../src/time.js';
import { WireType, type Entry } from '../src/types.js';
import { LogCollector, repoRoot, stateKey, tcpNotification, tempDir, until } from './support.js';

const T = 1_800_000_000;
const PORT = 2222;
/** Seconds between tries of a failed rem. */
const REM_RETRY = 60;

interface Setup {
  engine: Engine;
  manual: ManualCommands;
  store: StateStore;
  /** The clock `seconds` on. */
  pass: (seconds: number) => void;
  /** The helper calls so far, one line each as the control fixture records them. */
  calls: () => string[];
  /** How the control fixture answers from now on (ok, remfail, ...). */
  mode: (mode: string) => void;
  entries: () => Entry[];
  log: LogCollector;
}

/**
 * An engine with the rule `<PORT> stream * * * 6 40` (three failures block
 * for 40 s) unless `config` says otherwise; `seed` fills the database first.
 */
function setup(t: TestContext, options: { config?: string; seed?: (store: StateStore) => void; batch?: boolean } = {}): Setup {
  const dir = tempDir('blocklistd-engine-');
  const env = systemEnv('blocklistd');
  writeFileSync(join(dir, 'blocklistd.conf'), options.config ?? `${PORT} stream * * * 6 40\n`);
  const store = StateStore.open(join(dir, 'state.db'));
  options.seed?.(store);
  const helperLog = join(dir, 'helper.log');
  const modeFile = join(dir, 'mode');
  process.env.HELPER_LOG = helperLog;
  process.env.HELPER_MODE_FILE = modeFile;
  if (options.batch === true) process.env.HELPER_BATCH = '1';
  else delete process.env.HELPER_BATCH;
  const helper = new HelperRunner({ program: join(repoRoot, 'test/fixtures/control'), log: () => {} });
  let now = T;
  const log = new LogCollector();
  const engine = new Engine({ store, helper, families: env.families, log: log.log, debug: () => 0, clock: () => now, remRetry: REM_RETRY });
  engine.setRules(compileRules(loadConfig(join(dir, 'blocklistd.conf'), env).ruleSet), new Map());
  engine.setBatchMode(options.batch === true);
  const manual = new ManualCommands({ engine, store, helper, log: log.log });
  t.after(async () => {
    engine.stop();
    await helper.stop(1000);
    store.close();
    delete process.env.HELPER_BATCH;
    delete process.env.HELPER_MODE_FILE;
  });
  return {
    engine,
    manual,
    store,
    pass: (seconds) => (now += seconds),
    calls: () => (existsSync(helperLog) ? readFileSync(helperLog, 'utf8').split('\n').slice(0, -1) : []),
    mode: (mode) => writeFileSync(modeFile, mode),
    entries: () => [...store.entries()],
    log,
  };
}

const failure = (address: string, type: WireType = WireType.ADD) => tcpNotification(PORT, address, { type: type as typeof WireType.ADD });
const addCall = (address: string, id = "''") => `add blocklistd tcp ${address} 32 ${PORT} ${id}`;
const remCall = (address: string, id: string) => `rem blocklistd tcp ${address} 32 ${PORT} ${id}`;
const idOf = (address: string) => `id-${address}:${PORT}`;
/** The helper calls started and answered: nothing in flight. */
const idle = (engine: Engine): boolean => engine.inFlight.adds === 0 && engine.inFlight.rems === 0;

test('failures count to the limit; the one that reaches it blocks, and the id the helper gave is recorded', async (t) => {
  const { engine, pass, calls, entries } = setup(t);
  engine.processBatch([failure('192.0.2.1')]);
  pass(1);
  engine.processBatch([failure('192.0.2.1')]);
  assert.deepEqual(
    entries().map((e) => [e.count, e.last, e.id]),
    [[4, T + 1, '']],
  );
  assert.equal(engine.inFlight.adds, 0, 'no add below the limit');
  pass(1);
  engine.processBatch([failure('192.0.2.1')]);
  // committed at its limit before the add starts: the crash-safety contract
  assert.deepEqual(
    entries().map((e) => [e.count, e.id]),
    [[6, '']],
  );
  assert.equal(engine.inFlight.adds, 1);
  await until(() => idle(engine));
  assert.deepEqual(calls(), [addCall('192.0.2.1')]);
  assert.deepEqual(
    entries().map((e) => [e.count, e.last, e.id]),
    [[6, T + 2, idOf('192.0.2.1')]],
  );
  // a failure while blocked renews the time, without another add
  pass(5);
  engine.processBatch([failure('192.0.2.1')]);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(calls(), [addCall('192.0.2.1')]);
  assert.deepEqual(
    entries().map((e) => [e.count, e.last, e.id]),
    [[8, T + 7, idOf('192.0.2.1')]],
  );
});

test('BADUSER counts one, ADD two, ABUSE blocks at once', async (t) => {
  const { engine, calls, entries } = setup(t);
  engine.processBatch([failure('192.0.2.2', WireType.BADUSER), failure('192.0.2.3', WireType.ADD), failure('192.0.2.4', WireType.ABUSE)]);
  await until(() => idle(engine));
  assert.deepEqual(
    entries()
      .map((e) => [e.key.address, e.count, e.id])
      .sort(),
    [
      ['192.0.2.2', 1, ''],
      ['192.0.2.3', 2, ''],
      ['192.0.2.4', 6, idOf('192.0.2.4')],
    ],
  );
  assert.deepEqual(calls(), [addCall('192.0.2.4')]);
});

test('a block expires after its duration: rem with its id, then the entry goes', async (t) => {
  const { engine, store, pass, calls, entries } = setup(t);
  engine.processBatch([failure('192.0.2.5', WireType.ABUSE)]);
  await until(() => idle(engine));
  pass(40);
  engine.expire();
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(store.size(), 1, 'last + duration < now: not yet at 40 s');
  assert.deepEqual(calls(), [addCall('192.0.2.5')]);
  pass(1);
  engine.expire();
  await until(() => store.size() === 0);
  assert.deepEqual(calls(), [addCall('192.0.2.5'), remCall('192.0.2.5', idOf('192.0.2.5'))]);
  assert.deepEqual(entries(), []);
});

test('AUTH_OK resets the count; the entry without a block goes at its expiry without a helper call', async (t) => {
  const { engine, store, pass, calls, entries } = setup(t);
  engine.processBatch([failure('192.0.2.6'), failure('192.0.2.6')]);
  assert.equal(entries()[0]!.count, 4);
  engine.processBatch([failure('192.0.2.6', WireType.DELETE)]);
  assert.deepEqual(
    entries().map((e) => [e.count, e.last, e.id]),
    [[0, 0, '']],
  );
  // counting starts again from nothing: two more failures do not block
  pass(1);
  engine.processBatch([failure('192.0.2.6'), failure('192.0.2.6')]);
  assert.equal(entries()[0]!.count, 4);
  assert.equal(engine.inFlight.adds, 0);
  pass(41);
  engine.expire();
  assert.equal(store.size(), 0);
  assert.deepEqual(calls(), []);
});

test('AUTH_OK lifts a forever block at once (G15): rem, then the entry goes', async (t) => {
  const { engine, store, calls } = setup(t, { config: `${PORT} stream * * * 6 *\n` });
  engine.processBatch([failure('192.0.2.7', WireType.ABUSE)]);
  await until(() => idle(engine));
  engine.processBatch([failure('192.0.2.7', WireType.DELETE)]);
  await until(() => store.size() === 0);
  assert.deepEqual(calls(), [addCall('192.0.2.7'), remCall('192.0.2.7', idOf('192.0.2.7'))]);
});

test('a failed rem keeps the entry and is tried again after --rem-retry seconds', async (t) => {
  const { engine, store, pass, calls, mode, entries } = setup(t);
  engine.processBatch([failure('192.0.2.8', WireType.ABUSE)]);
  await until(() => idle(engine));
  mode('remfail');
  pass(41);
  engine.expire();
  await until(() => engine.inFlight.remRetries === 1);
  assert.deepEqual(
    entries().map((e) => e.id),
    [idOf('192.0.2.8')],
    'kept with its id: the rule may still be in the filter',
  );
  mode('ok');
  pass(REM_RETRY - 1);
  engine.expire();
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(calls().filter((c) => c.startsWith('rem ')).length, 1, 'not before its time');
  pass(1);
  engine.expire();
  await until(() => store.size() === 0);
  assert.deepEqual(calls(), [addCall('192.0.2.8'), remCall('192.0.2.8', idOf('192.0.2.8')), remCall('192.0.2.8', idOf('192.0.2.8'))]);
  assert.equal(engine.inFlight.remRetries, 0);
});

test('a failed add puts the count back as it was before the failure that reached the limit', async (t) => {
  const { engine, calls, mode, entries } = setup(t);
  engine.processBatch([failure('192.0.2.9'), failure('192.0.2.9')]);
  mode('silent'); // no line: the add failed
  engine.processBatch([failure('192.0.2.9')]);
  await until(() => idle(engine));
  assert.deepEqual(calls(), [addCall('192.0.2.9')]);
  assert.deepEqual(
    entries().map((e) => [e.count, e.id]),
    [[4, '']],
  );
});

test('batch mode: the adds of one batch of notifications go to the helper as one call', async (t) => {
  const { engine, calls, entries } = setup(t, { batch: true });
  const addresses = ['192.0.2.10', '192.0.2.11', '192.0.2.12', '192.0.2.13', '192.0.2.14'];
  engine.processBatch(addresses.map((a) => failure(a, WireType.ABUSE)));
  await until(() => idle(engine));
  assert.deepEqual(calls(), ['batch 5', ...addresses.map((a) => addCall(a))]);
  assert.deepEqual(
    entries()
      .map((e) => e.id)
      .sort(),
    addresses.map(idOf).sort(),
  );
});

test('batch mode: the releases of one expiry pass go as one call', async (t) => {
  const { engine, store, pass, calls } = setup(t, { batch: true });
  const addresses = ['192.0.2.15', '192.0.2.16', '192.0.2.17'];
  engine.processBatch(addresses.map((a) => failure(a, WireType.ABUSE)));
  await until(() => idle(engine));
  pass(41);
  engine.expire();
  await until(() => store.size() === 0);
  assert.deepEqual(calls().slice(4), ['batch 3', ...addresses.map((a) => remCall(a, idOf(a)))]);
});

test('restore re-adds every block with its old id, not those counting nor those being released', async (t) => {
  const { engine, calls, entries } = setup(t, {
    seed: (store) => {
      store.put({ key: stateKey('192.0.2.20', { port: PORT, nfail: 6, duration: 40 }), count: 6, last: T, id: 'old20' });
      store.put({ key: stateKey('192.0.2.21', { port: PORT, nfail: 6, duration: 40 }), count: 6, last: T, id: '' });
      store.put({ key: stateKey('192.0.2.22', { port: PORT, nfail: 6, duration: 40 }), count: 2, last: T, id: '' });
      // a forever block lifted by AUTH_OK whose rem had not worked yet
      store.put({ key: stateKey('192.0.2.23', { port: PORT, nfail: 6, duration: -1 }), count: 0, last: 0, id: 'old23' });
    },
  });
  assert.equal(engine.restore(), 2);
  await until(() => idle(engine));
  assert.deepEqual(calls().sort(), [addCall('192.0.2.20', 'old20'), addCall('192.0.2.21')]);
  assert.deepEqual(
    entries()
      .map((e) => [e.key.address, e.count, e.id])
      .sort(),
    [
      ['192.0.2.20', 6, idOf('192.0.2.20')],
      ['192.0.2.21', 6, idOf('192.0.2.21')],
      ['192.0.2.22', 2, ''],
      ['192.0.2.23', 0, 'old23'],
    ],
  );
});

test('-r in one batch: each new id written alone; an entry counted meanwhile keeps its count, one reset by AUTH_OK goes', async (t) => {
  const forever = { port: PORT, nfail: 6, duration: -1 };
  const { engine, pass, calls, entries } = setup(t, {
    config: `${PORT} stream * * * 6 *\n`,
    seed: (store) => {
      for (const a of ['192.0.2.40', '192.0.2.41', '192.0.2.42'])
        store.put({ key: stateKey(a, forever), count: 6, last: T, id: `old-${a}` });
    },
  });
  // the helper flushes in its batch, and takes a second: the notifications below come while it runs
  process.env.HELPER_BATCH = 'flush';
  process.env.HELPER_BATCH_DELAY = '1';
  t.after(() => delete process.env.HELPER_BATCH_DELAY);
  engine.setBatchMode(true, true);
  const { blocks, applied } = await engine.refresh(['blocklistd']);
  assert.equal(blocks, 3);
  pass(5);
  engine.processBatch([failure('192.0.2.41'), failure('192.0.2.42', WireType.DELETE)]);
  await applied;
  await until(() => idle(engine) && entries().length === 2);
  assert.deepEqual(calls().slice(0, 5), [
    'batch 4',
    'flush blocklistd',
    addCall('192.0.2.40', 'old-192.0.2.40'),
    addCall('192.0.2.41', 'old-192.0.2.41'),
    addCall('192.0.2.42', 'old-192.0.2.42'),
  ]);
  // the reset block: added back by the batch, then released (G15)
  assert.deepEqual(calls().slice(5), [remCall('192.0.2.42', idOf('192.0.2.42'))]);
  assert.deepEqual(
    entries().map((e) => [e.key.address, e.count, e.last, e.id]),
    [
      ['192.0.2.40', 6, T, idOf('192.0.2.40')],
      ['192.0.2.41', 8, T + 5, idOf('192.0.2.41')],
    ],
  );
  // the entry read (and cached by the store) while the batch ran keeps the restored id through its next count
  engine.processBatch([failure('192.0.2.41')]);
  assert.deepEqual(
    entries()
      .filter((e) => e.key.address === '192.0.2.41')
      .map((e) => [e.count, e.id]),
    [[10, idOf('192.0.2.41')]],
  );
});

test('-r in one batch answered OK for each (nftables): the id written by one statement, the changed entries as before', async (t) => {
  const forever = { port: PORT, nfail: 6, duration: -1 };
  const { engine, store, pass, calls, entries, mode, log } = setup(t, {
    config: `${PORT} stream * * * 6 *\n`,
    seed: (store) => {
      for (const a of ['192.0.2.40', '192.0.2.41', '192.0.2.42', '192.0.2.43'])
        store.put({ key: stateKey(a, forever), count: 6, last: T, id: `old-${a}` });
      // a block of every port is no line of a batch: added alone after it
      store.put({ key: stateKey('192.0.2.44', { port: -1, nfail: 6, duration: -1 }), count: 6, last: T, id: 'old-any' });
      // the last rowid: deleted while the batch runs, the next entry gets it
      store.put({ key: stateKey('192.0.2.45', forever), count: 6, last: T, id: 'old-192.0.2.45' });
    },
  });
  mode('plain');
  process.env.HELPER_BATCH = 'flush';
  process.env.HELPER_BATCH_DELAY = '1';
  t.after(() => delete process.env.HELPER_BATCH_DELAY);
  engine.setBatchMode(true, true);
  const { blocks, applied } = await engine.refresh(['blocklistd']);
  assert.equal(blocks, 6);
  assert.equal(engine.inFlight.adds, 6, 'every add in flight');
  assert.ok(engine.busy(stateKey('192.0.2.40', forever)), 'a restored entry is busy');
  pass(5);
  // while the batch runs: one deleted (as by hand) and its rowid reused by a new entry, which gets no id; one counted,
  // one reset by AUTH_OK, one deleted and counted again
  store.delete(stateKey('192.0.2.45', forever));
  engine.processBatch([failure('192.0.2.46')]);
  assert.ok(!engine.busy(stateKey('192.0.2.46', forever)), 'the entry with a reused rowid is not restored');
  engine.processBatch([failure('192.0.2.41'), failure('192.0.2.42', WireType.DELETE)]);
  store.delete(stateKey('192.0.2.43', forever));
  engine.processBatch([failure('192.0.2.43')]);
  await applied;
  await until(() => idle(engine) && entries().length === 5);
  assert.deepEqual(calls().slice(0, 7), [
    'batch 6',
    'flush blocklistd',
    addCall('192.0.2.40', 'old-192.0.2.40'),
    addCall('192.0.2.41', 'old-192.0.2.41'),
    addCall('192.0.2.42', 'old-192.0.2.42'),
    addCall('192.0.2.43', 'old-192.0.2.43'),
    addCall('192.0.2.45', 'old-192.0.2.45'),
  ]);
  // the reset block: added back by the batch, then released (G15), as the one gone meanwhile (it came back reset), in
  // one batch; the one of every port alone
  assert.deepEqual(
    calls().slice(7).sort(),
    [`add blocklistd tcp 192.0.2.44 32 '' old-any`, 'batch 2', remCall('192.0.2.42', 'OK'), remCall('192.0.2.45', 'OK')].sort(),
  );
  assert.deepEqual(
    entries().map((e) => [e.key.address, e.count, e.last, e.id]),
    [
      ['192.0.2.40', 6, T, 'OK'],
      ['192.0.2.41', 8, T + 5, 'OK'],
      // gone while its add ran: back with the rule just installed, so that it is released like any other
      ['192.0.2.43', 2, T + 5, 'OK'],
      ['192.0.2.44', 6, T, 'OK'],
      ['192.0.2.46', 2, T + 5, ''],
    ],
  );
  assert.equal(log.lines.filter((l) => l.level === 'err').length, 0);
  // the entry cached while the batch ran keeps the restored id through its next count
  engine.processBatch([failure('192.0.2.41')]);
  assert.deepEqual(
    entries()
      .filter((e) => e.key.address === '192.0.2.41')
      .map((e) => [e.count, e.id]),
    [[10, 'OK']],
  );
});

test('after -r in one batch a release by hand says how long the block lasted from the last failure the restore read', async (t) => {
  const forever = { port: PORT, nfail: 6, duration: -1 };
  const { engine, manual, store, pass, mode, log } = setup(t, {
    config: `${PORT} stream * * * 6 *\n`,
    seed: (store) => store.put({ key: stateKey('192.0.2.60', forever), count: 6, last: T, id: 'old' }),
  });
  mode('plain');
  process.env.HELPER_BATCH = 'flush';
  engine.setBatchMode(true, true);
  await (
    await engine.refresh(['blocklistd'])
  ).applied;
  pass(5);
  // renewed: its last failure moves, its block's start does not
  engine.processBatch([failure('192.0.2.60')]);
  pass(5);
  const e = store.get(stateKey('192.0.2.60', forever))!;
  assert.equal(e.last, T + 5);
  const done = await manual.unblock([e]);
  assert.equal(done.released.length, 1);
  assert.ok(
    log.lines.some((l) => l.message === `released 192.0.2.60/32:${PORT} by hand (blocked ${elapsed(10)})`),
    JSON.stringify(log.lines),
  );
});

test('-r in one batch the helper refuses: each block keeps its old id and its failure is logged, as before', async (t) => {
  const forever = { port: PORT, nfail: 6, duration: -1 };
  const { engine, calls, entries, mode, log } = setup(t, {
    config: `${PORT} stream * * * 6 *\n`,
    seed: (store) => {
      for (const a of ['192.0.2.50', '192.0.2.51']) store.put({ key: stateKey(a, forever), count: 6, last: T, id: `old-${a}` });
    },
  });
  mode('empty');
  process.env.HELPER_BATCH = 'flush';
  engine.setBatchMode(true, true);
  const { blocks, applied } = await engine.refresh(['blocklistd']);
  assert.equal(blocks, 2);
  await applied;
  assert.ok(idle(engine));
  assert.deepEqual(calls(), [
    'batch 3',
    'flush blocklistd',
    addCall('192.0.2.50', 'old-192.0.2.50'),
    addCall('192.0.2.51', 'old-192.0.2.51'),
  ]);
  assert.deepEqual(
    entries().map((e) => [e.key.address, e.id]),
    [
      ['192.0.2.50', 'old-192.0.2.50'],
      ['192.0.2.51', 'old-192.0.2.51'],
    ],
  );
  assert.deepEqual(
    log.lines.filter((l) => l.level === 'err').map((l) => l.message),
    ['192.0.2.50', '192.0.2.51'].map((a) => `add blocklistd tcp ${a}/32:${PORT}: the helper gave no rule id`),
  );
});

test('a manual block adds at once and records the id; a second one only renews the time', async (t) => {
  const { manual, pass, calls, entries } = setup(t);
  const key = stateKey('192.0.2.30', { port: PORT, nfail: 6, duration: 40 });
  const first = await manual.block(key);
  assert.equal(first.result?.outcome, 'ok');
  assert.deepEqual([first.entry.count, first.entry.last, first.entry.id], [6, T, idOf('192.0.2.30')]);
  pass(5);
  const second = await manual.block(key);
  assert.equal(second.result, undefined, 'no helper call');
  assert.deepEqual(calls(), [addCall('192.0.2.30')]);
  assert.deepEqual(
    entries().map((e) => [e.last, e.id]),
    [[T + 5, idOf('192.0.2.30')]],
  );
});

test('a manual block of an entry whose add is running is refused as busy; one after stop as stopping', async (t) => {
  const { engine, manual, mode } = setup(t);
  mode('slow');
  engine.processBatch([failure('192.0.2.31', WireType.ABUSE)]);
  const key = stateKey('192.0.2.31', { port: PORT, nfail: 6, duration: 40 });
  await assert.rejects(manual.block(key), (e) => e instanceof EngineBusy && e.code === 'busy');
  engine.stop();
  await assert.rejects(manual.block(key), (e) => e instanceof EngineBusy && e.code === 'stopping');
});

test('a manual unblock: rem for a block, the entry deleted; an entry without a block deleted without a helper call', async (t) => {
  const { engine, manual, calls, entries } = setup(t);
  engine.processBatch([failure('192.0.2.32', WireType.ABUSE), failure('192.0.2.33')]);
  await until(() => idle(engine));
  const result = await manual.unblock(entries());
  assert.deepEqual(
    result.released.map((e) => e.key.address),
    ['192.0.2.32'],
  );
  assert.deepEqual(
    result.deleted.map((e) => e.key.address),
    ['192.0.2.33'],
  );
  assert.deepEqual(result.failed, []);
  assert.deepEqual(calls(), [addCall('192.0.2.32'), remCall('192.0.2.32', idOf('192.0.2.32'))]);
  assert.deepEqual(entries(), []);
});

test('a manual unblock whose rem fails keeps the entry and says why', async (t) => {
  const { engine, manual, mode, entries } = setup(t);
  engine.processBatch([failure('192.0.2.34', WireType.ABUSE)]);
  await until(() => idle(engine));
  mode('remfail');
  const result = await manual.unblock(entries());
  assert.deepEqual(
    result.failed.map((f) => [f.entry.key.address, f.reason]),
    [['192.0.2.34', 'rem failed (exit status 1)']],
  );
  assert.deepEqual(
    entries().map((e) => e.id),
    [idOf('192.0.2.34')],
  );
});

test('a manual flush: flush of the name, then its entries deleted', async (t) => {
  const { engine, manual, calls, store } = setup(t);
  engine.processBatch([failure('192.0.2.35', WireType.ABUSE), failure('192.0.2.36')]);
  await until(() => idle(engine));
  assert.deepEqual(await manual.flush(['blocklistd']), [{ name: 'blocklistd', ok: true, deleted: 2 }]);
  assert.deepEqual(calls(), [addCall('192.0.2.35'), 'flush blocklistd']);
  assert.equal(store.size(), 0);
});
