// The fleet's command-line options checked (doc/fleet.md §6): pure, so
// that the daemon's option parsing only hands them over.
import { hostname } from 'node:os';
import type { FleetConfig } from './fleet.js';
import { originProblem } from './record.js';

/** The options as given; undefined when absent. */
export interface FleetArguments {
  fleet?: string;
  fleetName?: string;
  fleetBucket: string;
  fleetCreds?: string;
  fleetUserFile?: string;
  fleetCa?: string;
  fleetCert?: string;
  fleetKey?: string;
  fleetInsecure?: boolean;
  fleetMaxDuration: string;
  fleetTrust: string[];
}

export const DEFAULT_FLEET_BUCKET = 'blocklist';

/** A host name as an origin: its first label, other characters than letters, digits, - and _ as -. */
export const defaultOrigin = (host = hostname()): string =>
  host
    .split('.')[0]!
    .replace(/[^A-Za-z0-9_-]/g, '-')
    .slice(0, 64) || 'host';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[?::1\]?)$/i;

/**
 * The fleet's configuration, or undefined without --fleet; throws an
 * Error whose message says what is wrong.  `abs` makes a path absolute.
 */
export function fleetConfig(a: FleetArguments, abs: (path: string) => string, host = hostname()): FleetConfig | undefined {
  const given = Object.entries(a).filter(
    ([k, v]) =>
      k !== 'fleet' &&
      v !== undefined &&
      !(k === 'fleetBucket' && v === DEFAULT_FLEET_BUCKET) &&
      !(k === 'fleetMaxDuration' && v === '0') &&
      !(Array.isArray(v) && v.length === 0),
  );
  if (a.fleet === undefined) {
    if (given.length > 0) throw new Error(`--${given[0]![0].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --fleet`);
    return undefined;
  }
  const tls =
    a.fleetCa !== undefined || a.fleetCert !== undefined || a.fleetKey !== undefined
      ? { ca: a.fleetCa && abs(a.fleetCa), cert: a.fleetCert && abs(a.fleetCert), key: a.fleetKey && abs(a.fleetKey) }
      : undefined;
  if ((a.fleetCert === undefined) !== (a.fleetKey === undefined)) throw new Error('--fleet-cert and --fleet-key go together');
  const servers = a.fleet.split(',').map((s) => s.trim());
  for (const server of servers) {
    const m = /^(?:(nats|tls):\/\/)?(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?$/.exec(server);
    if (m === null) throw new Error(`bad --fleet server '${server}': nats://host:port or tls://host:port`);
    if (server.includes('@'))
      throw new Error(`--fleet server '${server}': credentials go in --fleet-creds or --fleet-user-file, not in the URL (it shows in ps)`);
    const plain = m[1] !== 'tls' && tls === undefined;
    if (plain && !LOOPBACK.test(m[2]!) && a.fleetInsecure !== true) {
      throw new Error(
        `--fleet server '${server}' is plain text to another host: use tls:// (and --fleet-ca), or --fleet-insecure to allow it`,
      );
    }
  }
  if (a.fleetCreds !== undefined && a.fleetUserFile !== undefined) throw new Error('--fleet-creds or --fleet-user-file, not both');
  const name = a.fleetName ?? defaultOrigin(host);
  const problem = originProblem(name);
  if (problem !== undefined) throw new Error(`bad --fleet-name '${name}': ${problem}`);
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(a.fleetBucket)) throw new Error(`bad --fleet-bucket '${a.fleetBucket}': letters, digits, - and _`);
  const maxDuration = /^\d+$/.test(a.fleetMaxDuration) ? Number(a.fleetMaxDuration) : NaN;
  if (!(maxDuration >= 0 && maxDuration <= 2 ** 31))
    throw new Error(`bad --fleet-max-duration '${a.fleetMaxDuration}': seconds, 0 for no cap`);
  const trust = a.fleetTrust
    .flatMap((t) => t.split(','))
    .map((t) => t.trim())
    .filter((t) => t !== '');
  for (const t of trust) if (originProblem(t) !== undefined) throw new Error(`bad --fleet-trust origin '${t}': ${originProblem(t)}`);
  return {
    servers,
    name,
    bucket: a.fleetBucket,
    creds: a.fleetCreds && abs(a.fleetCreds),
    userFile: a.fleetUserFile && abs(a.fleetUserFile),
    tls,
    maxDuration,
    trust,
  };
}
