// blocklistd assembled (daemon.md §2-§4): start-up in upstream's order,
// the receive loop in batches, reload and the signals, and a clean stop;
// beside it the control socket, the metrics listener and systemd's
// notifications (issue 7).
import { execFile } from 'node:child_process';
import { accessSync, closeSync, constants as fsConstants, existsSync, openSync, readSync, statSync, unlinkSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import type { Server } from 'node:http';
import { VERSION } from '../cli.js';
import { debugListing, ruleChanges } from '../conf/format.js';
import { loadConfig, type LoadResult } from '../conf/load.js';
import { allowedNetworks } from '../escalate/aggregate.js';
import { Aggregator } from '../escalate/aggregator.js';
import { compileRules } from '../conf/match.js';
import { formatDiagnostic } from '../conf/ruleset.js';
import { interfaceAddresses, lookupGroup, systemEnv } from '../conf/system.js';
import type { Diagnostic, RuleSet } from '../conf/types.js';
import type { Notification } from '../types.js';
import { ControlError } from '../protocol/control.js';
import { errnoText } from '../errno.js';
import { NotificationSocket, SocketSetupError, ownNetns } from '../protocol/server.js';
import { HelperRunner, type HelperExtensions, type HelperResult } from '../run/helper.js';
import { DatabaseLock, LockError } from '../state/lock.js';
import { StateError, StateStore } from '../state/store.js';
import {
  failOpen,
  fileProblems,
  loopbackExposed,
  startupProblems,
  type BackendCheck,
  type FileFacts,
  type Problem,
  type ProgramState,
  type StartupFacts,
} from './checks.js';
import { matchFor, runCommand, type CommandContext } from './commands.js';
import type { Fleet } from '../fleet/fleet.js';
import { parseIP } from '../conf/ip.js';
import { ANY } from '../types.js';
import { ControlServer, ControlSetupError, type ControlServerOptions } from './control.js';
import { Engine } from './engine.js';
import { type DaemonLogger } from './log.js';
import { debugLog } from '../debug.js';
import { ManualCommands } from './manual.js';
import { Metrics, type HelperOutcome } from './metrics.js';
import type { DaemonOptions } from './options.js';
import { SenderLimiter, isTrusted, type TrustedSenders } from './ratelimit.js';
import { helperExtensions } from './kernel-expiry.js';
import { SystemdNotifier, listenSockets, type ListenSocket } from './systemd.js';
import { FloodMemory } from './heap.js';

const mb = (bytes: number): string => (bytes / 1048576).toFixed(1);

/** A start-up failure: the daemon logs it and exits 1. */
export class FatalError extends Error {
  override readonly name = 'FatalError';
}

const SEVERITY_LEVEL = { error: 'err', warning: 'warning', info: 'info' } as const;

/** A sender over its limit is logged at most this often (ms). */
const LIMIT_LOG_MS = 60_000;

/** Rule changes a reload lists in the log, one line each; the rest are counted. */
const RELOAD_LIST_MAX = 20;

/** How long running helper calls may take to finish at shutdown. */
const STOP_GRACE_MS = 10_000;

/** A helper call's outcome as the metrics count it: killed by a signal is a failure there. */
const metricOutcome = (r: HelperResult): HelperOutcome => (r.outcome === 'killed' || r.outcome === 'cancelled' ? 'failed' : r.outcome);

export class Daemon {
  private readonly sockets: NotificationSocket[] = [];
  /** Sockets systemd passed: neither bound nor removed here. */
  private readonly adopted = new Set<NotificationSocket>();
  private store: StateStore | undefined;
  /** Held from before the database opens until after it closes. */
  private lock: DatabaseLock | undefined;
  private helper: HelperRunner | undefined;
  private engine: Engine | undefined;
  /** --fleet: blocks shared with other hosts (issue 17). */
  private fleet: Fleet | undefined;
  private manual: ManualCommands | undefined;
  private metrics: Metrics | undefined;
  private control: ControlServer | undefined;
  private metricsServer: Server | undefined;
  private readonly notifier: SystemdNotifier | undefined;
  private ruleSet: RuleSet = { local: [], remote: [] };
  /** The `[escalate]` and `[aggregate]` policies in force (doc/escalation.md). */
  private escalation: LoadResult['escalation'] = new Map();
  private aggregation: LoadResult['aggregation'] = new Map();
  private aggregator: Aggregator | undefined;
  private interfaceTimer: NodeJS.Timeout | undefined;
  private limiter: SenderLimiter | undefined;
  private trusted: TrustedSenders = { uids: new Set([0]), gids: new Set() };
  /** Reports the drops of senders over their limit that the last log line did not tell. */
  private limitLogTimer: NodeJS.Timeout | undefined;
  /** Facts of the start-up check that a reload does not gather again: the helper's, and warnings of the system. */
  private helperFacts: Pick<StartupFacts, 'helperState' | 'backend' | 'warnings'> = {
    helperState: { state: 'ok' },
    backend: undefined,
    warnings: [],
  };
  /** What the last start or reload found wrong (checks.ts), and what the sockets' set-up found: `blocklistctl status` shows them. */
  private problems: Problem[] = [];
  private readonly socketProblems: Problem[] = [];
  private readonly floodMemory = new FloodMemory((before, after, ms) =>
    this.debugLine(
      1,
      () => `quiet after a flood: V8's young generation ${mb(before)} -> ${mb(after)} MB (a collection of ${ms.toFixed(1)} ms)`,
    ),
  );
  private stopping = false;
  private started = false;
  private batchMode = false;
  /** What is asked of the helper beyond upstream's contract (kernel-expiry.ts). */
  private extensions: HelperExtensions = { timeouts: false, cut: false };

  /** The margin of the kernel timeouts in use; undefined when off, or the helper does not take them. */
  private get kernelExpiryMargin(): number | undefined {
    return this.extensions.timeouts ? this.options.kernelExpiryMargin : undefined;
  }
  /** The helper's answer to `capabilities`, for the start line. */
  private capabilities: string[] = [];
  private reloadPending = false;
  private reloading: Promise<void> = Promise.resolve();
  /** The last refresh of the packet filter asked for (refreshFilter), and the one not started yet. */
  private refreshing: Promise<void> = Promise.resolve();
  private refreshQueued: Promise<void> | undefined;
  /** Set by SIGUSR1/SIGUSR2, never below 0 (G20). */
  debug: number;

  constructor(
    private readonly options: DaemonOptions,
    private readonly logger: DaemonLogger,
  ) {
    this.debug = options.debug;
    this.notifier = SystemdNotifier.fromEnv(logger.log);
  }

  private get log(): DaemonLogger['log'] {
    return this.logger.log;
  }

  private readonly debugLine = debugLog(
    (level, message, fields) => this.log(level, message, fields),
    () => this.debug,
  );

  /** Steps 6-10 of daemon.md §2; throws FatalError. */
  async start(): Promise<void> {
    const o = this.options;
    const passed = listenSockets();
    // a command line naming an unknown user or group is told first
    this.trusted = await this.trustedSenders();
    const loaded = this.loadRules();
    this.applyRules(loaded);
    // before the database: the start-up check's helper calls are counted too
    const metrics = (this.metrics = new Metrics({
      entries: () => this.store?.size() ?? 0,
      blocked: () => this.store?.blockedCount() ?? 0,
      sockets: () => this.sockets,
    }));
    this.helper = new HelperRunner({
      program: o.helper,
      timeoutMs: o.helperTimeout * 1000,
      log: this.log,
      debug: () => this.debug,
      observe: (action, result, seconds) => metrics.helperCall(action, metricOutcome(result), seconds),
    });
    this.countRules(loadedCleanly(loaded));
    // helpers that know batch mode get the work of a stretch in one call (upstream's ones do not)
    const capabilities = await this.checkHelper();
    this.capabilities = [...capabilities];
    const extensions = (this.extensions = helperExtensions(o, capabilities, this.log));
    this.helper.setExtensions(extensions);
    this.problems = this.checkProblems(loaded);
    // fatal ones stop the start here, before the database, the sockets or the packet filter are touched
    const fatal = this.problems.filter((p) => p.severity === 'fatal');
    if (fatal.length > 0) throw new FatalError(`${fatal.map((p) => p.message).join('; ')} (--fail-open would start anyway)`);
    this.logProblems();

    try {
      this.lock = DatabaseLock.acquire(o.db);
    } catch (e) {
      if (e instanceof LockError) throw new FatalError(e.message);
      throw e;
    }
    const existed = existsSync(o.db);
    try {
      this.store = StateStore.open(o.db, { renameInvalid: o.renameBadDb });
    } catch (e) {
      if (!(e instanceof StateError)) throw e;
      throw new FatalError(e.invalid ? `${e.message}: move it aside, or start with --rename-bad-db` : e.message);
    }
    const store = this.store;
    for (const file of store.modesFixed) this.log('warning', `${file}: others could read the database; mode changed to owner-only`);
    this.limiter = this.senderLimiter();
    const env = systemEnv(o.ruleName);
    if (o.fleet !== undefined) {
      // loaded only with --fleet: the NATS client and its modules are 4 MB of the heap and RSS of a daemon that never uses
      // them, and a tenth of a restore's time from start (helper benchmark)
      const [{ Fleet }, { registerFleetMetrics }] = await Promise.all([import('../fleet/fleet.js'), import('../fleet/metrics.js')]);
      this.fleet = new Fleet({
        ...o.fleet,
        store,
        helper: this.helper,
        kernelExpiryMargin: this.kernelExpiryMargin,
        remRetry: o.remRetry,
        log: this.log,
        debug: () => this.debug,
        clock: () => Math.floor(Date.now() / 1000),
        // a rule in force that never blocks the address (an allow-list line, nfail *) wins over the fleet
        allowListed: (b) =>
          matchFor({ options: o, engine: this.engine! }, parseIP(b.address)!, b.port, b.proto === 'udp' ? 17 : 6)?.effective.nfail === ANY,
      });
      const fleet = this.fleet;
      registerFleetMetrics(metrics.registry, () => fleet.status());
    }
    this.engine = new Engine({
      store,
      helper: this.helper,
      families: env.families,
      log: this.log,
      debug: () => this.debug,
      clock: () => Math.floor(Date.now() / 1000),
      monotonic: () => performance.now(),
      remRetry: o.remRetry,
      metrics,
      maxEntries: o.maxEntries,
      allowSelf: o.allowSelf,
      kernelExpiryMargin: this.kernelExpiryMargin,
      fleet: this.fleet,
    });
    this.manual = new ManualCommands({ engine: this.engine, store, helper: this.helper, log: this.log, metrics });
    this.engine.setRules(compileRules(this.ruleSet), interfaceAddresses());
    this.engine.setEscalation(this.escalation);
    this.aggregator = new Aggregator(this.engine, store, this.log);
    this.aggregator.setPolicies(this.aggregation, allowedNetworks(this.ruleSet));
    const aggregator = this.aggregator;
    this.engine.blockHook = (key) => void aggregator.blocked(key);
    this.batchMode = capabilities.has('batch');
    this.engine.setBatchMode(this.batchMode, capabilities.has('batch-flush'));
    this.fleet?.setBatchMode(this.batchMode);
    if (this.stopping) return;
    // the sockets first: a second daemon must fail before it touches the packet filter or the database
    this.openSockets(passed);
    await this.openControl(passed);
    if (o.metrics !== undefined) {
      try {
        this.metricsServer = await metrics.listen(o.metrics.host, o.metrics.port);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).syscall === undefined) throw e;
        throw new FatalError(`metrics listener ${o.metrics.text}: ${(e as Error).message}`);
      }
      const { text } = o.metrics;
      this.debugLine(1, () => `metrics on http://${text}/metrics`);
    }
    this.engine.limitFutureTimes();
    if (o.restore && existed) {
      // flushed and re-added (with -f too), in one transaction when the helper can
      const { blocks } = await this.engine.refresh(this.engine.flushNames(this.ruleSet));
      if (this.stopping) return;
      this.debugLine(1, () => `restoring ${blocks} blocks`);
      const learned = this.fleet?.restore();
      if (learned !== undefined) this.debugLine(1, () => `restoring ${learned} blocks learned from the fleet`);
    } else if (o.flush) {
      await this.engine.flush(this.engine.flushNames(this.ruleSet));
      if (this.stopping) return;
      if (!o.restore) {
        store.truncate();
        // learned again from the bucket
        this.fleet?.forget();
      }
    }
    const engine = this.engine;
    engine.resumeReleases();
    // a database over a lowered --max-entries is brought down at once
    engine.evict();
    for (const socket of this.sockets) {
      socket.start((received) => {
        this.floodMemory.notice();
        this.debugLine(1, () => `received ${received.length} from ${socket.path}`);
        metrics.receiveBatchSize(received.length);
        const batch = this.limited(received);
        if (batch.length > 0) engine.processBatch(batch);
      });
    }
    // the start's own work (a restore, the database's check) can grow V8's young generation as a flood does
    this.floodMemory.notice();
    engine.armExpiry();
    this.fleet?.start();
    this.started = true;
    this.logStart();
    this.notifier?.ready(`listening on ${this.sockets.map((s) => s.path).join(', ')}`);
    const watchdog = this.notifier?.startWatchdog();
    if (watchdog !== undefined) this.debugLine(1, () => `systemd watchdog: a ping every ${watchdog} ms`);
    if (this.reloadPending) this.reload();
  }

  /** What an operator checks first: which files, sockets and helper this daemon uses. */
  private logStart(): void {
    const o = this.options;
    const { local, remote } = this.ruleSet;
    const sockets = this.sockets.map((s) => s.path);
    const control = this.control?.path;
    const backend = this.helperFacts.backend?.message;
    const capabilities = this.capabilities.length > 0 ? ` (${this.capabilities.join(' ')})` : '';
    const helper = `${o.helper}${capabilities}${backend === undefined ? '' : `: ${backend}`}`;
    this.log(
      'info',
      `blocklistd ${VERSION} started: configuration ${o.config} ` +
        `(${local.length + remote.length} rules: ${local.length} local, ${remote.length} remote), ` +
        `database ${o.db}, sockets ${sockets.join(', ')}, control socket ${control ?? 'none'}, helper ${helper}` +
        `${o.metrics === undefined ? '' : `, metrics on ${o.metrics.text}`}`,
      {
        event: 'start',
        version: VERSION,
        config: o.config,
        rules: local.length + remote.length,
        database: o.db,
        sockets,
        control,
        helper: o.helper,
        capabilities: this.capabilities,
        backend,
        metrics: o.metrics?.text,
      },
    );
  }

  /**
   * --check: every start-up check, creating and changing nothing: the lines
   * that say what was checked, and the problems found.
   */
  async check(): Promise<{ report: string[]; problems: Problem[] }> {
    const o = this.options;
    const loaded = loadConfig(o.config, systemEnv(o.ruleName));
    this.ruleSet = loaded.ruleSet;
    const included = loaded.files.length === 0 ? '' : ` (${loaded.files.join(', ')})`;
    const report = [
      `configuration  ${o.config}: ${this.ruleSet.local.length} local, ${this.ruleSet.remote.length} remote rules${included}`,
    ];
    for (const d of loaded.diagnostics) report.push(`  ${formatDiagnostic(d, true)}`);
    this.helper = new HelperRunner({ program: o.helper, timeoutMs: o.helperTimeout * 1000, log: this.log });
    await this.checkHelper();
    const { helperState, backend } = this.helperFacts;
    const helperText =
      helperState.state !== 'ok'
        ? helperState.reason
        : (backend?.message ?? 'executable; it does not offer "check" (upstream\'s helper): its packet filter is not checked');
    report.push(`helper         ${o.helper}: ${helperText}`);
    const files = fileFacts(o);
    const dbState =
      files.dbHolder !== undefined
        ? `locked by ${files.dbHolder}`
        : (files.dbProblem ?? (existsSync(o.db) ? 'can be opened, not locked' : 'will be created'));
    report.push(`database       ${o.db}: ${dbState}`);
    for (const s of files.sockets) report.push(`socket         ${s.path}: ${s.state}`);
    return { report, problems: [...this.checkProblems(loaded), ...fileProblems(files)] };
  }

  /**
   * The helper's facts for the start-up check: the file, then its
   * capabilities and, when it offers `check`, its verdict on the packet
   * filter.  Returns the capabilities.
   */
  private async checkHelper(): Promise<Set<string>> {
    const o = this.options;
    const helperState = programState(o.helper);
    const capabilities = helperState.state === 'ok' ? await this.helper!.capabilities() : new Set<string>();
    const backend = capabilities.has('check') ? await backendCheck(o.helper, o.helperTimeout * 1000) : undefined;
    const netnsProblem = ownNetns().problem;
    this.helperFacts = { helperState, backend, warnings: netnsProblem === undefined ? [] : [netnsProblem] };
    return capabilities;
  }

  /** The problems of the configuration `loaded` and of the rules in force, with the helper's facts of the start. */
  private checkProblems(loaded: LoadResult): Problem[] {
    const o = this.options;
    const problems = startupProblems({
      config: o.config,
      ...unreadableParts(loaded, o.config),
      localRules: this.ruleSet.local.length,
      helper: o.helper,
      ...this.helperFacts,
      loopbackExposed: loopbackExposed(this.ruleSet, systemEnv().families),
      allowSelf: o.allowSelf,
    });
    return o.failOpen ? failOpen(problems) : problems;
  }

  /** Every problem in the log, at each start and reload: a fatal one (on reload) as an error. */
  private logProblems(): void {
    for (const p of this.problems) this.log(p.severity === 'fatal' ? 'err' : 'warning', p.message);
  }

  /**
   * Root, --trust-user and --trust-group, resolved now: one notion of a
   * trusted sender, exempt from --sender-rate and allowed to name the peer
   * of a TCP socket.
   */
  private async trustedSenders(): Promise<TrustedSenders> {
    const env = systemEnv();
    const uids = new Set([0]);
    for (const user of this.options.trustUsers) {
      const uid = /^\d+$/.test(user) ? Number(user) : env.user(user);
      if (uid === undefined) throw new FatalError(`--trust-user: unknown user '${user}'`);
      uids.add(uid);
    }
    const gids = new Set<number>();
    for (const group of this.options.trustGroups) {
      const entry = await lookupGroup(group);
      if (entry === undefined) throw new FatalError(`--trust-group: unknown group '${group}'`);
      gids.add(entry.gid);
    }
    return { uids, gids };
  }

  /** --sender-rate, trusted senders exempt. */
  private senderLimiter(): SenderLimiter | undefined {
    const o = this.options;
    if (o.senderRate === 0) return undefined;
    return new SenderLimiter({ rate: o.senderRate, burst: o.senderBurst, trusted: this.trusted }, LIMIT_LOG_MS);
  }

  /**
   * What of a received batch the per-sender limit lets through; the rest is
   * counted and, at most once a minute per sender, logged.  Nothing is
   * copied while nothing is dropped: the common case costs a set lookup.
   */
  private limited(batch: Notification[]): Notification[] {
    const limiter = this.limiter;
    if (limiter === undefined) return batch;
    const now = Date.now();
    let kept: Notification[] | undefined;
    for (let i = 0; i < batch.length; i++) {
      const n = batch[i];
      if (limiter.admit(n.uid, n.gid, now)) kept?.push(n);
      else kept ??= batch.slice(0, i);
    }
    if (kept === undefined) return batch;
    this.metrics?.dropped('rate_limit', batch.length - kept.length);
    this.reportLimited();
    return kept;
  }

  /**
   * Logs the senders over their limit: the first drop of a flood at once,
   * then what was dropped since, once per interval while it goes on.
   */
  private reportLimited(): void {
    const limiter = this.limiter;
    if (limiter === undefined || this.limitLogTimer !== undefined || this.stopping) return;
    const o = this.options;
    const reports = limiter.reports(Date.now());
    for (const r of reports) {
      this.log(
        'warning',
        r.since === 0
          ? `uid ${r.uid} sends more than ${o.senderRate} notifications per second (burst ${o.senderBurst}): ` +
              'dropping the excess, logged at most once a minute'
          : `uid ${r.uid}: ${r.dropped} notifications over the limit dropped in the last ${Math.round(r.since / 1000)} s`,
      );
    }
    if (reports.length === 0) return;
    // the drops meanwhile wait for the interval's end: a timer tells them even if the flood has stopped
    this.limitLogTimer = setTimeout(() => {
      this.limitLogTimer = undefined;
      this.reportLimited();
    }, LIMIT_LOG_MS);
    this.limitLogTimer.unref();
  }

  /** The notification sockets: those systemd passed, then -s/-P (the default path only when nothing was passed). */
  private openSockets(passed: ListenSocket[]): void {
    const o = this.options;
    const trusted = this.trusted;
    const open = (path: string, fd?: number): NotificationSocket => {
      try {
        const socket = new NotificationSocket(path, {
          log: this.logger.library,
          fd,
          backlog: o.queue,
          onDrop: (reason) => this.metrics?.dropped(reason),
          trusted: (uid, gid) => isTrusted(trusted, uid, gid),
        });
        this.sockets.push(socket);
        const { length, problem } = socket.kernelQueue;
        if (problem !== undefined) {
          const queued = length === undefined ? '' : `the kernel queues ${length} datagrams, not --queue ${o.queue}: bursts may be lost; `;
          const message = `${path}: ${queued}${problem}`;
          this.socketProblems.push({ severity: 'warning', code: 'socket_queue', message });
          this.log('warning', message);
        }
        this.debugLine(1, () => `listening on ${path}${fd === undefined ? '' : ` (from systemd, descriptor ${fd})`}`);
        return socket;
      } catch (e) {
        if (e instanceof SocketSetupError) throw new FatalError(e.message);
        throw e;
      }
    };
    for (const s of passed.filter((p) => p.datagram)) this.adopted.add(open(s.path || `descriptor ${s.fd}`, s.fd));
    for (const s of passed.filter((p) => !p.datagram && !p.stream))
      this.log(
        'warning',
        `systemd passed descriptor ${s.fd} (${s.name || 'unnamed'}), neither a unix datagram nor a listening unix stream socket: ignored`,
      );
    if (this.adopted.size > 0 && o.defaultSockets) return;
    // a -s path systemd already passed is that socket, not a second bind
    const passedPaths = new Set([...this.adopted].map((s) => resolvePath(s.path)));
    for (const path of o.sockets.filter((p) => !passedPaths.has(resolvePath(p)))) open(path);
  }

  /** The control socket: a listening stream socket systemd passed, else --control-socket's path. */
  private async openControl(passed: ListenSocket[]): Promise<void> {
    const o = this.options;
    if (o.control === null) return;
    const fromSystemd = passed.find((p) => p.stream);
    const path = fromSystemd === undefined ? o.control : fromSystemd.path || `descriptor ${fromSystemd.fd}`;
    try {
      this.control = await ControlServer.open({
        path,
        fd: fromSystemd?.fd,
        group: await this.controlGroup(),
        log: this.log,
        handle: (command, args, peer) => runCommand(this.commandContext(), command, args, peer),
        counted: (command, ok) => this.metrics?.controlRequest(command, ok),
      });
    } catch (e) {
      if (e instanceof ControlSetupError || e instanceof ControlError) throw new FatalError(e.message);
      throw e;
    }
    this.debugLine(1, () => `control socket ${path}`);
  }

  /** --control-group: its gid now (the socket's group), and a lookup of its members at each connection. */
  private async controlGroup(): Promise<ControlServerOptions['group']> {
    const name = this.options.controlGroup;
    if (name === undefined) return undefined;
    const group = await lookupGroup(name);
    if (group === undefined) throw new FatalError(`--control-group: unknown group '${name}'`);
    return { gid: group.gid, lookup: () => lookupGroup(name) };
  }

  private commandContext(): CommandContext {
    if (this.stopping) throw new ControlError('stopping', 'the daemon is stopping');
    const self = this;
    return {
      options: this.options,
      engine: this.engine!,
      manual: this.manual!,
      store: this.store!,
      metrics: this.metrics!,
      debug: this.debug,
      log: this.log,
      batchMode: this.batchMode,
      kernelExpiryMargin: this.kernelExpiryMargin,
      cutConnections: this.extensions.cut,
      fleet: this.fleet,
      helperQueue: () => ({ pending: self.helper!.pending, running: self.helper!.active }),
      sockets: () => self.sockets.map((s) => s.path),
      socketQueues: () => self.sockets.map((s) => ({ path: s.path, queue: s.kernelQueue.length ?? null, waiting: s.waiting })),
      controlPath: () => self.control?.path,
      metricsAddress: () => self.options.metrics?.text,
      ruleCounts: () => ({ local: self.ruleSet.local.length, remote: self.ruleSet.remote.length }),
      problems: () => [...self.problems, ...self.socketProblems],
      flushNames: () => self.engine!.flushNames(self.ruleSet),
      reload: () => self.reloadChecked(),
    };
  }

  /** Reads the configuration, logging its diagnostics. */
  private loadRules(): LoadResult {
    const loaded = loadConfig(this.options.config, systemEnv(this.options.ruleName));
    for (const d of loaded.diagnostics) this.log(SEVERITY_LEVEL[d.severity], formatDiagnostic(d, false));
    return loaded;
  }

  /** Puts a loaded configuration in force; keeps the rules in force when it could not be read at all. */
  private applyRules(loaded: LoadResult): boolean {
    if (!loaded.found) return false;
    const env = systemEnv(this.options.ruleName);
    this.ruleSet = loaded.ruleSet;
    this.debugLine(1, () => debugListing(this.ruleSet, this.options.ruleName, env.families).split('\n'));
    // interface addresses change: refresh them every -t seconds, only if a rule names an interface or --allow-self needs them
    clearInterval(this.interfaceTimer);
    this.interfaceTimer = undefined;
    if (this.options.allowSelf || this.ruleSet.local.some((r) => r.address.kind === 'interface')) {
      this.interfaceTimer = setInterval(() => this.engine?.setInterfaces(interfaceAddresses()), this.options.timeout * 1000);
    }
    this.engine?.setRules(compileRules(this.ruleSet), interfaceAddresses());
    this.escalation = loaded.escalation;
    this.engine?.setEscalation(this.escalation);
    this.aggregation = loaded.aggregation;
    this.aggregator?.setPolicies(this.aggregation, allowedNetworks(this.ruleSet));
    return true;
  }

  /** SIGHUP: a new rule set (G14); with -r, flush and re-add every block (upstream TODO 17). */
  reload(): void {
    if (!this.started) {
      this.reloadPending = true; // start-up reads the configuration, perhaps before the change: read it again after
      return;
    }
    this.reloadPending = false;
    void this.reloadWith((loaded) => {
      if (!loaded.found) this.log('err', `reload: keeping the rules in force`);
      return true;
    });
  }

  /**
   * The control socket's reload: like SIGHUP, but a configuration with an
   * error changes nothing, and the diagnostics are the answer.
   */
  private async reloadChecked(): Promise<{ diagnostics: string[]; rules: { local: number; remote: number } }> {
    let refusal: ControlError | undefined;
    let diagnostics: string[] = [];
    await this.reloadWith((loaded) => {
      diagnostics = loaded.diagnostics.map((d) => formatDiagnostic(d, false));
      const errors = loaded.diagnostics.filter((d) => d.severity === 'error').length;
      if (!loaded.found) refusal = new ControlError('config_error', `cannot read ${this.options.config}: nothing changed`, { diagnostics });
      else if (errors > 0)
        refusal = new ControlError('config_error', `${errors} error${errors === 1 ? '' : 's'} in the configuration: nothing changed`, {
          diagnostics,
        });
      return refusal === undefined;
    });
    if (refusal !== undefined) throw refusal;
    return { diagnostics, rules: { local: this.ruleSet.local.length, remote: this.ruleSet.remote.length } };
  }

  /**
   * One reload at a time: read, ask `accept`, apply; with -r flush and
   * re-add (refreshFilter), after the rules are applied, not holding back
   * the next reload: a burst of reloads reads the file each time, but
   * refreshes the packet filter at most twice.
   */
  private reloadWith(accept: (loaded: LoadResult) => boolean): Promise<void> {
    const applied = this.reloading.then(() => {
      if (this.stopping || !this.engine) return false;
      this.notifier?.reloading();
      try {
        const loaded = this.loadRules();
        if (!accept(loaded)) {
          this.metrics?.configLoaded(false);
          return false;
        }
        const before = this.ruleSet;
        const applied = this.applyRules(loaded);
        if (applied) {
          this.logReload(before);
          this.fleet?.releaseAllowListed();
        }
        this.countRules(applied && loadedCleanly(loaded));
        this.problems = this.checkProblems(loaded);
        this.logProblems();
        return true;
      } finally {
        if (!this.stopping) this.notifier?.ready('configuration reloaded');
      }
    });
    // a reload that threw (its caller hears of it) does not stop the next ones
    this.reloading = applied.then(
      () => {},
      () => {},
    );
    return applied.then((changed) => (changed && this.options.restore ? this.refreshFilter() : undefined));
  }

  /** The metrics of a load of the configuration: its success, the rules in force, their names as labels. */
  private countRules(ok: boolean): void {
    const { local, remote } = this.ruleSet;
    // the names a block can get: the rules', and -R's for a manual block no rule matches
    const names = new Set([this.options.ruleName]);
    for (const rule of [...local, ...remote]) if (rule.name !== '') names.add(rule.name);
    this.metrics?.configLoaded(ok, { names, local: local.length, remote: remote.length });
  }

  /** The rules a reload put in force, and what changed against those before. */
  private logReload(before: RuleSet): void {
    const { local, remote } = this.ruleSet;
    const changes = ruleChanges(before, this.ruleSet, systemEnv(this.options.ruleName).families);
    const { added, removed, changed } = changes;
    this.log(
      'info',
      `reloaded ${this.options.config}: ${local.length + remote.length} rules (${local.length} local, ${remote.length} remote): ` +
        `${added.length} added, ${removed.length} removed, ${changed.length} changed`,
      {
        event: 'reload',
        config: this.options.config,
        rules: local.length + remote.length,
        added: added.slice(0, RELOAD_LIST_MAX),
        removed: removed.slice(0, RELOAD_LIST_MAX),
        changed: changed.slice(0, RELOAD_LIST_MAX),
      },
    );
    const lines = (['added', 'removed', 'changed'] as const).flatMap((change) => changes[change].map((line) => ({ change, line })));
    for (const { change, line } of lines.slice(0, RELOAD_LIST_MAX))
      this.log('info', `reload: ${change} ${line}`, { event: 'reload', change, line });
    if (lines.length > RELOAD_LIST_MAX) this.log('info', `reload: and ${lines.length - RELOAD_LIST_MAX} more changes`);
  }

  /**
   * The packet filter's blocks replaced by the database's (-r on reload),
   * one refresh at a time: those asked for while one waits to start join
   * it, and it uses the rules in force when it starts.
   */
  private refreshFilter(): Promise<void> {
    if (this.refreshQueued !== undefined) return this.refreshQueued;
    const queued = this.refreshing.then(async () => {
      this.refreshQueued = undefined;
      if (this.stopping || !this.engine) return;
      try {
        await (
          await this.engine.refresh(this.engine.flushNames(this.ruleSet))
        ).applied;
        this.fleet?.restore();
      } catch (e) {
        // the database could not be read: the next reload tries again
        this.log('err', `reload: the blocks were not re-added (${(e as Error).message})`);
      }
    });
    this.refreshQueued = queued;
    this.refreshing = queued;
    return queued;
  }

  /**
   * SIGTERM, SIGINT, SIGQUIT: stop receiving, let running helper calls
   * finish (bounded), close the database, remove the socket files.
   */
  async stop(status = 0, reason = 'stop requested'): Promise<number> {
    if (this.stopping) return status;
    this.stopping = true;
    this.log(status === 0 ? 'info' : 'err', `stopping: ${reason}`, { event: 'stop', reason, status });
    this.notifier?.stopping();
    clearInterval(this.interfaceTimer);
    clearTimeout(this.limitLogTimer);
    this.floodMemory.stop();
    this.metricsServer?.close();
    this.metricsServer?.closeAllConnections();
    for (const socket of this.sockets) {
      // what the receiving thread took from the kernel is processed, not dropped
      const rest = this.limited(socket.stop());
      if (rest.length > 0) this.engine?.processBatch(rest);
    }
    this.removeSockets();
    this.engine?.stop();
    await this.fleet?.stop();
    // running helper calls finish and their results are recorded before the database closes
    await this.helper?.stop(Math.min(STOP_GRACE_MS, this.options.helperTimeout * 1000));
    this.store?.close();
    this.lock?.release();
    return status;
  }

  /**
   * Closes the notification and control sockets and removes their files
   * (not those systemd passed); also on the way out after a fatal or
   * internal error.
   */
  removeSockets(): void {
    this.control?.close();
    this.control = undefined;
    for (const socket of this.sockets.splice(0)) {
      socket.close();
      if (this.adopted.has(socket)) continue;
      try {
        unlinkSync(socket.path);
      } catch {
        // already gone
      }
    }
  }
}

/** Read, and without errors. */
const loadedCleanly = (loaded: LoadResult): boolean => loaded.found && !loaded.diagnostics.some((d) => d.severity === 'error');

/**
 * What of the configuration at `path` could not be read, as the diagnostics
 * say: the file or its directory (nothing of it is known), or entries of a
 * directory (the rest was read).
 */
function unreadableParts(loaded: LoadResult, path: string): Pick<StartupFacts, 'configUnreadable' | 'configSkipped'> {
  const unread = loaded.diagnostics.filter((d) => d.severity === 'error' && d.source.line === 0);
  const whole = (d: Diagnostic): boolean => d.source.file === path || d.source.file === `${path}.d`;
  return {
    configUnreadable: unread.filter(whole).map((d) => d.message),
    configSkipped: unread.filter((d) => !whole(d)).map((d) => d.message),
  };
}

/** A directory this process may create files in. */
function writableDirectory(dir: string): string | undefined {
  try {
    if (!statSync(dir).isDirectory()) return `${dir} is not a directory`;
    accessSync(dir, fsConstants.W_OK | fsConstants.X_OK);
    return undefined;
  } catch (e) {
    return `${dir}: ${errnoText(e)}`;
  }
}

/**
 * Whether a socket can be had at `path`: a socket there is systemd's (its
 * socket units create them before ExecStartPre= runs) or a stale one the
 * daemon replaces; else its directory must take a new one.
 */
function socketPlace(path: string): { problem: string | undefined; state: string } {
  try {
    if (statSync(path).isSocket()) return { problem: undefined, state: "a socket is there (systemd's, or one the daemon replaces)" };
    return { problem: 'another kind of file is there', state: 'not a socket' };
  } catch {
    const problem = writableDirectory(dirname(path));
    return { problem, state: problem ?? 'its directory is writable' };
  }
}

/** The database and the sockets as --check finds them, nothing created: the lock is only tried. */
function fileFacts(o: DaemonOptions): FileFacts {
  let dbProblem: string | undefined;
  if (existsSync(o.db)) {
    try {
      accessSync(o.db, fsConstants.R_OK | fsConstants.W_OK);
      const header = Buffer.alloc(16);
      const fd = openSync(o.db, 'r');
      try {
        readSync(fd, header, 0, 16, 0);
      } finally {
        closeSync(fd);
      }
      // an empty file is one SQLite makes a database of
      if (statSync(o.db).size > 0 && header.toString('latin1') !== 'SQLite format 3\0')
        dbProblem = 'not an SQLite database: move it aside, or start with --rename-bad-db';
    } catch (e) {
      dbProblem = errnoText(e);
    }
  } else {
    // created with its directories: the nearest one that exists must take it
    let dir = dirname(o.db);
    while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
    dbProblem = writableDirectory(dir);
  }
  const sockets = [...o.sockets, ...(o.control === null ? [] : [o.control])].map((path) => ({ path, ...socketPlace(path) }));
  return { db: o.db, dbHolder: DatabaseLock.holderOf(o.db), dbProblem, sockets };
}

/** A program as the file system shows it: a regular file this process may execute. */
function programState(path: string): ProgramState {
  try {
    if (!statSync(path).isFile()) return { state: 'not_executable', reason: 'not a regular file' };
    accessSync(path, fsConstants.X_OK);
    return { state: 'ok' };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { state: code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : 'not_executable', reason: errnoText(e) };
  }
}

/** `control check`: the helper's verdict on its packet-filter back end, what it printed on either output. */
function backendCheck(program: string, timeoutMs: number): Promise<BackendCheck> {
  return new Promise((resolve) => {
    execFile(program, ['check'], { timeout: timeoutMs, encoding: 'utf8' }, (error, stdout, stderr) => {
      const message = `${stdout}\n${stderr}`.trim().replace(/\s*\n\s*/g, '; ');
      resolve({ ok: error === null, message: message !== '' ? message : (error?.message ?? '') });
    });
  });
}
