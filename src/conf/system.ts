// The system facts configuration parsing and matching need, read from this
// host: services (/etc/services), users (/etc/passwd, then getent(1) for
// NSS users), network interfaces, and the platform's family numbers.
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { constants } from '../protocol/native.js';
import { LOOPBACK_NETWORKS, coveredNetwork, parseIP, widthOf, type OwnNetwork } from './ip.js';
import type { ConfEnv, InterfaceAddresses, IPAddress } from './types.js';
import { DEFAULT_RULE_NAME } from './defaults.js';

export { DEFAULT_RULE_NAME };

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** name or alias → port, for tcp and udp, from services(5) text. */
function parseServices(text: string): { tcp: Map<string, number>; udp: Map<string, number> } {
  const maps = { tcp: new Map<string, number>(), udp: new Map<string, number>() };
  for (const line of text.split('\n')) {
    const [name, portProto, ...aliases] = line.replace(/#.*/, '').trim().split(/\s+/);
    const m = /^(\d+)\/(tcp|udp)$/.exec(portProto ?? '');
    if (!name || m === null) continue;
    const map = maps[m[2] as 'tcp' | 'udp'];
    for (const n of [name, ...aliases]) if (!map.has(n)) map.set(n, Number(m[1]));
  }
  return maps;
}

/** name → uid from passwd(5) text. */
function parsePasswd(text: string): Map<string, number | undefined> {
  const users = new Map<string, number | undefined>();
  for (const line of text.split('\n')) {
    const [name, , uid] = line.split(':');
    if (name && uid !== undefined && /^\d+$/.test(uid) && !users.has(name)) users.set(name, Number(uid));
  }
  return users;
}

function getentUid(name: string): number | undefined {
  if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$/.test(name)) return undefined;
  try {
    const entry = execFileSync('getent', ['passwd', name], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] });
    return parsePasswd(entry).get(name);
  } catch {
    return undefined;
  }
}

/** `getent <database> <key>` without blocking the event loop: its line, or undefined when there is none. */
function getentLine(database: string, key: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('getent', [database, key], { encoding: 'utf8', timeout: 5000 }, (error, stdout) =>
      resolve(error === null ? stdout.trim().split('\n')[0] : undefined),
    );
  });
}

/** A group as the group database (NSS groups too) says now: its gid and the names of the users it lists. */
export interface GroupEntry {
  gid: number;
  members: string[];
}

export async function lookupGroup(nameOrGid: string): Promise<GroupEntry | undefined> {
  const line = await getentLine('group', nameOrGid);
  if (line === undefined) return undefined;
  const [, , gid, members = ''] = line.split(':');
  return { gid: Number(gid), members: members.split(',').filter((u) => u !== '') };
}

/** The name of user `uid` as the user database (NSS users too) says now. */
export async function userName(uid: number): Promise<string | undefined> {
  return (await getentLine('passwd', String(uid)))?.split(':')[0];
}

/** Names of every interface, up or down: what the parser recognises (config.md §4.2). */
function interfaceNames(): Set<string> {
  const names = new Set(Object.keys(networkInterfaces()).map((label) => label.replace(/:.*$/, '')));
  try {
    for (const name of readdirSync('/sys/class/net')) names.add(name);
  } catch {
    // not Linux: the interfaces that are up are all we know
  }
  return names;
}

/** The ConfEnv of this host; lookups are read once, on first use. */
export function systemEnv(defaultName = DEFAULT_RULE_NAME): ConfEnv {
  let services: ReturnType<typeof parseServices> | undefined;
  let users: Map<string, number | undefined> | undefined;
  let interfaces: Set<string> | undefined;
  return {
    defaultName,
    families: { inet: constants.AF_INET, inet6: constants.AF_INET6 },
    service(name) {
      services ??= parseServices(readOrEmpty('/etc/services'));
      return services.tcp.get(name) ?? services.udp.get(name);
    },
    user(name) {
      users ??= parsePasswd(readOrEmpty('/etc/passwd'));
      if (!users.has(name)) {
        // NSS users (LDAP…) through getent, once per name: misses are remembered too
        users.set(name, name === '*' || name === '=' || /^[+-]?\d/.test(name) ? undefined : getentUid(name));
      }
      return users.get(name);
    },
    isInterface(name) {
      interfaces ??= interfaceNames();
      return interfaces.has(name);
    },
  };
}

/** The interfaces that are up and their addresses, for interface rules (G31). */
export function interfaceAddresses(): InterfaceAddresses {
  const result = new Map<string, IPAddress[]>();
  for (const [label, addresses] of Object.entries(networkInterfaces())) {
    // Linux lists labelled addresses (`ip addr add … label lo:1`) under the label: they belong to lo
    const name = label.replace(/:.*$/, '');
    const ips = result.get(name) ?? [];
    for (const a of addresses ?? []) {
      const ip = parseIP(a.address.replace(/%.*$/, ''), a.family === 'IPv4' ? 'inet' : 'inet6');
      if (ip !== undefined) ips.push(ip);
    }
    result.set(name, ips);
  }
  return result;
}

/**
 * This host's own networks: loopback (127.0.0.0/8, ::1 and their
 * IPv4-mapped form) and every address of an interface that is up.  One
 * notion for --allow-self (notifications about them are not counted) and
 * for the refusal of manual blocks that cover one of them.
 */
export function ownNetworks(interfaces: InterfaceAddresses): OwnNetwork[] {
  const own: OwnNetwork[] = LOOPBACK_NETWORKS.map((n) => ({ ...n, what: 'loopback' }));
  for (const [name, addresses] of interfaces)
    for (const address of addresses) own.push({ address, mask: widthOf(address.family), what: `an address of ${name}` });
  return own;
}

/** Whether `address` is in one of the host's networks `own` (ownNetworks); an IPv4-mapped address counts as its IPv4 one. */
export function isSelfAddress(address: IPAddress, own: readonly OwnNetwork[]): boolean {
  return coveredNetwork(address, widthOf(address.family), own) !== undefined;
}
