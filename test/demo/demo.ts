// npm run demo: blocklistd doing its job on the sample configuration, as any
// user, in about ten seconds.
//
// It starts the daemon in the foreground (-d, its log on stderr) with a
// private socket and a fresh SQLite file under ./var/demo/, the sample
// configuration etc/blocklistd.conf and the helper's `log` back end (which
// records the blocks it would make instead of touching the packet filter);
// a small login server (login-server.ts) that reports each login through
// the client API; then a legitimate user who mistypes once, the host itself
// (127.0.0.1) failing to log in and never blocked, an attacker guessing
// root's password from 127.0.0.66 until the daemon blocks it, a legitimate
// user logging in meanwhile, and the release once the block's duration is
// over.  It prints what happens and stops the daemon cleanly.
//
// The sample's catch-all line (`* * * * * 3 60`) covers the login server's
// port, but holds a block for a minute; a drop-in file beside the sample
// (var/demo/blocklistd.conf.d/demo.conf) gives that port a duration of 5 s.
// The sample allow-lists loopback (127.0.0.0/8, ::1): the drop-in makes
// 127.0.0.64/26 the demo's "internet", counted as any other address (a
// [remote] line for a /26 comes before the sample's /8 in the order rules
// are tried), where the attacker and the user who mistypes are.
//
// Options: --verbose (every line of the daemon's log), --port N (default
// 2222, or a free port when 2222 is taken).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { tryLogin, WORDLIST, type AttemptResult } from './attacker.js';
import { LoginServer, type LoginEvent } from './login-server.js';

/** The repository: this file runs as dist/test/demo/demo.js. */
const repoRoot = resolve(fileURLToPath(import.meta.url), '../../../..');
const NFAIL = 3;
const DURATION = 5;
const ATTACKER = '127.0.0.66';
const ALICE = '127.0.0.10';
const BOB = '127.0.0.70';
const SERVER = '127.0.0.1';
/** Counted as any other address: the drop-in's [remote] line. */
const INTERNET = '127.0.0.64/26';

const USAGE = `usage: npm run demo -- [--verbose] [--port N]

  --verbose   print every line of the daemon's log
  --port N    the login server's port (default 2222; a free one when it is taken)
  -h, --help  this text
`;

/** The options, or exit: 0 after --help, 2 (a usage error) with the usage on stderr. */
function options(): { verbose: boolean; port: string } {
  try {
    const { values } = parseArgs({
      options: {
        verbose: { type: 'boolean', default: false },
        port: { type: 'string', default: '2222' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    if (!/^\d+$/.test(values.port) || Number(values.port) > 65535) throw new Error(`--port ${values.port}: not a port number`);
    return values;
  } catch (e) {
    process.stderr.write(`demo: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}
const opts = options();

const t0 = Date.now();
/** The daemon, killed if the demo overruns. */
let daemonChild: ChildProcess | undefined;
/** A text as a regular expression matches it. */
const esc = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const rel = (p: string): string => (p.startsWith(repoRoot + '/') ? relative(repoRoot, p) : p);
const stamp = (): string => `[${((Date.now() - t0) / 1000).toFixed(1).padStart(4)}s]`;
function say(text: string): void {
  process.stdout.write(`${stamp()} ${text}\n`);
}
function heading(text: string): void {
  process.stdout.write(`\n== ${text}\n`);
}
function block(text: string): void {
  for (const line of text.replace(/\n$/, '').split('\n')) process.stdout.write(`         ${line}\n`);
}

// --- the daemon ------------------------------------------------------------

/** Lines of the daemon's log not worth showing without --verbose. */
const QUIET = [/^run /, /^capabilities returns/, /^received \d+ from/, /^process: initial db state/, /^control socket/, /^debug level/];

class Daemon {
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  private listening = false;
  private partial = '';
  private waiters = new Set<() => void>();

  constructor(readonly child: ChildProcess) {
    child.stderr!.on('data', (d: Buffer) => {
      const text = this.partial + d.toString();
      const parts = text.split('\n');
      this.partial = parts.pop()!;
      for (const line of parts) this.line(line);
    });
    this.exited = new Promise((resolvePromise) =>
      child.once('exit', (code, signal) => {
        if (this.partial !== '') this.line(this.partial);
        resolvePromise(signal === null ? code : -1);
        for (const w of this.waiters) w();
      }),
    );
  }

  private line(line: string): void {
    this.lines.push(line);
    if (/^listening on /.test(line)) this.listening = true;
    if (opts.verbose || (this.listening && !QUIET.some((q) => q.test(line)))) process.stdout.write(`${stamp()}   daemon | ${line}\n`);
    for (const w of this.waiters) w();
  }

  /** The index of the next line matching `pattern` from line `from` on. */
  waitFor(pattern: RegExp, from = 0, ms = 10_000): Promise<{ index: number; match: RegExpExecArray }> {
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => finish(new Error(`the daemon did not log ${pattern} within ${ms / 1000} s`)), ms);
      const finish = (error?: Error, found?: { index: number; match: RegExpExecArray }): void => {
        this.waiters.delete(check);
        clearTimeout(timer);
        if (error) reject(error);
        else resolvePromise(found!);
      };
      const check = (): void => {
        for (let i = from; i < this.lines.length; i++) {
          const match = pattern.exec(this.lines[i]);
          if (match !== null) return finish(undefined, { index: i, match });
        }
        if (this.child.exitCode !== null || this.child.signalCode !== null)
          finish(new Error(`the daemon exited before logging ${pattern}:\n${this.lines.join('\n')}`));
      };
      this.waiters.add(check);
      check();
    });
  }

  get mark(): number {
    return this.lines.length;
  }
}

const run = promisify(execFile);

async function blocklistctl(args: string[]): Promise<void> {
  process.stdout.write(`${stamp()} $ blocklistctl ${args.map((a) => (a.startsWith('/') ? rel(a) : a)).join(' ')}\n`);
  const { stdout } = await run(process.execPath, [join(repoRoot, 'bin/blocklistctl'), ...args]);
  block(stdout === '' ? '(nothing)' : stdout);
}

/** The port: --port if it is free, else any free one. */
async function freePort(wanted: number): Promise<number> {
  for (const port of [wanted, 0]) {
    const s = net.createServer();
    const ok = await new Promise<boolean>((resolvePromise) => {
      s.once('error', () => resolvePromise(false));
      s.listen(port, SERVER, () => resolvePromise(true));
    });
    if (ok) {
      const got = (s.address() as net.AddressInfo).port;
      await new Promise((r) => s.close(r));
      return got;
    }
  }
  throw new Error('no free port');
}

function describe(r: AttemptResult): string {
  return r.outcome === 'welcome' || r.outcome === 'denied' ? `"${r.detail}"` : `${r.outcome}${r.detail === '' ? '' : ` (${r.detail})`}`;
}

async function main(): Promise<void> {
  // --- files: everything under var/demo/, fresh on each run
  const dir = join(repoRoot, 'var', 'demo');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'blocklistd.conf.d'), { recursive: true });
  const config = join(dir, 'blocklistd.conf');
  const db = join(dir, 'blocklistd.db');
  // a socket path must fit in 107 bytes: a clone in a deep directory gets one in /tmp
  let sock = join(dir, 'blocklistd.sock');
  let sockDir: string | undefined;
  if (Buffer.byteLength(sock) > 100) {
    sockDir = mkdtempSync(join(tmpdir(), 'blocklistd-demo-'));
    sock = join(sockDir, 'blocklistd.sock');
  }
  const port = await freePort(Number(opts.port));
  let sample = '-> etc/blocklistd.conf (the sample, as it is)';
  try {
    symlinkSync(relative(dir, join(repoRoot, 'etc/blocklistd.conf')), config);
  } catch {
    copyFileSync(join(repoRoot, 'etc/blocklistd.conf'), config);
    sample = '= etc/blocklistd.conf (a copy of the sample: no symbolic links here)';
  }
  const dropIn = `${port}\tstream\t*\t*\t*\t${NFAIL}\t${DURATION}`;
  const internet = `${INTERNET}\t*\t*\t*\t=\t=\t=`;
  writeFileSync(
    join(dir, 'blocklistd.conf.d/demo.conf'),
    `# npm run demo: the login server's port, blocked at ${NFAIL} failure points for ${DURATION} seconds\n[local]\n${dropIn}\n` +
      `# the demo's "internet", out of the sample's loopback allow-list: counted as the [local] rule says\n[remote]\n${internet}\n`,
  );

  process.stdout.write(`blocklistd demo: a login server on ${SERVER}:${port} reports every login to blocklistd.
  config   ${rel(config)} ${sample}
           ${rel(join(dir, 'blocklistd.conf.d/demo.conf'))}: "${dropIn.replace(/\t/g, ' ')}"
           (the sample's catch-all line "* * * * * 3 60" covers port ${port} too, but for 60 s)
           and "[remote] ${internet.replace(/\t/g, ' ')}": the demo's "internet", out of the
           sample's loopback allow-list "127.0.0.0/8 * * * = * =" (nfail *: never blocked)
  daemon   blocklistd -d -c ${rel(config)} -D ${rel(db)} -s ${rel(sock)}
  helper   bin/blocklistd-helper, BLOCKLISTD_BACKEND=log: it logs the blocks it would make, the
           packet filter is not touched (test/e2e.test.ts does it for real with nftables)
  users    alice/wonderland, bob/builder, root/correct-horse-battery-staple
`);

  heading('Which rule a failure on the login port meets');
  await blocklistctl(['test', '-c', config, ATTACKER, String(port)]);

  // --- the daemon and the login server
  heading('Starting the daemon and the login server');
  const child = spawn(process.execPath, [join(repoRoot, 'bin/blocklistd'), '-d', '-c', config, '-D', db, '-s', sock], {
    stdio: ['ignore', 'inherit', 'pipe'],
    env: {
      ...process.env,
      BLOCKLISTD_BACKEND: 'log',
      // no /etc/blocklistd-helper.conf: its log_file= would take the helper's lines away
      BLOCKLISTD_HELPER_CONF: join(dir, 'no-helper.conf'),
    },
  });
  daemonChild = child;
  const daemon = new Daemon(child);
  let server: LoginServer | undefined;
  const stopAll = async (): Promise<void> => {
    await server?.close();
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await daemon.exited;
      clearTimeout(timer);
    }
    if (sockDir !== undefined) rmSync(sockDir, { recursive: true, force: true });
  };
  try {
    await daemon.waitFor(/^listening on /);
    const logins: LoginEvent[] = [];
    server = await LoginServer.start({ hosts: [SERVER], port, socketPath: sock, onLogin: (e) => logins.push(e) });
    say(`login server listening on ${server.addresses.join(', ')}`);

    const attempt = async (who: string, from: string, user: string, password: string): Promise<AttemptResult> => {
      const r = await tryLogin({ host: SERVER, port, from, user, password, timeoutMs: 2000 });
      say(`${who.padEnd(8)} ${from} logs in as ${user}/${password}: ${describe(r)}`);
      if (r.outcome === 'welcome' || r.outcome === 'denied') {
        const e = logins.at(-1);
        if (e?.reported !== true) throw new Error(`the login server could not report ${from}'s login to ${sock}`);
      }
      return r;
    };

    // --- a user who mistypes once
    heading(`A user mistypes once: AUTH_FAIL counts 2 points, the good login (AUTH_OK) resets the count`);
    let mark = daemon.mark;
    if ((await attempt('bob', BOB, 'bob', 'biulder')).outcome !== 'denied') throw new Error('bob was not denied');
    await daemon.waitFor(new RegExp(`^process: final db state for ${esc(BOB)}: count=2/${NFAIL} `), mark);
    mark = daemon.mark;
    if ((await attempt('bob', BOB, 'bob', 'builder')).outcome !== 'welcome') throw new Error('bob could not log in');
    await daemon.waitFor(new RegExp(`^process: final db state for ${esc(BOB)}: count=0/${NFAIL} `), mark);

    // --- the host itself
    heading(`The host itself (${SERVER}) fails to log in: never blocked, the sample allow-lists loopback`);
    await blocklistctl(['test', '-c', config, SERVER, String(port)]);
    for (const password of WORDLIST.slice(0, 2)) {
      mark = daemon.mark;
      if ((await attempt('local', SERVER, 'root', password)).outcome !== 'denied') throw new Error(`${SERVER} was not denied`);
      const { match } = await daemon.waitFor(new RegExp(`^process: final db state for ${esc(SERVER)}: count=(\\d+)/`), mark);
      say(`${SERVER} has ${match[1]} points, and nfail * (never): no block, however many`);
    }

    // --- the attacker
    heading(`An attacker at ${ATTACKER} guesses root's password (limit ${NFAIL} points: blocked at the 2nd failure)`);
    const blockedLine = new RegExp(`^blocked ${esc(ATTACKER)}/32:${port} for ${DURATION} seconds`);
    let failures = 0;
    for (const password of WORDLIST) {
      mark = daemon.mark;
      const r = await attempt('attacker', ATTACKER, 'root', password);
      if (r.outcome !== 'denied') throw new Error(`unexpected: ${describe(r)}`);
      failures++;
      const { match } = await daemon.waitFor(new RegExp(`^process: final db state for ${esc(ATTACKER)}: count=(\\d+)/${NFAIL} `), mark);
      const count = Number(match[1]);
      say(`failure ${failures} counted: ${ATTACKER} has ${count}/${NFAIL} points`);
      if (count >= NFAIL) break;
      await blocklistctl(['dump', '-D', db]);
    }
    await daemon.waitFor(blockedLine, mark);
    say(`${ATTACKER} is blocked on port ${port} after ${failures} failures (the rule id is what the helper printed)`);

    heading('The state database: blocked entries, with the time left (dump -b -r), and all entries (dump -a)');
    await blocklistctl(['dump', '-b', '-r', '-D', db]);
    await blocklistctl(['dump', '-a', '-D', db]);

    heading('Meanwhile a legitimate user logs in as usual');
    const alice = await attempt('alice', ALICE, 'alice', 'wonderland');
    if (alice.outcome !== 'welcome') throw new Error('alice could not log in');
    await daemon.waitFor(new RegExp(`^processing type=2 remote=${esc(ALICE)}:`), mark);
    say(`(with a real back end such as nftables the attacker's SYNs would now be dropped; the log back end drops nothing)`);

    heading(`The block is lifted ${DURATION} s after the last failure`);
    await daemon.waitFor(new RegExp(`^released ${esc(ATTACKER)}/32:${port} after ${DURATION} seconds`), mark, (DURATION + 10) * 1000);
    await blocklistctl(['dump', '-a', '-D', db]);

    if (daemon.lines.some((l) => l.startsWith(`blocked ${SERVER}/`))) throw new Error(`${SERVER} was blocked`);
    heading('Stopping');
    await server.close();
    server = undefined;
    say('login server closed');
    child.kill('SIGTERM');
    const code = await daemon.exited;
    say(`daemon stopped (exit status ${code})`);
    if (code !== 0) throw new Error(`the daemon exited with status ${code}`);
    say(`demo finished in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    process.stdout.write(`\ndemo failed: ${(e as Error).message}\n`);
    if (!opts.verbose) process.stdout.write(`the daemon's log:\n${daemon.lines.map((l) => `  ${l}`).join('\n')}\n`);
    process.exitCode = 1;
  } finally {
    await stopAll();
  }
}

// a reader that went away (`npm run demo | head`): stop the daemon and go quietly
process.stdout.on('error', () => {
  daemonChild?.kill('SIGTERM');
  process.exit(0);
});
const watchdog = setTimeout(() => {
  process.stdout.write('demo failed: it took longer than 60 s\n');
  daemonChild?.kill('SIGKILL');
  process.exit(1);
}, 60_000);
watchdog.unref();
await main();
