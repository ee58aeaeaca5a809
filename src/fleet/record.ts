// A block as the fleet shares it (doc/fleet.md §2): the bucket key and the
// JSON value, made from a local block and read back from another host's,
// checked field by field.  Pure: no clock, no connection.
import { isIP } from 'node:net';

/** The key layout's version: the first token of every key. */
export const KEY_VERSION = 'v1';
/** An origin: one key token, no dots (they separate tokens), at most 64 characters. */
const ORIGIN_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** The longest value accepted from the fleet (bytes): a block's value is about 300. */
export const MAX_VALUE_BYTES = 4096;
/** Rule names as the configuration allows them are short; a longer one in a value is hostile. */
const MAX_NAME = 64;
const MAX_REASON = 200;

/** One block, as put in the bucket: what another host needs to make the same block. */
export interface FleetBlock {
  origin: string;
  /** The rule name: the packet-filter set/chain the block goes in. */
  name: string;
  /** 4 or 6. */
  family: 4 | 6;
  /** The masked address, as numeric text. */
  address: string;
  mask: number;
  /** tcp, udp, or '' for any. */
  proto: string;
  /** The port; -1 for any. */
  port: number;
  /** Seconds; -1 forever. */
  duration: number;
  /** When the block began at its origin (epoch seconds). */
  start: number;
  /** When it ends (start + duration), null forever: expiry never depends on the server's per-key TTL. */
  end: number | null;
  reason: string;
}

/** Why a value or key was refused; logged and counted as rejected. */
export class FleetRecordError extends Error {
  override readonly name = 'FleetRecordError';
}

/** The problem with an origin name, or undefined when it can be a key token. */
export function originProblem(origin: string): string | undefined {
  return ORIGIN_PATTERN.test(origin) ? undefined : 'letters, digits, - and _ only, 1 to 64 characters (no dots: they separate key tokens)';
}

/**
 * `text` as one key token: letters, digits, - and _ stay, any other byte
 * (of its UTF-8) becomes =XX.  NATS keys allow only [-/_=.A-Za-z0-9], and
 * dots separate tokens: an address's dots and colons must not pass.
 */
export function keyToken(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_-]/.test(c) ? c : `=${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out === '' ? '=' : out;
}

/** The bucket key of a block: v1.<origin>.<family>.<address>.<mask>.<proto>.<port>.<name>, each token checked. */
export function keyOf(b: Pick<FleetBlock, 'origin' | 'family' | 'address' | 'mask' | 'proto' | 'port' | 'name'>): string {
  if (originProblem(b.origin) !== undefined) throw new FleetRecordError(`bad origin '${b.origin}'`);
  return [
    KEY_VERSION,
    b.origin,
    String(b.family),
    keyToken(b.address),
    String(b.mask),
    b.proto === '' ? 'any' : keyToken(b.proto),
    b.port < 0 ? 'any' : String(b.port),
    keyToken(b.name),
  ].join('.');
}

/** The key prefix of one origin's blocks, and its subject wildcard. */
export const originPrefix = (origin: string): string => `${KEY_VERSION}.${origin}.`;

/** The origin token of a key of this layout, undefined for a key of another. */
export function originOfKey(key: string): string | undefined {
  const parts = key.split('.');
  return parts.length === 8 && parts[0] === KEY_VERSION ? parts[1] : undefined;
}

/** The JSON value of a block. */
export const valueOf = (b: FleetBlock): string => JSON.stringify({ ...b });

const isInt = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/**
 * A value from the bucket, checked: every field of the right type and
 * range, the address numeric text of its family, and the key it
 * was found under the one its fields make (a host cannot put a block of
 * one address under another's key, nor another origin in its value).
 */
export function parseValue(key: string, data: Uint8Array): FleetBlock {
  if (data.length > MAX_VALUE_BYTES) throw new FleetRecordError(`value of ${data.length} bytes (at most ${MAX_VALUE_BYTES})`);
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(data).toString('utf8'));
  } catch {
    throw new FleetRecordError('value is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FleetRecordError('value is not a JSON object');
  const o = v as Record<string, unknown>;
  const bad = (field: string): never => {
    throw new FleetRecordError(`bad ${field} ${JSON.stringify(o[field])?.slice(0, 80) ?? 'missing'}`);
  };
  if (typeof o.origin !== 'string' || originProblem(o.origin) !== undefined) bad('origin');
  if (typeof o.name !== 'string' || o.name === '' || o.name.length > MAX_NAME || /[\s\0]/.test(o.name)) bad('name');
  if (o.family !== 4 && o.family !== 6) bad('family');
  const family = o.family as 4 | 6;
  if (typeof o.address !== 'string' || isIP(o.address) !== family) bad('address');
  if (!isInt(o.mask, 0, family === 4 ? 32 : 128)) bad('mask');
  if (o.proto !== '' && o.proto !== 'tcp' && o.proto !== 'udp') bad('proto');
  if (!isInt(o.port, -1, 65535)) bad('port');
  if (!isInt(o.duration, -1, 2 ** 31)) bad('duration');
  if (!isInt(o.start, 0, 2 ** 40)) bad('start');
  const duration = o.duration as number;
  const start = o.start as number;
  if (duration < 0 ? o.end !== null : o.end !== start + duration) bad('end');
  if (o.reason !== undefined && (typeof o.reason !== 'string' || o.reason.length > MAX_REASON)) bad('reason');
  const block: FleetBlock = {
    origin: o.origin as string,
    name: o.name as string,
    family,
    address: o.address as string,
    mask: o.mask as number,
    proto: o.proto as string,
    port: o.port as number,
    duration,
    start,
    end: o.end as number | null,
    reason: (o.reason as string | undefined) ?? '',
  };
  if (keyOf(block) !== key) throw new FleetRecordError(`key ${key} does not match its value (${keyOf(block)})`);
  return block;
}

/**
 * The end a block learned from the fleet gets here (doc/fleet.md §4): its
 * origin's start plus its duration, but a start more than `skew` seconds
 * ahead of the local clock is the time it was received: a clock ahead
 * cannot lengthen a block beyond its duration from now, a clock behind
 * shortens it by its skew at most, and an old block replayed to a host
 * that joins late keeps its start.  A duration over `maxDuration` (0: no
 * cap), or forever, is cut to it.  Null: forever; undefined: it has ended.
 */
export function localEnd(b: FleetBlock, now: number, skew: number, maxDuration: number): number | undefined | null {
  const start = b.start > now + skew ? now : b.start;
  let duration = b.duration;
  if (maxDuration > 0 && (duration < 0 || duration > maxDuration)) duration = maxDuration;
  if (duration < 0) return null;
  const end = start + duration;
  return end > now ? end : undefined;
}
