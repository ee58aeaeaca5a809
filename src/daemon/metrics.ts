// The daemon's counters (issue 7), kept in a prom-client registry: served as
// Prometheus text by the optional --metrics listener and summed up by the
// control socket's `status`.  The hot path only increments children bound
// to their labels in advance: no label lookup per notification.
//
// Notifications, blocks and releases carry the rule's name (issue 15): the
// names come from the configuration, bound when it is loaded, so that their
// number stays bounded; a name the configuration does not have (a manual
// block's --name, a restored entry of a rule since removed) counts as
// `_other`.  The process's own figures have the standard names
// (process_cpu_seconds_total, process_resident_memory_bytes, ...).
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type LabelValues } from 'prom-client';
import { VERSION } from '../cli.js';
import type { DropReason } from '../protocol/receive.js';
import { WireType } from '../types.js';

const BLOCK_ORIGINS = ['limit', 'restore', 'manual'] as const;
const RELEASE_ORIGINS = ['expiry', 'reset', 'manual'] as const;
export type BlockOrigin = (typeof BLOCK_ORIGINS)[number];
export type ReleaseOrigin = (typeof RELEASE_ORIGINS)[number];
export type HelperOutcome = 'ok' | 'failed' | 'timeout' | 'error';

const TYPE_LABEL: Record<number, string> = {
  [WireType.ADD]: 'auth_fail',
  [WireType.DELETE]: 'auth_ok',
  [WireType.ABUSE]: 'abusive_behavior',
  [WireType.BADUSER]: 'bad_user',
};
/** A wire type's name in metric labels and JSON log lines. */
export const typeLabel = (type: number): string => TYPE_LABEL[type] ?? String(type);

/** The receive path's reasons, the per-sender limit's (`rate_limit`) and --allow-self's (`self`: about an own address), the daemon's. */
export type DroppedReason = DropReason | 'rate_limit' | 'self';
const DROP_REASONS: DroppedReason[] = [
  'recv',
  'credentials',
  'short',
  'version',
  'peer',
  'local',
  'netns',
  'untrusted',
  'family',
  'type',
  'rate_limit',
  'self',
];

/** The rule label of names the configuration does not have. */
const OTHER_RULE = '_other';

/**
 * prom-client's gauges whose names end in _total, which Prometheus reserves
 * for counters: nodejs_active_handles etc. say the same by type.
 */
const GAUGES_NAMED_TOTAL = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** Scrapes served at once; connections beyond are closed at once (a scrape is cheap: no table is counted). */
export const METRICS_MAX_CONNECTIONS = 64;

/** What the socket gauges read of a notification socket. */
interface SocketQueueSource {
  path: string;
  kernelQueue: { length: number | undefined };
  waiting: number;
}

interface Inc {
  inc(value?: number): void;
}

/**
 * A series counted in a plain number, handed to prom-client when its counter
 * is read (the counter's collect: a scrape, `status`): prom-client's inc
 * hashes the labels at each call, 2% of the daemon's time under a flood for
 * the notifications counter.
 */
class BatchedInc implements Inc {
  private pending = 0;

  constructor(private readonly series: Inc) {}

  inc(value = 1): void {
    this.pending += value;
  }

  flush(): void {
    if (this.pending === 0) return;
    this.series.inc(this.pending);
    this.pending = 0;
  }
}

/** The series of one rule name: notifications matched, by wire type; blocks and releases by origin. */
interface RuleSeries {
  notifications: Inc[];
  blocks: Record<BlockOrigin, Inc>;
  releases: Record<ReleaseOrigin, Inc>;
}

export class Metrics {
  readonly registry = new Registry();
  readonly started = Date.now();
  private readonly notifications: Counter<'type' | 'outcome' | 'rule'>;
  /** The series of `notifications`, counted apart until it is read. */
  private readonly notificationSeries: BatchedInc[] = [];
  /** By wire type: no rule matched. */
  private readonly unmatched: Inc[] = [];
  /** By rule name, bound when the configuration is loaded (setRules). */
  private readonly byRule = new Map<string, RuleSeries>();
  /** Made at its first use: most daemons never need it. */
  private other: RuleSeries | undefined;
  private readonly reports: Counter<'type' | 'outcome'>;
  /** The same for the notifications that came from control `report` requests. */
  private readonly reportChildren: Inc[][] = [];
  private readonly droppedCounter: Counter<'reason'>;
  private readonly droppedChildren = new Map<DroppedReason, Inc>();
  private readonly blocks: Counter<'origin' | 'rule'>;
  private readonly releases: Counter<'origin' | 'rule'>;
  private readonly reloadSuccess: Gauge;
  private readonly reloadTime: Gauge;
  private readonly configRules: Gauge<'section'>;
  private readonly helperCalls: Counter<'action' | 'result'>;
  private readonly helperSeconds: Histogram<'action'>;
  private readonly receiveBatch: Histogram;
  private readonly controlRequests: Counter<'command' | 'result'>;
  private readonly evictions: Counter;

  /** `entries()`, `blocked()` and `sockets()` are read at each scrape: they must be cheap (kept counts, no table scan). */
  constructor(sizes: { entries: () => number; blocked: () => number; sockets?: () => readonly SocketQueueSource[] }) {
    const registers = [this.registry];
    this.notifications = new Counter({
      name: 'blocklistd_notifications_total',
      help: 'Notifications received, by type, outcome (matched a rule or not) and rule name (empty: no rule)',
      labelNames: ['type', 'outcome', 'rule'],
      registers,
      collect: () => this.notificationSeries.forEach((series) => series.flush()),
    });
    for (const [type, label] of Object.entries(TYPE_LABEL))
      this.unmatched[Number(type)] = this.notificationCount(this.notifications.labels({ type: label, outcome: 'no_rule', rule: '' }));
    this.reports = new Counter({
      name: 'blocklistd_reports_total',
      help: 'Notifications of them that came from control report requests (log watchers), by type and outcome',
      labelNames: ['type', 'outcome'],
      registers,
    });
    for (const [type, label] of Object.entries(TYPE_LABEL)) {
      this.reportChildren[Number(type)] = ['no_rule', 'matched'].map((outcome) => zeroed(this.reports.labels(label, outcome)));
    }
    this.droppedCounter = new Counter({
      name: 'blocklistd_notifications_dropped_total',
      help:
        'Datagrams dropped before matching, by reason ' +
        '(rate_limit: over the per-sender limit; self: about an own address, --allow-self)',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of DROP_REASONS) this.droppedChildren.set(reason, zeroed(this.droppedCounter.labels(reason)));
    this.blocks = new Counter({
      name: 'blocklistd_blocks_total',
      help: 'Blocks the packet filter took, by origin (a limit reached, a restore (-r), a manual block) and rule name',
      labelNames: ['origin', 'rule'],
      registers,
    });
    this.releases = new Counter({
      name: 'blocklistd_releases_total',
      help: 'Blocks lifted, by origin (expired, reset by AUTH_OK (forever blocks), manual) and rule name',
      labelNames: ['origin', 'rule'],
      registers,
    });
    this.helperCalls = new Counter({
      name: 'blocklistd_helper_calls_total',
      help: 'Helper calls by action and result',
      labelNames: ['action', 'result'],
      registers,
    });
    this.helperSeconds = new Histogram({
      name: 'blocklistd_helper_duration_seconds',
      help: 'Helper call latency, from start to exit',
      labelNames: ['action'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.receiveBatch = new Histogram({
      name: 'blocklistd_receive_batch_size',
      help: 'Notifications handed over per wake-up of the event loop',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers,
    });
    this.controlRequests = new Counter({
      name: 'blocklistd_control_requests_total',
      help: 'Control socket requests by command and result',
      labelNames: ['command', 'result'],
      registers,
    });
    this.evictions = new Counter({
      name: 'blocklistd_evictions_total',
      help: 'Entries not blocked deleted, soonest expiry first, to keep the database within --max-entries',
      registers,
    });
    new Gauge({
      name: 'blocklistd_build_info',
      help: 'Always 1: the version of blocklistd and of Node.js in the labels',
      labelNames: ['version', 'node', 'platform'],
      registers,
    }).set({ version: VERSION, node: process.version, platform: process.platform }, 1);
    this.reloadSuccess = new Gauge({
      name: 'blocklistd_reload_success',
      help: 'Whether the last load of the configuration (start or reload) succeeded without errors: 1, else 0',
      registers,
    });
    this.reloadTime = new Gauge({
      name: 'blocklistd_reload_timestamp_seconds',
      help: 'When the configuration was last loaded without errors (seconds since the epoch)',
      registers,
    });
    this.configRules = new Gauge({
      name: 'blocklistd_config_rules',
      help: 'Rules in force, by section of the configuration',
      labelNames: ['section'],
      registers,
    });
    new Gauge({
      name: 'blocklistd_entries',
      help: 'Entries in the state database',
      registers,
      collect() {
        this.set(sizes.entries());
      },
    });
    new Gauge({
      name: 'blocklistd_socket_queue_length',
      help: 'Datagrams the kernel queues on a notification socket (where known)',
      labelNames: ['socket'],
      registers,
      collect() {
        this.reset();
        for (const s of sizes.sockets?.() ?? []) if (s.kernelQueue.length !== undefined) this.set({ socket: s.path }, s.kernelQueue.length);
      },
    });
    new Gauge({
      name: 'blocklistd_socket_waiting',
      help: 'Datagrams received from a notification socket and not yet processed',
      labelNames: ['socket'],
      registers,
      collect() {
        this.reset();
        for (const s of sizes.sockets?.() ?? []) this.set({ socket: s.path }, s.waiting);
      },
    });
    new Gauge({
      name: 'blocklistd_blocked_entries',
      help: 'Entries at their limit (blocked, or their add pending)',
      registers,
      collect() {
        this.set(sizes.blocked());
      },
    });
  }

  /** Each series of `name`, at 0. */
  private ruleSeries(rule: string): RuleSeries {
    const notifications: Inc[] = [];
    for (const [type, label] of Object.entries(TYPE_LABEL))
      notifications[Number(type)] = this.notificationCount(this.notifications.labels({ type: label, outcome: 'matched', rule }));
    const blocks = Object.fromEntries(BLOCK_ORIGINS.map((origin) => [origin, zeroed(this.blocks.labels({ origin, rule }))])) as Record<
      BlockOrigin,
      Inc
    >;
    const releases = Object.fromEntries(
      RELEASE_ORIGINS.map((origin) => [origin, zeroed(this.releases.labels({ origin, rule }))]),
    ) as Record<ReleaseOrigin, Inc>;
    return { notifications, blocks, releases };
  }

  /** A series of `notifications`, at 0, counted apart until the counter is read. */
  private notificationCount(series: Inc): Inc {
    const batched = new BatchedInc(zeroed(series));
    this.notificationSeries.push(batched);
    return batched;
  }

  /** The series of a rule name; `_other`'s for a name the configuration does not have. */
  private rule(name: string): RuleSeries {
    return this.byRule.get(name) ?? (this.other ??= this.ruleSeries(OTHER_RULE));
  }

  /**
   * A configuration was loaded (at start or a reload), `ok` when without
   * errors: the series of its rule names bound (those of names gone stay,
   * as counters do), the rule counts set.  A refused reload passes no rules.
   */
  configLoaded(ok: boolean, rules?: { names: Iterable<string>; local: number; remote: number }): void {
    this.reloadSuccess.set(ok ? 1 : 0);
    if (ok) this.reloadTime.set(Date.now() / 1000);
    if (rules === undefined) return;
    for (const name of rules.names) if (!this.byRule.has(name)) this.byRule.set(name, this.ruleSeries(name));
    this.configRules.set({ section: 'local' }, rules.local);
    this.configRules.set({ section: 'remote' }, rules.remote);
  }

  /** A notification processed: `rule`, the name of the rule it matched. */
  notification(type: number, rule: string | undefined, report = false): void {
    (rule === undefined ? this.unmatched[type] : this.rule(rule).notifications[type])?.inc();
    if (report) this.reportChildren[type]?.[rule === undefined ? 0 : 1].inc();
  }

  dropped(reason: DroppedReason, n = 1): void {
    this.droppedChildren.get(reason)?.inc(n);
  }

  evicted(n: number): void {
    this.evictions.inc(n);
  }

  /** `n` blocks (a restore's of one rule at once). */
  block(origin: BlockOrigin, rule: string, n = 1): void {
    this.rule(rule).blocks[origin].inc(n);
  }

  release(origin: ReleaseOrigin, rule: string): void {
    this.rule(rule).releases[origin].inc();
  }

  helperCall(action: string, outcome: HelperOutcome, seconds: number): void {
    this.helperCalls.inc({ action, result: outcome });
    this.helperSeconds.observe({ action }, seconds);
  }

  receiveBatchSize(n: number): void {
    this.receiveBatch.observe(n);
  }

  controlRequest(command: string, ok: boolean): void {
    this.controlRequests.inc({ command, result: ok ? 'ok' : 'error' });
  }

  /** The counters as `status` shows them: label values → count, per counter, summed over the rules. */
  async counters(): Promise<Record<string, Record<string, number>>> {
    const out: Record<string, Record<string, number>> = {};
    for (const counter of [
      this.notifications,
      this.reports,
      this.droppedCounter,
      this.blocks,
      this.releases,
      this.helperCalls,
      this.controlRequests,
      this.evictions,
    ]) {
      const { name, values } = await counter.get();
      const short = name.replace(/^blocklistd_/, '').replace(/_total$/, '');
      const sums: Record<string, number> = (out[short] = {});
      for (const { labels, value } of values) {
        const key = labelKey(labels);
        sums[key] = (sums[key] ?? 0) + value;
      }
    }
    return out;
  }

  /** Serves GET /metrics on `host:port`, the process's own figures included; resolves once listening. */
  async listen(host: string, port: number): Promise<Server> {
    // only for a scraper: the event-loop lag monitor is a timer that wakes an idle daemon (once a second here, not prom-client's 100 times)
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 1000 });
    for (const name of GAUGES_NAMED_TOTAL) this.registry.removeSingleMetric(name);
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
      );
    });
    // a scraper that stalls does not keep a connection forever, and a crowd of them does not hold descriptors without bound
    server.maxConnections = METRICS_MAX_CONNECTIONS;
    server.requestTimeout = 10_000;
    server.headersTimeout = 10_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return server;
  }
}

/** labels() alone creates no series: a dashboard needs the fixed ones at 0 before their first event. */
function zeroed(child: Inc): Inc {
  child.inc(0);
  return child;
}

/** The label values but the rule's, joined: status sums the rules up. */
function labelKey(labels: LabelValues<string>): string {
  const values = Object.entries(labels)
    .filter(([name]) => name !== 'rule')
    .map(([, value]) => value);
  return values.length === 0 ? 'total' : values.join(':');
}
