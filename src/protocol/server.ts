// The daemon's notification socket (protocol.md §8): bound, emptied by a
// thread of the addon whatever the event loop is doing, and handed to
// JavaScript in batches, one per turn of the loop.
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { constants as os } from 'node:os';
import { getSystemErrorName } from 'node:util';
import type { LogFn, Notification } from '../types.js';
import { errnoMessage, errnoText } from '../errno.js';
import { ServerSocket, constants, processNetns, setSocketMode, socketInfo, type ServerSocketHandle } from './native.js';
import { RecordBuffer, decodeRecord, rootOnly, type DropReason, type SenderPolicy } from './receive.js';
import { removeStaleSocket } from './socketfile.js';

export const DEFAULT_SOCKET_PATH = '/var/run/blocklistd.sock';

/** The default of --queue: a burst of 20 servers at once, each retrying, fits. */
export const DEFAULT_BACKLOG = 1024;

const QLEN_SYSCTL = '/proc/sys/net/unix/max_dgram_qlen';

/** How long a socket's queue is, as far as known, and why it is shorter than asked. */
export interface KernelQueue {
  /** Datagrams the kernel queues on the socket (undefined: not known). */
  length: number | undefined;
  /** Why it is not the length asked for, and how to raise it. */
  problem: string | undefined;
}

function readQlen(): number | undefined {
  try {
    return Number(readFileSync(QLEN_SYSCTL, 'utf8').trim());
  } catch {
    return undefined;
  }
}

/**
 * Runs `create` (which makes a unix datagram socket) with
 * net.unix.max_dgram_qlen at least `want`: Linux copies it into the socket
 * when the socket is created (unix_create1), for the network namespace of
 * the creator, and nothing changes a socket's length later (SO_RCVBUF does
 * not).  Raising it for that moment is safe: a socket another process
 * creates meanwhile gets a longer queue, never a shorter one (each queued
 * datagram is charged to its sender's buffer, so a long queue costs no
 * memory of its own); a value already higher is kept, and the old value is
 * written back only while the sysctl still holds ours.
 */
function withBacklog<T>(want: number, create: () => T): { value: T; queue: KernelQueue } {
  const before = readQlen();
  const advice = `raise net.unix.max_dgram_qlen to ${want} (sysctl -w, or etc/sysctl.d/blocklistd.conf) before the socket is created`;
  if (before === undefined) return { value: create(), queue: { length: undefined, problem: undefined } };
  if (before >= want) return { value: create(), queue: { length: before, problem: undefined } };
  try {
    writeFileSync(QLEN_SYSCTL, `${want}\n`);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    return { value: create(), queue: { length: before, problem: `cannot raise net.unix.max_dgram_qlen (${why}): ${advice}` } };
  }
  try {
    return { value: create(), queue: { length: want, problem: undefined } };
  } finally {
    try {
      if (readQlen() === want) writeFileSync(QLEN_SYSCTL, `${before}\n`);
    } catch {
      // it could be written a moment ago: nothing more to do than leave it longer
    }
  }
}

export interface NotificationSocketOptions {
  log: LogFn;
  /** Permission bits of the socket file; any local user may notify by default (G8). */
  mode?: number;
  /** Most notifications handed over per turn of the event loop. */
  batchSize?: number;
  /** Datagrams the receiving thread keeps while JavaScript is busy. */
  queue?: number;
  /** Told of each dropped datagram (after its log line). */
  onDrop?: (reason: DropReason) => void;
  /**
   * Datagrams the kernel should queue on a socket bound here (Linux:
   * net.unix.max_dgram_qlen, raised for the moment of creation when root).
   */
  backlog?: number;
  /** Senders (by uid) that may name the peer of a stream socket; root alone by default. */
  trusted?: (uid: number, gid: number) => boolean;
}

let netns: { id: Buffer | undefined; problem: string | undefined } | undefined;

/**
 * This process's network namespace, which passed sockets must share, read
 * once; `problem` says why it cannot be checked (then nothing is refused
 * for it).
 */
export function ownNetns(): { id: Buffer | undefined; problem: string | undefined } {
  if (netns === undefined) {
    const id = processNetns();
    if (Buffer.isBuffer(id)) netns = { id, problem: undefined };
    else if (process.platform !== 'linux')
      netns = { id: undefined, problem: undefined }; // no network namespaces to check
    else {
      const why =
        id.errno === constants.ENOPROTOOPT
          ? 'the system tells no network namespace of a socket (Linux 5.14 has SO_NETNS_COOKIE, 4.9 SIOCGSKNS)'
          : `SIOCGSKNS: ${errnoMessage(id.errno)} (without SO_NETNS_COOKIE, Linux before 5.14, it needs CAP_NET_ADMIN)`;
      netns = { id: undefined, problem: `passed sockets are not checked for their network namespace: ${why}` };
    }
  }
  return netns;
}

/** Why a socket could not be set up, with upstream's message (the daemon exits 1). */
export class SocketSetupError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'SocketSetupError';
  }
}

/** The addon's errno error from binding or adopting, as upstream words it. */
function setupError(path: string, e: NodeJS.ErrnoException): SocketSetupError {
  const reason = errnoText(e);
  const code = e.code ?? 'EINVAL';
  switch (e.syscall) {
    case 'socket':
      return new SocketSetupError(`bl_init: socket failed (${reason})`, code);
    case 'setsockopt':
      return new SocketSetupError(`bl_init: setsockopt SO_PASSCRED failed (${reason})`, code);
    default:
      return new SocketSetupError(`bl_init: bind failed for '${path}' (${reason})`, code);
  }
}

/** Runs the addon's `create`, its errors worded by setupError. */
function native<T>(path: string, create: () => T): T {
  try {
    return create();
  } catch (e) {
    throw setupError(path, e as NodeJS.ErrnoException);
  }
}

/**
 * Binds `path` with the permission bits `mode`: a stale socket there is
 * replaced, a live one refused; anything else there makes bind() fail.
 */
function bindPath(path: string, mode: number, backlog: number): { handle: ServerSocketHandle; queue: KernelQueue } {
  if (removeStaleSocket(path) === 'live') throw new SocketSetupError(`bl_init: another daemon is handling '${path}'`, 'EADDRINUSE');
  const created = withBacklog(backlog, () => native(path, () => new ServerSocket(path)));
  const err = setSocketMode(path, mode, -1);
  if (err !== 0) {
    created.value.close();
    // a symlink or another file swapped in after bind() is not ours to remove
    if (err !== os.errno.ELOOP && err !== os.errno.ENOTSOCK) {
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    }
    throw new SocketSetupError(`bl_init: chmod failed for '${path}' (${errnoMessage(err)})`, getSystemErrorName(-err));
  }
  return { handle: created.value, queue: created.queue };
}

/** Adopts descriptor `fd` (named `path` in messages) when it is a unix datagram socket. */
function adopt(path: string, fd: number): ServerSocketHandle {
  const info = socketInfo(fd);
  if ('errno' in info)
    throw new SocketSetupError(`bl_init: getsockopt failed for ${path} (${errnoMessage(info.errno)})`, getSystemErrorName(-info.errno));
  if (info.family !== constants.AF_UNIX || info.type !== constants.SOCK_DGRAM)
    throw new SocketSetupError(`bl_init: ${path} is not a unix datagram socket`, 'EPROTOTYPE');
  return native(path, () => new ServerSocket(fd));
}

export class NotificationSocket {
  private readonly handle: ServerSocketHandle;
  private readonly log: LogFn;
  private readonly drop: ((reason: DropReason) => void) | undefined;
  private readonly batchSize: number;
  /** The receiving thread's ring of records, lent batch by batch. */
  private readonly records: RecordBuffer;
  /** Where the next lent records start in the ring. */
  private next = 0;
  private readonly policy: SenderPolicy;
  /** The kernel's queue of this socket. */
  readonly kernelQueue: KernelQueue;

  /**
   * Binds `path`, or adopts the bound socket `fd` (systemd's socket
   * activation; `path` is then its name in logs); throws SocketSetupError
   * when another daemon owns the path, binding fails or `fd` is not a unix
   * datagram socket.
   */
  constructor(
    readonly path: string,
    options: NotificationSocketOptions & { fd?: number },
  ) {
    this.log = options.log;
    this.drop = options.onDrop;
    this.batchSize = options.batchSize ?? 512;
    this.policy = { netns: ownNetns().id, trusted: options.trusted ?? rootOnly };
    // A batch of 0 would leave the queue readable and the poll spinning.
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1)
      throw new RangeError(`batchSize ${this.batchSize}: not a positive integer`);
    const queue = options.queue ?? 8192;
    if (!Number.isInteger(queue) || queue < 1) throw new RangeError(`queue ${queue}: not a positive integer`);
    if (options.fd !== undefined) {
      this.handle = adopt(path, options.fd);
      const length = readQlen();
      // the sysctl may have changed since systemd made the socket: its value now is only a hint
      const short = length !== undefined && options.backlog !== undefined && length < options.backlog;
      const problem = short
        ? 'a socket systemd passed queues net.unix.max_dgram_qlen + 1 datagrams as the sysctl was when systemd made it ' +
          `(now ${length}, not --queue ${options.backlog}): raise it before (etc/sysctl.d/blocklistd.conf)`
        : undefined;
      this.kernelQueue = { length: undefined, problem };
    } else {
      const bound = bindPath(path, options.mode ?? 0o666, options.backlog ?? 0);
      this.handle = bound.handle;
      this.kernelQueue = bound.queue;
    }
    this.records = new RecordBuffer(queue);
  }

  /** Calls `onBatch` with the notifications of each wake-up, in arrival order. */
  start(onBatch: (batch: Notification[]) => void): void {
    this.handle.start(() => {
      const batch = this.receive();
      if (batch.length > 0) onBatch(batch);
    }, this.records.bytes);
  }

  /** Takes what was received, up to one batch; drops are logged. */
  receive(): Notification[] {
    const n = this.handle.take(this.batchSize);
    const first = this.next;
    const batch: Notification[] = [];
    for (let i = first; i < first + n; i++) {
      const notification = decodeRecord(this.records, i, this.log, this.policy, this.drop);
      if (notification !== undefined) batch.push(notification);
    }
    this.next = (first + n) % this.records.capacity;
    return batch;
  }

  /** Datagrams the receiving thread holds for the event loop. */
  get waiting(): number {
    return this.handle.waiting();
  }

  /** Stops receiving and returns what was received but not yet taken: nothing acknowledged is lost. */
  stop(): Notification[] {
    this.handle.stop();
    const rest: Notification[] = [];
    // until nothing waits, not until an empty batch: a batch whose datagrams were all dropped is empty
    while (this.handle.waiting() > 0) rest.push(...this.receive());
    return rest;
  }

  /** Stops receiving and closes the socket; removing the file is the caller's choice (upstream leaves it). */
  close(): void {
    this.handle.close();
  }
}
