// bin/blocklistd-helper's BSD back ends (helper.md §2.2-§2.4) and its
// output contract (§1.3), against stand-ins for npfctl, pfctl, ipf, ipfstat
// and ipfw (test/fixtures/stubs/) that record every call.  A scenario runs
// the helper as the daemon does (argv[0] "control", a chosen environment)
// once per call, writes a "control [...]" line before each call into the
// stubs' log, and compares the log byte for byte with a file of
// test/fixtures/golden/.  The expected lines there come from helper.md.
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot, run, tempDir, type RunResult } from './support.js';

const script = join(repoRoot, 'bin/blocklistd-helper');
const stubs = join(repoRoot, 'test/fixtures/stubs');
const goldens = join(repoRoot, 'test/fixtures/golden');
const dir = tempDir('blocklistd-helper-bsd-');
/** No configuration file unless a test writes one: the machine's /etc/blocklistd-helper.conf must not count. */
const noConf = join(dir, 'absent.conf');

const tools = ['npfctl', 'pfctl', 'ipf', 'ipfstat', 'ipfw'] as const;
/** The script puts these before the PATH it gets: a real program there would run instead of the stub. */
const scriptPath = ['/sbin', '/usr/sbin', '/bin', '/usr/bin'];
const realTools = tools.flatMap((tool) => scriptPath.map((d) => join(d, tool))).filter((p) => existsSync(p));

let serial = 0;

/** A fresh, empty log for the stubs. */
function stubLog(name: string): string {
  const file = join(dir, `${++serial}-${name}`);
  writeFileSync(file, '');
  return file;
}

function configFile(text: string): string {
  const file = join(dir, `${++serial}-blocklistd-helper.conf`);
  writeFileSync(file, text);
  return file;
}

/**
 * Runs the helper as the daemon does: directly, argv[0] "control", with
 * exactly `env` (the stubs first in PATH); stdin /dev/null unless `stdin`.
 */
function helper(args: readonly string[], env: Record<string, string>, stdin?: string): Promise<RunResult> {
  if (realTools.length > 0) throw new Error(`refusing to run the helper: real packet-filter programs exist: ${realTools.join(' ')}`);
  return run(script, args, { argv0: 'control', onlyEnv: { PATH: `${stubs}:/usr/bin:/bin`, LC_ALL: 'C', ...env }, input: stdin });
}

const brackets = (args: readonly string[]): string => args.map((a) => `[${a}]`).join(' ');
const oneLine = (text: string): string => text.replace(/\n/g, '\\n');

interface Call {
  /** The arguments after argv[0]. */
  args: string[];
  /** What the helper must print. */
  stdout: string;
  /** More environment for this call (stub controls, BLOCKLISTD_BACKEND). */
  env?: Record<string, string>;
  stdin?: string;
}

interface Scenario {
  /** BLOCKLISTD_BACKEND, unless a call sets its own or the configuration file names it. */
  backend?: string;
  /** Text of the configuration file. */
  conf?: string;
  calls: Call[];
}

/**
 * Runs the calls one after the other, each with its stdout and nothing on
 * stderr, exiting 0, or 1 when a change (add, rem, flush) printed nothing:
 * it failed, and compares the stubs' log with golden/<golden>.  The
 * log gets "# blocklistd-helper.conf: <text>" first when there is one, and
 * "control [arg]... [stdin:[...]] [{VAR=value}]..." before each call.
 */
async function scenario(golden: string, { backend, conf, calls }: Scenario): Promise<void> {
  const log = stubLog(golden);
  const env: Record<string, string> = { STUB_LOG: log, BLOCKLISTD_HELPER_CONF: noConf };
  if (backend !== undefined) env.BLOCKLISTD_BACKEND = backend;
  if (conf !== undefined) {
    env.BLOCKLISTD_HELPER_CONF = configFile(conf);
    appendFileSync(log, `# blocklistd-helper.conf: ${oneLine(conf)}\n`);
  }
  const results: { call: string; code: number | null; stdout: string; stderr: string }[] = [];
  const expected: typeof results = [];
  for (const call of calls) {
    const extra = Object.entries(call.env ?? {}).map(([k, v]) => ` {${k}=${oneLine(v)}}`);
    const marker = `control ${brackets(call.args)}${call.stdin === undefined ? '' : ` stdin:[${oneLine(call.stdin)}]`}${extra.join('')}`;
    appendFileSync(log, `${marker}\n`);
    const result = await helper(call.args, { ...env, ...call.env }, call.stdin);
    results.push({ call: marker, ...result });
    const failed = ['add', 'rem', 'flush'].includes(call.args[0]) && call.stdout === '';
    expected.push({ call: marker, code: failed ? 1 : 0, stdout: call.stdout, stderr: '' });
  }
  assert.equal(readFileSync(log, 'utf8'), readFileSync(join(goldens, golden), 'utf8'), `stub log vs golden/${golden}`);
  assert.deepEqual(results, expected);
}

const add = (name: string, proto: string, address: string, mask: number, port: string, id = ''): string[] => [
  'add',
  name,
  proto,
  address,
  String(mask),
  port,
  id,
];
const rem = (name: string, proto: string, address: string, mask: number, port: string, id: string): string[] => [
  'rem',
  name,
  proto,
  address,
  String(mask),
  port,
  id,
];

/** A pf anchor that already holds the block rule for table port22, as `pfctl -sr` shows it. */
const port22Rule = 'block drop in quick proto tcp from <port22> to any port = 22';
/** Failures, by the text of the stub log line. */
const fail = (text: string): Record<string, string> => ({ STUB_FAIL: text });
const EXIT1 = { STUB_EXIT: '1' };

/** An active ipfilter rule set with the group head, two groups and pass rules. */
const ipfstat = [
  'block in proto tcp/udp from any to any head blocklistd',
  'block in log quick proto tcp from 192.0.2.0/24 to any flags S/SAFR group blocklistd',
  'block in log quick proto tcp from 198.51.100.7/32 to any flags S/SAFR group blocklistd-int',
  'block in log quick proto tcp from 2001:db8::/64 to any flags S/SAFR group blocklistd',
  'pass in all',
  'pass out all',
].join('\n');

/** A batch as the daemon writes it (fields joined by spaces, an empty id leaving a trailing space); 192.0.2.2 fails. */
const batchInput = (remId: string): string =>
  [
    'add blocklistd tcp 192.0.2.1 32 22 ',
    'add blocklistd tcp 192.0.2.2 32 22 ',
    `rem blocklistd tcp 192.0.2.3 32 22 ${remId}`,
    'add blocklistd-ext tcp 2001:db8:: 64 2222 ',
    'add blocklistd tcp ::ffff:203.0.113.9 128 22 ',
  ].join('\n') + '\n';

test('the BSD programs do not exist here: the stubs, later in PATH, are what the script finds', async () => {
  assert.deepEqual(realTools, [], `real packet-filter programs would run instead of the stubs: ${realTools.join(' ')}`);
  for (const tool of tools) assert.ok((statSync(join(stubs, tool)).mode & 0o111) !== 0, `${tool} stub not executable`);
  // PATH as the script makes it out of the one the tests give it.
  const found = await run('/bin/sh', [
    '-c',
    'PATH=/sbin:/usr/sbin:/bin:/usr/bin:$1; for t in npfctl pfctl ipf ipfstat ipfw; do command -v "$t"; done',
    'sh',
    `${stubs}:/usr/bin:/bin`,
  ]);
  assert.equal(found.stdout, tools.map((t) => `${join(stubs, t)}\n`).join(''));
  assert.match(readFileSync(script, 'utf8'), /^PATH=\/sbin:\/usr\/sbin:\/bin:\/usr\/bin:\$PATH$/m);
});

test('the stubs record each call, arguments in brackets, stdin only after "-"', async () => {
  const log = stubLog('stubs.log');
  const env = { PATH: '/usr/bin:/bin', STUB_LOG: log };
  const direct = (tool: string, args: string[], extra: Record<string, string> = {}, stdin?: string): Promise<RunResult> =>
    // without "-" the stub does not read: run() ignores the EPIPE
    run(join(stubs, tool), args, { onlyEnv: { ...env, ...extra }, input: stdin ?? 'never read' });
  assert.deepEqual(await direct('npfctl', ['rule', 'a b', 'add', '']), { code: 0, stdout: 'OK 1a\n', stderr: '' });
  assert.deepEqual(await direct('npfctl', ['rule', 'x', 'add'], EXIT1), { code: 1, stdout: '', stderr: '' });
  assert.deepEqual(await direct('npfctl', ['rule', 'x', 'add'], { STUB_OUT: 'OK zz', STUB_FAIL: '[x]' }), {
    code: 1,
    stdout: 'OK zz\n',
    stderr: '',
  });
  assert.deepEqual(await direct('pfctl', ['-a', 'x', '-f', '-'], {}, 'one\ntwo'), { code: 0, stdout: '', stderr: '' });
  assert.deepEqual(await direct('pfctl', ['-a', 'x/22', '-sr'], { STUB_RULES: 'r1\nr2' }), { code: 0, stdout: 'r1\nr2\n', stderr: '' });
  assert.deepEqual(await direct('pfctl', ['-a', 'x', '-s', 'Anchors'], { STUB_ANCHORS: '  x/22' }), {
    code: 0,
    stdout: '  x/22\n',
    stderr: '',
  });
  assert.deepEqual(await direct('ipf', ['-I', '-f', '-'], {}, 'a\n\nb\n'), { code: 0, stdout: '', stderr: '' });
  assert.deepEqual(await direct('ipfstat', ['-io'], { STUB_IPFSTAT: 'pass in all' }), { code: 0, stdout: 'pass in all\n', stderr: '' });
  assert.deepEqual(await direct('ipfw', ['-q', 'show', '2022']), { code: 1, stdout: '', stderr: '' });
  assert.deepEqual(await direct('ipfw', ['-q', 'show', '2022'], { STUB_IPFW_SHOW: '0' }), {
    code: 0,
    stdout: '02022 deny ip from table(stub) to any\n',
    stderr: '',
  });
  assert.equal(
    readFileSync(log, 'utf8'),
    [
      'npfctl [rule] [a b] [add] []',
      'npfctl [rule] [x] [add]',
      'npfctl [rule] [x] [add]',
      'pfctl [-a] [x] [-f] [-] stdin:[one\\ntwo]',
      'pfctl [-a] [x/22] [-sr]',
      'pfctl [-a] [x] [-s] [Anchors]',
      'ipf [-I] [-f] [-] stdin:[a\\n\\nb\\n]',
      'ipfstat [-io]',
      'ipfw [-q] [show] [2022]',
      'ipfw [-q] [show] [2022]',
      '',
    ].join('\n'),
  );
});

test('npf: rule add prints npfctl\'s "OK <id>", rem-id with the stored id, flush', async () => {
  await scenario('npf.log', {
    backend: 'npf',
    calls: [
      { args: add('blocklistd', 'tcp', '192.0.2.0', 24, '22'), stdout: 'OK 1a\n' },
      { args: add('blocklistd-ext', 'udp', '198.51.100.7', 32, '53'), stdout: 'OK 1b\n' },
      { args: add('blocklistd', 'tcp', '2001:db8::', 64, '22'), stdout: 'OK 1c\n' },
      { args: add('blocklistd', 'tcp', '::ffff:203.0.113.9', 128, '22'), stdout: 'OK 1d\n' },
      // "" port and "" proto ("any", BSD routing sockets): no clause
      { args: add('blocklistd', 'udp', '192.0.2.7', 32, ''), stdout: 'OK 1e\n' },
      { args: add('blocklistd', '', '192.0.2.8', 32, '22'), stdout: 'OK 1f\n' },
      // -r restore: the old id is not part of the rule
      { args: add('blocklistd-x', 'tcp', '127.0.0.40', 32, '27201', 'id1'), stdout: 'OK 20\n' },
      { args: rem('blocklistd', 'tcp', '192.0.2.0', 24, '22', '1a'), stdout: 'OK\n' },
      { args: rem('blocklistd', 'tcp', '::ffff:203.0.113.9', 128, '22', '1d'), stdout: 'OK\n' },
      { args: ['flush', 'blocklistd'], stdout: 'OK\n' },
    ],
  });
});

test('npf: nothing on stdout when npfctl fails', async () => {
  await scenario('npf-fail.log', {
    backend: 'npf',
    calls: [
      { args: add('blocklistd', 'tcp', '192.0.2.0', 24, '22'), env: EXIT1, stdout: '' },
      { args: rem('blocklistd', 'tcp', '192.0.2.0', 24, '22', '1a'), env: EXIT1, stdout: '' },
      { args: ['flush', 'blocklistd'], env: EXIT1, stdout: '' },
    ],
  });
});

test('pf: anchor <name>/<port> with table port<port>, the rule loaded only when missing, states killed', async () => {
  await scenario('pf.log', {
    backend: 'pf',
    calls: [
      { args: add('blocklistd', 'tcp', '192.0.2.0', 24, '22'), stdout: 'OK\n' },
      { args: add('blocklistd-ext', 'udp', '198.51.100.7', 32, '53'), stdout: 'OK\n' },
      // the anchor already holds the rule: no reload
      { args: add('blocklistd', 'tcp', '2001:db8::', 64, '22'), env: { STUB_RULES: port22Rule }, stdout: 'OK\n' },
      { args: add('blocklistd', 'tcp', '::ffff:203.0.113.9', 128, '22'), env: { STUB_RULES: port22Rule }, stdout: 'OK\n' },
      { args: rem('blocklistd', 'tcp', '192.0.2.0', 24, '22', 'OK'), stdout: 'OK\n' },
      { args: rem('blocklistd', 'tcp', '::ffff:203.0.113.9', 128, '22', 'OK'), stdout: 'OK\n' },
      { args: ['flush', 'blocklistd'], env: { STUB_ANCHORS: '  blocklistd/22\n  blocklistd/2222' }, stdout: 'OK\n' },
      { args: ['flush', 'blocklistd-ext'], stdout: 'OK\n' },
    ],
  });
});

test('pf: OK only when the rule, the table entry and the state kill worked; flush always OK', async () => {
  await scenario('pf-fail.log', {
    backend: 'pf',
    calls: [
      { args: add('blocklistd', 'tcp', '192.0.2.0', 24, '22'), env: fail('[-f] [-]'), stdout: '' },
      { args: add('blocklistd', 'tcp', '192.0.2.0', 24, '22'), env: fail('[-T] [add]'), stdout: '' },
      { args: add('blocklistd', 'tcp', '192.0.2.0', 24, '22'), env: fail('[-qk]'), stdout: '' },
      { args: rem('blocklistd', 'tcp', '192.0.2.0', 24, '22', 'OK'), env: EXIT1, stdout: '' },
      { args: ['flush', 'blocklistd'], env: { STUB_ANCHORS: '  blocklistd/22', STUB_FAIL: '[-T] [flush]' }, stdout: 'OK\n' },
      { args: ['flush', 'blocklistd'], env: EXIT1, stdout: 'OK\n' },
    ],
  });
});

test('ipfilter: the rule text on stdin of ipf -A -f - and ipf -A -r -f -; flush rebuilds the inactive set without the group', async () => {
  await scenario('ipfilter.log', {
    backend: 'ipfilter',
    calls: [
      { args: add('blocklistd', 'tcp', '192.0.2.0', 24, '22'), stdout: 'OK\n' },
      { args: add('blocklistd', 'tcp', '2001:db8::', 64, '22'), stdout: 'OK\n' },
      { args: add('blocklistd', 'tcp', '::ffff:203.0.113.9', 128, '22'), stdout: 'OK\n' },
      // the port is not used: the address is blocked for all ports
      { args: add('blocklistd-int', 'tcp', '198.51.100.7', 32, ''), stdout: 'OK\n' },
      { args: rem('blocklistd', 'tcp', '192.0.2.0', 24, '22', 'OK'), stdout: 'OK\n' },
      { args: rem('blocklistd', 'tcp', '::ffff:203.0.113.9', 128, '22', 'OK'), stdout: 'OK\n' },
      { args: ['flush', 'blocklistd'], env: { STUB_IPFSTAT: ipfstat }, stdout: 'OK\n' },
    ],
  });
});

test('ipfilter: rules without a flags clause (udp, any proto) are single-spaced words', async () => {
  await scenario('ipfilter-noflags.log', {
    backend: 'ipfilter',
    calls: [
      { args: add('blocklistd-ext', 'udp', '198.51.100.7', 32, '53'), stdout: 'OK\n' },
      { args: rem('blocklistd-ext', 'udp', '198.51.100.7', 32, '53', 'OK'), stdout: 'OK\n' },
      { args: add('blocklistd', '', '192.0.2.8', 32, ''), stdout: 'OK\n' },
    ],
  });
});

test('ipfilter: nothing on stdout when ipf fails, the flush stopping at the first failure', async () => {
  await scenario('ipfilter-fail.log', {
    backend: 'ipfilter',
    calls: [
      { args: add('blocklistd', 'tcp', '192.0.2.0', 24, '22'), env: EXIT1, stdout: '' },
      { args: rem('blocklistd', 'tcp', '192.0.2.0', 24, '22', 'OK'), env: EXIT1, stdout: '' },
      { args: ['flush', 'blocklistd'], env: fail('[-Fa]'), stdout: '' },
      { args: ['flush', 'blocklistd'], env: fail('ipf [-I] [-f]'), stdout: '' },
      { args: ['flush', 'blocklistd'], env: fail('ipf [-s]'), stdout: '' },
    ],
  });
});

test('ipfilter: flush does not swap in a rebuilt set when ipfstat could not list the active one', async () => {
  // The inactive set would then hold nothing: swapping it in drops every rule.
  const log = stubLog('ipfstat-fails');
  const result = await helper(['flush', 'blocklistd'], {
    STUB_LOG: log,
    BLOCKLISTD_HELPER_CONF: noConf,
    BLOCKLISTD_BACKEND: 'ipfilter',
    STUB_FAIL: 'ipfstat',
  });
  const calls = readFileSync(log, 'utf8').split('\n');
  assert.ok(calls.includes('ipfstat [-io]'), calls.join('\n'));
  assert.ok(!calls.includes('ipf [-s]'), `the sets were swapped:\n${calls.join('\n')}`);
  assert.equal(result.stdout, '');
});

test('ipfw: table port<port>, rule ipfw_offset + port added only when ipfw show fails, the flush of table "port"', async () => {
  await scenario('ipfw.log', {
    backend: 'ipfw',
    calls: [
      { args: add('blocklistd', 'tcp', '192.0.2.0', 24, '22'), stdout: 'OK\n' },
      { args: add('blocklistd', 'tcp', '2001:db8::', 64, '22'), env: { STUB_IPFW_SHOW: '0' }, stdout: 'OK\n' },
      { args: add('blocklistd', 'tcp', '::ffff:203.0.113.9', 128, '22'), env: { STUB_IPFW_SHOW: '0' }, stdout: 'OK\n' },
      { args: add('blocklistd-ext', 'udp', '198.51.100.7', 32, '53'), stdout: 'OK\n' },
      { args: rem('blocklistd', 'tcp', '192.0.2.0', 24, '22', 'OK'), stdout: 'OK\n' },
      { args: rem('blocklistd', 'tcp', '::ffff:203.0.113.9', 128, '22', 'OK'), stdout: 'OK\n' },
      // upstream's quirk: a flush has no port, so table "port"
      { args: ['flush', 'blocklistd'], stdout: 'OK\n' },
    ],
  });
});

test('ipfw: ipfw_offset and the back end from the configuration file', async () => {
  await scenario('ipfw-offset.log', {
    conf: 'backend=ipfw\nipfw_offset=3000\n',
    calls: [
      { args: add('blocklistd', 'tcp', '192.0.2.0', 24, '22'), stdout: 'OK\n' },
      { args: add('blocklistd', 'udp', '192.0.2.0', 24, '53'), env: { STUB_IPFW_SHOW: '0' }, stdout: 'OK\n' },
    ],
  });
});

test('ipfw: OK only when the address went into the table and the rule exists; a missing table is created', async () => {
  await scenario('ipfw-fail.log', {
    backend: 'ipfw',
    calls: [
      // "create" fails when the table exists already: not an error
      { args: add('blocklistd', 'tcp', '192.0.2.5', 32, '22'), env: fail('[create]'), stdout: 'OK\n' },
      { args: add('blocklistd', 'tcp', '192.0.2.5', 32, '22'), env: fail('[add] [192.0.2.5/32]'), stdout: '' },
      { args: add('blocklistd', 'tcp', '192.0.2.5', 32, '22'), env: fail('[drop]'), stdout: '' },
      { args: rem('blocklistd', 'tcp', '192.0.2.5', 32, '22', 'OK'), env: EXIT1, stdout: '' },
      // the flush's answer is ignored by the daemon; the script always says OK
      { args: ['flush', 'blocklistd'], env: EXIT1, stdout: 'OK\n' },
    ],
  });
});

test('pf: a block of every port (no protocol nor port) in anchor <name>/all, table portall', async () => {
  await scenario('pf-every-port.log', {
    backend: 'pf',
    calls: [
      { args: add('blocklistd', '', '192.0.2.9', 32, ''), stdout: 'OK\n' },
      {
        args: add('blocklistd', '', '2001:db8::', 64, ''),
        env: { STUB_RULES: 'block drop in quick from <portall> to any' },
        stdout: 'OK\n',
      },
      { args: rem('blocklistd', '', '192.0.2.9', 32, '', 'OK'), stdout: 'OK\n' },
    ],
  });
});

test('ipfw: a block of every port (no protocol nor port) in table portall, rule ipfw_offset dropping ip', async () => {
  await scenario('ipfw-every-port.log', {
    backend: 'ipfw',
    calls: [
      { args: add('blocklistd', '', '192.0.2.9', 32, ''), stdout: 'OK\n' },
      { args: rem('blocklistd', '', '192.0.2.9', 32, '', 'OK'), stdout: 'OK\n' },
    ],
  });
});

test(
  'an ::ffff:a.b.c.d address with a mask of 96 or more is IPv4 with the mask less 96 (upstream: /128 ' +
    'only); below 96 it is left untouched',
  async () => {
    // A dual-stack server's IPv4 clients reach the packet filter as IPv4: an
    // ::ffff: network in an IPv6 table would never match them.
    await scenario('mapped-mask.log', {
      calls: [
        { args: add('blocklistd', 'tcp', '::ffff:192.0.2.0', 120, '22'), env: { BLOCKLISTD_BACKEND: 'npf' }, stdout: 'OK 1a\n' },
        {
          args: add('blocklistd', 'tcp', '::ffff:192.0.2.0', 120, '22'),
          env: { BLOCKLISTD_BACKEND: 'pf', STUB_RULES: port22Rule },
          stdout: 'OK\n',
        },
        { args: add('blocklistd', 'tcp', '::ffff:192.0.2.0', 120, '22'), env: { BLOCKLISTD_BACKEND: 'ipfilter' }, stdout: 'OK\n' },
        {
          args: add('blocklistd', 'tcp', '::ffff:192.0.2.0', 120, '22'),
          env: { BLOCKLISTD_BACKEND: 'ipfw', STUB_IPFW_SHOW: '0' },
          stdout: 'OK\n',
        },
        { args: add('blocklistd', 'tcp', '::ffff:0.0.0.0', 96, '22'), env: { BLOCKLISTD_BACKEND: 'npf' }, stdout: 'OK 1b\n' },
        { args: add('blocklistd', 'tcp', '::ffff:0.0.0.0', 64, '22'), env: { BLOCKLISTD_BACKEND: 'npf' }, stdout: 'OK 1c\n' },
      ],
    });
  },
);

test(
  'npf, pf and ipfilter take the rule name as it is, as upstream: a name they cannot read as one plain ' + 'name is refused, nothing run',
  async () => {
    // npf.conf, pf.conf and ipf.conf refer to these names: upstream's (blocklistd, blocklistd-ext) stay as they are
    for (const backend of ['npf', 'pf', 'ipfilter']) {
      for (const name of ['a+b', 'ä', '_x', '-x', '.x', 'a/b', 'a b', 'x\\y', '']) {
        const refused = {
          code: 1,
          stdout: '',
          stderr:
            `blocklistd-helper: rule name '${name}' not usable with ${backend}: letters, digits, '.', '_' and ` +
            `'-' only, starting with a letter or digit\n`,
        };
        for (const args of [add(name, 'tcp', '192.0.2.1', 32, '22'), rem(name, 'tcp', '192.0.2.1', 32, '22', 'OK'), ['flush', name]]) {
          const log = stubLog(`name-${backend}`);
          const result = await helper(args, { STUB_LOG: log, BLOCKLISTD_HELPER_CONF: noConf, BLOCKLISTD_BACKEND: backend });
          assert.deepEqual(result, refused, `${backend} ${args.join(' ')}`);
          assert.equal(readFileSync(log, 'utf8'), '', `${backend} ${args.join(' ')}: nothing run`);
        }
      }
      // in a batch, only that line fails
      const log = stubLog(`name-batch-${backend}`);
      const result = await helper(
        ['batch'],
        { STUB_LOG: log, BLOCKLISTD_HELPER_CONF: noConf, BLOCKLISTD_BACKEND: backend },
        'add a+b tcp 192.0.2.1 32 22 \nadd blocklistd.x_1-y tcp 192.0.2.2 32 22 \n',
      );
      assert.equal(result.code, 0, backend);
      assert.deepEqual(
        result.stdout.split('\n').map((l) => l !== ''),
        [false, true, false],
        `${backend}: ${result.stdout}`,
      );
      assert.match(result.stderr, /rule name 'a\+b' not usable/);
      assert.ok(!readFileSync(log, 'utf8').includes('a+b'), `${backend}: nothing run for a+b`);
    }
  },
);

test('ipfw does not use the rule name, and log records it as it is: any name goes', async () => {
  const log = stubLog('name-ipfw');
  const result = await helper(add('a+b ä\\n', 'tcp', '192.0.2.1', 32, '22'), {
    STUB_LOG: log,
    BLOCKLISTD_HELPER_CONF: noConf,
    BLOCKLISTD_BACKEND: 'ipfw',
    STUB_IPFW_SHOW: '0',
  });
  assert.deepEqual(result, { code: 0, stdout: 'OK\n', stderr: '' });
  const calls = join(dir, 'name-log-calls');
  const env = { STUB_LOG: log, BLOCKLISTD_BACKEND: 'log', BLOCKLISTD_HELPER_CONF: configFile(`log_file=${calls}\n`) };
  // printf, not echo: a backslash in the name stays one
  assert.deepEqual(await helper(add('x\\ny\\c', 'tcp', '192.0.2.1', 32, '22'), env), {
    code: 0,
    stdout: 'OK x\\ny\\c:192.0.2.1/32:22\n',
    stderr: '',
  });
  assert.deepEqual(await helper(['flush', '-n'], env), { code: 0, stdout: 'OK\n', stderr: '' });
  assert.deepEqual(readFileSync(calls, 'utf8'), 'add x\\ny\\c tcp 192.0.2.1 32 22 \nflush -n\n');
});

test('control capabilities prints "batch batch-flush check timeout cut" and runs nothing', async () => {
  for (const backend of ['npf', 'pf', 'ipfilter', 'ipfw', 'log']) {
    const log = stubLog(`capabilities-${backend}`);
    const result = await helper(['capabilities'], { STUB_LOG: log, BLOCKLISTD_HELPER_CONF: noConf, BLOCKLISTD_BACKEND: backend });
    assert.deepEqual(result, { code: 0, stdout: 'batch batch-flush check timeout cut\n', stderr: '' }, backend);
    assert.equal(readFileSync(log, 'utf8'), '', backend);
  }
});

test('control batch: one call per line, one answer per line in order, an empty line for a failure', async () => {
  const batch = (remId: string, answers: string[], env: Record<string, string> = {}): Call[] => [
    { args: ['batch'], stdin: batchInput(remId), env: { STUB_FAIL: '192.0.2.2', ...env }, stdout: answers.map((a) => `${a}\n`).join('') },
  ];
  await scenario('batch-npf.log', { backend: 'npf', calls: batch('1f', ['OK 1a', '', 'OK', 'OK 1c', 'OK 1d']) });
  await scenario('batch-pf.log', { backend: 'pf', calls: batch('OK', ['OK', '', 'OK', 'OK', 'OK'], { STUB_RULES: port22Rule }) });
  await scenario('batch-ipfilter.log', { backend: 'ipfilter', calls: batch('OK', ['OK', '', 'OK', 'OK', 'OK']) });
  await scenario('batch-ipfw.log', { backend: 'ipfw', calls: batch('OK', ['OK', '', 'OK', 'OK', 'OK'], { STUB_IPFW_SHOW: '0' }) });
});

test('an unknown action: "Unknown command" and the usage on stderr, exit 2 (a usage error), nothing on stdout, nothing run', async () => {
  for (const backend of ['npf', 'pf', 'ipfilter', 'ipfw', 'log']) {
    for (const args of [['x'], ['x', 'blocklistd', 'tcp', '192.0.2.1', '32', '22', ''], ['']]) {
      const log = stubLog(`unknown-${backend}`);
      const result = await helper(args, { STUB_LOG: log, BLOCKLISTD_HELPER_CONF: noConf, BLOCKLISTD_BACKEND: backend });
      assert.deepEqual([result.code, result.stdout], [2, ''], `${backend} ${args.join(' ')}`);
      assert.match(
        result.stderr,
        new RegExp(`^blocklistd-helper: Unknown command '${args[0]}'\nusage: blocklistd-helper add\\|rem `),
        `${backend} ${args.join(' ')}`,
      );
      assert.equal(readFileSync(log, 'utf8'), '');
    }
  }
});

test('an unknown back end is an error (exit 1, nothing on stdout); the environment overrides the file', async () => {
  const cases: { env: string | undefined; conf: string; ok: boolean }[] = [
    { env: 'bogus', conf: '', ok: false },
    { env: undefined, conf: 'backend=bogus\n', ok: false },
    { env: 'bogus', conf: 'backend=npf\n', ok: false },
    { env: 'npf', conf: 'backend=bogus\n', ok: true },
  ];
  for (const { env, conf, ok } of cases) {
    const log = stubLog('backend');
    const vars: Record<string, string> = { STUB_LOG: log, BLOCKLISTD_HELPER_CONF: configFile(conf) };
    if (env !== undefined) vars.BLOCKLISTD_BACKEND = env;
    const result = await helper(add('blocklistd', 'tcp', '192.0.2.1', 32, '22'), vars);
    const what = `BLOCKLISTD_BACKEND=${env} conf ${JSON.stringify(conf)}`;
    if (ok) {
      assert.deepEqual(result, { code: 0, stdout: 'OK 1a\n', stderr: '' }, what);
    } else {
      assert.equal(result.code, 1, what);
      assert.equal(result.stdout, '', what);
      assert.match(result.stderr, /^blocklistd-helper: .*'bogus'/, what);
      assert.equal(readFileSync(log, 'utf8'), '', what);
    }
  }
});

test('log: each call recorded in log_file; OK <name>:<address>/<mask>:<port> for add, OK for rem and flush', async () => {
  const log = stubLog('log-backend-stubs');
  const calls = join(dir, 'log-backend-calls');
  const env = { STUB_LOG: log, BLOCKLISTD_BACKEND: 'log', BLOCKLISTD_HELPER_CONF: configFile(`log_file=${calls}\n`) };
  const ok = (stdout: string): RunResult => ({ code: 0, stdout, stderr: '' });
  assert.deepEqual(await helper(add('blocklistd', 'tcp', '192.0.2.0', 24, '22'), env), ok('OK blocklistd:192.0.2.0/24:22\n'));
  assert.deepEqual(await helper(add('blocklistd-ext', 'udp', '2001:db8::', 64, '53'), env), ok('OK blocklistd-ext:2001:db8::/64:53\n'));
  assert.deepEqual(await helper(rem('blocklistd', 'tcp', '192.0.2.0', 24, '22', 'blocklistd:192.0.2.0/24:22'), env), ok('OK\n'));
  assert.deepEqual(await helper(['flush', 'blocklistd'], env), ok('OK\n'));
  assert.deepEqual(
    await helper(['batch'], env, 'add blocklistd tcp 192.0.2.1 32 22 \nrem blocklistd tcp 192.0.2.1 32 22 x\n'),
    ok('OK blocklistd:192.0.2.1/32:22\nOK\n'),
  );
  // One line per call: the action and its arguments (an empty id leaves at most trailing blanks).
  assert.deepEqual(
    readFileSync(calls, 'utf8')
      .split('\n')
      .map((l) => l.trimEnd()),
    [
      'add blocklistd tcp 192.0.2.0 24 22',
      'add blocklistd-ext udp 2001:db8:: 64 53',
      'rem blocklistd tcp 192.0.2.0 24 22 blocklistd:192.0.2.0/24:22',
      'flush blocklistd',
      'add blocklistd tcp 192.0.2.1 32 22',
      'rem blocklistd tcp 192.0.2.1 32 22 x',
      '',
    ],
  );
  assert.equal(readFileSync(log, 'utf8'), '', 'the log back end runs no filter program');

  // Without log_file the calls go to stderr.
  const bare = await helper(add('blocklistd', 'tcp', '192.0.2.0', 24, '22'), {
    STUB_LOG: log,
    BLOCKLISTD_BACKEND: 'log',
    BLOCKLISTD_HELPER_CONF: noConf,
  });
  assert.equal(bare.stdout, 'OK blocklistd:192.0.2.0/24:22\n');
  assert.match(bare.stderr, /^blocklistd-helper: add blocklistd tcp 192\.0\.2\.0 24 22 *\n$/);
});
