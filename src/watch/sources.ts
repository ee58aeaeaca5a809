// Where blocklistd-watch reads (issue 14): the systemd journal through
// `journalctl -o json -f`, and plain log files followed across rotation
// with @logdna/tail-file.  Where each stands (the journal's cursor, a
// file's inode and offset) is kept in the state file once what came before
// is handled (its report answered): a restart neither loses nor repeats.
import TailFile from '@logdna/tail-file';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { LineReader } from '../lines.js';
import type { LogFn } from '../types.js';
import type { JournalEntry } from './matcher.js';

/** A longer line cannot be a service's authentication message: it is skipped (and said so), the next one read. */
const LINE_MAX_BYTES = 64 * 1024;
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
/** State writes are put together: at most one per this many milliseconds. */
const STATE_WRITE_MS = 200;

/** Where a file source stands: the file (its inode) and the offset after the last line handled. */
export interface FilePosition {
  ino: number;
  pos: number;
}

/** The watcher's state file: JSON, written whole (to a temporary file, renamed) at most every STATE_WRITE_MS. */
export class WatchState {
  private data: { journal?: string; files: Record<string, FilePosition> } = { files: {} };
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly path: string,
    private readonly log: LogFn,
  ) {
    try {
      const value = JSON.parse(readFileSync(path, 'utf8')) as Partial<WatchState['data']>;
      this.data = { journal: typeof value.journal === 'string' ? value.journal : undefined, files: value.files ?? {} };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log('warning', `${path}: ${(e as Error).message}; starting without a state`);
    }
  }

  get journal(): string | undefined {
    return this.data.journal;
  }

  set journal(cursor: string | undefined) {
    this.data.journal = cursor;
    this.schedule();
  }

  file(path: string): FilePosition | undefined {
    return this.data.files[path];
  }

  setFile(path: string, position: FilePosition): void {
    this.data.files[path] = position;
    this.schedule();
  }

  private schedule(): void {
    this.timer ??= setTimeout(() => this.write(), STATE_WRITE_MS);
  }

  write(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    try {
      mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
      writeFileSync(`${this.path}.tmp`, `${JSON.stringify(this.data)}\n`);
      renameSync(`${this.path}.tmp`, this.path);
    } catch (e) {
      this.log('err', `cannot save the state in ${this.path}: ${(e as Error).message}`);
    }
  }
}

/** Marks handled in any order, passed in order: `passed` gets each mark whose predecessors are all handled. */
class InOrder<T> {
  private readonly slots: { mark: T; done: boolean }[] = [];

  constructor(private readonly passed: (mark: T) => void) {}

  /** A mark read; the function returned says it is handled. */
  add(mark: T): () => void {
    const slot = { mark, done: false };
    this.slots.push(slot);
    return () => {
      slot.done = true;
      let last: { mark: T } | undefined;
      while (this.slots.length > 0 && this.slots[0].done) last = this.slots.shift();
      if (last !== undefined) this.passed(last.mark);
    };
  }
}

/** An inode, or undefined when the file is not there. */
function inodeOf(path: string): { ino: number; size: number } | undefined {
  try {
    const st = statSync(path);
    return { ino: st.ino, size: st.size };
  } catch {
    return undefined;
  }
}

/**
 * A log file, followed like `tail -F`: a rename (rotation) reads the old
 * file to its end, then the new one from its start; a truncation restarts
 * at the start; a file that disappears is waited for.  The first start is
 * at the end of the file; a restart goes on from the offset kept in the
 * state, or from the start of a file that replaced the one it was reading.
 */
export class FileSource implements Source {
  private tail: TailFile | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private paused = false;
  private readonly reader: LineReader;
  /** The file being read, and the offset of the next byte to come from it. */
  private ino = 0;
  private received = 0;
  private readonly order: InOrder<FilePosition>;

  constructor(
    readonly path: string,
    private readonly state: WatchState,
    private readonly log: LogFn,
    /** A line; `done` once it is handled: the saved offset moves past it. */
    private readonly line: (text: string, done: () => void) => void,
    private readonly pollMs = 1000,
  ) {
    this.reader = new LineReader(LINE_MAX_BYTES, () => log('warning', `${path}: a line longer than ${LINE_MAX_BYTES} bytes skipped`));
    this.order = new InOrder((position) => state.setFile(path, position));
  }

  get name(): string {
    return `file ${this.path}`;
  }

  start(): void {
    const saved = this.state.file(this.path);
    const now = inodeOf(this.path);
    if (now === undefined) this.open(0);
    else if (saved === undefined) this.open(now.size);
    // the file read before, or one that replaced it while the watcher was not running
    else this.open(saved.ino === now.ino && saved.pos <= now.size ? saved.pos : 0);
  }

  /** A line read; the offset after it is where the file stands once it is handled. */
  private take(text: string, end: number): void {
    this.line(text, this.order.add({ ino: this.ino, pos: end }));
  }

  /** Reads the file from `from` (0: a file that appeared since); waits for it when it is not there. */
  private open(from: number): void {
    if (this.stopped) return;
    const now = inodeOf(this.path);
    if (now === undefined) {
      if (this.tail === undefined && this.timer === undefined) this.log('warning', `${this.path}: no such file; waiting for it`);
      this.timer = setTimeout(() => this.open(0), RESTART_MS);
      return;
    }
    this.ino = now.ino;
    this.received = from;
    const tail = new TailFile(this.path, { pollFileIntervalMs: this.pollMs, startPos: from });
    this.tail = tail;
    tail.on('data', (chunk: Buffer) => {
      const base = this.received;
      this.received += chunk.length;
      this.reader.push(chunk, (text, end) => this.take(text, base + end));
    });
    // the old file's last line, if it had no newline, is not the start of the new file's first
    const restart = (what: string): void => {
      this.reader.end((text) => this.take(text, this.received));
      this.ino = inodeOf(this.path)?.ino ?? 0;
      this.received = 0;
      this.log('info', `${this.path}: ${what}`);
    };
    tail.on('renamed', () => restart('rotated, reading the new file'));
    tail.on('truncated', () => restart('truncated, reading from its start'));
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
  state: WatchState;
  /** journalctl --directory: a journal other than the system's. */
  directory?: string;
  journalctl?: string;
  log: LogFn;
  /** An entry; `done` once it is handled (its report answered): the cursor moves past it. */
  entry: (entry: JournalEntry, done: () => void) => void;
}

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
  /** journalctl exited before printing anything, and that was logged. */
  private failing = false;
  /** The last entry read: journalctl restarts after it. */
  private read: string | undefined;
  private readonly order: InOrder<string>;
  private readonly reader: LineReader;

  constructor(private readonly options: JournalOptions) {
    this.read = options.state.journal;
    this.order = new InOrder((cursor) => (options.state.journal = cursor));
    this.reader = new LineReader(JOURNAL_LINE_MAX_BYTES, () =>
      options.log('warning', `journal: an entry longer than ${JOURNAL_LINE_MAX_BYTES} bytes skipped`),
    );
  }

  get name(): string {
    return this.options.directory === undefined ? 'journal' : `journal ${this.options.directory}`;
  }

  /** The arguments journalctl runs with. */
  args(): string[] {
    const args = ['-o', 'json', '-f', '--no-pager'];
    if (this.read !== undefined) args.push('--no-tail', `--after-cursor=${this.read}`);
    else args.push('-n', '0');
    if (this.options.directory !== undefined) args.push(`--directory=${this.options.directory}`);
    for (const [i, match] of this.options.matches.entries()) {
      if (i > 0) args.push('+');
      for (const [field, value] of Object.entries(match)) args.push(`${field}=${value}`);
    }
    return args;
  }

  start(): void {
    if (this.stopped) return;
    const child = spawn(this.options.journalctl ?? 'journalctl', this.args(), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    child.stdout!.on('data', (chunk: Buffer) => this.reader.push(chunk, (line) => this.line(line)));
    child.on('error', (e) => this.options.log('err', `journal: ${e.message}`));
    let read = false;
    child.stdout!.once('data', () => {
      read = true;
      if (this.failing) this.options.log('notice', 'journal: reading again');
      this.failing = false;
    });
    child.on('close', (code, signal) => {
      this.child = undefined;
      if (this.stopped) return;
      // said once while it keeps failing (no journal, no permission), not every second
      const why = `${signal ?? `status ${code}`}`;
      const said = stderr.trim() === '' ? '' : `: ${stderr.trim()}`;
      if (read || !this.failing)
        this.options.log('warning', `journal: journalctl exited (${why})${said}; starting it again every ${RESTART_MS / 1000} s`);
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
      this.options.log('warning', 'journal: journalctl printed a line that is not JSON');
      return;
    }
    const cursor = entry.__CURSOR;
    if (typeof cursor !== 'string') return;
    this.read = cursor;
    this.options.entry(entry, this.order.add(cursor));
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
    const child = this.child;
    if (child !== undefined) {
      const closed = new Promise((resolve) => child.once('close', resolve));
      child.kill('SIGTERM');
      await closed;
    }
  }
}
