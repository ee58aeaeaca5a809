// Times as upstream prints them, shared by the daemon's log and blocklistctl,
// and the units durations are written in (configuration, dump, log).

const two = (n: number): string => String(n).padStart(2, '0');

/** Seconds since the epoch as local time, `YYYY/MM/DD HH:MM:SS` (daemon.md §9.2, state-and-ctl.md §2.3). */
export function localTime(seconds: number): string {
  const d = new Date(seconds * 1000);
  if (Number.isNaN(d.getTime())) return String(seconds); // beyond what a Date holds
  const date = `${d.getFullYear()}/${two(d.getMonth() + 1)}/${two(d.getDate())}`;
  return `${date} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** The units of a configured duration (`6h`, `1d12h`) and their seconds, largest first. */
export const DURATION_UNITS: readonly (readonly [unit: string, seconds: number])[] = [
  ['d', 86400],
  ['h', 3600],
  ['m', 60],
  ['s', 1],
];

/** A number of seconds as its non-zero parts in `units` (largest first): `1h`, `30m` for 5400. */
export function durationParts(seconds: number, units: readonly (readonly [string, number])[]): string[] {
  const parts: string[] = [];
  let rest = seconds;
  for (const [unit, size] of units) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts;
}

/** A length of time as the log shows how long a block lasted: `45s`, `3m0s`, `6h0m12s`, `2d1h0m0s`. */
export function elapsed(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const [d, h, m] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60)];
  if (d > 0) return `${d}d${h}h${m}m${s % 60}s`;
  if (h > 0) return `${h}h${m}m${s % 60}s`;
  if (m > 0) return `${m}m${s % 60}s`;
  return `${s}s`;
}
