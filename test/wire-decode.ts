// A reference decoder of the notification datagram (protocol.md §2-§3), for
// the tests: the daemon decodes in the addon (src/protocol/native/blsock.cc),
// and these read back what the codec of src/protocol/wire.ts encodes.
import os from 'node:os';
import { familyOfNative } from '../src/address.js';
import { constants } from '../src/protocol/native.js';
import { NATIVE_FAMILIES, readHost32, sockaddrSize } from '../src/protocol/wire.js';
import type { SocketAddress } from '../src/types.js';

export interface Header {
  /** What the sender says header + text measure; never trusted. */
  length: number;
  version: number;
  type: number;
  /** Length of the explicit peer address: 0, 16 or 28 from a conforming sender. */
  salen: number;
}

export function decodeHeader(b: Buffer, offset = 0): Header {
  return {
    length: readHost32(b, offset),
    version: readHost32(b, offset + 4),
    type: readHost32(b, offset + 8),
    salen: readHost32(b, offset + 12),
  };
}

/** The family number of a sockaddr, in the platform's layout. */
export function sockaddrFamily(b: Buffer, offset: number): number {
  if (constants.HAVE_SA_LEN) return b[offset + 1];
  return os.endianness() === 'LE' ? b.readUInt16LE(offset) : b.readUInt16BE(offset);
}

/**
 * Decodes `len` bytes of sockaddr at `offset`; undefined unless a complete
 * IPv4/IPv6 one.  The address stays words in network order (sin_addr at
 * +4, sin6_addr at +8): nothing on the way to the state key needs its text.
 */
export function decodeSockaddr(b: Buffer, offset: number, len: number): SocketAddress | undefined {
  if (len < 2) return undefined;
  const family = familyOfNative(NATIVE_FAMILIES, sockaddrFamily(b, offset));
  if (family === undefined || len < sockaddrSize(family)) return undefined;
  const port = b.readUInt16BE(offset + 2);
  if (family === 'inet') return { family, words: [b.readUInt32BE(offset + 4)], port };
  const at = offset + 8;
  return { family, words: [b.readUInt32BE(at), b.readUInt32BE(at + 4), b.readUInt32BE(at + 8), b.readUInt32BE(at + 12)], port };
}
