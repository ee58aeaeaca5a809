// systemd integration (issue 7), without libsystemd: sd_notify(3) datagrams
// to $NOTIFY_SOCKET (READY=1, RELOADING=1, STOPPING=1, WATCHDOG=1) and
// sd_listen_fds(3) for socket activation.  Everything is a no-op outside
// systemd.
import { createRequire } from 'node:module';
import { ClientSocket, socketInfo, constants } from '../protocol/native.js';
import type { LogFn } from '../types.js';

/** What this file uses of unix-dgram (untyped CommonJS). */
interface UnixDgramSocket {
  on(event: 'error', listener: (error: Error) => void): this;
  send(data: Buffer, offset: number, length: number, path: string, callback?: (error?: Error) => void): void;
  close(): void;
}
const unixDgram = createRequire(import.meta.url)('unix-dgram') as { createSocket(type: 'unix_dgram'): UnixDgramSocket };

const TIMER_MAX_MS = 2 ** 31 - 1;

/** sd_notify: one datagram per state change, each on a socket of its own (they are rare). */
export class SystemdNotifier {
  private watchdogTimer: NodeJS.Timeout | undefined;
  private failed = false;

  private constructor(
    private readonly path: string,
    private readonly log: LogFn,
    /** $WATCHDOG_USEC when it is meant for this process. */
    private readonly watchdogUsec: number | undefined,
  ) {}

  /**
   * The notifier $NOTIFY_SOCKET asks for, or undefined outside systemd.
   * Takes the variables out of the environment at once: helpers must not
   * notify in the daemon's name, nor see a watchdog that is not theirs.
   */
  static fromEnv(log: LogFn, env: NodeJS.ProcessEnv = process.env): SystemdNotifier | undefined {
    const { NOTIFY_SOCKET: path, WATCHDOG_USEC: usec, WATCHDOG_PID: pid } = env;
    delete env.NOTIFY_SOCKET;
    delete env.WATCHDOG_USEC;
    delete env.WATCHDOG_PID;
    if (path === undefined || path === '') return undefined;
    const watchdog = Number(usec) > 0 && (pid === undefined || Number(pid) === process.pid) ? Number(usec) : undefined;
    return new SystemdNotifier(path, log, watchdog);
  }

  /**
   * Sends `state` (lines of VAR=value).  Never throws: a watchdog ping that
   * fails (out of descriptors: EMFILE) is logged, not fatal.
   */
  notify(state: string): void {
    try {
      this.send(Buffer.from(state));
    } catch (e) {
      this.failure((e as Error).message);
    }
  }

  private send(data: Buffer): void {
    if (this.path.startsWith('@')) {
      // unix-dgram cannot address Linux's abstract sockets (systemd in a container may use one)
      const socket = new ClientSocket();
      const err = socket.open() || socket.connect(this.path) || socket.send(data, -1);
      socket.close();
      if (err !== 0) this.failure(`errno ${err}`);
      return;
    }
    const socket = unixDgram.createSocket('unix_dgram');
    socket.on('error', (e) => this.failure(e.message));
    socket.send(data, 0, data.length, this.path, (e) => {
      if (e !== undefined) this.failure(e.message);
    });
    socket.close();
  }

  ready(status: string): void {
    this.notify(`READY=1\nSTATUS=${status}\nMAINPID=${process.pid}`);
  }

  /** RELOADING=1 with the monotonic time systemd 253+ wants for Type=notify-reload. */
  reloading(): void {
    this.notify(`RELOADING=1\nMONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`);
  }

  stopping(): void {
    this.stopWatchdog();
    this.notify('STOPPING=1');
  }

  /**
   * WATCHDOG=1 at half of $WATCHDOG_USEC when it is set for this process:
   * the pings stop when the event loop does, and systemd restarts the daemon.
   * Returns the period in milliseconds.
   */
  startWatchdog(): number | undefined {
    if (this.watchdogUsec === undefined) return undefined;
    // setInterval takes at most 2^31-1 ms (24.8 days) and pings every millisecond beyond
    const interval = Math.min(TIMER_MAX_MS, Math.max(1, Math.floor(this.watchdogUsec / 2000)));
    this.notify('WATCHDOG=1');
    this.watchdogTimer = setInterval(() => this.notify('WATCHDOG=1'), interval);
    return interval;
  }

  stopWatchdog(): void {
    clearInterval(this.watchdogTimer);
    this.watchdogTimer = undefined;
  }

  private failure(reason: string): void {
    if (this.failed) return;
    this.failed = true;
    this.log('warning', `cannot notify systemd at ${this.path}: ${reason}`);
  }
}

/** A socket systemd passed (sd_listen_fds): its descriptor, FileDescriptorName and what it is. */
export interface ListenSocket {
  fd: number;
  name: string;
  /** Unix datagram: a notification socket. */
  datagram: boolean;
  /** A listening unix stream socket: a control socket. */
  stream: boolean;
  path: string;
}

/** SD_LISTEN_FDS_START */
const FIRST_FD = 3;

/**
 * sd_listen_fds(unset_environment = 1): the sockets passed to this process,
 * none when $LISTEN_PID names another one.
 */
export function listenSockets(env: NodeJS.ProcessEnv = process.env): ListenSocket[] {
  const pid = Number(env.LISTEN_PID);
  const count = Number(env.LISTEN_FDS);
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (pid !== process.pid || !(count > 0)) return [];
  const sockets: ListenSocket[] = [];
  for (let i = 0; i < count; i++) {
    const fd = FIRST_FD + i;
    const info = socketInfo(fd);
    const unix = !('errno' in info) && info.family === constants.AF_UNIX;
    sockets.push({
      fd,
      name: names[i] ?? '',
      datagram: unix && info.type === constants.SOCK_DGRAM,
      stream: unix && info.type === constants.SOCK_STREAM && info.listening,
      path: 'errno' in info ? '' : info.path,
    });
  }
  return sockets;
}
