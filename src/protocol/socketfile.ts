// What is at the path a daemon is about to bind, for the notification and
// the control socket alike (protocol.md §8): a socket file a dead daemon
// left behind is removed so that bind() can take the path; a socket a
// process is bound to, or a file of another kind, is never touched.
import { lstatSync, unlinkSync } from 'node:fs';
import { constants as os } from 'node:os';
import { ClientSocket } from './native.js';

/** What was at a socket path before binding there. */
export type SocketPathState =
  /** Nothing, or nothing that can be looked at: bind() says why. */
  | 'free'
  /** A socket file nobody was bound to any more: removed (bind() says if it could not be). */
  | 'stale'
  /** A unix datagram socket a process is bound to: another daemon's. */
  | 'live'
  /** A socket a process holds that takes no datagram from us (a stream socket, one connected elsewhere, one we may not write). */
  | 'taken'
  /** A file of another kind. */
  | 'not-socket';

/**
 * Looks at `path` and removes a stale socket file there.  Only a connect()
 * that the kernel refuses because no socket is bound to the file any more
 * (ECONNREFUSED) makes a file stale: any other answer leaves it alone.
 */
export function removeStaleSocket(path: string): SocketPathState {
  try {
    if (!lstatSync(path).isSocket()) return 'not-socket';
  } catch {
    return 'free';
  }
  const err = connectErrno(path);
  if (err === 0) return 'live';
  if (err !== os.errno.ECONNREFUSED) return 'taken';
  try {
    unlinkSync(path);
  } catch {
    // gone meanwhile, or the directory is not ours to change: bind() tells
  }
  return 'stale';
}

/**
 * connect() of a unix datagram socket to the file at `path`: 0 when a
 * datagram socket is bound there, ECONNREFUSED when no socket is, another
 * errno (EPROTOTYPE: a socket of another type) otherwise.  It never waits
 * and the socket at the other end sees nothing.
 */
function connectErrno(path: string): number {
  const probe = new ClientSocket();
  try {
    // the client reads a leading '@' as a Linux abstract name: './' keeps it the file
    return probe.open() || probe.connect(path.startsWith('@') ? `./${path}` : path);
  } finally {
    probe.close();
  }
}
