// Shared by the test files: temp dirs, a log collector, a receiving socket
// that hands notifications to promises, and the independent C peer blprobe.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { NotificationSocket } from '../src/protocol/server.js';
import type { EffectiveRule, LogFn, LogLevel, Notification } from '../src/types.js';

/** The repository (this file runs as dist/test/support.js). */
export const repoRoot = resolve(fileURLToPath(import.meta.url), '../../..');

export const isRoot = process.getuid?.() === 0;

/** A fresh directory, removed when the test process exits. */
export function tempDir(prefix = 'blocklistd-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
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
    this.socket.start(
      (batch) => {
        this.batches++;
        this.received.push(...batch);
        const ready = this.waiters.filter((w) => this.received.length >= w.n);
        this.waiters = this.waiters.filter((w) => this.received.length < w.n);
        for (const w of ready) w.resolve();
      },
      (message) => {
        throw new Error(message);
      },
    );
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
  const candidates = [
    process.env.BLPROBE_SRC,
    resolve(repoRoot, '../shared/tools/blprobe'),
    '/work/shared/tools/blprobe',
  ].filter((p): p is string => p !== undefined);
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

/** Runs a program without blocking the event loop (the receiver must keep draining). */
export function run(file: string, args: string[], options: { uid?: number; gid?: number } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

export async function runBlprobe(args: string[]): Promise<RunResult> {
  return run(await blprobe(), args);
}

/** A state key for tests: an IPv4 ssh entry, nfail 3, one hour, with `fields` changed. */
export function stateKey(address: string, fields: Partial<EffectiveRule> = {}): EffectiveRule {
  return { family: 2, address, lmask: 32, port: 22, proto: 6, uid: -1, name: 'blocklistd', rmask: -1, nfail: 3, duration: 3600, ...fields };
}
