// The helper work of each entry that is not settled yet, in one place
// (helper.md §1.7): adds running, rems running, rems to try again, and
// releases done but not written to the database.  The engine asks it
// before it starts a call and tells it what each call came to; the
// manual commands ask it whether an entry is busy.  Keyed by the entry's
// id (every field of its effective rule): two entries of one filter rule
// are two entries here, while the runner orders their calls by the filter
// rule they change (helper.ts, `changeConflicts`).
import type { EffectiveRule, Entry } from '../types.js';

/** An entry's id: its effective rule, every field. */
export const entryId = (k: EffectiveRule): string =>
  `${k.name}\0${k.address}\0${k.port}\0${k.family}\0${k.lmask}\0${k.proto}\0${k.uid}\0${k.nfail}\0${k.rmask}\0${k.duration}`;

/** The effective rule of an entry's id (entryId): no field holds a NUL (rule names and addresses are text of the configuration). */
export function keyOfId(id: string): EffectiveRule {
  const [name, address, port, family, lmask, proto, uid, nfail, rmask, duration] = id.split('\0');
  return {
    name: name!,
    address: address!,
    port: Number(port),
    family: Number(family),
    lmask: Number(lmask),
    proto: Number(proto),
    uid: Number(uid),
    nfail: Number(nfail),
    rmask: Number(rmask),
    duration: Number(duration),
  };
}

/** A count and time of an entry. */
export interface Counted {
  count: number;
  last: number;
}

/** An add in flight: what to put back when the helper fails (upstream does not save the failing count). */
export interface PendingAdd<Origin extends string = string> {
  before: Counted | undefined;
  wrote: Counted;
  /** The unmasked client address, for the "blocked" line; undefined for a restore. */
  client: string | undefined;
  origin: Origin;
}

/**
 * Many adds in flight as one, kept by their owner rather than one by one here (a restore's 100,000: engine.ts refresh,
 * in a table of the database): asked for each entry that is not among the single adds.
 */
export interface BulkAdds<Origin extends string = string> {
  /** How many are in flight. */
  readonly size: number;
  /** The add in flight for the entry, undefined when it is not one of them. */
  pending(id: string): PendingAdd<Origin> | undefined;
  /** The add of the entry is over: what it was, undefined when it was not one of them. */
  end(id: string): PendingAdd<Origin> | undefined;
  /** The wall clock stepped by `step` seconds (shiftTimes). */
  shiftTimes(step: number): void;
}

export class InFlight<Origin extends string = string> {
  private readonly adds = new Map<string, PendingAdd<Origin>>();
  /** Adds in flight as one (a restore), undefined when none. */
  private bulk: BulkAdds<Origin> | undefined;
  private readonly rems = new Set<string>();
  /** Failed rems: the entry and when to try again (seconds). */
  private readonly retries = new Map<string, { entry: Entry; at: number }>();
  /**
   * Blocks whose rem worked but whose entry could not be deleted (or its
   * id cleared) yet: written again by expiry, never released again.
   */
  private readonly unrecorded = new Map<string, Entry>();

  /**
   * No helper work of any entry: nothing to ask about one, so that the engine builds no id for a notification (built
   * for each one of a flood, the ids were 18% of what the daemon allocated: doc/daemon.md §12).
   */
  get idle(): boolean {
    return this.adds.size === 0 && this.bulk === undefined && this.rems.size === 0 && this.retries.size === 0 && this.unrecorded.size === 0;
  }

  /** Some release is not written yet (releaseUnrecorded): written entries must be told (recorded). */
  get releasesUnrecorded(): boolean {
    return this.unrecorded.size !== 0;
  }

  /** An add of the entry is running (or its start waits for a commit). */
  adding(id: string): boolean {
    return this.adds.has(id) || (this.bulk !== undefined && this.bulk.pending(id) !== undefined);
  }

  /** The add running for the entry, undefined when none. */
  pendingAdd(id: string): PendingAdd<Origin> | undefined {
    return this.adds.get(id) ?? this.bulk?.pending(id);
  }

  /** Adds run as one (a restore). */
  get inBulk(): boolean {
    return this.bulk !== undefined;
  }

  /** Many adds start as one (a restore), or (undefined) are all over. */
  setBulk(bulk: BulkAdds<Origin> | undefined): void {
    this.bulk = bulk;
  }

  addStarted(id: string, add: PendingAdd<Origin>): void {
    this.adds.set(id, add);
  }

  /** The add is over (or was never started): what it was, undefined when it was not in flight. */
  addEnded(id: string): PendingAdd<Origin> | undefined {
    const add = this.adds.get(id);
    if (add === undefined) return this.bulk?.end(id);
    this.adds.delete(id);
    return add;
  }

  removing(id: string): boolean {
    return this.rems.has(id);
  }

  /** A rem starts: no longer waiting for a retry. */
  remStarted(id: string): void {
    this.rems.add(id);
    this.retries.delete(id);
  }

  remEnded(id: string): void {
    this.rems.delete(id);
  }

  /** An add or rem of the entry is running. */
  busy(id: string): boolean {
    return this.rems.has(id) || this.adding(id);
  }

  /** A failed rem, tried again at `at` (seconds). */
  retryRem(id: string, entry: Entry, at: number): void {
    this.retries.set(id, { entry, at });
  }

  /** The retries due at `now`, no longer waiting. */
  takeDueRetries(now: number): Entry[] {
    const due: Entry[] = [];
    for (const [id, retry] of this.retries) {
      if (retry.at > now) continue;
      this.retries.delete(id);
      due.push(retry.entry);
    }
    return due;
  }

  /** When the first retry is due (seconds), undefined when none waits. */
  nextRetry(): number | undefined {
    let next: number | undefined;
    for (const { at } of this.retries.values()) if (next === undefined || at < next) next = at;
    return next;
  }

  /**
   * Its rem worked and its entry is not written yet: the block is gone.  Asked for every notification, as `recorded` is
   * told: an empty map is not looked in, so that the id, built by concatenation, is never flattened and hashed (2% of
   * the daemon's time under a flood).
   */
  released(id: string): boolean {
    return this.unrecorded.size !== 0 && this.unrecorded.has(id);
  }

  releaseUnrecorded(id: string, entry: Entry): void {
    this.unrecorded.set(id, entry);
  }

  /** The entry was written or deleted since: no longer a release to record. */
  recorded(id: string): void {
    if (this.unrecorded.size !== 0) this.unrecorded.delete(id);
  }

  /** The releases to write, in the order they came. */
  unrecordedEntries(): Entry[] {
    return [...this.unrecorded.values()];
  }

  /** Every release to write was written. */
  allRecorded(): void {
    this.unrecorded.clear();
  }

  /** Any of the four: an add or rem running, a rem to try again, a release to write. */
  unsettled(id: string): boolean {
    return this.rems.has(id) || this.retries.has(id) || this.unrecorded.has(id) || this.adding(id);
  }

  /** Not an add or rem running nor a rem to try again: eviction may delete the entry. */
  evictable(id: string): boolean {
    return !(this.rems.has(id) || this.retries.has(id) || this.adding(id));
  }

  /** The entries with an add, a rem or an unwritten release of their own (not those of the bulk adds). */
  ownIds(): string[] {
    return [...this.adds.keys(), ...this.rems, ...this.unrecorded.keys()];
  }

  get counts(): { adds: number; rems: number; remRetries: number; unrecorded: number } {
    const adds = this.adds.size + (this.bulk?.size ?? 0);
    return { adds, rems: this.rems.size, remRetries: this.retries.size, unrecorded: this.unrecorded.size };
  }

  /** The wall clock stepped by `step` seconds: the times held here move with the entries'. */
  shiftTimes(step: number): void {
    this.bulk?.shiftTimes(step);
    for (const retry of this.retries.values()) retry.at += step;
    for (const { before, wrote } of this.adds.values()) {
      wrote.last += step;
      if (before !== undefined && before.last !== 0) before.last += step;
    }
  }

  /** The entries of rule `name` were flushed: their retries and unwritten releases go. */
  forgetName(name: string): void {
    for (const [id, retry] of this.retries) if (retry.entry.key.name === name) this.retries.delete(id);
    for (const [id, e] of this.unrecorded) if (e.key.name === name) this.unrecorded.delete(id);
  }
}
