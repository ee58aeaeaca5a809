// Numeric IP address text parsed to bytes, and the two namings of a
// family, shared by the wire codec, the client API and the configuration
// (no native code here: the platform's numbers are handed in).
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { AddressFamily } from './types.js';

/** The platform's numbers of AF_INET and AF_INET6: the addon's constants, given to pure code as ConfEnv.families. */
export type FamilyNumbers = Readonly<Record<AddressFamily, number>>;

/** A family's number on this platform (AF_INET, AF_INET6): with familyOfNative, the one place the two namings meet. */
export function nativeFamily(numbers: FamilyNumbers, family: AddressFamily): number {
  return family === 'inet' ? numbers.inet : numbers.inet6;
}

/** The family a platform number stands for; undefined for any but AF_INET and AF_INET6. */
export function familyOfNative(numbers: FamilyNumbers, native: number): AddressFamily | undefined {
  if (native === numbers.inet) return 'inet';
  if (native === numbers.inet6) return 'inet6';
  return undefined;
}

export interface ParsedAddress {
  family: AddressFamily;
  /** 4 or 16 bytes, network order. */
  bytes: Uint8Array;
  /** The IPv6 zone after `%`, if any. */
  zone?: string;
}

/**
 * Parses numeric address text as inet_pton(3) does: only the standard
 * forms (no `127.1`, no hex IPv4), IPv6 with an optional `%zone`.
 */
export function parseIPAddress(text: string): ParsedAddress | undefined {
  const kind = isIP(text);
  if (kind === 4) return { family: 'inet', bytes: Uint8Array.from(ipaddr.IPv4.parse(text).toByteArray()) };
  if (kind !== 6) return undefined;
  // ipaddr.js reads any dotted tail as IPv4-mapped (::1.2.3.4 as ::ffff:1.2.3.4): give it hex words.
  const dotted = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)(%.*)?$/.exec(text);
  const v6text = dotted
    ? `${dotted[1]}${((+dotted[2] << 8) | +dotted[3]).toString(16)}:${((+dotted[4] << 8) | +dotted[5]).toString(16)}${dotted[6] ?? ''}`
    : text;
  const parsed = ipaddr.IPv6.parse(v6text);
  const bytes = Uint8Array.from(parsed.toByteArray());
  return parsed.zoneId === undefined ? { family: 'inet6', bytes } : { family: 'inet6', bytes, zone: parsed.zoneId };
}
