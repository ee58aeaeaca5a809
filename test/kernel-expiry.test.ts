// Kernel-side expiry and cutting live connections (issue 18, helper.md
// §1.7): what the daemon passes to a helper that offers `timeout` and
// `cut`, and what the shipped helper and the daemon make of it in real
// packet filters, in network namespaces: elements that leave by themselves
// after their timeout, also when the daemon was killed; a restore that
// re-adds what remains; sets made before timeouts taken over with their
// elements; an established connection of a blocked address ended, another
// address's not.  The namespace tests need root.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test, type TestContext } from 'node:test';
import { loadConfig } from '../src/conf/load.js';
import { compileRules } from '../src/conf/match.js';
import { systemEnv } from '../src/conf/system.js';
import { Engine } from '../src/daemon/engine.js';
import { helperExtensions, kernelTimeout } from '../src/daemon/kernel-expiry.js';
import { parseOptions, UsageError } from '../src/daemon/options.js';
import { StateStore } from '../src/state/store.js';
import { HelperRunner, type Change } from '../src/run/helper.js';
import { NetnsDaemon } from './attack-scenario.js';
import {
  ctl,
  isRoot,
  LogCollector,
  repoRoot,
  run,
  succeeds,
  tcpNotification,
  tempDir,
  until,
  vethPair,
  type RunResult,
} from './support.js';

// the filters' programs live in the sbin directories
process.env.PATH = `/usr/sbin:/sbin:${process.env.PATH ?? '/usr/bin:/bin'}`;

const HELPER = join(repoRoot, 'bin/blocklistd-helper');
const notRoot = !isRoot && 'needs root: network namespaces and packet filters (CI runs as root)';

test('kernelTimeout: what remains to the second after the deadline, plus the margin; none for forever or when off', () => {
  // blocked at 1000 for 60 s: released at 1061 by the daemon
  assert.equal(kernelTimeout(60, 1000, 1000, 10), 71);
  assert.equal(kernelTimeout(60, 1000, 1030, 10), 41, 'a restore 30 s later: what remains');
  assert.equal(kernelTimeout(60, 1000, 5000, 10), 10, 'already due: the margin');
  assert.equal(kernelTimeout(-1, 1000, 1000, 10), undefined, 'forever');
  assert.equal(kernelTimeout(60, 1000, 1000, undefined), undefined, 'without --kernel-expiry');
  assert.equal(kernelTimeout(60, 1000, 1000, 0), 61);
});

/**
 * A helper that records its calls: argv, the two variables, stdin; answers
 * OK per input line (or one), or fails (exit 1, no answer) while
 * `failing(true)`.  `recorded()`: the lines so far, and clears them.
 */
function recorder(): { program: string; recorded: () => string[]; failing: (on: boolean) => void } {
  const dir = tempDir('blocklistd-kernel-');
  const program = join(dir, 'record');
  const calls = join(dir, 'calls');
  writeFileSync(calls, '');
  writeFileSync(
    program,
    `#!/bin/sh\n[ -e ${dir}/fail ] && exit 1\n{ printf 'args'; for a; do printf ' [%s]' "$a"; done; ` +
      `printf ' timeout=%s cut=%s\\n' "\${BLOCKLISTD_TIMEOUT-unset}" "\${BLOCKLISTD_CUT-unset}"; } >>${calls}\n` +
      `if [ "$1" = batch ]; then while IFS= read -r l; do printf 'line %s\\n' "$l" >>${calls}; echo OK; done; else echo OK; fi\n`,
  );
  chmodSync(program, 0o755);
  const recorded = (): string[] => {
    const lines = readFileSync(calls, 'utf8').split('\n').slice(0, -1);
    writeFileSync(calls, '');
    return lines;
  };
  const failing = (on: boolean): void => (on ? writeFileSync(join(dir, 'fail'), '') : rmSync(join(dir, 'fail'), { force: true }));
  return { program, recorded, failing };
}

test(
  'the options: kernel expiry and cutting connections opt-in, --kernel-expiry-margin implies kernel expiry; ' +
    'asked of the helper only when it offers them',
  () => {
    const parse = (...args: string[]) => parseOptions(['node', 'blocklistd', ...args], 'blocklistd');
    assert.deepEqual([parse().kernelExpiryMargin, parse().cutConnections], [undefined, false]);
    assert.equal(parse('--kernel-expiry').kernelExpiryMargin, 60);
    assert.equal(parse('--kernel-expiry-margin', '0').kernelExpiryMargin, 0);
    assert.equal(parse('--cut-connections').cutConnections, true);
    assert.throws(
      () => parse('--kernel-expiry-margin', '1m'),
      (e) => e instanceof UsageError && e.message === "bad kernel expiry margin '1m': a whole number from 0 to 2147483",
    );
    const logs = new LogCollector();
    const all = new Set(['batch', 'timeout', 'cut']);
    assert.deepEqual(helperExtensions({ kernelExpiryMargin: 60, cutConnections: true }, all, logs.log), { timeouts: true, cut: true });
    assert.deepEqual(helperExtensions({ kernelExpiryMargin: undefined, cutConnections: false }, all, logs.log), {
      timeouts: false,
      cut: false,
    });
    assert.deepEqual(logs.lines, []);
    // upstream's helper: nothing beyond its contract, and the operator told that connections are not ended
    assert.deepEqual(helperExtensions({ kernelExpiryMargin: 60, cutConnections: true }, new Set(), logs.log), {
      timeouts: false,
      cut: false,
    });
    assert.deepEqual(logs.lines, [
      { level: 'warning', message: '--cut-connections: the helper does not offer "cut": connections are not ended' },
    ]);
  },
);

describe('the runner passes timeouts and the cut to a helper that offers them (helper.md §1.8)', () => {
  const { program: record, recorded } = recorder();
  const target = { name: 'blocklistd', proto: 'tcp' as const, address: '192.0.2.1', mask: 32, port: 22 };
  const changes: Change[] = [
    { action: 'add', target, id: '', timeout: 70 },
    { action: 'add', target: { ...target, address: '192.0.2.2' }, id: 'x' },
    { action: 'rem', target: { ...target, address: '192.0.2.3' }, id: 'OK' },
  ];

  test("without them (an upstream helper, or options off): upstream's calls, nothing in the environment", async () => {
    const helper = new HelperRunner({ program: record, log: new LogCollector().log });
    await helper.change('add', target, '', 70);
    await helper.batch(changes);
    assert.deepEqual(recorded(), [
      'args [add] [blocklistd] [tcp] [192.0.2.1] [32] [22] [] timeout=unset cut=unset',
      'args [batch] timeout=unset cut=unset',
      'line add blocklistd tcp 192.0.2.1 32 22 ',
      'line add blocklistd tcp 192.0.2.2 32 22 x',
      'line rem blocklistd tcp 192.0.2.3 32 22 OK',
    ]);
  });

  test(
    'with them: BLOCKLISTD_TIMEOUT for an add with a timeout, BLOCKLISTD_CUT for adds and batches, ' +
      '`batch timeout` with the field before the id',
    async () => {
      const logs = new LogCollector();
      const helper = new HelperRunner({ program: record, log: logs.log, debug: () => 1 });
      helper.setExtensions({ timeouts: true, cut: true });
      await helper.change('add', target, '', 70);
      await helper.change('add', target, '');
      await helper.change('rem', target, 'OK', 70);
      await helper.batch(changes);
      assert.deepEqual(recorded(), [
        'args [add] [blocklistd] [tcp] [192.0.2.1] [32] [22] [] timeout=70 cut=1',
        'args [add] [blocklistd] [tcp] [192.0.2.1] [32] [22] [] timeout=unset cut=1',
        'args [rem] [blocklistd] [tcp] [192.0.2.1] [32] [22] [OK] timeout=unset cut=unset',
        'args [batch] [timeout] timeout=unset cut=1',
        'line add blocklistd tcp 192.0.2.1 32 22 70 ',
        'line add blocklistd tcp 192.0.2.2 32 22 0 x',
        'line rem blocklistd tcp 192.0.2.3 32 22 0 OK',
      ]);
      assert.equal(
        logs.count('debug', `run ${record} [control add blocklistd tcp 192.0.2.1 32 22 ]`),
        2,
        "upstream's debug line as it was",
      );
      assert.equal(logs.count('debug', 'run add with BLOCKLISTD_TIMEOUT=70 BLOCKLISTD_CUT=1'), 1, 'and one more that shows them');
    },
  );
});

test(
  'the engine: an add carries what remains plus the margin; a renewal re-adds only when the kernel would drop the block ' +
    'less than half the margin after its new end',
  async (t) => {
    const { program, recorded, failing } = recorder();
    const dir = tempDir('blocklistd-kernel-engine-');
    const logs = new LogCollector();
    const env = systemEnv('blocklistd');
    writeFileSync(join(dir, 'blocklistd.conf'), '2222 stream * * * 1 40\n');
    const store = StateStore.open(join(dir, 'state.db'));
    const helper = new HelperRunner({ program, log: () => {} });
    helper.setExtensions({ timeouts: true, cut: false });
    const T = 1_800_000_000;
    let now = T;
    const engine = new Engine({
      store,
      helper,
      families: env.families,
      log: logs.log,
      debug: () => 0,
      clock: () => now,
      remRetry: 60,
      kernelExpiryMargin: 10,
    });
    engine.setRules(compileRules(loadConfig(join(dir, 'blocklistd.conf'), env).ruleSet), new Map());
    t.after(async () => {
      engine.stop();
      await helper.stop(1000);
      store.close();
    });
    const fail = async (at: number): Promise<string[]> => {
      now = T + at;
      engine.processBatch([tcpNotification(2222, '192.0.2.9')]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      return recorded();
    };
    const add = (id: string, timeout: number): string =>
      `args [add] [blocklistd] [tcp] [192.0.2.9] [32] [2222] [${id}] timeout=${timeout} cut=unset`;
    // blocked at T for 40 s: released at T + 41, the kernel's at T + 51
    assert.deepEqual(await fail(0), [add('', 51)]);
    await until(() => [...store.entries()][0]?.id === 'OK');
    // renewed at T + 3: ends at T + 44, 7 s before the kernel's: enough
    assert.deepEqual(await fail(3), []);
    // renewed at T + 13: ends at T + 54, after it: added again, 41 + 10 s from now
    assert.deepEqual(await fail(13), [add('OK', 51)]);
    assert.deepEqual(await fail(14), [], "the kernel's end is known now: T + 64");
    assert.equal([...store.entries()][0]?.id, 'OK', 'the entry keeps its id');
    // a renewal the helper fails: logged, and not tried again at the next failure but half a margin later
    failing(true);
    assert.deepEqual(await fail(30), []);
    assert.equal(
      logs.count(
        'err',
        'add blocklistd tcp 192.0.2.9/32:2222 (a new kernel timeout) failed (exit status 1); ' +
          'the packet filter may drop the block before its end',
      ),
      1,
    );
    failing(false);
    assert.deepEqual(await fail(31), []);
    assert.deepEqual(await fail(50), [add('OK', 51)]);
    assert.equal([...store.entries()][0]?.id, 'OK');
  },
);

// --- namespaces -------------------------------------------------------------

let serial = 0;
const namespaces = new Set<string>();
process.on('exit', () => {
  for (const ns of namespaces) spawnSync('ip', ['netns', 'delete', ns]);
});

/** A network namespace of the test's, deleted after it, its loopback up. */
async function netns(t: TestContext): Promise<string> {
  const name = `blk-${process.pid}-${++serial}`;
  await succeeds(run('ip', ['netns', 'add', name]), `ip netns add ${name}`);
  namespaces.add(name);
  t.after(async () => {
    await run('ip', ['netns', 'delete', name]);
    namespaces.delete(name);
  });
  await succeeds(run('ip', ['-n', name, 'link', 'set', 'lo', 'up']), 'lo up');
  return name;
}

const inNetns = (ns: string, args: string[], input?: string, env: Record<string, string> = {}): Promise<RunResult> =>
  run('ip', ['netns', 'exec', ns, ...args], { input, env });

/** The shipped helper in `ns` as the daemon runs it, `backend` forced; `env`: BLOCKLISTD_TIMEOUT, BLOCKLISTD_CUT. */
function helper(ns: string, backend: string, args: string[], env: Record<string, string> = {}, input?: string): Promise<RunResult> {
  const dir = tempDir('blocklistd-kernel-helper-');
  const fixed = {
    BLOCKLISTD_BACKEND: backend,
    BLOCKLISTD_HELPER_LOCK: join(dir, 'lock'),
    BLOCKLISTD_HELPER_CONF: join(dir, 'absent.conf'),
  };
  return inNetns(ns, ['bash', '-c', 'exec -a control "$0" "$@"', HELPER, ...args], input, { ...fixed, ...env });
}

async function ok(r: Promise<RunResult>, lines = 1): Promise<void> {
  const { code, stdout, stderr } = await r;
  assert.deepEqual([code, stdout], [0, 'OK\n'.repeat(lines)], stderr);
}

/** The elements of nftables set `set` of table inet blocklistd as nft lists them, e.g. `tcp . 10.0.0.1 . 22 timeout 3s expires 2s990ms`. */
async function nftElements(ns: string, set: string): Promise<string[]> {
  const r = await inNetns(ns, ['nft', 'list', 'set', 'inet', 'blocklistd', set]);
  if (r.code !== 0) return [];
  const m = /elements = \{([^}]*)\}/.exec(r.stdout);
  return m === null ? [] : m[1]!.split(',').map((e) => e.trim().replace(/\s+/g, ' '));
}

/** The members of ipset set `set` as ipset save writes them, e.g. `10.0.0.1,tcp:22 timeout 3`. */
async function ipsetMembers(ns: string, set: string): Promise<string[]> {
  const r = await inNetns(ns, ['ipset', 'save', set]);
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith(`add ${set} `))
    .map((l) => l.slice(`add ${set} `.length));
}

/** The seconds of an nft timeout of less than a minute ("timeout 17s"), undefined without one. */
const timeoutOf = (element: string): number | undefined => {
  const m = /timeout (\d+)s/.exec(element);
  return m === null ? undefined : Number(m[1]);
};

/** Resolves once `condition` holds, asked every 100 ms; rejects after `ms`. */
async function eventually(condition: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${condition.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Without the timeout and expiry: the element itself. */
const bare = (element: string): string => element.replace(/ timeout .*$/, '');

describe('the shipped helper: kernel timeouts in nftables and ipset (helper.md §1.8)', { skip: notRoot, concurrency: true }, () => {
  test('nftables: an element added with a timeout leaves by itself; one without stays; `batch timeout` too', async (t) => {
    const ns = await netns(t);
    await ok(helper(ns, 'nftables', ['add', 'bl', 'tcp', '10.0.0.1', '32', '22', ''], { BLOCKLISTD_TIMEOUT: '2' }));
    await ok(helper(ns, 'nftables', ['add', 'bl', 'tcp', '10.0.0.2', '32', '22', '']));
    await ok(helper(ns, 'nftables', ['add', 'bl', 'tcp', '10.0.1.0', '24', '22', ''], { BLOCKLISTD_TIMEOUT: '2' }));
    await ok(
      helper(
        ns,
        'nftables',
        ['batch', 'timeout'],
        {},
        'add bl tcp 10.0.0.3 32 22 2 \nadd bl udp 10.0.0.4 32 53 0 \nadd bl tcp 10.0.2.0 24 22 2 \n',
      ),
      3,
    );
    const v4 = await nftElements(ns, 'bl-v4');
    assert.deepEqual(v4.map(bare).sort(), ['tcp . 10.0.0.1 . 22', 'tcp . 10.0.0.2 . 22', 'tcp . 10.0.0.3 . 22', 'udp . 10.0.0.4 . 53']);
    assert.deepEqual(
      v4.map(timeoutOf),
      v4.map((e) => (/10\.0\.0\.[13] /.test(e) ? 2 : undefined)),
    );
    assert.equal((await nftElements(ns, 'bl-v4-24')).map(timeoutOf).join(), '2,2', 'networks too (interval sets)');
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.deepEqual(
      (await nftElements(ns, 'bl-v4')).sort(),
      ['tcp . 10.0.0.2 . 22', 'udp . 10.0.0.4 . 53'],
      'the timed ones left by themselves',
    );
    assert.deepEqual(await nftElements(ns, 'bl-v4-24'), []);
  });

  test('nftables: an add of an element already there sets its new timeout (a renewal, a restore)', async (t) => {
    const ns = await netns(t);
    await ok(helper(ns, 'nftables', ['add', 'bl', 'tcp', '10.0.0.1', '32', '22', ''], { BLOCKLISTD_TIMEOUT: '5' }));
    await ok(helper(ns, 'nftables', ['add', 'bl', 'tcp', '10.0.0.1', '32', '22', ''], { BLOCKLISTD_TIMEOUT: '50' }));
    assert.deepEqual((await nftElements(ns, 'bl-v4')).map(timeoutOf), [50]);
    // and a forever block of it: no timeout left
    await ok(helper(ns, 'nftables', ['add', 'bl', 'tcp', '10.0.0.1', '32', '22', '']));
    await ok(helper(ns, 'nftables', ['rem', 'bl', 'tcp', '10.0.0.1', '32', '22', 'OK']));
    assert.deepEqual(await nftElements(ns, 'bl-v4'), []);
  });

  test(
    'nftables: sets made before timeouts are made again with their elements by the first add with a timeout, ' + 'in one transaction',
    async (t) => {
      const ns = await netns(t);
      const old = [
        'add table inet blocklistd',
        'add set inet blocklistd bl-v4 { type inet_proto . ipv4_addr . inet_service; }',
        'add set inet blocklistd bl-v4-24 { type inet_proto . ipv4_addr . inet_service; flags interval; }',
        'add chain inet blocklistd bl-input { type filter hook input priority filter - 10; policy accept; }',
        'add rule inet blocklistd bl-input meta l4proto . ip saddr . th dport @bl-v4 drop',
        'add rule inet blocklistd bl-input meta l4proto . ip saddr . th dport @bl-v4-24 drop',
        'add element inet blocklistd bl-v4 { tcp . 10.0.0.1 . 22, udp . 10.0.0.2 . 53 }',
        'add element inet blocklistd bl-v4-24 { tcp . 10.0.1.0/24 . 22, 0-255 . 10.0.2.0/24 . 0-65535 }',
      ];
      await succeeds(inNetns(ns, ['nft', '-f', '-'], `${old.join('\n')}\n`), 'old sets');
      // without a timeout nothing changes
      await ok(helper(ns, 'nftables', ['add', 'bl', 'tcp', '10.0.0.3', '32', '22', '']));
      assert.doesNotMatch(
        (await succeeds(inNetns(ns, ['nft', 'list', 'set', 'inet', 'blocklistd', 'bl-v4']), 'list')).stdout,
        /flags timeout/,
      );
      await ok(helper(ns, 'nftables', ['add', 'bl', 'tcp', '10.0.0.4', '32', '22', ''], { BLOCKLISTD_TIMEOUT: '30' }));
      const table = (await succeeds(inNetns(ns, ['nft', 'list', 'table', 'inet', 'blocklistd']), 'list')).stdout;
      assert.match(table, /set bl-v4 \{[^}]*flags timeout\n/);
      assert.match(table, /set bl-v4-24 \{[^}]*flags interval,timeout\n/);
      assert.deepEqual((await nftElements(ns, 'bl-v4')).map(bare).sort(), [
        'tcp . 10.0.0.1 . 22',
        'tcp . 10.0.0.3 . 22',
        'tcp . 10.0.0.4 . 22',
        'udp . 10.0.0.2 . 53',
      ]);
      assert.deepEqual((await nftElements(ns, 'bl-v4-24')).sort(), ['0-255 . 10.0.2.0/24 . 0-65535', 'tcp . 10.0.1.0/24 . 22']);
      assert.equal([...table.matchAll(/@bl-v4(-24)? drop/g)].length, 2, 'the drop rules, once each');
    },
  );

  test(
    'ipset: members with a timeout leave by themselves; old sets swapped with ones that take timeouts, members kept; ' +
      "beyond ipset's longest, none",
    async (t) => {
      const ns = await netns(t);
      const set = 'bl-bl-4';
      await succeeds(inNetns(ns, ['ipset', 'create', set, 'hash:net,port', 'family', 'inet', 'maxelem', '4194304']), 'old set');
      await succeeds(inNetns(ns, ['iptables', '-I', 'INPUT', '-m', 'set', '--match-set', set, 'src,dst', '-j', 'DROP']), 'its rule');
      await succeeds(inNetns(ns, ['ipset', 'add', set, '10.0.0.9/32,tcp:22']), 'an old member');
      await ok(helper(ns, 'ipset', ['add', 'bl', 'tcp', '10.0.0.1', '32', '22', ''], { BLOCKLISTD_TIMEOUT: '2' }));
      await ok(helper(ns, 'ipset', ['add', 'bl', 'tcp', '10.0.0.2', '32', '22', ''], { BLOCKLISTD_TIMEOUT: '9999999' }));
      await ok(helper(ns, 'ipset', ['batch', 'timeout'], {}, 'add bl tcp 10.0.0.3 32 22 2 \nadd bl udp 10.0.0.4 32 53 0 \n'), 2);
      const members = await ipsetMembers(ns, set);
      assert.deepEqual(
        members.map((m) => m.replace(/ timeout [12]$/, ' timeout 2')).sort(),
        [
          '10.0.0.1,tcp:22 timeout 2',
          '10.0.0.2,tcp:22 timeout 0',
          '10.0.0.3,tcp:22 timeout 2',
          '10.0.0.9,tcp:22 timeout 0',
          '10.0.0.4,udp:53 timeout 0',
        ].sort(),
      );
      await new Promise((resolve) => setTimeout(resolve, 3000));
      assert.deepEqual((await ipsetMembers(ns, set)).sort(), [
        '10.0.0.2,tcp:22 timeout 0',
        '10.0.0.4,udp:53 timeout 0',
        '10.0.0.9,tcp:22 timeout 0',
      ]);
      const rules = (await succeeds(inNetns(ns, ['iptables', '-S', 'INPUT']), 'iptables -S')).stdout;
      assert.equal([...rules.matchAll(/--match-set bl-bl-4 src,dst -j DROP/g)].length, 1, 'the rule still matches the set, once');
    },
  );
});

// --- cutting connections -----------------------------------------------------

/** Keeps a connection open and echoes; prints `closed <code>` when it ends. */
const CLIENT = `const [host, localAddress] = process.argv.slice(1);
const s = require('net').connect({ host, localAddress, port: 2222 }, () => console.log('open'));
s.on('data', (d) => process.stdout.write(d));
s.on('error', (e) => { console.log('closed ' + e.code); process.exit(0); });
s.on('close', () => { console.log('closed'); process.exit(0); });`;

/** Servers on both ends of a veth pair: the server's 2222 echoes; clients from 10.97.0.2/.3 and fd97::2/::3 keep a connection each. */
async function connected(
  t: TestContext,
  link: string,
): Promise<{ srv: string; said: Record<string, () => string>; established: () => Promise<string[]> }> {
  const { srv, cli } = await vethPair(
    t,
    link,
    ['10.97.0.1/24', 'fd97::1/64'],
    ['10.97.0.2/24', '10.97.0.3/24', 'fd97::2/64', 'fd97::3/64'],
  );
  const server = spawn(
    'ip',
    [
      'netns',
      'exec',
      srv,
      process.execPath,
      '-e',
      "require('net').createServer((c) => { c.on('error', () => {}); c.pipe(c); }).listen(2222, '::', () => console.log('listening'))",
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  t.after(() => server.kill('SIGKILL'));
  let listening = '';
  server.stdout.on('data', (d: Buffer) => (listening += d.toString()));
  await until(() => listening.includes('listening'), 10_000);
  const said: Record<string, () => string> = {};
  for (const from of ['10.97.0.2', '10.97.0.3', 'fd97::2', 'fd97::3']) {
    const client = spawn('ip', ['netns', 'exec', cli, process.execPath, '-e', CLIENT, from.includes(':') ? 'fd97::1' : '10.97.0.1', from], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => client.kill('SIGKILL'));
    let out = '';
    client.stdout.on('data', (d: Buffer) => (out += d.toString()));
    said[from] = () => out;
    await until(() => out.includes('open') || out.includes('closed'), 10_000);
    assert.equal(out, 'open\n', `client ${from}`);
  }
  // the peers of the server's established connections on 2222
  const established = async (): Promise<string[]> => {
    const r = await succeeds(run('ip', ['netns', 'exec', srv, 'ss', '-Htn', 'state', 'established', 'sport', '= :2222']), 'ss');
    return r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) =>
        l
          .trim()
          .split(/\s+/)
          .pop()!
          .replace(/^\[(::ffff:)?|\]?:\d+$/g, ''),
      )
      .sort();
  };
  assert.deepEqual(await established(), ['10.97.0.2', '10.97.0.3', 'fd97::2', 'fd97::3']);
  return { srv, said, established };
}

describe('cutting connections (BLOCKLISTD_CUT, --cut-connections)', { skip: notRoot, concurrency: true }, () => {
  for (const backend of ['nftables', 'ipset', 'iptables']) {
    test(`${backend}: an add ends the blocked address's connections to the blocked port at once, another address's stay`, async (t) => {
      const { srv, said, established } = await connected(t, `kc${backend.slice(0, 2)}`);
      await ok(helper(srv, backend, ['add', 'bl', 'tcp', '10.97.0.2', '32', '2222', ''], { BLOCKLISTD_CUT: '1' }));
      await ok(helper(srv, backend, ['batch'], { BLOCKLISTD_CUT: '1' }, 'add bl tcp fd97::2 128 2222 \n'));
      await until(() => said['10.97.0.2']!().includes('closed') && said['fd97::2']!().includes('closed'), 5000);
      // the server ended them: a reset reached the clients
      assert.equal(said['10.97.0.2']!(), 'open\nclosed ECONNRESET\n');
      assert.deepEqual(await established(), ['10.97.0.3', 'fd97::3']);
      assert.equal(said['10.97.0.3']!(), 'open\n');
    });
  }

  test(
    'a batch of 2,500 blocks ends the connection of its last one: ss gets 1,000 a call ' + '(a longer filter silently matches nothing)',
    async (t) => {
      const { srv, said, established } = await connected(t, 'kcbig');
      const others = Array.from({ length: 2499 }, (_, i) => `add bl tcp 10.50.${i >> 8}.${i & 255} 32 2222 \n`).join('');
      const r = await helper(srv, 'nftables', ['batch'], { BLOCKLISTD_CUT: '1' }, `${others}add bl tcp 10.97.0.2 32 2222 \n`);
      assert.equal(r.stdout, 'OK\n'.repeat(2500), r.stderr);
      await until(() => said['10.97.0.2']!().includes('closed'), 5000);
      assert.deepEqual(await established(), ['10.97.0.3', 'fd97::2', 'fd97::3']);
    },
  );

  test('without BLOCKLISTD_CUT the connections stay (blocked, not ended), as upstream', async (t) => {
    const { srv, said, established } = await connected(t, 'kcno');
    await ok(helper(srv, 'nftables', ['add', 'bl', 'tcp', '10.97.0.2', '32', '2222', '']));
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(await established(), ['10.97.0.2', '10.97.0.3', 'fd97::2', 'fd97::3']);
    assert.equal(said['10.97.0.2']!(), 'open\n');
  });

  test('a block of another port ends nothing', async (t) => {
    const { srv, established } = await connected(t, 'kcpo');
    await ok(helper(srv, 'nftables', ['add', 'bl', 'tcp', '10.97.0.2', '32', '22', ''], { BLOCKLISTD_CUT: '1' }));
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(await established(), ['10.97.0.2', '10.97.0.3', 'fd97::2', 'fd97::3']);
  });

  test('the daemon with --cut-connections: blocklistctl block ends the connection of the address it blocks', async (t) => {
    const { srv, said, established } = await connected(t, 'kcd');
    const daemon = await NetnsDaemon.start('2222 stream tcp * * 3 1h\n', { netns: srv, args: ['--kernel-expiry', '--cut-connections'] });
    t.after(() => daemon.kill());
    await succeeds(ctl(['block', '-s', daemon.socket, '-p', '2222', '10.97.0.2']), 'blocklistctl block');
    await until(() => said['10.97.0.2']!().includes('closed'), 5000);
    assert.deepEqual(await established(), ['10.97.0.3', 'fd97::2', 'fd97::3']);
    assert.match(
      (await succeeds(ctl(['status', '-s', daemon.socket]), 'status')).stdout,
      /^helper extras {2}kernel timeouts \(60 s after each block's end\), connections cut$/m,
    );
  });
});

// --- the daemon ----------------------------------------------------------------

describe('the daemon: blocks with kernel timeouts (--kernel-expiry-margin)', { skip: notRoot, concurrency: true }, () => {
  const daemons: NetnsDaemon[] = [];
  after(() => daemons.forEach((d) => d.kill()));
  const start = async (ns: string, args: string[], dir?: string): Promise<NetnsDaemon> => {
    const daemon = await NetnsDaemon.start('2222 stream tcp * * 3 1h\n', { netns: ns, args, dir });
    daemons.push(daemon);
    return daemon;
  };

  test('a daemon killed with SIGKILL leaves blocks that leave the filter by themselves, a margin after their end', async (t) => {
    const ns = await netns(t);
    const daemon = await start(ns, ['--kernel-expiry-margin', '1']);
    assert.match(
      (await succeeds(ctl(['status', '-s', daemon.socket]), 'status')).stdout,
      /^helper extras {2}kernel timeouts \(1 s after each block's end\)$/m,
    );
    const { helper: status } = (
      JSON.parse((await succeeds(ctl(['status', '--json', '-s', daemon.socket]), 'status --json')).stdout) as {
        result: { helper: Record<string, unknown> };
      }
    ).result;
    assert.deepEqual([status.kernelExpiryMargin, status.cutConnections], [1, false]);
    await succeeds(ctl(['block', '-s', daemon.socket, '-p', '2222', '-t', 'forever', '10.0.0.3']), 'blocklistctl block forever');
    await succeeds(ctl(['block', '-s', daemon.socket, '-p', '2222', '-t', '8', '10.0.0.1', '10.0.0.2']), 'blocklistctl block');
    const blockedAt = Date.now();
    daemon.kill();
    // still there: the daemon never released them
    const elements = await nftElements(ns, 'blocklistd-v4');
    assert.deepEqual(elements.map(bare).sort(), ['tcp . 10.0.0.1 . 2222', 'tcp . 10.0.0.2 . 2222', 'tcp . 10.0.0.3 . 2222']);
    // 8 s, to the second after, and the margin: 10 s, less the seconds turned meanwhile
    for (const e of elements) assert.ok(/10\.0\.0\.3 /.test(e) ? timeoutOf(e) === undefined : timeoutOf(e)! >= 7 && timeoutOf(e)! <= 10, e);
    let left: string[] = [];
    await eventually(async () => (left = await nftElements(ns, 'blocklistd-v4')).length === 1, 20_000);
    assert.ok(Date.now() - blockedAt >= 6000, `not before their time: ${Date.now() - blockedAt} ms`);
    assert.deepEqual(left, ['tcp . 10.0.0.3 . 2222'], 'the forever block stays');
  });

  test('a restore (-r) after the filter lost the blocks adds each with what remains of it', async (t) => {
    const ns = await netns(t);
    const dir = tempDir('blocklistd-kernel-daemon-');
    const first = await start(ns, ['-r', '--kernel-expiry-margin', '5'], dir);
    await succeeds(ctl(['block', '-s', first.socket, '-p', '2222', '-t', '40', '10.0.0.1']), 'blocklistctl block');
    first.kill();
    await until(() => first.child.exitCode !== null || first.child.signalCode !== null, 5000);
    // as after a reboot: the packet filter is empty
    await succeeds(inNetns(ns, ['nft', 'delete', 'table', 'inet', 'blocklistd']), 'nft delete table');
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const second = await start(ns, ['-r', '--kernel-expiry-margin', '5'], dir);
    let elements: string[] = [];
    await eventually(async () => (elements = await nftElements(ns, 'blocklistd-v4')).length === 1, 10_000);
    // 40 s + 1 + 5 at first; 3 s or more later
    const timeout = timeoutOf(elements[0]!)!;
    assert.ok(timeout >= 35 && timeout <= 43, elements[0]);
    second.kill();
  });

  test('a block renewed by hand (blocklistctl block again) gets a new kernel timeout once the old one would end too soon', async (t) => {
    const ns = await netns(t);
    const daemon = await start(ns, ['--kernel-expiry-margin', '2']);
    const block = (): Promise<RunResult> =>
      succeeds(ctl(['block', '-s', daemon.socket, '-p', '2222', '-t', '20', '10.0.0.1']), 'blocklistctl block');
    const expires = async (): Promise<number> => Number(/expires (\d+)s/.exec((await nftElements(ns, 'blocklistd-v4'))[0] ?? '')?.[1]);
    await block();
    // 20 s, the second after, the margin: 23 s
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.ok((await expires()) <= 20, 'three seconds later');
    await block();
    await eventually(async () => (await expires()) >= 21, 5000);
    daemon.kill();
  });

  test('without --kernel-expiry: blocks without timeouts, as upstream', async (t) => {
    const ns = await netns(t);
    const daemon = await start(ns, []);
    await succeeds(ctl(['block', '-s', daemon.socket, '-p', '2222', '-t', '60', '10.0.0.1']), 'blocklistctl block');
    assert.deepEqual(await nftElements(ns, 'blocklistd-v4'), ['tcp . 10.0.0.1 . 2222']);
    assert.doesNotMatch((await succeeds(ctl(['status', '-s', daemon.socket]), 'status')).stdout, /helper extras/);
    daemon.kill();
  });
});
