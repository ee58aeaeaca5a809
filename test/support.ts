// Shared by the test files: temp dirs, a log collector, a receiving socket
// that hands notifications to promises, the independent C peer blprobe, one
// harness for a running process (WatchedProcess, and DaemonProcess on it,
// started for a test by startDaemon) and a raw control connection.
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { descriptorOf } from '../src/client/index.js';
import { parseIP, toText } from '../src/conf/ip.js';
import { Blocklist, type BlocklistAction } from '../src/index.js';
import { ClientSocket } from '../src/protocol/native.js';
import { NotificationSocket } from '../src/protocol/server.js';
import { StateStore } from '../src/state/store.js';
import type { EffectiveRule, Entry, LogFn, LogLevel, Notification, SocketAddress } from '../src/types.js';

/** The repository (this file runs as dist/test/support.js). */
export const repoRoot = resolve(fileURLToPath(import.meta.url), '../../..');

export const isRoot = process.getuid?.() === 0;

const tempDirs: string[] = [];
process.on('exit', () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory, removed when the test process exits. */
export function tempDir(prefix = 'blocklistd-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** What a program of this repository needs at run time: the launchers, the compiled code, the addon, the dependencies. */
const RUNTIME_ENTRIES = ['package.json', 'bin', 'dist', 'build', 'node_modules', 'etc'];

let sharedRoot: string | undefined;

/**
 * A copy of the repository's runtime that any user can read, made once per
 * test process, for code run as another user (setpriv, `run(..., { uid })`):
 * the checkout itself may live below a directory only its owner can enter
 * (a clone under /root or in a mktemp -d), where such a user cannot reach
 * dist/ or node_modules/.  Copied, not linked: a hard link keeps the
 * checkout's file modes, which may be 0600.
 */
export function sharedTree(): string {
  if (sharedRoot === undefined) {
    const root = tempDir('blocklistd-shared-');
    const entries = RUNTIME_ENTRIES.filter((e) => existsSync(join(repoRoot, e))).map((e) => join(repoRoot, e));
    execFileSync('cp', ['-R', ...entries, root]);
    execFileSync('chmod', ['-R', 'a+rX', root]);
    chmodSync(root, 0o755);
    sharedRoot = root;
  }
  return sharedRoot;
}

export function openDescriptors(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Resolves once `condition()` holds; rejects after `ms`. */
export async function until(condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms: ${condition.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export class LogCollector {
  readonly lines: { level: LogLevel; message: string }[] = [];
  readonly log: LogFn = (level, message) => {
    this.lines.push({ level, message });
  };

  count(level: LogLevel, message: string): number {
    return this.lines.filter((l) => l.level === level && l.message === message).length;
  }

  clear(): void {
    this.lines.length = 0;
  }
}

/** A bound notification socket whose notifications arrive through `next()`. */
export class Receiver {
  readonly logs = new LogCollector();
  readonly socket: NotificationSocket;
  readonly received: Notification[] = [];
  batches = 0;
  private waiters: { n: number; resolve: () => void }[] = [];

  constructor(
    readonly path: string,
    start = true,
  ) {
    this.socket = new NotificationSocket(path, { log: this.logs.log });
    if (start) this.start();
  }

  start(): void {
    this.socket.start((batch) => {
      this.batches++;
      this.received.push(...batch);
      const ready = this.waiters.filter((w) => this.received.length >= w.n);
      this.waiters = this.waiters.filter((w) => this.received.length < w.n);
      for (const w of ready) w.resolve();
    });
  }

  /** Resolves once `n` notifications in all have arrived. */
  waitFor(n: number): Promise<void> {
    if (this.received.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }

  async next(): Promise<Notification> {
    const index = this.received.length;
    await this.waitFor(index + 1);
    return this.received[index];
  }

  close(): void {
    this.socket.close();
  }
}

/** Where the reference peer's sources are: ../shared/tools/blprobe beside the clone. */
function blprobeSources(): string {
  const candidates = [process.env.BLPROBE_SRC, resolve(repoRoot, '../shared/tools/blprobe'), '/work/shared/tools/blprobe'].filter(
    (p): p is string => p !== undefined,
  );
  const found = candidates.find((dir) => existsSync(join(dir, 'blprobe.c')));
  if (found === undefined) throw new Error(`blprobe sources not found in ${candidates.join(', ')} (set BLPROBE_SRC)`);
  return found;
}

let blprobeBinary: Promise<string> | undefined;

/** Builds blprobe out of tree once per test process, as its README says. */
export function blprobe(): Promise<string> {
  blprobeBinary ??= (async () => {
    const out = tempDir('blprobe-');
    await promisify(execFile)('make', ['-s', '-C', blprobeSources(), `OUT=${out}`]);
    return join(out, 'blprobe');
  })();
  return blprobeBinary;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  uid?: number;
  gid?: number;
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** The whole environment instead. */
  onlyEnv?: Record<string, string>;
  /** Standard input; none (/dev/null) without it. */
  input?: string;
  argv0?: string;
}

/** Runs a program without blocking the event loop (the receiver must keep draining). */
export function run(file: string, args: readonly string[], { env, onlyEnv, input, ...rest }: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, {
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: onlyEnv ?? { ...process.env, ...env },
      ...rest,
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
    if (input !== undefined) {
      child.stdin!.on('error', () => {}); // a program that exits without reading
      child.stdin!.end(input);
    }
  });
}

/** Children of WatchedProcess not yet exited: killed by killWatched() and at this process's exit. */
const watched = new Set<ChildProcess>();

export function killWatched(): void {
  for (const child of watched) child.kill('SIGKILL');
}
process.on('exit', killWatched);

/**
 * A long-running program (a daemon, a server, a namespace holder) whose
 * output on `streams` (its stdout and stderr unless told) is kept as one
 * text that can be waited for and searched, from a mark on.
 */
export class WatchedProcess {
  text = '';
  /** Its exit status; -1 when a signal ended it. */
  readonly exited: Promise<number | null>;
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    streams: readonly (NodeJS.ReadableStream | null)[] = [child.stdout, child.stderr],
  ) {
    watched.add(child);
    for (const stream of streams) {
      stream?.on('data', (d: Buffer) => {
        this.text += d.toString();
        for (const w of this.waiters) w();
      });
    }
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        watched.delete(child);
        resolve(signal === null ? code : -1);
        for (const w of this.waiters) w();
      }),
    );
  }

  /** Where the output ends now: a `from` for waitFor and count. */
  get mark(): number {
    return this.text.length;
  }

  /** The first match of `pattern` in the output from `from` on (use the m flag for ^ and $ of a line). */
  waitFor(pattern: RegExp, from = 0, ms = 15_000): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`${this.name}: no ${pattern} within ${ms} ms; output:\n${this.text}`)), ms);
      const finish = (error?: Error, m?: RegExpExecArray): void => {
        this.waiters.delete(check);
        clearTimeout(timer);
        if (error) reject(error);
        else resolve(m!);
      };
      const check = (): void => {
        const m = pattern.exec(this.text.slice(from));
        if (m !== null) return finish(undefined, m);
        if (this.child.exitCode !== null || this.child.signalCode !== null)
          finish(new Error(`${this.name} exited before ${pattern}; output:\n${this.text}`));
      };
      this.waiters.add(check);
      check();
    });
  }

  /** How often `pattern` occurs from `from` on. */
  count(pattern: RegExp, from = 0): number {
    return [...this.text.slice(from).matchAll(new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`))].length;
  }

  /** SIGTERM, SIGKILL after 5 s; its exit status. */
  async stop(): Promise<number | null> {
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/** A program that must succeed: its exit status and output in the failure message. */
export async function succeeds(result: Promise<RunResult>, what: string): Promise<RunResult> {
  const r = await result;
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stdout}${r.stderr}`);
  return r;
}

/** Network namespaces this test process made and has not deleted yet: deleted at its exit, whatever ended it. */
const namespaces = new Set<string>();

/** Deletes what namespaces are left (also for a test file's own signal handler). */
export function deleteNamespaces(): void {
  for (const ns of namespaces) spawnSync('ip', ['netns', 'delete', ns]);
  namespaces.clear();
}
process.on('exit', deleteNamespaces);

let pairs = 0;

/**
 * Two network namespaces joined by a veth pair, deleted after the test: the
 * server's end `<link>0` with the `server` addresses, the client's
 * `<link>1` with the `client` ones (address/prefix; IPv6 without duplicate
 * address detection), links up, and each side's neighbours fixed so that no
 * ARP or neighbour discovery races the first connections.
 */
export async function vethPair(
  t: TestContext,
  link: string,
  server: readonly string[],
  client: readonly string[],
): Promise<{ srv: string; cli: string }> {
  const base = `${link}-${process.pid}-${++pairs}`;
  const srv = `${base}-srv`;
  const cli = `${base}-cli`;
  const ip = (...args: string[]): Promise<RunResult> => succeeds(run('ip', args), `ip ${args.join(' ')}`);
  t.after(async () => {
    for (const ns of [srv, cli]) {
      await run('ip', ['netns', 'delete', ns]);
      namespaces.delete(ns);
    }
  });
  for (const ns of [srv, cli]) {
    namespaces.add(ns);
    await ip('netns', 'add', ns);
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
  }
  const macs = { srv: '02:00:00:97:00:01', cli: '02:00:00:97:00:02' };
  await ip(
    '-n',
    srv,
    'link',
    'add',
    `${link}0`,
    'address',
    macs.srv,
    'type',
    'veth',
    'peer',
    'name',
    `${link}1`,
    'address',
    macs.cli,
    'netns',
    cli,
  );
  const ends = [
    { ns: srv, dev: `${link}0`, own: server, peers: client, peerMac: macs.cli },
    { ns: cli, dev: `${link}1`, own: client, peers: server, peerMac: macs.srv },
  ];
  for (const end of ends) {
    for (const a of end.own) await ip('-n', end.ns, 'addr', 'add', a, 'dev', end.dev, ...(a.includes(':') ? ['nodad'] : []));
    await ip('-n', end.ns, 'link', 'set', end.dev, 'up');
  }
  for (const end of ends) {
    for (const a of end.peers)
      await ip('-n', end.ns, 'neigh', 'replace', a.split('/')[0]!, 'lladdr', end.peerMac, 'dev', end.dev, 'nud', 'permanent');
  }
  return { srv, cli };
}

export async function runBlprobe(args: string[]): Promise<RunResult> {
  return run(await blprobe(), args);
}

/** Runs bin/blocklistctl. */
export function ctl(args: readonly string[], o: RunOptions = {}): Promise<RunResult> {
  return run(process.execPath, [join(repoRoot, 'bin/blocklistctl'), ...args], o);
}

/** What `blocklistctl status --json` answers, as far as the tests read it. */
export interface ControlStatus {
  pid: number;
  sockets: string[];
  control: string;
  entries: number;
  blocked: number;
  metrics: string | null;
  counters: Record<string, Record<string, number>>;
  /** What the last start or reload found wrong (issue 15 §1). */
  problems: { severity: 'fatal' | 'warning'; code: string; message: string }[];
}

/** `blocklistctl status --json` through the control socket at `path`: it must answer. */
export async function controlStatus(path: string): Promise<ControlStatus> {
  const r = await ctl(['status', '--json', '--control', path]);
  assert.equal(r.code, 0, `blocklistctl status: ${r.stdout}${r.stderr}`);
  return (JSON.parse(r.stdout) as { result: ControlStatus }).result;
}

/** A received endpoint with its address as text, for assertions. */
export function endpointText(endpoint: SocketAddress): { family: SocketAddress['family']; address: string; port: number } {
  return { family: endpoint.family, address: toText(endpoint), port: endpoint.port };
}

/** A TCP notification from an IPv4 client `remote` to 192.0.2.1:`port`, as the receive path decodes it. */
export function tcpNotification(port: number, remote: string, fields: Partial<Notification> = {}): Notification {
  return {
    type: 1,
    text: '',
    pid: 1,
    uid: 0,
    gid: 0,
    socketType: 'stream',
    local: { ...parseIP('192.0.2.1', 'inet')!, port },
    remote: { ...parseIP(remote, 'inet')!, port: 40000 },
    explicitPeer: false,
    ...fields,
  };
}

/** A state key for tests: an IPv4 ssh entry, nfail 3, one hour, with `fields` changed. */
export function stateKey(address: string, fields: Partial<EffectiveRule> = {}): EffectiveRule {
  return { family: 2, address, lmask: 32, port: 22, proto: 6, uid: -1, name: 'blocklistd', rmask: -1, nfail: 3, duration: 3600, ...fields };
}

export interface DaemonSetup {
  /** blocklistd.conf text. */
  config: string;
  /** More arguments; the daemon always gets -dd -v and its files in a temp directory. */
  args?: string[];
  env?: Record<string, string>;
  /** Use this directory (a restart keeps the database). */
  dir?: string;
}

/**
 * blocklistd as a process, in the foreground with -dd -v, its log on stderr, the control fixture as helper:
 * a WatchedProcess of its stderr with the daemon's files beside it.
 */
export class DaemonProcess {
  /** Its exit status; null when a signal ended it. */
  readonly exited: Promise<number | null>;
  private readonly log: WatchedProcess;

  private constructor(
    readonly child: ChildProcess,
    readonly dir: string,
  ) {
    this.log = new WatchedProcess('blocklistd', child, [child.stderr]);
    this.exited = this.log.exited.then((code) => (code === -1 ? null : code));
  }

  /** Its log so far. */
  get stderr(): string {
    return this.log.text;
  }
  get socket(): string {
    return join(this.dir, 'blocklistd.sock');
  }
  /** The control socket's default path, beside the notification socket. */
  get control(): string {
    return join(this.dir, 'blocklistd.ctl');
  }
  get db(): string {
    return join(this.dir, 'blocklistd.db');
  }
  get config(): string {
    return join(this.dir, 'blocklistd.conf');
  }
  get helperLog(): string {
    return join(this.dir, 'helper.log');
  }

  static async start(setup: DaemonSetup): Promise<DaemonProcess> {
    const dir = setup.dir ?? tempDir('blocklistd-daemon-');
    writeFileSync(join(dir, 'blocklistd.conf'), setup.config);
    const args = [
      '-dd',
      '-v',
      '-c',
      join(dir, 'blocklistd.conf'),
      '-C',
      join(repoRoot, 'test/fixtures/control'),
      '-D',
      join(dir, 'blocklistd.db'),
      '-s',
      join(dir, 'blocklistd.sock'),
    ];
    const child = spawn(process.execPath, [join(repoRoot, 'bin/blocklistd'), ...args, ...(setup.args ?? [])], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HELPER_LOG: join(dir, 'helper.log'), HELPER_MODE_FILE: join(dir, 'helper.mode'), ...setup.env },
    });
    const daemon = new DaemonProcess(child, dir);
    await daemon.waitFor(/listening on /);
    return daemon;
  }

  /** Resolves with the index of the first match of `pattern` in stderr from `from` on; rejects if the daemon exits first. */
  async waitFor(pattern: RegExp, from = 0, ms = 10_000): Promise<number> {
    return from + (await this.log.waitFor(pattern, from, ms)).index;
  }

  /** Waits until the notification with message `text` is processed and its batch committed. */
  async settled(text: string): Promise<void> {
    const at = await this.waitFor(new RegExp(`msg="${text}"`));
    await this.waitFor(/committed \d+/, at);
  }

  /** The calls the helper received so far, one line each. */
  helperCalls(): string[] {
    return existsSync(this.helperLog)
      ? readFileSync(this.helperLog, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
      : [];
  }

  /** Changes how the control fixture answers from now on. */
  helperMode(mode: string): void {
    writeFileSync(join(this.dir, 'helper.mode'), mode);
  }

  /** The database's entries now, by address and port. */
  entries(): Entry[] {
    const store = StateStore.open(this.db, { readonly: true });
    try {
      return [...store.entries()];
    } finally {
      store.close();
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    this.child.kill(signal);
    return this.exited;
  }
}

export interface StartOptions extends Omit<DaemonSetup, 'config' | 'args'> {
  /** Resolve once the notification sockets listen, before the control socket opens (to see what comes before it). */
  listeningOnly?: boolean;
}

/**
 * blocklistd started for test `t` and killed after it: resolves once its control socket is open too ("listening on"
 * comes with the notification sockets, the control socket after them), unless --no-control-socket or `listeningOnly`.
 */
export async function startDaemon(
  t: TestContext,
  config: string,
  args: string[] = [],
  { listeningOnly = false, ...setup }: StartOptions = {},
): Promise<DaemonProcess> {
  const daemon = await DaemonProcess.start({ config, args, ...setup });
  t.after(() => daemon.stop('SIGKILL'));
  if (!listeningOnly && !args.includes('--no-control-socket')) await daemon.waitFor(/control socket /);
  return daemon;
}

/** A JSON answer of the daemon, read field by field as the tests go. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = Record<string, any>;

/** The daemon's answer as `blocklistctl --json` prints it. */
export function parsed(r: RunResult): Json {
  try {
    return JSON.parse(r.stdout) as Json;
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}${r.stderr}`);
  }
}

/** A raw connection to the control socket: what it sends is up to the test, the answers are collected as lines. */
export class Connection {
  readonly lines: string[] = [];
  /** Bytes received after the last newline. */
  partial = '';
  error: NodeJS.ErrnoException | undefined;
  readonly closed: Promise<void>;
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      const parts = (this.partial + d).split('\n');
      this.partial = parts.pop()!;
      this.lines.push(...parts);
      this.wake();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => (this.error = e));
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.closed.then(() => this.wake());
  }

  static open(path: string): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(path);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new Connection(socket));
      });
      socket.once('error', reject);
    });
  }

  get isClosed(): boolean {
    return this.socket.destroyed;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** The first `n` answers, parsed; rejects when the connection closes before or after `ms`. */
  async answers(n: number, ms = 10_000): Promise<Json[]> {
    const deadline = Date.now() + ms;
    while (this.lines.length < n) {
      if (this.isClosed)
        throw new Error(
          `connection closed after ${this.lines.length} of ${n} answers (${this.error?.code ?? 'no error'}): ${this.lines.join('\n')}`,
        );
      if (Date.now() > deadline) throw new Error(`${this.lines.length} of ${n} answers within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.lines.slice(0, n).map((l) => JSON.parse(l) as Json);
  }

  /** Sends one request and waits for its answer (the connection must have nothing else outstanding). */
  async ask(command: string, args: Json = {}, id: unknown = 1): Promise<Json> {
    const before = this.lines.length;
    this.send(`${JSON.stringify({ version: 1, id, command, args })}\n`);
    return (await this.answers(before + 1)).at(-1)!;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** One request to the control socket at `path` on a fresh connection: the daemon's answer. */
export async function controlRequest(path: string, command: string, args: Json = {}): Promise<Json> {
  const c = await Connection.open(path);
  try {
    return await c.ask(command, args);
  } finally {
    c.close();
  }
}

/** `status` through a fresh control connection to `daemon`: its result. */
export async function requestStatus(daemon: DaemonProcess): Promise<Json> {
  const answer = await controlRequest(daemon.control, 'status');
  assert.ok('result' in answer, JSON.stringify(answer));
  return answer.result as Json;
}

/** What a command must not have changed: the helper's calls and the database. */
export function snapshot(daemon: DaemonProcess): { calls: string[]; entries: string } {
  return { calls: daemon.helperCalls(), entries: JSON.stringify(daemon.entries()) };
}

/** A counter's series that counted something (those at 0 may or may not be listed). */
export const counted = (series: Record<string, number>): Record<string, number> =>
  Object.fromEntries(Object.entries(series).filter(([, v]) => v !== 0));

/** A process's descriptors now. */
export const descriptors = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/** A process's descriptors once the connections just closed are gone on its side too (no change for 200 ms). */
export async function steadyDescriptors(pid: number): Promise<number> {
  let last = descriptors(pid);
  for (let same = 0; same < 4;) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = descriptors(pid);
    same = now === last ? same + 1 : 0;
    last = now;
  }
  return last;
}

/** blocklistctl's error line for `command` (a RegExp source) on its stderr. */
export const errorLine = (command: string, message: string): RegExp => new RegExp(`^blocklistctl: ${command}: ${message}`, 'm');

/** `text` matched literally inside a RegExp. */
export const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** A TCP connection from `client` to a loopback server on `port` (0: any), reported through the client API. */
export class Reporter {
  private constructor(
    private readonly server: net.Server,
    private readonly accepted: net.Socket,
    private readonly connection: net.Socket,
    private readonly client: Blocklist,
  ) {}

  static async connect(socketPath: string, port = 0, client = '127.0.0.1'): Promise<Reporter> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const connection = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', localAddress: client });
    connection.on('error', () => {});
    return new Reporter(server, await accepted, connection, new Blocklist({ socketPath, logger: null }));
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  report(action: BlocklistAction, text: string): void {
    assert.equal(this.client.notify(action, this.accepted, text), true);
  }

  /** Sends a hand-made datagram with the connection's descriptor, as a faulty client would. */
  reportRaw(datagram: Buffer, socketPath: string): void {
    const raw = new ClientSocket();
    assert.equal(raw.open(), 0);
    assert.equal(raw.connect(socketPath), 0);
    assert.equal(raw.send(datagram, descriptorOf(this.accepted)!), 0);
    raw.close();
  }

  close(): void {
    this.client.close();
    this.accepted.destroy();
    this.connection.destroy();
    this.server.close();
  }
}

/** A free loopback TCP port. */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** What the tests use of unix-dgram to play the syslog daemon. */
interface DgramSocket {
  bind(path: string): void;
  close(): void;
}
const unixDgram = createRequire(import.meta.url)('unix-dgram') as {
  createSocket(type: 'unix_dgram', onMessage: (data: Buffer) => void): DgramSocket;
};

/** A syslog daemon's /dev/log in a temp dir; records arrive in `records`. */
export class SyslogReceiver {
  readonly records: string[] = [];
  private readonly socket = unixDgram.createSocket('unix_dgram', (data) => this.records.push(data.toString()));

  constructor(readonly path = join(tempDir('blocklistd-syslog-'), 'log')) {
    this.socket.bind(this.path);
  }

  async wait(n: number): Promise<string[]> {
    await until(() => this.records.length >= n, 3000);
    return this.records;
  }

  close(): void {
    this.socket.close();
  }
}

/** utime + stime of a process, in clock ticks. */
export function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** A socket file left behind by a notification socket in a process killed with SIGKILL. */
export async function staleSocket(path: string): Promise<void> {
  const killed = await run(process.execPath, [
    '--input-type=module',
    '-e',
    `import { NotificationSocket } from ${JSON.stringify(join(repoRoot, 'dist/src/protocol/server.js'))};
     new NotificationSocket(${JSON.stringify(path)}, { log: () => {} });
     process.kill(process.pid, 'SIGKILL');`,
  ]);
  assert.equal(killed.code, null);
  assert.ok(lstatSync(path).isSocket());
}
