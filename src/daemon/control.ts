// The control socket (issue 7): a unix stream socket apart from the
// notification socket, mode 0600 (0660 with a group), whose peers are also
// checked by their kernel credentials.  Each connection is read a line at
// a time, its requests answered in order; a line beyond REQUEST_MAX_BYTES
// is refused and the connection closed, a slow or silent client cannot
// hold the daemon up: nothing here waits for a client.
import { unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { userName, type GroupEntry } from '../conf/system.js';
import { ControlError, LineSplitter, REQUEST_MAX_BYTES, encodeResponse, parseRequest } from '../protocol/control.js';
import { errnoMessage } from '../errno.js';
import { peerCredentials, setSocketMode } from '../protocol/native.js';
import { removeStaleSocket } from '../protocol/socketfile.js';
import type { LogFn } from '../types.js';

/**
 * A result too large for one line (a dump of the whole database): sent as
 * one response line per chunk, in order, each with the request's id; the
 * last chunk has `more: false`, the others `more: true`.  The next chunk is
 * read only once the client has taken the previous ones: the daemon never
 * holds more than a socket buffer and a chunk of it.
 */
export class ChunkedResult {
  constructor(readonly chunks: AsyncIterable<{ more: boolean; [field: string]: unknown }>) {}
}

/** Who is at the other end of a control connection. */
export interface Peer {
  uid: number;
  gid: number;
  pid: number;
  groups?: number[];
}

export interface ControlServerOptions {
  path: string;
  /** A listening socket passed by systemd: used as it is, its file left alone. */
  fd?: number;
  /** The group allowed besides root and the daemon's own user: socket mode 0660, owned by `gid`. */
  group?: { gid: number; lookup: () => Promise<GroupEntry | undefined> };
  log: LogFn;
  /** Runs one request; throws ControlError (or anything, an internal error). */
  handle: (command: string, args: Record<string, unknown>, peer: Peer) => Promise<unknown>;
  /** Told of each request and whether it succeeded. */
  counted?: (command: string, ok: boolean) => void;
  /** Waiting this long for a request closes the connection (IDLE_MS by default). */
  idleMs?: number;
}

/** Waiting for a request this long closes the connection. */
const IDLE_MS = 5 * 60_000;
/** Responses a client does not read are not kept beyond this. */
const UNREAD_MAX_BYTES = 16 * 1024 * 1024;
/** A refused connection is read (and its data dropped) this long at most before it is closed. */
const LINGER_MS = 2000;
/**
 * Connections served at once (each is a descriptor): one beyond is told
 * `busy` and closed.  Room for a crowd of scripts, far below the limit of
 * open files.
 */
export const MAX_CONNECTIONS = 1024;
/** Connections waiting to be accepted (the kernel caps it at net.core.somaxconn): a burst beyond fails with EAGAIN. */
const BACKLOG = 4096;

/** Why the control socket could not be set up (the daemon exits 1). */
export class ControlSetupError extends Error {
  override readonly name = 'ControlSetupError';
}

export class ControlServer {
  private readonly connections = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    private readonly options: ControlServerOptions,
  ) {
    server.on('connection', (socket) => this.accept(socket));
    server.on('error', (e) => options.log('err', `control socket ${options.path}: ${e.message}`));
  }

  get path(): string {
    return this.options.path;
  }

  /** Listens on the path (a stale socket file replaced, a live one refused) or on the passed socket. */
  static async open(o: ControlServerOptions): Promise<ControlServer> {
    const server = createServer({ pauseOnConnect: false });
    const listening = new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.once('listening', () => {
        server.off('error', reject);
        resolve();
      });
    });
    if (o.fd !== undefined) {
      server.listen({ fd: o.fd });
    } else {
      const found = removeStaleSocket(o.path);
      if (found === 'not-socket') throw new ControlSetupError(`control socket ${o.path}: the path exists and is not a socket`);
      if (found === 'live' || found === 'taken') throw new ControlSetupError(`control socket ${o.path}: another daemon is handling it`);
      server.listen({ path: o.path, backlog: BACKLOG });
    }
    try {
      await listening;
    } catch (e) {
      throw new ControlSetupError(`control socket ${o.path}: ${(e as Error).message}`);
    }
    if (o.fd === undefined) {
      // after bind: a peer that connects before is still checked by its credentials;
      // never through a symlink swapped in meanwhile by whoever can write the directory
      const err = setSocketMode(o.path, o.group === undefined ? 0o600 : 0o660, o.group?.gid ?? -1);
      if (err !== 0) {
        server.close();
        throw new ControlSetupError(`control socket ${o.path}: cannot set its mode (${errnoMessage(err)})`);
      }
    }
    return new ControlServer(server, o);
  }

  /** Stops listening, closes every connection; removes the file unless systemd passed the socket. */
  close(): void {
    this.server.close();
    for (const socket of this.connections) socket.destroy();
    if (this.options.fd === undefined) {
      try {
        unlinkSync(this.options.path);
      } catch {
        // already gone
      }
    }
  }

  /**
   * Root and the daemon's user; else a process of the group (its gid or a
   * supplementary group) or a user the group lists, as the group database
   * says at this connection: a member removed since the start is refused.
   */
  private async allowed(peer: Peer): Promise<boolean> {
    if (peer.uid === 0 || peer.uid === process.geteuid?.()) return true;
    const group = await this.options.group?.lookup();
    if (group === undefined) return false;
    if (peer.gid === group.gid || (peer.groups?.includes(group.gid) ?? false)) return true;
    // the kernel does not tell every peer's groups (NetBSD: the primary one only): the members the group lists
    const name = group.members.length > 0 ? await userName(peer.uid) : undefined;
    return name !== undefined && group.members.includes(name);
  }

  private accept(socket: Socket): void {
    socket.on('error', () => {}); // a client gone: nothing to report
    if (this.connections.size >= MAX_CONNECTIONS) {
      this.options.counted?.('connect', false);
      // no lingering read: a crowd beyond the limit must not hold descriptors
      socket.end(
        encodeResponse(undefined, {
          error: new ControlError('busy', `${MAX_CONNECTIONS} control connections are open: try again later`).body,
        }),
      );
      socket.once('finish', () => socket.destroy());
      return;
    }
    this.connections.add(socket);
    socket.on('close', () => this.connections.delete(socket));
    // a client gone meanwhile ends the reading: nothing to report
    this.serve(socket).catch(() => socket.destroy());
  }

  /**
   * Reads nothing until the peer is known to be allowed, then answers its
   * requests one at a time, in order: the next line is read only once the
   * answer to the one before is written, so a client that pipelines is held
   * back by the kernel's buffers, not by memory here.
   */
  private async serve(socket: Socket): Promise<void> {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    const peer = typeof fd === 'number' && fd >= 0 ? peerCredentials(fd) : { errno: -1 };
    const allowed = 'errno' in peer ? false : await this.allowed(peer).catch(() => false);
    if (socket.destroyed) return;
    if ('errno' in peer || !allowed) {
      const who = 'errno' in peer ? 'a peer whose credentials cannot be read' : `uid ${peer.uid} (pid ${peer.pid})`;
      this.options.log('notice', `control: ${who} refused`);
      this.options.counted?.('connect', false);
      closeWith(
        socket,
        encodeResponse(undefined, {
          error: new ControlError(
            'access_denied',
            `access denied: ${'errno' in peer ? 'unknown peer' : `uid ${peer.uid}`} may not control blocklistd`,
          ).body,
        }),
      );
      return;
    }
    const lines = new LineSplitter(REQUEST_MAX_BYTES);
    for await (const line of requestLines(socket, lines, this.options.idleMs ?? IDLE_MS)) {
      if (line.trim() === '') continue;
      await this.answer(socket, line, peer);
      if (socket.writableLength > UNREAD_MAX_BYTES) {
        socket.destroy();
        return;
      }
    }
    if (lines.overflow) {
      this.options.counted?.('oversized', false);
      closeWith(
        socket,
        encodeResponse(undefined, {
          error: new ControlError('too_large', `request longer than ${REQUEST_MAX_BYTES} bytes: connection closed`).body,
        }),
      );
    }
  }

  /** One request line → one response line written (a line per chunk for a ChunkedResult). */
  private async answer(socket: Socket, line: string, peer: Peer): Promise<void> {
    let id: unknown;
    let command = 'invalid';
    try {
      const request = parseRequest(line);
      id = request.id;
      command = request.command;
      const result = await this.options.handle(request.command, request.args, peer);
      if (result instanceof ChunkedResult) await sendChunks(socket, id, result);
      else socket.write(encodeResponse(id, { result }));
      this.options.counted?.(command, true);
    } catch (e) {
      // a label per name a client makes up would grow the metrics without bound
      if (e instanceof ControlError && e.code === 'unknown_command') command = 'unknown';
      this.options.counted?.(command, false);
      if (e instanceof ControlError) {
        socket.write(encodeResponse(id ?? e.requestId, { error: e.body }));
        return;
      }
      this.options.log('err', `control: ${command}: ${(e as Error).stack ?? String(e)}`);
      socket.write(encodeResponse(id, { error: { code: 'internal', message: `internal error: ${(e as Error).message}` } }));
    }
  }
}

/**
 * The lines a connection sends, each read only when the one before has been
 * answered, up to the first beyond REQUEST_MAX_BYTES (`lines.overflow` is
 * then set) or the end of the stream; an unterminated last line is no
 * request.  Waiting for a line longer than `idleMs` closes the connection;
 * the time a request takes to answer does not count.
 */
async function* requestLines(socket: Socket, lines: LineSplitter, idleMs: number): AsyncGenerator<string> {
  socket.on('timeout', () => socket.destroy());
  socket.setTimeout(idleMs);
  // on an early return (too long a line) the socket stays open for closeWith's answer
  for await (const chunk of socket.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    for (const line of lines.push(chunk)) {
      if (socket.destroyed) return;
      socket.setTimeout(0);
      yield line;
      socket.setTimeout(idleMs);
    }
    if (lines.overflow) return;
  }
}

/** Chunks written waiting this long for the client to read closes the connection. */
const CHUNK_WAIT_MS = IDLE_MS;

/**
 * Writes the chunks as response lines, each after the client has read enough
 * of the earlier ones (or a turn of the event loop: notifications are
 * received between two chunks); a client gone, or not reading for
 * CHUNK_WAIT_MS, ends it (the chunks' source is closed).
 */
async function sendChunks(socket: Socket, id: unknown, result: ChunkedResult): Promise<void> {
  for await (const chunk of result.chunks) {
    if (socket.destroyed) return;
    if (socket.write(encodeResponse(id, { result: chunk }))) {
      await new Promise((resolve) => setImmediate(resolve));
      continue;
    }
    const drained = await new Promise<boolean>((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        socket.off('drain', onDrain).off('close', onClose);
        resolve(ok);
      };
      const onDrain = (): void => done(true);
      const onClose = (): void => done(false);
      const timer = setTimeout(() => done(false), CHUNK_WAIT_MS);
      socket.once('drain', onDrain).once('close', onClose);
    });
    if (!drained) {
      socket.destroy();
      return;
    }
  }
}

/**
 * Sends a last answer and closes, reading on (and dropping what comes) until
 * the peer closes or LINGER_MS pass: a client still writing its request
 * then reads the answer instead of failing with EPIPE.
 */
function closeWith(socket: Socket, answer: string): void {
  socket.on('data', () => {});
  socket.end(answer);
  socket.resume();
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}
