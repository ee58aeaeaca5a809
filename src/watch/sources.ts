// Where blocklistd-watch reads (issue 14): the systemd journal through
// `journalctl -o json -f`, from a cursor kept in a state file, and plain
// log files followed across rotation with @logdna/tail-file.
import TailFile from '@logdna/tail-file';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { LineReader } from '../lines.js';
import type { LogFn } from '../types.js';
import type { JournalEntry } from './matcher.js';

/** A longer line cannot be a service's authentication message: it is skipped (and said so), the next one read. */
export const LINE_MAX_BYTES = 64 * 1024;
/** A journal entry as JSON is larger than its message: its fields, bytes as number arrays. */
const JOURNAL_LINE_MAX_BYTES = 8 * LINE_MAX_BYTES;

export interface Source {
  readonly name: string;
  start(): void;
  stop(): Promise<void>;
  pause(): void;
  resume(): void;
}

/** Restarting a source that failed (journalctl exited, a file gone for good) waits this long. */
const RESTART_MS = 1000;

/**
 * A log file, followed like `tail -F` from its end: a rename (rotation)
 * reads the old file to its end, then the new one from its start; a
 * truncation restarts at the start; a file that disappears is waited for.
 */
export class FileSource implements Source {
  private tail: TailFile | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private paused = false;
  private readonly reader: LineReader;

  constructor(
    readonly path: string,
    private readonly log: LogFn,
    private readonly line: (text: string) => void,
    private readonly pollMs = 1000,
  ) {
    this.reader = new LineReader(LINE_MAX_BYTES, () => log('warning', `${path}: a line longer than ${LINE_MAX_BYTES} bytes skipped`));
  }

  get name(): string {
    return `file ${this.path}`;
  }

  start(): void {
    this.open(undefined);
  }

  /** `from` undefined: at the end (the first start); 0: a file that appeared since. */
  private open(from: number | undefined): void {
    if (this.stopped) return;
    if (!existsSync(this.path)) {
      if (from === undefined) this.log('warning', `${this.path}: no such file yet; waiting for it`);
      this.timer = setTimeout(() => this.open(0), RESTART_MS);
      return;
    }
    const tail = new TailFile(this.path, { pollFileIntervalMs: this.pollMs, startPos: from });
    this.tail = tail;
    tail.on('data', (chunk: Buffer) => this.reader.push(chunk, this.line));
    // the old file's last line, if it had no newline, is not the start of the new file's first
    tail.on('renamed', () => {
      this.reader.end(this.line);
      this.log('info', `${this.path}: rotated, reading the new file`);
    });
    tail.on('truncated', () => {
      this.reader.end(this.line);
      this.log('info', `${this.path}: truncated, reading from its start`);
    });
    tail.on('tail_error', (e: Error) => this.log('warning', `${this.path}: ${e.message}`));
    tail.on('error', (e: NodeJS.ErrnoException) => {
      // gone for good (or unreadable): wait for it to come back
      if (this.stopped) return;
      this.log('warning', `${this.path}: ${e.code === 'ENOENT' ? 'removed' : e.message}; waiting for it`);
      this.tail = undefined;
      this.timer = setTimeout(() => this.open(0), RESTART_MS);
    });
    tail.start().catch((e: NodeJS.ErrnoException) => {
      this.log('warning', `${this.path}: ${e.message}; trying again`);
      this.tail = undefined;
      this.timer = setTimeout(() => this.open(from), RESTART_MS);
    });
    if (this.paused) tail.pause();
  }

  pause(): void {
    this.paused = true;
    this.tail?.pause();
  }

  resume(): void {
    this.paused = false;
    this.tail?.resume();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.tail?.quit().catch(() => {});
  }
}

export interface JournalOptions {
  /** journalctl matches: each group's FIELD=value all hold, any group. */
  matches: readonly Readonly<Record<string, string>>[];
  /** Where the cursor of the last entry handled is kept. */
  stateFile: string;
  /** journalctl --directory: a journal other than the system's. */
  directory?: string;
  journalctl?: string;
  log: LogFn;
  /** An entry; `done` once it is handled (its report answered): the cursor moves past it. */
  entry: (entry: JournalEntry, done: () => void) => void;
}

/** Cursor writes are put together: at most one per this many milliseconds. */
const CURSOR_WRITE_MS = 200;

/**
 * The journal, from the cursor of the last entry handled: a restart of
 * the watcher (or of journalctl) neither loses nor repeats an entry.
 * Without a cursor it starts at the end.
 */
export class JournalSource implements Source {
  private child: ChildProcess | undefined;
  private stopped = false;
  private paused = false;
  private timer: NodeJS.Timeout | undefined;
  private writeTimer: NodeJS.Timeout | undefined;
  /** journalctl exited before printing anything, and that was logged. */
  private failing = false;
  /** The cursor persisted (or to persist): the last entry whose predecessors are all handled. */
  private handled: string | undefined;
  /** The last entry read: journalctl restarts after it. */
  private read: string | undefined;
  /** Entries read and not handled yet, in order: their cursor and whether handled. */
  private readonly inFlight: { cursor: string; done: boolean }[] = [];
  private readonly reader: LineReader;

  constructor(private readonly o: JournalOptions) {
    this.handled = readCursor(o.stateFile);
    this.read = this.handled;
    this.reader = new LineReader(JOURNAL_LINE_MAX_BYTES, () => o.log('warning', `journal: an entry longer than ${JOURNAL_LINE_MAX_BYTES} bytes skipped`));
  }

  get name(): string {
    return this.o.directory === undefined ? 'journal' : `journal ${this.o.directory}`;
  }

  /** The arguments journalctl runs with. */
  args(): string[] {
    const args = ['-o', 'json', '-f', '--no-pager'];
    if (this.read !== undefined) args.push('--no-tail', `--after-cursor=${this.read}`);
    else args.push('-n', '0');
    if (this.o.directory !== undefined) args.push(`--directory=${this.o.directory}`);
    for (const [i, match] of this.o.matches.entries()) {
      if (i > 0) args.push('+');
      for (const [field, value] of Object.entries(match)) args.push(`${field}=${value}`);
    }
    return args;
  }

  start(): void {
    if (this.stopped) return;
    const child = spawn(this.o.journalctl ?? 'journalctl', this.args(), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    child.stdout!.on('data', (chunk: Buffer) => this.reader.push(chunk, (line) => this.line(line)));
    child.on('error', (e) => this.o.log('err', `journal: ${e.message}`));
    let read = false;
    child.stdout!.once('data', () => {
      read = true;
      if (this.failing) this.o.log('notice', 'journal: reading again');
      this.failing = false;
    });
    child.on('close', (code, signal) => {
      this.child = undefined;
      if (this.stopped) return;
      // said once while it keeps failing (no journal, no permission), not every second
      if (read || !this.failing) this.o.log('warning', `journal: journalctl exited (${signal ?? `status ${code}`})${stderr.trim() === '' ? '' : `: ${stderr.trim()}`}; starting it again every ${RESTART_MS / 1000} s`);
      this.failing = !read;
      this.timer = setTimeout(() => this.start(), RESTART_MS);
    });
    if (this.paused) child.stdout!.pause();
  }

  private line(line: string): void {
    let entry: JournalEntry;
    try {
      entry = JSON.parse(line) as JournalEntry;
    } catch {
      this.o.log('warning', 'journal: journalctl printed a line that is not JSON');
      return;
    }
    const cursor = entry.__CURSOR;
    if (typeof cursor !== 'string') return;
    this.read = cursor;
    const slot = { cursor, done: false };
    this.inFlight.push(slot);
    this.o.entry(entry, () => {
      slot.done = true;
      this.advance();
    });
  }

  private advance(): void {
    let moved = false;
    while (this.inFlight.length > 0 && this.inFlight[0].done) {
      this.handled = this.inFlight.shift()!.cursor;
      moved = true;
    }
    if (moved && this.writeTimer === undefined) this.writeTimer = setTimeout(() => this.writeCursor(), CURSOR_WRITE_MS);
  }

  private writeCursor(): void {
    this.writeTimer = undefined;
    if (this.handled === undefined) return;
    try {
      mkdirSync(dirname(this.o.stateFile), { recursive: true, mode: 0o700 });
      writeFileSync(`${this.o.stateFile}.tmp`, `${this.handled}\n`);
      renameSync(`${this.o.stateFile}.tmp`, this.o.stateFile);
    } catch (e) {
      this.o.log('err', `journal: cannot save the cursor in ${this.o.stateFile}: ${(e as Error).message}`);
    }
  }

  pause(): void {
    this.paused = true;
    this.child?.stdout?.pause();
  }

  resume(): void {
    this.paused = false;
    this.child?.stdout?.resume();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.writeTimer);
    this.writeCursor();
    const child = this.child;
    if (child !== undefined) {
      const closed = new Promise((resolve) => child.once('close', resolve));
      child.kill('SIGTERM');
      await closed;
    }
  }
}

function readCursor(file: string): string | undefined {
  try {
    const text = readFileSync(file, 'utf8').trim();
    return text === '' ? undefined : text;
  } catch {
    return undefined;
  }
}
