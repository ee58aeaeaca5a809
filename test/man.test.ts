// The manual pages (man/): mandoc finds nothing to complain about; the
// options of each synopsis and option list are exactly those the programs
// accept; every example configuration of blocklistd.conf(5) loads without
// a diagnostic and its worked examples hold; the count thresholds of
// blocklistd(8) are what the daemon's engine does; the code examples of
// blocklist(3) and blocklistd-helper(8) are valid and do what they say.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { nativeFamily } from '../src/address.js';
import { parseIP, toText } from '../src/conf/ip.js';
import { loadConfig } from '../src/conf/load.js';
import { compileRules, matchProbe } from '../src/conf/match.js';
import { parseDuration, upstreamDuration } from '../src/conf/parse.js';
import { systemEnv } from '../src/conf/system.js';
import { ANY, type Diagnostic } from '../src/conf/types.js';
import { Engine } from '../src/daemon/engine.js';
import { HelperRunner } from '../src/run/helper.js';
import { isBlocked } from '../src/state/entry.js';
import { StateStore } from '../src/state/store.js';
import { AUTH_FAIL, blocklistOpen } from '../src/index.js';
import { WireType, type Notification } from '../src/types.js';
import { Receiver, freePort, isRoot, repoRoot, run, tcpNotification, tempDir, until } from './support.js';

const MAN = join(repoRoot, 'man');
const PAGES = ['blocklist.3', 'blocklistd.conf.5', 'blocklistctl.8', 'blocklistd.8', 'blocklistd-helper.8', 'blocklistd-watch.8'];
const env = systemEnv('blocklistd');

const page = (name: string): string[] => readFileSync(join(MAN, name), 'utf8').split('\n');

/** `promise`, or a rejection naming `what` after `ms`: a test fails rather than hangs. */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// --- reading mdoc ----------------------------------------------------------

/** The text of roff input as a reader sees it (the escapes the pages use). */
function unescape(text: string): string {
  return text
    .replace(/\\\(em/g, '\u2014')
    .replace(/\\\(dq/g, '"')
    .replace(/\\&/g, '')
    .replace(/\\-/g, '-')
    .replace(/\\e/g, '\\');
}

/** The arguments of a macro line, quotes respected. */
function tokens(line: string): string[] {
  return [...line.slice(1).matchAll(/"((?:[^"]|"")*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
}

const MACRO = /^[A-Z][a-z]{1,2}$/;

/** The options an mdoc line names with Fl: `Fl dfrv` is -d -f -r -v, `Fl -json` is --json. */
function flagsOf(line: string): string[] {
  if (!line.startsWith('.')) return [];
  const t = tokens(line);
  const flags: string[] = [];
  for (let i = 0; i < t.length; i++) {
    if (t[i] !== 'Fl') continue;
    for (let j = i + 1; j < t.length && !MACRO.test(t[j]!) && /^-?[A-Za-z0-9][\w-]*$/.test(t[j]!); j++) {
      const arg = t[j]!;
      if (arg.startsWith('-')) flags.push(`-${arg}`);
      else if (arg.length === 1) flags.push(`-${arg}`);
      else for (const letter of arg) flags.push(`-${letter}`);
    }
  }
  return flags;
}

/** The lines of each `.Sh` section. */
function sections(lines: string[]): Map<string, string[]> {
  const result = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of lines) {
    if (line.startsWith('.Sh ')) result.set(tokens(line).slice(1).join(' '), (current = []));
    else current?.push(line);
  }
  return result;
}

/** The options of the `.It Fl` items of `lines`. */
const itemFlags = (lines: string[]): string[] => lines.filter((l) => /^\.It Fl /.test(l)).flatMap(flagsOf);

/** The literal block after the comment line `.\" <marker>` (the next `.Bd`… `.Ed`). */
function literalAfter(lines: string[], index: number): string {
  let i = index + 1;
  while (!lines[i]!.startsWith('.Bd ')) i++;
  const body: string[] = [];
  for (i++; lines[i] !== '.Ed'; i++) body.push(unescape(lines[i]!));
  return body.join('\n') + '\n';
}

/** The rows (cells) of the `.Bl -column` table after the comment at `index`, without header rows. */
function tableAfter(lines: string[], index: number): string[][] {
  let i = index + 1;
  assert.match(lines[i]!, /^\.Bl -column/, `a table after line ${index + 1}`);
  const rows: string[][] = [];
  for (i++; lines[i] !== '.El'; i++) {
    const line = lines[i]!;
    if (!line.startsWith('.It ') || line.startsWith('.It Sy ')) continue;
    rows.push(
      line
        .slice(4)
        .split(' Ta ')
        .map((cell) => unescape(cell.trim())),
    );
  }
  return rows;
}

/** The comment markers of a page: `.\" kind: name [file=…]` with their line index. */
function markers(lines: string[], kind: string): { name: string; file?: string; index: number }[] {
  const found: { name: string; file?: string; index: number }[] = [];
  lines.forEach((line, index) => {
    const m = new RegExp(`^\\.\\\\" ${kind}(?:: (\\S+)(?: file=(\\S+))?)?$`).exec(line);
    if (m !== null) found.push({ name: m[1] ?? '', file: m[2], index });
  });
  return found;
}

// --- what the programs accept ----------------------------------------------

function help(program: string, args: string[]): string {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin', program), ...args, '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${program} ${args.join(' ')} --help: ${r.stderr}`);
  return r.stdout;
}

/** The options of a commander help text: `-h, --help`, `-D <dbname>`, `--control-socket <path>`. */
function helpOptions(text: string): string[] {
  const block = text.split(/^Options:$/m)[1]?.split(/^\S.*:$/m)[0] ?? '';
  return [...block.matchAll(/^ {2}(-[A-Za-z0-9](?:, --[\w-]+)?|--[\w-]+)(?=[ \n])/gm)].flatMap((m) => m[1]!.split(', '));
}

function helpCommands(text: string): string[] {
  const block = text.split(/^Commands:$/m)[1] ?? '';
  return [...block.matchAll(/^ {2}([a-z][\w-]*)/gm)].map((m) => m[1]!);
}

const sorted = (a: Iterable<string>): string[] => [...new Set(a)].sort();

// --- tests ---------------------------------------------------------------------

describe('manual pages', () => {
  test('every page is there, and mandoc -T lint -W warning finds nothing', (t) => {
    assert.deepEqual(readdirSync(MAN).sort(), [...PAGES].sort());
    const which = spawnSync('sh', ['-c', 'command -v mandoc'], { encoding: 'utf8' });
    if (which.status !== 0) {
      t.skip('mandoc is not installed (Debian: apt-get install mandoc)');
      return;
    }
    for (const name of PAGES) {
      const r = spawnSync('mandoc', ['-T', 'lint', '-W', 'warning', join(MAN, name)], { encoding: 'utf8' });
      assert.equal(r.stdout + r.stderr, '', name);
      assert.equal(r.status, 0, name);
    }
  });

  test('blocklistd(8): the synopsis and the option list hold exactly the options blocklistd accepts', () => {
    const accepted = sorted(helpOptions(help('blocklistd', [])));
    assert.ok(
      accepted.includes('--control-socket') && accepted.includes('--no-control-socket') && accepted.includes('--metrics'),
      accepted.join(' '),
    );
    const lines = page('blocklistd.8');
    const s = sections(lines);
    assert.deepEqual(sorted(s.get('SYNOPSIS')!.flatMap(flagsOf)), accepted, 'SYNOPSIS');
    assert.deepEqual(sorted(itemFlags(s.get('DESCRIPTION')!)), accepted, 'option list');
  });

  test("blocklistctl(8): each command's synopsis and option list hold exactly the options it accepts", () => {
    const lines = page('blocklistctl.8');
    const s = sections(lines);
    const top = help('blocklistctl', []);
    const commands = helpCommands(top);
    assert.deepEqual(commands, ['dump', 'config', 'test', 'history', 'block', 'unblock', 'flush', 'report', 'reload', 'status']);

    // the synopsis: one `.Nm` form per command, then the help and version forms
    const forms: { command?: string; flags: string[] }[] = [];
    let fresh = false;
    for (const line of s.get('SYNOPSIS')!) {
      if (line === '.Nm') {
        forms.push({ flags: [] });
        fresh = true;
        continue;
      }
      const form = forms[forms.length - 1]!;
      if (fresh && line.startsWith('.Cm ')) form.command = tokens(line)[1];
      fresh = false;
      form.flags.push(...flagsOf(line));
    }
    const synopsis = new Map(forms.filter((f) => f.command !== undefined).map((f) => [f.command!, f.flags]));
    // the option lists: one subsection per command, one for the options of the control commands, one for help and version
    const lists = new Map<string, string[]>();
    let sub = '';
    for (const line of s.get('DESCRIPTION')!) {
      if (line.startsWith('.Ss ')) sub = tokens(line).slice(1).join(' ');
      else if (/^\.It Fl /.test(line)) lists.set(sub, [...(lists.get(sub) ?? []), ...flagsOf(line)]);
    }
    const control = lists.get('Talking to the daemon') ?? [];
    assert.deepEqual(sorted(control), ['--control', '--json', '-s']);

    const HELP = ['-h', '--help'];
    for (const command of commands) {
      const accepted = sorted(helpOptions(help('blocklistctl', [command])).filter((o) => !HELP.includes(o)));
      const isControl = ['block', 'unblock', 'flush', 'report', 'reload', 'status'].includes(command);
      assert.deepEqual(sorted(synopsis.get(command) ?? []), accepted, `SYNOPSIS of ${command}`);
      assert.deepEqual(sorted([...(lists.get(command) ?? []), ...(isControl ? control : [])]), accepted, `option list of ${command}`);
      // -h and --help are accepted by every command: the help form of the synopsis says so
      assert.deepEqual(sorted(helpOptions(help('blocklistctl', [command])).filter((o) => HELP.includes(o))), sorted(HELP));
    }
    const global = sorted(helpOptions(top));
    assert.deepEqual(global, sorted(['-V', '--version', ...HELP]));
    const globalForms = forms.filter((f) => f.command === undefined).flatMap((f) => f.flags);
    assert.deepEqual(sorted(globalForms), global, 'SYNOPSIS help and version');
    assert.deepEqual(sorted(lists.get('Help and version') ?? []), global, 'option list of help and version');
    // nothing documented beyond the commands, their options and the shared lists
    assert.deepEqual(
      sorted(lists.keys()),
      sorted([...commands.filter((c) => c !== 'reload' && c !== 'status' && c !== 'flush'), 'Talking to the daemon', 'Help and version']),
    );
    // and `help [command]`, which takes no option
    assert.deepEqual([...synopsis.keys()], [...commands, 'help']);
    assert.deepEqual(synopsis.get('help'), []);
  });
});

describe('blocklistd.conf(5): the examples', () => {
  const lines = page('blocklistd.conf.5');

  /** Writes the blocks of example `name` into a directory and loads it as the daemon would. */
  function load(
    name: string,
    kind: 'example' | 'fragment',
  ): { diagnostics: Diagnostic[]; rules: ReturnType<typeof loadConfig>['ruleSet']; dir: string; files: string[] } {
    const dir = tempDir('blocklistd-man-');
    const blocks = markers(lines, kind).filter((m) => m.name === name);
    assert.ok(blocks.length > 0, `${kind} ${name}`);
    for (const b of blocks) {
      const path = join(dir, b.file ?? 'blocklistd.conf');
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, literalAfter(lines, b.index));
    }
    const loaded = loadConfig(join(dir, 'blocklistd.conf'), env);
    assert.equal(loaded.files.length, blocks.length, `${name}: every file read`);
    return { diagnostics: loaded.diagnostics, rules: loaded.ruleSet, dir, files: loaded.files };
  }

  /** Checks each row of the `matches: name` tables against the matcher. */
  function checkMatches(name: string, rules: ReturnType<typeof loadConfig>['ruleSet']): number {
    const compiled = compileRules(rules);
    let rows = 0;
    for (const table of markers(lines, 'matches').filter((m) => m.name === name)) {
      for (const [server, client, rule, nfail, duration, blocks] of tableAfter(lines, table.index)) {
        const where = `${name}: ${server} from ${client}`;
        const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)(\/udp)?$/.exec(server!);
        assert.ok(m !== null, `${where}: the server column`);
        const local = parseIP(m[1] ?? m[2]!)!;
        const remote = parseIP(client!)!;
        assert.ok(local !== undefined && remote !== undefined, where);
        const match = matchProbe(
          compiled,
          { family: nativeFamily(env.families, local.family), local, port: Number(m[3]), proto: m[4] ? 17 : 6, uid: 0, remote },
          new Map(),
        );
        rows++;
        if (rule === 'no rule') {
          assert.equal(match, undefined, `${where}: no rule`);
          continue;
        }
        assert.ok(match !== undefined, `${where}: a rule matches`);
        const e = match.effective;
        const seconds = (text: string): number => (text === '*' ? ANY : (parseDuration(text) as number));
        assert.deepEqual(
          { name: e.name, nfail: e.nfail, duration: e.duration, blocks: `${e.address}/${e.lmask}` },
          { name: rule, nfail: nfail === '*' ? ANY : Number(nfail), duration: seconds(duration!), blocks },
          where,
        );
      }
    }
    return rows;
  }

  const examples = sorted(markers(lines, 'example').map((m) => m.name));
  const tables = sorted(markers(lines, 'matches').map((m) => m.name));

  test('the examples are marked and each has its worked table', () => {
    assert.deepEqual(examples, ['allowlist', 'dns', 'dropin', 'masks', 'names', 'sample']);
    assert.deepEqual(tables, sorted([...examples, 'trap']));
  });

  for (const name of examples) {
    test(`example "${name}" loads without a diagnostic and matches as the page says`, () => {
      const { diagnostics, rules } = load(name, 'example');
      assert.deepEqual(
        diagnostics.map((d) => `${d.source.line}: ${d.severity}: ${d.message}`),
        [],
      );
      assert.ok(checkMatches(name, rules) >= 3, 'rows checked');
    });
  }

  test('the sample example is the configuration the package installs', () => {
    const strip = (text: string): string[] =>
      text
        .split('\n')
        .map((l) => l.replace(/#.*/, '').trim().split(/\s+/).join(' '))
        .filter((l) => l !== '');
    const sample = markers(lines, 'example').find((m) => m.name === 'sample')!;
    assert.deepEqual(strip(literalAfter(lines, sample.index)), strip(readFileSync(join(repoRoot, 'etc/blocklistd.conf'), 'utf8')));
  });

  test('the sort trap: the host line is never used, the load says so in the words of the page, and the network wins', () => {
    const { diagnostics, rules, files } = load('trap', 'fragment');
    const warning = markers(lines, 'warning').find((m) => m.name === 'trap')!;
    const stated = literalAfter(lines, warning.index).replace(/\s+/g, ' ').trim();
    const file = files[0]!;
    assert.deepEqual(
      diagnostics.map((d) => `${d.source.file}:${d.source.line}: ${d.severity}: ${d.message}`.split(file).join('file')),
      [stated],
    );
    assert.equal(checkMatches('trap', rules), 1);
  });

  test('the durations table: seconds as this daemon reads them, and as upstream does', () => {
    const [table] = markers(lines, 'durations');
    const rows = tableAfter(lines, table!.index);
    assert.ok(rows.length >= 8);
    for (const [written, seconds, upstream] of rows) {
      assert.equal(parseDuration(written!), Number(seconds), written);
      assert.equal(upstreamDuration(written!), Number(upstream), `${written} upstream`);
    }
  });
});

describe('blocklistd(8): the count arithmetic', () => {
  test('the thresholds table is what the engine does', async () => {
    const lines = page('blocklistd.8');
    const [table] = markers(lines, 'thresholds');
    const rows = tableAfter(lines, table!.index);
    assert.ok(rows.length >= 5);
    const dir = tempDir('blocklistd-man-engine-');
    const helperPath = join(dir, 'helper');
    writeFileSync(helperPath, '#!/bin/sh\necho OK 1\n');
    chmodSync(helperPath, 0o755);
    // one port per row, its nfail
    const config = rows.map(([nfail], i) => `${10000 + i} stream * * * ${nfail} 1h`).join('\n');
    writeFileSync(join(dir, 'blocklistd.conf'), `${config}\n`);
    const loaded = loadConfig(join(dir, 'blocklistd.conf'), env);
    assert.deepEqual(loaded.diagnostics, []);
    const store = StateStore.open(join(dir, 'db'));
    const helper = new HelperRunner({ program: helperPath, log: () => {} });
    const engine = new Engine({
      store,
      helper,
      families: env.families,
      log: () => {},
      debug: () => 0,
      clock: () => 1_800_000_000,
      remRetry: 60,
    });
    engine.setRules(compileRules(loaded.ruleSet), new Map());
    const ordinal = (n: number): string =>
      `${n}${n % 10 === 1 && n !== 11 ? 'st' : n % 10 === 2 && n !== 12 ? 'nd' : n % 10 === 3 && n !== 13 ? 'rd' : 'th'}`;
    const actions = [WireType.ADD, WireType.BADUSER, WireType.ABUSE] as const; // AUTH_FAIL, BAD_USER, ABUSIVE_BEHAVIOR
    let client = 0;
    try {
      for (const [i, [nfail, ...expected]] of rows.entries()) {
        const port = 10000 + i;
        const found = actions.map((type) => {
          const address = `198.51.100.${++client}`;
          const n = tcpNotification(port, address, { type });
          for (let k = 1; k <= 20; k++) {
            engine.processBatch([n]);
            const entry = [...store.entries()].find((e) => e.key.address === address && e.key.port === port);
            assert.ok(entry !== undefined, `nfail ${nfail}: an entry for ${address}`);
            if (isBlocked(entry)) return ordinal(k);
          }
          return 'never';
        });
        assert.deepEqual(found, expected, `nfail ${nfail}: AUTH_FAIL, BAD_USER, ABUSIVE_BEHAVIOR`);
      }
    } finally {
      engine.stop();
      await helper.stop(5000);
      store.close();
    }
  });
});

describe('blocklist(3): the example servers', () => {
  test("the program is valid JavaScript and reports TCP and UDP failures to a daemon's socket", async (t) => {
    const lines = page('blocklist.3');
    const [marker] = markers(lines, 'code').filter((m) => m.name === 'servers');
    const code = literalAfter(lines, marker!.index);
    assert.match(code, /from 'blocklistd';/);
    const dir = tempDir('blocklistd-man-client-');
    const index = pathToFileURL(join(repoRoot, 'dist/src/index.js')).href;
    const script = join(dir, 'servers.mjs');
    writeFileSync(script, code.replace("from 'blocklistd';", `from '${index}';`));
    const check = await run(process.execPath, ['--check', script]);
    assert.equal(check.code, 0, check.stderr);

    // run it against a socket standing in for the daemon, on free ports
    const socketPath = join(dir, 'blocklistd.sock');
    const receiver = new Receiver(socketPath);
    t.after(() => receiver.close());
    const tcpPort = await freePort();
    const udpPort = await freePort();
    assert.match(code, /blocklistOpen\(\)/);
    const runnable = code
      .replace("from 'blocklistd';", `from '${index}';`)
      .replace('blocklistOpen()', `blocklistOpen({ socketPath: ${JSON.stringify(socketPath)} })`)
      .replace('tcp.listen(2222)', `tcp.listen(${tcpPort}, () => console.log('tcp'))`)
      .replace('udp.bind(5353)', `udp.bind(${udpPort}, () => console.log('udp'))`);
    assert.notEqual(runnable, code);
    writeFileSync(script, runnable);
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await until(() => out.includes('tcp') && out.includes('udp'), 30_000);

    // The client keeps its side open until the report is in: the daemon reads
    // the client's address from the connection, which a client that hangs up
    // at once can take away first (see CAVEATS in the page).
    const ask = (line: string): Promise<{ answer: string; hangUp: () => void }> =>
      new Promise((resolve, reject) => {
        const c = net.connect({ port: tcpPort, host: '127.0.0.1', allowHalfOpen: true }, () => c.write(`${line}\n`));
        let answer = '';
        c.on('data', (d) => (answer += d.toString()));
        c.on('end', () => resolve({ answer, hangUp: () => c.end() }));
        c.on('error', reject);
      });
    const expectations: [string, string, number][] = [
      ['alice guess', 'denied\n', WireType.ADD],
      ['mallory guess', 'no such user\n', WireType.BADUSER],
      ['alice wonderland', 'welcome\n', WireType.DELETE],
    ];
    let received = 0;
    /** The next report, whether it came before or after the answer. */
    const nextReport = async (): Promise<Notification> => {
      await within(
        10_000,
        `report ${received + 1} (received ${receiver.received.length}, receiver: ${JSON.stringify(receiver.logs.lines)}, server: ${out})`,
        receiver.waitFor(++received),
      );
      return receiver.received[received - 1]!;
    };
    for (const [line, answer, type] of expectations) {
      const asked = await within(10_000, line, ask(line));
      assert.equal(asked.answer, answer);
      const n = await nextReport();
      asked.hangUp();
      assert.deepEqual(
        { type: n.type, text: n.text, socketType: n.socketType, port: n.local.port, remote: toText(n.remote), explicit: n.explicitPeer },
        { type, text: 'toy', socketType: 'stream', port: tcpPort, remote: toText(n.remote), explicit: false },
        line,
      );
      assert.match(toText(n.remote), /^(::ffff:)?127\.0\.0\.1$/);
    }

    const udp = dgram.createSocket('udp4');
    t.after(() => udp.close());
    const reply = new Promise<string>((resolve) => udp.once('message', (m) => resolve(m.toString())));
    udp.send('token guess', udpPort, '127.0.0.1');
    assert.equal(await within(10_000, 'the UDP answer', reply), 'denied\n');
    const n = await nextReport();
    assert.deepEqual(
      {
        type: n.type,
        text: n.text,
        socketType: n.socketType,
        port: n.local.port,
        remote: toText(n.remote),
        family: n.remote.family,
        explicit: n.explicitPeer,
      },
      {
        type: WireType.ADD,
        text: 'toy-udp',
        socketType: 'dgram',
        port: udpPort,
        remote: '::ffff:127.0.0.1',
        family: 'inet6',
        explicit: true,
      },
    );

    child.kill('SIGTERM');
    assert.equal(await within(10_000, 'exit after SIGTERM', exited), 0, out);
  });
});

describe('blocklist(3): an explicit peer on a connection', () => {
  test("the daemon takes the connection's own peer while it has one, not the address given", async (t) => {
    const dir = tempDir('blocklistd-man-peer-');
    const receiver = new Receiver(join(dir, 'blocklistd.sock'));
    t.after(() => receiver.close());
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    t.after(() => client.destroy());
    const conn = await accepted;
    t.after(() => conn.destroy());
    const handle = blocklistOpen({ socketPath: join(dir, 'blocklistd.sock'), logger: null });
    t.after(() => handle.close());
    assert.equal(handle.notifyPeer(AUTH_FAIL, conn, { address: '203.0.113.9', port: 9 }, 'peer'), true);
    await within(10_000, 'the report', receiver.waitFor(1));
    const n = receiver.received[0]!;
    assert.deepEqual([toText(n.remote), n.remote.port, n.explicitPeer], ['127.0.0.1', client.localPort, false]);
  });
});

describe('blocklistd-helper(8): the custom helper', () => {
  const lines = page('blocklistd-helper.8');
  const [marker] = markers(lines, 'code').filter((m) => m.name === 'custom-helper');
  const code = literalAfter(lines, marker!.index);

  test('is valid sh', async () => {
    const dir = tempDir('blocklistd-man-helper-');
    writeFileSync(join(dir, 'helper'), code);
    const r = await run('sh', ['-n', join(dir, 'helper')]);
    assert.equal(r.code, 0, r.stderr);
  });

  test('blocks, unblocks, refuses what it does not know and flushes, in a network namespace', async (t) => {
    const ip = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].find((p) => existsSync(p));
    if (!isRoot || ip === undefined) {
      t.skip(!isRoot ? 'needs root for a network namespace' : 'ip(8) is not installed');
      return;
    }
    const dir = tempDir('blocklistd-man-helper-');
    const helper = join(dir, 'helper');
    writeFileSync(helper, code);
    chmodSync(helper, 0o755);
    const ns = `blman${process.pid}`;
    assert.equal((await run(ip, ['netns', 'add', ns])).code, 0);
    t.after(() => spawnSync(ip, ['netns', 'delete', ns]));
    await run(ip, ['-n', ns, 'link', 'set', 'lo', 'up']);
    const envPath = { PATH: `${dirname(ip)}:/usr/sbin:/sbin:/usr/bin:/bin` };
    const call = (...args: string[]): Promise<{ code: number | null; stdout: string }> =>
      run(ip, ['netns', 'exec', ns, helper, ...args], { env: envPath });
    const routes = async (): Promise<string> => {
      const v4 = await run(ip, ['-n', ns, 'route', 'show', 'type', 'blackhole']);
      const v6 = await run(ip, ['-n', ns, '-6', 'route', 'show', 'type', 'blackhole']);
      return (v4.stdout + v6.stdout)
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => l.split(' ')[1])
        .join(' ');
    };

    assert.deepEqual(await call('add', 'blocklistd', 'tcp', '192.0.2.7', '32', '22', ''), { code: 0, stdout: 'OK\n', stderr: '' });
    assert.equal((await call('add', 'blocklistd', 'tcp', '::ffff:198.51.100.0', '120', '22', '')).stdout, 'OK\n');
    assert.equal((await call('add', 'blocklistd', 'udp', '2001:db8::7', '128', '53', '')).stdout, 'OK\n');
    assert.equal(await routes(), '192.0.2.7 198.51.100.0/24 2001:db8::7');
    // idempotent
    assert.equal((await call('add', 'blocklistd', 'tcp', '192.0.2.7', '32', '22', '')).stdout, 'OK\n');
    assert.equal((await call('rem', 'blocklistd', 'tcp', '192.0.2.7', '32', '22', 'OK')).stdout, 'OK\n');
    assert.equal((await call('rem', 'blocklistd', 'tcp', '192.0.2.7', '32', '22', 'OK')).stdout, 'OK\n', 'what is not there is removed');
    assert.equal(await routes(), '198.51.100.0/24 2001:db8::7');
    const caps = await call('capabilities');
    assert.deepEqual([caps.code, caps.stdout], [1, ''], 'no batch mode');
    assert.equal((await call('flush', 'blocklistd')).stdout, 'OK\n');
    assert.equal(await routes(), '');
  });
});
