// What the daemon does with notifications and time (daemon.md §5-§7): the
// count arithmetic per message type, the block check, expiry, flush and
// restore; the helper runs beside it (G27), its calls gathered into batches
// by run/batch.ts, the work of each entry not settled yet kept by
// run/inflight.ts.  blocklistctl's block, unblock and flush are manual.ts's,
// through the primitives at the end of the class.
//
// Crash safety: the database always knows every rule that may be in the
// packet filter.  An entry reaching its limit is committed (limit reached,
// no id) before the helper's add starts, and the id is recorded when the
// add returns: an entry at its limit without an id may or may not be in
// the filter, so restore re-adds it and expiry removes it.  An add the
// helper did not finish (killed at its timeout or at shutdown) leaves the
// entry so too: it may be in the filter.  An entry is deleted only after
// its rem worked (a rem not finished is tried again); a forever block
// lifted by AUTH_OK waits as `last` 0 until then (G15).  A rem that worked
// but whose entry could not be written (a full disk) is remembered, and
// the entry written later, never released again (after a restart, it is:
// a rem of what is not there is no error).
//
// Time: deadlines are wall-clock (`last + duration`); a step of the wall
// clock, seen against the monotonic one, moves every stored time with it.
import type { CompiledRules } from '../conf/match.js';
import { matchProbe, matchWith, ruleFinder, type FindRule } from '../conf/match.js';
import { isSelfAddress, ownNetworks } from '../conf/system.js';
import { protocolName } from '../conf/format.js';
import type { ConfEnv, InterfaceAddresses, Match, Probe, RuleSet } from '../conf/types.js';
import { toText, type OwnNetwork } from '../conf/ip.js';
import { batchable, HelperBatcher, type BulkLines, type HelperCall } from '../run/batch.js';
import { entryId, InFlight, keyOfId, type Counted } from '../run/inflight.js';
import { failureText, unfinished, type Change, type HelperResult, type HelperRunner, type HelperTarget } from '../run/helper.js';
import { heldResult, type SharedBlocks } from '../fleet/hook.js';
import { blockSeconds, isBlocked } from '../state/entry.js';
import { Escalator } from '../escalate/escalator.js';
import type { EscalationPolicy } from '../escalate/policy.js';
import type { StateStore, StoredEntry } from '../state/store.js';
import { typeLabel, type BlockOrigin, type Metrics, type ReleaseOrigin } from './metrics.js';
import { probeOf } from './probe.js';
import { elapsed, localTime } from '../time.js';
import { RestoreAdds } from './restore-adds.js';
import { debugLog, type DebugLog } from '../debug.js';
import { kernelTimeout } from './kernel-expiry.js';
import { ANY, WireType, type EffectiveRule, type Entry, type LogFields, type LogFn, type Notification } from '../types.js';

/** Releases started by one expiry pass; the next pass starts when they finish. */
const EXPIRE_CHUNK = 64;
/** The same in batch mode, where they go to the helper as one call. */
const EXPIRE_CHUNK_BATCH = 2000;
/** Entries without a filter rule deleted in one transaction. */
export const DELETE_CHUNK = 500;
/**
 * Database writes failing (a full disk): expiry tries again after this
 * long, doubling up to STORE_RETRY_MAX_MS, instead of at once; failures
 * are logged once per STORE_LOG_MS.
 */
const STORE_RETRY_MS = 1000;
const STORE_RETRY_MAX_MS = 60_000;
const STORE_LOG_MS = 10_000;
/** A step of the wall clock beyond this, against the monotonic one, moves the stored times with it. */
const CLOCK_STEP_MS = 5000;
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
  /**
   * A monotonic clock in milliseconds: with it, a step of `clock` moves the
   * stored times with it (followClock).  Back-offs use it too, or
   * performance.now.
   */
  monotonic?: () => number;
  /** Seconds between tries of a failed `rem` (G17). */
  remRetry: number;
  metrics?: Metrics;
  /** --max-entries: beyond it entries not blocked are evicted, soonest expiry first; 0 or none: no limit. */
  maxEntries?: number;
  /** --allow-self: notifications about the host's own addresses (isSelfAddress) are not counted. */
  allowSelf?: boolean;
  /** In [0, 1): the source of escalation's jitter (default Math.random). */
  random?: () => number;
  /** --kernel-expiry-margin: adds carry a kernel timeout this long after the block's deadline (kernel-expiry.ts); undefined: none. */
  kernelExpiryMargin?: number;
  /** --fleet (issue 17): told of this host's blocks and releases; an element it holds is not added or removed again. */
  fleet?: SharedBlocks;
}

/** A self address ignored (--allow-self) is logged at most this often per address (ms). */
const SELF_LOG_MS = 60_000;

export const targetOf = (k: EffectiveRule): HelperTarget => ({
  name: k.name,
  proto: k.proto === ANY ? '' : protocolName(k.proto),
  address: k.address,
  mask: k.lmask,
  port: k.port,
});

/**
 * A rem after which the rule may still be in the filter: it failed for an
 * entry with a rule id, or the helper was killed midway.  A plain failure
 * for an entry without id (its add had failed) is a best try that counts.
 */
export const remLeftRule = (r: HelperResult, id: string): boolean => r.outcome !== 'ok' && (id !== '' || unfinished(r));

/** address/mask:port as the log lines show an entry (`address`: the client's, unmasked); a manual block of every port as `*`. */
export const entryText = (k: EffectiveRule, address = k.address): string => `${address}/${k.lmask}:${k.port === ANY ? '*' : k.port}`;

/** An entry's fields in a JSON log line (`address`: the client's, unmasked); a port or protocol of any, and forever (-1), left out. */
export function entryFields(event: string, k: EffectiveRule, address = k.address): LogFields {
  const proto = targetOf(k).proto;
  return {
    event,
    address,
    mask: k.lmask,
    port: k.port === ANY ? undefined : k.port,
    proto: proto === '' ? undefined : proto,
    rule: k.name,
    nfail: k.nfail === ANY ? undefined : k.nfail,
  };
}

/** What a release line adds to upstream's: how long the block lasted, when known. */
export const blockedFor = (seconds: number | undefined): string => (seconds === undefined ? '' : ` (blocked ${elapsed(seconds)})`);

/** upstream's line for a notification processed; `report`: sent through the control socket's report command. */
const processingLine = (n: Notification, address: string): string => {
  const via = n.report === undefined ? '' : ` report source=${n.report.source} pid=${n.pid}`;
  return `processing type=${n.type} remote=${address}:${n.remote.port} msg="${n.text}" uid=${n.uid} gid=${n.gid}${via}`;
};

const processingFields = (n: Notification, address: string): LogFields => ({
  event: 'notification',
  type: typeLabel(n.type),
  address,
  port: n.remote.port,
  uid: n.uid,
  gid: n.gid,
  peerPid: n.pid,
  text: n.text,
  source: n.report?.source,
});

/** The fields of a "blocked" line; `duration` is the block's (the rule's, or an escalated block's), `block` an escalated block's number. */
const blockFields = (e: Entry, address: string, origin: BlockOrigin, count: number): LogFields => ({
  ...entryFields('block', e.key, address),
  origin,
  count,
  duration: blockSeconds(e) === ANY ? undefined : blockSeconds(e),
  block: e.block,
});

/** What a "blocked" line adds for an escalated block: its number. */
const blockNumber = (e: Entry): string => (e.block === undefined ? '' : ` (block ${e.block})`);

export class Engine {
  private rules: CompiledRules | undefined;
  private interfaces: InterfaceAddresses = new Map();
  /** ruleFinder() of `rules` and `interfaces`: made when they change, not per notification. */
  private findRule: FindRule | undefined;
  /** ownNetworks() of `interfaces`, for --allow-self: made when they change, not per notification. */
  private ownNetworks: OwnNetwork[] = ownNetworks(new Map());
  /** The helper work of each entry not settled yet: adds, rems, rems to retry, releases to write. */
  private readonly work = new InFlight<BlockOrigin>();
  /**
   * When each block in the packet filter began (seconds), for the release
   * line: the failure that reached the limit, a manual block's request.
   * Not in the database: after a restart the entry's last failure stands in.
   */
  private readonly blockedSince = new Map<string, number>();
  /**
   * Kernel expiry (--kernel-expiry-margin): when the kernel drops each
   * block added with a timeout by this daemon (seconds), for renewals
   * (timeoutOutlived).
   */
  private readonly kernelUntil = new Map<string, number>();
  /** During settleBatch's transaction: what waits for its commit. */
  private settling: (() => void)[] | undefined;
  /** Database writes failing: when expiry tries again, the back-off, the log's rate limit (monotonic ms). */
  private storeFailing: { retryAt: number; delay: number; logAt: number; unlogged: number } | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  /** No new helper calls; results of running ones are still recorded until the store closes. */
  private stopped = false;
  private readonly batcher: HelperBatcher;
  private flushInBatch = false;
  /** When eviction was last logged (ms), and what went since. */
  private evictLog = { at: -Infinity, evicted: 0 };
  private evictScheduled = false;

  private readonly monotonic: () => number;
  private readonly debugLine: DebugLog;
  /** The wall clock minus the monotonic one when last looked at (ms); undefined before the first look. */
  private clockOffset: number | undefined;
  /** --allow-self: when each self address ignored was last logged (ms), kept for the addresses of the last minute. */
  private readonly selfLogged = new Map<string, number>();
  /** Escalation of repeat offenders, per rule name (doc/escalation.md). */
  private readonly escalator: Escalator;
  /** Told of each block the filter took that began from failures, after its commit (subnet aggregation, escalate/aggregator.ts). */
  blockHook: ((key: EffectiveRule) => void) | undefined;

  constructor(private readonly options: EngineOptions) {
    this.monotonic = options.monotonic ?? (() => performance.now());
    this.debugLine = debugLog(options.log, options.debug);
    this.escalator = new Escalator(options.store, options.random ?? Math.random);
    this.batcher = new HelperBatcher({ helper: options.helper, settle: (calls, results) => this.settleBatch(calls, results) });
  }

  setRules(rules: CompiledRules, interfaces: InterfaceAddresses): void {
    this.rules = rules;
    this.setInterfaces(interfaces);
  }

  /** The `[escalate]` policies of the configuration (doc/escalation.md); blocks running keep their length. */
  setEscalation(policies: ReadonlyMap<string, EscalationPolicy>): void {
    this.escalator.setPolicies(policies);
    // forgiven histories go now, and then at most hourly with the expiry passes
    this.guard(() => this.escalator.purge(this.options.clock(), this.monotonic()));
  }

  setInterfaces(interfaces: InterfaceAddresses): void {
    this.interfaces = interfaces;
    this.ownNetworks = ownNetworks(interfaces);
    this.findRule = this.rules && ruleFinder(this.rules, interfaces);
  }

  /** The rules a probe meets, as a notification would. */
  match(probe: Probe): Match | undefined {
    return this.rules && matchProbe(this.rules, probe, this.interfaces);
  }

  /** One drained batch: one transaction, in arrival order; helper calls start after the commit. */
  processBatch(batch: readonly Notification[]): void {
    this.followClock();
    const now = this.options.clock();
    const afterCommit: (() => void)[] = [];
    const added: string[] = [];
    const written: EffectiveRule[] = [];
    let evicted: number | undefined;
    try {
      this.options.store.transaction(() => {
        for (const n of batch) this.processOne(n, now, afterCommit, added, written);
        // in the same commit: a spray of new addresses costs no second one
        evicted = this.evictSome();
      });
    } catch (e) {
      // upstream logs state_put failures and goes on; the batch is lost
      this.storeFailed(`state_put: failed (${(e as Error).message}), ${batch.length} notifications lost`);
      for (const id of added) this.work.addEnded(id);
      return;
    }
    if (written.length > 0) this.storeWorked();
    // their blocks are gone, and their entries say so now
    if (this.work.releasesUnrecorded) for (const key of written) this.work.recorded(entryId(key));
    this.debugLine(2, () => `committed ${batch.length}`);
    for (const start of afterCommit) start();
    this.evicted(evicted);
    // the batch's helper calls start now, after its log lines and before the timer is re-armed
    this.batcher.startSingles();
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
    this.guard(() => (evicted = this.options.store.transaction(() => this.evictSome())));
    this.evicted(evicted);
  }

  /**
   * Up to a chunk of the excess over --max-entries deleted, in the caller's
   * transaction: how many went (0: none could), undefined when within the limit.
   */
  private evictSome(): number | undefined {
    const max = this.options.maxEntries ?? 0;
    if (max === 0 || this.stopped || this.evictScheduled) return undefined;
    const { store } = this.options;
    const excess = store.size() - max;
    if (excess <= 0) return undefined;
    const { adds, rems, remRetries } = this.work.counts;
    return store.evict(Math.min(excess, EVICT_CHUNK), (k) => !this.work.evictable(entryId(k)), adds + rems + remRetries);
  }

  /** After the commit: evictions counted and logged (at most once per interval), a full chunk followed by the next. */
  private evicted(n: number | undefined): void {
    if (n === undefined) return;
    const { log, store } = this.options;
    const max = this.options.maxEntries ?? 0;
    this.options.metrics?.evicted(n);
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

  private processOne(n: Notification, now: number, afterCommit: (() => void)[], added: string[], written: EffectiveRule[]): void {
    const { log, store } = this.options;
    // the debug lines' closures made only when they are written: not objects per notification of a flood without -d
    const debugging = this.options.debug() >= 1;
    // with a text or as a report, the notification is logged at info; else only as a debug line.  The client's
    // address as text made once, for both and a block's lines (clients send a text: the line is made)
    const client = toText(n.remote);
    // the fields made only for an output that writes them (JSON): not per notification for syslog
    if (n.text !== '' || n.report !== undefined) log('info', processingLine(n, client), () => processingFields(n, client));
    else if (debugging)
      this.debugLine(
        1,
        () => processingLine(n, client),
        () => processingFields(n, client),
      );
    const probe = probeOf(n, this.options.families);
    if (this.options.allowSelf === true && isSelfAddress(probe.remote, this.ownNetworks)) {
      this.ignoredSelf(client);
      return;
    }
    const match = this.findRule && matchWith(this.findRule, probe, client);
    this.options.metrics?.notification(n.type, match?.effective.name, n.report !== undefined);
    if (!match) {
      log('debug', 'no rule matched');
      return;
    }
    const key = match.effective;
    // its id only when there is helper work in flight to ask about (InFlight.idle): not built for every notification
    const id = this.work.idle ? undefined : entryId(key);
    const stored = store.get(key);
    const e: Entry = stored ?? { key, count: 0, last: 0, id: '' };
    // released, though the entry still has the id: the rule is gone
    if (id !== undefined && this.work.released(id)) e.id = '';
    const before = stored && { count: stored.count, last: stored.last };
    if (debugging)
      this.debugLine(
        1,
        () => `process: initial db state for ${key.address}: count=${e.count}/${key.nfail} last=${localTime(e.last)} now=${localTime(now)}`,
      );

    if (n.type === WireType.DELETE) {
      if (e.last === 0) return;
      e.count = 0;
      e.last = 0;
      // G15: a forever block would never expire: lift it now (the entry goes once rem worked)
      if (blockSeconds(e) === ANY && e.id !== '' && (id === undefined || !this.work.busy(id)))
        afterCommit.push(() => this.release(e, 'reset'));
    } else {
      // ABUSE sets the count to the limit minus 2, then counts as ADD; ADD is BADUSER plus one
      if (n.type === WireType.ABUSE && key.nfail !== ANY) e.count = key.nfail - 2;
      e.count += n.type === WireType.BADUSER ? 1 : 2;
      // a known offender meets its escalation policy's lower nfail: at the rule's limit now, as ABUSE is
      if (!isBlocked(e) && this.escalator.knownOffender(key, e.count, now)) e.count = key.nfail;
      e.last = now;
      if (isBlocked(e)) {
        if (e.id !== '') {
          // the fields made only for an output that writes them (JSON), as above
          log('info', `blocked ${client}/${key.lmask}:${key.port} for ${blockSeconds(e)} seconds${blockNumber(e)}`, () => ({
            ...blockFields(e, client, 'limit', e.count),
            renewed: true,
          }));
          afterCommit.push(() => this.renewed(key, e.id, now, blockSeconds(e)));
        } else if (id === undefined || !this.work.adding(id)) {
          // a new block: its number and length by the address's history (escalation)
          Object.assign(e, this.escalator.next(key, now) ?? { block: undefined, hold: undefined });
          const addId = id ?? entryId(key);
          this.work.addStarted(addId, { before, wrote: { count: e.count, last: e.last }, client, origin: 'limit' });
          added.push(addId);
          afterCommit.push(() => this.startAdd(key, '', blockSeconds(e)));
        }
      }
    }
    store.put(e);
    written.push(key);
    if (debugging)
      this.debugLine(
        1,
        () => `process: final db state for ${key.address}: count=${e.count}/${key.nfail} last=${localTime(e.last)} now=${localTime(now)}`,
        () => ({ ...entryFields('count', key), count: e.count }),
      );
  }

  /** --allow-self: a notification about an own address, counted as dropped and logged once a minute per address. */
  private ignoredSelf(address: string): void {
    this.options.metrics?.dropped('self');
    const now = this.monotonic();
    const last = this.selfLogged.get(address);
    if (last !== undefined && now - last < SELF_LOG_MS) return;
    if (this.selfLogged.size > 1000) for (const [a, at] of this.selfLogged) if (now - at >= SELF_LOG_MS) this.selfLogged.delete(a);
    this.selfLogged.set(address, now);
    this.options.log('debug', `${address} is an address of this host (--allow-self): not counted`);
  }

  /**
   * The kernel timeout of an add of a block of `key` lasting `seconds` (blockSeconds: the rule's duration or an escalated
   * block's) from its last failure at `last`, and when it ends (kernelUntil).
   */
  private timeoutOf(key: EffectiveRule, last: number, seconds: number): number | undefined {
    const now = this.options.clock();
    let timeout = kernelTimeout(seconds, last, now, this.options.kernelExpiryMargin);
    const fleet = this.options.kernelExpiryMargin === undefined ? undefined : this.options.fleet;
    if (fleet !== undefined) {
      // the element may be the fleet's too: its timeout covers the longest holder (doc/fleet.md §5)
      const until = fleet.timeoutFor(targetOf(key), timeout === undefined ? Infinity : now + timeout);
      timeout = until === Infinity ? undefined : until - now;
    }
    if (timeout === undefined) this.kernelUntil.delete(entryId(key));
    else this.kernelUntil.set(entryId(key), now + timeout);
    return timeout;
  }

  /**
   * A blocked entry renewed at `now` (a failure while blocked: its deadline
   * moved): whether the kernel would drop its block less than half the
   * margin after the new deadline, or when, is unknown (added before a
   * restart).  Not while an add or rem of it runs: its rem would wait for
   * the add, the add would put back what the rem took.
   */
  private timeoutOutlived(key: EffectiveRule, seconds: number, now: number): boolean {
    const margin = this.options.kernelExpiryMargin;
    // the id built only when asked: this runs for every failure of a blocked address
    if (margin === undefined || seconds === ANY) return false;
    const id = entryId(key);
    if (this.work.adding(id) || this.work.removing(id)) return false;
    const until = this.kernelUntil.get(id);
    return until === undefined || now + seconds + 1 + margin / 2 > until;
  }

  /**
   * A blocked entry with rule id `id` renewed at `now`, by a failure or by
   * hand, its write committed: the fleet publishes its new end, and its
   * block is added again with a new kernel timeout when the old one would
   * end too soon (timeoutOutlived).
   */
  renewed(key: EffectiveRule, id: string, now: number, seconds: number): void {
    this.options.fleet?.blocked(key, now, seconds, 'renewed');
    if (this.timeoutOutlived(key, seconds, now)) this.renewTimeout(key, id, now, seconds);
  }

  /**
   * The block added again with the timeout its new deadline needs: the
   * helper takes an add of what is there as a new timeout (helper.md §1.8).
   * The entry keeps its id.  A failure is logged; the next try comes when
   * the deadline has moved another half margin, not at every renewal.
   */
  private renewTimeout(key: EffectiveRule, id: string, last: number, seconds: number): void {
    this.batcher.call({ action: 'add', target: targetOf(key), id, timeout: this.timeoutOf(key, last, seconds) }, (result) => {
      if (result.outcome !== 'ok' && result.outcome !== 'cancelled') {
        const what = `add ${key.name} ${targetOf(key).proto} ${entryText(key)} (a new kernel timeout)`;
        this.options.log('err', `${what} failed${failureText(result)}; the packet filter may drop the block before its end`);
      }
    });
  }

  /** An add of a block of `key` lasting `seconds` (blockSeconds) from the last failure the pending add wrote. */
  private startAdd(key: EffectiveRule, oldId: string, seconds: number, then?: (result: HelperResult) => void): void {
    const done = (result: HelperResult): void => {
      this.addDone(key, oldId, result);
      then?.(result);
    };
    const target = targetOf(key);
    // the fleet's block of the same element is in the filter already: shared, not added twice
    const held = this.options.fleet?.holding(target);
    const last = this.work.pendingAdd(entryId(key))?.wrote.last ?? this.options.clock();
    if (held !== undefined) {
      // added again only when this block outlasts what the fleet's add gave the kernel (doc/fleet.md §5)
      const now = this.options.clock();
      const timeout = kernelTimeout(seconds, last, now, this.options.kernelExpiryMargin);
      if (
        this.options.kernelExpiryMargin === undefined ||
        this.options.fleet!.covers(target, timeout === undefined ? Infinity : now + timeout)
      ) {
        queueMicrotask(() => done(heldResult(held)));
        return;
      }
    }
    this.batcher.call({ action: 'add', target, id: held ?? oldId, timeout: this.timeoutOf(key, last, seconds) }, done);
  }

  /**
   * `rem` of a blocked entry's rule, unless the fleet still holds the element; a release that worked is deleted from the
   * fleet's bucket.
   */
  private remCall(e: Entry, done: (result: HelperResult) => void): void {
    const target = targetOf(e.key);
    const released = (result: HelperResult): void => {
      if (result.outcome === 'ok' && e.id !== '') this.options.fleet?.released(e.key);
      done(result);
    };
    if (this.options.fleet?.holding(target) !== undefined) queueMicrotask(() => released(heldResult(e.id)));
    else this.batcher.call({ action: 'rem', target, id: e.id }, released);
  }

  /** A batch's results recorded in one transaction: one commit, not one per entry. */
  private settleBatch(chunk: readonly HelperCall[], results: readonly HelperResult[]): void {
    this.settled(chunk.length, () => chunk.forEach((c, j) => c.done(results[j]!)));
  }

  /** The results of `n` helper calls recorded by `record` in one transaction; what waits for the commit (committed) after it. */
  private settled(n: number, record: () => void): void {
    const settling: (() => void)[] = (this.settling = []);
    try {
      this.options.store.transaction(record);
      this.settling = undefined;
      for (const then of settling) then();
    } catch (e) {
      this.settling = undefined;
      // as for a batch of notifications: the entries stay as they were before the helper ran
      this.storeFailed(`state_put: failed (${(e as Error).message}), ${n} helper results not recorded`);
      // armed inside the transaction, the timer saw writes that are gone now
      this.armExpiry();
    }
  }

  /** What to do once the write just made is committed: at once, or after settleBatch's transaction. */
  private committed(then: () => void): void {
    if (this.settling !== undefined) this.settling.push(then);
    else then();
  }

  /** The helper answered `batch` to `capabilities`; `batch-flush` too: a batch may flush names (see refresh). */
  setBatchMode(on: boolean, flushInBatch = false): void {
    this.batcher.setBatchMode(on);
    this.flushInBatch = on && flushInBatch;
  }

  private addDone(key: EffectiveRule, oldId: string, result: HelperResult): void {
    const id = entryId(key);
    const pending = this.work.addEnded(id);
    if (pending === undefined || result.outcome === 'cancelled') return; // cancelled at stop: still at its limit, restore re-adds it
    const { log, store } = this.options;
    const target = `${key.name} ${targetOf(key).proto} ${entryText(key)}`;
    this.guard(() => {
      const e = store.get(key);
      if (result.outcome !== 'ok') {
        // G16: no line is a failure; upstream then does not save the count, so the next failure tries again
        if (unfinished(result)) {
          // the add may have happened: the entry stays at its limit without id, so that expiry removes it (crash safety above)
          log(
            'err',
            `add ${target}: the helper gave no rule id${failureText(result)}; the block may be in the packet filter: kept until it expires`,
          );
          return;
        }
        log('err', `add ${target}: the helper gave no rule id${failureText(result)}`);
        if (e === undefined || pending.client === undefined) return; // a restore keeps its old id
        if (e.count === pending.wrote.count && e.last === pending.wrote.last) {
          if (pending.before === undefined) store.delete(key);
          else store.put({ ...e, ...pending.before, block: undefined, hold: undefined });
        } else {
          store.put({ ...e, count: Math.max(0, e.count - (pending.wrote.count - (pending.before?.count ?? 0))) });
        }
        return;
      }
      if (result.id === '') log('warning', `add ${target}: the helper printed an empty rule id; add will run again on the next failure`);
      const blockedEntry = e ?? { key, count: pending.wrote.count, last: pending.wrote.last, id: '' };
      if (pending.client !== undefined) {
        log(
          'info',
          `blocked ${entryText(key, pending.client)} for ${blockSeconds(blockedEntry)} seconds${blockNumber(blockedEntry)}`,
          blockFields(blockedEntry, pending.client, pending.origin, pending.wrote.count),
        );
      }
      // the history counts the blocks the filter took (a restore's was counted when it began)
      if (pending.origin !== 'restore') this.escalator.record(blockedEntry, pending.wrote.last);
      this.options.metrics?.block(pending.origin, key.name);
      this.options.fleet?.blocked(key, pending.wrote.last, blockSeconds(blockedEntry), pending.origin);
      // a restore (-r) keeps the start it knows; after a restart the last failure is the best there is
      if (pending.origin !== 'restore' || !this.startKnown(id, key)) this.blockedSince.set(id, pending.wrote.last);
      // an entry gone meanwhile comes back, so that the rule just installed is released like any other
      const updated = { ...(e ?? { key, count: 0, last: 0 }), id: result.id ?? oldId };
      store.put(updated);
      if (updated.last === 0 && blockSeconds(updated) === ANY && updated.id !== '')
        this.release(updated, 'reset'); // AUTH_OK came meanwhile (G15)
      else if (pending.origin === 'limit' && this.blockHook !== undefined) this.committed(() => this.blockHook?.(key));
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
    const id = entryId(e.key);
    if (this.stopped || this.work.removing(id)) return;
    this.work.remStarted(id);
    const k = e.key;
    this.remCall(e, (result) => {
      this.work.remEnded(id);
      if (result.outcome === 'cancelled') return; // at stop: the entry is still there, the next start releases it
      const { log } = this.options;
      if (remLeftRule(result, e.id)) {
        log(
          'err',
          `rem ${k.name} ${targetOf(k).proto} ${entryText(k)} failed${failureText(result)}; retrying in ${this.options.remRetry} s`,
        );
        this.work.retryRem(id, e, this.options.clock() + this.options.remRetry);
        this.armExpiry();
        return;
      }
      const lasted = this.lasted(id, e);
      if (e.id !== '') {
        log('info', `released ${entryText(k)} after ${blockSeconds(e)} seconds${blockedFor(lasted)}`, {
          ...entryFields('release', k),
          origin,
          duration: lasted,
        });
        this.options.metrics?.release(origin, k.name);
      }
      // unrecorded until the write is committed
      this.work.releaseUnrecorded(id, e);
      if (this.guard(() => this.recordRelease(k))) this.committed(() => this.work.recorded(id));
      this.armExpiry();
    });
  }

  /**
   * How long the block of `e` lasted until now (seconds), and forgets its
   * start; undefined when unknown (a forever block lifted by AUTH_OK after a
   * restart: its last failure is gone too).  Asked before the entry is
   * deleted: the start a restore kept (store.restoredSince) is found
   * through its row.
   */
  lasted(id: string, e: Entry): number | undefined {
    const since = this.blockedSince.get(id) ?? this.options.store.restoredSince(e.key) ?? (e.last === 0 ? undefined : e.last);
    this.blockedSince.delete(id);
    this.options.store.forgetRestoredSince(e.key);
    this.kernelUntil.delete(id);
    return since === undefined ? undefined : Math.max(0, this.options.clock() - since);
  }

  /**
   * When the block of the entry began is known: since this daemon added it, or since a restore as one
   * (store.restoredSince, which keeps the starts of its blocks instead of this map).
   */
  private startKnown(id: string, key: EffectiveRule): boolean {
    return this.blockedSince.has(id) || this.options.store.restoredSince(key) !== undefined;
  }

  /** After a rem worked: the entry deleted if still due, else without its id (a failure came in meanwhile). */
  private recordRelease(k: EffectiveRule): void {
    const { store } = this.options;
    const current = store.get(k);
    if (current === undefined) return;
    if (this.isDue(current, this.options.clock())) {
      store.delete(k);
      return;
    }
    // the rule is gone, go on counting
    store.put({ ...current, id: '' });
    const id = entryId(k);
    if (isBlocked(current) && !this.stopped && !this.work.adding(id)) {
      this.work.addStarted(id, {
        before: undefined,
        wrote: { count: current.count, last: current.last },
        client: k.address,
        origin: 'limit',
      });
      this.startAdd(k, '', blockSeconds(current));
    }
  }

  /**
   * Expired (`last + duration < now`, an escalated block's length instead of duration), or a forever (or permanent) block
   * lifted by AUTH_OK.
   */
  private isDue(e: Entry, now: number): boolean {
    const seconds = blockSeconds(e);
    return seconds === ANY ? e.last === 0 && e.id !== '' : e.last + seconds < now;
  }

  /**
   * daemon.md §6: release what is due, a chunk at a time so that the event
   * loop never waits long; the rest comes in the next pass, started when
   * these releases finish or at once for plain deletions.
   */
  expire(): void {
    if (this.stopped) return;
    if (this.storeFailing !== undefined && this.monotonic() < this.storeFailing.retryAt) {
      this.schedule(this.storeFailing.retryAt - this.monotonic());
      return;
    }
    this.followClock();
    const now = this.options.clock();
    const { store } = this.options;
    // releases that worked and are not written yet: written, not released again
    const unrecorded = this.work.unrecordedEntries();
    if (unrecorded.length > 0) {
      const written = this.guard(() => store.transaction(() => unrecorded.forEach((e) => this.recordRelease(e.key))));
      if (!written) return this.backOff();
      this.storeWorked();
      this.work.allRecorded();
    }
    // histories forgiven to nothing go, at most once an hour
    this.guard(() => this.escalator.purge(now, this.monotonic()));
    for (const retried of this.work.takeDueRetries(now)) {
      // try again only if the entry still waits for its release
      const current = store.get(retried.key);
      if (current !== undefined && current.id === retried.id && this.isDue(current, now)) this.release(current);
    }
    // what is in flight or waiting to be retried is read again and skipped
    const counts = this.work.counts;
    const busy = counts.adds + counts.rems + counts.remRetries + counts.unrecorded;
    const capacity = Math.max(0, (this.batcher.inBatchMode ? EXPIRE_CHUNK_BATCH : EXPIRE_CHUNK) - counts.rems);
    const limit = busy + DELETE_CHUNK + capacity;
    const due = store.due(now, limit);
    const releases: Entry[] = [];
    let deleted = 0;
    const written = this.guard(() =>
      store.transaction(() => {
        for (const e of due) {
          const id = entryId(e.key);
          if (this.work.unsettled(id)) continue;
          this.debugLine(
            2,
            () =>
              `update: ${e.key.address}:${e.key.port} count=${e.count} duration=${e.key.duration} ` +
              `last=${localTime(e.last)} now=${localTime(now)}`,
          );
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
    if (!written) return this.backOff();
    if (deleted > 0) this.storeWorked();
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
    let next = this.options.store.nextExpiry(passAt);
    if (next !== undefined) next += 1; // expired means last + duration < now: the second after
    const retry = this.work.nextRetry();
    if (retry !== undefined && (next === undefined || retry < next)) next = retry;
    // releases to write: as soon as the back-off lets
    if (this.work.counts.unrecorded > 0) next = 0;
    if (next === undefined) {
      clearTimeout(this.expiryTimer);
      this.expiryTimer = undefined;
      return;
    }
    const backOff = this.storeFailing === undefined ? 0 : this.storeFailing.retryAt - this.monotonic();
    this.schedule(Math.min(Math.max(0, next * 1000 - Date.now(), backOff), MAX_TIMER_MS));
  }

  /**
   * Blocks keep their length when the wall clock steps (set right after a
   * day ahead, or a day behind): the step shows against the monotonic
   * clock, and the entries' times (and the retries') move with it, so that
   * each deadline stays as far away as it was: a block lasts its duration
   * of the machine's running time (a suspended machine's blocks wait with
   * it).  Looked at before every write of a new time, and by expiry.
   */
  private followClock(): void {
    const monotonic = this.options.monotonic;
    if (monotonic === undefined) return;
    const offset = this.options.clock() * 1000 - monotonic();
    const before = this.clockOffset;
    this.clockOffset = offset;
    if (before === undefined || Math.abs(offset - before) < CLOCK_STEP_MS) return;
    const step = Math.round((offset - before) / 1000);
    let moved = 0;
    this.guard(() => (moved = this.options.store.shiftTimes(step)));
    this.work.shiftTimes(step);
    this.options.log(
      'warning',
      `the clock stepped ${step > 0 ? 'forward' : 'back'} by ${Math.abs(step)} s: the times of ${moved} entries moved with it`,
    );
  }

  /**
   * Start-up: last failures in the future (the clock was ahead while the
   * daemon was down, a step it could not see) become now, so that their
   * blocks last no longer than their duration from now.
   */
  limitFutureTimes(): void {
    this.guard(() => {
      const n = this.options.store.limitTimes(this.options.clock());
      if (n > 0) this.options.log('warning', `${n} entries had their last failure in the future: now instead`);
    });
  }

  /** An expiry pass could not write: the next one after the back-off, which doubles. */
  private backOff(): void {
    const failing = this.storeFailing!;
    failing.retryAt = this.monotonic() + failing.delay;
    const delay = failing.delay;
    this.debugLine(1, () => `expiry: the database cannot be written, next try in ${delay / 1000} s`);
    failing.delay = Math.min(failing.delay * 2, STORE_RETRY_MAX_MS);
    this.schedule(failing.retryAt - this.monotonic());
  }

  /**
   * A database write failed: logged at once the first time, then once per
   * STORE_LOG_MS with the count of those not logged; expiry backs off.
   */
  private storeFailed(message: string): void {
    const now = this.monotonic();
    if (this.storeFailing === undefined) {
      this.storeFailing = { retryAt: now + STORE_RETRY_MS, delay: STORE_RETRY_MS, logAt: now + STORE_LOG_MS, unlogged: 0 };
      this.options.log('err', message);
      return;
    }
    const failing = this.storeFailing;
    if (now < failing.logAt) {
      failing.unlogged++;
      return;
    }
    const seconds = Math.round((now - failing.logAt + STORE_LOG_MS) / 1000);
    this.options.log('err', `${message}${failing.unlogged > 0 ? ` (and ${failing.unlogged} more failures in the last ${seconds} s)` : ''}`);
    failing.logAt = now + STORE_LOG_MS;
    failing.unlogged = 0;
  }

  /** A write worked: the database is writable again. */
  private storeWorked(): void {
    if (this.storeFailing === undefined) return;
    const { unlogged } = this.storeFailing;
    this.storeFailing = undefined;
    this.options.log('info', `state_put: writes work again${unlogged > 0 ? ` (${unlogged} failures not logged)` : ''}`);
  }

  private schedule(delay: number): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => this.expire(), delay);
  }

  /** Start-up: forever blocks lifted by AUTH_OK whose rem had not worked yet. */
  resumeReleases(): void {
    for (const e of this.options.store.lifted()) this.release(e, 'reset');
  }

  /** Rule names to flush (daemon.md §7.1, G18): remote then local configured names, then those only in the database. */
  flushNames(rules: RuleSet): string[] {
    const names = new Set<string>();
    for (const r of [...rules.remote, ...rules.local]) if (r.name !== '') names.add(r.name);
    for (const name of this.options.store.names()) if (name !== '') names.add(name);
    return [...names];
  }

  /** `flush <name>` for each name, one after another in their order (as upstream); results ignored. */
  async flush(names: readonly string[]): Promise<void> {
    for (const name of names) await this.options.helper.flush(name);
  }

  /**
   * daemon.md §7.2: re-add every block with its old id, those whose add was
   * pending included; not the ones being released (`last` 0).
   */
  restore(): number {
    let n = 0;
    for (const e of this.options.store.blocked()) {
      const id = entryId(e.key);
      if (e.last === 0 || this.work.busy(id) || this.work.released(id)) continue;
      this.work.addStarted(id, { before: undefined, wrote: { count: e.count, last: e.last }, client: undefined, origin: 'restore' });
      this.startAdd(e.key, e.id, blockSeconds(e));
      n++;
    }
    return n;
  }

  /**
   * A reload with -r: the packet filter's rules of `names` replaced by the
   * database's blocks.  A helper that flushes in a batch gets it as one
   * batch, `flush` lines first, which it applies as one transaction: the
   * filter is never seen empty.  Otherwise flush, then restore (the rules
   * are missing in between).  Resolves when the filter holds the blocks
   * (or the helper failed): `applied`; `blocks`, how many.
   */
  async refresh(names: readonly string[]): Promise<{ blocks: number; applied: Promise<void> }> {
    if (!this.flushInBatch) {
      await this.flush(names);
      return { blocks: this.restore(), applied: Promise.resolve() };
    }
    if (this.stopped) return { blocks: 0, applied: Promise.resolve() };
    const { store } = this.options;
    const bulk = this.bulkRestore(names);
    const batch: HelperCall[] = [];
    const after: typeof batch = [];
    for (const e of bulk === undefined ? store.blockedStored() : bulk.others) {
      const id = entryId(e.key);
      if (e.last === 0 || this.work.removing(id) || this.work.released(id)) continue;
      const change: Change = { action: 'add', target: targetOf(e.key), id: e.id, timeout: this.timeoutOf(e.key, e.last, blockSeconds(e)) };
      let done: (result: HelperResult) => void;
      if (this.work.adding(id)) {
        // its add runs before this batch, and records its id; the flush removes that rule, this add puts it back
        done = (result) => {
          if (result.outcome !== 'ok') return;
          const current = this.options.store.get(e.key);
          this.options.store.put({ ...(current ?? { key: e.key, count: 0, last: e.last }), id: result.id ?? e.id });
        };
      } else {
        this.work.addStarted(id, { before: undefined, wrote: { count: e.count, last: e.last }, client: undefined, origin: 'restore' });
        done = (result) => this.restored(e, id, result);
      }
      // a block of every port cannot be a line of a batch: added after it (missing meanwhile)
      (batchable(change) ? batch : after).push({ change, done });
    }
    // after what was gathered: the batch then waits for it, as for the names' other calls before it
    const applied = this.batcher.batchNow(batch, names, bulk?.lines).then(() => this.armExpiry());
    for (const { change, done } of after) this.batcher.call(change, done);
    return { blocks: batch.length + after.length + (bulk?.lines.count ?? 0), applied };
  }

  /**
   * The plain part of a restore of rule `names` as one (refresh): the blocks that are a line of a batch, none with an
   * add, rem or release of its own, read and written by SQL in the database's temporary table (store.restoreBegin), their
   * lines made there too, in flight as one (RestoreAdds): at 100,000 blocks a restore took 3.3 s, 1.4 s of it reading
   * the entries into objects and writing each id back.  `others`, the blocked entries left out, each restored as before.
   * Not with the fleet, which learns of every block, nor with kernel timeouts, which each block keeps (kernelUntil);
   * nor while another restore of the kind runs (a reload's during start-up's): undefined then.
   */
  private bulkRestore(names: readonly string[]): { lines: BulkLines; others: StoredEntry[] } | undefined {
    if (this.options.fleet !== undefined || this.options.kernelExpiryMargin !== undefined || this.work.inBulk) return undefined;
    const { store } = this.options;
    let count = store.restoreBegin(names);
    const others = store.restoreOthers(names);
    // those with helper work of their own (at most a batch's few): left out, and restored alone unless a rem runs
    for (const id of this.work.ownIds()) {
      const key = keyOfId(id);
      if (!store.restoreExclude(key)) continue;
      count--;
      others.push(store.get(key)!);
    }
    const adds = new RestoreAdds(store, count);
    this.work.setBulk(adds);
    return {
      lines: { text: store.restoreLines(), count, settle: (answers, resultOf) => this.restoredAll(adds, answers, resultOf) },
      others,
    };
  }

  /**
   * The answers to the lines of a restore as one (bulkRestore), in their order.  The plain case, every line answered
   * with one rule id (nftables, ipset and iptables answer OK): the id written by one statement (store.restoreWrite),
   * each entry changed since it was read going through addDone as restored() sends it.  Otherwise (failures, an empty
   * id, a helper printing an id per line) each entry as restored() takes it.  A batch cancelled at stop ends every add.
   */
  private restoredAll(adds: RestoreAdds, answers: readonly string[], resultOf: (answer: string) => HelperResult): void {
    const { store, metrics } = this.options;
    const first = answers[0] ?? '';
    const uniform = answers.every((a) => a === first);
    const result = resultOf(first);
    if (uniform && result.outcome === 'cancelled') {
      // as addDone's for each: still at its limit with its id, the next start restores it
    } else if (uniform && result.outcome === 'ok' && result.id !== undefined && result.id !== '') {
      const id = result.id;
      this.settled(adds.size, () => {
        // every entry written: none changed since it was read (a scan spared, 0.1 s at 100,000)
        const written = store.restoreWrite(id);
        for (const e of written === adds.size ? [] : adds.takeChanged()) {
          const entry = entryId(e.key);
          this.work.addStarted(entry, { before: undefined, wrote: { count: e.count, last: e.last }, client: undefined, origin: 'restore' });
          this.addDone(e.key, e.id, result);
        }
        const restored = store.restoreSettled();
        this.committed(() => {
          for (const [name, n] of restored) metrics?.block('restore', name, n);
        });
      });
    } else {
      // each on its own, as before the restore as one
      const all = adds.takeAll();
      this.work.setBulk(undefined);
      for (const { entry, add } of all) this.work.addStarted(entryId(entry.key), add);
      this.settled(all.length, () => all.forEach(({ entry }, i) => this.restored(entry, entryId(entry.key), resultOf(answers[i]!))));
    }
    this.work.setBulk(undefined);
    this.guard(() => store.restoreDropped());
  }

  /**
   * The result of a restored block's add (refresh): its new rule id written in place of the id alone, the entry not read
   * again, and the expiry timer armed once for the batch (by refresh), not once per entry: at 100,000 blocks addDone's
   * read, write and timer took 2.8 s of a 6.5 s restore.  What is not the plain case goes through addDone: a failure, an
   * empty id, an entry changed since it was read (gone, reset by AUTH_OK, no longer blocked), and the fleet, which
   * learns of every block.
   */
  private restored(e: StoredEntry, id: string, result: HelperResult): void {
    const pending = this.work.pendingAdd(id);
    const newId = result.outcome === 'ok' ? result.id : undefined;
    if (newId === undefined || newId === '' || pending?.origin !== 'restore' || this.options.fleet !== undefined) {
      this.addDone(e.key, e.id, result);
      return;
    }
    let written = false;
    const wrote = this.guard(() => (written = this.options.store.setRestoredId(e, newId)));
    if (wrote && !written) {
      this.addDone(e.key, e.id, result);
      return;
    }
    // a failed write (logged by guard) ends the add as addDone's would: the entry keeps its old id
    this.work.addEnded(id);
    if (!wrote) return;
    this.options.metrics?.block('restore', e.key.name);
    // a restore (-r) keeps the start it knows; after a restart the last failure is the best there is
    if (!this.startKnown(id, e.key)) this.blockedSince.set(id, pending.wrote.last);
  }

  // --- for the manual commands (manual.ts): the state of work in flight and the steps they take ---

  /** No new helper calls: the daemon stops. */
  get stopping(): boolean {
    return this.stopped;
  }

  /** An add or rem of the entry is running. */
  busy(key: EffectiveRule): boolean {
    return this.work.busy(entryId(key));
  }

  /** Its rem worked and its entry is not written yet: the block is gone. */
  released(key: EffectiveRule): boolean {
    return this.work.released(entryId(key));
  }

  /** The entry was written or deleted since: no longer a release to record. */
  forgetRelease(key: EffectiveRule): void {
    this.work.recorded(entryId(key));
  }

  /** Now, in seconds, after a step of the wall clock has moved the stored times (followClock). */
  now(): number {
    this.followClock();
    return this.options.clock();
  }

  /**
   * The entry at its limit, just written as `wrote` (was `before`): `add`,
   * recorded as any other; resolves with the helper's result.
   */
  add(key: EffectiveRule, before: Counted | undefined, wrote: Counted, origin: BlockOrigin, seconds = key.duration): Promise<HelperResult> {
    const id = entryId(key);
    this.work.recorded(id);
    this.work.addStarted(id, { before, wrote, client: key.address, origin });
    return new Promise<HelperResult>((resolve) => this.startAdd(key, '', seconds, resolve));
  }

  /** `rem` of the entry's rule, marked in flight meanwhile and no longer waiting for a retry; the entry is the caller's. */
  async remove(e: Entry): Promise<HelperResult> {
    const id = entryId(e.key);
    this.work.remStarted(id);
    const result = await new Promise<HelperResult>((resolve) => this.remCall(e, resolve));
    this.work.remEnded(id);
    return result;
  }

  /** The entries of rule `name` are flushed: their retries, unwritten releases and block starts go. */
  forgetName(name: string): void {
    this.work.forgetName(name);
    for (const id of this.blockedSince.keys()) if (id.startsWith(`${name}\0`)) this.blockedSince.delete(id);
    this.options.store.forgetRestoredSinceName(name);
    for (const id of this.kernelUntil.keys()) if (id.startsWith(`${name}\0`)) this.kernelUntil.delete(id);
    this.options.fleet?.flushed(name);
  }

  /** Helper work in flight, for `status`. */
  get inFlight(): { adds: number; rems: number; remRetries: number } {
    const { adds, rems, remRetries } = this.work.counts;
    return { adds, rems, remRetries };
  }

  /** A store write outside a batch: a failure is logged (storeFailed), not fatal; false then. */
  guard(write: () => void): boolean {
    try {
      write();
      return true;
    } catch (e) {
      this.storeFailed(`state_put: failed (${(e as Error).message})`);
      return false;
    }
  }

  /** No more helper calls or timers; results of running calls are still recorded. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.expiryTimer);
    // the calls gathered go to the helper now: started before it stops, or cancelled by its stop
    this.batcher.flush();
  }
}
