// Typed access to the blsock addon (src/protocol/native/blsock.cc), built by
// `node-gyp rebuild` at install time into build/Release/.
import { createRequire } from 'node:module';

/** The daemon's bound socket; received descriptors never leave the addon. */
export interface ServerSocketHandle {
  /**
   * Starts the receiving thread, which writes records (`layout`) into
   * `ring`, a ring of as many as it holds, kept by the addon until close();
   * `onReadable` runs on the event loop when records wait.
   */
  start(onReadable: () => void, ring: Buffer): void;
  /**
   * Gives back the records lent by the last call and lends up to `max` of
   * those waiting: they start in the ring where the last lent ones ended
   * (at 0 the first time), wrapping at its end, and stay untouched until the
   * next call.  Returns how many.
   */
  take(max: number): number;
  /** Datagrams received and not yet lent. */
  waiting(): number;
  /** Stops receiving; what was received can still be taken. */
  stop(): void;
  close(): void;
}

/** A client's socket; every call returns 0 or an errno. */
export interface ClientSocketHandle {
  open(): number;
  connect(path: string): number;
  passCredentials(): number;
  /** One non-blocking datagram carrying descriptor `fd` (none when `fd` < 0). */
  send(data: Buffer, fd: number): number;
  close(): void;
}

/**
 * Byte offsets of the fields of one drained record (all host-order 32-bit
 * words but the payload and netns).  `local`, `peer` and `named` (the
 * sockaddr at offset 16 of the payload) are decoded socket addresses, words
 * at +0 the family number (0: too short), +4 the port, +8 to +20 the
 * address, each word the value of 4 bytes in network order.
 */
export interface RecordLayout {
  recvErrno: number;
  length: number;
  flags: number;
  cmsgCount: number;
  cmsgLevel: number;
  cmsgType: number;
  cmsgLen: number;
  hasCred: number;
  pid: number;
  uid: number;
  gid: number;
  fdCount: number;
  typeErrno: number;
  type: number;
  localErrno: number;
  localLen: number;
  peerErrno: number;
  peerLen: number;
  /** The passed socket's network namespace: an errno, then its 8-byte identity (processNetns()'s kind). */
  netnsErrno: number;
  netns: number;
  local: number;
  peer: number;
  named: number;
  payload: number;
  size: number;
  cmsgSlots: number;
  payloadMax: number;
}

/** The platform's values, so nothing in TypeScript assumes Linux numbers. */
export interface NativeConstants {
  AF_UNIX: number;
  AF_INET: number;
  AF_INET6: number;
  SOCK_STREAM: number;
  SOCK_DGRAM: number;
  SOL_SOCKET: number;
  SCM_RIGHTS: number;
  SCM_CREDENTIALS: number;
  CMSG_LEN_INT: number;
  MSG_TRUNC: number;
  MSG_CTRUNC: number;
  ENOTCONN: number;
  EAGAIN: number;
  EBADF: number;
  ELOOP: number;
  ENOTSOCK: number;
  ENOPROTOOPT: number;
  /** BSD socket addresses start with a length byte. */
  HAVE_SA_LEN: boolean;
}

/** What a descriptor is (socketInfo), or the errno that says it is no socket. */
export type SocketInfo = { type: number; family: number; listening: boolean; path: string } | { errno: number };

/**
 * The ids of the process at the other end of a unix stream socket (pid -1
 * where unknown; its supplementary groups where the system tells them:
 * Linux's SO_PEERGROUPS, FreeBSD's LOCAL_PEERCRED), or an errno.
 */
export type PeerCredentials = { uid: number; gid: number; pid: number; groups?: number[] } | { errno: number };

interface Binding {
  ServerSocket: {
    /** Asks for the senders' credentials and binds `path`; throws an errno error (`syscall`: socket, setsockopt, bind). */
    new (path: string): ServerSocketHandle;
    /** Adopts a bound socket (checked with socketInfo first) and asks for credentials; throws, leaving it open, when it cannot. */
    new (fd: number): ServerSocketHandle;
  };
  ClientSocket: new () => ClientSocketHandle;
  strerror(errno: number): string;
  setCloseOnExec(first: number): void;
  socketInfo(fd: number): SocketInfo;
  peerCredentials(fd: number): PeerCredentials;
  setSocketMode(path: string, mode: number, gid: number): number;
  processNetns(): Buffer | { errno: number };
  lingeringClosed(): number;
  tryLock(fd: number): number;
  sendLines(fd: number, lines: readonly string[]): number;
  layout: RecordLayout;
  constants: NativeConstants;
}

const require = createRequire(import.meta.url);
const binding = require('../../../build/Release/blsock.node') as Binding;

export const ServerSocket = binding.ServerSocket;
export const ClientSocket = binding.ClientSocket;
export const layout = binding.layout;
export const constants = binding.constants;

/** The C library's text for an errno, as upstream prints it with `%m`. */
export const strerror = binding.strerror;

/** Marks every descriptor from `first` on close-on-exec: nothing the process inherited reaches a child (G25). */
export const setCloseOnExec = binding.setCloseOnExec;

/** The type, family, listening state and unix path of a descriptor (systemd's LISTEN_FDS). */
export const socketInfo = binding.socketInfo;

/** SO_PEERCRED / getpeereid of a connected unix stream socket. */
export const peerCredentials = binding.peerCredentials;

/**
 * Sets the group (`gid` -1: unchanged) and mode of the socket file at
 * `path` without following a symlink there; returns 0 or an errno (ELOOP:
 * a symlink, ENOTSOCK: another kind of file).
 */
export const setSocketMode = binding.setSocketMode;

/**
 * The identity of this process's network namespace, 8 bytes to compare with
 * a record's `netns` (SO_NETNS_COOKIE, or the namespace's inode on kernels
 * before 5.14), or the errno that says it cannot be read (ENOPROTOOPT: not
 * Linux, or a kernel with neither).
 */
export const processNetns = binding.processNetns;

/**
 * Each of `lines` as one datagram on the connected socket `fd`, in order, without blocking and with one system call
 * for many (sendmmsg); stops at the first that fails: 0, or the errno of the one that failed (EAGAIN: the receiver's
 * queue is full).
 */
export const sendLines = binding.sendLines;

/** Received descriptors that were lingering sockets (closed without waiting for their linger time). */
export const lingeringClosed = binding.lingeringClosed;

/**
 * flock(2) LOCK_EX | LOCK_NB on an open file: 0, or the errno (EWOULDBLOCK:
 * another open file holds the lock).  It lasts until the file is closed, by
 * the process's end at the latest.
 */
export const tryLock = binding.tryLock;
