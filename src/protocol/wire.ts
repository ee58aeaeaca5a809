// The notification datagram (protocol.md §2-§3): a 144-byte header in host
// byte order, an embedded sockaddr in the kernel's layout (ports and
// addresses in network order), then at most 128 bytes of text.
import { endianness } from 'node:os';
import { familyOfNative, nativeFamily, type FamilyNumbers } from '../address.js';
import { WireType, type AddressFamily, type SocketAddress } from '../types.js';
import { constants } from './native.js';

export const WIRE_VERSION = 1;
export const HEADER_SIZE = 144;
export const TEXT_MAX = 128;
/** Offset of the `sockaddr_storage` (the explicit peer) in the header. */
export const SOCKADDR_OFFSET = 16;
export const SOCKADDR_STORAGE_SIZE = 128;
export const SOCKADDR_IN_SIZE = 16;
export const SOCKADDR_IN6_SIZE = 28;

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

/** The family number of a sockaddr, in the platform's layout. */
export function sockaddrFamily(b: Buffer, offset: number): number {
  if (constants.HAVE_SA_LEN) return b[offset + 1];
  return HOST_LE ? b.readUInt16LE(offset) : b.readUInt16BE(offset);
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

/** The message as a client library sends it: UTF-8, cut to 128 bytes on a character boundary. */
export function encodeText(text: string): Buffer {
  const b = Buffer.from(text, 'utf8');
  if (b.length <= TEXT_MAX) return b;
  let end = TEXT_MAX;
  while (end > 0 && (b[end] & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}

/**
 * The received text as a string that is safe to log: printable ASCII and
 * valid UTF-8 pass, a backslash and a double quote get a backslash (the
 * text is logged as msg="…": no forged fields after it), and control characters,
 * invalid bytes and the Unicode line, paragraph and bidi controls are
 * written as `\n`, `\r`, `\t` or `\xNN`, so a client cannot forge log lines.
 */
export function decodeText(b: Buffer, start: number, end: number): string {
  for (let i = start; i < end; i++) {
    const c = b[i];
    if (c < 0x20 || c >= 0x7f || c === 0x5c || c === 0x22) return escapeText(b, start, end);
  }
  return b.toString('latin1', start, end);
}

/** Any string (a helper's output) escaped as decodeText escapes a message. */
export function printable(text: string): string {
  const b = Buffer.from(text);
  return decodeText(b, 0, b.length);
}

function escapeText(b: Buffer, start: number, end: number): string {
  let out = '';
  for (let i = start; i < end; ) {
    const c = b[i];
    if (c >= 0x20 && c < 0x7f) {
      out += c === 0x5c || c === 0x22 ? `\\${String.fromCharCode(c)}` : String.fromCharCode(c);
      i++;
      continue;
    }
    const n = c >= 0x80 ? utf8SequenceLength(b, i, end) : 0;
    if (n > 0) {
      const ch = b.toString('utf8', i, i + n);
      if (!isFormatControl(ch.codePointAt(0) ?? 0)) {
        out += ch;
        i += n;
        continue;
      }
    }
    for (const stop = i + Math.max(n, 1); i < stop; i++) out += escapeByte(b[i]);
  }
  return out;
}

function escapeByte(c: number): string {
  if (c === 0x0a) return '\\n';
  if (c === 0x0d) return '\\r';
  if (c === 0x09) return '\\t';
  return `\\x${c.toString(16).padStart(2, '0')}`;
}

function isFormatControl(cp: number): boolean {
  return (
    (cp >= 0x80 && cp <= 0x9f) ||
    cp === 0x200e ||
    cp === 0x200f ||
    (cp >= 0x2028 && cp <= 0x202e) ||
    (cp >= 0x2066 && cp <= 0x2069)
  );
}

/** Length of the well-formed UTF-8 sequence at `i` (RFC 3629), 0 when there is none. */
function utf8SequenceLength(b: Buffer, i: number, end: number): number {
  const c = b[i];
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => i + k < end && b[i + k] >= lo && b[i + k] <= hi;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (c === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}
