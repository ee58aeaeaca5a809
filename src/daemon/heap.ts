// The memory of a flood, given back when it ends (issue 19, doc/daemon.md §12).
//
// A flood of notifications grows V8's young generation to its maximum (2 x 8 MB under bin/blocklistd's
// --max-semi-space-size=8), and V8 keeps it until its memory reducer runs, 80-180 s after the flood.  V8 shrinks the
// young generation at a full collection when the allocation rate since the collection before was low (under 1,000
// bytes a millisecond: Heap::ReduceNewSpaceSize).  So once nothing has been received for QUIET_MS, a full collection
// gives it back; when the flood's last bytes still weigh in that rate, a second one QUIET_MS later does.  The timer
// runs only while notifications come and one spell after: an idle daemon has none.
import { performance } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** How long nothing is received before a flood counts as over; and the time between the two collections. */
export const QUIET_MS = 5_000;

/** The young generation's size in bytes: what V8 keeps of it, used or not. */
function youngGeneration(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}

/**
 * V8's full collection, as node's --expose-gc gives it (a #! line passes node one option: it is set here).  Only a
 * context made after the flag has `gc`: a new one, 0.8 MB and 2.6 ms, made at the first flood's end, not at start.
 */
function fullCollection(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

export class FloodMemory {
  private collect: (() => void) | undefined;
  /** The young generation as the daemon started: what a flood grows it from. */
  private readonly startSize = youngGeneration();
  private received = false;
  private timer: NodeJS.Timeout | undefined;
  /** Collections in this quiet spell. */
  private collections = 0;

  /** @param gaveBack told the young generation's size before and after, and the collection's milliseconds, when it shrank */
  constructor(private readonly gaveBack: (before: number, after: number, ms: number) => void) {}

  /** Something was received: the quiet spell starts again. */
  notice(): void {
    this.received = true;
    this.collections = 0;
    if (this.timer === undefined) this.arm();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(): void {
    this.timer = setTimeout(() => this.quiet(), QUIET_MS);
  }

  private quiet(): void {
    this.timer = undefined;
    if (this.received) {
      this.received = false;
      this.arm();
      return;
    }
    const before = youngGeneration();
    if (before <= this.startSize) return;
    this.collect ??= fullCollection();
    const start = performance.now();
    this.collect();
    const ms = performance.now() - start;
    this.collections++;
    const after = youngGeneration();
    if (after < before) this.gaveBack(before, after, ms);
    else if (this.collections < 2) this.arm();
  }
}
