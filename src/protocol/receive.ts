// The daemon's receive path: a drained record (see native.ts) becomes a
// Notification or a logged drop, checked in protocol.md's order: control
// messages (§4.3), credentials and descriptor, length, version (§5), the
// remote address (§6), the local side of the passed socket (daemon.md
// §5.2), then the message type (G26: unknown ones never reach the state).
// The descriptor itself is already on its way to being closed.
import { familyOfNative } from '../address.js';
import { WireType, type LogFn, type Notification, type SocketAddress, type SocketType } from '../types.js';
import { errnoMessage } from '../errno.js';
import { constants, layout } from './native.js';
import {
  HEADER_SIZE,
  NATIVE_FAMILIES,
  SOCKADDR_OFFSET,
  TEXT_MAX,
  WIRE_VERSION,
  decodeHeader,
  decodeSockaddr,
  readHost32,
  sockaddrFamily,
  sockaddrSize,
} from './wire.js';
import { decodeText } from '../text.js';

/** Why a datagram was dropped, for the daemon's counters. */
export type DropReason = 'recv' | 'credentials' | 'short' | 'version' | 'peer' | 'local' | 'netns' | 'untrusted' | 'family' | 'type';

/**
 * Who may report what, beyond upstream's checks (issue 13): a local user
 * can make a network namespace of their own (`unshare -rn`), bind the
 * host's ports there and report any address for them.
 */
export interface SenderPolicy {
  /**
   * The daemon's network namespace (processNetns()); a passed socket of
   * another one is refused.  Undefined: the kernel cannot tell, not checked.
   */
  netns: Buffer | undefined;
  /**
   * Whether a sender (by its kernel uid and gid) may name the peer of a
   * stream socket itself: upstream's clients do so for datagram sockets
   * (UDP servers have no connected peer); for TCP only a trusted one.
   */
  trusted(uid: number, gid: number): boolean;
}

/** Root alone is trusted. */
export const rootOnly = (uid: number): boolean => uid === 0;

const int32 = (r: Buffer, field: number): number => readHost32(r, field) | 0;
const uint32 = (r: Buffer, field: number): number => readHost32(r, field);

/**
 * Decodes the record at `r[0 .. layout.size)`; logs why when it is dropped,
 * and tells `drop`.  Log texts are upstream's (protocol.md §4.3, §5, §6;
 * daemon.md §5.2).
 */
export function decodeRecord(
  r: Buffer,
  log: LogFn,
  policy: SenderPolicy,
  drop: (reason: DropReason) => void = () => {},
): Notification | undefined {
  const recvErrno = int32(r, layout.recvErrno);
  if (recvErrno !== 0) {
    log('err', `bl_recv: recvmsg failed (${errnoMessage(recvErrno)})`);
    drop('recv');
    return undefined;
  }

  let gotFd = false;
  const cmsgCount = int32(r, layout.cmsgCount);
  for (let k = 0; k < Math.min(cmsgCount, layout.cmsgSlots); k++) {
    const level = int32(r, layout.cmsgLevel + 4 * k);
    const type = int32(r, layout.cmsgType + 4 * k);
    const len = uint32(r, layout.cmsgLen + 4 * k);
    if (level !== constants.SOL_SOCKET) log('err', `unexpected cmsg_level ${level}`);
    else if (type === constants.SCM_RIGHTS) {
      if (len === constants.CMSG_LEN_INT) gotFd = true;
      else log('err', `unexpected cmsg_len ${len} != ${constants.CMSG_LEN_INT}`);
    } else if (type !== constants.SCM_CREDENTIALS) log('err', `unexpected cmsg_type ${type}`);
  }
  if (cmsgCount > layout.cmsgSlots) log('err', `unexpected cmsg count ${cmsgCount}`);
  const flags = int32(r, layout.flags);
  if (flags & constants.MSG_CTRUNC) log('debug', 'control data truncated');

  const hasCred = int32(r, layout.hasCred) !== 0;
  if (!hasCred || !gotFd) {
    log('err', `message missing ${hasCred ? '' : 'cred'} ${gotFd ? '' : 'fd'}`);
    drop('credentials');
    return undefined;
  }
  const length = uint32(r, layout.length);
  if (length < HEADER_SIZE) {
    log('err', `message too short ${length}`);
    drop('short');
    return undefined;
  }
  const payload = r.subarray(layout.payload, layout.payload + Math.min(length, layout.payloadMax));
  const header = decodeHeader(payload);
  if (header.version !== WIRE_VERSION) {
    log('err', `bad version ${header.version}`);
    drop('version');
    return undefined;
  }
  // Linux reports the real length of a datagram cut at the buffer; the BSDs only that it was cut.
  const lengthUnknown = (flags & constants.MSG_TRUNC) !== 0 && length <= layout.payloadMax;
  if (!lengthUnknown && header.length !== length) log('debug', `header length ${header.length} != ${length} received`);

  const peer = peerSockaddr(r, payload, header.salen, log);
  if (peer === undefined) {
    drop('peer');
    return undefined;
  }
  const local = localEndpoint(r, log);
  if (local === undefined) {
    drop('local');
    return undefined;
  }
  const refusal = refused(r, policy, peer.explicit && local.socketType === 'stream');
  if (refusal !== undefined) {
    log('err', `${refusal.message} from uid ${uint32(r, layout.uid)} (pid ${int32(r, layout.pid)})`);
    drop(refusal.reason);
    return undefined;
  }
  const remote = decodeSockaddr(peer.buffer, peer.offset, peer.length);
  if (remote?.family !== local.address.family) {
    // Upstream aborts here (G9): a local denial of service.
    log('err', `mismatched family ${sockaddrFamily(peer.buffer, peer.offset)} != ${sockaddrFamily(r, layout.local)}`);
    drop('family');
    return undefined;
  }
  if (header.type < WireType.ADD || header.type > WireType.BADUSER) {
    log('err', `unknown message ${header.type | 0}`);
    drop('type');
    return undefined;
  }

  let textEnd = length;
  if (length - HEADER_SIZE > TEXT_MAX) {
    const from = `${lengthUnknown ? 'more than ' : ''}${length - HEADER_SIZE}`;
    log('debug', `message text truncated from ${from} to ${TEXT_MAX} bytes`);
    textEnd = HEADER_SIZE + TEXT_MAX;
  }
  return {
    type: header.type as Notification['type'],
    text: decodeText(payload, HEADER_SIZE, textEnd),
    pid: int32(r, layout.pid),
    uid: uint32(r, layout.uid),
    gid: uint32(r, layout.gid),
    socketType: local.socketType,
    ipProtocol: int32(r, layout.protoErrno) === 0 ? int32(r, layout.proto) : 0,
    local: local.address,
    remote,
    explicitPeer: peer.explicit,
  };
}

interface SockaddrRef {
  buffer: Buffer;
  offset: number;
  length: number;
  explicit: boolean;
}

/** protocol.md §6: the kernel's peer of a connected socket, else the address in the message. */
function peerSockaddr(r: Buffer, payload: Buffer, salen: number, log: LogFn): SockaddrRef | undefined {
  const peerErrno = int32(r, layout.peerErrno);
  if (peerErrno === 0) return { buffer: r, offset: layout.peer, length: uint32(r, layout.peerLen), explicit: false };
  if (peerErrno !== constants.ENOTCONN) {
    log('err', `getpeername failed (${errnoMessage(peerErrno)})`);
    return undefined;
  }
  if (salen === 0) {
    log('err', 'unconnected socket with no peer in message');
    return undefined;
  }
  const familyNumber = sockaddrFamily(payload, SOCKADDR_OFFSET);
  const family = familyOfNative(NATIVE_FAMILIES, familyNumber);
  if (family === undefined) {
    log('err', `bad client passed socket family ${familyNumber}`);
    return undefined;
  }
  if (salen !== sockaddrSize(family)) {
    log('err', `bad client passed socket length ${sockaddrSize(family)} != ${salen}`);
    return undefined;
  }
  return { buffer: payload, offset: SOCKADDR_OFFSET, length: salen, explicit: true };
}

/** The sender policy's objection to a valid record, if any. */
function refused(r: Buffer, policy: SenderPolicy, explicitStreamPeer: boolean): { reason: DropReason; message: string } | undefined {
  if (policy.netns !== undefined) {
    const netnsErrno = int32(r, layout.netnsErrno);
    if (netnsErrno !== 0)
      return { reason: 'netns', message: `refused a socket whose network namespace cannot be read (${errnoMessage(netnsErrno)})` };
    if (policy.netns.compare(r, layout.netns, layout.netns + 8) !== 0)
      return { reason: 'netns', message: 'refused a socket of another network namespace' };
  }
  if (explicitStreamPeer && !policy.trusted(uint32(r, layout.uid), uint32(r, layout.gid)))
    return { reason: 'untrusted', message: 'refused an explicit peer for a stream socket' };
  return undefined;
}

/** daemon.md §5.2: the local address, port and socket type of the passed socket. */
function localEndpoint(r: Buffer, log: LogFn): { address: SocketAddress; socketType: SocketType } | undefined {
  const localErrno = int32(r, layout.localErrno);
  if (localErrno !== 0) {
    log('err', `getsockname failed (${errnoMessage(localErrno)})`);
    return undefined;
  }
  const localLen = uint32(r, layout.localLen);
  const address = decodeSockaddr(r, layout.local, localLen);
  if (address === undefined) {
    log('err', `unsupported family ${localLen >= 2 ? sockaddrFamily(r, layout.local) : 0}`);
    return undefined;
  }
  const typeErrno = int32(r, layout.typeErrno);
  if (typeErrno !== 0) {
    log('err', `getsockopt failed (${errnoMessage(typeErrno)})`);
    return undefined;
  }
  const type = int32(r, layout.type);
  if (type === constants.SOCK_STREAM) return { address, socketType: 'stream' };
  if (type === constants.SOCK_DGRAM) return { address, socketType: 'dgram' };
  log('err', `unsupported protocol ${type}`);
  return undefined;
}
