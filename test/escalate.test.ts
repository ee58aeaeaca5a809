// Escalation of repeat offenders (issue 18, doc/escalation.md): the pure
// arithmetic, the [escalate] lines with file:line errors, and the engine in
// process with a clock of the test's, a real database and the control
// fixture as the helper.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { loadConfig } from '../src/conf/load.js';
import { configCommand, testCommand } from '../src/ctl/conf.js';
import { compileRules } from '../src/conf/match.js';
import { systemEnv } from '../src/conf/system.js';
import { Engine } from '../src/daemon/engine.js';
import { ManualCommands } from '../src/daemon/manual.js';
import {
  blockLength,
  forgivenCount,
  formatPolicy,
  historyAddresses,
  parsePolicy,
  PERMANENT,
  PolicyError,
  type EscalationPolicy,
} from '../src/escalate/policy.js';
import { HelperRunner } from '../src/run/helper.js';
import { allowedNetworks, parseAggregate, textRange } from '../src/escalate/aggregate.js';
import { Aggregator } from '../src/escalate/aggregator.js';
import { parseIP } from '../src/conf/ip.js';
import { entryJson } from '../src/state/entry.js';
import { StateStore } from '../src/state/store.js';
import { WireType } from '../src/types.js';
import { DaemonProcess, LogCollector, ctl, repoRoot, tcpNotification, tempDir, until } from './support.js';

const policy = (words: string): EscalationPolicy => parsePolicy(['ssh', ...words.split(' ').filter((w) => w !== '')]);
const noJitter = (): number => 0;

describe('the length of the nth block', () => {
  test('base × factor^(n-1), capped by max; base defaults to the rule duration', () => {
    const p = policy('factor=2 max=1d');
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((n) => blockLength(p, n, 600, noJitter)),
      [600, 1200, 2400, 4800, 9600, 19200, 38400, 76800, 86400, 86400],
    );
    assert.deepEqual(
      [1, 2, 3].map((n) => blockLength(policy('base=1h factor=1.5'), n, 600, noJitter)),
      [3600, 5400, 8100],
    );
  });

  test('an explicit list, its last length repeating', () => {
    const p = policy('list=10m,1h,1d');
    assert.deepEqual(
      [1, 2, 3, 4].map((n) => blockLength(p, n, 60, noJitter)),
      [600, 3600, 86400, 86400],
    );
  });

  test('permanent from the nth block on', () => {
    const p = policy('factor=3 permanent=3');
    assert.deepEqual(
      [1, 2, 3, 4].map((n) => blockLength(p, n, 100, noJitter)),
      [100, 300, PERMANENT, PERMANENT],
    );
  });

  test('jitter adds 0 to jitter seconds, from the random source given', () => {
    const p = policy('jitter=60');
    assert.equal(
      blockLength(p, 1, 100, () => 0),
      100,
    );
    assert.equal(
      blockLength(p, 1, 100, () => 0.999999),
      160,
    );
    assert.equal(
      blockLength(p, 1, 100, () => 0.5),
      130,
    );
  });

  test('never shorter than the rule duration; a huge product stays finite', () => {
    assert.equal(blockLength(policy('list=1m'), 1, 600, noJitter), 600);
    assert.ok(Number.isSafeInteger(blockLength(policy('factor=1000'), 200, 600, noJitter)));
  });

  test("the histories that may hold an address: its own and its networks'", () => {
    assert.deepEqual(historyAddresses(parseIP('192.0.2.7')!).slice(0, 4), ['192.0.2.7', '192.0.2.6', '192.0.2.4', '192.0.2.0']);
    assert.equal(new Set(historyAddresses(parseIP('192.0.2.7')!)).size, historyAddresses(parseIP('192.0.2.7')!).length, 'each once');
    assert.deepEqual(historyAddresses(parseIP('192.0.2.0')!, 24).slice(0, 2), ['192.0.2.0', '192.0.0.0']);
    assert.ok(historyAddresses(parseIP('2001:db8::1')!).includes('2001:db8::'));
  });

  test('forgiveness: one block a forget period after the last ended, never below 0, never while permanent', () => {
    const h = { count: 3, until: 1000 };
    assert.equal(forgivenCount(h, 1000, 100), 3);
    assert.equal(forgivenCount(h, 1099, 100), 3);
    assert.equal(forgivenCount(h, 1100, 100), 2);
    assert.equal(forgivenCount(h, 1250, 100), 1);
    assert.equal(forgivenCount(h, 9999, 100), 0);
    assert.equal(forgivenCount(h, 9999, undefined), 3, 'no forget: never forgiven');
    assert.equal(forgivenCount({ count: 5, until: PERMANENT }, 9999, 100), 5);
  });
});

describe('[escalate] lines', () => {
  test('keys and their values; a policy prints as a line that reads back the same', () => {
    const p = policy('base=10m factor=1.5 max=1d12h jitter=30s permanent=6 forget=7d keep=90d nfail=2');
    assert.deepEqual(p, {
      name: 'ssh',
      base: 600,
      factor: 1.5,
      max: 129600,
      jitter: 30,
      permanent: 6,
      forget: 604800,
      keep: 7776000,
      nfail: 2,
    });
    assert.equal(formatPolicy(p), 'ssh base=10m factor=1.5 max=1d12h jitter=30s permanent=6 forget=7d keep=90d nfail=2');
    assert.deepEqual(parsePolicy(formatPolicy(p).split(' ')), p);
    const list = policy('list=10m,1h30m,1d');
    assert.deepEqual(list.list, [600, 5400, 86400]);
    assert.deepEqual(parsePolicy(formatPolicy(list).split(' ')), list);
  });

  test('bad words are errors that name them', () => {
    const cases: [string, RegExp][] = [
      ['speed=2', /unknown key \[speed\]/],
      ['factor', /factor: a value is missing/],
      ['factor=0.5', /factor: a number from 1 to 1000/],
      ['factor=x', /factor: a number/],
      ['max=soon', /max: bad duration \[soon\]/],
      ['base=0', /base: must be more than 0/],
      ['permanent=0', /permanent: the number of the first permanent block/],
      ['list=1h factor=2', /list replaces base and factor/],
      ['base=1d max=1h', /max \(3600\) is less than base \(86400\)/],
      ['forget=1d forget=2d', /forget: given twice/],
      ['nfail=0', /nfail: the failure points that block a known offender/],
    ];
    for (const [words, message] of cases)
      assert.throws(
        () => policy(words),
        (e: unknown) => e instanceof PolicyError && message.test(e.message),
        words,
      );
    assert.throws(() => parsePolicy(['factor=2']), /starts with the rule name/);
  });

  test('in blocklistd.conf: errors with file:line, a later line for a name replaces an earlier one, [local] and [remote] as before', () => {
    const dir = tempDir('blocklistd-escalate-conf-');
    const conf = join(dir, 'blocklistd.conf');
    writeFileSync(
      conf,
      [
        '[local]',
        'ssh stream * * * 3 10m',
        '[escalate]',
        'blocklistd factor=2 max=1d',
        'blocklistd factor=3 # a second line for the name',
        'blocklistd speed=2',
        'other factor=2',
        '[remote]',
        '192.0.2.0/24 * * * = * *',
        '',
      ].join('\n'),
    );
    const loaded = loadConfig(conf, systemEnv('blocklistd'));
    assert.deepEqual(
      loaded.diagnostics.map((d) => `${d.source.line} ${d.severity} ${d.message}`),
      [
        `5 warning [escalate] blocklistd replaces the line at ${conf}:4`,
        '6 error [escalate] unknown key [speed]: one of base, factor, max, list, jitter, permanent, forget, keep, nfail',
        '7 warning [escalate] other: no rule has this name',
      ],
    );
    assert.equal(loaded.ruleSet.local.length, 1);
    assert.equal(loaded.ruleSet.remote.length, 1, 'a section after [escalate] is read as before');
    assert.deepEqual([...loaded.escalation.keys()], ['blocklistd', 'other']);
    assert.equal(loaded.escalation.get('blocklistd')?.factor, 3);
  });

  test('blocklistctl test: the next block of an address without history (no database yet) is the 1st; config prints the sections', () => {
    const dir = tempDir('blocklistd-escalate-conf-');
    const conf = join(dir, 'blocklistd.conf');
    writeFileSync(conf, `${PORT} stream * * * 3 10m\n[escalate]\nblocklistd base=1h permanent=1 nfail=1\n[aggregate]\nblocklistd\n`);
    let out = '';
    const io = { out: (text: string) => void (out += text), err: () => {} };
    assert.equal(
      testCommand(
        '192.0.2.7',
        String(PORT),
        { config: conf, ruleName: 'blocklistd', uid: '0', type: 'stream', db: join(dir, 'none.db') },
        io,
      ),
      0,
    );
    assert.match(out, /\nnext block {3}the 1st: permanent\n$/);
    out = '';
    assert.equal(configCommand({ config: conf, ruleName: 'blocklistd' }, io), 0);
    assert.match(out, /\n\[escalate\]\nblocklistd base=1h factor=2 permanent=1 nfail=1\n\[aggregate\]\nblocklistd count=3 v4=24 v6=64\n$/);
  });

  test('a file without [escalate] has no policies', () => {
    const dir = tempDir('blocklistd-escalate-conf-');
    writeFileSync(join(dir, 'blocklistd.conf'), 'ssh stream * * * 3 10m\n');
    assert.equal(loadConfig(join(dir, 'blocklistd.conf'), systemEnv('blocklistd')).escalation.size, 0);
  });
});

// --- the engine ---------------------------------------------------------------

const T = 1_800_000_000;
const PORT = 2222;

/**
 * An engine with `<PORT> stream * * * 6 100` (three failures block for 100 s), the [escalate] lines given and `more`
 * configuration after them.
 */
function setup(t: TestContext, escalate: string, random: () => number = noJitter, more = '') {
  const dir = tempDir('blocklistd-escalate-');
  const env = systemEnv('blocklistd');
  writeFileSync(join(dir, 'blocklistd.conf'), `${PORT} stream * * * 6 100\n[escalate]\n${escalate}\n${more}`);
  const db = join(dir, 'state.db');
  let store = StateStore.open(db);
  const helperLog = join(dir, 'helper.log');
  process.env.HELPER_LOG = helperLog;
  delete process.env.HELPER_BATCH;
  const helper = new HelperRunner({ program: join(repoRoot, 'test/fixtures/control'), log: () => {} });
  let now = T;
  const log = new LogCollector();
  const loaded = loadConfig(join(dir, 'blocklistd.conf'), env);
  assert.deepEqual(
    loaded.diagnostics.filter((d) => d.severity === 'error'),
    [],
  );
  const make = (): Engine => {
    const engine = new Engine({
      store,
      helper,
      families: env.families,
      log: log.log,
      debug: () => 0,
      clock: () => now,
      remRetry: 60,
      random,
    });
    engine.setRules(compileRules(loaded.ruleSet), new Map());
    engine.setEscalation(loaded.escalation);
    const aggregator = new Aggregator(engine, store, log.log);
    aggregator.setPolicies(loaded.aggregation, allowedNetworks(loaded.ruleSet));
    engine.blockHook = (key) => void (aggregating = aggregator.blocked(key));
    return engine;
  };
  /** The last aggregation started: the tests wait for it. */
  let aggregating: Promise<void> = Promise.resolve();
  let engine = make();
  t.after(async () => {
    engine.stop();
    await helper.stop(1000);
    store.close();
  });
  const s = {
    get engine() {
      return engine;
    },
    get store() {
      return store;
    },
    log,
    pass: (seconds: number) => (now += seconds),
    now: () => now,
    aggregated: () => aggregating,
    dir,
    calls: () => (existsSync(helperLog) ? readFileSync(helperLog, 'utf8').split('\n').slice(0, -1) : []),
    /** Three failures of `address`: a block; resolves when its add is done. */
    offend: async (address: string) => {
      for (let i = 0; i < 3; i++) engine.processBatch([tcpNotification(PORT, address, { type: WireType.ADD })]);
      await until(() => engine.inFlight.adds === 0);
    },
    /** The clock past the entry's end, and expiry: resolves when released. */
    expire: async () => {
      engine.expire();
      await until(() => engine.inFlight.rems === 0 && [...store.entries()].length === 0);
    },
    /** A daemon restart: a new engine on the database reopened. */
    restart: () => {
      engine.stop();
      store.close();
      store = StateStore.open(db);
      engine = make();
    },
  };
  return s;
}

describe('escalation in the engine', () => {
  test('each block of an address lasts factor times the one before, up to max; the history counts them', async (t) => {
    const s = setup(t, 'blocklistd factor=2 max=350');
    const lengths: number[] = [];
    for (let n = 1; n <= 4; n++) {
      await s.offend('192.0.2.1');
      const [e] = [...s.store.entries()];
      assert.equal(e.block, n);
      lengths.push(e.key.duration + (e.hold ?? 0));
      assert.deepEqual(entryJson(e, s.now()).block, n, 'dump --json shows the block number');
      assert.equal(s.store.history('blocklistd', '192.0.2.1')?.count, n);
      // not due the second before its own end
      s.pass(lengths[n - 1]);
      s.engine.expire();
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal([...s.store.entries()].length, 1, `block ${n} still there at its end`);
      s.pass(1);
      await s.expire();
    }
    assert.deepEqual(lengths, [100, 200, 350, 350]);
    assert.ok(s.log.lines.some((l) => l.message === 'blocked 192.0.2.1/32:2222 for 200 seconds (block 2)'));
    assert.ok(s.log.lines.some((l) => l.message.startsWith('released 192.0.2.1/32:2222 after 350 seconds')));
    // another address starts at the first
    await s.offend('192.0.2.2');
    assert.equal([...s.store.entries()][0].block, 1);
  });

  test('forgiveness decays the count one block per forget period after the last block ended', async (t) => {
    const s = setup(t, 'blocklistd factor=2 forget=1000');
    await s.offend('192.0.2.1');
    s.pass(101);
    await s.expire();
    await s.offend('192.0.2.1');
    assert.equal([...s.store.entries()][0].block, 2);
    s.pass(201);
    await s.expire();
    // two periods and a bit after the end of the 2nd block: forgiven down to 0, the next block is the 1st again
    s.pass(2000);
    await s.offend('192.0.2.1');
    assert.equal([...s.store.entries()][0].block, 1);
    s.pass(101);
    await s.expire();
    // a second short of a period after its end: not forgiven
    s.pass(998);
    await s.offend('192.0.2.1');
    assert.equal([...s.store.entries()][0].block, 2, 'not yet a whole period');
  });

  test('permanent from the nth block: no expiry, and the history is kept', async (t) => {
    const s = setup(t, 'blocklistd list=100,300 permanent=3 forget=10');
    await s.offend('192.0.2.1');
    s.pass(101);
    await s.expire();
    await s.offend('192.0.2.1');
    s.pass(301);
    await s.expire();
    await s.offend('192.0.2.1');
    const [e] = [...s.store.entries()];
    assert.equal(e.block, 3);
    assert.equal(e.hold, PERMANENT);
    assert.equal(entryJson(e, s.now()).expires, null);
    s.pass(10 * 365 * 86400);
    s.engine.expire();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal([...s.store.entries()].length, 1, 'still blocked ten years on');
    assert.equal(s.store.nextExpiry(), undefined);
    assert.equal(s.store.history('blocklistd', '192.0.2.1')?.until, PERMANENT);
  });

  test('the history survives a restart, a flush and -f (the entries go, not the history)', async (t) => {
    const s = setup(t, 'blocklistd factor=2');
    await s.offend('192.0.2.1');
    s.restart();
    s.store.truncate(); // -f
    await s.offend('192.0.2.1');
    assert.equal([...s.store.entries()][0].block, 2);
    const manual = new ManualCommands({
      engine: s.engine,
      store: s.store,
      helper: new HelperRunner({ program: join(repoRoot, 'test/fixtures/control'), log: () => {} }),
      log: () => {},
    });
    await manual.flush(['blocklistd']);
    assert.equal([...s.store.entries()].length, 0);
    await s.offend('192.0.2.1');
    assert.equal([...s.store.entries()][0].block, 3);
  });

  test('jitter comes from the random source; histories forgiven to nothing are purged', async (t) => {
    const s = setup(t, 'blocklistd factor=1 jitter=50 forget=100', () => 0.5);
    await s.offend('192.0.2.1');
    const [e] = [...s.store.entries()];
    assert.equal(e.hold, 25);
    s.pass(126);
    await s.expire();
    assert.equal(s.store.histories().length, 1);
    s.pass(100);
    s.engine.expire();
    assert.equal(s.store.histories().length, 1, 'at most hourly: not yet');
    s.restart(); // a start (or a reload) purges
    assert.equal(s.store.histories().length, 0);
  });

  test("a known offender meets the lower nfail of the policy; forgiven, the rule's again", async (t) => {
    const s = setup(t, 'blocklistd factor=1 nfail=2 forget=1000');
    const fail = () => s.engine.processBatch([tcpNotification(PORT, '192.0.2.1', { type: WireType.ADD })]);
    await s.offend('192.0.2.1'); // three failures (6 points) the first time
    s.pass(101);
    await s.expire();
    fail(); // one (2 points) from now on
    await until(() => s.engine.inFlight.adds === 0);
    const [e] = [...s.store.entries()];
    assert.deepEqual([e.count, e.id !== '', e.block], [6, true, 2]);
    s.pass(101);
    await s.expire();
    // forgiven (two periods after the 2nd block): the rule's nfail again
    s.pass(2000);
    fail();
    fail();
    await until(() => s.engine.inFlight.adds === 0);
    assert.deepEqual(
      [...s.store.entries()].map((x) => [x.count, x.id]),
      [[4, '']],
    );
  });

  test('a reload applies new policies to the blocks that begin after it; a running block keeps its length', async (t) => {
    const s = setup(t, 'blocklistd factor=2');
    await s.offend('192.0.2.1');
    s.pass(101);
    await s.expire();
    await s.offend('192.0.2.1');
    assert.equal([...s.store.entries()][0].hold, 100, 'the 2nd block: 200 s');
    s.engine.setEscalation(new Map([['blocklistd', policy('factor=5')]]));
    assert.equal([...s.store.entries()][0].hold, 100);
    s.pass(201);
    await s.expire();
    await s.offend('192.0.2.1');
    assert.equal([...s.store.entries()][0].hold, 2400, 'the 3rd block by the new policy: 100 × 5²');
    s.engine.setEscalation(new Map());
    s.pass(2501);
    await s.expire();
    await s.offend('192.0.2.1');
    assert.equal([...s.store.entries()][0].block, undefined, 'no policy any more: upstream');
  });

  test('without a policy for the name: upstream blocks, entries without block number', async (t) => {
    const s = setup(t, 'other factor=2');
    await s.offend('192.0.2.1');
    const [e] = [...s.store.entries()];
    assert.equal(e.block, undefined);
    assert.equal(e.hold, undefined);
    assert.equal('block' in entryJson(e, s.now()), false);
    assert.equal(s.store.histories().length, 0);
    assert.ok(s.log.lines.some((l) => l.message === 'blocked 192.0.2.1/32:2222 for 100 seconds'));
  });
});

describe('subnet aggregation', () => {
  test('[aggregate] lines: defaults, limits, errors', () => {
    assert.deepEqual(parseAggregate(['ssh']), { name: 'ssh', count: 3, v4: 24, v6: 64 });
    assert.deepEqual(parseAggregate(['ssh', 'count=5', 'v4=16', 'v6=48']), { name: 'ssh', count: 5, v4: 16, v6: 48 });
    for (const [word, message] of [
      ['count=1', /count: a number from 2 to 65536 \[1\]/],
      ['v4=32', /v4: a number from 8 to 31/],
      ['v6=x', /v6: a number from 16 to 127 \[x\]/],
      ['size=3', /unknown key \[size\]/],
    ] as const) {
      assert.throws(() => parseAggregate(['ssh', word]), message);
    }
  });

  test('the text range of a network holds the text of its addresses', () => {
    const net = (text: string, mask: number) => ({ address: parseIP(text)!, mask });
    assert.deepEqual(textRange(net('192.0.2.0', 24)), ['192.0.2.', '192.0.2/']);
    assert.deepEqual(textRange(net('10.16.0.0', 12)), ['10.', '10/']);
    assert.deepEqual(textRange(net('2001:db8::', 64)), ['2001:', '2001;']);
    assert.deepEqual(textRange(net('::', 64))[0], '');
    const [from, to] = textRange(net('192.0.2.0', 24));
    for (const a of ['192.0.2.0', '192.0.2.9', '192.0.2.10', '192.0.2.255']) assert.ok(a >= from && a < to, a);
  });

  test('k blocks of one /24 become one block of the network, as long as the longest; released as one', async (t) => {
    const s = setup(t, 'other factor=2', noJitter, '[aggregate]\nblocklistd count=3 v4=24\n');
    await s.offend('192.0.2.1');
    s.pass(10);
    await s.offend('198.51.100.1'); // another network
    await s.offend('192.0.2.2');
    s.pass(10);
    await s.offend('192.0.2.3');
    await s.aggregated();
    await until(() => s.engine.inFlight.rems === 0 && s.engine.inFlight.adds === 0);
    assert.deepEqual(
      [...s.store.entries()].map((e) => `${e.key.address}/${e.key.lmask} ${e.id !== ''} ${e.last + e.key.duration + (e.hold ?? 0)}`),
      [`192.0.2.0/24 true ${T + 20 + 100}`, `198.51.100.1/32 true ${T + 10 + 100}`],
    );
    const calls = s.calls().map((l) => l.split(' ').slice(0, 5).join(' '));
    assert.deepEqual(calls.slice(0, 5), [
      'add blocklistd tcp 192.0.2.1 32',
      'add blocklistd tcp 198.51.100.1 32',
      'add blocklistd tcp 192.0.2.2 32',
      'add blocklistd tcp 192.0.2.3 32',
      'add blocklistd tcp 192.0.2.0 24',
    ]);
    assert.deepEqual(calls.slice(5).sort(), [
      'rem blocklistd tcp 192.0.2.1 32',
      'rem blocklistd tcp 192.0.2.2 32',
      'rem blocklistd tcp 192.0.2.3 32',
    ]);
    assert.ok(s.log.lines.some((l) => l.message === 'aggregating 3 blocks of 192.0.2.0/24 (blocklistd) into one'));
    s.pass(101);
    await s.expire();
    assert.equal(s.calls().filter((l) => l.startsWith('rem blocklistd tcp 192.0.2.0 24')).length, 1, 'released as one');
  });

  test('IPv6: k blocks of one /64 become one block of the network', async (t) => {
    const s = setup(t, 'other factor=2', noJitter, '[aggregate]\nblocklistd count=2 v6=64\n');
    const v6 = (address: string) =>
      tcpNotification(PORT, '192.0.2.1', {
        type: WireType.ADD,
        local: { ...parseIP('2001:db8::1')!, port: PORT },
        remote: { ...parseIP(address)!, port: 40000 },
      });
    for (const address of ['2001:db8:0:1::5', '2001:db8:0:2::5', '2001:db8:0:1:ab::6']) {
      for (let i = 0; i < 3; i++) s.engine.processBatch([v6(address)]);
      await until(() => s.engine.inFlight.adds === 0);
    }
    await s.aggregated();
    await until(() => s.engine.inFlight.rems === 0 && s.engine.inFlight.adds === 0);
    assert.deepEqual([...s.store.entries()].map((e) => `${e.key.address}/${e.key.lmask}`).sort(), [
      '2001:db8:0:1::/64',
      '2001:db8:0:2::5/128',
    ]);
  });

  test('an allow-list rule inside the network: no aggregate, and the log says why', async (t) => {
    const s = setup(t, 'other factor=2', noJitter, '[aggregate]\nblocklistd count=2\n[remote]\n192.0.2.128/25 * * * = * *\n');
    await s.offend('192.0.2.1');
    await s.offend('192.0.2.2');
    await s.aggregated();
    assert.deepEqual(
      [...s.store.entries()].map((e) => `${e.key.address}/${e.key.lmask}`),
      ['192.0.2.1/32', '192.0.2.2/32'],
    );
    const allowRule = `${join(s.dir, 'blocklistd.conf')}:7`;
    const why = `not aggregating 2 blocks of 192.0.2.0/24 (blocklistd): the allow-list rule at ${allowRule} is inside it`;
    assert.ok(
      s.log.lines.some((l) => l.level === 'notice' && l.message === why),
      JSON.stringify(s.log.lines),
    );
  });
});

// --- end to end -------------------------------------------------------------

test('end to end: the daemon aggregates two blocks of one /24 into one network block', async (t) => {
  const dir = tempDir('blocklistd-aggregate-e2e-');
  const helperLog = join(dir, 'calls.log');
  writeFileSync(join(dir, 'helper.conf'), `backend=log\nlog_file=${helperLog}\n`);
  const config = `${PORT} stream * * * 3 1h\n[aggregate]\nblocklistd count=2\n`;
  const daemon = await DaemonProcess.start({
    dir,
    config,
    args: ['-C', join(repoRoot, 'bin/blocklistd-helper')],
    env: { BLOCKLISTD_HELPER_CONF: join(dir, 'helper.conf') },
  });
  t.after(() => daemon.stop());
  for (const address of ['192.0.2.7', '192.0.2.8']) {
    for (let i = 0; i < 2; i++)
      assert.equal((await ctl(['report', '-t', 'fail', '-p', String(PORT), '--control', daemon.control, address])).code, 0);
  }
  await daemon.waitFor(/aggregating 2 blocks of 192\.0\.2\.0\/24 \(blocklistd\) into one/);
  await until(
    () =>
      existsSync(helperLog) &&
      readFileSync(helperLog, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('rem')).length === 2,
  );
  const calls = readFileSync(helperLog, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(' ').slice(0, 5).join(' '));
  assert.deepEqual(calls.slice(0, 3), [
    'add blocklistd tcp 192.0.2.7 32',
    'add blocklistd tcp 192.0.2.8 32',
    'add blocklistd tcp 192.0.2.0 24',
  ]);
  assert.deepEqual(calls.slice(3).sort(), ['rem blocklistd tcp 192.0.2.7 32', 'rem blocklistd tcp 192.0.2.8 32']);
  // the addresses' entries go once their rems answered
  let dump = '';
  for (let tries = 0; tries < 50 && dump.split('\n').length !== 2; tries++) {
    dump = (await ctl(['dump', '-b', '-n', '--control', daemon.control])).stdout;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.match(dump, /^blocklistd\t\s*192\.0\.2\.0\/24:2222\t\S+\t3\/3\t[^\n]+\n$/);
});

test('end to end: the daemon with the log helper escalates a repeat offender; ctl shows and forgets its history', async (t) => {
  const dir = tempDir('blocklistd-escalate-e2e-');
  const helperLog = join(dir, 'calls.log');
  writeFileSync(join(dir, 'helper.conf'), `backend=log\nlog_file=${helperLog}\n`);
  // two AUTH_FAILs block for 2 s, the next block 20 s (long enough for the checks on a loaded machine), then 200 s
  const config = `${PORT} stream * * * 3 2\n[escalate]\nblocklistd factor=10 forget=1d\n`;
  const daemon = await DaemonProcess.start({
    dir,
    config,
    args: ['-C', join(repoRoot, 'bin/blocklistd-helper')],
    env: { BLOCKLISTD_HELPER_CONF: join(dir, 'helper.conf') },
  });
  t.after(() => daemon.stop());
  const control = ['--control', daemon.control];
  const offend = async (): Promise<void> => {
    for (let i = 0; i < 2; i++) assert.equal((await ctl(['report', '-t', 'fail', '-p', String(PORT), ...control, '192.0.2.7'])).code, 0);
  };
  const calls = (): string[] =>
    existsSync(helperLog)
      ? readFileSync(helperLog, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
      : [];

  await offend();
  await daemon.waitFor(/blocked 192\.0\.2\.7\/32:2222 for 2 seconds \(block 1\)/);
  await daemon.waitFor(/released 192\.0\.2\.7\/32:2222 after 2 seconds/);
  await offend();
  await daemon.waitFor(/blocked 192\.0\.2\.7\/32:2222 for 20 seconds \(block 2\)/);
  assert.deepEqual(
    calls().map((l) => l.split(' ').slice(0, 4).join(' ')),
    ['add blocklistd tcp 192.0.2.7', 'rem blocklistd tcp 192.0.2.7', 'add blocklistd tcp 192.0.2.7'],
  );

  const dump = await ctl(['dump', '-b', '-n', '--block-number', ...control]);
  assert.match(dump.stdout, /^blocklistd\t\s*192\.0\.2\.7\/32:2222\t\S+\t4\/3\t\S+ \S+\t2\n$/);
  const json = JSON.parse((await ctl(['dump', '-b', '--json', ...control])).stdout) as {
    result: { block: number; blockDuration: number }[];
  };
  assert.deepEqual(
    json.result.map((e) => [e.block, e.blockDuration]),
    [[2, 20]],
  );

  const history = await ctl(['history', '-D', daemon.db, '-c', daemon.config, '192.0.2.7']);
  assert.equal(history.code, 0, history.stderr);
  assert.match(history.stdout, /^rulename\taddress\tblocks\tnow\tlast block\tended\nblocklistd\t192\.0\.2\.7\t2\t2\t/);
  const next = await ctl(['test', '-c', daemon.config, '-D', daemon.db, '192.0.2.7', String(PORT)]);
  assert.match(next.stdout, /next block {3}the 3rd: 3m,20s \(200 s\)\n/);
  const configured = await ctl(['config', '-c', daemon.config]);
  assert.match(configured.stdout, /\[escalate\]\nblocklistd factor=10 forget=1d\n$/);

  const unblock = await ctl(['unblock', '--forget', ...control, '192.0.2.7']);
  assert.equal(unblock.code, 0, unblock.stderr);
  assert.match(unblock.stdout, /1 released, 0 deleted without a block, 0 failed\n1 history of blocks forgotten\n$/);
  const gone = await ctl(['history', '-D', daemon.db, '-c', daemon.config, '192.0.2.7']);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /no history for 192\.0\.2\.7/);
  // forgotten: a first block again
  const from = daemon.stderr.length;
  await offend();
  await daemon.waitFor(/blocked 192\.0\.2\.7\/32:2222 for 2 seconds \(block 1\)/, from);
  const histories = JSON.parse((await ctl(['history', '--json', '-D', daemon.db, '-c', daemon.config])).stdout) as {
    result: { histories: { name: string; address: string; count: number; forgiven: number; permanent: boolean }[] };
  };
  assert.deepEqual(
    histories.result.histories.map((h) => [h.name, h.address, h.count, h.forgiven, h.permanent]),
    [['blocklistd', '192.0.2.7', 1, 1, false]],
  );
  const configJson = JSON.parse((await ctl(['config', '--json', '-c', daemon.config])).stdout) as {
    result: { escalate: { name: string; factor: number; text: string }[] };
  };
  assert.deepEqual(configJson.result.escalate, [
    { name: 'blocklistd', factor: 10, jitter: 0, forget: 86400, text: 'blocklistd factor=10 forget=1d' },
  ]);
  // --all --forget: every block lifted, every history forgotten
  const all = await ctl(['unblock', '--all', '--forget', '--json', ...control]);
  assert.equal((JSON.parse(all.stdout) as { result: { forgotten: number } }).result.forgotten, 1);
  const none = await ctl(['history', '-D', daemon.db, '-c', daemon.config]);
  assert.deepEqual([none.code, none.stdout], [0, '']);
});
