// Runs the packet-filter control program (helper.md §1) without blocking
// the event loop (G27): each call is a child process with a time limit,
// calls for one target keep their order, a flush is a barrier for its rule
// name, and unrelated calls run side by side up to a limit.
import { readSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Readable } from 'node:stream';
import { errnoMessage } from '../errno.js';
import { cutUtf8, printable } from '../text.js';
import type { LogFn } from '../types.js';
import { debugLog, type DebugLog } from '../debug.js';
import { startHelper, type HelperProcess } from './start.js';

export interface HelperTarget {
  name: string;
  /** '' is upstream's "any" (a manual block of every port). */
  proto: 'tcp' | 'udp' | '';
  address: string;
  mask: number;
  /** Below 0: any port, passed as ''. */
  port: number;
}

/**
 * What a call came to, decided here once for every caller:
 * - ok: the change is in the packet filter (add: the helper printed a line;
 *   rem, flush: a line or exit status 0; batch and capabilities as a whole:
 *   exit status 0; a change of a batch: its answer line is not empty);
 * - failed: the helper ran to its end and refused;
 * - timeout, killed: ended by a signal (its time ran out, the daemon
 *   stopped, someone else killed it) without that answer: what it was doing
 *   may or may not have reached the packet filter (`unfinished`);
 * - error: the program could not be started;
 * - cancelled: dropped by stop() before it started.
 */
export type CallOutcome = 'ok' | 'failed' | 'timeout' | 'killed' | 'error' | 'cancelled';

export interface HelperResult {
  outcome: CallOutcome;
  /** The first stdout line as written (without the newline), undefined when the helper printed nothing at all. */
  line: string | undefined;
  /** The rule id: `line` with an `OK ` prefix removed, cut at a NUL and to 63 bytes (on a UTF-8 boundary); undefined when no line. */
  id: string | undefined;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** The program could not be started: the C library's text for the error, else undefined. */
  error: string | undefined;
  /** Dropped by stop() before it started. */
  cancelled: boolean;
  /** A batch's answer, one line per change. */
  lines?: string[];
}

/**
 * The helper ended by a signal without answering (its time ran out, the
 * daemon stopped, someone else killed it): what it was doing may or may
 * not have reached the packet filter.  Its whole process group is dead by
 * then when the daemon killed it, so nothing changes the filter later.
 */
export const unfinished = (r: HelperResult): boolean => r.outcome === 'timeout' || r.outcome === 'killed';

/** A failed call as the log lines end it: ' (timed out)', ' (exit status 1)' ...; '' for a plain refusal. */
export function failureText(r: HelperResult): string {
  if (r.timedOut) return ' (timed out)';
  if (r.error) return ` (${r.error})`;
  if (r.signal) return ` (killed by ${r.signal})`;
  return r.exitCode ? ` (exit status ${r.exitCode})` : '';
}

/**
 * The outcome of a call that ran: `answered`, whether its answer says it
 * worked (see CallOutcome); otherwise how it ended.
 */
function outcomeOf(answered: boolean, timedOut: boolean, signal: NodeJS.Signals | null): CallOutcome {
  if (answered) return 'ok';
  if (timedOut) return 'timeout';
  return signal === null ? 'failed' : 'killed';
}

/** Whether a call's answer says it worked: the line an add prints, the exit status of a batch or capabilities, either for the rest. */
function answered(action: Action, line: string | undefined, exitCode: number | null): boolean {
  if (action === 'add') return line !== undefined;
  if (action === 'batch' || action === 'capabilities') return exitCode === 0;
  return line !== undefined || exitCode === 0;
}

/** One operation of a batch. */
export interface Change {
  action: 'add' | 'rem';
  target: HelperTarget;
  id: string;
  /** An add's kernel timeout in seconds (helper.md §1.8), for a helper that takes them; none for a forever block. */
  timeout?: number;
}

/** What the daemon asks of a helper beyond upstream's contract, each only when the helper offers it (helper.md §1.8). */
export interface HelperExtensions {
  /** Adds carry their kernel timeout: BLOCKLISTD_TIMEOUT, or a batch's `timeout` field. */
  timeouts: boolean;
  /** Adds end the established connections they block: BLOCKLISTD_CUT=1. */
  cut: boolean;
}

export interface HelperRunnerOptions {
  /** Absolute path of the helper. */
  program: string;
  /** Then the child gets SIGKILL and the call counts as failed. Default 30 s. */
  timeoutMs?: number;
  /** Calls for different targets that may run at once. Default DEFAULT_CONCURRENCY. */
  concurrency?: number;
  log: LogFn;
  /** The current debug level. */
  debug?: () => number;
  /** Told of every call that ran: its action, result and duration. */
  observe?: (action: string, result: HelperResult, seconds: number) => void;
}

/**
 * Calls running at once by default: four per core, at most 16.  A helper
 * mostly waits (for exec, nft's netlink answer, a lock), so more calls than
 * cores keep the cores busy: 2,000 blocks through a 2 ms helper on 2 cores
 * went at 590-610 calls/s with 4, 760-810/s with 8 (test/bench/daemon.ts).
 * Bounded: a burst of blocks must not become a burst of processes.
 */
const DEFAULT_CONCURRENCY = Math.min(16, 4 * availableParallelism());

/** Upstream stores the id in a 64-byte buffer with its terminating NUL. */
const ID_MAX_BYTES = 63;
/** Only the id matters; a helper that writes an endless line must not fill the memory. */
const LINE_MAX_BYTES = 4096;

type Action = 'add' | 'rem' | 'flush' | 'batch' | 'capabilities';

/**
 * Two calls conflict when one holds a key the other waits for: add/rem hold
 * their target and their name and wait for the target and a flush of the
 * name; a flush holds the flush of its name and waits for the name and
 * another flush of it.
 */
interface Conflicts {
  holds: string[];
  waitsFor: string[];
}

interface Call extends Conflicts {
  action: Action;
  /** The arguments after argv[0]. */
  args: string[];
  /** Written to stdin (batch mode); every output line is then read, not only the first. */
  input?: string;
  /** Added to the daemon's environment (helper.md §1.8). */
  env?: Record<string, string>;
  /** The answer is expected in this many lines (batch mode). */
  lines?: number;
  resolve: (result: HelperResult) => void;
  /** Settles once the call is finished and out of `running`. */
  done?: Promise<void>;
  /** SIGKILLs the child; set once it has been started. */
  kill?: () => void;
}

const NO_RESULT: HelperResult = {
  outcome: 'error',
  line: undefined,
  id: undefined,
  exitCode: null,
  signal: null,
  timedOut: false,
  error: undefined,
  cancelled: false,
};
const CANCELLED: HelperResult = { ...NO_RESULT, outcome: 'cancelled', cancelled: true };

/** The rule id in a helper's answer line. */
export function idOf(line: string): string {
  const rest = line.startsWith('OK ') ? line.slice(3) : line;
  // a C string, as upstream reads it: what follows a NUL is not part of it (and could not be passed back as an argument)
  const nul = rest.indexOf('\0');
  return cutUtf8(Buffer.from(nul === -1 ? rest : rest.slice(0, nul)), ID_MAX_BYTES).toString();
}

/**
 * The first `max` bytes a helper printed; the rest is read and dropped, so
 * that a helper writing more than its answer does not get SIGPIPE.
 */
class Output {
  private readonly parts: Buffer[] = [];
  private size = 0;
  private seen = false;

  constructor(private readonly max: number) {}

  get full(): boolean {
    return this.size >= this.max;
  }

  push(chunk: Buffer): void {
    this.seen ||= chunk.length > 0;
    if (this.full) return;
    const part = chunk.subarray(0, this.max - this.size);
    this.parts.push(part);
    this.size += part.length;
  }

  /**
   * Its lines, at most `n`, each cut to LINE_MAX_BYTES on a character
   * boundary and only then decoded: a character split between two reads
   * stays whole.  None when the helper printed no byte at all.
   */
  lines(n: number): string[] {
    if (!this.seen) return [];
    const bytes = Buffer.concat(this.parts, this.size);
    // no line to cut (a batch's 100,000 short answers): decoded at once, as each line alone, since a newline is never
    // part of a UTF-8 sequence
    let longest = 0;
    for (let start = 0, count = 0; count < n && start <= bytes.length; count++) {
      let end = bytes.indexOf(0x0a, start);
      if (end === -1) end = bytes.length;
      longest = Math.max(longest, end - start);
      start = end + 1;
    }
    if (longest <= LINE_MAX_BYTES) return bytes.toString().split('\n', n);
    const lines: string[] = [];
    for (let start = 0; lines.length < n && start <= bytes.length;) {
      let end = bytes.indexOf(0x0a, start);
      if (end === -1) end = bytes.length;
      lines.push(cutUtf8(bytes.subarray(start, end), LINE_MAX_BYTES).toString());
      start = end + 1;
    }
    return lines;
  }
}

/**
 * Reads what the pipe holds now, without waiting: once the helper has
 * exited, a process it left behind may keep the pipe open for ever.
 * Stops when `output` is full, so that such a process writing without end
 * cannot keep the daemon here.
 */
function drainPipe(stream: Readable, output: Output): void {
  // the descriptor of the stream's libuv handle: non-blocking, read by nothing else in this synchronous loop
  const fd = (stream as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return;
  const buffer = Buffer.allocUnsafe(65536);
  while (!output.full) {
    let n: number;
    try {
      n = readSync(fd, buffer);
    } catch {
      return; // EAGAIN: nothing more for now
    }
    if (n === 0) return;
    output.push(Buffer.from(buffer.subarray(0, n)));
  }
}

/** A port as the helper gets it: '' for any. */
const portArg = (port: number): string => (port < 0 ? '' : String(port));

function changeConflicts(t: HelperTarget): Conflicts {
  const target = ['target', t.name, t.proto, t.address, t.mask, t.port].join('\0');
  return { holds: [target, `name\0${t.name}`], waitsFor: [target, `flush\0${t.name}`] };
}

function flushConflicts(name: string): Conflicts {
  return { holds: [`flush\0${name}`], waitsFor: [`name\0${name}`, `flush\0${name}`] };
}

export class HelperRunner {
  private readonly program: string;
  private readonly timeoutMs: number;
  private readonly concurrency: number;
  private readonly log: LogFn;
  private readonly debugLine: DebugLog;
  private readonly observe: HelperRunnerOptions['observe'];
  /** Submitted and not started, in submission order. */
  private readonly waiting: Call[] = [];
  private readonly running = new Set<Call>();
  /** How many waiting or running calls hold each conflict key. */
  private readonly held = new Map<string, number>();
  private stopped = false;
  private extensions: HelperExtensions = { timeouts: false, cut: false };

  constructor(options: HelperRunnerOptions) {
    this.program = options.program;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.concurrency = Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY);
    this.log = options.log;
    this.debugLine = debugLog(options.log, options.debug ?? (() => 0));
    this.observe = options.observe;
  }

  /** From now on (after `capabilities`): what the helper offers and the daemon asks for. */
  setExtensions(extensions: HelperExtensions): void {
    this.extensions = extensions;
  }

  /** control add|rem <name> <proto> <address> <mask> <port> <id>; an add's timeout and the cut in the environment (helper.md §1.8). */
  change(action: 'add' | 'rem', target: HelperTarget, id: string, timeout?: number): Promise<HelperResult> {
    const args = [action, target.name, target.proto, target.address, String(target.mask), portArg(target.port), id];
    const env: Record<string, string> = {};
    if (action === 'add' && this.extensions.timeouts && timeout !== undefined) env.BLOCKLISTD_TIMEOUT = String(timeout);
    if (action === 'add' && this.extensions.cut) env.BLOCKLISTD_CUT = '1';
    return this.submit(action, args, changeConflicts(target), undefined, undefined, env);
  }

  /** control flush <name> */
  flush(name: string): Promise<HelperResult> {
    return this.submit('flush', ['flush', name], flushConflicts(name));
  }

  /**
   * control batch: many changes in one call (helpers answering `batch` to
   * `capabilities`); one result per change, in order, an empty line being
   * a failure.  The call waits for every target it holds.  `flushes`
   * (helpers answering `batch-flush` to `capabilities`): `flush <name>`
   * lines first, applied with the changes in one transaction, so that a
   * reload never shows the packet filter empty; their answers are not
   * returned.  A line's fields
   * are never empty (but the last, the id) nor hold a space: rule names
   * are fields of the configuration, and a local rule's is never empty.
   */
  async batch(changes: readonly Change[], flushes: readonly string[] = []): Promise<HelperResult[]> {
    return (await this.batchWith(changes, flushes)).results;
  }

  /**
   * batch() with `bulk.count` more lines after the changes' lines, written by the caller as `bulk.text` (a restore's
   * 100,000 adds, made by SQLite: engine.ts refresh), each of a name the batch flushes (they hold no conflict key of their
   * own then, see above): the results of `changes`, and the answer to each bulk line as the helper printed it ('' for a
   * failure); `resultOf`, the result an answer stands for.
   */
  async batchWith(
    changes: readonly Change[],
    flushes: readonly string[] = [],
    bulk: { text: string; count: number } = { text: '', count: 0 },
  ): Promise<{ results: HelperResult[]; answers: string[]; resultOf: (answer: string | undefined) => HelperResult }> {
    const flushed = new Set(flushes);
    // A change of a name the batch flushes adds no conflict to the flush's: what waits for its target waits for the
    // flush of its name too, and what holds its target holds its name, which the flush waits for.  A restore's 100,000
    // changes then hold no key each, not two (the runner counted 200,000 keys in and out).
    const conflicts = flushes.map(flushConflicts);
    for (const c of changes) if (!flushed.has(c.target.name)) conflicts.push(changeConflicts(c.target));
    const { timeouts, cut } = this.extensions;
    // `batch timeout`: the timeout before the id, which may be empty (0: none)
    const line = (c: Change): string => {
      const t = c.target;
      const timeout = timeouts ? ` ${c.action === 'add' ? (c.timeout ?? 0) : 0}` : '';
      return `${c.action} ${t.name} ${t.proto} ${t.address} ${t.mask} ${t.port}${timeout} ${c.id}\n`;
    };
    let input = '';
    for (const name of flushes) input += `flush ${name}\n`;
    for (const c of changes) input += line(c);
    input += bulk.text;
    if (input === '') input = '\n';
    const conflict = {
      holds: [...new Set(conflicts.flatMap((c) => c.holds))],
      waitsFor: [...new Set(conflicts.flatMap((c) => c.waitsFor))],
    };
    const result = await this.submit(
      'batch',
      timeouts ? ['batch', 'timeout'] : ['batch'],
      conflict,
      input,
      flushes.length + changes.length + bulk.count,
      cut ? { BLOCKLISTD_CUT: '1' } : undefined,
    );
    const { lines = [], ...common } = result;
    const outcome =
      common.outcome === 'error' || common.outcome === 'cancelled' ? common.outcome : outcomeOf(false, common.timedOut, common.signal);
    // an empty line is that change's failure, whatever the batch's exit status
    const failed: HelperResult = { ...common, outcome, exitCode: null, line: undefined, id: undefined };
    // the id of each distinct line once: a back end without rule ids answers "OK" to every line
    const ids = new Map<string, string>();
    const resultOf = (answer: string | undefined): HelperResult => {
      if (answer === undefined || answer === '') return failed;
      let id = ids.get(answer);
      if (id === undefined) ids.set(answer, (id = idOf(answer)));
      return { ...common, outcome: 'ok', line: answer, id };
    };
    const results = changes.map((_, i) => resultOf(lines[flushes.length + i]));
    const first = flushes.length + changes.length;
    const answers = lines.slice(first, first + bulk.count);
    while (answers.length < bulk.count) answers.push('');
    return { results, answers, resultOf };
  }

  /** control capabilities: the words of its first line; none from a helper that does not know the command. */
  async capabilities(): Promise<Set<string>> {
    const result = await this.submit('capabilities', ['capabilities'], { holds: [], waitsFor: [] });
    return new Set(result.outcome === 'ok' ? (result.line ?? '').split(/\s+/).filter((w) => w !== '') : []);
  }

  /** Calls queued or running. */
  get pending(): number {
    return this.waiting.length + this.running.size;
  }

  /** Calls running now. */
  get active(): number {
    return this.running.size;
  }

  /**
   * Resolves the calls that have not started as cancelled, waits up to
   * `graceMs` for the running ones, then kills what is left.  Later calls
   * are cancelled at once.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    for (const call of this.waiting.splice(0)) {
      this.release(call);
      call.resolve(CANCELLED);
    }
    if (this.running.size === 0) return;
    // a running call's `done` is set when it starts
    const finished = Promise.all([...this.running].map((call) => call.done!));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = await Promise.race([
      finished.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs))),
    ]);
    clearTimeout(timer);
    if (!graceOver) return;
    for (const call of this.running) {
      this.log('err', `${this.program} ${call.action} still running at shutdown, killed`);
      call.kill?.();
    }
    await finished;
  }

  /**
   * Starts the call at once when no call before it, waiting or running,
   * conflicts with it and a slot is free; this keeps the invariant that
   * every waiting call is held back by a conflict or by the limit.
   */
  private submit(
    action: Action,
    args: string[],
    conflicts: Conflicts,
    input?: string,
    lines?: number,
    env?: Record<string, string>,
  ): Promise<HelperResult> {
    if (this.stopped) return Promise.resolve(CANCELLED);
    return new Promise((resolve) => {
      const call: Call = { action, args, ...conflicts, input, lines, env, resolve };
      const blocked = call.waitsFor.some((key) => this.held.has(key));
      for (const key of call.holds) this.held.set(key, (this.held.get(key) ?? 0) + 1);
      if (blocked || this.running.size >= this.concurrency) this.waiting.push(call);
      else this.start(call);
    });
  }

  private release(call: Call): void {
    for (const key of call.holds) {
      const n = this.held.get(key)! - 1;
      if (n === 0) this.held.delete(key);
      else this.held.set(key, n);
    }
  }

  /** After a call has finished: starts the waiting calls no earlier call conflicts with, while slots are free. */
  private dispatch(): void {
    if (this.running.size >= this.concurrency || this.waiting.length === 0) return;
    const heldBefore = new Set<string>();
    const hold = (call: Call): void => call.holds.forEach((key) => heldBefore.add(key));
    this.running.forEach(hold);
    // Compacts in place: the calls held back move up over the ones started.
    let kept = 0;
    let i = 0;
    for (; i < this.waiting.length && this.running.size < this.concurrency; i++) {
      const call = this.waiting[i]!;
      if (call.waitsFor.some((key) => heldBefore.has(key))) this.waiting[kept++] = call;
      else this.start(call);
      hold(call);
    }
    this.waiting.splice(kept, i - kept);
  }

  private start(call: Call): void {
    this.running.add(call);
    const started = process.hrtime.bigint();
    call.done = this.execute(call).then((result) => {
      this.observe?.(call.action, result, Number(process.hrtime.bigint() - started) / 1e9);
      this.running.delete(call);
      this.release(call);
      call.resolve(result);
      this.dispatch();
    });
  }

  /** Upstream's debug lines; a batch's operations each as the call they stand for. */
  private traceRun(call: Call): void {
    // the ids in a rem came from a helper's output: escaped like everything else it prints
    this.debugLine(1, () => `run ${this.program} [control ${printable(call.args.join(' '))}]`);
    // a line of its own: upstream's stays as it was
    const env = Object.entries(call.env ?? {}).map(([name, value]) => `${name}=${value}`);
    if (env.length > 0) this.debugLine(1, () => `run ${call.action} with ${env.join(' ')}`);
    if (call.input === undefined) return;
    const input = call.input;
    this.debugLine(1, () =>
      input
        .split('\n')
        .slice(0, -1)
        .map((op) => `run ${this.program} [control ${printable(op)}] (batch)`),
    );
  }

  private traceAnswer(call: Call, line: string | undefined, lines: string[] | undefined): void {
    if (lines === undefined || call.input === undefined) {
      this.debugLine(1, () => `${call.action} returns ${line === undefined ? '(null)' : printable(line)}`);
      return;
    }
    const input = call.input;
    const count = call.lines ?? 0;
    this.debugLine(1, () =>
      input
        .split('\n')
        .slice(0, count)
        .map((op, i) => `${op.split(' ')[0]} returns ${lines[i] ? printable(lines[i]) : '(null)'}`),
    );
  }

  /**
   * The helper runs in a process group of its own: a timeout or shutdown
   * kills the group, so that no process it started (a `(flock; nft ...)`
   * subshell) changes the filter after the daemon gave up on the call.
   * The answer is what it printed until it exited plus what the pipe then
   * holds: as upstream, the daemon waits for the exit, not for the end of
   * the output, which a process left in the background may keep open.
   */
  private execute(call: Call): Promise<HelperResult> {
    this.traceRun(call);
    return new Promise((resolve) => {
      let child: HelperProcess;
      try {
        const env = call.env === undefined || Object.keys(call.env).length === 0 ? undefined : { ...process.env, ...call.env };
        child = startHelper(this.program, call.args, { argv0: 'control', env, input: call.input !== undefined });
      } catch (e) {
        resolve(this.spawnFailed(e));
        return;
      }
      const stdout = child.stdout!;
      const lineCount = call.lines ?? 1;
      const output = new Output(lineCount * (LINE_MAX_BYTES + 1));
      if (call.input !== undefined) {
        child.stdin!.on('error', () => {}); // a helper that exits without reading
        child.stdin!.end(call.input);
      }
      let timedOut = false;
      let settled = false;

      const settle = (result: HelperResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        stdout.destroy();
        resolve(result);
      };
      const kill = (): void => {
        if (settled) return; // reaped: its pid may be another process's by now
        if (child.pid === undefined) {
          child.once('spawn', kill); // still starting (a child that cannot start never emits it)
          return;
        }
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          try {
            process.kill(child.pid, 'SIGKILL'); // it left its process group
          } catch {
            // already gone
          }
        }
      };
      // a batch may take as long as a hundred calls would each
      const timeoutMs = this.timeoutMs * Math.max(1, Math.ceil((call.lines ?? 0) / 100));
      const timer = setTimeout(() => {
        timedOut = true;
        this.log('err', `${this.program} ${call.action} timed out after ${timeoutMs / 1000} s, killed`);
        kill();
      }, timeoutMs);
      call.kill = kill;

      stdout.on('data', (chunk: Buffer) => output.push(chunk));
      child.on('exit', (code, signal) => {
        drainPipe(stdout, output);
        const lines = output.lines(lineCount);
        const line = lines[0];
        this.traceAnswer(call, line, call.lines === undefined ? undefined : lines);
        settle({
          outcome: outcomeOf(answered(call.action, line, code), timedOut, signal),
          line,
          id: line === undefined ? undefined : idOf(line),
          exitCode: code,
          signal,
          timedOut,
          error: undefined,
          cancelled: false,
          ...(call.lines === undefined ? {} : { lines }),
        });
      });
      child.on('error', (e) => {
        // Other errors (a failed kill) leave a started child that still exits.
        if (child.pid === undefined) settle(this.spawnFailed(e));
      });
    });
  }

  private spawnFailed(e: unknown): HelperResult {
    const errno = (e as NodeJS.ErrnoException).errno;
    const reason = typeof errno === 'number' ? errnoMessage(errno) : String((e as Error).message ?? e);
    this.log('err', `popen ${this.program} failed (${printable(reason)})`);
    return { ...NO_RESULT, error: reason };
  }
}
