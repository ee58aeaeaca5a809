// How a helper process is started (src/run/helper.ts): one interface, two
// starters.  On Linux with pidfds (>= 5.3) the addon blspawn starts it with
// posix_spawn, whose cost does not grow with the daemon's size (a fork of
// the daemon copies its page tables on the event loop's thread: 3-8 ms per
// call); elsewhere, or where the addon is not built or a seccomp filter
// refuses pidfd_open, child_process.spawn does.  Both start it the same way:
// argv[0] as given, a session and process group of its own, signals at
// their defaults, stdin /dev/null or a socket pair, stdout a socket pair,
// stderr the daemon's; both reap it and report its exit once.
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';

export interface StartOptions {
  argv0: string;
  /** The whole environment; undefined: the daemon's. */
  env: NodeJS.ProcessEnv | undefined;
  /** A pipe for stdin (else /dev/null). */
  input: boolean;
}

/**
 * A started helper, as much of a ChildProcess as the runner uses: 'exit'
 * (code, signal) once it has been reaped; 'error' when it could not be
 * started (then `pid` is undefined) or a signal could not be sent.
 */
export interface HelperProcess {
  readonly pid?: number | undefined;
  readonly stdout: Readable | null;
  readonly stdin: Writable | null;
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  on(event: 'error', listener: (e: Error) => void): this;
}

interface SpawnBinding {
  available(): boolean;
  spawn(
    file: string,
    argv: string[],
    env: string[] | null,
    stdinPipe: boolean,
    onExit: (code: number, signal: number) => void,
  ): [pid: number, stdout: number, stdin: number];
}

/** The addon where it can be used, else undefined. */
function loadBinding(): SpawnBinding | undefined {
  try {
    const binding = createRequire(import.meta.url)('../../../build/Release/blspawn.node') as SpawnBinding;
    return binding.available() ? binding : undefined;
  } catch {
    return undefined; // not built
  }
}

const binding = process.env.BLOCKLISTD_SPAWN === 'fork' ? undefined : loadBinding();

/** Which starter starts the helpers: 'posix_spawn' (the addon) or 'fork' (child_process). */
export const starter: 'posix_spawn' | 'fork' = binding === undefined ? 'fork' : 'posix_spawn';

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));

class SpawnedHelper extends EventEmitter implements HelperProcess {
  readonly pid: number;
  readonly stdout: Readable;
  readonly stdin: Writable | null;

  constructor(spawner: SpawnBinding, program: string, args: string[], options: StartOptions) {
    super();
    const env = options.env === undefined ? null : Object.entries(options.env).map(([name, value]) => `${name}=${value ?? ''}`);
    const [pid, stdout, stdin] = spawner.spawn(program, [options.argv0, ...args], env, options.input, (code, signal) => {
      if (signal < 0) {
        // waitid failed: nothing to learn of how it ended (not seen; the child is gone or never will be reaped by us)
        this.emit('exit', null, null);
        return;
      }
      this.emit('exit', signal === 0 ? code : null, signal === 0 ? null : (SIGNAL_NAMES.get(signal) ?? null));
    });
    this.pid = pid;
    this.stdout = new Socket({ fd: stdout, readable: true, writable: false });
    this.stdin = stdin < 0 ? null : new Socket({ fd: stdin, readable: false, writable: true });
  }
}

/** Starts `program` with `args`; throws (an Error with `errno`) or emits 'error' when it cannot. */
export function startHelper(program: string, args: string[], options: StartOptions): HelperProcess {
  // A NUL in a string cannot reach exec: child_process.spawn refuses it with its own error, the one the logs show.
  const passable = !program.includes('\0') && !args.some((a) => a.includes('\0'));
  if (binding !== undefined && passable) return new SpawnedHelper(binding, program, args, options);
  return spawn(program, args, {
    argv0: options.argv0,
    detached: true,
    env: options.env,
    stdio: [options.input ? 'pipe' : 'ignore', 'pipe', 'inherit'],
  });
}
