// The daemon's side of escalation (doc/escalation.md): the policies of the
// configuration in force, the number and length of a block about to
// start, the history written once the packet filter took it, and the
// purge of forgiven histories.  The database is the caller's transaction.
import type { StateStore } from '../state/store.js';
import type { EffectiveRule, Entry } from '../types.js';
import { ANY } from '../types.js';
import { blockLength, forgivenCount, nextBlockNumber, PERMANENT, type EscalationPolicy } from './policy.js';

/** Forgiven histories are purged at most this often (monotonic ms). */
const PURGE_MS = 3_600_000;

export class Escalator {
  private policies: ReadonlyMap<string, EscalationPolicy> = new Map();
  private purgedAt = -Infinity;

  constructor(
    private readonly store: StateStore,
    /** In [0, 1): the jitter's source (injected: tests fix it). */
    private readonly random: () => number,
  ) {}

  /** A load or reload: the policies in force from now on (blocks already running keep their length). */
  setPolicies(policies: ReadonlyMap<string, EscalationPolicy>): void {
    this.policies = policies;
    this.purgedAt = -Infinity;
  }

  policy(name: string): EscalationPolicy | undefined {
    return this.policies.get(name);
  }

  /**
   * The block `key` is about to start at `now`: its number (the history's
   * forgiven count plus one) and its seconds beyond the rule's duration
   * (PERMANENT: none end); undefined when its rule name does not escalate.
   */
  next(key: EffectiveRule, now: number): { block: number; hold: number } | undefined {
    const p = this.policies.get(key.name);
    // a forever rule's blocks have nothing to grow
    if (p === undefined || key.duration === ANY) return undefined;
    const block = nextBlockNumber(p, this.store.history(key.name, key.address), now);
    const length = blockLength(p, block, key.duration, this.random);
    return { block, hold: length === PERMANENT ? PERMANENT : length - key.duration };
  }

  /**
   * A known offender of `key` (its history not forgiven to nothing) with
   * `count` failure points reaches its policy's lower `nfail`: blocked now.
   * Reads the history only for rule names whose policy has one.
   */
  knownOffender(key: EffectiveRule, count: number, now: number): boolean {
    const p = this.policies.get(key.name);
    if (p?.nfail === undefined || key.nfail === ANY || count < p.nfail || key.duration === ANY) return false;
    const h = this.store.history(key.name, key.address);
    return h !== undefined && forgivenCount(h, now, p.forget) > 0;
  }

  /** The filter took escalated block `e`, begun at `start`: the history counts it. */
  record(e: Entry, start: number): void {
    if (e.block === undefined) return;
    const hold = e.hold ?? 0;
    this.store.putHistory({
      name: e.key.name,
      address: e.key.address,
      count: e.block,
      last: start,
      until: hold < 0 ? PERMANENT : start + e.key.duration + hold,
    });
  }

  /** Histories forgiven to nothing, or past their `keep`, deleted; at most once per PURGE_MS. How many. */
  purge(now: number, monotonic: number): number {
    if (monotonic - this.purgedAt < PURGE_MS) return 0;
    this.purgedAt = monotonic;
    let purged = 0;
    for (const p of this.policies.values())
      if (p.forget !== undefined || p.keep !== undefined) purged += this.store.purgeHistory(p.name, now, p.forget, p.keep);
    return purged;
  }
}
