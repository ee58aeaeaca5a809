// blocklistctl dump (state-and-ctl.md §2): upstream's columns, widths and
// row selection, with the fixes G45-G48, and --json (G49).  The rows come
// from the live database, ordered by name, address and port.
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { strerror } from '../protocol/native.js';
import { entryJson, isBlocked } from '../state/entry.js';
import { StateError, StateStore } from '../state/store.js';
import { ANY, type Entry } from '../types.js';
import { localTime } from '../time.js';
import type { Output } from './conf.js';

export interface DumpOptions {
  /** -a: every entry (wins over -b). */
  all: boolean;
  /** -b: only blocked entries. */
  blocked: boolean;
  /** -d: debug level. */
  debug: number;
  /** -n: no header. */
  noHeader: boolean;
  /** -r: remaining time instead of last access. */
  remaining: boolean;
  /** -w: a wide address column. */
  wide: boolean;
  json: boolean;
}

/** Which entries a dump shows (§2.2): by default those counting but not yet blocked. */
export function selected(e: Entry, o: Pick<DumpOptions, 'all' | 'blocked'>): boolean {
  if (o.all) return true;
  if (o.blocked) return isBlocked(e);
  return e.count < e.key.nfail;
}

const star = (n: number): string => (n === ANY ? '*' : String(n));
const PARTS: [string, number][] = [
  ['y', 365 * 86400],
  ['d', 86400],
  ['h', 3600],
  ['m', 60],
  ['s', 1],
];

/** A positive number of seconds as its non-zero parts: `59m56s`, `1d1h1m1s`, `1y1d`. */
export function remainingTime(seconds: number): string {
  let rest = seconds;
  let text = '';
  for (const [unit, size] of PARTS) {
    const n = Math.floor(rest / size);
    if (n > 0) text += `${n}${unit}`;
    rest -= n * size;
  }
  return text;
}

/** The last column: `never` for forever, else remaining time (`0s`, `expired`: G46, G47) or last access. */
function timeColumn(e: Entry, remaining: boolean, now: number): string {
  if (e.key.duration === ANY) return 'never';
  if (!remaining) return localTime(e.last);
  const left = e.key.duration - (now - e.last);
  if (left < 0) return 'expired';
  return left === 0 ? '0s' : remainingTime(left);
}

/** The header line (§2.3). */
export function dumpHeader(o: Pick<DumpOptions, 'wide' | 'remaining'>): string {
  const width = o.wide ? 39 : 15;
  return `rulename\t${'address'.padStart(width)}/ma:port\tid\tnfail\t${o.remaining ? 'remaining time' : 'last access'}\n`;
}

/** One row (§2.3); the address is right-aligned, never cut (G45). */
export function dumpRow(e: Entry, o: Pick<DumpOptions, 'wide' | 'remaining'>, now: number): string {
  const k = e.key;
  const width = o.wide ? 39 : 15;
  return `${k.name}\t${k.address.padStart(width)}/${star(k.lmask)}:${star(k.port)}\t${e.id}\t${e.count}/${star(k.nfail)}\t${timeColumn(e, o.remaining, now)}\n`;
}

export const DUMP_USAGE = 'Usage: blocklistctl dump [-abdnrw] [-D dbname]';

/** Rows are written in chunks of this many: a dump of millions of entries is not held in memory. */
const CHUNK = 1000;

/** `blocklistctl dump`: exit 0, or 1 when the database cannot be read (G48). */
export function dumpCommand(path: string, o: DumpOptions, io: Output, now = Math.floor(Date.now() / 1000)): number {
  let store: StateStore;
  try {
    // SQLite would say "disk I/O error" for a directory
    if (statSync(path).isDirectory()) {
      io.err(`blocklistctl: Can't open '${path}': ${strerror(osConstants.errno.EISDIR)}\n`);
      return 1;
    }
    accessSync(path, fsConstants.R_OK);
    store = StateStore.open(path, { readonly: true });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (typeof err.errno === 'number') io.err(`blocklistctl: Can't open '${path}': ${strerror(Math.abs(err.errno))}\n`);
    else io.err(`blocklistctl: ${e instanceof StateError ? e.message : String(e)}\n`);
    return 1;
  }
  let chunk: string[] = [];
  let rows = 0;
  const flush = (): void => {
    io.out(chunk.join(''));
    chunk = [];
  };
  let status = 0;
  try {
    if (o.json) chunk.push('[');
    else if (!o.noHeader) chunk.push(dumpHeader(o));
    for (const e of store.entries()) {
      if (o.debug > 0) io.err(`iterate: ${e.key.name} ${e.key.address}/${e.key.lmask}:${e.key.port} count=${e.count} last=${e.last} id=${e.id}\n`);
      if (!selected(e, o)) continue;
      if (o.json) chunk.push(`${rows === 0 ? '' : ','}\n${JSON.stringify(entryJson(e, now))}`);
      else chunk.push(dumpRow(e, o, now));
      if (++rows % CHUNK === 0) flush();
    }
    if (o.json) chunk.push(rows === 0 ? ']\n' : '\n]\n');
  } catch (e) {
    status = 1;
    flush();
    io.err(`blocklistctl: reading '${path}' failed: ${e instanceof Error ? e.message : String(e)}\n`);
  } finally {
    store.close();
  }
  flush();
  return status;
}
