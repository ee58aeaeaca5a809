// The fleet's tables in the state database (doc/fleet.md §3): blocks
// learned from other hosts (fleet_block), and what this host must still
// publish or delete (fleet_outbox), so that neither a restart nor a
// server down loses anything.  Same connection as the entries: a write
// here can share the engine's transaction.
import { isIP } from 'node:net';
import type Database from 'better-sqlite3';
import type { DumpEntry } from '../state/entry.js';
import { BLOCKED, type StateStore } from '../state/store.js';
import { ANY } from '../types.js';
import type { FleetBlock } from './record.js';

/** A block learned from the fleet as stored: the packet-filter element, its local end, the helper's id ('' before its add worked). */
export interface LearnedBlock {
  key: string;
  origin: string;
  name: string;
  address: string;
  mask: number;
  proto: string;
  port: number;
  start: number;
  /** Local end (epoch seconds), null forever. */
  ends: number | null;
  reason: string;
  id: string;
}

/** The packet-filter element a block is: two holders of the same one share it. */
export interface Element {
  name: string;
  address: string;
  mask: number;
  proto: string;
  port: number;
}

/** A publish (value) or a delete (null) waiting for the server. */
export interface OutboxItem {
  seq: number;
  key: string;
  value: string | null;
}

/** The entry table's protocol numbers for the helper's protocol names. */
const PROTO_NUMBER: Record<string, number> = { '': -1, tcp: 6, udp: 17 };

/** An entry of the engine that holds this element: blocked, or its add pending (BLOCKED). */
const LOCAL_HOLDER =
  'SELECT id FROM entry WHERE address = ? AND port = ? AND name = ? AND lmask = ? AND proto = ? ' + `AND (${BLOCKED}) LIMIT 1`;

export class FleetState {
  private readonly store: StateStore;
  private readonly getStmt: Database.Statement;
  private readonly putStmt: Database.Statement;
  private readonly deleteStmt: Database.Statement;
  private readonly setIdStmt: Database.Statement;
  private readonly allStmt: Database.Statement;
  private readonly dueStmt: Database.Statement;
  private readonly nextStmt: Database.Statement;
  private readonly holderStmt: Database.Statement;
  private readonly localStmt: Database.Statement;
  private readonly endsStmt: Database.Statement;
  private readonly countStmt: Database.Statement;
  private readonly enqueueStmt: Database.Statement;
  private readonly outboxStmt: Database.Statement;
  private readonly sentStmt: Database.Statement;
  private readonly pendingStmt: Database.Statement;
  private readonly queuedStmt: Database.Statement;

  constructor(store: StateStore) {
    const db = store.database;
    this.store = store;
    this.getStmt = db.prepare('SELECT * FROM fleet_block WHERE key = ?');
    this.putStmt = db.prepare(
      'INSERT INTO fleet_block (key, origin, name, address, mask, proto, port, start, ends, reason, id) ' +
        'VALUES (@key, @origin, @name, @address, @mask, @proto, @port, @start, @ends, @reason, @id) ' +
        'ON CONFLICT (key) DO UPDATE SET start = excluded.start, ends = excluded.ends, reason = excluded.reason',
    );
    this.deleteStmt = db.prepare('DELETE FROM fleet_block WHERE key = ?');
    this.setIdStmt = db.prepare('UPDATE fleet_block SET id = ? WHERE key = ?');
    this.allStmt = db.prepare('SELECT * FROM fleet_block ORDER BY name, address, port, origin');
    this.dueStmt = db.prepare('SELECT * FROM fleet_block WHERE ends IS NOT NULL AND ends <= ? ORDER BY ends LIMIT ?');
    this.nextStmt = db.prepare('SELECT min(ends) FROM fleet_block WHERE ends IS NOT NULL').pluck();
    this.holderStmt = db
      .prepare(
        'SELECT id FROM fleet_block WHERE address = ? AND port = ? AND name = ? AND mask = ? AND proto = ? ' +
          "AND key != ? AND id != '' LIMIT 1",
      )
      .pluck();
    this.localStmt = db.prepare(LOCAL_HOLDER).pluck();
    this.endsStmt = db
      .prepare('SELECT ends FROM fleet_block WHERE address = ? AND port = ? AND name = ? AND mask = ? AND proto = ?')
      .pluck();
    this.countStmt = db.prepare('SELECT count(*) FROM fleet_block').pluck();
    // one row per key: only the last word about a key matters
    this.enqueueStmt = db.prepare(
      'INSERT INTO fleet_outbox (key, value) VALUES (?, ?) ' +
        'ON CONFLICT (key) DO UPDATE SET value = excluded.value, seq = (SELECT max(seq) + 1 FROM fleet_outbox)',
    );
    this.outboxStmt = db.prepare('SELECT seq, key, value FROM fleet_outbox ORDER BY seq LIMIT ?');
    this.sentStmt = db.prepare('DELETE FROM fleet_outbox WHERE key = ? AND seq = ?');
    this.pendingStmt = db.prepare('SELECT count(*) FROM fleet_outbox').pluck();
    this.queuedStmt = db.prepare('SELECT 1 FROM fleet_outbox WHERE key = ?').pluck();
  }

  transaction<T>(fn: () => T): T {
    // the store's: a rollback empties its cache of entries too
    return this.store.transaction(fn);
  }

  get(key: string): LearnedBlock | undefined {
    return this.getStmt.get(key) as LearnedBlock | undefined;
  }

  /** A block learned, or its end and start renewed (its id kept). */
  put(b: FleetBlock & { key: string }, ends: number | null, id: string): void {
    this.putStmt.run({
      key: b.key,
      origin: b.origin,
      name: b.name,
      address: b.address,
      mask: b.mask,
      proto: b.proto,
      port: b.port,
      start: b.start,
      ends,
      reason: b.reason,
      id,
    });
  }

  delete(key: string): void {
    this.deleteStmt.run(key);
  }

  setId(key: string, id: string): void {
    this.setIdStmt.run(id, key);
  }

  all(): LearnedBlock[] {
    return this.allStmt.all() as LearnedBlock[];
  }

  due(now: number, limit: number): LearnedBlock[] {
    return this.dueStmt.all(now, limit) as LearnedBlock[];
  }

  nextEnd(): number | undefined {
    return (this.nextStmt.get() as number | null) ?? undefined;
  }

  count(): number {
    return this.countStmt.get() as number;
  }

  /** The id of another learned block of the same element whose add worked, if any (`except`: the block asking). */
  fleetHolder(e: Element, except = ''): string | undefined {
    return this.holderStmt.get(e.address, e.port, e.name, e.mask, e.proto, except) as string | undefined;
  }

  /** The local ends of the learned blocks of an element (null: forever). */
  ends(e: Element): (number | null)[] {
    return this.endsStmt.all(e.address, e.port, e.name, e.mask, e.proto) as (number | null)[];
  }

  /** The id of a local entry holding the element (blocked, or its add pending: then ''), undefined when none. */
  localHolder(e: Element): string | undefined {
    return this.localStmt.get(e.address, e.port, e.name, e.mask, PROTO_NUMBER[e.proto] ?? -1) as string | undefined;
  }

  /** A publish (value) or delete (null) of `key` to send; replaces one not sent yet. */
  enqueue(key: string, value: string | null): void {
    this.enqueueStmt.run(key, value);
  }

  outbox(limit: number): OutboxItem[] {
    return this.outboxStmt.all(limit) as OutboxItem[];
  }

  /** Sent: gone from the outbox, unless a newer word about its key came meanwhile. */
  sent(item: OutboxItem): void {
    this.sentStmt.run(item.key, item.seq);
  }

  /** A word about `key` waits in the outbox. */
  queued(key: string): boolean {
    return this.queuedStmt.get(key) !== undefined;
  }

  pending(): number {
    return this.pendingStmt.get() as number;
  }
}

/**
 * The learned blocks as dump shows them (issue 17): entries at their
 * limit (1/1) of their rule name, `last` their start and `duration` up to
 * their local end, with their origin; none in a database without the
 * fleet's table.
 */
export function* learnedEntries(store: StateStore, families: { inet: number; inet6: number }): Generator<DumpEntry> {
  const db = store.database;
  if (db.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'fleet_block'").pluck().get() === 0) return;
  for (const b of db
    .prepare('SELECT * FROM fleet_block ORDER BY name, address, port, origin')
    .iterate() as IterableIterator<LearnedBlock>) {
    const key = {
      family: isIP(b.address) === 6 ? families.inet6 : families.inet,
      address: b.address,
      lmask: b.mask,
      port: b.port,
      proto: PROTO_NUMBER[b.proto] ?? ANY,
      uid: ANY,
      name: b.name,
      rmask: ANY,
      nfail: 1,
      duration: b.ends === null ? ANY : b.ends - b.start,
    };
    yield { key, count: 1, last: b.start, id: b.id, origin: b.origin };
  }
}

/** What dump lists: the entries, then the blocks learned from the fleet. */
export function* dumpEntries(store: StateStore, families: { inet: number; inet6: number }): Generator<DumpEntry> {
  yield* store.entries();
  yield* learnedEntries(store, families);
}
