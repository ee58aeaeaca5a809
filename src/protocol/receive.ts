// The daemon's receive path: a drained record (see native.ts) becomes a
// Notification or a logged drop, checked in protocol.md's order: control
// messages (§4.3), credentials and descriptor, length, version (§5), the
// remote address (§6), the local side of the passed socket (daemon.md
// §5.2), then the message type (G26: unknown ones never reach the state).
// The descriptor itself is already on its way to being closed.
//
// This runs for every datagram, so it reads the fields where they lie, as
// 32-bit words of the one buffer of records (the addon decoded the socket
// addresses), and builds nothing but the Notification: a Buffer view, a
// header object or a sockaddr parse per record cost about twice the time
// of all the rest (test/bench/receive.ts).
import { familyOfNative } from '../address.js';
import { WireType, type LogFn, type Notification, type SocketAddress, type SocketType } from '../types.js';
import { errnoMessage } from '../errno.js';
import { constants, layout } from './native.js';
import { HEADER_SIZE, NATIVE_FAMILIES, TEXT_MAX, WIRE_VERSION, readHost32, sockaddrSize } from './wire.js';
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

/**
 * Records drained from the addon (native.ts `layout`), with 32-bit views
 * on them: the fields are host-order words at word-aligned offsets.
 */
export class RecordBuffer {
  readonly bytes: Buffer;
  readonly i32: Int32Array;
  readonly u32: Uint32Array;

  constructor(readonly capacity: number) {
    // Not from the pool: the addon and the word views need the records aligned.
    this.bytes = Buffer.alloc(capacity * layout.size);
    this.i32 = new Int32Array(this.bytes.buffer, this.bytes.byteOffset, this.bytes.length >> 2);
    this.u32 = new Uint32Array(this.bytes.buffer, this.bytes.byteOffset, this.bytes.length >> 2);
  }
}

/** The word index of each field in a record (its byte offset / 4). */
const W = {
  size: layout.size >> 2,
  recvErrno: layout.recvErrno >> 2,
  length: layout.length >> 2,
  flags: layout.flags >> 2,
  cmsgCount: layout.cmsgCount >> 2,
  cmsgLevel: layout.cmsgLevel >> 2,
  cmsgType: layout.cmsgType >> 2,
  cmsgLen: layout.cmsgLen >> 2,
  hasCred: layout.hasCred >> 2,
  pid: layout.pid >> 2,
  uid: layout.uid >> 2,
  gid: layout.gid >> 2,
  typeErrno: layout.typeErrno >> 2,
  type: layout.type >> 2,
  localErrno: layout.localErrno >> 2,
  localLen: layout.localLen >> 2,
  peerErrno: layout.peerErrno >> 2,
  peerLen: layout.peerLen >> 2,
  netnsErrno: layout.netnsErrno >> 2,
  netns: layout.netns >> 2,
  local: layout.local >> 2,
  peer: layout.peer >> 2,
  named: layout.named >> 2,
  payload: layout.payload >> 2,
};
/** The header's words (protocol.md §3: length, version, type, salen), from the payload's start. */
const HEADER_LENGTH = 0;
const HEADER_VERSION = 1;
const HEADER_TYPE = 2;
const HEADER_SALEN = 3;
/** An endpoint's words from its start: the family number, the port, then the address. */
const ENDPOINT_PORT = 1;
const ENDPOINT_WORDS = 2;

/**
 * The complete IPv4 or IPv6 address of the endpoint at word `at` of `records`
 * that the sockaddr of `len` bytes held; undefined for another family or too short a one.
 */
function endpointAddress(records: RecordBuffer, at: number, len: number): SocketAddress | undefined {
  const family = familyOfNative(NATIVE_FAMILIES, records.i32[at]);
  if (family === undefined || len < sockaddrSize(family)) return undefined;
  const u32 = records.u32;
  const port = u32[at + ENDPOINT_PORT];
  const w = at + ENDPOINT_WORDS;
  if (family === 'inet') return { family, words: [u32[w]], port };
  return { family, words: [u32[w], u32[w + 1], u32[w + 2], u32[w + 3]], port };
}

/**
 * Decodes record `index` of `records`; logs why when it is dropped, and
 * tells `drop`.  Log texts are upstream's (protocol.md §4.3, §5, §6;
 * daemon.md §5.2).
 */
export function decodeRecord(
  records: RecordBuffer,
  index: number,
  log: LogFn,
  policy: SenderPolicy,
  drop: (reason: DropReason) => void = () => {},
): Notification | undefined {
  const i32 = records.i32;
  const u32 = records.u32;
  const base = index * W.size;
  const recvErrno = i32[base + W.recvErrno];
  if (recvErrno !== 0) {
    log('err', `bl_recv: recvmsg failed (${errnoMessage(recvErrno)})`);
    drop('recv');
    return undefined;
  }

  let gotFd = false;
  const cmsgCount = i32[base + W.cmsgCount];
  for (let k = 0; k < Math.min(cmsgCount, layout.cmsgSlots); k++) {
    const level = i32[base + W.cmsgLevel + k];
    const type = i32[base + W.cmsgType + k];
    const len = u32[base + W.cmsgLen + k];
    if (level !== constants.SOL_SOCKET) log('err', `unexpected cmsg_level ${level}`);
    else if (type === constants.SCM_RIGHTS) {
      if (len === constants.CMSG_LEN_INT) gotFd = true;
      else log('err', `unexpected cmsg_len ${len} != ${constants.CMSG_LEN_INT}`);
    } else if (type !== constants.SCM_CREDENTIALS) log('err', `unexpected cmsg_type ${type}`);
  }
  if (cmsgCount > layout.cmsgSlots) log('err', `unexpected cmsg count ${cmsgCount}`);
  const flags = i32[base + W.flags];
  if (flags & constants.MSG_CTRUNC) log('debug', 'control data truncated');

  const hasCred = i32[base + W.hasCred] !== 0;
  if (!hasCred || !gotFd) {
    log('err', `message missing ${hasCred ? '' : 'cred'} ${gotFd ? '' : 'fd'}`);
    drop('credentials');
    return undefined;
  }
  const length = u32[base + W.length];
  if (length < HEADER_SIZE) {
    log('err', `message too short ${length}`);
    drop('short');
    return undefined;
  }
  const header = base + W.payload;
  const version = u32[header + HEADER_VERSION];
  if (version !== WIRE_VERSION) {
    log('err', `bad version ${version}`);
    drop('version');
    return undefined;
  }
  // Linux reports the real length of a datagram cut at the buffer; the BSDs only that it was cut.
  const lengthUnknown = (flags & constants.MSG_TRUNC) !== 0 && length <= layout.payloadMax;
  const headerLength = u32[header + HEADER_LENGTH];
  if (!lengthUnknown && headerLength !== length) log('debug', `header length ${headerLength} != ${length} received`);

  const peer = peerEndpoint(records, base, u32[header + HEADER_SALEN], log);
  if (peer === undefined) {
    drop('peer');
    return undefined;
  }
  const local = localEndpoint(records, base, log);
  if (local === undefined) {
    drop('local');
    return undefined;
  }
  const refusal = refused(records, base, policy, peer.explicit && local.socketType === 'stream');
  if (refusal !== undefined) {
    log('err', `${refusal.message} from uid ${u32[base + W.uid]} (pid ${i32[base + W.pid]})`);
    drop(refusal.reason);
    return undefined;
  }
  const remote = endpointAddress(records, peer.at, peer.length);
  if (remote?.family !== local.address.family) {
    // Upstream aborts here (G9): a local denial of service.
    log('err', `mismatched family ${i32[peer.at]} != ${i32[base + W.local]}`);
    drop('family');
    return undefined;
  }
  const type = u32[header + HEADER_TYPE];
  if (type < WireType.ADD || type > WireType.BADUSER) {
    log('err', `unknown message ${type | 0}`);
    drop('type');
    return undefined;
  }

  let textEnd = length;
  if (length - HEADER_SIZE > TEXT_MAX) {
    const from = `${lengthUnknown ? 'more than ' : ''}${length - HEADER_SIZE}`;
    log('debug', `message text truncated from ${from} to ${TEXT_MAX} bytes`);
    textEnd = HEADER_SIZE + TEXT_MAX;
  }
  const payload = base * 4 + layout.payload;
  return {
    type: type as Notification['type'],
    text: decodeText(records.bytes, payload + HEADER_SIZE, payload + textEnd),
    pid: i32[base + W.pid],
    uid: u32[base + W.uid],
    gid: u32[base + W.gid],
    socketType: local.socketType,
    local: local.address,
    remote,
    explicitPeer: peer.explicit,
  };
}

/** The words of a decoded endpoint in a record, and the length of the sockaddr it came from. */
interface EndpointRef {
  at: number;
  length: number;
  explicit: boolean;
}

/** protocol.md §6: the kernel's peer of a connected socket, else the address in the message. */
function peerEndpoint(records: RecordBuffer, base: number, salen: number, log: LogFn): EndpointRef | undefined {
  const peerErrno = records.i32[base + W.peerErrno];
  if (peerErrno === 0) return { at: base + W.peer, length: records.u32[base + W.peerLen], explicit: false };
  if (peerErrno !== constants.ENOTCONN) {
    log('err', `getpeername failed (${errnoMessage(peerErrno)})`);
    return undefined;
  }
  if (salen === 0) {
    log('err', 'unconnected socket with no peer in message');
    return undefined;
  }
  const familyNumber = records.i32[base + W.named];
  const family = familyOfNative(NATIVE_FAMILIES, familyNumber);
  if (family === undefined) {
    log('err', `bad client passed socket family ${familyNumber}`);
    return undefined;
  }
  if (salen !== sockaddrSize(family)) {
    log('err', `bad client passed socket length ${sockaddrSize(family)} != ${salen}`);
    return undefined;
  }
  return { at: base + W.named, length: salen, explicit: true };
}

/** The sender policy's objection to a valid record, if any. */
function refused(
  records: RecordBuffer,
  base: number,
  policy: SenderPolicy,
  explicitStreamPeer: boolean,
): { reason: DropReason; message: string } | undefined {
  if (policy.netns !== undefined) {
    const netnsErrno = records.i32[base + W.netnsErrno];
    if (netnsErrno !== 0)
      return { reason: 'netns', message: `refused a socket whose network namespace cannot be read (${errnoMessage(netnsErrno)})` };
    // the 8 bytes as two host-order words on both sides: equal words, equal bytes
    const u32 = records.u32;
    if (u32[base + W.netns] !== readHost32(policy.netns, 0) || u32[base + W.netns + 1] !== readHost32(policy.netns, 4))
      return { reason: 'netns', message: 'refused a socket of another network namespace' };
  }
  if (explicitStreamPeer && !policy.trusted(records.u32[base + W.uid], records.u32[base + W.gid]))
    return { reason: 'untrusted', message: 'refused an explicit peer for a stream socket' };
  return undefined;
}

/** daemon.md §5.2: the local address, port and socket type of the passed socket. */
function localEndpoint(records: RecordBuffer, base: number, log: LogFn): { address: SocketAddress; socketType: SocketType } | undefined {
  const i32 = records.i32;
  const localErrno = i32[base + W.localErrno];
  if (localErrno !== 0) {
    log('err', `getsockname failed (${errnoMessage(localErrno)})`);
    return undefined;
  }
  const address = endpointAddress(records, base + W.local, records.u32[base + W.localLen]);
  if (address === undefined) {
    log('err', `unsupported family ${i32[base + W.local]}`);
    return undefined;
  }
  const typeErrno = i32[base + W.typeErrno];
  if (typeErrno !== 0) {
    log('err', `getsockopt failed (${errnoMessage(typeErrno)})`);
    return undefined;
  }
  const type = i32[base + W.type];
  if (type === constants.SOCK_STREAM) return { address, socketType: 'stream' };
  if (type === constants.SOCK_DGRAM) return { address, socketType: 'dgram' };
  log('err', `unsupported protocol ${type}`);
  return undefined;
}
