// The daemon's notification socket (protocol.md §8): bound, emptied by a
// thread of the addon whatever the event loop is doing, and handed to
// JavaScript in batches, one per turn of the loop.
import type { LogFn, Notification } from '../types.js';
import { ServerSocket, constants as C, layout, processNetns, strerror, type ServerSocketHandle } from './native.js';
import { decodeRecord, rootOnly, type DropReason, type SenderPolicy } from './receive.js';

export const DEFAULT_SOCKET_PATH = '/var/run/blocklistd.sock';

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
  /** Senders (by uid) that may name the peer of a stream socket; root alone by default. */
  trusted?: (uid: number) => boolean;
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
    else {
      const why = id.errno === C.ENOPROTOOPT ? 'the system tells no network namespace of a socket (Linux 5.14 has SO_NETNS_COOKIE, 4.9 SIOCGSKNS)' : `SIOCGSKNS: ${strerror(id.errno)} (without SO_NETNS_COOKIE, Linux before 5.14, it needs CAP_NET_ADMIN)`;
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

function setupMessage(path: string, e: NodeJS.ErrnoException): string {
  const reason = typeof e.errno === 'number' ? strerror(e.errno) : e.message;
  switch (e.syscall) {
    case 'probe':
      return `bl_init: another daemon is handling '${path}'`;
    case 'socket':
      return `bl_init: socket failed (${reason})`;
    case 'setsockopt':
      return `bl_init: setsockopt SO_PASSCRED failed (${reason})`;
    case 'chmod':
      return `bl_init: chmod failed for '${path}' (${reason})`;
    case 'adopt':
      return `bl_init: ${path} is not a unix datagram socket`;
    case 'getsockopt':
    case 'getsockname':
      return `bl_init: ${e.syscall} failed for ${path} (${reason})`;
    default:
      return `bl_init: bind failed for '${path}' (${reason})`;
  }
}

export class NotificationSocket {
  private readonly handle: ServerSocketHandle;
  private readonly log: LogFn;
  private readonly drop: ((reason: DropReason) => void) | undefined;
  private readonly batchSize: number;
  private readonly queue: number;
  private readonly records: Buffer;
  private readonly policy: SenderPolicy;

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
    this.queue = options.queue ?? 8192;
    this.policy = { netns: ownNetns().id, trusted: options.trusted ?? rootOnly };
    // A batch of 0 would leave the queue readable and the poll spinning.
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) throw new RangeError(`batchSize ${this.batchSize}: not a positive integer`);
    try {
      this.handle = options.fd === undefined ? new ServerSocket(path, options.mode ?? 0o666) : new ServerSocket(options.fd);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new SocketSetupError(setupMessage(path, err), err.code ?? 'EINVAL');
    }
    // Not from the pool: the addon needs the records aligned.
    this.records = Buffer.alloc(this.batchSize * layout.size);
  }

  /** Calls `onBatch` with the notifications of each wake-up, in arrival order. */
  start(onBatch: (batch: Notification[]) => void, onError: (message: string) => void): void {
    this.handle.start((errno) => {
      if (errno !== 0) {
        onError(`poll (${strerror(errno)})`);
        return;
      }
      const batch = this.receive();
      if (batch.length > 0) onBatch(batch);
    }, this.queue);
  }

  /** Takes what was received, up to one batch; drops are logged. */
  receive(): Notification[] {
    const n = this.handle.drain(this.records, this.batchSize);
    const batch: Notification[] = [];
    for (let i = 0; i < n; i++) {
      const notification = decodeRecord(this.records.subarray(i * layout.size, (i + 1) * layout.size), this.log, this.policy, this.drop);
      if (notification !== undefined) batch.push(notification);
    }
    return batch;
  }

  /** Stops receiving and returns what was received but not yet taken: nothing acknowledged is lost. */
  stop(): Notification[] {
    this.handle.stop();
    const rest: Notification[] = [];
    for (let batch = this.receive(); batch.length > 0; batch = this.receive()) rest.push(...batch);
    return rest;
  }

  /** Stops receiving and closes the socket; removing the file is the caller's choice (upstream leaves it). */
  close(): void {
    this.handle.close();
  }
}
