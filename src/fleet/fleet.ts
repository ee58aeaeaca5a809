// The fleet link (issue 17, doc/fleet.md): this host's blocks published in
// a NATS JetStream key-value bucket under its origin, other hosts' blocks
// applied from a watch of the bucket, each through the helper as the
// engine's are (run/batch.ts), kept in their own table (fleet/state.ts).
// The connection, the watch and the publishing are the edges; what a key
// or value means is record.ts's.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { connect, credsAuthenticator, nkeyAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV, type KvEntry, type KvWatchEntry } from '@nats-io/kv';
import { errnoText } from '../errno.js';
import { HelperBatcher } from '../run/batch.js';
import { failureText, type HelperResult, type HelperRunner, type HelperTarget } from '../run/helper.js';
import type { StateStore } from '../state/store.js';
import { ANY, type EffectiveRule, type LogFn } from '../types.js';
import { targetOf } from '../daemon/engine.js';
import { kernelTimeout } from '../daemon/kernel-expiry.js';
import type { SharedBlocks } from './hook.js';
import { FleetRecordError, keyOf, localEnd, originOfKey, parseValue, valueOf, type FleetBlock } from './record.js';
import { FleetState, type Element, type LearnedBlock, type OutboxItem } from './state.js';

/** A learned block whose origin's start is more than this far ahead of the local clock starts when received (doc/fleet.md §4). */
export const CLOCK_SKEW_S = 300;
/** Watch entries applied in one transaction at most; the rest after a turn of the event loop. */
const APPLY_CHUNK = 2000;
/** Outbox items sent at once (each put waits for the server's ack). */
const PUBLISH_CHUNK = 512;
/** A failed publish is tried again after this long, doubling up to the maximum (ms). */
const RETRY_MS = 500;
const RETRY_MAX_MS = 5000;
/** Ends looked at at least this often (ms): the timer runs on a monotonic clock. */
const MAX_TIMER_MS = 3_600_000;
/** Waits between rounds of connection tries: doubling from the first to the last (ms). */
const RECONNECT_MS = 250;
const RECONNECT_MAX_MS = 10_000;
/** No connection this long after the start: logged (the client tries again quietly). */
const FIRST_CONNECT_WARN_MS = 5000;
/**
 * The watch is compared with the bucket's last sequence this often (ms): behind it at two checks in a row, nothing
 * delivered between them, it is started again.  A watch's consumer lives on one node of a cluster; with that node killed,
 * the client's ordered consumer was seen (nats-server 2.9.10, test/fleet-cluster.test.ts) neither delivering nor ending
 * for minutes, the daemon learning nothing more.
 */
const WATCH_CHECK_MS = 10_000;
/** Rejected values are logged at most this often (ms); the rest are counted. */
const REJECT_LOG_MS = 10_000;

export interface FleetConfig {
  /** nats:// or tls:// URLs. */
  servers: string[];
  /** This host's origin. */
  name: string;
  bucket: string;
  /** A NATS credentials file (JWT + nkey seed), or a user nkey seed alone. */
  creds?: string;
  /** A file with `user:password` on its first line. */
  userFile?: string;
  tls?: { ca?: string; cert?: string; key?: string };
  /** Seconds; 0: no cap. */
  maxDuration: number;
  /** Origins applied; empty: every one. */
  trust: string[];
}

export interface FleetOptions extends FleetConfig {
  store: StateStore;
  helper: HelperRunner;
  log: LogFn;
  debug: () => number;
  /** Now, in whole seconds. */
  clock: () => number;
  /** A local allow-list rule covers the block's address: the fleet does not impose it. */
  allowListed: (b: Pick<FleetBlock, 'address' | 'port' | 'proto'>) => boolean;
  /** Kernel expiry on (the helper takes timeouts): the adds carry a timeout this long after the block's end (doc/fleet.md §5). */
  kernelExpiryMargin?: number;
  /** --rem-retry: seconds before a failed rem of a learned block's element is tried again. */
  remRetry: number;
}

/** `blocklistctl status`'s fleet object and the metrics' source. */
export interface FleetStatus {
  connected: boolean;
  server: string | null;
  name: string;
  bucket: string;
  /** Publishes and deletes waiting for the server. */
  pending: number;
  published: number;
  /** Blocks of other hosts applied, and released. */
  applied: number;
  released: number;
  /** Values refused: malformed, hostile, of an untrusted origin. */
  rejected: number;
  /** Blocks left out because a local allow-list rule covers them. */
  allowListed: number;
  /** Learned blocks in force now. */
  blocks: number;
}

/** The element of a helper target, as the fleet's tables name it. */
const elementOf = (t: HelperTarget): Element => ({ name: t.name, address: t.address, mask: t.mask, proto: t.proto, port: t.port });
const targetOfBlock = (b: Element): HelperTarget => ({
  name: b.name,
  proto: b.proto as HelperTarget['proto'],
  address: b.address,
  mask: b.mask,
  port: b.port,
});
/** An element as a map key. */
const elementKey = (e: Element): string => `${e.name}\0${e.address}\0${e.mask}\0${e.proto}\0${e.port}`;
/** A kernel timeout added at `now` as when the kernel drops the element (epoch seconds, Infinity: never). */
const untilOf = (timeout: number | undefined, now: number): number => (timeout === undefined ? Infinity : now + timeout);
const whereOf = (b: Element): string => `${b.address}/${b.mask}:${b.port < 0 ? '*' : b.port}`;

/** A local block as the bucket gets it, lasting `seconds` (the rule's duration, or an escalated block's own length; ANY: forever). */
export function blockOf(origin: string, key: EffectiveRule, start: number, reason: string, seconds = key.duration): FleetBlock {
  const t = targetOf(key);
  return {
    origin,
    name: t.name,
    family: isIP(t.address) === 6 ? 6 : 4,
    address: t.address,
    mask: t.mask,
    proto: t.proto,
    port: t.port,
    duration: seconds,
    start,
    end: seconds === ANY ? null : start + seconds,
    reason,
  };
}

export class Fleet implements SharedBlocks {
  private readonly state: FleetState;
  private readonly batcher: HelperBatcher;
  private nc: NatsConnection | undefined;
  private kv: KV | undefined;
  /** The current watch; a new one (after a reconnect) makes the old one stop. */
  private watchGeneration = 0;
  private watchStop: (() => void) | undefined;
  /** What the watch had delivered at the last check that found it behind the bucket (checkWatch). */
  private watchBehindAt: number | undefined;
  /** Entries received, applied a chunk per transaction. */
  private readonly received: KvWatchEntry[] = [];
  private applyScheduled = false;
  private publishing = false;
  private publishDelay = RETRY_MS;
  private publishTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  /** This host's keys in the bucket, as the watch shows them, by key: what a flush or a lost database leaves there. */
  private readonly ownKeys = new Map<string, FleetBlock>();
  /** Learned blocks whose add runs; one released meanwhile is removed when it returns. */
  private readonly adding = new Set<string>();
  /** Kernel expiry: when the kernel drops each element, as its last add (the fleet's or the engine's) set it (untilOf). */
  private readonly kernelUntil = new Map<string, number>();
  /** Kernel expiry: until when the engine's block of each element needs it (timeoutFor, covers), forgotten at its release. */
  private readonly localUntil = new Map<string, number>();
  /** Failed rems of released learned blocks, waiting for their next try (--rem-retry). */
  private readonly remRetries = new Set<NodeJS.Timeout>();
  private stopped = false;
  private connected = false;
  /** The next wait before trying the servers again (ms). */
  private reconnectDelay = RECONNECT_MS;
  private readonly trust: Set<string>;
  private readonly counts = { published: 0, applied: 0, released: 0, rejected: 0, allowListed: 0 };
  private rejectLog = { at: -Infinity, unlogged: 0 };

  constructor(private readonly o: FleetOptions) {
    this.state = new FleetState(o.store);
    this.trust = new Set(o.trust);
    this.batcher = new HelperBatcher({
      helper: o.helper,
      settle: (calls, results) => this.state.transaction(() => calls.forEach((c, i) => c.done(results[i]!))),
    });
  }

  setBatchMode(on: boolean): void {
    this.batcher.setBatchMode(on);
  }

  // --- the engine's hook (fleet/hook.ts) ---

  blocked(key: EffectiveRule, start: number, seconds: number, reason: string): void {
    const b = blockOf(this.o.name, key, start, reason, seconds);
    // a renewal moves the end the bucket has by a tenth of the duration at least (1 s): an address hammering on does not flood the fleet
    const published = this.ownKeys.get(keyOf(b));
    if (
      reason === 'renewed' &&
      published !== undefined &&
      published.end !== null &&
      b.end !== null &&
      b.end - published.end < Math.max(1, b.duration / 10)
    )
      return;
    this.safely('the publish of a block', () => this.state.enqueue(keyOf(b), valueOf(b)));
    this.kick();
  }

  released(key: EffectiveRule): void {
    const element = elementOf(targetOf(key));
    this.localUntil.delete(elementKey(element));
    // the fleet keeps the element: its timeout is the learned blocks' now (§5)
    const held = this.state.fleetHolder(element);
    if (held === undefined) this.kernelUntil.delete(elementKey(element));
    else this.retime(element, held, true);
    this.safely('the delete of a released block', () => this.state.enqueue(keyOf(blockOf(this.o.name, key, 0, '')), null));
    this.kick();
  }

  flushed(name: string): void {
    for (const map of [this.kernelUntil, this.localUntil]) for (const k of map.keys()) if (k.startsWith(`${name}\0`)) map.delete(k);
    this.safely('the deletes of a flush', () => this.pruneOwn((element) => element.name === name));
  }

  /**
   * A write of the fleet's tables outside the engine's control (the watch,
   * a timer) or inside its transaction: a failure (a full disk) is logged,
   * never thrown into the caller, the engine's block or the event loop.
   */
  private safely(what: string, write: () => void): void {
    try {
      write();
    } catch (e) {
      this.o.log('err', `fleet: ${what} could not be written (${(e as Error).message})`);
    }
  }

  holding(target: HelperTarget): string | undefined {
    return this.state.fleetHolder(elementOf(target));
  }

  timeoutFor(target: HelperTarget, until: number): number {
    const element = elementOf(target);
    this.localUntil.set(elementKey(element), until);
    const covering = this.need(element, this.o.clock(), until) ?? until;
    this.kernelUntil.set(elementKey(element), covering);
    return covering;
  }

  covers(target: HelperTarget, until: number): boolean {
    this.localUntil.set(elementKey(elementOf(target)), until);
    const kernel = this.kernelUntil.get(elementKey(elementOf(target)));
    return kernel !== undefined && until - (this.o.kernelExpiryMargin ?? 0) / 2 <= kernel;
  }

  /**
   * Kernel expiry: until when the holders of an element need the kernel to
   * keep it: the latest of the learned blocks' ends and the local block's
   * need (`local`, the engine's add's own, else as recorded while a local
   * entry holds it), as kernelTimeout makes them; undefined: kernel expiry
   * off, or no holder known.
   */
  private need(e: Element, now: number, local?: number): number | undefined {
    const margin = this.o.kernelExpiryMargin;
    if (margin === undefined) return undefined;
    let until = local ?? (this.state.localHolder(e) === undefined ? undefined : this.localUntil.get(elementKey(e)));
    for (const ends of this.state.ends(e)) {
      // a block whose deadline is `ends`: a duration of 0 from then, forever for null
      const learned = untilOf(kernelTimeout(ends === null ? ANY : 0, ends ?? 0, now, margin), now);
      if (until === undefined || learned > until) until = learned;
    }
    return until;
  }

  /**
   * A holder of a shared element came or moved its end, or went while
   * others stay (`went`), §5: the element is added again with the timeout
   * its holders need now: always when one went (whatever add came last,
   * the timeout is then the remaining holders'), else when that ends more
   * than half a margin after the kernel's (a later holder, a renewal) or
   * the kernel's is not known; `id` the element's id.
   */
  private retime(e: Element, id: string, went = false): void {
    const margin = this.o.kernelExpiryMargin;
    const now = this.o.clock();
    const need = this.need(e, now);
    const kernel = this.kernelUntil.get(elementKey(e));
    if (margin === undefined || need === undefined || (!went && kernel !== undefined && need <= kernel + margin / 2)) return;
    this.kernelUntil.set(elementKey(e), need);
    const timeout = need === Infinity ? undefined : need - now;
    this.batcher.call({ action: 'add', target: targetOfBlock(e), id, timeout }, (result) => {
      if (result.outcome !== 'ok' && result.outcome !== 'cancelled')
        this.o.log(
          'err',
          `fleet: add ${e.name} ${whereOf(e)} (a new kernel timeout) failed${failureText(result)}; the filter may drop it early`,
        );
    });
  }

  // --- the link ---

  /** Connects in the background (with back-off, forever); blocks learned before stay until their end meanwhile. */
  start(): void {
    this.armExpiry();
    void this.connectLoop();
  }

  private connectionOptions(): ConnectionOptions {
    const o = this.o;
    const options: ConnectionOptions = {
      servers: o.servers,
      name: `blocklistd ${o.name}`,
      maxReconnectAttempts: -1,
      // back-off: 250 ms doubling to 10 s (with the client's jitter) while no server answers, from 250 ms again once one did
      reconnectDelayHandler: () => {
        const delay = this.reconnectDelay;
        this.reconnectDelay = Math.min(delay * 2, RECONNECT_MAX_MS);
        return delay;
      },
      reconnectJitter: 250,
      waitOnFirstConnect: true,
      timeout: 5000,
    };
    if (o.creds !== undefined) {
      const text = readFileSync(o.creds, 'utf8');
      // a credentials file (a user JWT and its seed), or a user nkey seed alone (nkey authentication)
      options.authenticator = text.includes('-----BEGIN NATS USER JWT-----')
        ? credsAuthenticator(Buffer.from(text))
        : nkeyAuthenticator(Buffer.from(text.trim()));
    }
    if (o.userFile !== undefined) {
      const line = readFileSync(o.userFile, 'utf8').split('\n')[0]!.trim();
      const colon = line.indexOf(':');
      options.user = line.slice(0, colon);
      options.pass = line.slice(colon + 1);
    }
    if (o.tls !== undefined || o.servers.some((s) => s.startsWith('tls://')))
      options.tls = { caFile: o.tls?.ca, certFile: o.tls?.cert, keyFile: o.tls?.key };
    return options;
  }

  private async connectLoop(): Promise<void> {
    let nc: NatsConnection;
    // the client tries again quietly until the first connection: say so once
    const quiet = setTimeout(
      () =>
        this.o.log(
          'warning',
          `fleet: no server of ${this.o.servers.join(',')} reachable yet: blocking locally, publishes kept, still trying`,
        ),
      FIRST_CONNECT_WARN_MS,
    );
    quiet.unref();
    try {
      nc = await connect(this.connectionOptions());
      clearTimeout(quiet);
    } catch (e) {
      clearTimeout(quiet);
      if (this.stopped) return;
      this.o.log('err', `fleet: cannot connect to ${this.o.servers.join(',')}: ${errnoText(e)}; trying again`);
      setTimeout(() => void this.connectLoop(), RETRY_MAX_MS).unref();
      return;
    }
    if (this.stopped) return void nc.close();
    this.nc = nc;
    this.connected = true;
    this.o.log('info', `fleet: connected to ${nc.getServer()} as ${this.o.name}, bucket ${this.o.bucket}`, {
      event: 'fleet',
      state: 'connected',
      server: nc.getServer(),
    });
    void this.followStatus(nc);
    await this.openBucket();
  }

  private async followStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        if (this.connected)
          this.o.log('warning', `fleet: disconnected from ${s.server}: blocking locally, publishes kept until it is back`, {
            event: 'fleet',
            state: 'disconnected',
          });
        this.connected = false;
      } else if (s.type === 'reconnect') {
        this.connected = true;
        this.reconnectDelay = RECONNECT_MS;
        this.o.log('info', `fleet: reconnected to ${s.server}`, { event: 'fleet', state: 'connected', server: s.server });
        // catch up: the bucket read again from its start, the outbox sent
        void this.openBucket();
      }
    }
  }

  /** The bucket (created if missing and allowed), then its watch and the outbox. */
  private async openBucket(): Promise<void> {
    const nc = this.nc;
    if (nc === undefined || this.stopped) return;
    try {
      const kvm = new Kvm(nc);
      let kv = await kvm.open(this.o.bucket);
      try {
        await kv.status();
      } catch {
        // no such bucket yet: history of one value per key, as a block has one state
        kv = await kvm.create(this.o.bucket, { history: 1 });
      }
      this.kv = kv;
      await this.watch(kv);
    } catch (e) {
      if (this.stopped) return;
      this.o.log('err', `fleet: bucket ${this.o.bucket}: ${errnoText(e)}; trying again`);
      setTimeout(() => void this.openBucket(), RETRY_MS * 4).unref();
      return;
    }
    this.kick();
  }

  /**
   * Replays the bucket, then follows its changes.  Once the replay is
   * through (the stream's last sequence seen), learned blocks whose key is
   * gone are released: deleted while this host was away.
   */
  private async watch(kv: KV): Promise<void> {
    const generation = ++this.watchGeneration;
    this.watchStop?.();
    const info = (await kv.status()).streamInfo.state;
    const seen = new Set<string>();
    let replaying = info.messages > 0;
    if (!replaying) this.reconcile(seen);
    const watcher = await kv.watch({ key: 'v1.>' });
    // the bucket's last sequence the watch has caught up with: what the replay reads, then what it delivers
    let delivered = info.last_seq;
    this.watchBehindAt = undefined;
    const check = setInterval(() => void this.checkWatch(kv, generation, () => delivered), WATCH_CHECK_MS).unref();
    this.watchStop = () => {
      clearInterval(check);
      watcher.stop();
    };
    const follow = async (): Promise<void> => {
      for await (const e of watcher) {
        if (generation !== this.watchGeneration || this.stopped) break;
        if (e.revision > delivered) delivered = e.revision;
        if (replaying) {
          seen.add(e.key);
          if (e.revision >= info.last_seq) {
            replaying = false;
            this.enqueueReceived(e);
            this.applyReceived();
            this.reconcile(seen);
            continue;
          }
        }
        this.enqueueReceived(e);
      }
    };
    void (async () => {
      let why = 'ended';
      try {
        await follow();
      } catch (e) {
        why = `failed (${errnoText(e)})`;
      }
      // the watch's consumer gone (a cluster node lost with it, the server's restart): the bucket read again
      if (this.stopped || generation !== this.watchGeneration) return;
      this.o.log('warning', `fleet: the watch of ${this.o.bucket} ${why}; reading the bucket again`);
      setTimeout(() => void this.openBucket(), RETRY_MS * 4).unref();
    })();
  }

  /** The watch of `generation` behind the bucket at this check and the one before, nothing delivered since: started again. */
  private async checkWatch(kv: KV, generation: number, delivered: () => number): Promise<void> {
    let last: number;
    try {
      last = (await kv.status()).streamInfo.state.last_seq;
    } catch {
      // no answer (no leader, no connection): the next check asks again
      return;
    }
    if (this.stopped || generation !== this.watchGeneration) return;
    const at = delivered();
    if (last <= at) {
      this.watchBehindAt = undefined;
    } else if (this.watchBehindAt !== at) {
      this.watchBehindAt = at;
    } else {
      this.watchBehindAt = undefined;
      this.o.log('warning', `fleet: the watch of ${this.o.bucket} stalled at sequence ${at} of ${last}; reading the bucket again`);
      void this.openBucket();
    }
  }

  private enqueueReceived(e: KvWatchEntry): void {
    this.received.push(e);
    if (this.applyScheduled) return;
    this.applyScheduled = true;
    setImmediate(() => this.applyReceived());
  }

  /** Received entries applied, a chunk per transaction; helper calls after the commit. */
  private applyReceived(): void {
    this.applyScheduled = false;
    if (this.stopped) return;
    const chunk = this.received.splice(0, APPLY_CHUNK);
    const after: (() => void)[] = [];
    const now = this.o.clock();
    this.safely(`${chunk.length} changes of the bucket`, () =>
      this.state.transaction(() => chunk.forEach((e) => this.applyEntry(e, now, after))),
    );
    for (const start of after) start();
    if (this.received.length > 0) {
      this.applyScheduled = true;
      setImmediate(() => this.applyReceived());
    }
    this.armExpiry();
  }

  private applyEntry(e: KvEntry, now: number, after: (() => void)[]): void {
    const origin = originOfKey(e.key);
    if (origin === this.o.name) return this.ownKey(e);
    if (e.operation !== 'PUT') return this.release(e.key, 'deleted by its origin', after);
    if (origin === undefined) return this.reject(e.key, 'a key of an unknown layout');
    if (this.trust.size > 0 && !this.trust.has(origin)) return this.reject(e.key, `origin ${origin} is not in --fleet-trust`);
    let b: FleetBlock;
    try {
      b = parseValue(e.key, e.value);
    } catch (err) {
      if (!(err instanceof FleetRecordError)) throw err;
      return this.reject(e.key, err.message);
    }
    const ends = localEnd(b, now, CLOCK_SKEW_S, this.o.maxDuration);
    if (ends === undefined) return this.release(e.key, 'ended', after);
    if (this.o.allowListed(b)) {
      this.counts.allowListed++;
      if (this.o.debug() > 0) this.o.log('debug', `fleet: ${whereOf(b)} from ${origin} not applied: a local allow-list rule covers it`);
      return;
    }
    const existing = this.state.get(e.key);
    this.state.put({ ...b, key: e.key }, ends, existing?.id ?? '');
    if (existing !== undefined) {
      // renewed: its end moved; in the filter, its kernel timeout may need to follow (§5)
      if (existing.id !== '' && !this.adding.has(e.key)) after.push(() => this.retime(b, existing.id));
      return;
    }
    this.counts.applied++;
    this.o.log(
      'info',
      `fleet: blocked ${whereOf(b)} (${b.name} ${b.proto === '' ? 'any' : b.proto}) from ${origin} ` +
        (ends === null ? 'forever' : `for ${ends - now} seconds`),
      {
        event: 'fleet-block',
        origin,
        rule: b.name,
        address: b.address,
        mask: b.mask,
        port: b.port < 0 ? undefined : b.port,
        ends: ends ?? undefined,
      },
    );
    // another holder has the element in the filter: shared, not added twice
    const held = this.state.localHolder(b) ?? this.state.fleetHolder(b, e.key);
    if (held !== undefined) {
      this.state.setId(e.key, held);
      // the element's timeout may end before this block: it is added again with a timeout covering it (§5)
      return void after.push(() => this.retime(b, held));
    }
    after.push(() => this.add(e.key, b));
  }

  private add(key: string, element: Element): void {
    this.adding.add(key);
    const now = this.o.clock();
    const need = this.need(element, now);
    if (need !== undefined) this.kernelUntil.set(elementKey(element), need);
    const timeout = need === undefined || need === Infinity ? undefined : need - now;
    this.batcher.call({ action: 'add', target: targetOfBlock(element), id: '', timeout }, (result) => {
      this.adding.delete(key);
      const row = this.state.get(key);
      if (result.outcome !== 'ok') {
        if (result.outcome === 'cancelled') return; // stopping: restored at the next start with -r
        this.o.log('err', `fleet: add ${element.name} ${whereOf(element)}: the helper gave no rule id${failureText(result)}`);
        return;
      }
      const id = result.id || `fleet-${key}`;
      if (row !== undefined) return this.state.setId(key, id);
      // released while the add ran: removed now, unless another holder keeps it
      this.remove({ ...element, id });
    });
  }

  /** A learned block gone (deleted, ended): its row deleted, and its element removed unless another holder keeps it. */
  private release(key: string, why: string, after: (() => void)[]): void {
    const row = this.state.get(key);
    if (row === undefined) return;
    this.state.delete(key);
    this.counts.released++;
    this.o.log('info', `fleet: released ${whereOf(row)} from ${row.origin}: ${why}`, {
      event: 'fleet-release',
      origin: row.origin,
      rule: row.name,
      address: row.address,
      mask: row.mask,
      reason: why,
    });
    if (this.adding.has(key) || row.id === '') return; // its add's return removes it; no id: the add failed, or a local entry holds it
    after.push(() => this.remove(row));
  }

  private remove(row: Element & { id: string }): void {
    // another holder keeps it: with the timeout its holders need now (§5)
    const held = this.state.localHolder(row) ?? this.state.fleetHolder(row);
    if (held !== undefined) return this.retime(row, held || row.id, true);
    this.kernelUntil.delete(elementKey(row));
    this.batcher.call({ action: 'rem', target: targetOfBlock(row), id: row.id }, (result: HelperResult) => {
      if (result.outcome === 'ok' || result.outcome === 'cancelled') return; // cancelled: stopping
      // the element stays in the filter until a rem works, as the engine's own (G17); a holder come meanwhile keeps it
      this.o.log('err', `fleet: rem ${row.name} ${whereOf(row)} failed${failureText(result)}; retrying in ${this.o.remRetry} s`);
      const retry = setTimeout(() => {
        this.remRetries.delete(retry);
        if (!this.stopped) this.remove(row);
      }, this.o.remRetry * 1000);
      this.remRetries.add(retry);
    });
  }

  /** After a replay: learned blocks whose key the bucket no longer has were deleted meanwhile; this host's keys without a block here go. */
  private reconcile(seen: Set<string>): void {
    const after: (() => void)[] = [];
    this.safely('the release of blocks gone from the bucket', () =>
      this.state.transaction(() => {
        for (const row of this.state.all()) if (!seen.has(row.key)) this.release(row.key, 'gone from the bucket', after);
      }),
    );
    for (const start of after) start();
    for (const key of this.ownKeys.keys()) if (!seen.has(key)) this.ownKeys.delete(key);
    this.pruneOwn(() => true);
    this.armExpiry();
  }

  /** One of this host's keys, put or deleted: kept track of, never applied. */
  private ownKey(e: KvEntry): void {
    if (e.operation !== 'PUT') return void this.ownKeys.delete(e.key);
    try {
      this.ownKeys.set(e.key, parseValue(e.key, e.value));
    } catch {
      // not one this version wrote: left alone
    }
  }

  /**
   * This host's keys in the bucket whose element no entry here holds (its
   * rule flushed by hand, the database lost or replaced): deleted, so
   * that the other hosts release them.
   */
  private pruneOwn(select: (element: Element) => boolean): void {
    let n = 0;
    this.state.transaction(() => {
      for (const [key, element] of this.ownKeys) {
        if (!select(element) || this.state.localHolder(element) !== undefined || this.state.queued(key)) continue;
        this.state.enqueue(key, null);
        this.ownKeys.delete(key);
        n++;
      }
    });
    if (n === 0) return;
    this.o.log('info', `fleet: deleting ${n} keys of this host that no block here holds any more`);
    this.kick();
  }

  private reject(key: string, why: string): void {
    this.counts.rejected++;
    const now = performance.now();
    if (now - this.rejectLog.at < REJECT_LOG_MS) {
      this.rejectLog.unlogged++;
      return;
    }
    const more = this.rejectLog.unlogged > 0 ? ` (and ${this.rejectLog.unlogged} more since the last such line)` : '';
    this.o.log('warning', `fleet: ignored ${key.slice(0, 200)}: ${why}${more}`, {
      event: 'fleet-reject',
      key: key.slice(0, 200),
      reason: why,
    });
    this.rejectLog = { at: now, unlogged: 0 };
  }

  // --- expiry ---

  private armExpiry(): void {
    clearTimeout(this.expiryTimer);
    if (this.stopped) return;
    const next = this.state.nextEnd();
    if (next === undefined) return;
    const delay = Math.min(Math.max(0, next * 1000 - Date.now()), MAX_TIMER_MS);
    this.expiryTimer = setTimeout(() => this.expire(), delay);
  }

  private expire(): void {
    if (this.stopped) return;
    const after: (() => void)[] = [];
    const now = this.o.clock();
    this.safely('the release of ended blocks', () =>
      this.state.transaction(() => {
        for (const row of this.state.due(now, APPLY_CHUNK)) this.release(row.key, 'its end passed', after);
      }),
    );
    for (const start of after) start();
    this.armExpiry();
  }

  // --- publishing ---

  /** The outbox sent, when connected; a failure waits and tries again. */
  private kick(): void {
    if (this.publishing || this.publishTimer !== undefined || !this.connected || this.kv === undefined || this.stopped) return;
    void this.publish(this.kv);
  }

  private async publish(kv: KV): Promise<void> {
    this.publishing = true;
    try {
      for (let items: OutboxItem[]; (items = this.state.outbox(PUBLISH_CHUNK)).length > 0 && !this.stopped;) {
        await Promise.all(
          items.map((item) => (item.value === null ? kv.delete(item.key) : kv.put(item.key, item.value)).then(() => void this.sent(item))),
        );
      }
      this.publishDelay = RETRY_MS;
    } catch (e) {
      if (!this.stopped) {
        this.o.log(
          'warning',
          `fleet: publishing failed (${errnoText(e)}): ${this.state.pending()} pending, trying again in ${this.publishDelay} ms`,
        );
        this.publishTimer = setTimeout(() => {
          this.publishTimer = undefined;
          this.kick();
        }, this.publishDelay);
        this.publishDelay = Math.min(this.publishDelay * 2, RETRY_MAX_MS);
      }
    } finally {
      this.publishing = false;
    }
  }

  private sent(item: OutboxItem): void {
    this.state.sent(item);
    this.counts.published++;
  }

  // --- operating ---

  /** After a reload: the learned blocks that an allow-list rule in force now covers are released (the local rule wins, §4). */
  releaseAllowListed(): void {
    const after: (() => void)[] = [];
    this.safely('the release of blocks allow-listed by a reload', () =>
      this.state.transaction(() => {
        for (const row of this.state.all()) {
          if (!this.o.allowListed(row)) continue;
          this.counts.allowListed++;
          this.release(row.key, 'a local allow-list rule covers it', after);
        }
      }),
    );
    for (const start of after) start();
  }

  /** Re-adds every learned block (a start or reload with -r flushed the rule names). */
  restore(): number {
    const elements = new Set<string>();
    let n = 0;
    for (const row of this.state.all()) {
      const element = elementKey(row);
      // the engine's restore re-adds what a local entry holds; one add per element
      if (elements.has(element) || this.state.localHolder(row) !== undefined) continue;
      elements.add(element);
      this.add(row.key, row);
      n++;
    }
    return n;
  }

  /** -f without -r: the filter was flushed and the database emptied: the learned blocks come back from the bucket. */
  forget(): void {
    this.state.transaction(() => {
      for (const row of this.state.all()) this.state.delete(row.key);
    });
  }

  status(): FleetStatus {
    return {
      connected: this.connected,
      server: this.nc?.getServer() ?? null,
      name: this.o.name,
      bucket: this.o.bucket,
      pending: this.state.pending(),
      ...this.counts,
      blocks: this.state.count(),
    };
  }

  /** Learned blocks, for dump. */
  blocks(): LearnedBlock[] {
    return this.state.all();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const retry of this.remRetries) clearTimeout(retry);
    clearTimeout(this.expiryTimer);
    clearTimeout(this.publishTimer);
    this.watchStop?.();
    this.batcher.flush();
    await this.nc?.close().catch(() => {});
  }
}
