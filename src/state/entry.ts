// An entry as blocklistctl dump --json and the control socket show it.
import { ANY, type Entry } from '../types.js';

/** How long the entry's block lasts (seconds): its rule's duration, and an escalated block's hold; ANY (-1) for forever or permanent. */
export const blockSeconds = (e: Entry): number => (e.key.duration === ANY || (e.hold ?? 0) < 0 ? ANY : e.key.duration + (e.hold ?? 0));

/** At its limit: blocked, or its add pending. */
export const isBlocked = (e: Entry): boolean => e.key.nfail !== ANY && e.count >= e.key.nfail;

/** Which entries a dump shows: every one, the blocked ones, or (by default) those counting but not yet blocked. */
export type DumpSelection = 'all' | 'blocked' | 'counting';
export const DUMP_SELECTIONS: readonly DumpSelection[] = ['all', 'blocked', 'counting'];

/** Whether `e` is one of `selection` (state-and-ctl.md §2.2). */
export function dumpSelected(e: Entry, selection: DumpSelection): boolean {
  if (selection === 'all') return true;
  if (selection === 'blocked') return isBlocked(e);
  return e.count < e.key.nfail;
}

const iso = (seconds: number): string | null => {
  const d = new Date(seconds * 1000);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
};

/** An entry as dump shows it: a block learned from the fleet (issue 17) names its origin host. */
export type DumpEntry = Entry & { origin?: string };

/** An entry with every field, times as epoch seconds and ISO-8601 (G49); a learned block's origin too. */
export function entryJson(e: DumpEntry, now: number): Record<string, unknown> {
  const seconds = blockSeconds(e);
  const expires = seconds === ANY ? null : e.last + seconds;
  return {
    ...e.key,
    count: e.count,
    id: e.id,
    // an escalated block (doc/escalation.md §5): its number, and how long it lasts (null: permanent); an aggregate: how long
    ...(e.block === undefined ? {} : { block: e.block }),
    ...(e.block === undefined && e.hold === undefined ? {} : { blockDuration: seconds === ANY ? null : seconds }),
    blocked: isBlocked(e),
    last: e.last,
    lastTime: iso(e.last),
    expires,
    expiresTime: expires === null ? null : iso(expires),
    remaining: expires === null ? null : expires - now,
    ...(e.origin === undefined ? {} : { origin: e.origin }),
  };
}

/** The fields of an entry as a row of a dump's chunk, in this order: compact, for millions of them. */
export const ENTRY_ROW_FIELDS = [
  'name',
  'address',
  'port',
  'family',
  'lmask',
  'proto',
  'uid',
  'nfail',
  'rmask',
  'duration',
  'count',
  'last',
  'id',
  'block',
  'hold',
  'origin',
] as const;
/** A row; `block` and `hold` 0 when not escalated, `origin` only for a block learned from the fleet. */
export type EntryRow = [
  string,
  string,
  number,
  number,
  number,
  number,
  number,
  number,
  number,
  number,
  number,
  number,
  string,
  number?,
  number?,
  string?,
];

export function entryRow(e: DumpEntry): EntryRow {
  const k = e.key;
  const row: EntryRow = [
    k.name,
    k.address,
    k.port,
    k.family,
    k.lmask,
    k.proto,
    k.uid,
    k.nfail,
    k.rmask,
    k.duration,
    e.count,
    e.last,
    e.id,
    e.block ?? 0,
    e.hold ?? 0,
  ];
  if (e.origin !== undefined) row.push(e.origin);
  return row;
}

export function entryFromRow(r: EntryRow): DumpEntry {
  const e: DumpEntry = {
    key: {
      name: r[0],
      address: r[1],
      port: r[2],
      family: r[3],
      lmask: r[4],
      proto: r[5],
      uid: r[6],
      nfail: r[7],
      rmask: r[8],
      duration: r[9],
    },
    count: r[10],
    last: r[11],
    id: r[12],
    ...(r[15] === undefined ? {} : { origin: r[15] }),
  };
  // a daemon before escalation sends 13 fields
  if ((r[13] ?? 0) !== 0) e.block = r[13];
  if ((r[14] ?? 0) !== 0) e.hold = r[14];
  return e;
}

/** entryJson's object back to an entry (blocklistctl reads the control socket's answers with it). */
export function entryFromJson(o: Record<string, unknown>): Entry {
  const n = (k: string): number => Number(o[k]);
  return {
    key: {
      family: n('family'),
      address: String(o.address),
      lmask: n('lmask'),
      port: n('port'),
      proto: n('proto'),
      uid: n('uid'),
      name: String(o.name),
      rmask: n('rmask'),
      nfail: n('nfail'),
      duration: n('duration'),
    },
    count: n('count'),
    last: n('last'),
    id: String(o.id ?? ''),
    ...(o.block === undefined ? {} : { block: n('block') }),
    ...(o.blockDuration === undefined ? {} : { hold: o.blockDuration === null ? -1 : n('blockDuration') - n('duration') }),
  };
}
