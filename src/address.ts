// Numeric IP addresses as text and bytes, shared by the wire codec, the
// client API and the configuration (no native code here).
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { AddressFamily } from './types.js';

export function formatIPv4(b: Uint8Array, offset: number): string {
  return `${b[offset]}.${b[offset + 1]}.${b[offset + 2]}.${b[offset + 3]}`;
}

/** inet_ntop(3) for 16 address bytes: the longest zero run as `::`, embedded IPv4 as upstream prints it. */
export function formatIPv6(b: Uint8Array, offset: number): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((b[offset + 2 * i] << 8) | b[offset + 2 * i + 1]);
  let bestBase = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
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
    if (i === 6 && bestBase === 0 && (bestLen === 6 || (bestLen === 5 && words[5] === 0xffff))) {
      return s + formatIPv4(b, offset + 12);
    }
    s += words[i].toString(16);
  }
  if (bestBase >= 0 && bestBase + bestLen === 8) s += ':';
  return s;
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
