// The figures of the benchmarks: each benchmark prints its own lines and
// records every figure here as well; test/bench/run.ts collects them (a
// JSON line each in $BENCH_RESULTS) into RESULTS.md and the chart.  Run
// alone, a benchmark only prints.
import { appendFileSync } from 'node:fs';

/** A target the issues set: the figure should be at least, or at most, this. */
export interface Target {
  op: '>=' | '<=';
  value: number;
}

export interface Figure {
  /** Stable name, for ratios and the chart: `daemon.rate.100000`. */
  id: string;
  /** The table row's wording. */
  name: string;
  value: number;
  unit: string;
  target?: Target;
  /** State size for the chart of notifications/s against it. */
  entries?: number;
}

export function record(figure: Figure): void {
  const file = process.env.BENCH_RESULTS;
  if (file !== undefined && file !== '') appendFileSync(file, `${JSON.stringify(figure)}\n`);
}

export const atLeast = (value: number): Target => ({ op: '>=', value });
export const atMost = (value: number): Target => ({ op: '<=', value });
