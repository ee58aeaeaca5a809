// libblocklist for Node.js servers (client.md): report a connection's
// authentication outcome to blocklistd.  The datagram carries the server's
// socket; the daemon reads the local port and the peer from it.
import { Socket as DgramSocket } from 'node:dgram';
import type { Socket as NetSocket } from 'node:net';
import { parseIPAddress } from '../address.js';
import type { AddressFamily } from '../types.js';
import { errnoMessage } from '../errno.js';
import { ClientSocket, constants, type ClientSocketHandle } from '../protocol/native.js';
import { DEFAULT_SOCKET_PATH } from '../protocol/server.js';
import { encodeNotification, encodeSockaddr, encodeText, wireTypeOf, type BlocklistAction } from '../protocol/wire.js';

export { AUTH_OK, AUTH_FAIL, ABUSIVE_BEHAVIOR, BAD_USER, type BlocklistAction } from '../protocol/wire.js';
export { DEFAULT_SOCKET_PATH };

/**
 * Levels as libblocklist uses them: `debug` when the daemon cannot be
 * reached (once per outage), `err` when a notification cannot be sent.
 */
export type BlocklistLogger = (level: 'debug' | 'info' | 'err', message: string) => void;

export interface BlocklistOptions {
  /** The daemon's socket; default `/var/run/blocklistd.sock`. */
  socketPath?: string;
  /** Receives the library's diagnostics; `null` silences them. Default: stderr. */
  logger?: BlocklistLogger | null;
}

/** The client whose failure is reported, as a UDP server's `'message'` event gives it (`rinfo`). */
export interface PeerAddress {
  address: string;
  port: number;
}

/** What a server may pass: a connection, a UDP socket, or a descriptor number. */
export type ReportedSocket = NetSocket | DgramSocket | number;

const INT32_MAX = 2 ** 31 - 1;

const V4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] as const;

/** Sends after a failure: the first and five retries, each on a new socket (protocol.md §7.4). */
const SEND_ATTEMPTS = 6;

const stderrLogger: BlocklistLogger = (_level, message) => {
  process.stderr.write(`blocklist: ${message}\n`);
};

/** The kernel descriptor behind a Node socket, or undefined. */
export function descriptorOf(socket: ReportedSocket): number | undefined {
  if (typeof socket === 'number') return Number.isInteger(socket) && socket >= 0 && socket <= INT32_MAX ? socket : undefined;
  let fd: unknown;
  if (socket instanceof DgramSocket) {
    // dgram keeps its handle in a private state object; `_handle` is deprecated there.
    for (const key of Object.getOwnPropertySymbols(socket)) {
      const state = (socket as unknown as Record<symbol, { handle?: { fd?: unknown } } | undefined>)[key];
      if (state?.handle !== undefined) fd = state.handle.fd;
    }
  } else {
    // A TLS socket wraps the TCP socket that holds the descriptor.
    const s = socket as unknown as { _handle?: { fd?: unknown }; _parent?: { _handle?: { fd?: unknown } } };
    fd = s._handle?.fd ?? s._parent?._handle?.fd;
  }
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** The family of the reporting socket, which the explicit peer must carry (client.md §1.2). */
function socketFamily(socket: ReportedSocket): AddressFamily | undefined {
  if (socket instanceof DgramSocket) return (socket as unknown as { type: string }).type === 'udp6' ? 'inet6' : 'inet';
  if (typeof socket === 'number') return undefined;
  const family = socket.localFamily ?? socket.remoteFamily;
  return family === 'IPv6' ? 'inet6' : family === 'IPv4' ? 'inet' : undefined;
}

/** A handle on the daemon's socket, like `blocklist_open()`: never fails because the daemon is down. */
export class Blocklist {
  readonly socketPath: string;
  private readonly log: BlocklistLogger;
  private socket: ClientSocketHandle | undefined;
  private connected = false;
  /** The last connect on this socket failed: a long outage is logged once. */
  private connectFailed = false;
  private sendFailed = false;

  constructor(options: BlocklistOptions = {}) {
    this.socketPath = options.socketPath ?? DEFAULT_SOCKET_PATH;
    this.log = options.logger === null ? () => {} : (options.logger ?? stderrLogger);
    this.connect();
  }

  /**
   * Reports `action` for a connection (`blocklist_r`): pass the accepted TCP
   * socket, or a descriptor.  Returns true when the datagram was handed to
   * the kernel; the daemon never answers.
   */
  notify(action: BlocklistAction, socket: ReportedSocket, message = ''): boolean {
    return this.report(action, socket, undefined, message);
  }

  /**
   * Reports `action` for `peer` on an unconnected socket (`blocklist_sa_r`):
   * a UDP server passes its socket and the `rinfo` of the request.
   */
  notifyPeer(action: BlocklistAction, socket: ReportedSocket, peer: PeerAddress, message = ''): boolean {
    return this.report(action, socket, peer, message);
  }

  close(): void {
    this.reset();
  }

  private report(action: number, socket: ReportedSocket, peer: PeerAddress | undefined, message: string | null | undefined): boolean {
    const type = wireTypeOf(action);
    if (type === undefined) {
      this.log('err', `unknown action ${String(action)}`);
      return false;
    }
    const fd = descriptorOf(socket);
    if (fd === undefined) {
      this.log('err', 'the reported socket has no descriptor (closed?)');
      return false;
    }
    let sockaddr: Buffer | null = null;
    if (peer !== undefined) {
      sockaddr = this.peerSockaddr(peer, socketFamily(socket));
      if (sockaddr === null) return false;
    }
    return this.send(encodeNotification(type, sockaddr, encodeText(message ?? '')), fd);
  }

  private peerSockaddr(peer: PeerAddress, family: AddressFamily | undefined): Buffer | null {
    const parsed = parseIPAddress(peer.address);
    if (parsed === undefined) {
      this.log('err', `bl_getsock: invalid peer address '${peer.address}'`);
      return null;
    }
    if (!Number.isInteger(peer.port) || peer.port < 0 || peer.port > 65535) {
      this.log('err', `bl_getsock: invalid peer port ${String(peer.port)}`);
      return null;
    }
    // The daemon compares the peer's family with the socket's: an IPv6
    // socket reports an IPv4 client as ::ffff:a.b.c.d, an IPv4 socket needs IPv4.
    let { bytes } = parsed;
    if (family === 'inet6' && parsed.family === 'inet') bytes = Uint8Array.of(...V4_MAPPED_PREFIX, ...bytes);
    if (family === 'inet' && parsed.family === 'inet6') {
      if (!V4_MAPPED_PREFIX.every((x, i) => bytes[i] === x)) {
        this.log('err', `bl_getsock: IPv6 peer ${peer.address} on an IPv4 socket`);
        return null;
      }
      bytes = bytes.subarray(12);
    }
    if (bytes.length === 4) return encodeSockaddr('inet', bytes, peer.port);
    const scope = Number(parsed.zone ?? 0);
    return encodeSockaddr('inet6', bytes, peer.port, Number.isInteger(scope) && scope > 0 ? scope : 0);
  }

  /** protocol.md §7.2: a socket, connected, with credentials on; logs an outage once. */
  private connect(): boolean {
    if (this.socket === undefined) {
      const socket = new ClientSocket();
      const err = socket.open();
      if (err !== 0) {
        this.log('err', `bl_init: socket failed (${errnoMessage(err)})`);
        return false;
      }
      this.socket = socket;
    }
    if (this.connected) return true;
    const err = this.socket.connect(this.socketPath);
    if (err !== 0) {
      if (!this.connectFailed) this.log('debug', `bl_init: connect failed for '${this.socketPath}' (${errnoMessage(err)})`);
      this.connectFailed = true;
      return false;
    }
    this.connectFailed = false;
    const credErr = this.socket.passCredentials();
    if (credErr !== 0) {
      this.log('err', `bl_init: setsockopt SO_PASSCRED failed (${errnoMessage(credErr)})`);
      this.reset();
      return false;
    }
    this.connected = true;
    return true;
  }

  private reset(): void {
    this.socket?.close();
    this.socket = undefined;
    this.connected = false;
    this.connectFailed = false;
  }

  /**
   * protocol.md §7.4: a failed send (the daemon restarted, its queue is
   * full) closes the socket and retries on a new one; success if any
   * attempt succeeded (G5).
   */
  private send(datagram: Buffer, fd: number): boolean {
    let err = 0;
    for (let attempt = 0; attempt < SEND_ATTEMPTS; attempt++) {
      if (!this.connect()) return false;
      err = this.socket!.send(datagram, fd);
      if (err === 0) {
        this.sendFailed = false;
        return true;
      }
      if (err === constants.EBADF) break; // the reported descriptor is not open: no retry helps
      this.reset();
    }
    if (!this.sendFailed) this.log('err', `bl_send: sendmsg failed (${errnoMessage(err)})`);
    this.sendFailed = true;
    return false;
  }
}

/** `blocklist_open()`: a handle to keep for many notifications. */
export function blocklistOpen(options?: BlocklistOptions): Blocklist {
  return new Blocklist(options);
}

/** `blocklist()`: one notification on a handle of its own. */
export function blocklist(action: BlocklistAction, socket: ReportedSocket, message = '', options?: BlocklistOptions): boolean {
  const handle = new Blocklist(options);
  try {
    return handle.notify(action, socket, message);
  } finally {
    handle.close();
  }
}

/** `blocklist_sa()`: one notification with an explicit peer on a handle of its own. */
export function blocklistSa(
  action: BlocklistAction,
  socket: ReportedSocket,
  peer: PeerAddress,
  message = '',
  options?: BlocklistOptions,
): boolean {
  const handle = new Blocklist(options);
  try {
    return handle.notifyPeer(action, socket, peer, message);
  } finally {
    handle.close();
  }
}
