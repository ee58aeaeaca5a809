// What the daemon does with notifications and time (daemon.md §5-§7): the
// count arithmetic per message type, the block check, expiry, flush and
// restore; the helper runs beside it (G27).
//
// Crash safety: the database always knows every rule that may be in the
// packet filter.  An entry reaching its limit is committed (limit reached,
// no id) before the helper's add starts, and the id is recorded when the
// add returns: an entry at its limit without an id may or may not be in
// the filter, so restore re-adds it and expiry removes it.  An entry is
// deleted only after its rem worked; a forever block lifted by AUTH_OK
// waits as `last` 0 until then (G15).
import type { CompiledRules } from '../conf/match.js';
import { matchProbe, probeOf } from '../conf/match.js';
import type { ConfEnv, InterfaceAddresses, Match, Probe, RuleSet } from '../conf/types.js';
import type { Change, HelperResult, HelperRunner, HelperTarget } from '../run/helper.js';
import { isBlocked } from '../state/entry.js';
import type { StateStore } from '../state/store.js';
import type { BlockOrigin, Metrics, ReleaseOrigin } from './metrics.js';
import { localTime } from '../time.js';
import { ANY, WireType, type EffectiveRule, type Entry, type LogFn, type Notification } from '../types.js';

/** Releases started by one expiry pass; the next pass starts when they finish. */
const EXPIRE_CHUNK = 64;
/** Entries without a filter rule deleted in one transaction. */
const DELETE_CHUNK = 500;
/** Operations in one batch call: few calls for a restore, each a bounded one. */
const BATCH_MAX = 10000;
/** Entries evicted in one transaction at most (--max-entries); more go in the passes after. */
const EVICT_CHUNK = 5000;
/** Eviction is logged at most this often (ms). */
const EVICT_LOG_MS = 60_000;
/** The expiry timer runs on a monotonic clock, deadlines are wall-clock: look again at least this often. */
const MAX_TIMER_MS = 3_600_000;

export interface EngineOptions {
  store: StateStore;
  helper: HelperRunner;
  families: ConfEnv['families'];
  log: LogFn;
  /** The current debug level (SIGUSR1/SIGUSR2 change it). */
  debug: () => number;
  /** Now, in whole seconds since the epoch. */
  clock: () => number;
  /** Seconds between tries of a failed `rem` (G17). */
  remRetry: number;
  metrics?: Metrics;
  /** --max-entries: beyond it entries not blocked are evicted, soonest expiry first; 0 or none: no limit. */
  maxEntries?: number;
}

/** An add in flight: what to put back when the helper fails (upstream does not save the failing count). */
interface PendingAdd {
  before: { count: number; last: number } | undefined;
  wrote: { count: number; last: number };
  /** The unmasked client address, for the "blocked" line; undefined for a restore. */
  client: string | undefined;
  origin: BlockOrigin;
}

/** What a manual unblock did. */
export interface UnblockResult {
  /** Blocks lifted through the helper, their entries deleted. */
  released: Entry[];
  /** Entries deleted that had no block (still counting, or their add had failed). */
  deleted: Entry[];
  /** Entries kept: their rem failed, or an add or rem of them was in flight. */
  failed: { entry: Entry; reason: string }[];
}

const keyOf = (k: EffectiveRule): string =>
  `${k.name}\0${k.address}\0${k.port}\0${k.family}\0${k.lmask}\0${k.proto}\0${k.uid}\0${k.nfail}\0${k.rmask}\0${k.duration}`;

export const targetOf = (k: EffectiveRule): HelperTarget => ({ name: k.name, proto: k.proto === ANY ? '' : k.proto === 6 ? 'tcp' : 'udp', address: k.address, mask: k.lmask, port: k.port });

/** Batch lines cannot carry empty fields: a manual block of every port goes alone. */
const batchable = (c: Change): boolean => c.target.proto !== '' && c.target.port >= 0;


function describeFailure(r: HelperResult): string {
  if (r.timedOut) return ' (timed out)';
  if (r.error) return ` (${r.error})`;
  if (r.signal) return ` (killed by ${r.signal})`;
  return r.exitCode ? ` (exit status ${r.exitCode})` : '';
}

/** address/mask:port as the log lines show an entry (`address`: the client's, unmasked); a manual block of every port as `*`. */
const where = (k: EffectiveRule, address = k.address): string => `${address}/${k.lmask}:${k.port === ANY ? '*' : k.port}`;

/** A manual change refused for now: the daemon stops, or the entry has a helper call running. */
export class EngineBusy extends Error {
  constructor(
    message: string,
    readonly code: 'stopping' | 'busy',
  ) {
    super(message);
  }
}

export class Engine {
  private rules: CompiledRules | undefined;
  private interfaces: InterfaceAddresses = new Map();
  private readonly pendingAdds = new Map<string, PendingAdd>();
  private readonly pendingRems = new Set<string>();
  /** Failed rems: the entry and when to try again. */
  private readonly remRetry = new Map<string, { entry: Entry; at: number }>();
  private expiryTimer: NodeJS.Timeout | undefined;
  /** No new helper calls; results of running ones are still recorded until the store closes. */
  private stopped = false;
  private batchMode = false;
  /** When eviction was last logged (ms), and what went since. */
  private evictLog = { at: -Infinity, evicted: 0 };
  private evictScheduled = false;
  /** Helper calls of the current stretch of work, dispatched together. */
  private readonly calls: { change: Change; done: (result: HelperResult) => void }[] = [];

  constructor(private readonly o: EngineOptions) {}

  setRules(rules: CompiledRules, interfaces: InterfaceAddresses): void {
    this.rules = rules;
    this.interfaces = interfaces;
  }

  setInterfaces(interfaces: InterfaceAddresses): void {
    this.interfaces = interfaces;
  }

  /** The rules a probe meets, as a notification would. */
  match(probe: Probe): Match | undefined {
    return this.rules && matchProbe(this.rules, probe, this.interfaces);
  }

  /** One drained batch: one transaction, in arrival order; helper calls start after the commit. */
  processBatch(batch: readonly Notification[]): void {
    const now = this.o.clock();
    const afterCommit: (() => void)[] = [];
    const added: string[] = [];
    let evicted: number | undefined;
    try {
      this.o.store.transaction(() => {
        for (const n of batch) this.processOne(n, now, afterCommit, added);
        // in the same commit: a spray of new addresses costs no second one
        evicted = this.evictSome();
      });
    } catch (e) {
      // upstream logs state_put failures and goes on; the batch is lost
      this.o.log('err', `state_put: failed (${(e as Error).message}), ${batch.length} notifications lost`);
      for (const id of added) this.pendingAdds.delete(id);
      return;
    }
    if (this.o.debug() > 1) this.o.log('debug', `committed ${batch.length}`);
    for (const start of afterCommit) start();
    this.evicted(evicted);
    this.armExpiry();
  }

  /**
   * --max-entries: the entries that are not blocked go, those that would
   * expire soonest first (those of rules without expiry last), a chunk per
   * transaction, the rest after a turn of the event loop.  Never one at its limit or with a helper call in flight: the crash-safety
   * contract above holds (and blocked entries stay, whatever their number).
   */
  evict(): void {
    let evicted: number | undefined;
    this.guard(() => (evicted = this.o.store.transaction(() => this.evictSome())));
    this.evicted(evicted);
  }

  /**
   * Up to a chunk of the excess over --max-entries deleted, in the caller's
   * transaction: how many went (0: none could), undefined when within the limit.
   */
  private evictSome(): number | undefined {
    const max = this.o.maxEntries ?? 0;
    if (max === 0 || this.stopped || this.evictScheduled) return undefined;
    const { store } = this.o;
    const excess = store.size() - max;
    if (excess <= 0) return undefined;
    const busy = (k: EffectiveRule): boolean => {
      const id = keyOf(k);
      return this.pendingAdds.has(id) || this.pendingRems.has(id) || this.remRetry.has(id);
    };
    return store.evict(Math.min(excess, EVICT_CHUNK), busy, this.pendingAdds.size + this.pendingRems.size + this.remRetry.size);
  }

  /** After the commit: evictions counted and logged (at most once per interval), a full chunk followed by the next. */
  private evicted(n: number | undefined): void {
    if (n === undefined) return;
    const { log, store } = this.o;
    const max = this.o.maxEntries ?? 0;
    this.o.metrics?.evicted(n);
    this.evictLog.evicted += n;
    const now = Date.now();
    if (now - this.evictLog.at >= EVICT_LOG_MS) {
      if (n === 0) log('warning', `${store.size()} entries, over --max-entries ${max}, and none can be evicted: all are blocked or busy`);
      else log('notice', `--max-entries ${max} reached: evicted ${this.evictLog.evicted} entries not blocked, soonest expiry first`);
      this.evictLog = { at: now, evicted: 0 };
    }
    if (n === EVICT_CHUNK) {
      this.evictScheduled = true;
      setImmediate(() => {
        this.evictScheduled = false;
        this.evict();
      });
    }
  }

  private processOne(n: Notification, now: number, afterCommit: (() => void)[], added: string[]): void {
    const { log, store } = this.o;
    const debug = this.o.debug() > 0;
    if (debug || n.text !== '') {
      log(n.text !== '' ? 'info' : 'debug', `processing type=${n.type} remote=${n.remote.address}:${n.remote.port} msg="${n.text}" uid=${n.uid} gid=${n.gid}`);
    }
    const probe = probeOf(n, this.o.families);
    const match = probe && this.rules && matchProbe(this.rules, probe, this.interfaces);
    this.o.metrics?.notification(n.type, !!match);
    if (!match) {
      log('debug', 'no rule matched');
      return;
    }
    const key = match.effective;
    const id = keyOf(key);
    const stored = store.get(key);
    const e: Entry = stored ?? { key, count: 0, last: 0, id: '' };
    const before = stored && { count: stored.count, last: stored.last };
    if (debug) log('debug', `process: initial db state for ${key.address}: count=${e.count}/${key.nfail} last=${localTime(e.last)} now=${localTime(now)}`);

    if (n.type === WireType.DELETE) {
      if (e.last === 0) return;
      e.count = 0;
      e.last = 0;
      // G15: a forever block would never expire: lift it now (the entry goes once rem worked)
      if (key.duration === ANY && e.id !== '' && !this.pendingAdds.has(id) && !this.pendingRems.has(id)) afterCommit.push(() => this.release(e, 'reset'));
    } else {
      // ABUSE sets the count to the limit minus 2, then counts as ADD; ADD is BADUSER plus one
      if (n.type === WireType.ABUSE && key.nfail !== ANY) e.count = key.nfail - 2;
      e.count += n.type === WireType.BADUSER ? 1 : 2;
      e.last = now;
      if (isBlocked(e)) {
        if (e.id !== '') log('info', `blocked ${n.remote.address}/${key.lmask}:${key.port} for ${key.duration} seconds`);
        else if (!this.pendingAdds.has(id)) {
          this.pendingAdds.set(id, { before, wrote: { count: e.count, last: e.last }, client: n.remote.address, origin: 'limit' });
          added.push(id);
          afterCommit.push(() => this.startAdd(key, ''));
        }
      }
    }
    store.put(e);
    if (debug) log('debug', `process: final db state for ${key.address}: count=${e.count}/${key.nfail} last=${localTime(e.last)} now=${localTime(now)}`);
  }

  private startAdd(key: EffectiveRule, oldId: string, then?: (result: HelperResult) => void): void {
    this.call({ action: 'add', target: targetOf(key), id: oldId }, (result) => {
      this.addDone(key, oldId, result);
      then?.(result);
    });
  }

  /**
   * Runs a helper call.  The calls made in one stretch of work (a batch of
   * notifications, an expiry pass, a restore) go to a helper that knows
   * batch mode as batches: one process, one packet-filter transaction.
   */
  private call(change: Change, done: (result: HelperResult) => void): void {
    this.calls.push({ change, done });
    if (this.calls.length === 1) queueMicrotask(() => this.dispatchCalls());
  }

  private dispatchCalls(): void {
    let calls = this.calls.splice(0);
    if (this.batchMode && calls.length > 1) {
      const singles = calls.filter((c) => !batchable(c.change));
      calls = calls.filter((c) => batchable(c.change));
      this.dispatchSingles(singles);
    }
    if (!this.batchMode || calls.length === 1) {
      this.dispatchSingles(calls);
      return;
    }
    for (let i = 0; i < calls.length; i += BATCH_MAX) {
      const chunk = calls.slice(i, i + BATCH_MAX);
      void this.o.helper.batch(chunk.map((c) => c.change)).then((results) => this.settleBatch(chunk, results));
    }
  }

  private dispatchSingles(calls: { change: Change; done: (result: HelperResult) => void }[]): void {
    for (const { change, done } of calls) void this.o.helper.change(change.action, change.target, change.id).then(done);
  }

  /** A batch's results recorded in one transaction: one commit, not one per entry. */
  private settleBatch(chunk: { done: (result: HelperResult) => void }[], results: HelperResult[]): void {
    try {
      this.o.store.transaction(() => chunk.forEach((c, j) => c.done(results[j]!)));
    } catch (e) {
      // as for a batch of notifications: the entries stay as they were before the helper ran
      this.o.log('err', `state_put: failed (${(e as Error).message}), ${chunk.length} helper results not recorded`);
    }
  }

  /** The helper answered `batch` to `capabilities`. */
  setBatchMode(on: boolean): void {
    this.batchMode = on;
  }

  private addDone(key: EffectiveRule, oldId: string, result: HelperResult): void {
    const id = keyOf(key);
    const pending = this.pendingAdds.get(id);
    this.pendingAdds.delete(id);
    if (pending === undefined || result.cancelled) return; // cancelled at stop: still at its limit, restore re-adds it
    const { log, store } = this.o;
    const target = `${key.name} ${targetOf(key).proto} ${where(key)}`;
    this.guard(() => {
      const e = store.get(key);
      if (result.line === undefined) {
        // G16: no line is a failure; upstream then does not save the count, so the next failure tries again
        log('err', `add ${target}: the helper gave no rule id${describeFailure(result)}`);
        if (e === undefined || pending.client === undefined) return; // a restore keeps its old id
        if (e.count === pending.wrote.count && e.last === pending.wrote.last) {
          if (pending.before === undefined) store.delete(key);
          else store.put({ ...e, ...pending.before });
        } else {
          store.put({ ...e, count: Math.max(0, e.count - (pending.wrote.count - (pending.before?.count ?? 0))) });
        }
        return;
      }
      if (result.id === '') log('warning', `add ${target}: the helper printed an empty rule id; add will run again on the next failure`);
      if (pending.client !== undefined) log('info', `blocked ${where(key, pending.client)} for ${key.duration} seconds`);
      this.o.metrics?.block(pending.origin);
      // an entry gone meanwhile comes back, so that the rule just installed is released like any other
      const updated = { ...(e ?? { key, count: 0, last: 0 }), id: result.id ?? oldId };
      store.put(updated);
      if (updated.last === 0 && key.duration === ANY && updated.id !== '') this.release(updated, 'reset'); // AUTH_OK came meanwhile (G15)
    });
    this.armExpiry();
  }

  /**
   * Runs `rem` for a blocked entry; once it worked, logs the release and
   * deletes the entry if it is still due (a failure may have come in
   * meanwhile).  A failed rem keeps the entry and tries again later, so
   * that no filter rule is orphaned (G17).  An entry at its limit whose id
   * is unknown (its add may or may not have happened) gets one best try.
   */
  private release(e: Entry, origin: ReleaseOrigin = 'expiry'): void {
    const id = keyOf(e.key);
    if (this.stopped || this.pendingRems.has(id)) return;
    this.pendingRems.add(id);
    this.remRetry.delete(id);
    const k = e.key;
    this.call({ action: 'rem', target: targetOf(k), id: e.id }, (result) => {
      this.pendingRems.delete(id);
      if (result.cancelled) return; // at stop: the entry is still there, the next start releases it
      const { store, log } = this.o;
      const worked = result.line !== undefined || result.exitCode === 0;
      if (!worked && e.id !== '') {
        log('err', `rem ${k.name} ${targetOf(k).proto} ${where(k)} failed${describeFailure(result)}; retrying in ${this.o.remRetry} s`);
        this.remRetry.set(id, { entry: e, at: this.o.clock() + this.o.remRetry });
        this.armExpiry();
        return;
      }
      if (e.id !== '') {
        log('info', `released ${where(k)} after ${k.duration} seconds`);
        this.o.metrics?.release(origin);
      }
      this.guard(() => {
        const current = store.get(k);
        if (current === undefined) return;
        if (this.isDue(current, this.o.clock())) store.delete(k);
        else {
          // a failure came in while the block was being lifted: the rule is gone, go on counting
          store.put({ ...current, id: '' });
          if (isBlocked(current) && !this.stopped && !this.pendingAdds.has(id)) {
            this.pendingAdds.set(id, { before: undefined, wrote: { count: current.count, last: current.last }, client: k.address, origin: 'limit' });
            this.startAdd(k, '');
          }
        }
      });
      this.armExpiry();
    });
  }

  /** Expired (`last + duration < now`), or a forever block lifted by AUTH_OK. */
  private isDue(e: Entry, now: number): boolean {
    return e.key.duration === ANY ? e.last === 0 && e.id !== '' : e.last + e.key.duration < now;
  }

  /**
   * daemon.md §6: release what is due, a chunk at a time so that the event
   * loop never waits long; the rest comes in the next pass, started when
   * these releases finish or at once for plain deletions.
   */
  expire(): void {
    if (this.stopped) return;
    const now = this.o.clock();
    const { store } = this.o;
    for (const [id, retry] of this.remRetry) {
      if (retry.at > now) continue;
      this.remRetry.delete(id);
      // try again only if the entry still waits for its release
      const current = store.get(retry.entry.key);
      if (current !== undefined && current.id === retry.entry.id && this.isDue(current, now)) this.release(current);
    }
    // what is in flight or waiting to be retried is read again and skipped
    const busy = this.pendingAdds.size + this.pendingRems.size + this.remRetry.size;
    const capacity = Math.max(0, EXPIRE_CHUNK - this.pendingRems.size);
    const limit = busy + DELETE_CHUNK + capacity;
    const due = store.due(now, limit);
    const releases: Entry[] = [];
    let deleted = 0;
    this.guard(() =>
      store.transaction(() => {
        for (const e of due) {
          const id = keyOf(e.key);
          if (this.pendingAdds.has(id) || this.pendingRems.has(id) || this.remRetry.has(id)) continue;
          if (this.o.debug() > 1) this.o.log('debug', `update: ${e.key.address}:${e.key.port} count=${e.count} duration=${e.key.duration} last=${localTime(e.last)} now=${localTime(now)}`);
          if (e.id === '' && !isBlocked(e)) {
            if (deleted < DELETE_CHUNK) {
              store.delete(e.key);
              deleted++;
            }
          } else if (releases.length < capacity) releases.push(e);
        }
      }),
    );
    for (const e of releases) this.release(e);
    // more to delete: go on after a turn of the loop; the releases re-arm as they finish
    if (due.length === limit && deleted === DELETE_CHUNK) this.schedule(0);
    // the pass's own clock: one read now could be a second later and skip what expires in between
    else this.armExpiry(now);
  }

  /**
   * One timer for the next expiry (TODO 1): wakes only when something is
   * due.  After a change an entry may be due already (an AUTH_OK reset):
   * then the pass runs at once; the pass itself only looks ahead, since
   * what it leaves due is waiting for a helper call that re-arms the timer:
   * `passAt` is the second of that pass, and entries expiring from then on count.
   */
  armExpiry(passAt?: number): void {
    if (this.stopped) return;
    let next = this.o.store.nextExpiry(passAt);
    if (next !== undefined) next += 1; // expired means last + duration < now: the second after
    for (const { at } of this.remRetry.values()) if (next === undefined || at < next) next = at;
    if (next === undefined) {
      clearTimeout(this.expiryTimer);
      this.expiryTimer = undefined;
      return;
    }
    this.schedule(Math.min(Math.max(0, next * 1000 - Date.now()), MAX_TIMER_MS));
  }

  private schedule(delay: number): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => this.expire(), delay);
  }

  /** Start-up: forever blocks lifted by AUTH_OK whose rem had not worked yet. */
  resumeReleases(): void {
    for (const e of this.o.store.lifted()) this.release(e, 'reset');
  }

  /** Rule names to flush (daemon.md §7.1, G18): remote then local configured names, then those only in the database. */
  flushNames(rules: RuleSet): string[] {
    const names = new Set<string>();
    for (const r of [...rules.remote, ...rules.local]) if (r.name !== '') names.add(r.name);
    for (const name of this.o.store.names()) if (name !== '') names.add(name);
    return [...names];
  }

  /** `flush <name>` for each name; results ignored. */
  async flush(names: readonly string[]): Promise<void> {
    await Promise.all(names.map((name) => this.o.helper.flush(name)));
  }

  /**
   * daemon.md §7.2: re-add every block with its old id, those whose add was
   * pending included; not the ones being released (`last` 0).
   */
  restore(): number {
    let n = 0;
    for (const e of this.o.store.blocked()) {
      const id = keyOf(e.key);
      if (e.last === 0 || this.pendingAdds.has(id) || this.pendingRems.has(id)) continue;
      this.pendingAdds.set(id, { before: undefined, wrote: { count: e.count, last: e.last }, client: undefined, origin: 'restore' });
      this.startAdd(e.key, e.id);
      n++;
    }
    return n;
  }

  /**
   * blocklistctl block: the entry at its limit from now on, and `add`;
   * resolves with the helper's result (a failure leaves the entry as it
   * was).  An entry already blocked only gets its time renewed.
   */
  async manualBlock(key: EffectiveRule): Promise<{ entry: Entry; result: HelperResult | undefined }> {
    const id = keyOf(key);
    if (this.stopped) throw new EngineBusy('the daemon is stopping', 'stopping');
    if (this.pendingAdds.has(id) || this.pendingRems.has(id)) throw new EngineBusy('an add or rem of this entry is running: try again', 'busy');
    const { store } = this.o;
    const now = this.o.clock();
    const existing = store.get(key);
    const count = Math.max(existing?.count ?? 0, key.nfail === ANY ? 0 : key.nfail);
    if (existing !== undefined && existing.id !== '') {
      const entry = { key, count, last: now, id: existing.id };
      store.put(entry);
      this.armExpiry();
      return { entry, result: undefined };
    }
    store.put({ key, count, last: now, id: '' });
    this.pendingAdds.set(id, { before: existing && { count: existing.count, last: existing.last }, wrote: { count, last: now }, client: key.address, origin: 'manual' });
    const result = await new Promise<HelperResult>((resolve) => this.startAdd(key, '', resolve));
    return { entry: store.get(key) ?? { key, count, last: now, id: '' }, result };
  }

  /**
   * blocklistctl unblock: `rem` for the entries with a filter rule (or whose
   * add may have happened), then the entries deleted.  One whose rem fails
   * stays as it was.
   */
  async manualUnblock(entries: readonly Entry[]): Promise<UnblockResult> {
    const { store, log } = this.o;
    const done: UnblockResult = { released: [], deleted: [], failed: [] };
    const plain: Entry[] = [];
    const releasing = Promise.all(
      entries.map(async (e) => {
        const id = keyOf(e.key);
        if (this.stopped) return void done.failed.push({ entry: e, reason: 'the daemon is stopping' });
        if (this.pendingAdds.has(id) || this.pendingRems.has(id)) return void done.failed.push({ entry: e, reason: 'an add or rem of it is running' });
        if (e.id === '' && !isBlocked(e)) return void plain.push(e);
        this.pendingRems.add(id);
        this.remRetry.delete(id);
        const result = await new Promise<HelperResult>((resolve) => this.call({ action: 'rem', target: targetOf(e.key), id: e.id }, resolve));
        this.pendingRems.delete(id);
        if (result.cancelled) return void done.failed.push({ entry: e, reason: 'the daemon is stopping' });
        // an entry without id had a failed add: the rem is a best try
        if (result.line === undefined && result.exitCode !== 0 && e.id !== '') return void done.failed.push({ entry: e, reason: `rem failed${describeFailure(result)}` });
        this.guard(() => store.delete(e.key));
        if (e.id === '') return void done.deleted.push(e);
        log('info', `released ${where(e.key)} by hand`);
        this.o.metrics?.release('manual');
        done.released.push(e);
      }),
    );
    // the entries without a block in one transaction: one commit, not one per entry
    this.guard(() => store.transaction(() => plain.forEach((e) => store.delete(e.key))));
    done.deleted.push(...plain);
    await releasing;
    this.armExpiry();
    return done;
  }

  /** blocklistctl flush: `flush <name>` for each name, then the entries of the names flushed deleted. */
  async flushEntries(names: readonly string[]): Promise<{ name: string; ok: boolean; deleted: number; error?: string }[]> {
    const results = await Promise.all(
      names.map(async (name) => {
        const r = await this.o.helper.flush(name);
        if (r.line === undefined && r.exitCode !== 0) return { name, ok: false, deleted: 0, error: `flush failed${describeFailure(r)}` };
        // a chunk at a time, a turn of the event loop between: a name with many entries does not stall the notifications
        let deleted = 0;
        for (let chunk = DELETE_CHUNK; chunk === DELETE_CHUNK; deleted += chunk) {
          chunk = 0;
          this.guard(() => (chunk = this.o.store.deleteName(name, DELETE_CHUNK)));
          await new Promise((resolve) => setImmediate(resolve));
        }
        for (const [id, retry] of this.remRetry) if (retry.entry.key.name === name) this.remRetry.delete(id);
        return { name, ok: true, deleted };
      }),
    );
    this.armExpiry();
    return results;
  }

  /** Helper work in flight, for `status`. */
  get inFlight(): { adds: number; rems: number; remRetries: number } {
    return { adds: this.pendingAdds.size, rems: this.pendingRems.size, remRetries: this.remRetry.size };
  }

  /** A store write outside a batch: a failure is logged, not fatal. */
  private guard(write: () => void): void {
    try {
      write();
    } catch (e) {
      this.o.log('err', `state_put: failed (${(e as Error).message})`);
    }
  }

  /** No more helper calls or timers; results of running calls are still recorded. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.expiryTimer);
  }
}
