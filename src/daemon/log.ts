// The daemon's two log channels (daemon.md §9.1): to syslog, to plain
// stderr lines (what upstream prints with -d) or, through pino, to JSON
// lines on stdout.  Writes to stderr and stdout are synchronous so that no
// line is lost at exit.
//
// Syslog goes straight to the local socket, as glibc's syslog(3) does (no
// hostname): one RFC 3164 datagram `<PRI>Mmm dd hh:mm:ss ident[pid]: line`
// per line of a message, so that no message can forge a second record.
// unix-dgram starts a referenced libuv poll handle for every socket it
// creates, from socket() to close(), and offers no way to unref it: an open
// socket keeps the process alive for good.  So a socket lives for one turn
// of the event loop: the first line opens it, a setImmediate closes it, and
// every line logged meanwhile shares it.  Sends never block: a full queue
// drops the line, and the others of its turn, where glibc would wait for
// the syslog daemon.  Lines are sent from their strings by the addon
// (native.ts sendLines): a Buffer per line and unix-dgram's send cost the
// event loop 5% of its time under a flood.  They go out together when the
// code that logged them has run (a microtask), many in one system call: a
// flood logs a line per notification, and a send(2) each took a third of
// the event loop's time on a machine whose system calls cost 1 us
// (decisions.md).  Lines not sent yet when the process exits are sent by
// an 'exit' listener.
// Without a syslog daemon (containers) lines are dropped, the failure is
// reported on stderr when it starts, and connecting is retried at most
// every 10 s.
//
// A line is a message and, for the JSON output, structured fields (event,
// address, rule, ...) that pino writes beside `msg`; the text outputs write
// the message as it is, without going through pino: no JSON is made only
// to be parsed again.
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { getSystemErrorMap } from 'node:util';
import { pino, type DestinationStream } from 'pino';
import { constants } from 'node:os';
import { sendLines } from '../protocol/native.js';
import type { LogFields, LogFn, LogLevel } from '../types.js';

export type LogOutput = 'syslog' | 'stderr' | 'json';

export interface LoggerOptions {
  /** Program name, e.g. 'blocklistd'. */
  ident: string;
  /** Where the daemon channel goes. */
  output: LogOutput;
  /** -v: the socket-library channel goes to stderr. */
  verbose: boolean;
  /** Default '/dev/log'. */
  syslogPath?: string;
  /** Milliseconds between connection attempts after a failure; default 10 000 (tests shorten it). */
  syslogRetryMs?: number;
}

export interface DaemonLogger {
  /** The daemon channel. */
  log: LogFn;
  /** The socket-library channel (datagram receive errors). */
  library: LogFn;
  /** Releases the syslog socket now; a later line opens a new one for one turn of the loop. */
  close(): void;
}

const DEFAULT_SYSLOG_PATH = '/dev/log';
const DEFAULT_RETRY_MS = 10_000;
/** A send's errors that say the syslog daemon's queue is full: the line is dropped, the socket kept. */
const FULL_QUEUE = new Set([constants.errno.EAGAIN, constants.errno.EWOULDBLOCK, constants.errno.ENOBUFS]);

/** Higher is more severe, as pino wants. */
const PINO_LEVELS: Record<LogLevel, number> = { crit: 60, err: 50, warning: 40, notice: 35, info: 30, debug: 20 };

const SEVERITY: Record<LogLevel, number> = { crit: 2, err: 3, warning: 4, notice: 5, info: 6, debug: 7 };
const LOG_DAEMON = 3 << 3;
/** strftime's %b in the C locale. */
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** What this file uses of unix-dgram (untyped CommonJS). */
interface UnixDgramSocket {
  /** The descriptor: lines go out through sendLines (native.ts), from their strings, without a Buffer each. */
  readonly fd: number;
  /** Emits 'error' synchronously on failure. */
  connect(path: string): void;
  on(event: 'error', listener: (error: UnixDgramError) => void): this;
  /** Closes the descriptor and its poll handle; must be called exactly once. */
  close(): void;
}
/** `code` is a negative errno. */
interface UnixDgramError extends Error {
  code: number;
}
const unixDgram = createRequire(import.meta.url)('unix-dgram') as {
  createSocket(type: 'unix_dgram'): UnixDgramSocket;
};

/** The last time stamp made, by its second and the zone's offset (TZ may change): a flood logs lines by thousands a second. */
let lastStamp = { second: NaN, offset: NaN, text: '' };

/** `Mmm dd hh:mm:ss` in local time. */
function stampOf(time: Date): string {
  const second = Math.floor(time.getTime() / 1000);
  const offset = time.getTimezoneOffset();
  if (second === lastStamp.second && offset === lastStamp.offset) return lastStamp.text;
  const two = (n: number): string => String(n).padStart(2, '0');
  const text =
    `${MONTHS[time.getMonth()]} ${String(time.getDate()).padStart(2, ' ')} ` +
    `${two(time.getHours())}:${two(time.getMinutes())}:${two(time.getSeconds())}`;
  lastStamp = { second, offset, text };
  return text;
}

/** The last head of a record made: a flood logs lines by thousands a second, with one head a second and level. */
let lastHead = { priority: NaN, stamp: '', ident: '', pid: NaN, text: '' };

/** `<PRI>Mmm dd hh:mm:ss ident[pid]: `. */
function headOf(ident: string, pid: number, level: LogLevel, time: Date): string {
  const priority = LOG_DAEMON | SEVERITY[level];
  // stampOf gives the same string for the same second
  const stamp = stampOf(time);
  if (priority !== lastHead.priority || stamp !== lastHead.stamp || ident !== lastHead.ident || pid !== lastHead.pid)
    lastHead = { priority, stamp, ident, pid, text: `<${priority}>${stamp} ${ident}[${pid}]: ` };
  return lastHead.text;
}

/** The records glibc's syslog(3) sends for `message`, one per line, carriage returns removed. */
export function syslogRecords(ident: string, pid: number, level: LogLevel, time: Date, message: string): string[] {
  const head = headOf(ident, pid, level, time);
  // most messages are one line: no regular expression and split for them (5% of the daemon's time under a flood with both)
  if (!message.includes('\n') && !message.includes('\r')) return [head + message];
  return message
    .replace(/\r/g, '')
    .split('\n')
    .map((line) => head + line);
}

/** `syscall: text (CODE)` for a failed system call of the syslog socket; the error itself when its code is unknown. */
function syscallFailure(syscall: string, error: unknown): string {
  const code = (error as Partial<UnixDgramError>).code;
  const known = typeof code === 'number' ? getSystemErrorMap().get(code) : undefined;
  return `${syscall}: ${known !== undefined ? `${known[1]} (${known[0]})` : String(error)}`;
}

/** Lines a flush sends at most: a long synchronous run of the loop does not pile them up. */
const MAX_UNSENT = 1024;

/** Senders holding lines not sent yet: process.exit() runs no microtask, so the 'exit' listener sends them. */
const holding = new Set<SyslogSender>();
let exitListener = false;

/** Datagrams to the syslog socket; see the top of the file for the socket's lifetime. */
class SyslogSender {
  private socket: UnixDgramSocket | null = null;
  private closing: NodeJS.Immediate | null = null;
  /** Lines logged in this run of the loop's code, sent when it ends (flush). */
  private unsent: string[] = [];
  private readonly flushLater = (): void => this.flush();
  /** performance.now() before which no connection is attempted. */
  private retryAt = 0;
  /** The current failure was reported; cleared by a successful connection. */
  private failing = false;

  constructor(
    private readonly path: string,
    private readonly retryMs: number,
    private readonly report: (text: string) => void,
  ) {}

  send(records: string[]): void {
    if (this.socket === null) this.open();
    // unconnected: the lines are dropped
    if (this.socket === null) return;
    if (this.unsent.length === 0) {
      queueMicrotask(this.flushLater);
      if (!exitListener) process.on('exit', () => holding.forEach((sender) => sender.flush()));
      exitListener = true;
      holding.add(this);
    }
    for (const record of records) this.unsent.push(record);
    if (this.unsent.length >= MAX_UNSENT) this.flush();
  }

  /**
   * Sends the lines logged so far, in order.  A line that finds the syslog daemon's queue full is dropped with the
   * ones after it: the daemon is behind, and each would cost a system call to be refused (under a flood whose lines
   * the receiver could not keep up with, they took half of the event loop's time).
   */
  flush(): void {
    const lines = this.unsent;
    this.unsent = [];
    holding.delete(this);
    if (this.socket === null || lines.length === 0) return;
    const errno = sendLines(this.socket.fd, lines);
    if (errno !== 0 && !FULL_QUEUE.has(errno)) this.fail('send', Object.assign(new Error(`send: errno ${errno}`), { code: -errno }));
  }

  close(): void {
    this.flush();
    if (this.closing !== null) clearImmediate(this.closing);
    this.closing = null;
    this.socket?.close();
    this.socket = null;
  }

  private open(): void {
    if (performance.now() < this.retryAt) return;
    let socket: UnixDgramSocket;
    try {
      socket = unixDgram.createSocket('unix_dgram');
    } catch (e) {
      this.fail('socket', e);
      return;
    }
    // connect() reports a failure as an 'error' event, synchronously; sends do not go through unix-dgram
    let refused: UnixDgramError | undefined;
    socket.on('error', (e) => (refused = e));
    socket.connect(this.path);
    if (refused !== undefined) {
      socket.close();
      this.fail('connect', refused);
      return;
    }
    this.socket = socket;
    this.failing = false;
    this.closing = setImmediate(() => this.close());
  }

  private fail(syscall: string, error: unknown): void {
    this.close();
    this.retryAt = performance.now() + this.retryMs;
    if (this.failing) return;
    this.failing = true;
    this.report(`cannot log to ${this.path}: ${syscallFailure(syscall, error)}; syslog messages are dropped`);
  }
}

/** Synchronous writes to stdout (1) or stderr (2). */
function standardStream(fd: 1 | 2): DestinationStream {
  const stream = pino.destination({ fd, sync: true });
  // A closed or broken stream loses lines, as fprintf(3) does: logging never takes the daemon down.
  stream.on('error', () => {});
  return stream;
}

/** pino's JSON lines: the fields beside the message. */
function jsonChannel(destination: DestinationStream): LogFn {
  const logger = pino(
    {
      customLevels: PINO_LEVELS,
      useOnlyCustomLevels: true,
      level: 'debug',
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
  return (level, message, fields?: LogFields | (() => LogFields)) => {
    if (fields === undefined) logger[level](message);
    else logger[level](typeof fields === 'function' ? fields() : fields, message);
  };
}

export function createLogger(options: LoggerOptions): DaemonLogger {
  const { ident } = options;
  const stderr = standardStream(2);
  let syslog: SyslogSender | undefined;
  const open = (output: LogOutput): LogFn => {
    switch (output) {
      case 'json':
        return jsonChannel(standardStream(1));
      case 'stderr':
        return (_level, message) => stderr.write(`${message}\n`);
      case 'syslog': {
        const sender = (syslog ??= new SyslogSender(
          options.syslogPath ?? DEFAULT_SYSLOG_PATH,
          options.syslogRetryMs ?? DEFAULT_RETRY_MS,
          (text) => stderr.write(`${ident}: ${text}\n`),
        ));
        // one Date for every line, set to now: not an object per line of a flood
        const now = new Date();
        return (level, message) => {
          now.setTime(Date.now());
          sender.send(syslogRecords(ident, process.pid, level, now, message));
        };
      }
    }
  };
  const log = open(options.output);
  // -d alone moves only the daemon channel to stderr; -v moves the library channel there in every mode.
  const libraryOutput = options.verbose ? 'stderr' : options.output === 'stderr' ? 'syslog' : options.output;
  const library = libraryOutput === options.output ? log : open(libraryOutput);
  return { log, library, close: () => syslog?.close() };
}
