// Rule sets and matching: the worked examples E1-E8 of config.md §9 with
// their stated results (or the result our documented decisions give),
// merging and sorting, the shadowing warning, interface rules on this
// machine's interfaces, and loading files and directories.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { nativeFamily } from '../src/address.js';
import { parseIP, toText } from '../src/conf/ip.js';
import { loadConfig } from '../src/conf/load.js';
import { compileRules, matchProbe } from '../src/conf/match.js';
import { parseConfig } from '../src/conf/parse.js';
import { buildRuleSet } from '../src/conf/ruleset.js';
import { interfaceAddresses, systemEnv } from '../src/conf/system.js';
import { ANY, type EffectiveRule, type InterfaceAddresses, type Match, type RuleSet } from '../src/conf/types.js';
import { probeOf } from '../src/daemon/probe.js';
import { encodeSockaddr } from '../src/protocol/wire.js';
import { decodeSockaddr } from './wire-decode.js';
import { formatLocation } from '../src/conf/format.js';
import { isRoot, repoRoot, run, sharedTree, tcpNotification, tempDir } from './support.js';

const env = systemEnv('blocklistd');
const NO_INTERFACES: InterfaceAddresses = new Map();

function ruleSet(text: string): { rules: RuleSet; messages: string[] } {
  const parsed = parseConfig(text, 'test.conf', env);
  const built = buildRuleSet([parsed], env.families);
  const messages = [...parsed.diagnostics, ...built.diagnostics].map((d) => `${d.source.line}: ${d.severity}: ${d.message}`);
  return { rules: built.ruleSet, messages };
}

interface Notify {
  local: string;
  port: number;
  remote: string;
  proto?: 'tcp' | 'udp';
  uid?: number;
}

function match(rules: RuleSet, n: Notify, interfaces = NO_INTERFACES): Match | undefined {
  const local = parseIP(n.local)!;
  const remote = parseIP(n.remote)!;
  return matchProbe(
    compileRules(rules),
    { family: nativeFamily(env.families, local.family), local, port: n.port, proto: n.proto === 'udp' ? 17 : 6, uid: n.uid ?? 0, remote },
    interfaces,
  );
}

/** What the helper's add receives: name proto address mask port; and nfail/duration. */
function helperArgs(e: EffectiveRule): string {
  return `${e.name} ${e.proto === 6 ? 'tcp' : 'udp'} ${e.address} ${e.lmask} ${e.port}`;
}

const order = (rules: RuleSet, section: 'local' | 'remote'): string[] =>
  rules[section].map((r) => formatLocation(r) + (r.family === env.families.inet6 ? '/tcp6' : ''));

describe('worked examples (config.md §9)', () => {
  test('E1: README-style local rules', () => {
    const { rules, messages } = ruleSet(
      [
        '[local]',
        '192.168.1.1:ssh\tstream\ttcp\t*\t-int\t10\t1m',
        '8.8.8.8:ssh\tstream\ttcp\t*\t-ext\t6\t60m',
        'ssh\t\tstream\ttcp6\t*\t*\t6\t60m',
        'http\t\tstream\ttcp\t*\t*\t6\t60m',
      ].join('\n'),
    );
    assert.deepEqual(messages, []);
    // file order between the two hosts: the sort is stable (G38)
    assert.deepEqual(order(rules, 'local'), ['192.168.1.1:22', '8.8.8.8:22', '80', '22/tcp6']);

    let m = match(rules, { local: '192.168.1.1', port: 22, remote: '203.0.113.5' })!;
    assert.equal(helperArgs(m.effective), 'blocklistd-int tcp 203.0.113.5 32 22');
    assert.deepEqual([m.effective.nfail, m.effective.duration], [10, 60]);

    m = match(rules, { local: '8.8.8.8', port: 22, remote: '203.0.113.5' })!;
    assert.deepEqual([m.effective.name, m.effective.nfail, m.effective.duration], ['blocklistd-ext', 6, 3600]);

    // a dual-stack sshd sees the IPv4 client as ::ffff:a.b.c.d: only the tcp6 rule matches
    m = match(rules, { local: '::ffff:192.168.1.1', port: 22, remote: '::ffff:198.51.100.7' })!;
    assert.equal(helperArgs(m.effective), 'blocklistd tcp ::ffff:198.51.100.7 128 22');
    assert.deepEqual([m.effective.nfail, m.effective.duration], [6, 3600]);

    assert.equal(match(rules, { local: '10.0.0.9', port: 22, remote: '203.0.113.5' }), undefined, 'the wildcard ssh rule is tcp6 only');

    m = match(rules, { local: '10.0.0.9', port: 80, remote: '203.0.113.5' })!;
    assert.deepEqual([m.effective.name, m.effective.nfail, m.effective.duration], ['blocklistd', 6, 3600]);
  });

  test('E2: a remote allow-list and the sort trap, with its warning (G37)', () => {
    const { rules, messages } = ruleSet(
      [
        '[local]',
        'ssh\tstream\t*\t*\t*\t3\t1h',
        '[remote]',
        '10.0.0.0/8:ssh\t\t*\t*\t*\t*\t2\t10m',
        '10.0.0.9:ssh\t\t*\t*\t*\t*\t*\t*',
        '10.0.0.10/32:ssh\t*\t*\t*\t*\t*\t*',
      ].join('\n'),
    );
    assert.deepEqual(order(rules, 'remote'), ['10.0.0.10/32:22', '10.0.0.0/8:22', '10.0.0.9:22']);
    assert.deepEqual(messages, [
      '5: warning: the rule for 10.0.0.9 is never used: the network rule 10.0.0.0/8 at test.conf:4 sorts before it ' +
        'and matches the same notifications; write 10.0.0.9/32 to make the host rule win',
    ]);
    const effective = (client: string): [string, number, number] => {
      const e = match(rules, { local: '192.0.2.1', port: 22, remote: client })!.effective;
      return [`${e.address}/${e.lmask}`, e.nfail, e.duration];
    };
    assert.deepEqual(effective('10.0.0.9'), ['10.0.0.9/32', 2, 600], 'the "never" line is unreachable');
    assert.deepEqual(effective('10.0.0.10'), ['10.0.0.10/32', ANY, ANY]);
    assert.deepEqual(effective('10.9.9.9'), ['10.9.9.9/32', 2, 600]);
    assert.deepEqual(effective('192.0.2.1'), ['192.0.2.1/32', 3, 3600]);
  });

  test('E3: masks, local /24 against remote =, =/=, /16 and a host (G40 kept)', () => {
    const local = '[local]\n192.0.2.1:ssh stream * * */24 2 1h\n[remote]\n';
    const helper = (remoteLine: string): string =>
      helperArgs(match(ruleSet(local + remoteLine).rules, { local: '192.0.2.1', port: 22, remote: '198.51.100.77' })!.effective);
    assert.equal(helper(''), 'blocklistd tcp 198.51.100.0 24 22');
    assert.equal(helper('198.51.0.0/16:ssh * * * = = ='), 'blocklistd tcp 198.51.100.0 32 22', 'a name without /mask resets the mask');
    assert.equal(helper('198.51.0.0/16:ssh * * * =/= = ='), 'blocklistd tcp 198.51.100.0 24 22');
    assert.equal(helper('198.51.0.0/16:ssh * * * =/16 = ='), 'blocklistd tcp 198.51.0.0 16 22');
    assert.equal(
      helper('198.51.100.77:ssh * * * * * *'),
      'blocklistd tcp 198.51.100.0 24 22',
      'the host rule cannot match the masked address',
    );

    const { rules } = ruleSet('[local]\n192.0.2.1:ssh stream * * -x 5 1h\n[remote]\n8.8.0.0/16:ssh * * * /24 = =\n');
    const e = match(rules, { local: '192.0.2.1', port: 22, remote: '8.8.4.4' })!.effective;
    assert.deepEqual([helperArgs(e), e.nfail, e.duration], ['blocklistd-x tcp 8.8.4.0 24 22', 5, 3600]);
  });

  test('E4: rules with different selectors are not merged (G36: upstream kept only one)', () => {
    const { rules, messages } = ruleSet('127.0.0.1:27183\tstream\t*\t*\t-a\t5\t1h\n27183\t\tstream\t*\t*\t-b\t2\t10m\n');
    assert.deepEqual(messages, []);
    assert.equal(rules.local.length, 2);
    assert.equal(match(rules, { local: '127.0.0.1', port: 27183, remote: '192.0.2.1' })!.effective.name, 'blocklistd-a');
    const other = match(rules, { local: '127.0.0.2', port: 27183, remote: '192.0.2.1' })!.effective;
    assert.deepEqual([other.name, other.nfail, other.duration], ['blocklistd-b', 2, 600], 'another local address still matches');
  });

  test("E5: the remote pass compares the local rule's owner, not the sender (G41 kept)", () => {
    let { rules } = ruleSet('[local]\n*:ssh stream * * * 3 1h\n[remote]\n*:ssh * * 0 * * *\n');
    assert.equal(match(rules, { local: '192.0.2.1', port: 22, remote: '198.51.100.1', uid: 0 })!.remote, undefined);
    ({ rules } = ruleSet('[local]\n*:ssh stream * root * 3 1h\n[remote]\n*:ssh * * 0 * * *\n'));
    assert.equal(match(rules, { local: '192.0.2.1', port: 22, remote: '198.51.100.1', uid: 0 })!.effective.nfail, ANY);
    assert.equal(
      match(rules, { local: '192.0.2.1', port: 22, remote: '198.51.100.1', uid: 1000 }),
      undefined,
      'the local rule is for root',
    );
  });

  test('E6: a UDP server reporting its peer explicitly on 0.0.0.0:53', () => {
    const { rules } = ruleSet('192.0.2.1:domain dgram udp * -host 3 12h\ndomain dgram udp * * 3 12h\n');
    const m = match(rules, { local: '0.0.0.0', port: 53, remote: '203.0.113.9', proto: 'udp' })!;
    assert.equal(helperArgs(m.effective), 'blocklistd udp 203.0.113.9 32 53');
    assert.deepEqual([m.effective.nfail, m.effective.duration, m.effective.proto], [3, 43200, 17]);
  });

  test('E7: field oddities, with our decisions (G29, G30, G31, G34)', () => {
    const lo = interfaceAddresses().get('lo');
    const { rules, messages } = ruleSet(
      [
        '27184 stream * * * 2 1m,30',
        '27189 stream tcp root * 2 1d12h',
        '27187 stream * * * 2',
        '27188 stream * * * 2 5 extra words',
        '   # indented comment',
        'foo.bar:27182 stream * * * 2 90',
        'lo:27181 stream * * * 2 1h,30m',
        '*:27195 stream * * name:with/colon 2 1s',
      ].join('\n'),
    );
    assert.deepEqual(messages, [
      '1: warning: duration 1m,30 is 90 seconds; upstream blocklistd reads it as 30 seconds',
      '2: warning: duration 1d12h is 129600 seconds; upstream blocklistd reads it as 93600 seconds',
      '3: error: Bad number []',
      '4: warning: extra fields ignored: extra words',
      '6: error: Bad address [foo.bar]',
    ]);
    const byPort = new Map(rules.local.map((r) => [r.port, r]));
    assert.equal(byPort.get(27184)!.duration, 90);
    assert.deepEqual([byPort.get(27189)!.uid, byPort.get(27189)!.family, byPort.get(27189)!.duration], [0, env.families.inet, 129600]);
    assert.equal(byPort.get(27188)!.duration, 5);
    assert.deepEqual(byPort.get(27181)!.address, { kind: 'interface', name: 'lo' });
    assert.equal(byPort.get(27181)!.duration, 5400);
    assert.deepEqual([byPort.get(27195)!.name, byPort.get(27195)!.rmask], ['with/colon', ANY]);
    // the interface rule matches lo's address only, not every address as upstream on Linux
    if (lo !== undefined) {
      const ifs = interfaceAddresses();
      assert.equal(match(rules, { local: '127.0.0.1', port: 27181, remote: '192.0.2.1' }, ifs)?.local.port, 27181);
      assert.equal(match(rules, { local: '192.0.2.200', port: 27181, remote: '192.0.2.1' }, ifs), undefined);
    }
  });

  test('E8: the sample file shipped upstream', () => {
    const text = 'ssh\tstream\t*\t*\t*\t3\t6h\nftp\tstream\t*\t*\t*\t3\t6h\ndomain\t*\t*\tnamed\t*\t3\t12h\n*\t*\t*\t*\t*\t3\t60\n';
    const { rules, messages } = ruleSet(`[local]\n${text}`);
    const hasNamed = env.user('named') !== undefined;
    assert.deepEqual(order(rules, 'local'), hasNamed ? ['53', '22', '21', '*'] : ['22', '21', '*']);
    if (!hasNamed) assert.deepEqual(messages, ['4: error: Bad number for user [named]']);
    const ssh = match(rules, { local: '192.0.2.1', port: 22, remote: '198.51.100.1' })!.effective;
    assert.deepEqual([ssh.nfail, ssh.duration], [3, 21600]);
    const other = match(rules, { local: '192.0.2.1', port: 8080, remote: '198.51.100.1', proto: 'udp' })!.effective;
    assert.deepEqual([other.nfail, other.duration], [3, 60], 'the catch-all');
    // our sample (etc/blocklistd.conf) loads without errors on this host (G43)
    assert.deepEqual(loadConfig('etc/blocklistd.conf', env).diagnostics, []);
  });
});

describe('a received notification against the rules', () => {
  test("the decoded sockaddrs' words reach the state key as inet_ntop text, masked", () => {
    const { rules } = ruleSet(
      [
        '[local]',
        '22\tstream\t*\t*\t*\t3\t24h',
        '[remote]',
        '[2001:db8::]/32\t*\t*\t*\t=/64\t=\t=',
        '[::ffff:0.0.0.0]/96\t*\t*\t*\t=/120\t=\t=',
      ].join('\n'),
    );
    const cases: [string, string, string][] = [
      // local, remote, the key's address
      ['192.0.2.1', '198.51.100.7', '198.51.100.7'],
      ['2001:db8::1', '2001:db8:1:2:3:4:5:6', '2001:db8:1:2::'],
      ['::', '::ffff:192.0.2.77', '::ffff:192.0.2.0'],
      ['::1', '::1.2.3.4', '::1.2.3.4'],
      ['fe80::1', 'fe80:0:0:a::1', 'fe80:0:0:a::1'],
    ];
    for (const [localText, remoteText, key] of cases) {
      const endpoint = (text: string, port: number) => {
        const address = parseIP(text)!;
        const bytes = Buffer.alloc(address.words.length * 4);
        address.words.forEach((w, i) => bytes.writeUInt32BE(w, 4 * i));
        return decodeSockaddr(encodeSockaddr(address.family, bytes, port), 0, address.family === 'inet' ? 16 : 28)!;
      };
      const n = tcpNotification(22, '192.0.2.9', { local: endpoint(localText, 22), remote: endpoint(remoteText, 40000) });
      const probe = probeOf(n, env.families);
      assert.deepEqual(
        [probe.family, probe.port, probe.proto, toText(probe.local), toText(probe.remote)],
        [nativeFamily(env.families, n.local.family), 22, 6, localText, remoteText],
      );
      assert.equal(matchProbe(compileRules(rules), probe, NO_INTERFACES)?.effective.address, key, remoteText);
    }
  });
});

describe('merging and sorting (G36, G37, G38)', () => {
  test('identical selectors merge: the stricter nfail, the longer duration, with a warning', () => {
    const { rules, messages } = ruleSet('ssh stream * * -a 6 1h\nssh stream * * -b 3 10m\nssh stream * * -c * *\n');
    assert.equal(rules.local.length, 1);
    assert.deepEqual([rules.local[0].name, rules.local[0].nfail, rules.local[0].duration], ['blocklistd-a', 3, ANY]);
    assert.deepEqual(messages, [
      '2: warning: same selectors as test.conf:1: merged into it (nfail 3, duration 1h); its name and mask are ignored',
      '3: warning: same selectors as test.conf:1: merged into it (nfail 3, duration *); its name and mask are ignored',
    ]);
  });

  test('upstream sort order: kind, mask, port, type, family, rmask, owner, each descending, ANY last; ties in file order', () => {
    const { rules } = ruleSet(
      [
        '22 stream * * * 3 1h',
        '10.0.0.9:22 stream * * * 3 1h',
        '10.0.0.0/8:22 stream * * * 3 1h',
        '[::1]:22 stream * * * 3 1h',
        'lo:22 stream * * * 3 1h',
        '80 stream * * * 3 1h',
        '22 dgram * * * 3 1h',
        '22 stream tcp6 * * 3 1h',
        '10.0.0.8:22 stream * * */24 3 1h',
        '22 stream * 1000 * 3 1h',
        '22 stream * 0 * 3 1h',
        '10.0.0.0/8:22 stream * * -second 3 1h', // merged into line 3
      ].join('\n'),
    );
    assert.deepEqual(
      rules.local.map((r) => r.source.line),
      [5, 4, 3, 9, 2, 6, 7, 8, 10, 11, 1],
    );
  });
});

describe('interface rules on this machine (G31)', () => {
  const interfaces = interfaceAddresses();
  const up = [...interfaces].filter(([, addresses]) => addresses.length > 0);

  test(
    'an interface rule matches exactly the addresses of that interface',
    { skip: up.length === 0 && 'no interface with an address' },
    () => {
      for (const [name, addresses] of up) {
        const { rules, messages } = ruleSet(`${name}:ssh stream * * -if 3 1h\nssh stream * * -any 3 1h\n`);
        assert.deepEqual(messages, []);
        for (const address of addresses) {
          const text = toText(address);
          const client = address.family === 'inet' ? '192.0.2.1' : '2001:db8::1';
          assert.equal(
            match(rules, { local: text, port: 22, remote: client }, interfaces)?.effective.name,
            'blocklistd-if',
            `${name} ${text}`,
          );
        }
        const elsewhere = match(rules, { local: '192.0.2.254', port: 22, remote: '192.0.2.1' }, interfaces);
        assert.equal(elsewhere?.effective.name, 'blocklistd-any', `${name}: another address`);
      }
    },
  );

  test('addresses with a label (lo:1) belong to their interface', { skip: !isRoot && 'needs root for a network namespace' }, async (t) => {
    const ns = `blt-conf-${process.pid}`;
    const ip = (...args: string[]) => run('ip', args);
    assert.equal((await ip('netns', 'add', ns)).code, 0);
    t.after(() => ip('netns', 'delete', ns));
    assert.equal((await ip('-n', ns, 'link', 'set', 'lo', 'up')).code, 0);
    assert.equal((await ip('-n', ns, 'addr', 'add', '10.9.9.9/32', 'dev', 'lo', 'label', 'lo:1')).code, 0);
    const script = `import { interfaceAddresses } from ${JSON.stringify(join(repoRoot, 'dist/src/conf/system.js'))};
      import { toText } from ${JSON.stringify(join(repoRoot, 'dist/src/conf/ip.js'))};
      console.log(JSON.stringify(Object.fromEntries([...interfaceAddresses()].map(([n, a]) => [n, a.map(toText)]))));`;
    const r = await run('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', script]);
    assert.equal(r.code, 0, r.stderr);
    const addresses = JSON.parse(r.stdout) as Record<string, string[]>;
    assert.ok(addresses.lo.includes('10.9.9.9') && addresses.lo.includes('127.0.0.1'), r.stdout);
    assert.equal(addresses['lo:1'], undefined);
  });

  test('an interface rule matches nothing while its interface has no address', () => {
    const { rules } = ruleSet('lo:ssh stream * * -if 3 1h\n');
    assert.equal(match(rules, { local: '127.0.0.1', port: 22, remote: '192.0.2.1' }, new Map([['lo', []]])), undefined);
  });
});

describe('loading files and directories (config.md §1, G39, G14)', () => {
  const dir = tempDir();

  test('a file and its .d directory, entries in byte order, dotfiles skipped, errors with file:line', () => {
    const conf = join(dir, 'blocklistd.conf');
    writeFileSync(conf, 'ssh stream * * -main 3 1h\n');
    mkdirSync(`${conf}.d`);
    writeFileSync(join(`${conf}.d`, 'b.conf'), '21 stream * * -b 3 1h\nbad\n');
    writeFileSync(join(`${conf}.d`, 'a.conf'), '[remote]\n10.0.0.0/8 * * * = * *\n');
    writeFileSync(join(`${conf}.d`, '.hidden'), '80 stream * * -hidden 3 1h\n');
    writeFileSync(join(`${conf}.d`, 'B.conf'), '25 stream * * -upper 3 1h\n');
    mkdirSync(join(`${conf}.d`, 'sub'));
    const r = loadConfig(conf, env);
    assert.deepEqual(r.files, [conf, join(`${conf}.d`, 'B.conf'), join(`${conf}.d`, 'a.conf'), join(`${conf}.d`, 'b.conf')]);
    assert.deepEqual(
      r.ruleSet.local.map((x) => x.name),
      ['blocklistd-upper', 'blocklistd-main', 'blocklistd-b'],
    );
    assert.equal(r.ruleSet.remote.length, 1, 'a remote section in one file does not leak into the next');
    assert.deepEqual(
      r.diagnostics.map((d) => `${d.source.file}:${d.source.line}: ${d.message}`),
      [
        `${join(`${conf}.d`, 'sub')}:0: Cannot open '${join(`${conf}.d`, 'sub')}' (Is a directory)`,
        `${join(`${conf}.d`, 'b.conf')}:2: Bad number for service [bad]`,
      ],
    );
    assert.equal(r.found, true);
  });

  test('an unreadable directory is an error, not a crash', async () => {
    // root reads anything: the check runs as nobody then
    const conf = join(dir, 'locked.conf');
    writeFileSync(conf, 'ssh stream * * * 3 1h\n');
    mkdirSync(`${conf}.d`, { mode: 0o000 });
    chmodSync(dir, 0o755);
    const tree = isRoot ? sharedTree() : repoRoot;
    const script = `import { loadConfig } from ${JSON.stringify(join(tree, 'dist/src/conf/load.js'))};
      import { systemEnv } from ${JSON.stringify(join(tree, 'dist/src/conf/system.js'))};
      const r = loadConfig(${JSON.stringify(conf)}, systemEnv());
      console.log(JSON.stringify({ found: r.found, rules: r.ruleSet.local.length, messages: r.diagnostics.map((d) => d.message) }));`;
    const r = await run(process.execPath, ['--input-type=module', '-e', script], isRoot ? { uid: 65534, gid: 65534 } : {});
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { found: true, rules: 1, messages: [`Cannot open '${conf}.d' (Permission denied)`] });
  });

  test('a directory as the path; .d beside it is not read', () => {
    const d = join(dir, 'confdir');
    mkdirSync(d);
    mkdirSync(`${d}.d`);
    writeFileSync(join(d, '10-ssh'), 'ssh stream * * * 3 1h\n');
    writeFileSync(join(`${d}.d`, 'x'), 'ftp stream * * * 3 1h\n');
    const r = loadConfig(d, env);
    assert.deepEqual(
      r.ruleSet.local.map((x) => x.port),
      [22],
    );
  });

  test('a missing path: an error, and found is false so that the caller keeps its rules', () => {
    const missing = join(dir, 'missing.conf');
    const r = loadConfig(missing, env);
    assert.equal(r.found, false);
    assert.deepEqual(
      r.diagnostics.map((d) => d.message),
      [`Cannot open '${missing}' (No such file or directory)`],
    );
  });

  test('only the .d directory exists: it is used', () => {
    const base = join(dir, 'only.conf');
    mkdirSync(`${base}.d`);
    writeFileSync(join(`${base}.d`, 'r'), 'ssh stream * * * 3 1h\n');
    const r = loadConfig(base, env);
    assert.equal(r.found, true);
    assert.deepEqual(r.diagnostics, []);
    assert.equal(r.ruleSet.local.length, 1);
  });

  test('every load builds the rule set afresh: a removed rule is gone (G14)', () => {
    const conf = join(dir, 'reload.conf');
    writeFileSync(conf, 'ssh stream * * * 3 1h\nftp stream * * * 3 1h\n');
    assert.equal(loadConfig(conf, env).ruleSet.local.length, 2);
    writeFileSync(conf, 'ssh stream * * * 6 1h\n');
    const r = loadConfig(conf, env);
    assert.deepEqual(
      r.ruleSet.local.map((x) => [x.port, x.nfail]),
      [[22, 6]],
    );
  });
});
