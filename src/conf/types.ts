// The configuration's data: rules as parsed (config.md §5), what matching
// consumes (a probe) and produces (the effective rule, which is also the
// state key), diagnostics, and the system facts parsing needs.
import type { EffectiveRule, IPAddress } from '../types.js';

export { ANY, SAME, type EffectiveRule, type IPAddress } from '../types.js';

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

/** Field 1's host part: any address, an IP address, or a network interface's addresses. */
export type AddressSelector = { kind: 'any' } | { kind: 'ip'; address: IPAddress } | { kind: 'interface'; name: string };

export interface Source {
  file: string;
  /** Physical line number of the rule's last line; 0 for a whole file. */
  line: number;
}

export type Section = 'local' | 'remote';

/** One configuration line.  Numbers may be ANY or SAME where the grammar allows. */
export interface Rule {
  source: Source;
  address: AddressSelector;
  /** Prefix length of the location, ANY when none was written. */
  lmask: number;
  port: number;
  /** Socket type as an IP protocol: 6 stream, 17 dgram. */
  proto: number;
  /** Address family in the platform's numbering (see ConfEnv.families). */
  family: number;
  uid: number;
  /** Packet-filter rule name; "" on a remote line means "inherit". */
  name: string;
  /** Prefix length applied to the remote address (the name's `/mask`). */
  rmask: number;
  nfail: number;
  /** Seconds. */
  duration: number;
}

/** Both lists, sorted as the daemon walks them (config.md §6.3). */
export interface RuleSet {
  local: readonly Rule[];
  remote: readonly Rule[];
}

export type Severity = 'error' | 'warning' | 'info';

export interface Diagnostic {
  source: Source;
  /** An error means the line (or file) was not loaded. */
  severity: Severity;
  message: string;
}

/** What parsing needs from the system; injected so that parsing stays pure. */
export interface ConfEnv {
  /** `-R`: the name `*` stands for and names starting with `-` extend. */
  defaultName: string;
  families: { inet: number; inet6: number };
  /** Port of a service name, tcp first then udp, as getservbyname(3). */
  service(name: string): number | undefined;
  /** uid of a user name, as getpwnam(3). */
  user(name: string): number | undefined;
  /** Whether a network interface of this name exists (up or not). */
  isInterface(name: string): boolean;
}

/** The interfaces that are up, with their addresses: what interface rules match (G31). */
export type InterfaceAddresses = ReadonlyMap<string, readonly IPAddress[]>;

/** What a notification presents to the rules (config.md §7.1). */
export interface Probe {
  /** Family of the passed socket, in the platform's numbering. */
  family: number;
  /** Its local address (getsockname). */
  local: IPAddress;
  /** Its local port. */
  port: number;
  proto: number;
  /** The sender's uid. */
  uid: number;
  remote: IPAddress;
}

export interface Match {
  local: Rule;
  remote: Rule | undefined;
  effective: EffectiveRule;
}
