// The state database (state-and-ctl.md §1) in SQLite: one row per entry,
// keyed by the effective rule in typed columns, with an index on the
// expiry time so that the daemon finds the next expiry without a scan.
// WAL journal: blocklistctl reads while the daemon writes, a committed
// transaction survives a crash of the process, and a crash never leaves a
// file that does not open.
import { accessSync, chmodSync, closeSync, constants as fsConstants, existsSync, mkdirSync, openSync, renameSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { errnoText } from '../errno.js';
import { ANY, type EffectiveRule, type Entry } from '../types.js';
import type { History } from '../escalate/policy.js';
import { isBlocked, type DumpSelection } from './entry.js';
import { RowCache } from './cache.js';

/**
 * The database the daemon and blocklistctl use without -D: Linux keeps a
 * service's state under /var/lib (FHS; what systemd's StateDirectory gives),
 * the BSDs under /var/db, as upstream does.
 */
export const DEFAULT_DB_PATH = process.platform === 'linux' ? '/var/lib/blocklistd/blocklistd.db' : '/var/db/blocklistd.db';

/** `PRAGMA application_id`: marks the file as ours ("blkd"). */
export const APPLICATION_ID = 0x626c6b64;

/** Entries with a filter rule, or at their limit (an add that may or may not have happened). */
export const BLOCKED = "id != '' OR (nfail >= 0 AND count >= nfail)";
/** The complement of BLOCKED, as the eviction index and its queries spell it (a query must repeat an index's condition to use it). */
const EVICTABLE = "id = '' AND (nfail < 0 OR count < nfail)";

/** BLOCKED for an entry in hand. */
const blocked = (e: Entry): boolean => e.id !== '' || isBlocked(e);

/**
 * Entries the store's cache keeps at most (see `cache` in the class): an
 * attack is a few thousand addresses; each costs about 200 bytes of heap.
 */
const CACHE_ENTRIES = 20_000;

/** Forward migrations; schema version N is reached by running the first N. */
const MIGRATIONS: readonly string[] = [
  // The identity is unique (address first: it tells entries apart soonest);
  // updates go by rowid, and the expiry index holds only (expiry, rowid).
  `CREATE TABLE entry (
     name TEXT NOT NULL,
     address TEXT NOT NULL,
     port INTEGER NOT NULL,
     family INTEGER NOT NULL,
     lmask INTEGER NOT NULL,
     proto INTEGER NOT NULL,
     uid INTEGER NOT NULL,
     nfail INTEGER NOT NULL,
     rmask INTEGER NOT NULL,
     duration INTEGER NOT NULL,
     count INTEGER NOT NULL,
     last INTEGER NOT NULL,
     id TEXT NOT NULL,
     UNIQUE (address, port, name, family, lmask, proto, uid, nfail, rmask, duration)
   );
   CREATE INDEX entry_expiry ON entry (last + duration) WHERE duration >= 0;`,
  // --max-entries evicts the entries not blocked, soonest expiry first
  // (entry_expiry), then those of rules without expiry, oldest first: those
  // only in an index of their own, which an update of any other entry
  // leaves alone.
  `CREATE INDEX entry_forever ON entry (last) WHERE duration < 0 AND ${EVICTABLE};`,
  // issue 18, escalation (doc/escalation.md §3): a block's own length beyond
  // its rule's duration (`hold`; -1 permanent) and its number in the
  // address's history; expiry goes by `last + duration + hold`.  The
  // history of blocks per (rule name, masked address) in a table of its
  // own, which -f and flushes leave alone.  Subnet aggregation (§6) finds
  // the blocks of a network by `entry_blocked`, which holds only entries
  // with a filter rule: counting entries cost it nothing.
  `ALTER TABLE entry ADD COLUMN hold INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE entry ADD COLUMN block INTEGER NOT NULL DEFAULT 0;
   DROP INDEX entry_expiry;
   CREATE INDEX entry_expiry ON entry (last + duration + hold) WHERE duration >= 0 AND hold >= 0;
   CREATE TABLE history (
     name TEXT NOT NULL,
     address TEXT NOT NULL,
     count INTEGER NOT NULL,
     last INTEGER NOT NULL,
     until INTEGER NOT NULL,
     PRIMARY KEY (address, name)
   ) WITHOUT ROWID;
   CREATE INDEX entry_blocked ON entry (name, address) WHERE id != '';`,
  // fleet (issue 17, doc/fleet.md §3): blocks learned from other hosts, kept
  // apart from the entries, and the publishes and deletes not yet sent
  `CREATE TABLE fleet_block (
     key TEXT PRIMARY KEY,
     origin TEXT NOT NULL,
     name TEXT NOT NULL,
     address TEXT NOT NULL,
     mask INTEGER NOT NULL,
     proto TEXT NOT NULL,
     port INTEGER NOT NULL,
     start INTEGER NOT NULL,
     ends INTEGER,
     reason TEXT NOT NULL,
     id TEXT NOT NULL
   );
   CREATE INDEX fleet_block_target ON fleet_block (address, port, name, mask, proto);
   CREATE INDEX fleet_block_ends ON fleet_block (ends) WHERE ends IS NOT NULL;
   CREATE TABLE fleet_outbox (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     key TEXT NOT NULL UNIQUE,
     value TEXT
   );`,
];
export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * What went wrong: `invalid_database`, the file is not a usable blocklistd
 * database (corrupt, foreign, too new); `read_only`, a write to a store
 * opened read-only; `unavailable`, it cannot be opened (the message says why).
 */
export type StateErrorCode = 'invalid_database' | 'read_only' | 'unavailable';

/** The database cannot be used; the message says why and what to do. */
export class StateError extends Error {
  override readonly name = 'StateError';

  constructor(
    message: string,
    readonly code: StateErrorCode = 'unavailable',
  ) {
    super(message);
  }

  /** The file is not a usable blocklistd database: moved aside with --rename-bad-db. */
  get invalid(): boolean {
    return this.code === 'invalid_database';
  }
}

const KEY_COLUMNS = ['name', 'address', 'port', 'family', 'lmask', 'proto', 'uid', 'nfail', 'rmask', 'duration'] as const;
const KEY_MATCH = KEY_COLUMNS.map((c) => `${c} = ?`).join(' AND ');
const COLUMNS = KEY_COLUMNS.join(', ');

/** An entry as read from the database: `put` updates it in place. */
export interface StoredEntry extends Entry {
  readonly rowid: number;
  /** Blocked as read: what a write of it changes in the kept count. */
  readonly wasBlocked: boolean;
}

interface Row {
  name: string;
  address: string;
  port: number;
  family: number;
  lmask: number;
  proto: number;
  uid: number;
  nfail: number;
  rmask: number;
  duration: number;
  count: number;
  last: number;
  id: string;
  hold: number;
  block: number;
}

/** The key as named parameters `@name`, `@address` ... */
const keyParameters = (k: EffectiveRule): Record<(typeof KEY_COLUMNS)[number], string | number> => ({
  name: k.name,
  address: k.address,
  port: k.port,
  family: k.family,
  lmask: k.lmask,
  proto: k.proto,
  uid: k.uid,
  nfail: k.nfail,
  rmask: k.rmask,
  duration: k.duration,
});

function keyValues(k: EffectiveRule): (string | number)[] {
  return [k.name, k.address, k.port, k.family, k.lmask, k.proto, k.uid, k.nfail, k.rmask, k.duration];
}

function entryOf(r: Row): Entry {
  return {
    key: {
      family: r.family,
      address: r.address,
      lmask: r.lmask,
      port: r.port,
      proto: r.proto,
      uid: r.uid,
      name: r.name,
      rmask: r.rmask,
      nfail: r.nfail,
      duration: r.duration,
    },
    count: r.count,
    last: r.last,
    id: r.id,
    ...escalated(r),
  };
}

/** An escalated (or aggregate) block's fields, left out of every other entry: those stay as upstream's. */
const escalated = (r: { block: number; hold: number }): Pick<Entry, 'block' | 'hold'> => ({
  ...(r.block === 0 ? {} : { block: r.block }),
  ...(r.hold === 0 ? {} : { hold: r.hold }),
});

export interface OpenOptions {
  /** Read-only, for blocklistctl: never creates, migrates or writes. */
  readonly?: boolean;
  /** Move an unusable file aside (`<path>.invalid-<time>`) and start empty, instead of failing. */
  renameInvalid?: boolean;
}

/** Only these SQLite errors say the file is not (or no longer) a database; others are I/O or permission problems. */
function isInvalidFile(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT';
}

/**
 * The database holds who attacked whom: readable by its owner only.  A file
 * created by an older version or by hand may be 0644, and SQLite copies the
 * database's mode to the -wal and -shm it creates; existing ones are
 * brought to 0600 too.  Returns what was changed, as `path (0644)`.
 */
function privateModes(path: string): string[] {
  const changed: string[] = [];
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    let mode: number;
    try {
      mode = statSync(file).mode & 0o7777;
    } catch {
      continue; // no -wal or -shm yet
    }
    if ((mode & 0o077) === 0) continue;
    chmodSync(file, mode & 0o700);
    changed.push(`${file} (${mode.toString(8).padStart(4, '0')})`);
  }
  return changed;
}

export class StateStore {
  /** Files of the database whose mode gave others access, made owner-only at open (for the daemon to log). */
  readonly modesFixed: string[] = [];
  private readonly db: Database.Database;
  private readonly getStmt: Database.Statement | undefined;
  private readonly updateStmt: Database.Statement | undefined;
  private readonly deleteStmt: Database.Statement | undefined;
  private readonly iterateStmt: Database.Statement | undefined;
  private readonly nextExpiryStmt: Database.Statement | undefined;
  private readonly dueStmt: Database.Statement | undefined;
  private readonly countStmt: Database.Statement | undefined;
  /** Entries and blocked entries, kept through this store's writes (a writable store is the only writer); undefined until first asked. */
  private counts: { entries: number; blocked: number } | undefined;
  /**
   * The rows of the entries last read or written, by key, for a writable
   * store only (another process writes under a read-only one): a hit reads
   * nothing from SQLite, and its write goes by rowid alone.  At most
   * CACHE_ENTRIES, those not used lately out first (cache.ts).  Coherent with the database:
   * the daemon is the only writer and every write of an entry goes through
   * this store; a row is cached only after its statement worked, a delete
   * drops it, the writes of many rows (shiftTimes, deleteName, truncate)
   * empty the cache, and so does a transaction that fails (its writes are
   * rolled back: what is cached may be theirs).  get+put of an entry in
   * use (an attack from 1,000 addresses) took 5.5 µs of CPU, 2.8 µs with the
   * cache; one not cached (each of 100,000 addresses in turn) 10.0, 12.4.
   */
  private readonly cache: RowCache | undefined;
  private readonly updateRowStmt: Database.Statement | undefined;
  private readonly updateCountStmt: Database.Statement | undefined;
  private readonly insertNewStmt: Database.Statement | undefined;
  private readonly namesStmt: Database.Statement | undefined;
  private readonly blockedStmt: Database.Statement | undefined;
  private readonly expiringStmt: Database.Statement | undefined;
  private readonly foreverStmt: Database.Statement | undefined;
  private readonly deleteRowStmt: Database.Statement | undefined;
  private readonly pageStmt: Database.Statement | undefined;
  private readonly deleteNameStmt: Database.Statement | undefined;
  private readonly liftedStmt: Database.Statement | undefined;
  private readonly shiftStmt: Database.Statement | undefined;
  private readonly futureStmt: Database.Statement | undefined;
  private readonly limitStmt: Database.Statement | undefined;
  private readonly historyGetStmt: Database.Statement | undefined;
  private readonly blockedInStmt: Database.Statement | undefined;
  private readonly historyPutStmt: Database.Statement | undefined;
  private readonly historyListStmt: Database.Statement | undefined;
  private readonly historyForgetStmt: Database.Statement | undefined;
  private readonly historyPurgeStmt: Database.Statement | undefined;

  /** Opens `path`; read-write opens create it (mode 0600, parent directories too). */
  static open(path: string, options: OpenOptions = {}): StateStore {
    try {
      return new StateStore(path, options);
    } catch (e) {
      if (!(e instanceof StateError) || !e.invalid || !options.renameInvalid || options.readonly) throw e;
      const aside = `${path}.invalid-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      for (const suffix of ['', '-wal', '-shm']) if (existsSync(path + suffix)) renameSync(path + suffix, aside + suffix);
      return new StateStore(path, options);
    }
  }

  private constructor(
    readonly path: string,
    options: OpenOptions,
  ) {
    const readonly = options.readonly === true;
    try {
      if (!readonly) {
        mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
        // created here so that its mode is 0600 (SQLite gives -wal and -shm the same); 'a' never fails on a race
        closeSync(openSync(path, 'a', 0o600));
        this.modesFixed = privateModes(path);
        // SQLite would quietly open an unwritable file read-only
        accessSync(path, fsConstants.R_OK | fsConstants.W_OK);
      }
      this.db = new Database(path, { readonly, fileMustExist: readonly, timeout: 5000 });
    } catch (e) {
      throw new StateError(`Can't open '${path}': ${errnoText(e)}`);
    }
    let fresh: boolean;
    try {
      fresh = readonly ? this.checkSchema() : this.prepareSchema();
    } catch (e) {
      this.db.close();
      if (e instanceof StateError) throw e;
      if (isInvalidFile(e)) throw new StateError(`'${path}' is not a blocklistd database (${errnoText(e)})`, 'invalid_database');
      throw new StateError(`Can't open '${path}': ${errnoText(e)}`);
    }
    // read-only on a file no daemon has initialised yet: no statements, no entries
    if (readonly && fresh) return;
    // rows as arrays: an object of six fields a read cost the notification path a tenth of its speed (test/bench/state.ts)
    this.getStmt = this.db.prepare(`SELECT rowid, count, last, id, hold, block FROM entry WHERE ${KEY_MATCH}`).raw(true);
    this.insertNewStmt = this.db.prepare(
      `INSERT INTO entry (${COLUMNS}, count, last, id, hold, block) ` +
        `VALUES (${KEY_COLUMNS.map(() => '?').join(', ')}, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    );
    // the key check makes a stale rowid (its entry deleted, the rowid reused) update nothing
    this.updateStmt = this.db.prepare(`UPDATE entry SET count = ?, last = ?, id = ?, hold = ?, block = ? WHERE rowid = ? AND ${KEY_MATCH}`);
    // a cached row's rowid is certain (see `cache`): no key check
    this.updateRowStmt = this.db.prepare('UPDATE entry SET count = ?, last = ?, id = ?, hold = ?, block = ? WHERE rowid = ?');
    // SQLite rewrites the index entries of every column an UPDATE sets, changed or not: a count alone leaves
    // entry_expiry (last) and entry_blocked (id) alone.  Under a flood most writes are a count within the second of
    // the last one: 2.3 µs a write with every column, 1.2 µs with the count alone (batches of 100).
    this.updateCountStmt = this.db.prepare('UPDATE entry SET count = ? WHERE rowid = ?');
    if (!readonly) this.cache = new RowCache(CACHE_ENTRIES);
    this.deleteStmt = this.db.prepare(`DELETE FROM entry WHERE ${KEY_MATCH} RETURNING (${BLOCKED}) AS blocked`);
    this.iterateStmt = this.db.prepare(`SELECT * FROM entry ORDER BY ${COLUMNS}`);
    // a block's end is `last + duration + hold` (escalation, doc/escalation.md §3); a permanent one (hold < 0) has none
    this.nextExpiryStmt = this.db
      .prepare('SELECT min(last + duration + hold) AS at FROM entry WHERE duration >= 0 AND hold >= 0 AND last + duration + hold >= ?')
      .pluck();
    this.dueStmt = this.db.prepare(
      'SELECT * FROM entry WHERE duration >= 0 AND hold >= 0 AND last + duration + hold < ? ORDER BY last + duration + hold LIMIT ?',
    );
    this.countStmt = this.db.prepare(`SELECT count(*) AS entries, count(*) FILTER (WHERE ${BLOCKED}) AS blocked FROM entry`);
    this.namesStmt = this.db.prepare('SELECT DISTINCT name FROM entry ORDER BY name').pluck();
    this.blockedStmt = this.db.prepare(`SELECT * FROM entry WHERE ${BLOCKED}`);
    this.expiringStmt = this.db.prepare(
      `SELECT rowid, * FROM entry WHERE duration >= 0 AND hold >= 0 AND ${EVICTABLE} ORDER BY last + duration + hold LIMIT ?`,
    );
    this.foreverStmt = this.db.prepare(`SELECT rowid, * FROM entry WHERE duration < 0 AND ${EVICTABLE} ORDER BY last LIMIT ?`);
    this.deleteRowStmt = this.db.prepare('DELETE FROM entry WHERE rowid = ?');
    this.pageStmt = this.db.prepare('SELECT rowid, * FROM entry WHERE rowid > ? ORDER BY rowid LIMIT ?');
    this.deleteNameStmt = this.db.prepare(
      `DELETE FROM entry WHERE rowid IN (SELECT rowid FROM entry WHERE name = ? LIMIT ?) RETURNING (${BLOCKED}) AS blocked`,
    );
    this.liftedStmt = this.db.prepare("SELECT * FROM entry WHERE (duration < 0 OR hold < 0) AND last = 0 AND id != ''");
    // `last` 0 is a reset entry, not a time
    this.shiftStmt = this.db.prepare('UPDATE entry SET last = last + ? WHERE last != 0');
    this.futureStmt = this.db.prepare('SELECT count(*) FROM entry WHERE last > ?').pluck();
    this.limitStmt = this.db.prepare('UPDATE entry SET last = ? WHERE last > ?');
    this.historyGetStmt = this.db.prepare('SELECT * FROM history WHERE address = ? AND name = ?');
    this.blockedInStmt = this.db.prepare("SELECT * FROM entry WHERE id != '' AND name = ? AND address >= ? AND address < ?");
    this.historyPutStmt = this.db.prepare('INSERT OR REPLACE INTO history (name, address, count, last, until) VALUES (?, ?, ?, ?, ?)');
    this.historyListStmt = this.db.prepare(
      'SELECT * FROM history WHERE (@address IS NULL OR address = @address) AND (@name IS NULL OR name = @name) ORDER BY name, address',
    );
    this.historyForgetStmt = this.db.prepare(
      'DELETE FROM history WHERE (@address IS NULL OR address = @address) AND (@name IS NULL OR name = @name)',
    );
    // forgiven to nothing (a count of one per `forget` since the block ended), or kept `keep` after it (doc/escalation.md §4)
    this.historyPurgeStmt = this.db.prepare(
      'DELETE FROM history WHERE name = @name AND until >= 0 AND (' +
        '(@forget IS NOT NULL AND @now > until AND count <= (@now - until) / @forget) OR (@keep IS NOT NULL AND @now >= until + @keep))',
    );
  }

  /** The file's mark and schema version, read in one transaction. */
  private readSchema(): { applicationId: number; version: number; tables: number } {
    return this.db.transaction(() => ({
      applicationId: this.db.pragma('application_id', { simple: true }) as number,
      version: this.db.pragma('user_version', { simple: true }) as number,
      tables: this.db.prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'table'").pluck().get() as number,
    }))();
  }

  /** Refuses files that are not ours or too new; true for a fresh file (nothing to migrate or read). */
  private checkSchema(): boolean {
    const { applicationId, version, tables } = this.readSchema();
    const fresh = applicationId === 0 && version === 0 && tables === 0;
    if (applicationId !== APPLICATION_ID && !fresh) {
      throw new StateError(`'${this.path}' is not a blocklistd database (application id ${applicationId})`, 'invalid_database');
    }
    if (version > SCHEMA_VERSION) {
      throw new StateError(
        `'${this.path}' was written by a newer blocklistd (schema ${version}, this one knows ${SCHEMA_VERSION})`,
        'invalid_database',
      );
    }
    if (!fresh && version < SCHEMA_VERSION && this.db.readonly) {
      throw new StateError(`'${this.path}' has an older schema (${version}); start blocklistd once to upgrade it`);
    }
    return fresh;
  }

  /** Checks that the file is ours and intact, and brings its schema up to date. */
  private prepareSchema(): boolean {
    const mode = this.db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') throw new StateError(`Can't open '${this.path}': journal mode ${String(mode)} instead of WAL`);
    // a committed transaction is in the WAL when the process dies; fsync at checkpoints
    this.db.pragma('synchronous = NORMAL');
    // SQLite's page cache is resident memory, filled at once by start-up's quick_check (it reads every page): 4 MB, not
    // the 12.5 MB database of 100,000 entries whole.  The entries in use are in the store's own cache (`cache`), and a
    // page SQLite dropped is read back from the kernel's page cache.  Measured against 16 MB (issue 19, daemon.md §12):
    // the daemon 8 MB smaller at 100,000 entries, flood CPU per notification the same at 100,000 and 1,000,000 entries,
    // get+put of test/bench/state.ts the same (random addresses over 100,000 entries 161k/s against 166k/s, medians of 3).
    this.db.pragma('cache_size = -4096');
    const check = this.db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new StateError(`'${this.path}' is damaged (${String(check)})`, 'invalid_database');
    // one writer migrates; another opening at the same time waits and finds it done
    this.db
      .transaction(() => {
        this.checkSchema();
        const { version } = this.readSchema();
        for (let v = version; v < SCHEMA_VERSION; v++) {
          if (v === 0) this.db.pragma(`application_id = ${APPLICATION_ID}`);
          this.db.exec(MIGRATIONS[v]);
          this.db.pragma(`user_version = ${v + 1}`);
        }
      })
      .immediate();
    return false;
  }

  /** Every write of a read-only store fails here, with one error, whether or not the file was initialised. */
  private refuseReadOnly(): void {
    if (this.db.readonly) throw new StateError(`'${this.path}' is opened read-only`, 'read_only');
  }

  /** A writing statement: a writable store has them all. */
  private statement(stmt: Database.Statement | undefined): Database.Statement {
    this.refuseReadOnly();
    return stmt!;
  }

  get(key: EffectiveRule): StoredEntry | undefined {
    let row = this.cache?.get(key);
    if (row === undefined) {
      const read = this.getStmt?.get(...keyValues(key)) as [number, number, number, string, number, number] | undefined;
      if (read === undefined) return undefined;
      const [rowid, count, last, id, hold, block] = read;
      row = { key, rowid, count, last, id, hold, block, blocked: id !== '' || (key.nfail !== ANY && count >= key.nfail) };
      this.cache?.set(row);
    }
    // one literal with every field: a spread here made the hot path a third slower
    const e: Entry & { rowid: number; wasBlocked: boolean } = {
      key,
      count: row.count,
      last: row.last,
      id: row.id,
      rowid: row.rowid,
      wasBlocked: row.blocked,
    };
    if (row.block !== 0) e.block = row.block;
    if (row.hold !== 0) e.hold = row.hold;
    return e;
  }

  /** Writes an entry: in place when its row is known (cached, or it came from `get`), else inserted or replacing its key's. */
  put(entry: Entry | StoredEntry): void {
    const update = this.statement(this.updateStmt);
    const now = blocked(entry);
    const hold = entry.hold ?? 0;
    const block = entry.block ?? 0;
    const cached = this.cache!.get(entry.key);
    if (cached !== undefined) {
      const countOnly = entry.last === cached.last && entry.id === cached.id && hold === cached.hold && block === cached.block;
      const written = countOnly
        ? this.updateCountStmt!.run(entry.count, cached.rowid)
        : this.updateRowStmt!.run(entry.count, entry.last, entry.id, hold, block, cached.rowid);
      if (written.changes > 0) {
        this.kept(0, +now - +cached.blocked);
        cached.count = entry.count;
        cached.last = entry.last;
        cached.id = entry.id;
        cached.hold = hold;
        cached.block = block;
        cached.blocked = now;
        return;
      }
      // never seen (the cache is coherent), but then the key's row is looked for as without it
      this.cache!.delete(entry.key);
    }
    const cache = (rowid: number): void =>
      this.cache!.set({ key: entry.key, rowid, count: entry.count, last: entry.last, id: entry.id, hold, block, blocked: now });
    if ('rowid' in entry && update.run(entry.count, entry.last, entry.id, hold, block, entry.rowid, ...keyValues(entry.key)).changes > 0) {
      this.kept(0, +now - +entry.wasBlocked);
      cache(entry.rowid);
      return;
    }
    const inserted = this.statement(this.insertNewStmt).run(...keyValues(entry.key), entry.count, entry.last, entry.id, hold, block);
    if (inserted.changes > 0) {
      this.kept(1, +now);
      cache(Number(inserted.lastInsertRowid));
      return;
    }
    // its key's entry is there (not as read, or not read at all): replace it
    const old = this.get(entry.key)!;
    update.run(entry.count, entry.last, entry.id, hold, block, old.rowid, ...keyValues(entry.key));
    this.kept(0, +now - +old.wasBlocked);
    const row = this.cache!.get(entry.key)!;
    Object.assign(row, { count: entry.count, last: entry.last, id: entry.id, hold, block, blocked: now });
  }

  /**
   * Entries of rule `name` with a filter rule whose address text is in [from, to) (subnet aggregation:
   * escalate/aggregate.ts textRange).
   */
  blockedIn(name: string, from: string, to: string): Entry[] {
    return ((this.blockedInStmt?.all(name, from, to) ?? []) as Row[]).map(entryOf);
  }

  // --- the history of blocks (escalation, doc/escalation.md §3) ---

  /** The history of `address` (masked) under rule `name`. */
  history(name: string, address: string): History | undefined {
    return this.historyGetStmt?.get(address, name) as History | undefined;
  }

  putHistory(h: History): void {
    this.statement(this.historyPutStmt).run(h.name, h.address, h.count, h.last, h.until);
  }

  /** Every history, or those of one address and/or name, ordered by name and address. */
  histories(address?: string, name?: string): History[] {
    return (this.historyListStmt?.all({ address: address ?? null, name: name ?? null }) ?? []) as History[];
  }

  /** Deletes the histories of `address` (undefined: every address), of rule `name` only if given; how many. */
  forgetHistory(address: string | undefined, name?: string): number {
    return this.statement(this.historyForgetStmt).run({ address: address ?? null, name: name ?? null }).changes;
  }

  /**
   * Deletes the histories of rule `name` forgiven at `now` (`forget` seconds a block) or kept `keep` seconds after their
   * block; how many.
   */
  purgeHistory(name: string, now: number, forget: number | undefined, keep: number | undefined): number {
    return this.statement(this.historyPurgeStmt).run({ name, now, forget: forget ?? null, keep: keep ?? null }).changes;
  }

  delete(key: EffectiveRule): boolean {
    // all(), not get(): get() stops at the first row and resets the statement, and a commit that
    // fails there (a full disk, outside a transaction) would not reach us: the delete lost unseen
    const [row] = this.statement(this.deleteStmt).all(...keyValues(key)) as { blocked: number }[];
    this.cache!.delete(key);
    if (row !== undefined) this.kept(-1, -row.blocked);
    return row !== undefined;
  }

  /** Adds to the kept counts, if they are kept yet (else the first count sees the change). */
  private kept(entries: number, blockedEntries: number): void {
    if (this.counts === undefined) return;
    this.counts.entries += entries;
    this.counts.blocked += blockedEntries;
  }

  /** The counts: kept by this store's writes; counted each time when read-only (another process writes). */
  private currentCounts(): { entries: number; blocked: number } {
    const counted = (): { entries: number; blocked: number } =>
      (this.countStmt?.get() as { entries: number; blocked: number } | undefined) ?? { entries: 0, blocked: 0 };
    return this.db.readonly ? counted() : (this.counts ??= counted());
  }

  /** Every entry, ordered by name, address, port and then the rest of the key. */
  *entries(): Generator<Entry> {
    if (this.iterateStmt === undefined) return;
    for (const row of this.iterateStmt.iterate() as IterableIterator<Row>) yield entryOf(row);
  }

  /** The earliest `last + duration` from `after` on (default: any), undefined when none. */
  nextExpiry(after = -(2 ** 53)): number | undefined {
    return (this.nextExpiryStmt?.get(after) as number | null | undefined) ?? undefined;
  }

  /** Entries whose time is up at `now`: `last + duration < now`, soonest first, at most `limit`. */
  due(now: number, limit = Number.MAX_SAFE_INTEGER): Entry[] {
    return ((this.dueStmt?.all(now, limit) ?? []) as Row[]).map(entryOf);
  }

  /** The distinct rule names of the entries. */
  names(): string[] {
    return (this.namesStmt?.all() ?? []) as string[];
  }

  /** Entries with a filter rule, or at their limit (an add that may or may not have happened). */
  blocked(): Entry[] {
    return ((this.blockedStmt?.all() ?? []) as Row[]).map(entryOf);
  }

  /** Forever entries reset by AUTH_OK that still have a filter rule to remove (G15). */
  lifted(): Entry[] {
    return ((this.liftedStmt?.all() ?? []) as Row[]).map(entryOf);
  }

  /** How many entries there are: a kept count, no scan (but the first). */
  size(): number {
    return this.currentCounts().entries;
  }

  /** How many entries blocked() would return: a kept count, no scan (but the first). */
  blockedCount(): number {
    return this.currentCounts().blocked;
  }

  /**
   * Deletes up to `n` entries that are not blocked, those that would expire
   * soonest first, those that never expire last, passing over those `keep`
   * holds back (at most `held` of them); returns how many went.
   */
  evict(n: number, keep: (key: EffectiveRule) => boolean, held: number): number {
    const deleteRow = this.statement(this.deleteRowStmt);
    let evicted = 0;
    // soonest expiry first (for rules of one duration: least recently counted), then the entries that never expire, oldest first
    for (const candidates of [this.expiringStmt!, this.foreverStmt!]) {
      for (const row of candidates.all(n - evicted + held) as (Row & { rowid: number })[]) {
        if (evicted === n) break;
        const { key } = entryOf(row);
        if (keep(key)) continue;
        evicted += deleteRow.run(row.rowid).changes;
        this.cache!.delete(key);
      }
    }
    this.kept(-evicted, 0);
    return evicted;
  }

  /** Up to `limit` entries after rowid `after` (0: from the first), in rowid order: a table read a piece at a time. */
  page(after: number, limit: number): StoredEntry[] {
    return ((this.pageStmt?.all(after, limit) ?? []) as (Row & { rowid: number })[]).map((r) => {
      const e = { ...entryOf(r), rowid: r.rowid, wasBlocked: false };
      e.wasBlocked = blocked(e);
      return e;
    });
  }

  /** Deletes entries of rule name `name`, at most `limit` of them (default: all); returns how many. */
  deleteName(name: string, limit = -1): number {
    const rows = this.statement(this.deleteNameStmt).all(name, limit) as { blocked: number }[];
    this.cache!.clear();
    this.kept(-rows.length, -rows.reduce((n, r) => n + r.blocked, 0));
    return rows.length;
  }

  /** Every entry's last failure moved by `seconds` (the wall clock stepped); how many. */
  shiftTimes(seconds: number): number {
    const shifted = this.statement(this.shiftStmt).run(seconds).changes;
    this.cache!.clear();
    return shifted;
  }

  /** Last failures after `now` set to `now`; how many.  Writes only when there are some. */
  limitTimes(now: number): number {
    const limit = this.statement(this.limitStmt);
    if (this.futureStmt!.get(now) === 0) return 0;
    const limited = limit.run(now, now).changes;
    this.cache!.clear();
    return limited;
  }

  truncate(): void {
    this.refuseReadOnly();
    this.db.exec('DELETE FROM entry');
    this.cache!.clear();
    this.counts = { entries: 0, blocked: 0 };
  }

  /**
   * Runs `fn` in one transaction: one commit for many writes; a throw rolls the kept counts back with the writes, and
   * empties the cache (rows cached may be those rolled back).
   */
  transaction<T>(fn: () => T): T {
    const before = this.counts && { ...this.counts };
    try {
      return this.db.transaction(fn)();
    } catch (e) {
      this.counts = before;
      this.cache?.clear();
      throw e;
    }
  }

  /** The connection, for the tables of the fleet (fleet/state.ts): one database, one writer, its transactions shared. */
  get database(): Database.Database {
    return this.db;
  }

  /** `PRAGMA integrity_check`: 'ok' or what is wrong. */
  integrityCheck(): string {
    return String(this.db.pragma('integrity_check', { simple: true }));
  }

  close(): void {
    this.db.close();
  }

  // --- a restore of every block (engine.ts refresh) ---

  private blockedRowsStmt: Database.Statement | undefined;
  private restoreOthersStmt: Database.Statement | undefined;
  private restoredIdStmt: Database.Statement | undefined;

  /**
   * blocked(), each entry with its rowid for setRestoredId, read as row arrays: 100,000 blocks in about three fifths of
   * blocked()'s time (helper benchmark's restore).
   */
  blockedStored(): StoredEntry[] {
    if (this.getStmt === undefined) return [];
    this.blockedRowsStmt ??= this.db
      .prepare(`SELECT rowid, ${COLUMNS}, count, last, id, hold, block FROM entry WHERE ${BLOCKED}`)
      .raw(true);
    return storedEntries(this.blockedRowsStmt);
  }

  /**
   * The blocked entries a restore of rule `names` (restoreBegin) leaves out: of other names, and blocks of every protocol
   * or port, which are no line of a batch; not those reset by AUTH_OK (`last` 0), which no restore adds.
   */
  restoreOthers(names: readonly string[]): StoredEntry[] {
    this.restoreOthersStmt ??= this.db
      .prepare(
        `SELECT rowid, ${COLUMNS}, count, last, id, hold, block FROM entry WHERE (${BLOCKED}) AND last != 0 ` +
          `AND (proto = ${ANY} OR port = ${ANY} OR name NOT IN (SELECT value FROM json_each(?)))`,
      )
      .raw(true);
    return storedEntries(this.restoreOthersStmt, JSON.stringify(names));
  }

  /**
   * A restored block's new rule id (not empty), written in place of the id alone when its entry is still the one read
   * (blockedStored), blocked and not reset by AUTH_OK (`last` 0); whether it was.  The entry stays blocked: the kept
   * counts do not change.
   */
  setRestoredId(e: StoredEntry, id: string): boolean {
    this.refuseReadOnly();
    this.restoredIdStmt ??= this.db.prepare(`UPDATE entry SET id = ? WHERE rowid = ? AND ${KEY_MATCH} AND last != 0 AND (${BLOCKED})`);
    if (this.restoredIdStmt.run(id, e.rowid, ...keyValues(e.key)).changes === 0) return false;
    // the cache stays coherent (see `cache`): a row cached since it was read gets its id too
    const cached = this.cache?.get(e.key);
    if (cached !== undefined) cached.id = id;
    return true;
  }

  // --- a restore as one (engine.ts refresh): its entries in a temporary table, written by SQL, not read into JS ---

  /** The statements of the temporary tables, made with them by the first restoreBegin. */
  private restore: RestoreStatements | undefined;

  /**
   * Begins a restore of the entries of rule `names` that are blocked (BLOCKED), not reset by AUTH_OK (`last` 0) and
   * can be a line of a batch (a protocol and a port): their key, rowid, count, last failure and id are copied to the
   * temporary table `restoring`, in the order of its key; how many.  The table is the restore's until restoreSettled.
   */
  restoreBegin(names: readonly string[]): number {
    this.refuseReadOnly();
    this.restore ??= this.restoreStatements();
    this.restore.clear.run();
    return this.restore.begin.run(JSON.stringify(names)).changes;
  }

  /** `key` is not one of the restore's (its add or rem runs on its own): out of the table; whether it was in. */
  restoreExclude(key: EffectiveRule): boolean {
    return this.restoreEnd(key) !== undefined;
  }

  /**
   * The restore's lines of a batch (run/helper.ts batch: `add name proto address mask port id`, each ending in a
   * newline), in the table's order: a table is scanned in the order of its rowid, as restoreEntries reads it.
   */
  restoreLines(): string {
    const text = this.restore?.lines.get() as string | null | undefined;
    return text === null || text === undefined ? '' : `${text}\n`;
  }

  /**
   * The count and last failure of `key` as the restore read them; undefined when it is not one of the restore's (or its
   * entry is gone meanwhile: restoreChanged then finds it).
   */
  restoring(key: EffectiveRule): { count: number; last: number } | undefined {
    return this.restore?.pending.get(keyParameters(key)) as { count: number; last: number } | undefined;
  }

  /** `key`'s add is over: out of the restore, with its count and last failure as read; undefined when it was not one of them. */
  restoreEnd(key: EffectiveRule): { count: number; last: number } | undefined {
    return (this.restore?.end.all(keyParameters(key)) as { count: number; last: number }[] | undefined)?.[0];
  }

  /** The wall clock stepped: the restore's times move with the entries' (shiftTimes). */
  restoreShift(seconds: number): void {
    this.restore?.shift.run(seconds);
  }

  /** The restore's entries as read, in the order of restoreLines, each with its rowid. */
  restoreEntries(): StoredEntry[] {
    return ((this.restore?.entries.all() ?? []) as (Row & { rowid: number })[]).map((r) => ({
      ...entryOf(r),
      rowid: r.rowid,
      wasBlocked: true,
    }));
  }

  /**
   * The restore's entries whose entry changed since the restore read it, taken out of it: gone (or deleted and its rowid
   * reused by another), no longer blocked, or reset by AUTH_OK; restoreSettled would not write them.
   */
  restoreChanged(): StoredEntry[] {
    return ((this.restore?.changed.all() ?? []) as (Row & { rowid: number })[]).map((r) => ({
      ...entryOf(r),
      rowid: r.rowid,
      wasBlocked: true,
    }));
  }

  /**
   * Every entry of the restore got rule id `id` (not empty): written in place of its id in one statement, where the
   * entry is still the one read (its rowid and key), blocked and not reset (as setRestoredId; restoreChanged lists the
   * others), and its id is not `id` already (a second restore through a back end that answers OK writes nothing); how
   * many were written.  The entries stay blocked: the kept counts do not change; the cache is emptied (a write of many
   * rows, see `cache`).
   */
  restoreWrite(id: string): number {
    this.refuseReadOnly();
    const written = this.restore!.settle.run(id, id).changes;
    if (written > 0) this.cache!.clear();
    return written;
  }

  /**
   * The restore is over, its ids written (restoreWrite) and its changed entries taken out (restoreChanged): each of its
   * entries keeps the last failure read as the start of its block, unless one is known (restoredSince).  Returns how
   * many blocks it restored of each rule name.
   */
  restoreSettled(): Map<string, number> {
    this.refuseReadOnly();
    const statements = this.restore!;
    const perName = new Map<string, number>();
    for (const [name, n] of statements.perName.raw(true).all() as [string, number][]) perName.set(name, n);
    if (statements.sinceEmpty.get() === 1) {
      // the first restore's rows are the starts: its table renamed, not copied (40 ms at 100,000); the statements of
      // either table are prepared again by SQLite, from their text, as after any change of the schema
      this.db.exec(`DROP TABLE temp.restored_since; ALTER TABLE temp.restoring RENAME TO restored_since; ${restoreTable('restoring')}`);
    } else {
      statements.since.run();
      statements.clear.run();
    }
    return perName;
  }

  /** The restore is over without a write (its batch was cancelled at shutdown). */
  restoreDropped(): void {
    this.restore?.clear.run();
  }

  /** When the block of `key` began as a restore knew it (its last failure then), undefined when none did. */
  restoredSince(key: EffectiveRule): number | undefined {
    return (this.restore?.sinceGet.get(keyParameters(key)) as number | undefined) ?? undefined;
  }

  /** The block of `key` is over (or another began): its start from a restore is forgotten. */
  forgetRestoredSince(key: EffectiveRule): void {
    this.restore?.sinceForget.run(keyParameters(key));
  }

  /** Rule `name` was flushed: the starts of its blocks from a restore are forgotten. */
  forgetRestoredSinceName(name: string): void {
    this.restore?.sinceForgetName.run(name);
  }

  private restoreStatements(): RestoreStatements {
    this.db.exec(`${restoreTable('restoring')} ${restoreTable('restored_since')}`);
    const sameKey = (a: string, b: string): string => KEY_COLUMNS.map((c) => `${a}.${c} = ${b}.${c}`).join(' AND ');
    const blockedIn = (t: string): string => `(${t}.id != '' OR (${t}.nfail >= 0 AND ${t}.count >= ${t}.nfail))`;
    // the row of `key` (named parameters: keyParameters) in table t: its entry's rowid, and its key (a rowid may be reused)
    const keyParameters = KEY_COLUMNS.map((c) => `${c} = @${c}`).join(' AND ');
    const rowOf = (t: string): string => `${t}.rowid_ = (SELECT rowid FROM entry WHERE ${keyParameters}) AND ${keyParameters}`;
    // still the entry read: its rowid, its key (a rowid may be reused by an entry inserted meanwhile), blocked, not reset
    const unchanged = `entry.rowid = r.rowid_ AND ${sameKey('entry', 'r')} AND entry.last != 0 AND ${blockedIn('entry')}`;
    // run/helper.ts batch's line of an add, conf/format.ts protocolName's protocol
    const line = "'add ' || name || ' ' || iif(proto = 17, 'udp', 'tcp') || ' ' || address || ' ' || lmask || ' ' || port || ' ' || id";
    const read = `${COLUMNS}, rowid_ AS rowid, count, last, id, hold, block`;
    return {
      clear: this.db.prepare('DELETE FROM temp.restoring'),
      begin: this.db.prepare(
        `INSERT INTO temp.restoring SELECT rowid, ${COLUMNS}, count, last, id, hold, block FROM entry ` +
          `WHERE (${BLOCKED}) AND last != 0 AND proto != ${ANY} AND port != ${ANY} AND name IN (SELECT value FROM json_each(?)) ` +
          'ORDER BY rowid',
      ),
      lines: this.db.prepare(`SELECT group_concat(${line}, char(10)) FROM temp.restoring`).pluck(),
      pending: this.db.prepare(`SELECT count, last FROM temp.restoring r WHERE ${rowOf('r')}`),
      end: this.db.prepare(`DELETE FROM temp.restoring AS r WHERE ${rowOf('r')} RETURNING count, last`),
      shift: this.db.prepare('UPDATE temp.restoring SET last = last + ? WHERE last != 0'),
      entries: this.db.prepare(`SELECT ${read} FROM temp.restoring ORDER BY rowid_`),
      changed: this.db.prepare(
        `DELETE FROM temp.restoring AS r WHERE NOT EXISTS (SELECT 1 FROM entry WHERE ${unchanged}) RETURNING ${read}`,
      ),
      perName: this.db.prepare('SELECT name, count(*) FROM temp.restoring GROUP BY name'),
      settle: this.db.prepare(`UPDATE entry SET id = ? FROM temp.restoring r WHERE ${unchanged} AND entry.id != ?`),
      since: this.db.prepare('INSERT OR IGNORE INTO temp.restored_since SELECT * FROM temp.restoring'),
      sinceEmpty: this.db.prepare('SELECT NOT EXISTS (SELECT 1 FROM temp.restored_since)').pluck(),
      sinceGet: this.db.prepare(`SELECT last FROM temp.restored_since s WHERE ${rowOf('s')}`).pluck(),
      sinceForget: this.db.prepare(`DELETE FROM temp.restored_since AS s WHERE ${rowOf('s')}`),
      sinceForgetName: this.db.prepare('DELETE FROM temp.restored_since WHERE name = ?'),
    };
  }

  // --- blocklistctl dump of the file (ctl/dump.ts) ---

  /**
   * The entries of `selection` in entries()'s order, each as one string made by SQLite: a row of fifteen values made an
   * object of each cost blocklistctl dump -a of 100,000 entries most of its time.  A row is
   * `<seconds> <last> <block> <name>\t<address>/<mask>:<port>\t<id>\t<count>/<nfail>\t`, the table's line up to its time
   * column, the address right-aligned in `width` columns (never cut): seconds the block's length (blockSeconds; -1 for
   * ever), a mask, port or nfail of any `*`, block `-` when none.  The columns laid out here, not in JavaScript, made
   * that dump 0.08 s faster (of 0.31 s in-process).
   */
  dumpRows(selection: DumpSelection, width: number): Iterable<string> {
    if (this.iterateStmt === undefined) return [];
    const star = (c: string): string => `iif(${c} = -1, '*', ${c})`;
    // one concat(), not a chain of ||, each of which makes a new string: 4 ms less of the query's 110 (100,000 entries)
    const row = `concat(${[
      "iif(duration = -1 OR hold < 0, -1, duration + hold), ' ', last, ' ', iif(block = 0, '-', block), ' ', name",
      `printf('%*s', ?, address), '/', ${star('lmask')}, ':', ${star('port')}`,
      'id',
      `count, '/', ${star('nfail')}`,
      "''",
    ].join(', char(9), ')})`;
    // the statement's own iterator, not a generator around it: a generator's step for each row cost dump -a of 100,000
    // entries 10 ms of its 290 ms of CPU (its code runs once: not optimised)
    return this.db
      .prepare(`SELECT ${row} FROM entry WHERE ${DUMP_WHERE[selection]} ORDER BY ${DUMP_ORDER}`)
      .pluck()
      .iterate(width) as Iterable<string>;
  }
}

/**
 * A temporary table of a restore's entries (restoreBegin), `restoring` or `restored_since`, the two alike: the entry's
 * rowid, key, count, last failure, id, hold and block.  By the rowid: rows appended in order, a fifth of the time of a
 * table keyed by the entry's key.
 */
function restoreTable(name: string): string {
  const keyColumns = KEY_COLUMNS.map((c) => `${c} ${c === 'name' || c === 'address' ? 'TEXT' : 'INTEGER'} NOT NULL`).join(', ');
  return (
    `CREATE TEMP TABLE IF NOT EXISTS ${name} (rowid_ INTEGER PRIMARY KEY, ${keyColumns}, count INTEGER NOT NULL, ` +
    'last INTEGER NOT NULL, id TEXT NOT NULL, hold INTEGER NOT NULL, block INTEGER NOT NULL);'
  );
}

/** The statements of a restore's temporary tables (restoreBegin). */
interface RestoreStatements {
  clear: Database.Statement;
  begin: Database.Statement;
  lines: Database.Statement;
  pending: Database.Statement;
  end: Database.Statement;
  shift: Database.Statement;
  entries: Database.Statement;
  changed: Database.Statement;
  perName: Database.Statement;
  settle: Database.Statement;
  since: Database.Statement;
  sinceEmpty: Database.Statement;
  sinceGet: Database.Statement;
  sinceForget: Database.Statement;
  sinceForgetName: Database.Statement;
}

/** dumpRows' selections, as the SQL of dumpSelected (entry.ts). */
const DUMP_WHERE: Record<DumpSelection, string> = { all: '1', blocked: 'nfail != -1 AND count >= nfail', counting: 'count < nfail' };

/**
 * dumpRows' order: entries()'s (`ORDER BY ${COLUMNS}`), the name and the address as one first key.  SQLite's sorter
 * decides a comparison by its first key alone (a memcmp) unless the two are equal, and then unpacks both records whole:
 * with the name first, the same for most entries, every comparison was unpacked.  The name goes into the key as its hex
 * (the same order as its bytes), ended by a space, below every hex digit: a name sorts before a longer one it begins,
 * as in SQLite's order, also when the longer one goes on with a NUL (`name || char(0)` would not keep that, and replace()
 * takes no NUL pattern).  The query of dump -a of 100,000 entries: 125 → 111 ms of CPU (the key without hex: 103).
 */
const DUMP_ORDER = `hex(name) || ' ' || address, ${KEY_COLUMNS.slice(2).join(', ')}`;

/** The entries of a statement reading StoredRows (blockedStored), each with its rowid, blocked as read. */
function storedEntries(statement: Database.Statement, ...parameters: unknown[]): StoredEntry[] {
  const entries: StoredEntry[] = [];
  // iterated: each row array is garbage at once, not 100,000 of them kept until the last is read (less to collect)
  for (const row of statement.iterate(...parameters) as IterableIterator<StoredRow>) {
    const [rowid, name, address, port, family, lmask, proto, uid, nfail, rmask, duration, count, last, id, hold, block] = row;
    const e: Entry & { rowid: number; wasBlocked: boolean } = {
      key: { family, address, lmask, port, proto, uid, name, rmask, nfail, duration },
      count,
      last,
      id,
      rowid,
      wasBlocked: true,
    };
    if (block !== 0) e.block = block;
    if (hold !== 0) e.hold = hold;
    entries.push(e);
  }
  return entries;
}

/** blockedStored's row: rowid, the key columns in COLUMNS' order, count, last, id, hold, block. */
type StoredRow = [
  number,
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
  number,
  number,
];
