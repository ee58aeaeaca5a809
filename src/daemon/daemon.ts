// blocklistd assembled (daemon.md §2-§4): start-up in upstream's order,
// the receive loop in batches, reload and the signals, and a clean stop.
import { existsSync, unlinkSync, writeFileSync } from 'node:fs';
import { debugListing } from '../conf/format.js';
import { loadConfig } from '../conf/load.js';
import { compileRules } from '../conf/match.js';
import { where } from '../conf/ruleset.js';
import { interfaceAddresses, systemEnv } from '../conf/system.js';
import type { Diagnostic, RuleSet } from '../conf/types.js';
import { NotificationSocket } from '../protocol/server.js';
import { HelperRunner } from '../run/helper.js';
import { StateError, StateStore } from '../state/store.js';
import { Engine } from './engine.js';
import type { DaemonLogger } from './log.js';
import type { DaemonOptions } from './options.js';

/** A start-up failure: the daemon logs it and exits 1. */
export class FatalError extends Error {}

const SEVERITY_LEVEL = { error: 'err', warning: 'warning', info: 'info' } as const;

/** How long running helper calls may take to finish at shutdown. */
const STOP_GRACE_MS = 10_000;

export class Daemon {
  private readonly sockets: NotificationSocket[] = [];
  private store: StateStore | undefined;
  private helper: HelperRunner | undefined;
  private engine: Engine | undefined;
  private ruleSet: RuleSet = { local: [], remote: [] };
  private interfaceTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private started = false;
  private reloadPending = false;
  private reloading: Promise<void> = Promise.resolve();
  /** Set by SIGUSR1/SIGUSR2, never below 0 (G20). */
  debug: number;

  constructor(
    private readonly options: DaemonOptions,
    private readonly logger: DaemonLogger,
  ) {
    this.debug = options.debug;
  }

  private get log(): DaemonLogger['log'] {
    return this.logger.log;
  }

  /** Steps 6-10 of daemon.md §2; throws FatalError. */
  async start(): Promise<void> {
    const o = this.options;
    this.loadRules();

    const existed = existsSync(o.db);
    try {
      this.store = StateStore.open(o.db, { renameInvalid: o.renameBadDb });
    } catch (e) {
      if (!(e instanceof StateError)) throw e;
      throw new FatalError(e.invalid ? `${e.message}: move it aside, or start with --rename-bad-db` : e.message);
    }
    const store = this.store;
    const env = systemEnv(o.ruleName);
    this.helper = new HelperRunner({ program: o.helper, timeoutMs: o.helperTimeout * 1000, log: this.log, debug: () => this.debug });
    this.engine = new Engine({ store, helper: this.helper, families: env.families, log: this.log, debug: () => this.debug, clock: () => Math.floor(Date.now() / 1000), remRetry: o.remRetry });
    this.engine.setRules(compileRules(this.ruleSet), interfaceAddresses());


    // helpers that know batch mode get the work of a stretch in one call (upstream's ones do not)
    this.engine.setBatchMode((await this.helper.capabilities()).has('batch'));
    if (this.stopping) return;
    // the sockets first: a second daemon must fail before it touches the packet filter or the database
    for (const path of o.sockets) {
      try {
        this.sockets.push(new NotificationSocket(path, { log: this.logger.library }));
      } catch (e) {
        throw new FatalError((e as Error).message);
      }
      if (this.debug > 0) this.log('debug', `listening on ${path}`);
    }
    if (o.flush) {
      await this.engine.flush(this.engine.flushNames(this.ruleSet));
      if (this.stopping) return;
      if (!o.restore) store.truncate();
    }
    if (o.restore && existed) {
      if (!o.flush) await this.engine.flush(this.engine.flushNames(this.ruleSet));
      if (this.stopping) return;
      const n = this.engine.restore();
      if (this.debug > 0) this.log('debug', `restoring ${n} blocks`);
    }
    const engine = this.engine;
    engine.resumeReleases();
    for (const socket of this.sockets) {
      socket.start(
        (batch) => {
          if (this.debug > 0) this.log('debug', `received ${batch.length} from ${socket.path}`);
          engine.processBatch(batch);
        },
        (message) => {
          this.log('err', message);
          void this.stop(1);
        },
      );
    }
    engine.armExpiry();
    this.started = true;
    if (this.reloadPending) this.reload();
  }

  /** Reads the configuration; keeps the rules in force when it cannot be read at all. */
  private loadRules(): boolean {
    const env = systemEnv(this.options.ruleName);
    const loaded = loadConfig(this.options.config, env);
    for (const d of loaded.diagnostics) this.log(SEVERITY_LEVEL[d.severity], describe(d));
    if (!loaded.found) return false;
    this.ruleSet = loaded.ruleSet;
    if (this.debug > 0) for (const line of debugListing(this.ruleSet, this.options.ruleName, env.families).split('\n')) this.log('debug', line);
    // interface addresses change: refresh them every -t seconds, only if a rule names an interface
    clearInterval(this.interfaceTimer);
    this.interfaceTimer = undefined;
    if (this.ruleSet.local.some((r) => r.address.kind === 'interface')) {
      this.interfaceTimer = setInterval(() => this.engine?.setInterfaces(interfaceAddresses()), this.options.timeout * 1000);
    }
    return true;
  }

  /** SIGHUP: a new rule set (G14); with -r, flush and re-add every block (upstream TODO 17). */
  reload(): void {
    if (!this.started) {
      this.reloadPending = true; // start-up reads the configuration, perhaps before the change: read it again after
      return;
    }
    this.reloadPending = false;
    this.reloading = this.reloading.then(async () => {
      if (this.stopping || !this.engine) return;
      if (this.loadRules()) this.engine.setRules(compileRules(this.ruleSet), interfaceAddresses());
      else this.log('err', `reload: keeping the rules in force`);
      if (this.options.restore) {
        await this.engine.flush(this.engine.flushNames(this.ruleSet));
        this.engine.restore();
      }
    });
  }

  /**
   * SIGTERM, SIGINT, SIGQUIT: stop receiving, let running helper calls
   * finish (bounded), close the database, remove the socket files.
   */
  async stop(status = 0): Promise<number> {
    if (this.stopping) return status;
    this.stopping = true;
    clearInterval(this.interfaceTimer);
    for (const socket of this.sockets) {
      // what the receiving thread took from the kernel is processed, not dropped
      const rest = socket.stop();
      if (rest.length > 0) this.engine?.processBatch(rest);
    }
    this.removeSockets();
    this.engine?.stop();
    // running helper calls finish and their results are recorded before the database closes
    await this.helper?.stop(Math.min(STOP_GRACE_MS, this.options.helperTimeout * 1000));
    this.store?.close();
    return status;
  }

  /** Closes the sockets and removes their files; also on the way out after an internal error. */
  removeSockets(): void {
    for (const socket of this.sockets.splice(0)) {
      socket.close();
      try {
        unlinkSync(socket.path);
      } catch {
        // already gone
      }
    }
  }
}

function describe(d: Diagnostic): string {
  return `${d.source.line > 0 ? where(d.source) : d.source.file}: ${d.message}`;
}

/** The pid file of a detached daemon: `<pid>\n`. */
export function writePidfile(path: string): void {
  try {
    writeFileSync(path, `${process.pid}\n`, { mode: 0o644 });
  } catch (e) {
    throw new FatalError(`Can't write pid file '${path}': ${(e as Error).message}`);
  }
}
