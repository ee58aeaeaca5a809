// blocklistctl's changes through the daemon: block, unblock and flush by
// hand.  The engine counts, expires and restores; these commands take the
// same steps it does (an add recorded by its crash-safety contract, a rem
// marked in flight) through its primitives, and refuse an entry the engine
// is working on rather than wait for it.
import type { HelperRunner } from '../run/helper.js';
import { failureText, type HelperResult } from '../run/helper.js';
import { isBlocked } from '../state/entry.js';
import type { StateStore } from '../state/store.js';
import { ANY, type EffectiveRule, type Entry, type LogFn } from '../types.js';
import { entryId } from '../run/inflight.js';
import { blockedFor, DELETE_CHUNK, entryFields, remLeftRule, entryText, type Engine } from './engine.js';
import type { Metrics } from './metrics.js';

/** What a manual unblock did. */
export interface UnblockResult {
  /** Blocks lifted through the helper, their entries deleted. */
  released: Entry[];
  /** Entries deleted that had no block (still counting, or their add had failed). */
  deleted: Entry[];
  /** Entries kept: their rem failed, or an add or rem of them was in flight. */
  failed: { entry: Entry; reason: string }[];
}

/** A manual change refused for now: the daemon stops, or the entry has a helper call running. */
export class EngineBusy extends Error {
  override readonly name = 'EngineBusy';

  constructor(
    message: string,
    readonly code: 'stopping' | 'busy',
  ) {
    super(message);
    this.name = 'EngineBusy';
  }
}

export interface ManualCommandsOptions {
  engine: Engine;
  store: StateStore;
  helper: HelperRunner;
  log: LogFn;
  metrics?: Metrics;
}

export class ManualCommands {
  private readonly engine: Engine;
  private readonly store: StateStore;
  private readonly helper: HelperRunner;
  private readonly log: LogFn;
  private readonly metrics: Metrics | undefined;

  constructor(options: ManualCommandsOptions) {
    this.engine = options.engine;
    this.store = options.store;
    this.helper = options.helper;
    this.log = options.log;
    this.metrics = options.metrics;
  }

  /**
   * blocklistctl block: the entry at its limit from now on, and `add`;
   * resolves with the helper's result (a failure leaves the entry as it
   * was).  An entry already blocked only gets its time renewed.
   */
  async block(key: EffectiveRule): Promise<{ entry: Entry; result: HelperResult | undefined }> {
    const { engine, store } = this;
    if (engine.stopping) throw new EngineBusy('the daemon is stopping', 'stopping');
    if (engine.busy(key)) throw new EngineBusy('an add or rem of this entry is running: try again', 'busy');
    const now = engine.now();
    const existing = store.get(key);
    const count = Math.max(existing?.count ?? 0, key.nfail === ANY ? 0 : key.nfail);
    if (existing !== undefined && existing.id !== '' && !engine.released(key)) {
      const entry = { key, count, last: now, id: existing.id };
      store.put(entry);
      engine.armExpiry();
      engine.renewed(key, existing.id, now, key.duration);
      return { entry, result: undefined };
    }
    store.put({ key, count, last: now, id: '' });
    const result = await engine.add(key, existing && { count: existing.count, last: existing.last }, { count, last: now }, 'manual');
    return { entry: store.get(key) ?? { key, count, last: now, id: '' }, result };
  }

  /**
   * blocklistctl unblock: `rem` for the entries with a filter rule (or whose
   * add may have happened), then the entries deleted.  One whose rem fails
   * stays as it was.
   */
  async unblock(entries: readonly Entry[]): Promise<UnblockResult> {
    const { engine, store } = this;
    const done: UnblockResult = { released: [], deleted: [], failed: [] };
    const plain: Entry[] = [];
    const releasing = Promise.all(
      entries.map(async (e) => {
        if (engine.stopping) return void done.failed.push({ entry: e, reason: 'the daemon is stopping' });
        if (engine.busy(e.key)) return void done.failed.push({ entry: e, reason: 'an add or rem of it is running' });
        // released already (its entry not deleted yet), or never blocked
        if (engine.released(e.key) || (e.id === '' && !isBlocked(e))) return void plain.push(e);
        const result = await engine.remove(e);
        if (result.outcome === 'cancelled') return void done.failed.push({ entry: e, reason: 'the daemon is stopping' });
        // an entry without id had a failed add: the rem is a best try
        if (remLeftRule(result, e.id)) return void done.failed.push({ entry: e, reason: `rem failed${failureText(result)}` });
        // before the delete: the start a restore kept is found through the entry (engine.lasted)
        const lasted = engine.lasted(entryId(e.key), e);
        engine.guard(() => store.delete(e.key));
        if (e.id === '') return void done.deleted.push(e);
        this.log('info', `released ${entryText(e.key)} by hand${blockedFor(lasted)}`, {
          ...entryFields('release', e.key),
          origin: 'manual',
          duration: lasted,
        });
        this.metrics?.release('manual', e.key.name);
        done.released.push(e);
      }),
    );
    // the entries without a block in one transaction: one commit, not one per entry
    if (engine.guard(() => store.transaction(() => plain.forEach((e) => store.delete(e.key)))))
      for (const e of plain) engine.forgetRelease(e.key);
    done.deleted.push(...plain);
    await releasing;
    engine.armExpiry();
    return done;
  }

  /** blocklistctl flush: `flush <name>` for each name, then the entries of the names flushed deleted. */
  async flush(names: readonly string[]): Promise<{ name: string; ok: boolean; deleted: number; error?: string }[]> {
    const { engine, store } = this;
    const results = await Promise.all(
      names.map(async (name) => {
        const r = await this.helper.flush(name);
        if (r.outcome !== 'ok') return { name, ok: false, deleted: 0, error: `flush failed${failureText(r)}` };
        // a chunk at a time, a turn of the event loop between: a name with many entries does not stall the notifications
        let deleted = 0;
        for (let chunk = DELETE_CHUNK; chunk === DELETE_CHUNK; deleted += chunk) {
          chunk = 0;
          engine.guard(() => (chunk = store.deleteName(name, DELETE_CHUNK)));
          await new Promise((resolve) => setImmediate(resolve));
        }
        engine.forgetName(name);
        return { name, ok: true, deleted };
      }),
    );
    engine.armExpiry();
    return results;
  }
}
