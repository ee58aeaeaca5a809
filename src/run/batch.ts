// Gathers the helper calls of one stretch of work (a batch of notifications,
// an expiry pass, a restore) and hands them to the runner: one call each,
// or, for a helper that knows batch mode, as batches: one process, one
// packet-filter transaction (helper.md §1).  What a result means is the
// caller's; when a batch's results are recorded is the caller's `settle`.
import type { Change, HelperResult, HelperRunner } from './helper.js';

/** Operations in one batch call: few calls for a restore, each a bounded one. */
const BATCH_MAX = 10000;
/**
 * Batch mode: helper calls made within this many milliseconds go as one
 * batch, so that notifications arriving one at a time do not each start a
 * helper process (issue 13: 2,000 attackers at 200/s took 208 s to block).
 */
const BATCH_WINDOW_MS = 5;
/** Batches running at once; what comes meanwhile waits and goes as the next batch. */
const BATCHES_IN_FLIGHT = 2;

/** A change to make and what to do with its result. */
export interface HelperCall {
  change: Change;
  done: (result: HelperResult) => void;
}

/**
 * Lines of a batch made by the caller (a restore's adds, written by SQLite: engine.ts refresh), `count` of them in
 * `text`, each ending in a newline; `settle` gets the helper's answer to each ('' for a failure) and the result an
 * answer stands for.
 */
export interface BulkLines {
  text: string;
  count: number;
  settle: (answers: readonly string[], resultOf: (answer: string) => HelperResult) => void;
}

/** Batch lines cannot carry empty fields: a manual block of every port goes alone. */
export const batchable = (c: Change): boolean => c.target.proto !== '' && c.target.port >= 0;

export interface HelperBatcherOptions {
  helper: HelperRunner;
  /**
   * A batch's results: calls each `done` with its result (e.g. in one
   * database transaction).  Single calls' `done` run as they finish.
   */
  settle: (calls: readonly HelperCall[], results: readonly HelperResult[]) => void;
}

export class HelperBatcher {
  private readonly helper: HelperRunner;
  private readonly settle: HelperBatcherOptions['settle'];
  private batchMode = false;
  /** Calls of the current stretch of work, dispatched together. */
  private readonly gathered: HelperCall[] = [];
  /** Batch mode: the end of the window gathering `gathered`. */
  private dispatchTimer: NodeJS.Timeout | undefined;
  private batchesInFlight = 0;

  constructor(options: HelperBatcherOptions) {
    this.helper = options.helper;
    this.settle = options.settle;
  }

  /** The helper answered `batch` to `capabilities`. */
  setBatchMode(on: boolean): void {
    this.batchMode = on;
  }

  get inBatchMode(): boolean {
    return this.batchMode;
  }

  /**
   * A call for the current stretch of work: without batch mode it starts
   * after the running task; in batch mode the stretch is a few
   * milliseconds, longer while batches run: then the calls wait for one to
   * finish and go together.
   */
  call(change: Change, done: (result: HelperResult) => void): void {
    this.gathered.push({ change, done });
    if (this.gathered.length > 1) return;
    if (!this.batchMode) queueMicrotask(() => this.dispatch());
    else this.gather();
  }

  /**
   * `calls` and `flushes` as one batch (HelperRunner.batch), after what was
   * gathered: the batch then waits for it, as for the other calls of the
   * names it flushes; `bulk`'s lines after the calls'.  Resolves once its results are settled.
   */
  async batchNow(calls: readonly HelperCall[], flushes: readonly string[], bulk?: BulkLines): Promise<void> {
    if (this.gathered.length > 0) this.dispatch();
    await this.runBatch(calls, flushes, bulk);
  }

  /**
   * Without batch mode, the calls gathered start now rather than after the
   * running task: the caller has committed what they wait for, and the
   * rest of its task (timers re-armed, the receive loop's bookkeeping, the
   * ticks queued meanwhile) no longer delays a block (0.10-0.17 ms of the
   * 3.4 ms from a notification to the helper's start on an idle daemon,
   * issue 19).  In batch mode the window gathers them as before.
   */
  startSingles(): void {
    if (!this.batchMode && this.gathered.length > 0) this.dispatch();
  }

  /** The calls gathered go to the helper now (at stop: started before it stops, or cancelled by its stop). */
  flush(): void {
    if (this.gathered.length > 0) this.dispatch();
  }

  /** Batch mode: dispatch at the end of the window, unless batches are running (their end dispatches). */
  private gather(): void {
    if (this.dispatchTimer !== undefined || this.batchesInFlight >= BATCHES_IN_FLIGHT) return;
    this.dispatchTimer = setTimeout(() => {
      this.dispatchTimer = undefined;
      this.dispatch();
    }, BATCH_WINDOW_MS);
  }

  private dispatch(): void {
    clearTimeout(this.dispatchTimer);
    this.dispatchTimer = undefined;
    let calls = this.gathered.splice(0);
    if (this.batchMode && calls.length > 1) {
      this.dispatchSingles(calls.filter((c) => !batchable(c.change)));
      calls = calls.filter((c) => batchable(c.change));
    }
    if (!this.batchMode || calls.length === 1) {
      this.dispatchSingles(calls);
      return;
    }
    for (let i = 0; i < calls.length; i += BATCH_MAX) void this.runBatch(calls.slice(i, i + BATCH_MAX), []);
  }

  private dispatchSingles(calls: readonly HelperCall[]): void {
    for (const { change, done } of calls) void this.helper.change(change.action, change.target, change.id, change.timeout).then(done);
  }

  private async runBatch(calls: readonly HelperCall[], flushes: readonly string[], bulk?: BulkLines): Promise<void> {
    this.batchesInFlight++;
    const { results, answers, resultOf } = await this.helper.batchWith(
      calls.map((c) => c.change),
      flushes,
      bulk,
    );
    this.batchesInFlight--;
    this.settle(calls, results);
    bulk?.settle(answers, resultOf);
    // what came while the batches ran has waited long enough
    if (this.gathered.length > 0 && this.batchesInFlight < BATCHES_IN_FLIGHT) this.dispatch();
  }
}
