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
 * A started helper, as much of a ChildProcess as the runner uses: 'spawn'
 * once it runs and `pid` is set; 'exit' (code, signal) once it has been
 * reaped; 'error' when it could not be started (`pid` stays undefined).
 */
export interface HelperProcess {
  readonly pid?: number | undefined;
  readonly stdout: Readable | null;
  readonly stdin: Writable | null;
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  on(event: 'error', listener: (e: Error) => void): this;
  once(event: 'spawn', listener: () => void): this;
}

interface SpawnBinding {
  available(): boolean;
  /** The socket pairs at once; the child in libuv's thread pool, then onStart (errno 0: started). */
  spawn(
    file: string,
    argv: string[],
    env: string[] | null,
    stdinPipe: boolean,
    onStart: (errno: number, pid: number, syscall: string) => void,
    onExit: (code: number, signal: number) => void,
  ): [stdout: number, stdin: number];
  /** The same with the child started on this thread before it returns (errno 0: started, else the syscall that failed). */
  spawnHere(
    file: string,
    argv: string[],
    env: string[] | null,
    stdinPipe: boolean,
    onExit: (code: number, signal: number) => void,
  ): [stdout: number, stdin: number, errno: number, pid: number, syscall: string];
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

/** A signal's name as child_process gives it: the first of two names of one number (SIGABRT, not SIGIOT; SIGIO, not SIGPOLL). */
const SIGNAL_NAMES = new Map<number, NodeJS.Signals>();
for (const [name, n] of Object.entries(constants.signals)) if (!SIGNAL_NAMES.has(n)) SIGNAL_NAMES.set(n, name as NodeJS.Signals);

/** Helpers the addon started (or is starting) that have not been reaped yet. */
let unreaped = 0;

/**
 * A helper started by the addon: 'spawn' once it runs (then `pid` is set),
 * or 'error' (an Error with `errno`, as child_process's) when it could not
 * be started; then 'exit' once it has been reaped.
 *
 * When no other helper is starting or running (an idle daemon's new block)
 * it starts on the event loop's thread, which then waits for the child's
 * exec (0.1-0.5 ms on the 2-core bench machine) but wakes no thread of
 * libuv's pool first; otherwise in the pool, so that a burst of blocks does
 * not hold the loop for each of its starts (spawn.cc).
 */
class SpawnedHelper extends EventEmitter implements HelperProcess {
  pid: number | undefined;
  readonly stdout: Socket;
  readonly stdin: Socket | null;

  constructor(spawner: SpawnBinding, program: string, args: string[], options: StartOptions) {
    super();
    const env = options.env === undefined ? null : Object.entries(options.env).map(([name, value]) => `${name}=${value ?? ''}`);
    const argv = [options.argv0, ...args];
    const exited = (code: number, signal: number): void => {
      unreaped--;
      if (signal < 0) {
        // waitid failed (not seen: the pidfd is this process's child): nothing to learn of how it ended
        this.emit('exit', null, null);
        return;
      }
      this.emit('exit', signal === 0 ? code : null, signal === 0 ? null : (SIGNAL_NAMES.get(signal) ?? null));
    };
    let stdout: number, stdin: number;
    if (unreaped === 0) {
      let errno: number, pid: number, syscall: string;
      [stdout, stdin, errno, pid, syscall] = spawner.spawnHere(program, argv, env, options.input, exited);
      // the listeners are added once this returns, as child_process emits its events
      process.nextTick(() => this.started(program, errno, pid, syscall));
    } else {
      [stdout, stdin] = spawner.spawn(
        program,
        argv,
        env,
        options.input,
        (errno, pid, syscall) => this.started(program, errno, pid, syscall),
        exited,
      );
    }
    unreaped++;
    this.stdout = new Socket({ fd: stdout, readable: true, writable: false });
    this.stdin = stdin < 0 ? null : new Socket({ fd: stdin, readable: false, writable: true });
  }

  /** 'spawn', or 'error' when it could not be started (errno < 0: the syscall that failed); then no 'exit' comes. */
  private started(program: string, errno: number, pid: number, syscall: string): void {
    if (errno === 0) {
      this.pid = pid;
      this.emit('spawn');
      return;
    }
    unreaped--;
    this.stdout.destroy();
    this.stdin?.destroy();
    const e: NodeJS.ErrnoException = new Error(`${syscall} ${program} failed (errno ${-errno})`);
    e.errno = errno;
    e.syscall = syscall;
    this.emit('error', e);
  }
}

/** Starts `program` with `args`; emits 'error' (an Error with `errno`) when it cannot, or throws for arguments no exec can pass. */
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
