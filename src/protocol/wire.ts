// The notification datagram (protocol.md §2-§3): a 144-byte header in host
// byte order, an embedded sockaddr in the kernel's layout (ports and
// addresses in network order), then at most 128 bytes of text.
import { endianness } from 'node:os';
import { nativeFamily, type FamilyNumbers } from '../address.js';
import { cutUtf8 } from '../text.js';
import { WireType, type AddressFamily } from '../types.js';
import { constants } from './native.js';

export const WIRE_VERSION = 1;
export const HEADER_SIZE = 144;
export const TEXT_MAX = 128;
/** Offset of the `sockaddr_storage` (the explicit peer) in the header. */
export const SOCKADDR_OFFSET = 16;
const SOCKADDR_IN_SIZE = 16;
const SOCKADDR_IN6_SIZE = 28;

/** libblocklist's public action values (client.md §1.1); never sent as such. */
export const AUTH_OK = 0;
export const AUTH_FAIL = 1;
export const ABUSIVE_BEHAVIOR = 2;
export const BAD_USER = 3;
export type BlocklistAction = typeof AUTH_OK | typeof AUTH_FAIL | typeof ABUSIVE_BEHAVIOR | typeof BAD_USER;

const ACTION_WIRE_TYPES = [WireType.DELETE, WireType.ADD, WireType.ABUSE, WireType.BADUSER] as const;

/** The wire type a public action travels as (protocol.md §3.2); undefined for unknown actions. */
export function wireTypeOf(action: number): WireType | undefined {
  return Number.isInteger(action) ? ACTION_WIRE_TYPES[action] : undefined;
}

const HOST_LE = endianness() === 'LE';

export function readHost32(b: Buffer, offset: number): number {
  return HOST_LE ? b.readUInt32LE(offset) : b.readUInt32BE(offset);
}

export function writeHost32(b: Buffer, offset: number, value: number): void {
  if (HOST_LE) b.writeUInt32LE(value >>> 0, offset);
  else b.writeUInt32BE(value >>> 0, offset);
}

/** One datagram: the header, `sockaddr` (if any) at offset 16, then `text`. */
export function encodeNotification(type: number, sockaddr: Buffer | null, text: Buffer): Buffer {
  const b = Buffer.alloc(HEADER_SIZE + text.length);
  writeHost32(b, 0, b.length);
  writeHost32(b, 4, WIRE_VERSION);
  writeHost32(b, 8, type);
  writeHost32(b, 12, sockaddr === null ? 0 : sockaddr.length);
  sockaddr?.copy(b, SOCKADDR_OFFSET);
  text.copy(b, HEADER_SIZE);
  return b;
}

/** This platform's AF_INET and AF_INET6. */
export const NATIVE_FAMILIES: FamilyNumbers = { inet: constants.AF_INET, inet6: constants.AF_INET6 };

export function sockaddrSize(family: AddressFamily): number {
  return family === 'inet' ? SOCKADDR_IN_SIZE : SOCKADDR_IN6_SIZE;
}

/** A `sockaddr_in` (4 address bytes) or `sockaddr_in6` (16), as the kernel lays them out. */
export function encodeSockaddr(family: AddressFamily, address: Uint8Array, port: number, scopeId = 0): Buffer {
  const b = Buffer.alloc(sockaddrSize(family));
  const familyNumber = nativeFamily(NATIVE_FAMILIES, family);
  if (constants.HAVE_SA_LEN) {
    b[0] = b.length;
    b[1] = familyNumber;
  } else if (HOST_LE) {
    b.writeUInt16LE(familyNumber, 0);
  } else {
    b.writeUInt16BE(familyNumber, 0);
  }
  b.writeUInt16BE(port, 2);
  if (family === 'inet') {
    b.set(address.subarray(0, 4), 4);
  } else {
    b.set(address.subarray(0, 16), 8);
    writeHost32(b, 24, scopeId);
  }
  return b;
}

/** The message as a client library sends it: UTF-8, cut to 128 bytes on a character boundary. */
export function encodeText(text: string): Buffer {
  return cutUtf8(Buffer.from(text, 'utf8'), TEXT_MAX);
}
