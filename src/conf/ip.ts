// IP addresses as 32-bit words: parsing, masking and comparing them is what
// matching does on every notification.
import { formatIPv4, formatIPv6, parseIPAddress } from '../address.js';
import type { AddressFamily } from '../types.js';
import type { IPAddress } from './types.js';

export function widthOf(family: AddressFamily): number {
  return family === 'inet' ? 32 : 128;
}

export function fromBytes(family: AddressFamily, bytes: Uint8Array): IPAddress {
  const words: number[] = [];
  for (let i = 0; i < bytes.length; i += 4) {
    words.push(((bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) | bytes[i + 3]) >>> 0);
  }
  return { family, words };
}

/** Numeric address text as inet_pton(3) takes it (no IPv6 zone); undefined otherwise. */
export function parseIP(text: string, family?: AddressFamily): IPAddress | undefined {
  if (text.includes('%')) return undefined;
  const parsed = parseIPAddress(text);
  if (parsed === undefined || (family !== undefined && parsed.family !== family)) return undefined;
  return fromBytes(parsed.family, parsed.bytes);
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** parseIP for the canonical text the receive path produces; IPv4 without the general parser. */
export function parseCanonicalIP(family: AddressFamily, text: string): IPAddress | undefined {
  if (family === 'inet6') return parseIP(text, 'inet6');
  const m = IPV4.exec(text);
  if (m === null) return undefined;
  const [a, b, c, d] = [+m[1], +m[2], +m[3], +m[4]];
  if (a > 255 || b > 255 || c > 255 || d > 255) return undefined;
  return { family, words: [((a << 24) | (b << 16) | (c << 8) | d) >>> 0] };
}

export function toText(address: IPAddress): string {
  const bytes = new Uint8Array(address.words.length * 4);
  address.words.forEach((w, i) => {
    bytes[4 * i] = w >>> 24;
    bytes[4 * i + 1] = (w >>> 16) & 0xff;
    bytes[4 * i + 2] = (w >>> 8) & 0xff;
    bytes[4 * i + 3] = w & 0xff;
  });
  return address.family === 'inet' ? formatIPv4(bytes, 0) : formatIPv6(bytes, 0);
}

/** The mask of `bits` leading ones for word `i` (bits beyond the width keep everything). */
function wordMask(bits: number, i: number): number {
  const left = bits - 32 * i;
  if (left >= 32) return 0xffffffff;
  if (left <= 0) return 0;
  return (0xffffffff << (32 - left)) >>> 0;
}

/** The address with all but the first `bits` bits cleared. */
export function maskAddress(address: IPAddress, bits: number): IPAddress {
  return { family: address.family, words: address.words.map((w, i) => (w & wordMask(bits, i)) >>> 0) };
}

/** Whether the first `bits` bits of two addresses of one family agree. */
export function prefixEqual(a: readonly number[], b: readonly number[], bits: number): boolean {
  for (let i = 0; i < a.length; i++) {
    const m = wordMask(bits, i);
    if (m === 0) return true;
    if (((a[i] ^ b[i]) & m) !== 0) return false;
  }
  return true;
}

/** A network of this host, and what it is (for messages). */
export interface OwnNetwork {
  address: IPAddress;
  mask: number;
  what: string;
}

/** Loopback: 127.0.0.0/8, ::1 and the IPv4-mapped 127.0.0.0/8 (::ffff:127.0.0.0/104). */
export const LOOPBACK_NETWORKS: readonly { address: IPAddress; mask: number }[] = [
  { address: { family: 'inet', words: [0x7f000000] }, mask: 8 },
  { address: { family: 'inet6', words: [0, 0, 0, 1] }, mask: 128 },
  { address: { family: 'inet6', words: [0, 0, 0xffff, 0x7f000000] }, mask: 104 },
];

/**
 * The first of `own` that the network `address`/`mask` overlaps: one
 * holding the other (a block of 0.0.0.0/0 covers every address; one of
 * 127.0.0.5 lies in loopback).  An IPv4-mapped IPv6 network is compared
 * as the IPv4 network it carries too.
 */
export function coveredNetwork<T extends { address: IPAddress; mask: number }>(address: IPAddress, mask: number, own: readonly T[]): T | undefined {
  const [w0, w1, w2] = address.words;
  const mapped = address.family === 'inet6' && mask >= 96 && w0 === 0 && w1 === 0 && w2 === 0xffff ? { address: { family: 'inet' as const, words: [address.words[3]] }, mask: mask - 96 } : undefined;
  return own.find((n) =>
    [{ address, mask }, ...(mapped === undefined ? [] : [mapped])].some((b) => b.address.family === n.address.family && prefixEqual(b.address.words, n.address.words, Math.min(b.mask, n.mask))),
  );
}

export function sameAddress(a: IPAddress, b: IPAddress): boolean {
  return a.family === b.family && prefixEqual(a.words, b.words, widthOf(a.family));
}

/** A map key for the address masked to `bits`: a number for IPv4, a string for IPv6. */
export function maskedKey(address: IPAddress, bits: number): number | string {
  if (address.family === 'inet') return (address.words[0] & wordMask(bits, 0)) >>> 0;
  const w = address.words;
  return `${(w[0] & wordMask(bits, 0)) >>> 0},${(w[1] & wordMask(bits, 1)) >>> 0},${(w[2] & wordMask(bits, 2)) >>> 0},${(w[3] & wordMask(bits, 3)) >>> 0}`;
}
