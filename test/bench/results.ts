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

/**
 * The environments a figure that includes a Node start is measured in: this one without NODE_EXTRA_CA_CERTS and, when
 * it sets it, this one as it is.  Set here for the npm registry's proxy, it makes every Node start parse the root
 * certificates (about 30 ms of CPU on the 2-core machine), which a host running blocklistd does not (doc/decisions.md).
 */
export function startEnvironments(): NodeJS.ProcessEnv[] {
  const { NODE_EXTRA_CA_CERTS: extraCaCerts, ...hostEnv } = process.env;
  return extraCaCerts === undefined ? [hostEnv] : [hostEnv, process.env];
}

/**
 * Records `figure`, measured in the first of startEnvironments(), and the same measured with NODE_EXTRA_CA_CERTS when
 * it was (`<id>.extraCaCerts`); returns the printed line's end for the latter.
 */
export function recordStart(figure: Figure, withExtraCaCerts: number | undefined): string {
  record({ ...figure, name: `${figure.name} (without NODE_EXTRA_CA_CERTS)` });
  if (withExtraCaCerts === undefined) return '';
  record({
    id: `${figure.id}.extraCaCerts`,
    name: `the same with this environment's NODE_EXTRA_CA_CERTS (Node parses the certificates at its start)`,
    value: withExtraCaCerts,
    unit: figure.unit,
  });
  return `; ${withExtraCaCerts.toFixed(2)} ${figure.unit} with this environment's NODE_EXTRA_CA_CERTS`;
}
