// IP addresses as 32-bit words: parsing, masking and comparing them is what
// matching does on every notification; formatting them, what is shown.
import { parseIPAddress } from '../address.js';
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

/** inet_ntop(3) text of an address: what logs, control answers and the state database show. */
export function toText(address: IPAddress): string {
  return address.family === 'inet' ? ipv4Text(address.words[0]) : ipv6Text(address.words);
}

/** The octets' texts, and with their dot: an address is three joins of them, not seven of numbers made text (80 bytes instead of 150). */
const OCTETS = Array.from({ length: 256 }, (_, octet) => String(octet));
const DOTTED_OCTETS = OCTETS.map((octet) => `${octet}.`);

const ipv4Text = (word: number): string =>
  DOTTED_OCTETS[word >>> 24]! + DOTTED_OCTETS[(word >>> 16) & 0xff]! + DOTTED_OCTETS[(word >>> 8) & 0xff]! + OCTETS[word & 0xff]!;

/**
 * IPv6 as inet_ntop(3) writes it: the first longest run of two or more
 * zero groups as `::`, an embedded IPv4 address (::a.b.c.d, ::ffff:a.b.c.d) dotted.
 */
function ipv6Text(words: readonly number[]): string {
  const groups = [
    words[0] >>> 16,
    words[0] & 0xffff,
    words[1] >>> 16,
    words[1] & 0xffff,
    words[2] >>> 16,
    words[2] & 0xffff,
    words[3] >>> 16,
    words[3] & 0xffff,
  ];
  let bestBase = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestBase = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestBase = -1;
  let s = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase >= 0 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) s += ':';
      continue;
    }
    if (i !== 0) s += ':';
    if (i === 6 && bestBase === 0 && (bestLen === 6 || (bestLen === 5 && groups[5] === 0xffff))) return s + ipv4Text(words[3]);
    s += groups[i].toString(16);
  }
  if (bestBase >= 0 && bestBase + bestLen === 8) s += ':';
  return s;
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
export function coveredNetwork<T extends { address: IPAddress; mask: number }>(
  address: IPAddress,
  mask: number,
  own: readonly T[],
): T | undefined {
  const [w0, w1, w2] = address.words;
  const mapped =
    address.family === 'inet6' && mask >= 96 && w0 === 0 && w1 === 0 && w2 === 0xffff
      ? { address: { family: 'inet' as const, words: [address.words[3]] }, mask: mask - 96 }
      : undefined;
  return own.find((n) =>
    [{ address, mask }, ...(mapped === undefined ? [] : [mapped])].some(
      (b) => b.address.family === n.address.family && prefixEqual(b.address.words, n.address.words, Math.min(b.mask, n.mask)),
    ),
  );
}

export function sameAddress(a: IPAddress, b: IPAddress): boolean {
  return a.family === b.family && prefixEqual(a.words, b.words, widthOf(a.family));
}

/** A map key for the address masked to `bits`: a number for IPv4, a string for IPv6. */
export function maskedKey(address: IPAddress, bits: number): number | string {
  if (address.family === 'inet') return (address.words[0] & wordMask(bits, 0)) >>> 0;
  const w = address.words;
  return (
    `${(w[0] & wordMask(bits, 0)) >>> 0},${(w[1] & wordMask(bits, 1)) >>> 0},` +
    `${(w[2] & wordMask(bits, 2)) >>> 0},${(w[3] & wordMask(bits, 3)) >>> 0}`
  );
}
