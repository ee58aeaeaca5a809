// blocklistctl's commands that talk to the daemon over its control socket
// (issue 7): block, unblock, flush, reload, status; report (issue 14); dump
// (issue 15, dump.ts).  Human output by default, the daemon's answer in the
// JSON envelope with --json; exit 0 or 1.
import { connect } from 'node:net';
import { formatDuration, protocolName } from '../conf/format.js';
import {
  BLOCK_MAX,
  CONTROL_VERSION,
  DEFAULT_CONTROL_PATH,
  controlPathFor,
  LineSplitter,
  RESPONSE_MAX_BYTES,
  type ControlErrorBody,
} from '../protocol/control.js';
import { blockSeconds, entryFromJson } from '../state/entry.js';
import { ANY, type Entry } from '../types.js';
import { localTime } from '../time.js';
import type { Output } from './conf.js';
import { envelope, type Outcome } from './json.js';
import { remainingTime } from './dump.js';

export interface ControlOptions {
  /** --control, else derived from -s, else the default. */
  control?: string;
  socket?: string;
  json?: boolean;
  /** Ask for the daemon's progress and show it on standard error (a terminal's, for a command that may take long). */
  progress?: boolean;
  /** Milliseconds to wait for the answer. */
  timeoutMs?: number;
}

/** The control socket beside a notification socket (as the daemon derives it). */
export function controlPath(o: ControlOptions): string {
  if (o.control !== undefined) return o.control;
  if (o.socket !== undefined) return controlPathFor(o.socket);
  return DEFAULT_CONTROL_PATH;
}

type Answer = { result: unknown } | { error: ControlErrorBody };

/** A full listen queue (a burst of clients) fails a connect at once with EAGAIN: it is tried again for this long. */
const CONNECT_RETRY_MS = 5000;

/**
 * Told of each result line of a chunked answer (dump); returns whether it
 * was the last.  Without one, the first line is the answer.
 */
export type ChunkReader = (result: unknown) => boolean;

/** Sends one request, reads its response line (or its chunks, each given to `chunk`: the answer is then the last). */
export async function request(
  path: string,
  command: string,
  args: Record<string, unknown>,
  timeoutMs = 300_000,
  chunk?: ChunkReader,
): Promise<Answer> {
  const deadline = Date.now() + CONNECT_RETRY_MS;
  for (;;) {
    const answer = await attempt(path, command, args, timeoutMs, Date.now() < deadline, chunk ?? (() => true));
    if (answer !== 'again') return answer;
    await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 40));
  }
}

function attempt(
  path: string,
  command: string,
  args: Record<string, unknown>,
  timeoutMs: number,
  retry: boolean,
  chunk: ChunkReader,
): Promise<Answer | 'again'> {
  return new Promise((resolve) => {
    const socket = connect(path);
    const lines = new LineSplitter(RESPONSE_MAX_BYTES);
    let done = false;
    const finish = (answer: Answer | 'again'): void => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(timeoutMs, () =>
      finish({ error: { code: 'internal', message: `no answer from ${path} within ${timeoutMs / 1000} s` } }),
    );
    socket.on('connect', () => socket.write(`${JSON.stringify({ version: CONTROL_VERSION, id: 1, command, args })}\n`));
    socket.on('data', (data: Buffer) => {
      for (const line of lines.push(data)) {
        let response: Answer;
        try {
          response = JSON.parse(line) as Answer;
        } catch {
          return finish({ error: { code: 'internal', message: `unreadable answer from ${path}` } });
        }
        if ('error' in response) return finish({ error: response.error });
        if (chunk(response.result)) return finish({ result: response.result });
      }
      if (lines.overflow) finish({ error: { code: 'internal', message: `answer from ${path} too long` } });
    });
    socket.on('error', (e: NodeJS.ErrnoException) =>
      finish(e.code === 'EAGAIN' && retry && socket.connecting ? 'again' : { error: connectError(path, e) }),
    );
    socket.on('close', () =>
      finish({ error: { code: 'internal', message: `${path}: the daemon closed the connection without an answer` } }),
    );
  });
}

function connectError(path: string, e: NodeJS.ErrnoException): ControlErrorBody {
  switch (e.code) {
    case 'ENOENT':
      return { code: 'not_running', message: `blocklistd is not running (no control socket at ${path}; see --control and -s)` };
    case 'ECONNREFUSED':
      return { code: 'not_running', message: `blocklistd is not running (nothing listens on ${path}; see --control and -s)` };
    case 'EACCES':
    case 'EPERM':
      return { code: 'access_denied', message: `permission denied: ${path} (run as root, or as a member of the daemon's --control-group)` };
    default:
      return { code: 'internal', message: `${path}: ${e.message}` };
  }
}

/** The fleet link (issue 17), when the daemon has one. */
function fleetLines(f: Record<string, unknown> | undefined): string[] {
  if (f === undefined) return [];
  return [
    `fleet          ${String(f.name)} on ${f.connected === true ? `${String(f.server)}, connected` : 'no server: disconnected'}, ` +
      `bucket ${String(f.bucket)}: ${String(f.pending)} to publish, ${String(f.published)} published`,
    `fleet blocks   ${String(f.blocks)} in force: ${String(f.applied)} applied, ${String(f.released)} released, ` +
      `${String(f.rejected)} rejected, ${String(f.allowListed)} allow-listed`,
  ];
}

/** Runs a command: prints the answer, returns the exit status. */
export async function controlCommand(command: string, args: Record<string, unknown>, o: ControlOptions, io: Output): Promise<number> {
  if (!o.progress) return printAnswer(command, await request(controlPath(o), command, args, o.timeoutMs), o, io);
  // a counter on the terminal while the daemon works, rewritten in place, erased at the end
  let shown = false;
  const answer = await request(controlPath(o), command, { ...args, progress: true }, o.timeoutMs, (result) => {
    const r = result as { more?: boolean; progress?: { done: number; total: number } };
    if (r.more !== true || r.progress === undefined) return true;
    io.err(`\r${command}: ${r.progress.done} of ${r.progress.total}\x1b[K`);
    shown = true;
    return false;
  });
  if (shown) io.err('\r\x1b[K');
  if ('result' in answer) delete (answer.result as { more?: boolean }).more;
  return printAnswer(command, answer, o, io);
}

/**
 * `block` of several addresses: requests of BLOCK_MAX each (a helper in
 * batch mode gets each as one batch), their answers merged into one.  A
 * request refused as a whole (a bad address, the host's own) stops there,
 * the earlier ones done and shown.
 */
export async function blockCommand(
  addresses: readonly string[],
  args: Record<string, unknown>,
  o: ControlOptions,
  io: Output,
): Promise<number> {
  const results: unknown[] = [];
  const counts = { blocked: 0, renewed: 0, failed: 0 };
  // more than one request: on a terminal, a counter of the addresses sent, erased at the end
  const counter = o.progress === true && addresses.length > BLOCK_MAX;
  for (let i = 0; i < addresses.length; i += BLOCK_MAX) {
    if (counter) io.err(`\rblock: ${i} of ${addresses.length}\x1b[K`);
    const answer = await request(controlPath(o), 'block', { ...args, addresses: addresses.slice(i, i + BLOCK_MAX) }, o.timeoutMs);
    if (counter) io.err('\r\x1b[K');
    const part = ('result' in answer ? answer.result : answer.error.details) as { results?: unknown[]; counts?: typeof counts } | undefined;
    if (part?.results === undefined || part.counts === undefined)
      return printAnswer(
        'block',
        results.length === 0 ? answer : { result: { results, counts }, error: (answer as { error: ControlErrorBody }).error },
        o,
        io,
      );
    results.push(...part.results);
    for (const k of ['blocked', 'renewed', 'failed'] as const) counts[k] += part.counts[k];
  }
  return printAnswer('block', { result: { results, counts } }, o, io);
}

/** Prints an outcome as JSON or for people; exit 1 for an error, or a block of several addresses of which some failed. */
function printAnswer(command: string, outcome: Outcome, o: ControlOptions, io: Output): number {
  const result = outcome.result as { results?: { error?: ControlErrorBody }[]; counts?: { failed?: number } } | null | undefined;
  // some of several blocks failed: the result, and an error saying so (the first failure's code)
  const failed = (result?.counts?.failed ?? 0) > 0;
  const error =
    outcome.error ??
    (failed
      ? {
          code: result!.results!.find((r) => r.error !== undefined)!.error!.code,
          message: `${result!.counts!.failed} of ${result!.results!.length} addresses not blocked`,
        }
      : undefined);
  if (o.json) io.out(envelope(command, { result: outcome.result, error }));
  else {
    if (outcome.result !== undefined)
      io.out(HUMAN[command]?.(outcome.result as Record<string, unknown>) ?? `${JSON.stringify(outcome.result, null, 2)}\n`);
    if (outcome.error !== undefined) printError(command, outcome.error, io);
  }
  return error === undefined ? 0 : 1;
}

function printError(command: string, error: ControlErrorBody, io: Output): void {
  const details = (error.details ?? {}) as Record<string, unknown>;
  if (Array.isArray(details.diagnostics)) for (const d of details.diagnostics) io.err(`${String(d)}\n`);
  if (command === 'unblock' && Array.isArray(details.failed)) io.err(entryLines('failed', details.failed as Record<string, unknown>[]));
  io.err(`blocklistctl: ${command}: ${error.message}\n`);
}

// --- human output ------------------------------------------------------------

const port = (e: Entry): string => (e.key.port === ANY ? 'every port' : `port ${e.key.port}/${protocolName(e.key.proto)}`);
/** How long a block lasts: its rule's duration, or an escalated block's own length (and its number). */
function forHowLong(e: Entry): string {
  const seconds = blockSeconds(e);
  return seconds === ANY
    ? 'for good'
    : `for ${formatDuration(seconds)}, until ${localTime(e.last + seconds)}${e.block === undefined ? '' : ` (block ${e.block})`}`;
}

function entryLines(verb: string, list: Record<string, unknown>[]): string {
  return list
    .map((o) => {
      const e = entryFromJson(o);
      return `${verb} ${e.key.address}/${e.key.lmask} ${port(e)} (${e.key.name})${typeof o.reason === 'string' ? `: ${o.reason}` : ''}\n`;
    })
    .join('');
}

/** What the daemon asks of the helper beyond upstream's contract (helper.md §1.8), when anything: a line of its own. */
function helperExtrasLine(helper: Record<string, unknown>): string[] {
  const extras = [
    ...(typeof helper.kernelExpiryMargin === 'number' ? [`kernel timeouts (${helper.kernelExpiryMargin} s after each block's end)`] : []),
    ...(helper.cutConnections === true ? ['connections cut'] : []),
  ];
  return extras.length === 0 ? [] : [`helper extras  ${extras.join(', ')}`];
}

/** The daemon's problems (an older daemon sends none): "problems none", or one line each. */
function problemLines(problems: { severity: string; message: string }[] | undefined): string[] {
  if (problems === undefined) return [];
  if (problems.length === 0) return ['problems       none'];
  return problems.map((p, i) => `${i === 0 ? 'problems       ' : '               '}${p.severity}: ${p.message}`);
}

/** The line of one block's answer. */
function blocked(r: Record<string, unknown>): string {
  const e = entryFromJson(r.entry as Record<string, unknown>);
  const what = r.renewed ? 'already blocked, renewed' : 'blocked';
  return `${what} ${e.key.address}/${e.key.lmask} ${port(e)} (${e.key.name}) ${forHowLong(e)}\n`;
}

const HUMAN: Record<string, (r: Record<string, unknown>) => string> = {
  block(r) {
    if (Array.isArray(r.results)) {
      const counts = r.counts as Record<string, number>;
      const lines = (r.results as Record<string, unknown>[]).map((o) =>
        'error' in o ? `failed ${String(o.address)}: ${(o.error as ControlErrorBody).message}\n` : blocked(o),
      );
      return `${lines.join('')}${counts.blocked} blocked, ${counts.renewed} renewed, ${counts.failed} failed\n`;
    }
    return blocked(r);
  },
  unblock(r) {
    const counts = r.counts as Record<string, number>;
    const lines =
      entryLines('released', r.released as Record<string, unknown>[]) +
      entryLines('deleted', r.deleted as Record<string, unknown>[]) +
      entryLines('failed', r.failed as Record<string, unknown>[]);
    const none = counts.released + counts.deleted + counts.failed === 0 ? 'no entry: nothing to unblock\n' : '';
    const forgotten =
      typeof r.forgotten === 'number' ? `${r.forgotten} histor${r.forgotten === 1 ? 'y' : 'ies'} of blocks forgotten\n` : '';
    return `${none}${lines}${counts.released} released, ${counts.deleted} deleted without a block, ${counts.failed} failed\n${forgotten}`;
  },
  flush(r) {
    return (r.names as { name: string; deleted: number }[])
      .map((n) => `flushed ${n.name}: ${n.deleted} entr${n.deleted === 1 ? 'y' : 'ies'} deleted\n`)
      .join('');
  },
  report(r) {
    if (r.matched !== true) return `reported ${String(r.address)}: no rule matches, nothing counted\n`;
    if (r.entry === null) return `reported ${String(r.address)}: nothing counted against it\n`;
    const e = entryFromJson(r.entry as Record<string, unknown>);
    const count = `count ${e.count}/${e.key.nfail === ANY ? '*' : e.key.nfail}`;
    const blocked = (r.entry as { blocked: boolean }).blocked ? `, blocked ${forHowLong(e)}` : '';
    return `reported ${String(r.address)}: ${e.key.address}/${e.key.lmask} ${port(e)} (${e.key.name}) ${count}${blocked}\n`;
  },
  reload(r) {
    const rules = r.rules as { local: number; remote: number };
    const diagnostics = (r.diagnostics as string[]).map((d) => `${d}\n`).join('');
    return `${diagnostics}configuration reloaded: ${rules.local} local, ${rules.remote} remote rules\n`;
  },
  status(r) {
    const helper = r.helper as Record<string, unknown>;
    const counters = r.counters as Record<string, Record<string, number>>;
    const rules = r.rules as { local: number; remote: number };
    const queues = (r.socketQueues as { path: string; queue: number | null; waiting: number }[] | undefined) ?? [];
    const sum = (c: Record<string, number> | undefined): number => Object.values(c ?? {}).reduce((a, b) => a + b, 0);
    const pairs = (c: Record<string, number> | undefined): string =>
      Object.entries(c ?? {})
        .filter(([, v]) => v > 0)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none';
    return [
      `blocklistd ${String(r.version)}, pid ${String(r.pid)}, up ${remainingTime(Number(r.uptime)) || '0s'} (since ${String(r.started)})`,
      `configuration  ${String(r.config)}: ${rules.local} local, ${rules.remote} remote rules`,
      ...problemLines(r.problems as { severity: string; message: string }[] | undefined),
      `database       ${String(r.database)}: ${String(r.entries)} entries, ${String(r.blocked)} blocked`,
      `sockets        ${(r.sockets as string[]).join(', ')}`,
      `socket queues  ${queues.map((q) => `${q.path}: ${q.queue ?? 'unknown'} in the kernel, ${q.waiting} waiting`).join('; ')}`,
      `control        ${String(r.control)}`,
      `metrics        ${r.metrics === null ? 'off' : `http://${String(r.metrics)}/metrics`}`,
      `helper         ${String(helper.program)}${helper.batchMode ? ' (batch mode)' : ''}: ` +
        `${String(helper.running)} running, ${String(helper.pending)} queued`,
      ...helperExtrasLine(helper),
      `notifications  ${sum(counters.notifications)}: ${pairs(counters.notifications)}`,
      `of them reports ${sum(counters.reports)}: ${pairs(counters.reports)}`,
      `dropped        ${sum(counters.notifications_dropped)}: ${pairs(counters.notifications_dropped)}`,
      `blocks         ${sum(counters.blocks)}: ${pairs(counters.blocks)}`,
      `releases       ${sum(counters.releases)}: ${pairs(counters.releases)}`,
      `helper calls   ${sum(counters.helper_calls)}: ${pairs(counters.helper_calls)}`,
      `debug level    ${String(r.debug)}`,
      ...fleetLines(r.fleet as Record<string, unknown> | undefined),
      '',
    ].join('\n');
  },
};
