// Subnet aggregation (doc/escalation.md §6): when `count` addresses of one
// network of a rule name are blocked at once, one block of the network
// replaces them.  Pure: the `[aggregate]` line, the network of an address,
// the allow-list rules that forbid an aggregate.
import { maskAddress, prefixEqual, widthOf } from '../conf/ip.js';
import { fileLine } from '../conf/ruleset.js';
import { ANY, type IPAddress, type RuleSet } from '../conf/types.js';
import { PolicyError } from './policy.js';

export interface AggregatePolicy {
  name: string;
  /** Blocked addresses of one network that make an aggregate (2 or more). */
  count: number;
  /** The network's prefix length for IPv4 and IPv6. */
  v4: number;
  v6: number;
}

const LIMITS = { count: [2, 65536], v4: [8, 31], v6: [16, 127] } as const;

/** An `[aggregate]` line's fields: the rule name, then `count=`, `v4=`, `v6=` (defaults 3, 24, 64). */
export function parseAggregate(fields: readonly string[]): AggregatePolicy {
  const [name, ...words] = fields;
  if (name === undefined || name.includes('=')) throw new PolicyError('an [aggregate] line starts with the rule name');
  const p: AggregatePolicy = { name, count: 3, v4: 24, v6: 64 };
  const seen = new Set<string>();
  for (const word of words) {
    const [key, value = ''] = word.split('=', 2);
    if (!(key in LIMITS)) throw new PolicyError(`unknown key [${key}]: one of ${Object.keys(LIMITS).join(', ')}`);
    if (seen.has(key)) throw new PolicyError(`${key}: given twice`);
    seen.add(key);
    const [min, max] = LIMITS[key as keyof typeof LIMITS];
    const n = /^[0-9]{1,6}$/.test(value) ? Number(value) : NaN;
    if (!(n >= min && n <= max)) throw new PolicyError(`${key}: a number from ${min} to ${max} [${value}]`);
    p[key as keyof typeof LIMITS] = n;
  }
  return p;
}

export const formatAggregate = (p: AggregatePolicy): string => `${p.name} count=${p.count} v4=${p.v4} v6=${p.v6}`;

/** The network an address's aggregate would block, and its prefix length. */
export function aggregateNetwork(address: IPAddress, p: AggregatePolicy): { address: IPAddress; mask: number } {
  const mask = address.family === 'inet' ? p.v4 : p.v6;
  return { address: maskAddress(address, mask), mask };
}

/**
 * The text range [from, to) that holds the canonical text of every address
 * of a network (and maybe more): the entries' addresses are text, and the
 * index on them is searched by range.  IPv4: the network's whole octets
 * (`192.0.2.` up to `192.0.2/`); IPv6: its first group, when not 0 (the
 * text of the others depends on where zeros are compressed).
 */
export function textRange(net: { address: IPAddress; mask: number }): [string, string] {
  const all: [string, string] = ['', '\u{10ffff}'];
  if (net.address.family === 'inet') {
    const octets = Math.floor(net.mask / 8);
    if (octets === 0) return all;
    const prefix = [24, 16, 8, 0]
      .slice(0, octets)
      .map((shift) => (net.address.words[0] >>> shift) & 255)
      .join('.');
    return [`${prefix}.`, `${prefix}/`];
  }
  const first = net.address.words[0] >>> 16;
  if (net.mask < 16 || first === 0) return all;
  return [`${first.toString(16)}:`, `${first.toString(16)};`];
}

/** Whether `address` lies in the network. */
export const inNetwork = (address: IPAddress, net: { address: IPAddress; mask: number }): boolean =>
  address.family === net.address.family && prefixEqual(address.words, net.address.words, net.mask);

/** A network that no aggregate may hold: an allow-list rule's (a [remote] rule with nfail `*`), `what` its file:line. */
export interface AllowedNetwork {
  address: IPAddress;
  mask: number;
  what: string;
}

/** The [remote] rules with nfail `*` and an address: clients they match are never blocked, nor is a network holding them. */
export function allowedNetworks(ruleSet: RuleSet): AllowedNetwork[] {
  return ruleSet.remote
    .filter((r) => r.nfail === ANY && r.address.kind === 'ip')
    .map((r) => {
      const address = (r.address as { kind: 'ip'; address: IPAddress }).address;
      return { address, mask: r.lmask === ANY ? widthOf(address.family) : r.lmask, what: fileLine(r.source) };
    });
}
