// blocklistd's command line (daemon.md §1): upstream's options, defaults,
// repetition rules, usage text and exit status, with paths made absolute
// (G21), -t validated (G19), -P read leniently (G22); plus long options.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { HELP_CONFIG, VERSION, getoptMessage } from '../cli.js';
import { DEFAULT_CONFIG_PATH } from '../conf/load.js';
import { logicalLines, ruleNameProblem, shownName } from '../conf/parse.js';
import { DEFAULT_RULE_NAME } from '../conf/system.js';
import { controlPathFor } from '../protocol/control.js';
import { errnoText } from '../errno.js';
import { DEFAULT_BACKLOG, DEFAULT_SOCKET_PATH } from '../protocol/server.js';
import { DEFAULT_DB_PATH } from '../state/store.js';
import { DEFAULT_KERNEL_EXPIRY_MARGIN } from './kernel-expiry.js';
import { DEFAULT_FLEET_BUCKET, fleetConfig, type FleetArguments } from '../fleet/config.js';
import type { FleetConfig } from '../fleet/fleet.js';

/** The helper shipped beside the daemon (bin/blocklistd-helper). */
export const DEFAULT_HELPER = fileURLToPath(new URL('../../../bin/blocklistd-helper', import.meta.url));

export const USAGE =
  'Usage: blocklistd [-vdfr] [-c <config>] [-R <rulename>] [-P <sockpathsfile>] [-C <controlprog>] ' +
  '[-D <dbfile>] [-s <sockpath>] [-t <timeout>]';

export type LogFormat = 'syslog' | 'json';

export interface DaemonOptions {
  /** -C: the packet-filter control program. */
  helper: string;
  /** -c: configuration file or directory. */
  config: string;
  /** -D: the state database. */
  db: string;
  /** -d: debug level; the daemon stays in the foreground and logs on stderr. */
  debug: number;
  /** -f: flush the packet filter at start (and truncate the database unless -r). */
  flush: boolean;
  /** -r: re-add the blocks of the database at start and on reload. */
  restore: boolean;
  /** -R: default rule name. */
  ruleName: string;
  /** Socket paths: every -s in order, then the lines of the -P file, else the default. */
  sockets: string[];
  /** -t: seconds between refreshes of the interface addresses (5 with -d, else 15). */
  timeout: number;
  /** -v: socket-layer messages on stderr. */
  verbose: boolean;
  /** --foreground: stay attached without debug output. */
  foreground: boolean;
  /** --log-format json: JSON lines on stdout instead of syslog. */
  logFormat: LogFormat;
  /** --pidfile: written when detached. */
  pidfile: string;
  /** --helper-timeout: seconds before a hanging helper is killed. */
  helperTimeout: number;
  /** --rem-retry: seconds between tries of a failed rem (G17). */
  remRetry: number;
  /** --syslog-socket */
  syslogSocket: string;
  /** --rename-bad-db: move an unusable database aside instead of exiting. */
  renameBadDb: boolean;
  /** No -s or -P: the sockets are the default one, or those systemd passes. */
  defaultSockets: boolean;
  /** --control-socket: the control socket; null with --no-control-socket. */
  control: string | null;
  /** --control-group: a group whose members may use the control socket too. */
  controlGroup: string | undefined;
  /** --metrics host:port: the Prometheus listener. */
  metrics: ListenAddress | undefined;
  /** --queue: datagrams the kernel should queue on each notification socket. */
  queue: number;
  /** --sender-rate: notifications per second per sender uid; 0 no limit. */
  senderRate: number;
  /** --sender-burst: notifications a sender may send at once. */
  senderBurst: number;
  /** --trust-user: users (names or uids) trusted besides root: exempt from the sender limit, and may name the peer of a TCP socket. */
  trustUsers: string[];
  /** --trust-group: groups (names or gids) whose processes are trusted as --trust-user's are. */
  trustGroups: string[];
  /** --max-entries: entries beyond which those not blocked are evicted, soonest expiry first; 0 no limit. */
  maxEntries: number;
  /** --fail-open: start even with a fatal problem (upstream's behaviour), logging it as a warning. */
  failOpen: boolean;
  /** --allow-self: the host's own addresses are never counted nor blocked. */
  allowSelf: boolean;
  /** --check: run the start-up checks, print them, exit. */
  check: boolean;
  /** --kernel-expiry(-margin): blocks get a kernel timeout this many seconds after their deadline; undefined without (upstream). */
  kernelExpiryMargin: number | undefined;
  /** --cut-connections: a block also ends the established connections it blocks. */
  cutConnections: boolean;
  /** --fleet and its options (issue 17): blocks shared through NATS JetStream; undefined without --fleet. */
  fleet: FleetConfig | undefined;
}

export const DEFAULT_SENDER_RATE = 1000;
export const DEFAULT_SENDER_BURST = 5000;
export const DEFAULT_MAX_ENTRIES = 1_000_000;

/** A command line that cannot be used: printed as `<progname>: <message>` and the usage line, exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A start-up failure: printed as `<progname>: <message>`, exit 1. */
export class StartupError extends Error {
  override readonly name = 'StartupError';
}

/** The socket paths listed in a -P file: config comment and continuation rules, blanks skipped, trimmed (G22). */
export function readSocketsFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new StartupError(`Can't open '${path}': ${errnoText(e)}`);
  }
  return [...logicalLines(text)].map((l) => l.text.trim()).filter((p) => p !== '');
}

function seconds(text: string, what: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 2147483)) throw new UsageError(`Bad ${what} '${text}': a number of seconds from 1`); // G19
  return n;
}

/** A whole number from `min` on, up to `max` when given (`what` names it in the complaint). */
function whole(text: string, what: string, min: number, max?: number): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= (max ?? Number.MAX_SAFE_INTEGER)))
    throw new UsageError(`bad ${what} '${text}': a whole number from ${min}${max === undefined ? '' : ` to ${max}`}`);
  return n;
}

const repeated = (v: string, all: string[]): string[] => [...all, v];

/**
 * Parses argv (node, script, arguments…) as upstream's getopt
 * `C:c:D:dfP:rR:s:t:v` does, plus the long options.  `progname` names the
 * program in getopt's complaints; relative paths are resolved in `cwd`.
 */
export function parseOptions(argv: string[], progname: string, cwd = process.cwd()): DaemonOptions {
  const program = new Command(progname)
    .option('-C <controlprog>', 'packet-filter control program', DEFAULT_HELPER)
    .option('-c <config>', 'configuration file or directory', DEFAULT_CONFIG_PATH)
    .option('-D <dbfile>', 'state database', DEFAULT_DB_PATH)
    .option('-d', 'debug: stay in the foreground, log on stderr (repeatable)', (_v: unknown, n: number) => n + 1, 0)
    .option('-f', 'flush the packet filter rules at start')
    .option('-P <sockpathsfile>', 'file listing socket paths')
    .option('-r', 're-add the blocks of the database at start and on reload')
    .option('-R <rulename>', 'default rule name', DEFAULT_RULE_NAME)
    .option(
      '-s <sockpath>',
      `socket to listen on (repeatable) (default: ${DEFAULT_SOCKET_PATH})`,
      (p: string, all: string[]) => [...all, p],
      [] as string[],
    )
    .option('-t <timeout>', 'seconds between interface address refreshes (default: 15, 5 with -d)')
    .option('-v', 'socket-layer messages on stderr')
    .option('--foreground', 'stay attached to the terminal without debug output')
    .option('--log-format <format>', 'syslog, or json (lines on stdout)', 'syslog')
    .option('--pidfile <path>', 'pid file when detached', `/var/run/${progname}.pid`)
    .option('--helper-timeout <seconds>', 'kill a helper call after this long', '30')
    .option('--rem-retry <seconds>', 'try a failed rem again after this long', '60')
    .option('--syslog-socket <path>', 'syslog socket', '/dev/log')
    .option('--rename-bad-db', 'move an unusable database aside and start with an empty one')
    .option('--control-socket <path>', 'control socket for blocklistctl (default: the first socket path, .ctl for .sock)')
    .option('--no-control-socket', 'no control socket')
    .option('--control-group <group>', 'a group whose members may use the control socket (mode 0660)')
    .option('--metrics <host:port>', 'serve Prometheus metrics over HTTP on this address')
    .option('--queue <datagrams>', 'datagrams the kernel queues on a notification socket (Linux, as root)', String(DEFAULT_BACKLOG))
    .option('--sender-rate <n>', 'notifications per second a sender uid may send (0: no limit)', String(DEFAULT_SENDER_RATE))
    .option('--sender-burst <n>', 'notifications a sender uid may send at once', String(DEFAULT_SENDER_BURST))
    .option(
      '--trust-user <user>',
      'a user trusted besides root: no sender limit, may name the peer of a TCP socket (repeatable)',
      repeated,
      [] as string[],
    )
    .option('--trust-group <group>', 'a group whose processes are trusted as --trust-user (repeatable)', repeated, [] as string[])
    .option(
      '--max-entries <n>',
      'evict entries not blocked beyond this many, soonest expiry first (0: no limit)',
      String(DEFAULT_MAX_ENTRIES),
    )
    .version(VERSION, '-V, --version')
    .option('--fail-open', "start even when the configuration, the helper or the packet filter cannot work (upstream's behaviour)")
    .option('--allow-self', "never count nor block the host's own addresses (loopback and every interface's)")
    .option('--check', 'run the start-up checks, print what was checked and every problem, exit 0 or 1; changes nothing')
    .option('--kernel-expiry', 'blocks carry a kernel timeout (nftables, ipset) a margin after their end, should the daemon die')
    .option('--kernel-expiry-margin <seconds>', `the margin of --kernel-expiry, which it implies (default ${DEFAULT_KERNEL_EXPIRY_MARGIN})`)
    .option('--cut-connections', 'a block also ends the established connections it blocks (Linux: ss -K)')
    .option('--fleet <urls>', 'share blocks with other hosts through these NATS servers (nats:// or tls://, comma-separated)')
    .option('--fleet-name <name>', "this host's origin in the fleet (default: the host name's first label)")
    .option('--fleet-bucket <name>', 'the JetStream key-value bucket', DEFAULT_FLEET_BUCKET)
    .option('--fleet-creds <file>', 'NATS credentials file (user JWT and nkey seed), or a user nkey seed')
    .option('--fleet-user-file <file>', 'file with user:password for the NATS server')
    .option('--fleet-ca <file>', "CA certificate the NATS server's TLS certificate must chain to")
    .option('--fleet-cert <file>', 'client TLS certificate for the NATS server')
    .option('--fleet-key <file>', 'client TLS key for the NATS server')
    .option('--fleet-insecure', 'allow a plain-text nats:// URL to a host other than this one')
    .option('--fleet-max-duration <seconds>', 'cap on the duration of blocks from other hosts (0: no cap)', '0')
    .option('--fleet-trust <names>', 'apply only blocks of these origins (comma-separated, repeatable)', repeated, [] as string[])
    .helpOption('-h, --help')
    .configureHelp(HELP_CONFIG)
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeErr: () => {} });
  try {
    program.parse(argv);
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    if (e.exitCode === 0) throw e; // --help, --version
    if (e.code === 'commander.excessArguments') throw new UsageError(''); // upstream prints just the usage
    throw new UsageError(getoptMessage(e));
  }
  const o = program.opts<
    {
      C: string;
      c: string;
      D: string;
      d: number;
      f?: boolean;
      P?: string;
      r?: boolean;
      R: string;
      s: string[];
      t?: string;
      v?: boolean;
      foreground?: boolean;
      logFormat: string;
      pidfile: string;
      helperTimeout: string;
      remRetry: string;
      syslogSocket: string;
      renameBadDb?: boolean;
      controlSocket: string | boolean;
      controlGroup?: string;
      metrics?: string;
      queue: string;
      senderRate: string;
      senderBurst: string;
      trustUser: string[];
      trustGroup: string[];
      maxEntries: string;
      failOpen?: boolean;
      allowSelf?: boolean;
      check?: boolean;
      kernelExpiryMargin?: string;
      kernelExpiry?: boolean;
      cutConnections?: boolean;
    } & FleetArguments
  >();
  if (o.logFormat !== 'syslog' && o.logFormat !== 'json') throw new UsageError(`bad log format '${o.logFormat}': syslog or json`);
  const nameProblem = ruleNameProblem(o.R);
  if (nameProblem !== undefined) throw new UsageError(`bad rule name '${shownName(o.R)}': ${nameProblem}`);
  const abs = (p: string): string => resolve(cwd, p); // G21: the daemon changes to / when detached
  const socketsFile = o.P === undefined ? undefined : abs(o.P);
  const sockets = [...o.s, ...(socketsFile === undefined ? [] : readSocketsFile(socketsFile))].map(abs);
  const first = sockets[0] ?? DEFAULT_SOCKET_PATH;
  return {
    helper: abs(o.C),
    config: abs(o.c),
    db: abs(o.D),
    debug: o.d,
    flush: o.f === true,
    restore: o.r === true,
    ruleName: o.R,
    sockets: sockets.length > 0 ? sockets : [DEFAULT_SOCKET_PATH],
    timeout: o.t === undefined ? (o.d > 0 ? 5 : 15) : seconds(o.t, 'timeout'),
    verbose: o.v === true,
    foreground: o.foreground === true,
    logFormat: o.logFormat,
    pidfile: abs(o.pidfile),
    helperTimeout: seconds(o.helperTimeout, 'helper timeout'),
    remRetry: seconds(o.remRetry, 'rem retry'),
    syslogSocket: o.syslogSocket,
    renameBadDb: o.renameBadDb === true,
    defaultSockets: sockets.length === 0,
    control: o.controlSocket === false ? null : typeof o.controlSocket === 'string' ? abs(o.controlSocket) : controlPathFor(first),
    controlGroup: o.controlGroup,
    metrics: o.metrics === undefined ? undefined : listenAddress(o.metrics),
    queue: whole(o.queue, 'queue length', 1, 2147483647),
    senderRate: whole(o.senderRate, 'sender rate', 0),
    senderBurst: whole(o.senderBurst, 'sender burst', 1),
    trustUsers: o.trustUser,
    trustGroups: o.trustGroup,
    maxEntries: whole(o.maxEntries, 'maximum of entries', 0),
    failOpen: o.failOpen === true,
    allowSelf: o.allowSelf === true,
    check: o.check === true,
    kernelExpiryMargin:
      o.kernelExpiry === true || o.kernelExpiryMargin !== undefined
        ? whole(o.kernelExpiryMargin ?? String(DEFAULT_KERNEL_EXPIRY_MARGIN), 'kernel expiry margin', 0, 2147483)
        : undefined,
    cutConnections: o.cutConnections === true,
    fleet: fleetOptions(o, abs),
  };
}

/**
 * The fleet's options checked (fleet/config.ts), last: after the problems of the others.  Only the --fleet-* options go:
 * fleetConfig names any other set option as one that needs --fleet.
 */
function fleetOptions(o: FleetArguments, abs: (path: string) => string): FleetConfig | undefined {
  // commander names them fleet, fleetName, fleetBucket ...
  const fleetArguments = Object.fromEntries(Object.entries(o).filter(([name]) => name.startsWith('fleet'))) as unknown as FleetArguments;
  try {
    return fleetConfig(fleetArguments, abs);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export interface ListenAddress {
  host: string;
  port: number;
  /** As a URL shows it: an IPv6 host in brackets. */
  text: string;
}

/** host:port, [v6]:port or a port alone (127.0.0.1). */
function listenAddress(text: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text) ?? /^()()(\d+)$/.exec(text);
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || !(port >= 1 && port <= 65535)) throw new UsageError(`bad metrics address '${text}': host:port`);
  const host = m[1] || m[2] || '127.0.0.1';
  return { host, port, text: `${host.includes(':') ? `[${host}]` : host}:${port}` };
}
