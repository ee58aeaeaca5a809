// An entry as blocklistctl dump --json and the control socket show it.
import { ANY, type Entry } from '../types.js';

/** At its limit: blocked, or its add pending. */
export const isBlocked = (e: Entry): boolean => e.key.nfail !== ANY && e.count >= e.key.nfail;

const iso = (seconds: number): string | null => {
  const d = new Date(seconds * 1000);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
};

/** An entry with every field, times as epoch seconds and ISO-8601 (G49). */
export function entryJson(e: Entry, now: number): Record<string, unknown> {
  const expires = e.key.duration === ANY ? null : e.last + e.key.duration;
  return {
    ...e.key,
    count: e.count,
    id: e.id,
    blocked: isBlocked(e),
    last: e.last,
    lastTime: iso(e.last),
    expires,
    expiresTime: expires === null ? null : iso(expires),
    remaining: expires === null ? null : expires - now,
  };
}

/** entryJson's object back to an entry (blocklistctl reads the control socket's answers with it). */
export function entryFromJson(o: Record<string, unknown>): Entry {
  const n = (k: string): number => Number(o[k]);
  return {
    key: { family: n('family'), address: String(o.address), lmask: n('lmask'), port: n('port'), proto: n('proto'), uid: n('uid'), name: String(o.name), rmask: n('rmask'), nfail: n('nfail'), duration: n('duration') },
    count: n('count'),
    last: n('last'),
    id: String(o.id ?? ''),
  };
}
