// blocklistctl dump (state-and-ctl.md §2): upstream's columns, widths and
// row selection, with the fixes G45-G48, and --json (G49).  The rows come
// from the running daemon over its control socket, or from the database
// file (-D, or no daemon running), ordered by name, address and port.
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { errnoMessage } from '../errno.js';
import { blockSeconds, dumpSelected, entryFromRow, entryJson, type DumpEntry, type DumpSelection, type EntryRow } from '../state/entry.js';
import { StateError, StateStore } from '../state/store.js';
import { constants } from '../protocol/native.js';
import { dumpEntries, learnedEntries } from '../fleet/state.js';
import { ANY, type Entry } from '../types.js';
import { DURATION_UNITS, durationParts, localTime } from '../time.js';
import type { ControlErrorBody } from '../protocol/control.js';
import type { Output } from './conf.js';
import { EnvelopeStream, envelope } from './json.js';

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
  /** --block-number: a last column with an escalated block's number (escalation). */
  blockNumber?: boolean;
  /** -o: an origin column: the host a block learned from the fleet came from, `-` for this host's (issue 17). */
  origin?: boolean;
}

/** The address families of the fleet's learned entries: the addon's numbers, as systemEnv's (not loaded: 8 ms of a dump). */
const FAMILIES = { inet: constants.AF_INET, inet6: constants.AF_INET6 };

/** The entries -a and -b ask for. */
const selectionOf = (o: Pick<DumpOptions, 'all' | 'blocked'>): DumpSelection => (o.all ? 'all' : o.blocked ? 'blocked' : 'counting');

const star = (n: number): string => (n === ANY ? '*' : String(n));
/** A remaining time may be years (a long block's), unlike a configured duration. */
const REMAINING_UNITS = [['y', 365 * 86400] as const, ...DURATION_UNITS];

/** A positive number of seconds as its non-zero parts: `59m56s`, `1d1h1m1s`, `1y1d`. */
export function remainingTime(seconds: number): string {
  return durationParts(seconds, REMAINING_UNITS).join('');
}

/** The last column: `never` for forever, else remaining time (`0s`, `expired`: G46, G47) or last access. */
function timeColumn(e: Entry, remaining: boolean, now: number): string {
  // an escalated block's own length (permanent: never)
  const seconds = blockSeconds(e);
  if (seconds === ANY) return 'never';
  if (!remaining) return localTime(e.last);
  return remainingColumn(seconds - (now - e.last));
}

/** -r's time column of a block with `left` seconds to go. */
function remainingColumn(left: number): string {
  if (left < 0) return 'expired';
  return left === 0 ? '0s' : remainingTime(left);
}

/** The address column's width: the address right-aligned in it, never cut (G45). */
const addressWidth = (o: Pick<DumpOptions, 'wide'>): number => (o.wide ? 39 : 15);

/** The header line (§2.3). */
function dumpHeader(o: Pick<DumpOptions, 'wide' | 'remaining' | 'blockNumber' | 'origin'>): string {
  const width = addressWidth(o);
  const extra = `${o.blockNumber === true ? '\tblock' : ''}${o.origin === true ? '\torigin' : ''}`;
  return `rulename\t${'address'.padStart(width)}/ma:port\tid\tnfail\t${o.remaining ? 'remaining time' : 'last access'}${extra}\n`;
}

/** One row (§2.3); the address is right-aligned, never cut (G45). */
function dumpRow(e: DumpEntry, o: Pick<DumpOptions, 'wide' | 'remaining' | 'blockNumber' | 'origin'>, now: number): string {
  const k = e.key;
  const width = addressWidth(o);
  const address = `${k.address.padStart(width)}/${star(k.lmask)}:${star(k.port)}`;
  const extra = `${o.blockNumber === true ? `\t${e.block ?? '-'}` : ''}${o.origin === true ? `\t${e.origin ?? '-'}` : ''}`;
  return `${k.name}\t${address}\t${e.id}\t${e.count}/${star(k.nfail)}\t${timeColumn(e, o.remaining, now)}${extra}\n`;
}

export const DUMP_USAGE = 'Usage: blocklistctl dump [-abdnorw] [-D dbname] [control options]';

/** Rows are written in chunks of this many: a dump of millions of entries is not held in memory. */
const CHUNK = 1000;
/** The local times of so many minutes kept at most (timeColumn). */
const MINUTES = 10_000;

/** Prints the entries read (from the file or the daemon) as the table or in the JSON envelope, CHUNK rows per write. */
class DumpWriter {
  private chunk: string[] = [];
  private rows = 0;
  /** The local time of a minute's start without its seconds (`YYYY/MM/DD HH:MM:`), null when not plain (timeColumn). */
  private readonly minutes = new Map<number, string | null>();
  private readonly selection: DumpSelection;
  private readonly json: EnvelopeStream | undefined;

  constructor(
    private readonly options: DumpOptions,
    private readonly io: Output,
    private readonly now: number,
  ) {
    this.selection = selectionOf(options);
    if (options.json) this.json = new EnvelopeStream('dump', io);
    else if (!options.noHeader) this.chunk.push(dumpHeader(options));
  }

  /** An entry read: printed if selected; -d tells of every one. */
  entry(e: DumpEntry): void {
    if (this.options.debug > 0)
      this.io.err(`iterate: ${e.key.name} ${e.key.address}/${e.key.lmask}:${e.key.port} count=${e.count} last=${e.last} id=${e.id}\n`);
    if (!dumpSelected(e, this.selection)) return;
    this.chunk.push(this.json === undefined ? dumpRow(e, this.options, this.now) : this.json.item(entryJson(e, this.now)));
    if (++this.rows % CHUNK === 0) this.flush();
  }

  /**
   * A row of StateStore.dumpRows (a selected entry of the table, no -d, no --json), printed as dumpRow would print its
   * entry: SQLite laid out the columns up to the time column; the time column and the optional ones are added here.
   */
  storedRow(row: string): void {
    const afterSeconds = row.indexOf(' ');
    const afterLast = row.indexOf(' ', afterSeconds + 1);
    const afterBlock = row.indexOf(' ', afterLast + 1);
    const seconds = Number(row.slice(0, afterSeconds));
    const last = Number(row.slice(afterSeconds + 1, afterLast));
    const o = this.options;
    const extra = `${o.blockNumber === true ? `\t${row.slice(afterLast + 1, afterBlock)}` : ''}${o.origin === true ? '\t-' : ''}`;
    this.chunk.push(`${row.slice(afterBlock + 1)}${this.timeColumn(seconds, last)}${extra}\n`);
    if (++this.rows % CHUNK === 0) this.flush();
  }

  /**
   * timeColumn of a block of `seconds` from `last`.  A local time is made once a minute, not once an entry (a Date and
   * its six fields for each of 100,000 entries were a third of a dump's time): the seconds are those since the minute
   * began, when the minute is plain, its local time from :00 to :59 (no change of the offset inside it, none of seconds).
   */
  private timeColumn(seconds: number, last: number): string {
    if (seconds === ANY) return 'never';
    if (this.options.remaining) return remainingColumn(seconds - (this.now - last));
    if (!Number.isInteger(last)) return localTime(last);
    const start = last - (((last % 60) + 60) % 60);
    let minute = this.minutes.get(start);
    if (minute === undefined) {
      if (this.minutes.size >= MINUTES) this.minutes.clear();
      const first = localTime(start);
      const plain = first.endsWith(':00') && localTime(start + 59) === `${first.slice(0, -2)}59`;
      this.minutes.set(start, (minute = plain ? first.slice(0, -2) : null));
    }
    return minute === null ? localTime(last) : `${minute}${String(last - start).padStart(2, '0')}`;
  }

  /** The end of the entries, or the error that cut them short: exit status 0 or 1. */
  end(error?: ControlErrorBody): number {
    if (this.json !== undefined) this.chunk.push(this.json.end(error));
    this.flush();
    if (error !== undefined && this.json === undefined) this.io.err(`blocklistctl: ${error.message}\n`);
    return error === undefined ? 0 : 1;
  }

  private flush(): void {
    this.io.out(this.chunk.join(''));
    this.chunk = [];
  }
}

/** A dump that failed before any entry: its message on stderr, or its envelope with --json; exit 1. */
function failed(o: DumpOptions, io: Output, error: ControlErrorBody): number {
  if (o.json) io.out(envelope('dump', { error }));
  else io.err(`blocklistctl: ${error.message}\n`);
  return 1;
}

/** `blocklistctl dump -D path`: the file read; exit 0, or 1 when the database cannot be read (G48). */
export function dumpCommand(path: string, o: DumpOptions, io: Output, now = Math.floor(Date.now() / 1000)): number {
  let store: StateStore;
  try {
    // SQLite would say "disk I/O error" for a directory
    if (statSync(path).isDirectory())
      return failed(o, io, { code: 'database_error', message: `Can't open '${path}': ${errnoMessage(osConstants.errno.EISDIR)}` });
    accessSync(path, fsConstants.R_OK);
    store = StateStore.open(path, { readonly: true });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const message =
      typeof err.errno === 'number' ? `Can't open '${path}': ${errnoMessage(err.errno)}` : e instanceof StateError ? e.message : String(e);
    return failed(o, io, { code: 'database_error', message });
  }
  const writer = new DumpWriter(o, io, now);
  try {
    if (o.json || o.debug > 0) for (const e of dumpEntries(store, FAMILIES)) writer.entry(e);
    else {
      // the table: SQLite makes the rows (StateStore.dumpRows); the fleet's learned blocks after them, as dumpEntries
      for (const row of store.dumpRows(selectionOf(o), addressWidth(o))) writer.storedRow(row);
      for (const e of learnedEntries(store, FAMILIES)) writer.entry(e);
    }
  } catch (e) {
    return writer.end({ code: 'database_error', message: `reading '${path}' failed: ${e instanceof Error ? e.message : String(e)}` });
  } finally {
    store.close();
  }
  return writer.end();
}

/**
 * `blocklistctl dump` without -D: the running daemon's entries, asked over
 * its control socket (it knows its database, and may read it where the
 * caller may not); 'not_running' when no daemon listens there.
 */
export async function dumpFromDaemon(
  control: string,
  o: DumpOptions,
  io: Output,
  now = Math.floor(Date.now() / 1000),
): Promise<number | 'not_running'> {
  let writer: DumpWriter | undefined;
  // -d tells of every entry read: then all of them come, and are selected here
  const select = o.debug > 0 ? 'all' : selectionOf(o);
  // loaded here: a dump of a file does not talk to the daemon
  const { request } = await import('./control.js');
  const answer = await request(control, 'dump', { select }, undefined, (result) => {
    const chunk = result as { rows: EntryRow[]; more: boolean };
    writer ??= new DumpWriter(o, io, now);
    for (const row of chunk.rows) writer.entry(entryFromRow(row));
    return chunk.more !== true;
  });
  if ('result' in answer) return writer!.end();
  if (answer.error.code === 'not_running' && writer === undefined) return 'not_running';
  const error = { ...answer.error, message: `dump: ${answer.error.message}` };
  return writer === undefined ? failed(o, io, error) : writer.end(error);
}
