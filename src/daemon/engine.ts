// What the daemon does with notifications and time (daemon.md §5-§7): the
// count arithmetic per message type, the block check, expiry, flush and
// restore; the helper runs beside it (G27).
//
// Crash safety: an entry reaching its limit is committed (limit reached,
// no id) before the helper's add starts, and the id is recorded when the
// add returns; an entry at its limit without an id is therefore a block
// that may or may not be in the packet filter, and restore re-adds it.
import type { CompiledRules } from '../conf/match.js';
import { matchProbe, probeOf } from '../conf/match.js';
import type { ConfEnv, InterfaceAddresses, RuleSet } from '../conf/types.js';
import type { HelperResult, HelperRunner, HelperTarget } from '../run/helper.js';
import type { StateStore } from '../state/store.js';
import { localTime } from '../time.js';
import { ANY, WireType, type EffectiveRule, type Entry, type LogFn, type Notification } from '../types.js';

/** Seconds between retries of a failed `rem` (G17). */
export const REM_RETRY_SECONDS = 60;

export interface EngineOptions {
  store: StateStore;
  helper: HelperRunner;
  families: ConfEnv['families'];
  log: LogFn;
  /** The current debug level (SIGUSR1/SIGUSR2 change it). */
  debug: () => number;
  /** Now, in whole seconds since the epoch. */
  clock: () => number;
}

/** An add in flight: what to restore when the helper fails (upstream does not save the failing count). */
interface PendingAdd {
  before: { count: number; last: number } | undefined;
  wrote: { count: number; last: number };
  /** The unmasked client address, for the "blocked" line. */
  client: string;
  /** A restore keeps the old id when the helper fails. */
  restore: boolean;
}

const keyOf = (k: EffectiveRule): string =>
  `${k.name}\0${k.address}\0${k.port}\0${k.family}\0${k.lmask}\0${k.proto}\0${k.uid}\0${k.nfail}\0${k.rmask}\0${k.duration}`;

export const targetOf = (k: EffectiveRule): HelperTarget => ({ name: k.name, proto: k.proto === 6 ? 'tcp' : 'udp', address: k.address, mask: k.lmask, port: k.port });

const isBlocked = (e: Entry): boolean => e.id !== '' || (e.key.nfail !== ANY && e.count >= e.key.nfail);

export class Engine {
  private rules: CompiledRules | undefined;
  private interfaces: InterfaceAddresses = new Map();
  private readonly pendingAdds = new Map<string, PendingAdd>();
  private readonly pendingRems = new Set<string>();
  /** Failed rems by key: when to try again. */
  private readonly remRetry = new Map<string, number>();
  private expiryTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly o: EngineOptions) {}

  setRules(rules: CompiledRules, interfaces: InterfaceAddresses): void {
    this.rules = rules;
    this.interfaces = interfaces;
  }

  setInterfaces(interfaces: InterfaceAddresses): void {
    this.interfaces = interfaces;
  }

  /** Helper calls started and not finished. */
  get helperCalls(): number {
    return this.pendingAdds.size + this.pendingRems.size;
  }

  /** One drained batch: one transaction, in arrival order; helper calls start after the commit. */
  processBatch(batch: readonly Notification[]): void {
    const now = this.o.clock();
    const afterCommit: (() => void)[] = [];
    this.o.store.transaction(() => {
      for (const n of batch) this.processOne(n, now, afterCommit);
    });
    if (this.o.debug() > 1) this.o.log('debug', `committed ${batch.length}`);
    for (const start of afterCommit) start();
    this.armExpiry();
  }

  private processOne(n: Notification, now: number, afterCommit: (() => void)[]): void {
    const { log } = this.o;
    const debug = this.o.debug() > 0;
    if (debug || n.text !== '') {
      log(n.text !== '' ? 'info' : 'debug', `processing type=${n.type} remote=${n.remote.address}:${n.remote.port} msg="${n.text}" uid=${n.uid} gid=${n.gid}`);
    }
    const probe = probeOf(n, this.o.families);
    const match = probe && this.rules && matchProbe(this.rules, probe, this.interfaces);
    if (!match) {
      log('debug', 'no rule matched');
      return;
    }
    const key = match.effective;
    const id = keyOf(key);
    const stored = this.o.store.get(key);
    const e: Entry = stored ?? { key, count: 0, last: 0, id: '' };
    const before = stored && { count: stored.count, last: stored.last };
    if (debug) log('debug', `process: initial db state for ${key.address}: count=${e.count}/${key.nfail} last=${localTime(e.last)} now=${localTime(now)}`);

    switch (n.type) {
      case WireType.DELETE:
        if (e.last === 0) return;
        if (key.duration === ANY && e.id !== '' && !this.pendingAdds.has(id) && !this.pendingRems.has(id)) {
          // G15: a forever block would never expire: lift it now
          this.o.store.delete(key);
          afterCommit.push(() => this.remove(e, true));
          return;
        }
        e.count = 0;
        e.last = 0;
        break;
      default: {
        // ABUSE sets the count to the limit minus 2, then counts as ADD; ADD is BADUSER plus one
        if (n.type === WireType.ABUSE && key.nfail !== ANY) e.count = key.nfail - 2;
        e.count += n.type === WireType.BADUSER ? 1 : 2;
        e.last = now;
        if (key.nfail !== ANY && e.count >= key.nfail) {
          if (e.id !== '') log('info', `blocked ${n.remote.address}/${key.lmask}:${key.port} for ${key.duration} seconds`);
          else if (!this.pendingAdds.has(id)) {
            this.pendingAdds.set(id, { before, wrote: { count: e.count, last: e.last }, client: n.remote.address, restore: false });
            afterCommit.push(() => this.startAdd(key));
          }
        }
      }
    }
    this.o.store.put(e);
    if (debug) log('debug', `process: final db state for ${key.address}: count=${e.count}/${key.nfail} last=${localTime(e.last)} now=${localTime(now)}`);
  }

  private startAdd(key: EffectiveRule, oldId = ''): void {
    void this.o.helper.change('add', targetOf(key), oldId).then((result) => this.addDone(key, result));
  }

  private addDone(key: EffectiveRule, result: HelperResult): void {
    const id = keyOf(key);
    const pending = this.pendingAdds.get(id);
    this.pendingAdds.delete(id);
    if (pending === undefined || this.stopped) return;
    const { log, store } = this.o;
    const e = store.get(key);
    const target = `${key.name} ${targetOf(key).proto} ${key.address}/${key.lmask}:${key.port}`;
    if (result.line === undefined) {
      // G16: no line is a failure; upstream then does not save the count, so the next failure tries again
      log('err', `add ${target}: the helper gave no rule id${result.timedOut ? ' (timed out)' : result.error ? ` (${result.error})` : ''}`);
      if (e === undefined || pending.restore) return;
      if (e.count === pending.wrote.count && e.last === pending.wrote.last) {
        if (pending.before === undefined) store.delete(key);
        else store.put({ ...e, ...pending.before });
      } else {
        store.put({ ...e, count: Math.max(0, e.count - (pending.wrote.count - (pending.before?.count ?? 0))) });
      }
      this.armExpiry();
      return;
    }
    if (result.id === '') log('warning', `add ${target}: the helper printed an empty rule id; add will run again on the next failure`);
    if (!pending.restore) log('info', `blocked ${pending.client}/${key.lmask}:${key.port} for ${key.duration} seconds`);
    if (e === undefined) {
      // expired or lifted while the add ran: the rule just installed must go
      if (result.id) this.remove({ key, count: 0, last: 0, id: result.id }, false);
      return;
    }
    const updated = { ...e, id: result.id ?? e.id };
    if (updated.last === 0 && key.duration === ANY && updated.id !== '') {
      store.delete(key); // AUTH_OK came while the add ran (G15)
      this.remove(updated, true);
      return;
    }
    store.put(updated);
    this.armExpiry();
  }

  /** daemon.md §6: release what is due: strictly `last + duration < now`. */
  expire(): void {
    const now = this.o.clock();
    const { store } = this.o;
    for (const e of store.due(now)) {
      const id = keyOf(e.key);
      if (this.pendingAdds.has(id) || this.pendingRems.has(id) || (this.remRetry.get(id) ?? 0) > now) continue;
      this.remRetry.delete(id);
      if (this.o.debug() > 1) this.o.log('debug', `update: ${e.key.address}:${e.key.port} count=${e.count} duration=${e.key.duration} last=${localTime(e.last)} now=${localTime(now)}`);
      if (e.id === '') store.delete(e.key);
      else this.remove(e, false);
    }
    this.armExpiry(true);
  }

  /**
   * Runs `rem` for a blocked entry, logs the release when it worked and
   * deletes the entry if it is still due.  `deleted`: the caller already
   * removed it from the store.  A failed rem keeps (or puts back) the
   * entry and tries again later, so that no filter rule is orphaned (G17).
   */
  private remove(e: Entry, deleted: boolean): void {
    const id = keyOf(e.key);
    const k = e.key;
    this.pendingRems.add(id);
    void this.o.helper.change('rem', targetOf(k), e.id).then((result) => {
      this.pendingRems.delete(id);
      if (this.stopped) return;
      const { store, log } = this.o;
      if (result.line === undefined && result.exitCode !== 0) {
        log('err', `rem ${k.name} ${targetOf(k).proto} ${k.address}/${k.lmask}:${k.port} failed${result.timedOut ? ' (timed out)' : result.error ? ` (${result.error})` : ''}; retrying in ${REM_RETRY_SECONDS} s`);
        if (deleted && store.get(k) === undefined) store.put({ ...e, last: 0 });
        this.remRetry.set(id, this.o.clock() + REM_RETRY_SECONDS);
        this.armExpiry();
        return;
      }
      log('info', `released ${k.address}/${k.lmask}:${k.port} after ${k.duration} seconds`);
      const current = deleted ? undefined : store.get(k);
      if (current !== undefined) {
        if (current.last + k.duration < this.o.clock()) store.delete(k);
        else {
          // a failure came in while the block was being lifted: the rule is gone, go on counting
          store.put({ ...current, id: '' });
          if (k.nfail !== ANY && current.count >= k.nfail) this.addPending(current, k.address, false);
        }
      }
      this.armExpiry();
    });
  }

  private addPending(e: Entry, client: string, restore: boolean, oldId = ''): void {
    const id = keyOf(e.key);
    if (this.pendingAdds.has(id)) return;
    this.pendingAdds.set(id, { before: undefined, wrote: { count: e.count, last: e.last }, client, restore });
    this.startAdd(e.key, oldId);
  }

  /**
   * One timer for the next expiry (TODO 1): wakes only when something is
   * due.  After a change an entry may be due already (an AUTH_OK reset):
   * then the pass runs at once; the pass itself only looks ahead, since
   * what it leaves due is waiting for a helper call that re-arms the timer.
   */
  armExpiry(onlyFuture = false): void {
    if (this.stopped) return;
    clearTimeout(this.expiryTimer);
    const now = this.o.clock();
    let next = this.o.store.nextExpiry(onlyFuture ? now : undefined);
    for (const at of this.remRetry.values()) if (next === undefined || at < next) next = at;
    if (next === undefined) {
      this.expiryTimer = undefined;
      return;
    }
    // expired means last + duration < now: the second after `next`
    const delay = Math.min(Math.max(0, (next + 1) * 1000 - Date.now()), 2 ** 31 - 1);
    this.expiryTimer = setTimeout(() => this.expire(), delay);
  }

  /** Rule names to flush (daemon.md §7.1, G18): remote then local configured names, then those only in the database. */
  flushNames(rules: RuleSet): string[] {
    const names = new Set<string>();
    for (const r of [...rules.remote, ...rules.local]) if (r.name !== '') names.add(r.name);
    for (const e of this.o.store.entries()) if (e.key.name !== '') names.add(e.key.name);
    return [...names];
  }

  /** `flush <name>` for each name; results ignored. */
  async flush(names: readonly string[]): Promise<void> {
    await Promise.all(names.map((name) => this.o.helper.flush(name)));
  }

  /** daemon.md §7.2: re-add every blocked entry with its old id, pending ones included. */
  restore(): number {
    let n = 0;
    for (const e of this.o.store.entries()) {
      if (!isBlocked(e)) continue;
      this.addPending(e, e.key.address, true, e.id);
      n++;
    }
    return n;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.expiryTimer);
  }
}
