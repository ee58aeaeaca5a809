// What the control socket's requests do (issue 7): status, block, unblock,
// flush and reload; report (issue 14), a failure seen in a log.  Arguments arrive as the user typed them (blocklistctl
// passes them through) and are checked here, the one place that must.
import { Worker } from 'node:worker_threads';
import { nativeFamily } from '../address.js';
import { VERSION } from '../cli.js';
import { coveredNetwork, maskAddress, parseIP, toText, widthOf } from '../conf/ip.js';
import { NAME_MAX, parseDuration, ruleNameProblem, servicePort, shownName } from '../conf/parse.js';
import { interfaceAddresses, ownNetworks, systemEnv } from '../conf/system.js';
import { IPPROTO_TCP, IPPROTO_UDP, type IPAddress, type Match, type Probe } from '../conf/types.js';
import { BLOCK_MAX, ControlError, REPORT_TYPES, type ReportType } from '../protocol/control.js';
import { TEXT_MAX } from '../protocol/wire.js';
import { decodeText } from '../text.js';
import { unfinished } from '../run/helper.js';
import { historyAddresses } from '../escalate/policy.js';
import { DUMP_SELECTIONS, ENTRY_ROW_FIELDS, entryJson, type DumpSelection, type EntryRow } from '../state/entry.js';
import type { StateStore } from '../state/store.js';
import { ANY, WireType, type EffectiveRule, type Entry, type LogFn, type Notification } from '../types.js';
import type { Problem } from './checks.js';
import { ChunkedResult, type Peer } from './control.js';
import type { DumpWorkerData, DumpWorkerMessage } from './dump-worker.js';
import type { Engine } from './engine.js';
import type { Fleet } from '../fleet/fleet.js';
import { EngineBusy, type ManualCommands, type UnblockResult } from './manual.js';
import type { Metrics } from './metrics.js';
import type { DaemonOptions } from './options.js';

/** What the commands need of the running daemon. */
export interface CommandContext {
  readonly options: DaemonOptions;
  readonly engine: Engine;
  /** block, unblock and flush by hand. */
  readonly manual: ManualCommands;
  readonly store: StateStore;
  readonly metrics: Metrics;
  readonly debug: number;
  /** The daemon channel: manual actions are logged with who asked. */
  readonly log: LogFn;
  readonly batchMode: boolean;
  /** Kernel timeouts in use (helper.md §1.8): their margin in seconds; undefined when off or not offered. */
  readonly kernelExpiryMargin: number | undefined;
  /** --cut-connections in use (the helper offers `cut`). */
  readonly cutConnections: boolean;
  /** --fleet: the link to the other hosts (issue 17). */
  readonly fleet?: Fleet;
  /** The helper calls queued or running. */
  helperQueue(): { pending: number; running: number };
  sockets(): string[];
  /** Each notification socket's kernel queue length (null: unknown) and the datagrams received but not yet processed. */
  socketQueues(): { path: string; queue: number | null; waiting: number }[];
  controlPath(): string | undefined;
  metricsAddress(): string | undefined;
  ruleCounts(): { local: number; remote: number };
  /** What the last start or reload found wrong (checks.ts). */
  problems(): Problem[];
  /** The rule names a flush of everything covers. */
  flushNames(): string[];
  /** Reads the configuration; applies it only when it has no error, else throws ControlError config_error. */
  reload(): Promise<{ diagnostics: string[]; rules: { local: number; remote: number } }>;
}

/** Entries listed in one response at most; counts are always complete. */
const LIST_MAX = 1000;

/** Requests that change the daemon's state: logged with the requesting uid and pid (reports have their processing line). */
const MANUAL = new Set(['block', 'unblock', 'flush', 'reload']);
/** A request's arguments in its log line, at most this many characters. */
const ARGS_SHOWN_MAX = 300;

export async function runCommand(context: CommandContext, command: string, args: Record<string, unknown>, peer: Peer): Promise<unknown> {
  if (!MANUAL.has(command)) return dispatch(context, command, args, peer);
  // as JSON: whatever the client sent, it cannot break the line (a newline would be a second syslog record)
  let shown = JSON.stringify(args);
  if (shown.length > ARGS_SHOWN_MAX) shown = `${shown.slice(0, ARGS_SHOWN_MAX)}...`;
  const who = `uid ${peer.uid} pid ${peer.pid}`;
  const fields = { event: 'manual', command, request: shown, uid: peer.uid, gid: peer.gid, peerPid: peer.pid };
  context.log('notice', `control: ${command} ${shown} requested by ${who}`, fields);
  try {
    return await dispatch(context, command, args, peer);
  } catch (e) {
    context.log('warning', `control: ${command} requested by ${who} failed: ${(e as Error).message}`, {
      ...fields,
      error: (e as Error).message,
    });
    throw e;
  }
}

async function dispatch(context: CommandContext, command: string, args: Record<string, unknown>, peer: Peer): Promise<unknown> {
  switch (command) {
    case 'status':
      return status(context);
    case 'block':
      return block(context, args);
    case 'unblock':
      return unblock(context, args);
    case 'flush':
      return flush(context, args);
    case 'reload':
      return context.reload();
    case 'report':
      return report(context, args, peer);
    case 'dump':
      return dump(context, args);
    default:
      throw new ControlError('unknown_command', `unknown command '${command}'`);
  }
}

async function status(context: CommandContext): Promise<unknown> {
  const now = Date.now();
  return {
    version: VERSION,
    pid: process.pid,
    started: new Date(context.metrics.started).toISOString(),
    uptime: Math.floor((now - context.metrics.started) / 1000),
    config: context.options.config,
    database: context.options.db,
    sockets: context.sockets(),
    socketQueues: context.socketQueues(),
    control: context.controlPath() ?? null,
    metrics: context.metricsAddress() ?? null,
    debug: context.debug,
    helper: {
      program: context.options.helper,
      batchMode: context.batchMode,
      kernelExpiryMargin: context.kernelExpiryMargin ?? null,
      cutConnections: context.cutConnections,
      ...context.helperQueue(),
      ...context.engine.inFlight,
    },
    rules: context.ruleCounts(),
    problems: context.problems(),
    entries: context.store.size(),
    blocked: context.store.blockedCount(),
    counters: await context.metrics.counters(),
    ...(context.fleet === undefined ? {} : { fleet: context.fleet.status() }),
  };
}

// --- arguments ---------------------------------------------------------------

function optionalString(args: Record<string, unknown>, name: string): string | undefined {
  const v = args[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number') return String(v);
  if (typeof v !== 'string') throw new ControlError('bad_argument', `"${name}" must be a string`);
  return v;
}

/** `address[/mask]`, IPv6 also as `[address]/mask`; the address masked. */
function parseNetwork(text: string): { address: IPAddress; mask: number } {
  const m = /^\[?([^\]/]+)\]?(?:\/(\d+))?$/.exec(text.trim());
  const address = m === null ? undefined : parseIP(m[1]);
  if (m === null || address === undefined) throw new ControlError('bad_argument', `bad address '${text}'`);
  const width = widthOf(address.family);
  const mask = m[2] === undefined ? width : Number(m[2]);
  if (!(mask >= 0 && mask <= width)) throw new ControlError('bad_argument', `bad mask '/${m[2]}' for '${m[1]}': 0 to ${width}`);
  return { address: maskAddress(address, mask), mask };
}

function parsePort(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  // a number needs no look-up in /etc/services (read again for each name): reports come by the thousand
  if (/^\d{1,5}$/.test(text) && Number(text) <= 65535) return Number(text);
  const port = servicePort(text, systemEnv());
  if (port === undefined) throw new ControlError('bad_argument', `bad port '${text}'`);
  return port;
}

function parseProto(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (text === 'tcp') return IPPROTO_TCP;
  if (text === 'udp') return IPPROTO_UDP;
  throw new ControlError('bad_argument', `bad protocol '${text}': tcp or udp`);
}

/** Seconds, `*`/`forever` (ANY), or a configuration duration (`1h30m`). */
function parseDurationArg(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (text === '*' || text === 'forever') return ANY;
  const seconds = parseDuration(text);
  if (typeof seconds !== 'number' || seconds === 0)
    throw new ControlError('bad_argument', `bad duration '${text}': e.g. 3600, 6h, 1d12h or forever`);
  return seconds;
}

/**
 * A rule name as the configuration allows it (the helper gets it as an
 * argument and as one field of a batch line), up to NAME_MAX bytes.
 */
function parseName(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const problem =
    text === ''
      ? 'it is empty'
      : (ruleNameProblem(text) ?? (Buffer.byteLength(text) > NAME_MAX ? `longer than ${NAME_MAX} bytes` : undefined));
  if (problem !== undefined) throw new ControlError('bad_argument', `bad rule name '${shownName(text)}': ${problem}`);
  return text;
}

// --- block -----------------------------------------------------------------

/** The local address of a failure that names none (a block, a report): the unspecified address of the family. */
const unspecified = (family: IPAddress['family']): string => (family === 'inet' ? '0.0.0.0' : '::');

/**
 * The rule a failure from `address` on `port` would meet, reported by `uid`: what a block defaults to (and the fleet's
 * allow-list check).
 */
export function matchFor(
  context: Pick<CommandContext, 'options' | 'engine'>,
  address: IPAddress,
  port: number,
  proto: number,
  uid = 0,
): Match | undefined {
  const env = systemEnv(context.options.ruleName);
  const family = nativeFamily(env.families, address.family);
  const local = parseIP(unspecified(address.family))!;
  const probe: Probe = { family, local, port, proto, uid, remote: address };
  return context.engine.match(probe);
}

/** What a block of one address came to. */
type BlockOutcome = { entry: Record<string, unknown>; renewed: boolean } | { error: ControlError };

/**
 * The networks a block request names: `address`, or `addresses` (an array
 * of up to BLOCK_MAX, duplicates dropped).  All are checked before any is
 * blocked: a typo in a list blocks nothing.
 */
function blockNetworks(args: Record<string, unknown>): { text: string; address: IPAddress; mask: number }[] {
  const list = args.addresses;
  if (list !== undefined && args.address !== undefined)
    throw new ControlError('bad_argument', 'block takes "address" or "addresses", not both');
  let texts: string[];
  if (list === undefined) {
    const text = optionalString(args, 'address');
    if (text === undefined) throw new ControlError('bad_argument', 'block needs an address');
    texts = [text];
  } else {
    if (!Array.isArray(list) || list.length === 0 || !list.every((a) => typeof a === 'string'))
      throw new ControlError('bad_argument', '"addresses" must be an array of address strings');
    if (list.length > BLOCK_MAX) throw new ControlError('bad_argument', `at most ${BLOCK_MAX} addresses in one block request`);
    texts = list as string[];
  }
  const seen = new Set<string>();
  const networks: { text: string; address: IPAddress; mask: number }[] = [];
  for (const text of texts) {
    const { address, mask } = parseNetwork(text);
    const id = `${toText(address)}/${mask}`;
    if (!seen.has(id)) networks.push({ text, address, mask });
    seen.add(id);
  }
  return networks;
}

async function block(context: CommandContext, args: Record<string, unknown>): Promise<unknown> {
  const networks = blockNetworks(args);
  const port = parsePort(optionalString(args, 'port'));
  let proto = parseProto(optionalString(args, 'proto'));
  if (proto !== undefined && port === undefined)
    throw new ControlError('bad_argument', 'a protocol needs a port: without one, every port and protocol is blocked');
  if (port !== undefined) proto ??= IPPROTO_TCP;
  const givenName = parseName(optionalString(args, 'name'));
  const givenDuration = parseDurationArg(optionalString(args, 'duration'));
  if (args.force !== true) {
    // the policy is here, not in blocklistctl: a raw control client cannot lock the host out either
    const own = ownNetworks(interfaceAddresses());
    const refused = networks.flatMap(({ text, address, mask }) => {
      const hit = coveredNetwork(address, mask, own);
      return hit === undefined
        ? []
        : [`${text} covers ${toText(hit.address)}${hit.mask === widthOf(hit.address.family) ? '' : `/${hit.mask}`} (${hit.what})`];
    });
    if (refused.length > 0) {
      const more = refused.length > 5 ? `; and ${refused.length - 5} more` : '';
      const message = `refusing to block this host's own address: ${refused.slice(0, 5).join('; ')}${more} (force it with --force)`;
      throw new ControlError('self_address', message, { refused });
    }
  }
  const env = systemEnv(context.options.ruleName);
  const keys = networks.map(({ address, mask }) => {
    let name = givenName;
    let duration = givenDuration;
    if (name === undefined || duration === undefined) {
      const match = matchFor(context, address, port ?? ANY, proto ?? IPPROTO_TCP);
      if (duration === undefined && match === undefined) {
        throw new ControlError(
          'bad_argument',
          `no rule matches ${toText(address)}${port === undefined ? '' : ` on port ${port}`}: give a duration`,
        );
      }
      name ??= match?.effective.name ?? context.options.ruleName;
      duration ??= match!.effective.duration;
    }
    const key: EffectiveRule = {
      family: nativeFamily(env.families, address.family),
      address: toText(address),
      lmask: mask,
      port: port ?? ANY,
      proto: proto ?? ANY,
      uid: ANY,
      name,
      rmask: ANY,
      nfail: 1,
      duration,
    };
    return key;
  });
  // started together: their adds go to a helper in batch mode as one batch
  const outcomes = await Promise.all(keys.map((key) => blockOne(context, key)));
  if (args.addresses === undefined) {
    const [outcome] = outcomes;
    if ('error' in outcome) throw outcome.error;
    return outcome;
  }
  const counts = { blocked: 0, renewed: 0, failed: 0 };
  const results = outcomes.map((o, i) => {
    const address = networks[i].text;
    if ('error' in o) {
      counts.failed++;
      return { address, error: o.error.body };
    }
    counts[o.renewed ? 'renewed' : 'blocked']++;
    return { address, ...o };
  });
  if (counts.failed === results.length)
    throw new ControlError(
      outcomes.every((o) => 'error' in o && o.error.code === 'busy') ? 'busy' : 'helper_failed',
      `nothing blocked: ${(results[0] as { error: { message: string } }).error.message}`,
      { results, counts },
    );
  return { results, counts };
}

/** One block: the engine's add, its outcome (a failure as a ControlError, not thrown). */
async function blockOne(context: CommandContext, key: EffectiveRule): Promise<BlockOutcome> {
  let outcome: Awaited<ReturnType<ManualCommands['block']>>;
  try {
    outcome = await context.manual.block(key);
  } catch (e) {
    if (e instanceof EngineBusy) return { error: new ControlError(e.code, e.message) };
    throw e;
  }
  const now = Math.floor(Date.now() / 1000);
  const { entry, result } = outcome;
  if (result !== undefined && result.outcome !== 'ok') {
    const why = {
      timeout: 'timed out',
      error: result.error,
      cancelled: 'the daemon is stopping',
      killed: `killed by ${result.signal}`,
      failed: 'no rule id',
    }[result.outcome];
    // the entry stays at its limit then, and expiry lifts what may be in the filter
    if (unfinished(result))
      return {
        error: new ControlError(
          'helper_failed',
          `the helper did not finish (${context.options.helper}: ${why}): the block may be in the packet filter until the entry expires`,
          { entry: entryJson(entry, now) },
        ),
      };
    return {
      error: new ControlError('helper_failed', `the packet filter did not take the block (${context.options.helper}: ${why})`, {
        entry: entryJson(entry, now),
      }),
    };
  }
  return { entry: entryJson(entry, now), renewed: result === undefined };
}

// --- unblock -----------------------------------------------------------------

/** Entries read, matched and unblocked at a time: a turn of the event loop between two pages, however large the table. */
const UNBLOCK_PAGE = 1000;

/** What an unblock takes: the entries whose network holds the address given (or all), of the port and name given. */
function unblockSelection(
  context: CommandContext,
  args: Record<string, unknown>,
): { selected: (e: Entry) => boolean; what: string; forget: (entries: readonly Entry[]) => number } {
  const all = args.all === true;
  const text = optionalString(args, 'address');
  if (all === (text !== undefined)) throw new ControlError('bad_argument', 'unblock needs an address, or all');
  const port = parsePort(optionalString(args, 'port'));
  const name = parseName(optionalString(args, 'name'));
  const network = text === undefined ? undefined : parseNetwork(text);
  const env = systemEnv(context.options.ruleName);
  const family = network === undefined ? undefined : nativeFamily(env.families, network.address.family);
  const selected = (e: Entry): boolean => {
    if (port !== undefined && e.key.port !== port) return false;
    if (name !== undefined && e.key.name !== name) return false;
    if (network !== undefined) {
      if (e.key.family !== family || e.key.lmask > network.mask) return false;
      if (toText(maskAddress(network.address, e.key.lmask)) !== e.key.address) return false;
    }
    return true;
  };
  const what = `${all ? 'any address' : text}${port === undefined ? '' : ` port ${port}`}${name === undefined ? '' : ` name ${name}`}`;
  /**
   * --forget (escalation, doc/escalation.md §5): the histories of the
   * entries unblocked, and those that hold the address given (a rule with
   * a /mask keeps one for its network), or with --all every one (of the
   * name given); how many went.
   */
  const forget = (entries: readonly Entry[]): number => {
    let forgotten = 0;
    if (network === undefined) {
      context.engine.guard(() => (forgotten = context.store.forgetHistory(undefined, name)));
      return forgotten;
    }
    const addresses = new Set([...entries.map((e) => e.key.address), ...historyAddresses(network.address, network.mask)]);
    context.engine.guard(() =>
      context.store.transaction(() => addresses.forEach((a) => (forgotten += context.store.forgetHistory(a, name)))),
    );
    return forgotten;
  };
  return { selected, what, forget };
}

/** Progress of a long request, told this often at most (ms). */
const PROGRESS_MS = 200;

/**
 * `progress: true` in a request's args: its answer comes as chunks, some
 * `{progress: {done, total}, more: true}` while it runs, then its result
 * with `more: false` (for blocklistctl's counter on a terminal).
 */
function withProgress(
  args: Record<string, unknown>,
  run: (progress: (done: number, total: number) => void) => Promise<Record<string, unknown>>,
): Promise<unknown> | ChunkedResult {
  if (args.progress !== true) return run(() => {});
  let told = 0;
  let wake: (() => void) | undefined;
  const pending: { done: number; total: number }[] = [];
  const progress = (done: number, total: number): void => {
    if (Date.now() - told < PROGRESS_MS && done < total) return;
    told = Date.now();
    pending.push({ done, total });
    wake?.();
  };
  let finished = false;
  const result = run(progress).finally(() => {
    finished = true;
    wake?.();
  });
  // its failure is the last chunk's, when the chunks get there
  result.catch(() => {});
  async function* chunks(): AsyncGenerator<{ more: boolean; [field: string]: unknown }> {
    for (;;) {
      while (pending.length > 0) yield { progress: pending.shift()!, more: true };
      if (finished) break;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
    yield { ...(await result), more: false };
  }
  return new ChunkedResult(chunks());
}

function unblock(context: CommandContext, args: Record<string, unknown>): Promise<unknown> | ChunkedResult {
  const { selected, what, forget } = unblockSelection(context, args);
  return withProgress(args, async (progress) => {
    // a page at a time (its deletions one transaction), the event loop free in between:
    // notifications go on being received while a large table is emptied
    const unblocking: Promise<UnblockResult>[] = [];
    const unblocked: Entry[] = [];
    let total = 0;
    for (let after = 0; ;) {
      const page = context.store.page(after, UNBLOCK_PAGE);
      if (page.length === 0) break;
      after = page[page.length - 1].rowid;
      const entries = page.filter(selected);
      if (args.forget === true) unblocked.push(...entries);
      total += entries.length;
      if (entries.length > 0) unblocking.push(context.manual.unblock(entries));
      await new Promise((resolve) => setImmediate(resolve));
    }
    // --forget: the count of histories forgotten, in the answer only then
    const forgotten = args.forget === true ? { forgotten: forget(unblocked) } : {};
    if (unblocking.length === 0) {
      // --if-present: nothing there is what was wanted; --forget: a history forgotten is something done
      if (args.ifPresent === true || (forgotten.forgotten ?? 0) > 0)
        return { released: [], deleted: [], failed: [], counts: { released: 0, deleted: 0, failed: 0 }, ...forgotten };
      throw new ControlError('not_found', `no entry for ${what}`);
    }
    let settled = 0;
    progress(0, total);
    const done: UnblockResult = { released: [], deleted: [], failed: [] };
    for (const part of await Promise.all(
      unblocking.map((p) =>
        p.then((part) => {
          settled += part.released.length + part.deleted.length + part.failed.length;
          progress(settled, total);
          return part;
        }),
      ),
    )) {
      done.released.push(...part.released);
      done.deleted.push(...part.deleted);
      done.failed.push(...part.failed);
    }
    const now = Math.floor(Date.now() / 1000);
    const list = (es: readonly Entry[]): unknown[] => es.slice(0, LIST_MAX).map((e) => entryJson(e, now));
    const result = {
      released: list(done.released),
      deleted: list(done.deleted),
      failed: done.failed.slice(0, LIST_MAX).map((f) => ({ ...entryJson(f.entry, now), reason: f.reason })),
      counts: { released: done.released.length, deleted: done.deleted.length, failed: done.failed.length },
      ...forgotten,
    };
    if (done.failed.length > 0 && done.released.length + done.deleted.length === 0) {
      throw new ControlError('helper_failed', `nothing unblocked: ${done.failed[0].reason}`, result);
    }
    return result;
  });
}

// --- flush -------------------------------------------------------------------

async function flush(context: CommandContext, args: Record<string, unknown>): Promise<unknown> {
  const name = parseName(optionalString(args, 'name'));
  const names = name === undefined ? context.flushNames() : [name];
  const results = await context.manual.flush(names);
  const failed = results.filter((r) => !r.ok);
  if (failed.length > 0)
    throw new ControlError('helper_failed', `flush of ${failed.map((r) => r.name).join(', ')} failed`, { names: results });
  return { names: results };
}

// --- dump ------------------------------------------------------------------

/** Entries in one chunk of a dump's answer. */
const DUMP_CHUNK = 1000;

/**
 * blocklistctl dump through the daemon: the entries of `select` (all,
 * blocked, counting), ordered as the file's dump orders them, in chunks of
 * DUMP_CHUNK rows (arrays of the entry's `fields`, named in each chunk).
 * Read by a worker thread (dump-worker.ts) through a connection of its
 * own: one read transaction, a consistent view however long the client
 * takes, while the daemon goes on writing (WAL) and receiving.
 */
function dump(context: CommandContext, args: Record<string, unknown>): ChunkedResult {
  const select = (optionalString(args, 'select') ?? 'counting') as DumpSelection;
  if (!DUMP_SELECTIONS.includes(select)) throw new ControlError('bad_argument', `bad selection '${select}': ${DUMP_SELECTIONS.join(', ')}`);
  const worker = new Worker(new URL('./dump-worker.js', import.meta.url), {
    workerData: { path: context.options.db, select, chunk: DUMP_CHUNK } satisfies DumpWorkerData,
  });
  // messages are queued here: one may come while the chunk before is being sent
  const received: DumpWorkerMessage[] = [];
  let wake: (() => void) | undefined;
  const push = (m: DumpWorkerMessage): void => {
    received.push(m);
    wake?.();
  };
  worker.on('message', push);
  worker.on('error', (e) => push({ error: e.message }));
  worker.on('exit', () => push({ error: 'the reading thread stopped' }));
  async function* chunks(): AsyncGenerator<{ fields: readonly string[]; rows: EntryRow[]; more: boolean }> {
    try {
      for (;;) {
        while (received.length === 0) await new Promise<void>((resolve) => (wake = resolve));
        const m = received.shift()!;
        if ('error' in m) throw new ControlError('internal', m.error);
        // the next chunk is read while this one goes out
        if (m.more) worker.postMessage('next');
        yield { fields: ENTRY_ROW_FIELDS, rows: m.rows, more: m.more };
        if (!m.more) return;
      }
    } finally {
      worker.removeAllListeners().on('error', () => {});
      void worker.terminate();
    }
  }
  return new ChunkedResult(chunks());
}

// --- report ------------------------------------------------------------------

const REPORT_WIRE_TYPE: Record<ReportType, Notification['type']> = {
  fail: WireType.ADD,
  baduser: WireType.BADUSER,
  abuse: WireType.ABUSE,
  ok: WireType.DELETE,
};

/** Source labels travel into log lines: printable, no blanks, short. */
const SOURCE = /^[\x21-\x7e]{1,64}$/;

/**
 * A reported client address: IPv4 or IPv6 text; an IPv4-mapped IPv6
 * address (`::ffff:192.0.2.1`, as a dual-stack server logs an IPv4 client)
 * is the IPv4 address it carries, the one the packet filter sees.
 */
function parseReportAddress(text: string): IPAddress {
  const address = parseIP(text);
  if (address === undefined) throw new ControlError('bad_argument', `bad address '${text}': an IPv4 or IPv6 address`);
  const [w0, w1, w2, w3] = address.words;
  if (address.family === 'inet6' && w0 === 0 && w1 === 0 && w2 === 0xffff) return { family: 'inet', words: [w3] };
  return address;
}

/**
 * A failure (or success) a log watcher saw, processed as a wire
 * notification with an explicit peer: the rules match on the port and
 * protocol given, the local address being the unspecified one of the
 * family, and the owner the requesting uid.
 */
async function report(context: CommandContext, args: Record<string, unknown>, peer: Peer): Promise<unknown> {
  const type = optionalString(args, 'type');
  if (type === undefined || !(REPORT_TYPES as readonly string[]).includes(type))
    throw new ControlError('bad_argument', `report needs a type: ${REPORT_TYPES.join(', ')}`);
  const text = optionalString(args, 'address');
  if (text === undefined) throw new ControlError('bad_argument', 'report needs an address');
  const address = parseReportAddress(text);
  const port = parsePort(optionalString(args, 'port'));
  if (port === undefined) throw new ControlError('bad_argument', 'report needs a port');
  const proto = parseProto(optionalString(args, 'proto')) ?? IPPROTO_TCP;
  const source = optionalString(args, 'source') ?? 'report';
  if (!SOURCE.test(source)) throw new ControlError('bad_argument', `bad source '${source}': 1 to 64 printable characters, no blanks`);
  const message = Buffer.from(optionalString(args, 'message') ?? '');
  const family = address.family;
  const remote = toText(address);
  const n: Notification = {
    type: REPORT_WIRE_TYPE[type as ReportType],
    text: decodeText(message, 0, Math.min(message.length, TEXT_MAX)),
    pid: peer.pid,
    uid: peer.uid,
    gid: peer.gid,
    socketType: proto === IPPROTO_TCP ? 'stream' : 'dgram',
    local: { ...parseIP(unspecified(family))!, port },
    remote: { ...address, port: 0 },
    explicitPeer: true,
    report: { source },
  };
  context.engine.processBatch([n]);
  const match = matchFor(context, address, port, proto, peer.uid);
  if (match === undefined) return { address: remote, matched: false };
  const entry = context.store.get(match.effective);
  return { address: remote, matched: true, entry: entry === undefined ? null : entryJson(entry, Math.floor(Date.now() / 1000)) };
}
