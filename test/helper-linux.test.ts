// bin/blocklistd-helper's Linux back ends (helper.md §1-§3) against the real
// packet filters: nftables, ipset with iptables/ip6tables, and iptables.
// Every test works in network namespaces of its own; what the helper did is
// read back from the filter's own listing (nft -j list ruleset, ipset save,
// iptables-save/ip6tables-save), and the traffic tests send TCP connections
// across a veth pair between two namespaces.  Needs root; installs the
// filters (Debian packages) when they are missing.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test, type TestContext } from 'node:test';
import { isRoot, repoRoot, run, sharedTree, succeeds, tempDir, until, type RunResult } from './support.js';

// the filters' programs live in the sbin directories
process.env.PATH = `/usr/sbin:/sbin:${process.env.PATH ?? '/usr/bin:/bin'}`;

const HELPER = join(repoRoot, 'bin/blocklistd-helper');
/** Counts the calls of a packet filter's programs (see the script). */
const COUNTED = join(repoRoot, 'test/fixtures/netns/counted');
const BACKENDS = ['nftables', 'ipset', 'iptables'] as const;
type Backend = (typeof BACKENDS)[number];
type Family = 4 | 6;

/** How long a connection to a blocked port is given before it counts as dropped. */
const CONNECT_TIMEOUT_MS = 1000;

// --- namespaces ---------------------------------------------------------

const namespaces = new Set<string>();
process.on('exit', () => {
  // a test process that dies still takes its namespaces along
  for (const ns of namespaces) spawnSync('ip', ['netns', 'delete', ns]);
});
let serial = 0;

/** A network namespace removed after the test, with the helper's lock file and an empty configuration. */
class Netns {
  private constructor(
    readonly name: string,
    private readonly dir: string,
  ) {}

  static async create(t: TestContext, tag: string): Promise<Netns> {
    const name = `blh-${process.pid}-${++serial}-${tag}`;
    await succeeds(run('ip', ['netns', 'add', name]), `ip netns add ${name}`);
    namespaces.add(name);
    t.after(async () => {
      await run('ip', ['netns', 'delete', name]);
      namespaces.delete(name);
    });
    await succeeds(run('ip', ['-n', name, 'link', 'set', 'lo', 'up']), 'lo up');
    return new Netns(name, tempDir('blocklistd-helper-'));
  }

  /** A program run inside the namespace. */
  exec(args: string[], input?: string): Promise<RunResult> {
    return run('ip', ['netns', 'exec', this.name, ...args], { input });
  }

  /**
   * The helper inside the namespace, called as the daemon calls it (argv[0]
   * `control`, which a #! script does not see), the back end forced, its
   * lock file in a temp dir and no /etc/blocklistd-helper.conf.
   */
  helper(backend: string, args: string[], input?: string, wrap: string[] = []): Promise<RunResult> {
    const env = [
      `BLOCKLISTD_BACKEND=${backend}`,
      `BLOCKLISTD_HELPER_LOCK=${join(this.dir, 'helper.lock')}`,
      `BLOCKLISTD_HELPER_CONF=${join(this.dir, 'absent.conf')}`,
    ];
    return this.exec(['env', ...env, ...wrap, 'bash', '-c', 'exec -a control "$0" "$@"', HELPER, ...args], input);
  }

  /** The helper with the calls of `programs` (nft, ipset) counted: program → the argument lines of its calls. */
  async counted(
    backend: Backend,
    args: string[],
    input: string,
    programs: string[],
  ): Promise<{ result: RunResult; calls: Record<string, string[]> }> {
    const dir = tempDir('blocklistd-counted-');
    const result = await this.helper(backend, args, input, [
      'unshare',
      '--mount',
      '--propagation',
      'private',
      COUNTED,
      dir,
      ...programs,
      '--',
    ]);
    const calls = Object.fromEntries(
      programs.map((p) => [
        p,
        readFileSync(join(dir, `calls.${p}`), 'utf8')
          .split('\n')
          .slice(0, -1),
      ]),
    );
    return { result, calls };
  }
}

/** A call that must print exactly `OK`. */
async function ok(ns: Netns, backend: Backend, args: string[]): Promise<void> {
  const r = await ns.helper(backend, args);
  assert.equal(r.stdout, 'OK\n', `${args.join(' ')}: stdout ${JSON.stringify(r.stdout)}, stderr ${r.stderr}`);
}

/** The programs whose calls a batch counts: the transaction's. */
const FILTER_PROGRAM: Record<Backend, string[]> = { nftables: ['nft'], ipset: ['ipset'], iptables: [] };

/**
 * A batch call: its output lines, how long it took, and the calls of the
 * back end's transaction program (nft, ipset), one argument line each.
 */
async function batch(ns: Netns, backend: Backend, lines: string[]): Promise<{ out: string[]; ms: number; calls: string[] }> {
  const start = process.hrtime.bigint();
  const input = lines.map((l) => `${l}\n`).join('');
  const programs = FILTER_PROGRAM[backend];
  const { result: r, calls } =
    programs.length > 0
      ? await ns.counted(backend, ['batch'], input, programs)
      : { result: await ns.helper(backend, ['batch'], input), calls: {} };
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout.split('\n');
  assert.equal(out.pop(), '', 'the answer ends with a newline');
  return { out, ms, calls: programs.length > 0 ? calls[programs[0]] : [] };
}

/**
 * A batch was one transaction: one `nft -f` besides listing the table's
 * sets; for ipset one `ipset restore` besides the sets' set-up.
 */
function assertOneTransaction(backend: Backend, calls: string[]): void {
  if (backend === 'nftables')
    assert.deepEqual(
      calls.filter((c) => !c.startsWith('-t list sets ')),
      ['-f -'],
      'one nft -f',
    );
  if (backend === 'ipset') {
    assert.deepEqual(
      calls.filter((c) => !c.startsWith('create ')),
      ['restore'],
      'one ipset restore',
    );
  }
}

// --- what the packet filter holds ---------------------------------------

/** A block as the tests write it: `proto address/mask port`. */
const blk = (proto: string, address: string, mask: number | string, port: number | string): string => `${proto} ${address}/${mask} ${port}`;
const fullMask = (address: string): number => (address.includes(':') ? 128 : 32);
const sorted = (list: string[]): string[] => [...list].sort();

/**
 * A rule name as the helper makes object names of it: every byte but a
 * letter, a digit or "-" as _ and two hex digits, and so a first byte that is
 * not a letter; "_" for the empty name; longer than `max`: cut, "_h" and 16
 * hex digits of the name's SHA-256.
 */
function encodedName(name: string, max: number): string {
  const bytes = [...Buffer.from(name)];
  const kept = (b: number, i: number): boolean =>
    /[A-Za-z]/.test(String.fromCharCode(b)) || (i > 0 && /[0-9-]/.test(String.fromCharCode(b)));
  const n =
    bytes.length === 0 ? '_' : bytes.map((b, i) => (kept(b, i) ? String.fromCharCode(b) : `_${b.toString(16).padStart(2, '0')}`)).join('');
  return n.length <= max ? n : `${n.slice(0, max - 18)}_h${createHash('sha256').update(name).digest('hex').slice(0, 16)}`;
}

/** A rule name in nftables: encoded, in the helper's own table without prefix. */
const nftBase = (name: string): string => encodedName(name, 200);
/** A rule name's iptables chain: "bl-" and the name encoded, 28 characters at most. */
const iptablesChain = (name: string): string => `bl-${encodedName(name, 25)}`;

/** The filter object holding a rule name's blocks of one family (nftables: its set of single addresses). */
function objectName(backend: Backend, name: string, family: Family): string {
  switch (backend) {
    case 'nftables':
      return `${nftBase(name)}-v${family}`;
    case 'ipset':
      return `bl-${encodedName(name, 25)}-${family}`;
    case 'iptables':
      return `${family}:${iptablesChain(name)}`;
  }
}

interface Listing {
  /** The blocks of each filter object (nft set, ipset set, `<family>:<chain>`), sorted; an object without blocks has []. */
  blocks: Map<string, string[]>;
  /** Everything else: tables, sets, chains, rules, INPUT's rules, to see that nothing is there twice. */
  frame: string[];
}

const count = (list: string[], item: string): number => list.filter((x) => x === item).length;

interface NftItem {
  table?: { family: string; name: string };
  set?: { family: string; table: string; name: string; type: unknown; flags?: string[]; elem?: unknown[] };
  chain?: { family: string; table: string; name: string; type?: string; hook?: string; prio?: number; policy?: string };
  rule?: { family: string; table: string; chain: string; expr: unknown[] };
}
type NftValue = string | number | { prefix: { addr: string; len: number } } | { range: unknown[] };

/** One element of a `proto . address . port` set. */
function nftElement(element: unknown): string {
  let e = element as { concat?: NftValue[]; elem?: { val: { concat: NftValue[] } } };
  if (e.elem !== undefined) e = e.elem.val;
  assert.ok(Array.isArray(e.concat) && e.concat.length === 3, `element ${JSON.stringify(element)}`);
  const [proto, address, port] = e.concat;
  if (typeof address === 'string') return blk(String(proto), address, fullMask(address), String(port));
  assert.ok(typeof address === 'object' && 'prefix' in address, `element ${JSON.stringify(element)}`);
  return blk(String(proto), address.prefix.addr, address.prefix.len, String(port));
}

async function nftListing(ns: Netns): Promise<Listing> {
  const r = await succeeds(ns.exec(['nft', '-j', 'list', 'ruleset']), 'nft -j list ruleset');
  const items = (JSON.parse(r.stdout) as { nftables: NftItem[] }).nftables;
  const blocks = new Map<string, string[]>();
  const frame: string[] = [];
  for (const { table, set, chain, rule } of items) {
    if (table) frame.push(`table ${table.family} ${table.name}`);
    if (set) {
      frame.push(`set ${set.family} ${set.table} ${set.name} ${JSON.stringify(set.type)} ${(set.flags ?? []).join(',')}`);
      if (set.family === 'inet' && set.table === 'blocklistd') blocks.set(set.name, sorted((set.elem ?? []).map(nftElement)));
    }
    if (chain) frame.push(`chain ${chain.family} ${chain.table} ${chain.name} ${chain.type} ${chain.hook} ${chain.prio} ${chain.policy}`);
    if (rule) frame.push(`rule ${rule.family} ${rule.table} ${rule.chain} ${JSON.stringify(rule.expr)}`);
  }
  return { blocks, frame };
}

/** iptables-save and ip6tables-save, counters dropped, each line prefixed with its family. */
async function xtablesLines(ns: Netns): Promise<string[]> {
  const lines: string[] = [];
  for (const family of [4, 6] as const) {
    const r = await succeeds(ns.exec([family === 4 ? 'iptables-save' : 'ip6tables-save']), 'iptables-save');
    for (const line of r.stdout.split('\n')) {
      if (line === '' || line.startsWith('#') || line === 'COMMIT') continue;
      lines.push(`${family} ${line.replace(/ \[\d+:\d+\]$/, '')}`);
    }
  }
  return lines;
}

async function ipsetListing(ns: Netns): Promise<Listing> {
  const r = await succeeds(ns.exec(['ipset', 'save']), 'ipset save');
  const blocks = new Map<string, string[]>();
  const frame: string[] = [];
  for (const line of r.stdout.split('\n')) {
    // the host's own sets: only their presence and content matter
    if (/^(create|add) (?!bl-)/.test(line)) {
      frame.push(line);
      continue;
    }
    const create = /^create (\S+) (\S+) family (\S+)/.exec(line);
    if (create) {
      frame.push(`ipset ${create[1]} ${create[2]} ${create[3]}`);
      blocks.set(create[1], []);
      continue;
    }
    // the sets take kernel timeouts (helper.md §1.8): a block without one has 0
    const add = /^add (\S+) (.+),(\w+):(\d+)(?: timeout 0)?$/.exec(line);
    if (add) {
      const [address, mask] = add[2].split('/');
      blocks.get(add[1])!.push(blk(add[3], address, mask ?? fullMask(address), add[4]));
    } else assert.equal(line, '', `ipset save: ${line}`);
  }
  for (const list of blocks.values()) list.sort();
  return { blocks, frame: [...frame, ...(await xtablesLines(ns))] };
}

async function iptablesListing(ns: Netns): Promise<Listing> {
  const blocks = new Map<string, string[]>();
  const frame: string[] = [];
  for (const line of await xtablesLines(ns)) {
    const chain = /^([46]) :(\S+) -$/.exec(line);
    if (chain) blocks.set(`${chain[1]}:${chain[2]}`, []);
    const drop = /^([46]) -A (\S+) -s (\S+)\/(\d+) -p (\w+) -m \w+ --dport (\d+) -j DROP$/.exec(line);
    if (drop && drop[2] !== 'INPUT') blocks.get(`${drop[1]}:${drop[2]}`)!.push(blk(drop[5], drop[3], drop[4], drop[6]));
    else frame.push(line);
  }
  for (const list of blocks.values()) list.sort();
  return { blocks, frame };
}

function listing(ns: Netns, backend: Backend): Promise<Listing> {
  switch (backend) {
    case 'nftables':
      return nftListing(ns);
    case 'ipset':
      return ipsetListing(ns);
    case 'iptables':
      return iptablesListing(ns);
  }
}

/**
 * The filter objects holding a rule name's blocks of one family: the set or
 * chain; for nftables `<name>-v4` and the `<name>-v4-<mask>` beside it
 * (single addresses, networks of each mask).
 */
function objectsOf(l: Listing, backend: Backend, name: string, family: Family): string[] {
  const base = objectName(backend, name, family);
  if (backend !== 'nftables') return l.blocks.has(base) ? [base] : [];
  return [...l.blocks.keys()].filter((k) => k === base || k.startsWith(`${base}-`));
}

/** A rule name's blocks of one family, sorted; undefined when the filter has no object for them. */
function familyBlocks(l: Listing, backend: Backend, name: string, family: Family): string[] | undefined {
  const objects = objectsOf(l, backend, name, family);
  return objects.length === 0 ? undefined : sorted(objects.flatMap((o) => l.blocks.get(o)!));
}

/** The blocks of a rule name, per family; undefined when the filter has no object for it. */
async function blocksOf(ns: Netns, backend: Backend, name: string): Promise<Record<Family, string[] | undefined>> {
  const l = await listing(ns, backend);
  return { 4: familyBlocks(l, backend, name, 4), 6: familyBlocks(l, backend, name, 6) };
}

/** What must be there exactly once for a rule name that has blocks of `families`. */
function assertFrameOnce(l: Listing, backend: Backend, name: string, families: Family[]): void {
  for (const family of families) {
    const object = objectName(backend, name, family);
    switch (backend) {
      case 'nftables': {
        // one chain hooked to input; each set once, and one rule dropping what it holds
        const chain = `${nftBase(name)}-input`;
        assert.equal(l.frame.filter((f) => f.startsWith(`chain inet blocklistd ${chain} filter input `)).length, 1, `chain ${chain}`);
        const rules = l.frame.filter((f) => f.startsWith(`rule inet blocklistd ${chain} `));
        assert.equal(new Set(rules).size, rules.length, `a rule of ${chain} twice`);
        const sets = objectsOf(l, backend, name, family);
        assert.ok(sets.length > 0, `a set of ${object}`);
        for (const set of sets) {
          assert.equal(l.frame.filter((f) => f.startsWith(`set inet blocklistd ${set} `)).length, 1, `set ${set}`);
          assert.equal(rules.filter((r) => r.includes(`"@${set}"`) && r.includes('{"drop":null}')).length, 1, `rule dropping @${set}`);
        }
        break;
      }
      case 'ipset':
        assert.equal(count(l.frame, `ipset ${object} hash:net,port ${family === 4 ? 'inet' : 'inet6'}`), 1, `set ${object}`);
        assert.equal(count(l.frame, `${family} -A INPUT -m set --match-set ${object} src,dst -j DROP`), 1, `INPUT rule for ${object}`);
        break;
      case 'iptables': {
        const chain = iptablesChain(name);
        assert.equal(count(l.frame, `${family} :${chain} -`), 1, `chain ${object}`);
        assert.equal(count(l.frame, `${family} -A INPUT -j ${chain}`), 1, `jump to ${object}`);
        break;
      }
    }
  }
}

// --- traffic -------------------------------------------------------------

/** Connects from `localAddress` and prints what the server sent, `timeout`, or `error <code>`. */
const CONNECT = `const [host, localAddress, port, ms] = process.argv.slice(1);
const s = require('net').connect({ host, localAddress, port: Number(port) });
let data = '';
s.setTimeout(Number(ms), () => { process.stdout.write('timeout'); process.exit(0); });
s.on('data', (d) => (data += d));
s.on('end', () => { process.stdout.write(data); process.exit(0); });
s.on('error', (e) => { process.stdout.write('error ' + e.code); process.exit(0); });`;

/**
 * A server namespace (10.99.0.1, fd99::1) and a client namespace (10.99.0.2/.3,
 * fd99::2/::3) joined by a veth pair, a TCP server on [::]:2222 answering `hi`.
 */
async function servedPair(t: TestContext): Promise<{ srv: Netns; connect: (from: string) => Promise<string> }> {
  const srv = await Netns.create(t, 'srv');
  const cli = await Netns.create(t, 'cli');
  const ip = (...args: string[]): Promise<RunResult> => succeeds(run('ip', args), `ip ${args.join(' ')}`);
  const srvMac = '02:00:00:99:00:01';
  const cliMac = '02:00:00:99:00:02';
  await ip(
    '-n',
    srv.name,
    'link',
    'add',
    'blh0',
    'address',
    srvMac,
    'type',
    'veth',
    'peer',
    'name',
    'blh1',
    'address',
    cliMac,
    'netns',
    cli.name,
  );
  await ip('-n', srv.name, 'addr', 'add', '10.99.0.1/24', 'dev', 'blh0');
  await ip('-n', srv.name, 'addr', 'add', 'fd99::1/64', 'dev', 'blh0', 'nodad');
  for (const address of ['10.99.0.2/24', '10.99.0.3/24']) await ip('-n', cli.name, 'addr', 'add', address, 'dev', 'blh1');
  for (const address of ['fd99::2/64', 'fd99::3/64']) await ip('-n', cli.name, 'addr', 'add', address, 'dev', 'blh1', 'nodad');
  await ip('-n', srv.name, 'link', 'set', 'blh0', 'up');
  await ip('-n', cli.name, 'link', 'set', 'blh1', 'up');
  // fixed neighbours: no ARP or neighbour discovery to race with the first connections
  for (const address of ['10.99.0.2', '10.99.0.3', 'fd99::2', 'fd99::3'])
    await ip('-n', srv.name, 'neigh', 'replace', address, 'lladdr', cliMac, 'dev', 'blh0', 'nud', 'permanent');
  for (const address of ['10.99.0.1', 'fd99::1'])
    await ip('-n', cli.name, 'neigh', 'replace', address, 'lladdr', srvMac, 'dev', 'blh1', 'nud', 'permanent');
  const server = spawn(
    'ip',
    [
      'netns',
      'exec',
      srv.name,
      process.execPath,
      '-e',
      "require('net').createServer((c) => c.end('hi')).listen(2222, '::', () => console.log('listening'))",
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  t.after(() => server.kill('SIGKILL'));
  let said = '';
  server.stdout.on('data', (d: Buffer) => (said += d.toString()));
  await until(() => said.includes('listening'), 10_000);
  const connect = async (from: string): Promise<string> => {
    const to = from.includes(':') ? 'fd99::1' : '10.99.0.1';
    const r = await succeeds(
      cli.exec([process.execPath, '-e', CONNECT, to, from, '2222', String(CONNECT_TIMEOUT_MS)]),
      `connect from ${from}`,
    );
    return r.stdout;
  };
  return { srv, connect };
}

/** Connects from each address at once: address → what happened. */
async function connectAll(connect: (from: string) => Promise<string>, from: string[]): Promise<Record<string, string>> {
  return Object.fromEntries(await Promise.all(from.map(async (a) => [a, await connect(a)] as const)));
}

// --- packages --------------------------------------------------------------

function missingPrograms(): string[] {
  return ['nft', 'ipset', 'iptables', 'ip6tables', 'iptables-save', 'ip6tables-save', 'ip', 'flock', 'unshare', 'mount', 'bash'].filter(
    (p) => spawnSync('sh', ['-c', `command -v ${p}`]).status !== 0,
  );
}

async function installFilters(): Promise<void> {
  if (missingPrograms().length === 0) return;
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  await succeeds(run('apt-get', ['update'], { env }), 'apt-get update');
  await succeeds(
    run('apt-get', ['install', '-y', '--no-install-recommends', 'nftables', 'iptables', 'ipset', 'iproute2', 'util-linux'], { env }),
    'apt-get install',
  );
  assert.deepEqual(missingPrograms(), [], 'still missing after apt-get install');
}

// --- the tests ---------------------------------------------------------------

const notRoot = !isRoot && 'needs root: network namespaces and packet filters (CI runs as root)';
if (notRoot) console.log(`helper-linux: skipped, ${notRoot}`);

describe('blocklistd-helper on Linux (helper.md §1-§3)', { skip: notRoot, concurrency: true }, () => {
  before(installFilters);

  for (const backend of BACKENDS) {
    describe(backend, { concurrency: false }, () => {
      const obj = (name: string, family: Family): string => objectName(backend, name, family);

      test('add, rem and flush: IPv4 and IPv6, masks /32 /24 /128 /64, ports, tcp and udp', async (t) => {
        const ns = await Netns.create(t, backend);
        const caps = await ns.helper(backend, ['capabilities']);
        assert.equal(caps.stdout, 'batch batch-flush check timeout cut\n');
        const adds = [
          ['tcp', '192.0.2.1', '32', '22'],
          ['udp', '192.0.2.0', '24', '53'],
          ['tcp', '198.51.100.0', '24', '8080'],
          ['tcp', '2001:db8::1', '128', '22'],
          ['udp', '2001:db8:1::', '64', '53'],
        ];
        for (const a of adds) await ok(ns, backend, ['add', 'blocklistd', ...a, '']);
        const l = await listing(ns, backend);
        assert.deepEqual(
          familyBlocks(l, backend, 'blocklistd', 4),
          sorted([blk('tcp', '192.0.2.1', 32, 22), blk('udp', '192.0.2.0', 24, 53), blk('tcp', '198.51.100.0', 24, 8080)]),
        );
        assert.deepEqual(
          familyBlocks(l, backend, 'blocklistd', 6),
          sorted([blk('tcp', '2001:db8::1', 128, 22), blk('udp', '2001:db8:1::', 64, 53)]),
        );
        assertFrameOnce(l, backend, 'blocklistd', [4, 6]);

        await ok(ns, backend, ['rem', 'blocklistd', 'tcp', '192.0.2.1', '32', '22', 'id-1']);
        await ok(ns, backend, ['rem', 'blocklistd', 'udp', '2001:db8:1::', '64', '53', 'id-2']);
        assert.deepEqual(await blocksOf(ns, backend, 'blocklistd'), {
          4: sorted([blk('udp', '192.0.2.0', 24, 53), blk('tcp', '198.51.100.0', 24, 8080)]),
          6: [blk('tcp', '2001:db8::1', 128, 22)],
        });

        await ok(ns, backend, ['flush', 'blocklistd']);
        assert.deepEqual(await blocksOf(ns, backend, 'blocklistd'), { 4: [], 6: [] });
        await ok(ns, backend, ['flush', 'blocklistd']);
        await ok(ns, backend, ['add', 'blocklistd', 'udp', '192.0.2.7', '32', '53', '']);
        assert.deepEqual(await blocksOf(ns, backend, 'blocklistd'), { 4: [blk('udp', '192.0.2.7', 32, 53)], 6: [] });
      });

      test('::ffff:198.51.100.7 with mask 128 is the IPv4 block 198.51.100.7/32', async (t) => {
        const ns = await Netns.create(t, backend);
        await ok(ns, backend, ['add', 'blocklistd', 'tcp', '::ffff:198.51.100.7', '128', '22', '']);
        const l = await listing(ns, backend);
        assert.deepEqual(familyBlocks(l, backend, 'blocklistd', 4), [blk('tcp', '198.51.100.7', 32, 22)]);
        assert.deepEqual(familyBlocks(l, backend, 'blocklistd', 6) ?? [], []);
        // rem takes the same address the daemon added with
        await ok(ns, backend, ['rem', 'blocklistd', 'tcp', '::ffff:198.51.100.7', '128', '22', 'OK']);
        assert.deepEqual((await blocksOf(ns, backend, 'blocklistd'))[4], []);
      });

      test('a repeated add is idempotent: no second element, set, chain, INPUT rule or jump', async (t) => {
        const ns = await Netns.create(t, backend);
        await ok(ns, backend, ['add', 'blocklistd', 'tcp', '192.0.2.1', '32', '22', '']);
        await ok(ns, backend, ['add', 'blocklistd', 'tcp', '2001:db8::', '64', '22', '']);
        const first = await listing(ns, backend);
        assertFrameOnce(first, backend, 'blocklistd', [4, 6]);
        for (let i = 0; i < 3; i++) {
          await ok(ns, backend, ['add', 'blocklistd', 'tcp', '192.0.2.1', '32', '22', '']);
          await ok(ns, backend, ['add', 'blocklistd', 'tcp', '2001:db8::', '64', '22', '']);
        }
        const again = await listing(ns, backend);
        assert.deepEqual(again, first);
        // another block of the same name: a new element, nothing else
        await ok(ns, backend, ['add', 'blocklistd', 'udp', '192.0.2.2', '32', '53', '']);
        const more = await listing(ns, backend);
        assert.deepEqual(more.frame, first.frame);
        assert.deepEqual(
          familyBlocks(more, backend, 'blocklistd', 4),
          sorted([blk('tcp', '192.0.2.1', 32, 22), blk('udp', '192.0.2.2', 32, 53)]),
        );
      });

      test('rem of a block that is not there prints OK and changes nothing', async (t) => {
        const ns = await Netns.create(t, backend);
        // a name the filter has never heard of: nothing gets created for it
        const empty = await listing(ns, backend);
        await ok(ns, backend, ['rem', 'blocklistd', 'tcp', '192.0.2.1', '32', '22', 'id']);
        await ok(ns, backend, ['rem', 'blocklistd', 'tcp', '2001:db8::1', '128', '22', 'id']);
        assert.deepEqual(await listing(ns, backend), empty);
        await ok(ns, backend, ['add', 'blocklistd', 'tcp', '192.0.2.1', '32', '22', '']);
        await ok(ns, backend, ['add', 'blocklistd', 'tcp', '2001:db8::1', '128', '22', '']);
        const before = await listing(ns, backend);
        // same address, other port, proto or mask; another address; twice the same rem
        for (const r of [
          ['tcp', '192.0.2.1', '32', '23'],
          ['udp', '192.0.2.1', '32', '22'],
          ['tcp', '192.0.2.0', '24', '22'],
          ['tcp', '192.0.2.2', '32', '22'],
          ['tcp', '2001:db8::2', '128', '22'],
          ['tcp', '2001:db8::', '64', '22'],
        ]) {
          await ok(ns, backend, ['rem', 'blocklistd', ...r, 'id']);
        }
        assert.deepEqual(await listing(ns, backend), before);
        await ok(ns, backend, ['rem', 'blocklistd', 'tcp', '192.0.2.1', '32', '22', 'id']);
        await ok(ns, backend, ['rem', 'blocklistd', 'tcp', '192.0.2.1', '32', '22', 'id']);
        assert.deepEqual(await blocksOf(ns, backend, 'blocklistd'), { 4: [], 6: [blk('tcp', '2001:db8::1', 128, 22)] });
      });

      test("flush of one name leaves another name's blocks; flush of an unknown name is OK", async (t) => {
        const ns = await Netns.create(t, backend);
        for (const name of ['blocklistd', 'blocklistd-other']) {
          await ok(ns, backend, ['add', name, 'tcp', '192.0.2.1', '32', '22', '']);
          await ok(ns, backend, ['add', name, 'udp', '2001:db8::', '64', '53', '']);
        }
        await ok(ns, backend, ['flush', 'blocklistd']);
        assert.deepEqual(await blocksOf(ns, backend, 'blocklistd'), { 4: [], 6: [] });
        assert.deepEqual(await blocksOf(ns, backend, 'blocklistd-other'), {
          4: [blk('tcp', '192.0.2.1', 32, 22)],
          6: [blk('udp', '2001:db8::', 64, 53)],
        });
        const before = await listing(ns, backend);
        await ok(ns, backend, ['flush', 'blocklistd-never']);
        assert.deepEqual(await listing(ns, backend), before, 'nothing created for an unknown name');
      });

      test("a long rule name is cut to the filter's limit, a hash of the whole name keeping names apart", async (t) => {
        const ns = await Netns.create(t, backend);
        const stem = `blocklistd-${'a'.repeat(30)}`;
        const exact = `blocklistd-${'b'.repeat(14)}`; // 25 characters: with "bl-", the iptables limit of 28
        const names = [`${stem}-one`, `${stem}-two`, exact, `${exact}c`];
        if (backend === 'nftables')
          names.push(`blocklistd-${'x'.repeat(189)}`, `blocklistd-${'x'.repeat(190)}`, `blocklistd-${'x'.repeat(220)}`);
        const own = (k: number): Record<Family, string[]> => ({
          4: [blk('tcp', `192.0.2.${k + 1}`, 32, 22)],
          6: [blk('tcp', `2001:db8::${k + 1}`, 128, 22)],
        });
        for (const [k, name] of names.entries()) {
          await ok(ns, backend, ['add', name, 'tcp', `192.0.2.${k + 1}`, '32', '22', '']);
          await ok(ns, backend, ['add', name, 'tcp', `2001:db8::${k + 1}`, '128', '22', '']);
        }
        const l = await listing(ns, backend);
        // each name finds its own blocks, and only them, in objects named as object_name says
        for (const [k, name] of names.entries()) {
          assert.deepEqual({ 4: familyBlocks(l, backend, name, 4), 6: familyBlocks(l, backend, name, 6) }, own(k), name);
          assertFrameOnce(l, backend, name, [4, 6]);
        }
        const limit = { nftables: 256, ipset: 31, iptables: 2 + 28 }[backend];
        for (const o of l.blocks.keys()) assert.ok(o.length <= limit, `${o}: ${o.length} characters`);
        if (backend !== 'nftables') {
          assert.ok(l.blocks.has(obj(exact, 4)) && obj(exact, 4).includes(`bl-${exact}`), '25 characters are kept');
          assert.match(obj(`${exact}c`, 4), /^(4:)?bl-blockli_h[0-9a-f]{16}(-4)?$/, '26 are cut');
        } else {
          assert.ok(l.blocks.has(obj(`${stem}-one`, 4)), 'nftables names are long enough for these');
          assert.equal(obj(names[4], 4), `${names[4]}-v4`, '200 characters are kept');
          assert.match(obj(names[5], 4), /^blocklistd-x+_h[0-9a-f]{16}-v4$/, 'beyond 200 they are cut');
        }
        // rem and flush with the long name find its object, and only it
        await ok(ns, backend, ['rem', names[0], 'tcp', '192.0.2.1', '32', '22', 'id']);
        await ok(ns, backend, ['flush', names[1]]);
        assert.deepEqual(await blocksOf(ns, backend, names[0]), { 4: [], 6: own(0)[6] });
        assert.deepEqual(await blocksOf(ns, backend, names[1]), { 4: [], 6: [] });
        assert.deepEqual(await blocksOf(ns, backend, names[3]), own(3));
      });

      const namesApart =
        "distinct rule names never share a filter object (ä/ö, a+b/a_b, 1abc); no name reaches the host's INPUT chain, sets or tables";
      test(namesApart, async (t) => {
        const ns = await Netns.create(t, backend);
        // the host's own objects, named as a rule name would name them without the helper's encoding and prefix
        const host: string[][] = [
          ['iptables', '-A', 'INPUT', '-s', '203.0.113.77/32', '-j', 'ACCEPT'],
          ['ip6tables', '-A', 'INPUT', '-s', '2001:db8:77::1/128', '-j', 'ACCEPT'],
          ['ipset', 'create', 'trusted-4', 'hash:net'],
          ['ipset', 'add', 'trusted-4', '203.0.113.0/24'],
          [
            'nft',
            'add table inet filter; add set inet filter trusted-v4 { type ipv4_addr; }; ' +
              'add element inet filter trusted-v4 { 203.0.113.1 }',
          ],
          [
            'nft',
            'add chain inet filter INPUT-input { type filter hook input priority 10; }; add rule inet filter ' +
              'INPUT-input ip saddr 203.0.113.78 accept',
          ],
        ];
        for (const command of host) await succeeds(ns.exec(command), command.join(' '));
        const hostObjects = async (): Promise<string[]> => [
          ...(await xtablesLines(ns)).filter((line) => / -A INPUT -s \S+ -j ACCEPT$/.test(line)),
          (await succeeds(ns.exec(['ipset', 'list', 'trusted-4']), 'ipset list')).stdout.replace(/^(Size in memory|References).*$/gm, ''),
          (await succeeds(ns.exec(['nft', 'list', 'table', 'inet', 'filter']), 'nft list')).stdout,
        ];
        const before = await hostObjects();
        assert.equal(before.filter((line) => line.includes('-j ACCEPT')).length, 2);

        const names = ['ä', 'ö', 'a+b', 'a_b', 'a_2bb', '1abc', '_31abc', 'INPUT', 'trusted', 'x\\y'];
        for (const [k, name] of names.entries()) {
          await ok(ns, backend, ['add', name, 'tcp', `192.0.2.${k + 1}`, '32', '22', '']);
          await ok(ns, backend, ['add', name, 'tcp', `2001:db8::${k + 1}`, '128', '22', '']);
        }
        const l = await listing(ns, backend);
        const objects = new Set<string>();
        for (const [k, name] of names.entries()) {
          assert.deepEqual(
            { 4: familyBlocks(l, backend, name, 4), 6: familyBlocks(l, backend, name, 6) },
            { 4: [blk('tcp', `192.0.2.${k + 1}`, 32, 22)], 6: [blk('tcp', `2001:db8::${k + 1}`, 128, 22)] },
            name,
          );
          for (const family of [4, 6] as const) objects.add(obj(name, family));
        }
        assert.equal(objects.size, 2 * names.length, 'one object per name and family');
        for (const name of ['ä', 'a+b', 'INPUT', 'trusted']) await ok(ns, backend, ['flush', name]);
        await ok(ns, backend, ['rem', 'a_b', 'tcp', '192.0.2.4', '32', '22', 'id']);
        for (const [k, name] of names.entries()) {
          const flushed = ['ä', 'a+b', 'INPUT', 'trusted'].includes(name);
          const v4 = flushed || name === 'a_b' ? [] : [blk('tcp', `192.0.2.${k + 1}`, 32, 22)];
          assert.deepEqual(
            await blocksOf(ns, backend, name),
            { 4: v4, 6: flushed ? [] : [blk('tcp', `2001:db8::${k + 1}`, 128, 22)] },
            name,
          );
        }
        assert.deepEqual(await hostObjects(), before, "the host's objects are as they were");
      });

      const encodedInBatch =
        'batch: a name that needs encoding (ä, a+b, a_b, x\\y, 1abc) lands in the objects single calls use, the batch one transaction';
      test(encodedInBatch, async (t) => {
        const ns = await Netns.create(t, backend);
        const names = ['ä', 'a+b', 'a_b', 'x\\y', '1abc'];
        await ok(ns, backend, ['add', 'ä', 'tcp', '192.0.2.100', '32', '22', '']);
        const { out, calls } = await batch(
          ns,
          backend,
          names.map((name, k) => `add ${name} tcp 192.0.2.${k + 1} 32 22 `),
        );
        assert.deepEqual(
          out,
          names.map(() => 'OK'),
        );
        assertOneTransaction(backend, calls);
        for (const [k, name] of names.entries()) {
          const v4 = [blk('tcp', `192.0.2.${k + 1}`, 32, 22), ...(name === 'ä' ? [blk('tcp', '192.0.2.100', 32, 22)] : [])];
          assert.deepEqual((await blocksOf(ns, backend, name))[4], sorted(v4), name);
        }
        assertFrameOnce(await listing(ns, backend), backend, 'ä', [4]);
      });

      test('OK only when the filter accepted the change: nothing printed for what it refuses', async (t) => {
        const ns = await Netns.create(t, backend);
        await ok(ns, backend, ['add', 'blocklistd', 'tcp', '192.0.2.9', '32', '22', '']);
        const before = await listing(ns, backend);
        for (const bad of [
          ['tcp', '999.1.1.1', '32', '22'],
          ['tcp', '192.0.2.1', '33', '22'],
          ['tcp', '2001:db8::', '129', '22'],
          ['tcp', '192.0.2.1', '32', '70000'],
          ['bogus', '192.0.2.1', '32', '22'],
        ]) {
          for (const name of ['blocklistd', 'blocklistd-refused']) {
            const r = await ns.helper(backend, ['add', name, ...bad, '']);
            assert.equal(r.stdout, '', `add ${name} ${bad.join(' ')}: ${r.stderr}`);
          }
        }
        const after = await listing(ns, backend);
        for (const [object, list] of after.blocks) assert.deepEqual(list, before.blocks.get(object) ?? [], object);
        // nftables sets up in the refused transaction: nothing of it is left
        if (backend === 'nftables') assert.deepEqual(after, before);
        // the filter still takes good changes
        await ok(ns, backend, ['add', 'blocklistd', 'tcp', '192.0.2.10', '32', '22', '']);

        const unknown = await ns.helper(backend, ['frob', 'blocklistd']);
        assert.deepEqual([unknown.code, unknown.stdout], [2, ''], 'a usage error');
        assert.match(unknown.stderr, /Unknown command 'frob'/);
        const short = await ns.helper(backend, ['add', 'blocklistd', 'tcp', '192.0.2.11']);
        assert.deepEqual([short.code, short.stdout], [2, ''], 'a usage error');
        const nobackend = await ns.helper('bogus', ['add', 'blocklistd', 'tcp', '192.0.2.11', '32', '22', '']);
        assert.deepEqual([nobackend.code, nobackend.stdout], [1, '']);
        assert.match(nobackend.stderr, /Unknown back end 'bogus'/);
      });

      const n = 10_000;
      test(`batch: ${n} adds in one call, then ${n} adds and rems mixed; one answer line per operation, one transaction`, async (t) => {
        const ns = await Netns.create(t, backend);
        const v4 = (i: number): string => `10.${(i >> 8) & 255}.${i & 255}.7`;
        const v6 = (i: number): string => `2001:db8:${i.toString(16)}::`;
        const lines: string[] = [];
        const expected: Record<Family, Set<string>> = { 4: new Set(), 6: new Set() };
        for (let i = 0; i < n; i++) {
          if (i % 4 === 3) {
            lines.push(`add blocklistd udp ${v6(i)} 64 53 `);
            expected[6].add(blk('udp', v6(i), 64, 53));
          } else {
            lines.push(`add blocklistd tcp ${v4(i)} 32 22 `);
            expected[4].add(blk('tcp', v4(i), 32, 22));
          }
        }
        const adds = await batch(ns, backend, lines);
        t.diagnostic(`${backend}: ${n} adds in ${adds.ms.toFixed(0)} ms, ${Math.round((n * 1000) / adds.ms)} operations per second`);
        assert.equal(adds.out.length, n);
        assert.deepEqual(
          adds.out.filter((o) => o !== 'OK'),
          [],
        );
        assertOneTransaction(backend, adds.calls);
        assert.deepEqual(await blocksOf(ns, backend, 'blocklistd'), { 4: sorted([...expected[4]]), 6: sorted([...expected[6]]) });

        // rems of the first half, adds of new ones (some IPv4-mapped), in turns
        const ops: string[] = [];
        for (let i = 0; i < n / 2; i++) {
          ops.push(lines[i].replace(/^add (.*) $/, 'rem $1 id'));
          const [, , proto, address, mask, port] = lines[i].split(' ');
          expected[fullMask(address) === 32 ? 4 : 6].delete(blk(proto, address, mask, port));
          const fresh = `172.16.${i >> 8}.${i & 255}`;
          ops.push(i % 10 === 0 ? `add blocklistd udp ::ffff:${fresh} 128 4444 ` : `add blocklistd udp ${fresh} 32 4444 `);
          expected[4].add(blk('udp', fresh, 32, 4444));
        }
        const mixed = await batch(ns, backend, ops);
        t.diagnostic(
          `${backend}: ${n} adds and rems in ${mixed.ms.toFixed(0)} ms, ${Math.round((n * 1000) / mixed.ms)} operations per second`,
        );
        assert.equal(mixed.out.length, n);
        assert.deepEqual(
          mixed.out.filter((o) => o !== 'OK'),
          [],
        );
        assertOneTransaction(backend, mixed.calls);
        assert.deepEqual(await blocksOf(ns, backend, 'blocklistd'), { 4: sorted([...expected[4]]), 6: sorted([...expected[6]]) });
        assertFrameOnce(await listing(ns, backend), backend, 'blocklistd', [4, 6]);
      });

      test('batch: several names, both families and ::ffff: addresses, adds and rems in one batch', async (t) => {
        const ns = await Netns.create(t, backend);
        await ok(ns, backend, ['add', 'blocklistd', 'tcp', '192.0.2.200', '32', '22', '']);
        await ok(ns, backend, ['add', 'blocklistd-other', 'udp', '2001:db8:ff::', '64', '53', '']);
        const lines = ['rem blocklistd tcp 192.0.2.200 32 22 id', 'rem blocklistd-other udp 2001:db8:ff:: 64 53 id'];
        for (let i = 0; i < 30; i++) {
          lines.push(
            `add blocklistd tcp 192.0.2.${i} 32 22 `,
            `add blocklistd-other udp 2001:db8:${i + 1}:: 64 53 `,
            `add blocklistd-other tcp ::ffff:198.51.100.${i} 128 80 `,
          );
        }
        lines.push(`add blocklistd-${'z'.repeat(40)} tcp 203.0.113.0 24 25 `);
        const { out, calls } = await batch(ns, backend, lines);
        assert.deepEqual(
          out,
          lines.map(() => 'OK'),
        );
        assertOneTransaction(backend, calls);
        const range = [...Array(30).keys()];
        assert.deepEqual((await blocksOf(ns, backend, 'blocklistd'))[4], sorted(range.map((i) => blk('tcp', `192.0.2.${i}`, 32, 22))));
        assert.deepEqual(await blocksOf(ns, backend, 'blocklistd-other'), {
          4: sorted(range.map((i) => blk('tcp', `198.51.100.${i}`, 32, 80))),
          6: sorted(range.map((i) => blk('udp', `2001:db8:${i + 1}::`, 64, 53))),
        });
        assert.deepEqual((await blocksOf(ns, backend, `blocklistd-${'z'.repeat(40)}`))[4], [blk('tcp', '203.0.113.0', 24, 25)]);
      });

      if (backend === 'nftables') {
        test('batch: its lines through a temporary file, removed after; empty lines at the end no lines; no file, no batch', async (t) => {
          const ns = await Netns.create(t, backend);
          const tmp = tempDir('blocklistd-helper-tmp-');
          const lines = 'add blocklistd tcp 192.0.2.1 32 22 \n\nadd blocklistd tcp 192.0.2.2 32 22 \n\n\n';
          const result = await ns.helper(backend, ['batch'], lines, [`TMPDIR=${tmp}`]);
          assert.deepEqual(
            [result.code, result.stdout],
            [0, 'OK\n\nOK\n'],
            'an empty line inside is answered, those at the end are not lines',
          );
          assert.deepEqual(readdirSync(tmp), [], 'the file removed');
          assert.deepEqual((await blocksOf(ns, backend, 'blocklistd'))[4], [
            blk('tcp', '192.0.2.1', 32, 22),
            blk('tcp', '192.0.2.2', 32, 22),
          ]);
          const more = 'add blocklistd tcp 192.0.2.3 32 22 \n';
          const missing = await ns.helper(backend, ['batch'], more, [`TMPDIR=${join(tmp, 'missing')}`]);
          assert.deepEqual([missing.code, missing.stdout], [1, '']);
          assert.match(missing.stderr, /blocklistd-helper: batch: cannot make a temporary file\n$/);
          assert.equal((await blocksOf(ns, backend, 'blocklistd'))[4]?.length, 2, 'nothing applied');
        });

        test('batch: a rule name beyond 200 characters, cut as in single calls, keeps the batch one transaction', async (t) => {
          const ns = await Netns.create(t, backend);
          const long = `blocklistd-${'x'.repeat(220)}`;
          const { out, calls } = await batch(ns, backend, [`add ${long} tcp 192.0.2.1 32 22 `, 'add blocklistd tcp 192.0.2.2 32 22 ']);
          assert.deepEqual(out, ['OK', 'OK']);
          assertOneTransaction(backend, calls);
          assert.deepEqual((await blocksOf(ns, backend, long))[4], [blk('tcp', '192.0.2.1', 32, 22)]);
          await ok(ns, backend, ['rem', long, 'tcp', '192.0.2.1', '32', '22', 'id']);
          assert.deepEqual((await blocksOf(ns, backend, long))[4], []);
        });
      }

      test(
        `batch with flush lines (a reload): the names' blocks replaced at once ` +
          `(${backend === 'ipset' ? 'ipset swap' : 'one transaction'}), another name's kept`,
        async (t) => {
          const ns = await Netns.create(t, backend);
          for (const a of ['192.0.2.1', '192.0.2.2']) await ok(ns, backend, ['add', 'blocklistd', 'tcp', a, '32', '22', '']);
          await ok(ns, backend, ['add', 'blocklistd-gone', 'udp', '2001:db8::9', '128', '53', '']);
          await ok(ns, backend, ['add', 'blocklistd-other', 'tcp', '192.0.2.3', '32', '22', '']);
          const lines = [
            'flush blocklistd',
            'flush blocklistd-gone',
            'add blocklistd tcp 192.0.2.2 32 22 ',
            'add blocklistd tcp 198.51.100.0 24 22 ',
          ];
          const { out, calls } = await batch(ns, backend, lines);
          assert.deepEqual(out, ['OK', 'OK', 'OK', 'OK']);
          if (backend === 'nftables') assertOneTransaction(backend, calls);
          if (backend === 'ipset')
            assert.equal(calls.filter((c) => c.startsWith('swap ')).length, 2, 'each set of blocklistd and blocklistd-gone swapped');
          assert.deepEqual(
            (await blocksOf(ns, backend, 'blocklistd'))[4],
            sorted([blk('tcp', '192.0.2.2', 32, 22), blk('tcp', '198.51.100.0', 24, 22)]),
          );
          assert.deepEqual((await blocksOf(ns, backend, 'blocklistd-gone'))[6] ?? [], []);
          assert.deepEqual((await blocksOf(ns, backend, 'blocklistd-other'))[4], [blk('tcp', '192.0.2.3', 32, 22)]);
        },
      );

      test('batch: a line the filter refuses is answered with an empty line, every other line with OK', async (t) => {
        const ns = await Netns.create(t, backend);
        await ok(ns, backend, ['add', 'blocklistd', 'tcp', '192.0.2.200', '32', '22', '']);
        const lines: string[] = [];
        for (let i = 0; i < 20; i++) lines.push(`add blocklistd tcp 192.0.2.${i} 32 22 `);
        lines[5] = 'add blocklistd tcp 999.1.1.1 32 22 ';
        lines[11] = 'add blocklistd-other tcp 2001:db8:: 129 22 ';
        lines[15] = 'rem blocklistd tcp 192.0.2.200 32 22 id';
        lines[17] = 'add blocklistd-other udp 2001:db8::5 128 53 ';
        const { out, calls } = await batch(ns, backend, lines);
        if (backend !== 'iptables')
          t.diagnostic(`${backend}: ${calls.length} ${FILTER_PROGRAM[backend][0]} calls for ${lines.length} lines, one refused`);
        assert.deepEqual(
          out,
          lines.map((_, i) => (i === 5 || i === 11 ? '' : 'OK')),
        );
        const v4 = lines.filter((_, i) => ![5, 11, 15, 17].includes(i)).map((l) => blk('tcp', l.split(' ')[3], 32, 22));
        assert.deepEqual(await blocksOf(ns, backend, 'blocklistd'), { 4: sorted(v4), 6: undefined });
        assert.deepEqual((await blocksOf(ns, backend, 'blocklistd-other'))[6], [blk('udp', '2001:db8::5', 128, 53)]);
      });

      test(
        "traffic: a blocked client's connections are dropped, others' get through; rem lets it in again " + '(IPv4, IPv6, ::ffff:)',
        async (t) => {
          const { srv, connect } = await servedPair(t);
          const all = ['10.99.0.2', '10.99.0.3', 'fd99::2', 'fd99::3'];
          assert.deepEqual(await connectAll(connect, all), { '10.99.0.2': 'hi', '10.99.0.3': 'hi', 'fd99::2': 'hi', 'fd99::3': 'hi' });

          // another proto or port does not block 2222/tcp
          await ok(srv, backend, ['add', 'blocklistd', 'udp', '10.99.0.2', '32', '2222', '']);
          await ok(srv, backend, ['add', 'blocklistd', 'tcp', '10.99.0.2', '32', '2223', '']);
          await ok(srv, backend, ['add', 'blocklistd', 'tcp', 'fd99::2', '128', '2223', '']);
          assert.deepEqual(await connectAll(connect, ['10.99.0.2', 'fd99::2']), { '10.99.0.2': 'hi', 'fd99::2': 'hi' });

          await ok(srv, backend, ['add', 'blocklistd', 'tcp', '10.99.0.2', '32', '2222', '']);
          assert.deepEqual(await connectAll(connect, all), { '10.99.0.2': 'timeout', '10.99.0.3': 'hi', 'fd99::2': 'hi', 'fd99::3': 'hi' });
          await ok(srv, backend, ['rem', 'blocklistd', 'tcp', '10.99.0.2', '32', '2222', 'id']);
          assert.equal(await connect('10.99.0.2'), 'hi');

          await ok(srv, backend, ['add', 'blocklistd', 'tcp', 'fd99::2', '128', '2222', '']);
          assert.deepEqual(await connectAll(connect, all), { '10.99.0.2': 'hi', '10.99.0.3': 'hi', 'fd99::2': 'timeout', 'fd99::3': 'hi' });
          await ok(srv, backend, ['rem', 'blocklistd', 'tcp', 'fd99::2', '128', '2222', 'id']);
          assert.equal(await connect('fd99::2'), 'hi');

          // what the daemon passes for an IPv4 client of the dual-stack server, and whole networks
          await ok(srv, backend, ['add', 'blocklistd', 'tcp', '::ffff:10.99.0.3', '128', '2222', '']);
          await ok(srv, backend, ['add', 'blocklistd', 'tcp', 'fd99::', '64', '2222', '']);
          assert.deepEqual(await connectAll(connect, all), {
            '10.99.0.2': 'hi',
            '10.99.0.3': 'timeout',
            'fd99::2': 'timeout',
            'fd99::3': 'timeout',
          });
          await ok(srv, backend, ['rem', 'blocklistd', 'tcp', '::ffff:10.99.0.3', '128', '2222', 'id']);
          await ok(srv, backend, ['flush', 'blocklistd']);
          assert.deepEqual(await connectAll(connect, all), { '10.99.0.2': 'hi', '10.99.0.3': 'hi', 'fd99::2': 'hi', 'fd99::3': 'hi' });
        },
      );

      test(
        'a block of every port (no protocol nor port: blocklistctl block without -p) drops all of the ' +
          'client, beside the port blocks; rem and flush lift it',
        async (t) => {
          const { srv, connect } = await servedPair(t);
          const all = ['10.99.0.2', '10.99.0.3', 'fd99::2', 'fd99::3'];
          await ok(srv, backend, ['add', 'blocklistd', 'tcp', '10.99.0.3', '32', '2222', '']);
          await ok(srv, backend, ['add', 'blocklistd', '', '10.99.0.2', '32', '', '']);
          await ok(srv, backend, ['add', 'blocklistd', '', 'fd99::2', '128', '', '']);
          assert.deepEqual(await connectAll(connect, all), {
            '10.99.0.2': 'timeout',
            '10.99.0.3': 'timeout',
            'fd99::2': 'timeout',
            'fd99::3': 'hi',
          });
          // again: no second rule, no error
          await ok(srv, backend, ['add', 'blocklistd', '', '10.99.0.2', '32', '', '']);
          await ok(srv, backend, ['rem', 'blocklistd', '', '10.99.0.2', '32', '', 'id']);
          assert.deepEqual(await connectAll(connect, all), {
            '10.99.0.2': 'hi',
            '10.99.0.3': 'timeout',
            'fd99::2': 'timeout',
            'fd99::3': 'hi',
          });
          // a rem of what is gone succeeds
          await ok(srv, backend, ['rem', 'blocklistd', '', '10.99.0.2', '32', '', 'id']);
          await ok(srv, backend, ['flush', 'blocklistd']);
          assert.deepEqual(await connectAll(connect, all), { '10.99.0.2': 'hi', '10.99.0.3': 'hi', 'fd99::2': 'hi', 'fd99::3': 'hi' });
        },
      );

      test('rule names that read as nft keywords or numbers (log, counter, 1abc) are blocked like any other', async (t) => {
        const ns = await Netns.create(t, backend);
        for (const name of ['log', 'counter', '1abc']) {
          await ok(ns, backend, ['add', name, 'tcp', '192.0.2.1', '32', '22', '']);
          const l = await listing(ns, backend);
          assert.ok([...l.blocks.values()].filter((b) => b.includes(blk('tcp', '192.0.2.1', 32, 22))).length > 0, name);
        }
      });

      test(
        'an address inside a network already blocked (10.0.1.7/32 in 10.0.0.0/16, same proto and port) is ' + 'OK, and so is its rem',
        async (t) => {
          const ns = await Netns.create(t, backend);
          await ok(ns, backend, ['add', 'blocklistd', 'tcp', '10.0.0.0', '16', '22', '']);
          await ok(ns, backend, ['add', 'blocklistd', 'tcp', '10.0.1.7', '32', '22', '']);
          await ok(ns, backend, ['add', 'blocklistd', 'tcp', '2001:db8::', '32', '22', '']);
          await ok(ns, backend, ['add', 'blocklistd', 'tcp', '2001:db8:1::7', '128', '22', '']);
          await ok(ns, backend, ['rem', 'blocklistd', 'tcp', '10.0.1.7', '32', '22', 'id']);
          await ok(ns, backend, ['rem', 'blocklistd', 'tcp', '2001:db8:1::7', '128', '22', 'id']);
          assert.deepEqual(await blocksOf(ns, backend, 'blocklistd'), {
            4: [blk('tcp', '10.0.0.0', 16, 22)],
            6: [blk('tcp', '2001:db8::', 32, 22)],
          });
        },
      );

      test('a network inside one already blocked (10.0.1.0/24 in 10.0.0.0/16, 2001:db8:1::/64 in 2001:db8::/32) is OK', async (t) => {
        const ns = await Netns.create(t, backend);
        await ok(ns, backend, ['add', 'blocklistd', 'tcp', '10.0.0.0', '16', '22', '']);
        await ok(ns, backend, ['add', 'blocklistd', 'tcp', '10.0.1.0', '24', '22', '']);
        await ok(ns, backend, ['add', 'blocklistd', 'tcp', '2001:db8::', '32', '22', '']);
        await ok(ns, backend, ['add', 'blocklistd', 'tcp', '2001:db8:1::', '64', '22', '']);
      });

      test('batch: a line with an unknown action is answered with an empty line', async (t) => {
        const ns = await Netns.create(t, backend);
        const { out } = await batch(ns, backend, [
          'add blocklistd tcp 192.0.2.1 32 22 ',
          'frob blocklistd tcp 192.0.2.2 32 22 ',
          'add blocklistd tcp 192.0.2.3 32 22 ',
        ]);
        assert.deepEqual(out, ['OK', '', 'OK']);
      });

      if (backend === 'nftables') {
        test('batch: a rem of a block not there keeps the batch one transaction', async (t) => {
          const ns = await Netns.create(t, backend);
          const lines = ['rem blocklistd tcp 203.0.113.9 32 22 id'];
          for (let i = 0; i < 100; i++) lines.push(`add blocklistd tcp 10.0.${i}.1 32 22 `);
          const { out, ms, calls } = await batch(ns, backend, lines);
          t.diagnostic(`${lines.length} lines, one rem of an absent block: ${ms.toFixed(0)} ms, ${calls.length} nft calls`);
          assert.deepEqual(
            out.filter((o) => o !== 'OK'),
            [],
          );
          assertOneTransaction(backend, calls);
        });
      }
    });
  }
});

// --- check, --help, --version (issue 15 §1) ----------------------------------

describe('blocklistd-helper check: the back end, why, and whether it can operate', { skip: notRoot, concurrency: true }, () => {
  before(installFilters);
  const NOBODY = 65534;

  /** The helper in namespace `ns`, with the environment given and nothing else chosen for it; as `uid` through setpriv. */
  const checkIn = (ns: Netns, env: Record<string, string>, args: string[], uid?: number): Promise<RunResult> => {
    const helper = uid === undefined ? HELPER : join(sharedTree(), 'bin/blocklistd-helper');
    const as = uid === undefined ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups'];
    return ns.exec(['env', `PATH=${process.env.PATH}`, ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...as, helper, ...args]);
  };

  test('detected as root: nftables because "nft list tables works", verified without a change', async (t) => {
    const ns = await Netns.create(t, 'check');
    const absent = join(tempDir(), 'absent.conf');
    const r = await checkIn(ns, { BLOCKLISTD_HELPER_CONF: absent }, ['check']);
    assert.deepEqual(r, {
      code: 0,
      stdout: 'back end nftables: nft list tables works\nok: nft accepts a change of table inet blocklistd (checked, not applied)\n',
      stderr: '',
    });
    assert.equal((await ns.exec(['nft', 'list', 'tables'])).stdout, '', 'check created nothing');
  });

  test('chosen by the configuration file or by BLOCKLISTD_BACKEND, and said so', async (t) => {
    const ns = await Netns.create(t, 'check');
    const conf = join(tempDir(), 'helper.conf');
    writeFileSync(conf, 'backend=ipset\n');
    let r = await checkIn(ns, { BLOCKLISTD_HELPER_CONF: conf }, ['check']);
    assert.deepEqual(r, {
      code: 0,
      stdout: `back end ipset: backend=ipset from ${conf}\nok: ipset list and iptables -S INPUT work\n`,
      stderr: '',
    });
    r = await checkIn(ns, { BLOCKLISTD_HELPER_CONF: conf, BLOCKLISTD_BACKEND: 'iptables' }, ['check']);
    assert.deepEqual(r, { code: 0, stdout: 'back end iptables: BLOCKLISTD_BACKEND=iptables\nok: iptables -S INPUT works\n', stderr: '' });
    r = await checkIn(ns, { BLOCKLISTD_HELPER_CONF: conf, BLOCKLISTD_BACKEND: 'log' }, ['check']);
    assert.deepEqual(r, {
      code: 0,
      stdout: 'back end log: BLOCKLISTD_BACKEND=log\nok: blocks nothing, records the calls in stderr\n',
      stderr: '',
    });
  });

  test("as another user (no CAP_NET_ADMIN): nft's permission error is the answer, never a fall back to ipset or iptables", async (t) => {
    const ns = await Netns.create(t, 'check');
    const absent = join(tempDir(), 'absent.conf');
    const refused = new RegExp(
      String.raw`^blocklistd-helper: nftables: nft list tables: .*Operation not permitted.*: not root, or no CAP_NET_ADMIN ` +
        String.raw`\(not falling back to ipset or iptables\)\n$`,
    );
    for (const args of [['check'], ['add', 'blocklistd', 'tcp', '192.0.2.1', '32', '22', '']]) {
      const r = await checkIn(ns, { BLOCKLISTD_HELPER_CONF: absent }, args, NOBODY);
      assert.deepEqual([r.code, r.stdout], [1, ''], `${args[0]}: ${r.stderr}`);
      assert.match(r.stderr, refused, args[0]);
    }
    // forced, the back end itself says why it cannot operate
    const r = await checkIn(ns, { BLOCKLISTD_HELPER_CONF: absent, BLOCKLISTD_BACKEND: 'nftables' }, ['check'], NOBODY);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, 'back end nftables: BLOCKLISTD_BACKEND=nftables\n');
    assert.match(r.stderr, /^blocklistd-helper: nftables cannot operate: nft list tables: .*Operation not permitted/);
  });
});

describe('blocklistd-helper --help and --version', () => {
  test('--help and -h: the usage of every command on stdout, exit 0; no command or an unknown one: exit 2', async () => {
    for (const flag of ['--help', '-h']) {
      const r = await run(HELPER, [flag]);
      assert.equal(r.code, 0, flag);
      assert.equal(r.stderr, '', flag);
      for (const command of ['add|rem', 'flush', 'batch', 'capabilities', 'check', '--help', '--version'])
        assert.match(
          r.stdout,
          new RegExp(`^(usage:|      ) blocklistd-helper ${command.replace(/[|-]/g, '\\$&')}`, 'm'),
          `${flag}: ${command}`,
        );
    }
    const none = await run(HELPER, []);
    assert.deepEqual([none.code, none.stdout], [2, '']);
    assert.match(none.stderr, /^blocklistd-helper: no command\nusage: /);
  });

  test("--version: the package's version, also through a link as installed", async () => {
    const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    assert.deepEqual(await run(HELPER, ['--version']), { code: 0, stdout: `${version}\n`, stderr: '' });
    const link = join(tempDir(), 'blocklistd-helper');
    symlinkSync(HELPER, link);
    assert.deepEqual(await run(link, ['--version']), { code: 0, stdout: `${version}\n`, stderr: '' });
  });
});
