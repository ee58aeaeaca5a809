// Escalation of repeat offenders (doc/escalation.md): the length of the nth
// block of a (rule name, address), the history's forgiveness, and the
// `[escalate]` lines of blocklistd.conf.  Pure: the clock and the random
// source come in as arguments.
import { maskAddress, toText, widthOf } from '../conf/ip.js';
import { parseDuration } from '../conf/parse.js';
import type { IPAddress } from '../types.js';
import { DURATION_UNITS, durationParts } from '../time.js';

/** A block that never expires by itself (an entry's `hold`): lifted only by hand or AUTH_OK. */
export const PERMANENT = -1;

/** How blocks of one rule name grow with the offender's history. */
export interface EscalationPolicy {
  name: string;
  /** The first block's length (seconds); undefined: the rule's duration. */
  base?: number;
  /** Each block lasts `factor` times the one before. */
  factor: number;
  /** No block lasts longer (seconds); undefined: no cap. */
  max?: number;
  /** Explicit lengths of the 1st, 2nd ... block (seconds); the last repeats.  Replaces base and factor. */
  list?: number[];
  /** Up to this many random seconds added to each block. */
  jitter: number;
  /** From the nth block on, blocks are permanent; undefined: never. */
  permanent?: number;
  /** The history's count goes down by one per `forget` seconds without a block; undefined: never. */
  forget?: number;
  /** A history is deleted this long after its last block ended (seconds); undefined: kept until forgiven. */
  keep?: number;
  /** Known offenders (a history not forgiven to nothing) are blocked at this many failure points instead of the rule's nfail. */
  nfail?: number;
}

/** One address's history under a rule name, as stored. */
export interface History {
  name: string;
  address: string;
  /** Blocks counted (before forgiveness). */
  count: number;
  /** When the last block began (seconds). */
  last: number;
  /** When it was to end; PERMANENT for a permanent one. */
  until: number;
}

/**
 * The count a history has at `now` (decay, doc/escalation.md §2): one block
 * forgiven per whole `forget` period since the last block ended.  A
 * permanent block is never forgiven while it lasts.
 */
export function forgivenCount(h: Pick<History, 'count' | 'until'>, now: number, forget: number | undefined): number {
  if (forget === undefined || h.until === PERMANENT || now <= h.until) return h.count;
  return Math.max(0, h.count - Math.floor((now - h.until) / forget));
}

/**
 * The addresses under which a history may hold `address`/`mask`: itself
 * and every network around it, as rules with a `/mask` key theirs (a
 * history's address is the entry's, masked by the rule).
 */
export function historyAddresses(address: IPAddress, mask = widthOf(address.family)): string[] {
  const addresses = new Set<string>();
  for (let m = mask; m >= 0; m--) addresses.add(toText(maskAddress(address, m)));
  return [...addresses];
}

/** The number of the next block of an address whose history is `h` (none: the first), forgiveness applied. */
export const nextBlockNumber = (p: EscalationPolicy, h: History | undefined, now: number): number =>
  (h === undefined ? 0 : forgivenCount(h, now, p.forget)) + 1;

/**
 * How long the nth block (n ≥ 1) lasts in seconds, or PERMANENT:
 * `min(base × factor^(n-1), max)` or the list's nth, plus jitter (`random`
 * in [0, 1)); never shorter than the rule's own duration.
 */
export function blockLength(p: EscalationPolicy, n: number, ruleDuration: number, random: () => number): number {
  if (p.permanent !== undefined && n >= p.permanent) return PERMANENT;
  let length: number;
  if (p.list !== undefined) length = p.list[Math.min(n, p.list.length) - 1];
  else length = (p.base ?? ruleDuration) * p.factor ** (n - 1);
  if (p.max !== undefined) length = Math.min(length, p.max);
  // ints: the database and the helper see whole seconds; a huge product stays finite
  length = Math.min(Math.round(length), 2 ** 40);
  if (p.jitter > 0) length += Math.floor(random() * (p.jitter + 1));
  return Math.max(length, ruleDuration);
}

/** A bad `[escalate]` line: the message says why. */
export class PolicyError extends Error {
  override readonly name = 'PolicyError';
}

const KEYS = ['base', 'factor', 'max', 'list', 'jitter', 'permanent', 'forget', 'keep', 'nfail'] as const;

function duration(key: string, text: string): number {
  const seconds = parseDuration(text);
  if (seconds === 'overflow') throw new PolicyError(`${key}: duration too long [${text}]`);
  if (seconds === undefined) throw new PolicyError(`${key}: bad duration [${text}]`);
  return seconds;
}

function positive(key: string, seconds: number, text: string): number {
  if (seconds <= 0) throw new PolicyError(`${key}: must be more than 0 [${text}]`);
  return seconds;
}

/**
 * An `[escalate]` line's fields: the rule name, then `key=value` words
 * (doc/escalation.md §1).  Throws a PolicyError naming the bad word.
 */
export function parsePolicy(fields: readonly string[]): EscalationPolicy {
  const [name, ...words] = fields;
  if (name === undefined || name.includes('=')) throw new PolicyError('an [escalate] line starts with the rule name');
  const p: EscalationPolicy = { name, factor: 2, jitter: 0 };
  const seen = new Set<string>();
  for (const word of words) {
    const eq = word.indexOf('=');
    const key = eq < 0 ? word : word.slice(0, eq);
    const value = eq < 0 ? '' : word.slice(eq + 1);
    if (!(KEYS as readonly string[]).includes(key)) throw new PolicyError(`unknown key [${key}]: one of ${KEYS.join(', ')}`);
    if (eq < 0 || value === '') throw new PolicyError(`${key}: a value is missing (${key}=...)`);
    if (seen.has(key)) throw new PolicyError(`${key}: given twice`);
    seen.add(key);
    switch (key) {
      case 'factor': {
        const f = Number(value);
        if (!/^[0-9]+(\.[0-9]+)?$/.test(value) || !(f >= 1) || f > 1000)
          throw new PolicyError(`factor: a number from 1 to 1000 [${value}]`);
        p.factor = f;
        break;
      }
      case 'list':
        p.list = value.split(',').map((t) => positive(key, duration(key, t), t));
        break;
      case 'permanent': {
        if (!/^[1-9][0-9]{0,5}$/.test(value))
          throw new PolicyError(`permanent: the number of the first permanent block, 1 or more [${value}]`);
        p.permanent = Number(value);
        break;
      }
      case 'nfail': {
        if (!/^[1-9][0-9]{0,8}$/.test(value))
          throw new PolicyError(`nfail: the failure points that block a known offender, 1 or more [${value}]`);
        p.nfail = Number(value);
        break;
      }
      case 'jitter':
        p.jitter = duration(key, value);
        break;
      default:
        p[key as 'base' | 'max' | 'forget' | 'keep'] = positive(key, duration(key, value), value);
    }
  }
  if (p.list !== undefined && (seen.has('base') || seen.has('factor')))
    throw new PolicyError('list replaces base and factor: give one or the other');
  if (p.base !== undefined && p.max !== undefined && p.max < p.base) throw new PolicyError(`max (${p.max}) is less than base (${p.base})`);
  return p;
}

/** A policy as an `[escalate]` line: what `blocklistctl config` prints, and parsePolicy reads back. */
export function formatPolicy(p: EscalationPolicy): string {
  // no separator inside a duration: `list` separates its durations with commas
  const d = (s: number): string => (s === 0 ? '0' : durationParts(s, DURATION_UNITS).join(''));
  const words = [p.name];
  if (p.list !== undefined) words.push(`list=${p.list.map(d).join(',')}`);
  else words.push(...(p.base === undefined ? [] : [`base=${d(p.base)}`]), `factor=${p.factor}`);
  if (p.max !== undefined) words.push(`max=${d(p.max)}`);
  if (p.jitter > 0) words.push(`jitter=${d(p.jitter)}`);
  if (p.permanent !== undefined) words.push(`permanent=${p.permanent}`);
  if (p.forget !== undefined) words.push(`forget=${d(p.forget)}`);
  if (p.keep !== undefined) words.push(`keep=${d(p.keep)}`);
  if (p.nfail !== undefined) words.push(`nfail=${p.nfail}`);
  return words.join(' ');
}
