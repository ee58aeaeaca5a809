// A bounded cache of the entry table's rows for the state store (store.ts,
// `cache`): the rows in use stay, the others go, at O(1) per access.
//
// Rows by address, then by the rest of the key compared field by field: a
// key of every field as one string (run/inflight.ts entryId) costs its building and hashing
// at each look-up, 0.75 µs, as much as the rest of a hit.  An address has
// one or a few entries (one per rule it met).
//
// Two generations of at most half the rows each: rows are set in the young
// one; an address found in the old one moves to the young one; when the
// young one is full it becomes the old one and the old one goes.  A row in
// use within the last CAPACITY / 2 rows set stays.  Not one Map with its
// oldest key deleted: V8 leaves a deleted key's slot in place until the
// table is rebuilt, and finding the oldest key walks over them: a cache
// full of a spray of new addresses ran at a third of the speed of no cache
// at all (test/bench/state.ts).
import type { EffectiveRule } from '../types.js';
import { sameRule } from './rule.js';

/** A row of the entry table as the cache keeps it. */
export interface CachedRow {
  readonly key: EffectiveRule;
  readonly rowid: number;
  count: number;
  last: number;
  id: string;
  hold: number;
  block: number;
  /** BLOCKED (store.ts), for the kept counts. */
  blocked: boolean;
}

export class RowCache {
  private young = new Map<string, CachedRow[]>();
  private old = new Map<string, CachedRow[]>();
  /** Rows in `young`. */
  private youngRows = 0;

  /** At most `capacity` rows. */
  constructor(private readonly capacity: number) {}

  get(key: EffectiveRule): CachedRow | undefined {
    const rows = this.young.get(key.address) ?? this.adopt(key.address);
    if (rows !== undefined) for (const row of rows) if (sameRule(row.key, key)) return row;
    return undefined;
  }

  /**
   * Caches `row`, whose key is not cached (delete it first).  The row is the cache's from then on, its key too: no
   * effective rule is changed in place anywhere.
   */
  set(row: CachedRow): void {
    const address = row.key.address;
    let rows = this.young.get(address) ?? this.adopt(address);
    if (rows === undefined) {
      if (this.youngRows >= this.capacity / 2) {
        this.old = this.young;
        this.young = new Map();
        this.youngRows = 0;
      }
      this.young.set(address, (rows = []));
    }
    rows.push(row);
    this.youngRows++;
  }

  delete(key: EffectiveRule): void {
    for (const generation of [this.young, this.old]) {
      const rows = generation.get(key.address);
      const i = rows?.findIndex((row) => sameRule(row.key, key)) ?? -1;
      if (i < 0) continue;
      rows!.splice(i, 1);
      if (generation === this.young) this.youngRows--;
      if (rows!.length === 0) generation.delete(key.address);
    }
  }

  clear(): void {
    this.young.clear();
    this.old.clear();
    this.youngRows = 0;
  }

  /** The rows of `address` in the old generation moved to the young one; undefined when there are none. */
  private adopt(address: string): CachedRow[] | undefined {
    const rows = this.old.get(address);
    if (rows === undefined) return undefined;
    this.old.delete(address);
    this.young.set(address, rows);
    this.youngRows += rows.length;
    return rows;
  }
}
