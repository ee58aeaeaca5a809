// The adds of a restore as one (engine.ts refresh): in flight for the
// engine as any other add (run/inflight.ts), but kept in the database's
// temporary table `restoring` (state/store.ts restoreBegin), not as one
// JS object each: at 100,000 blocks the map of adds, its ids and their
// objects cost a restore a fifth of a second, and their collection more.
import type { BulkAdds, PendingAdd } from '../run/inflight.js';
import { keyOfId } from '../run/inflight.js';
import type { StateStore, StoredEntry } from '../state/store.js';
import type { BlockOrigin } from './metrics.js';

export class RestoreAdds implements BulkAdds<BlockOrigin> {
  constructor(
    private readonly store: StateStore,
    public size: number,
  ) {}

  pending(id: string): PendingAdd<BlockOrigin> | undefined {
    return this.added(this.store.restoring(keyOfId(id)));
  }

  end(id: string): PendingAdd<BlockOrigin> | undefined {
    const add = this.added(this.store.restoreEnd(keyOfId(id)));
    if (add !== undefined) this.size--;
    return add;
  }

  /** The adds whose entry changed since the restore read it (store.restoreChanged), no longer among these. */
  takeChanged(): StoredEntry[] {
    const changed = this.store.restoreChanged();
    this.size -= changed.length;
    return changed;
  }

  /** Every add, no longer among these (store.restoreEntries), as run/inflight.ts holds one. */
  takeAll(): { entry: StoredEntry; add: PendingAdd<BlockOrigin> }[] {
    const all = this.store.restoreEntries().map((entry) => ({ entry, add: this.added(entry)! }));
    this.store.restoreDropped();
    this.size = 0;
    return all;
  }

  shiftTimes(step: number): void {
    this.store.restoreShift(step);
  }

  /** A restore's add as run/inflight.ts holds one: nothing to put back, no client. */
  private added(read: { count: number; last: number } | undefined): PendingAdd<BlockOrigin> | undefined {
    return read && { before: undefined, wrote: { count: read.count, last: read.last }, client: undefined, origin: 'restore' };
  }
}
