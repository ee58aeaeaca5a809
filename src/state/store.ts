// The state database (state-and-ctl.md §1) in SQLite: one row per entry,
// keyed by the effective rule in typed columns, with an index on the
// expiry time so that the daemon finds the next expiry without a scan.
// WAL journal: blocklistctl reads while the daemon writes, a committed
// transaction survives a crash of the process, and a crash never leaves a
// file that does not open.
import { closeSync, existsSync, mkdirSync, openSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { EffectiveRule, Entry } from '../types.js';

export const DEFAULT_DB_PATH = '/var/db/blocklistd.db';

/** `PRAGMA application_id`: marks the file as ours ("blkd"). */
export const APPLICATION_ID = 0x626c6b64;

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
];
export const SCHEMA_VERSION = MIGRATIONS.length;

/** The database cannot be used; the message says why and what to do. */
export class StateError extends Error {
  constructor(
    message: string,
    /** The file is not a usable blocklistd database (corrupt, foreign, too new). */
    readonly invalid = false,
  ) {
    super(message);
    this.name = 'StateError';
  }
}

const KEY_COLUMNS = ['name', 'address', 'port', 'family', 'lmask', 'proto', 'uid', 'nfail', 'rmask', 'duration'] as const;
const KEY_MATCH = KEY_COLUMNS.map((c) => `${c} = ?`).join(' AND ');
const COLUMNS = KEY_COLUMNS.join(', ');

/** An entry as read from the database: `put` updates it in place. */
export interface StoredEntry extends Entry {
  readonly rowid: number;
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
}

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
  };
}

export interface OpenOptions {
  /** Read-only, for blocklistctl: never creates, migrates or writes. */
  readonly?: boolean;
  /** Move an unusable file aside (`<path>.invalid-<time>`) and start empty, instead of failing. */
  renameInvalid?: boolean;
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class StateStore {
  private readonly db: Database.Database;
  private readonly getStmt: Database.Statement;
  private readonly insertStmt: Database.Statement;
  private readonly updateStmt: Database.Statement;
  private readonly deleteStmt: Database.Statement;
  private readonly iterateStmt: Database.Statement;
  private readonly nextExpiryStmt: Database.Statement;
  private readonly dueStmt: Database.Statement;
  private readonly countStmt: Database.Statement;

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
    if (options.readonly) {
      try {
        this.db = new Database(path, { readonly: true, fileMustExist: true, timeout: 5000 });
      } catch (e) {
        throw new StateError(`Can't open '${path}': ${describe(e)}`);
      }
    } else {
      try {
        mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
        // created here so that its mode is 0600; SQLite gives -wal and -shm the same
        if (!existsSync(path)) closeSync(openSync(path, 'wx', 0o600));
        this.db = new Database(path, { timeout: 5000 });
      } catch (e) {
        throw new StateError(`Can't open '${path}': ${describe(e)}`);
      }
    }
    try {
      this.prepareSchema(options.readonly === true);
    } catch (e) {
      this.db.close();
      if (e instanceof StateError) throw e;
      throw new StateError(`'${path}' is not a blocklistd database (${describe(e)}); move it aside or restart with the option to rename it`, true);
    }
    this.getStmt = this.db.prepare(`SELECT rowid, count, last, id FROM entry WHERE ${KEY_MATCH}`);
    this.insertStmt = this.db.prepare(
      `INSERT INTO entry (${COLUMNS}, count, last, id) VALUES (${KEY_COLUMNS.map(() => '?').join(', ')}, ?, ?, ?)
       ON CONFLICT DO UPDATE SET count = excluded.count, last = excluded.last, id = excluded.id`,
    );
    this.updateStmt = this.db.prepare('UPDATE entry SET count = ?, last = ?, id = ? WHERE rowid = ?');
    this.deleteStmt = this.db.prepare(`DELETE FROM entry WHERE ${KEY_MATCH}`);
    this.iterateStmt = this.db.prepare(`SELECT * FROM entry ORDER BY ${COLUMNS}`);
    this.nextExpiryStmt = this.db.prepare('SELECT min(last + duration) AS at FROM entry WHERE duration >= 0').pluck();
    this.dueStmt = this.db.prepare('SELECT * FROM entry WHERE duration >= 0 AND last + duration < ? ORDER BY last + duration');
    this.countStmt = this.db.prepare('SELECT count(*) FROM entry').pluck();
  }

  /** Checks that the file is ours and intact, and brings its schema up to date. */
  private prepareSchema(readonly: boolean): void {
    const applicationId = this.db.pragma('application_id', { simple: true }) as number;
    const version = this.db.pragma('user_version', { simple: true }) as number;
    const tables = this.db.prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'table'").pluck().get() as number;
    if (applicationId !== APPLICATION_ID && !(applicationId === 0 && version === 0 && tables === 0)) {
      throw new StateError(`'${this.path}' is not a blocklistd database (application id ${applicationId}); move it aside or restart with the option to rename it`, true);
    }
    if (version > SCHEMA_VERSION) {
      throw new StateError(`'${this.path}' was written by a newer blocklistd (schema ${version}, this one knows ${SCHEMA_VERSION})`, true);
    }
    if (readonly) {
      if (version === 0) throw new StateError(`'${this.path}' holds no blocklistd data yet`);
      if (version < SCHEMA_VERSION) throw new StateError(`'${this.path}' has an older schema (${version}); start blocklistd once to upgrade it`);
      return;
    }
    this.db.pragma('journal_mode = WAL');
    // a committed transaction is in the WAL when the process dies; fsync at checkpoints
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('cache_size = -65536');
    this.db.pragma('mmap_size = 268435456');
    const check = this.db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new StateError(`'${this.path}' is damaged (${String(check)}); move it aside or restart with the option to rename it`, true);
    for (let v = version; v < SCHEMA_VERSION; v++) {
      this.db.transaction(() => {
        if (v === 0) this.db.pragma(`application_id = ${APPLICATION_ID}`);
        this.db.exec(MIGRATIONS[v]);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  get(key: EffectiveRule): StoredEntry | undefined {
    const row = this.getStmt.get(...keyValues(key)) as { rowid: number; count: number; last: number; id: string } | undefined;
    return row && { key, count: row.count, last: row.last, id: row.id, rowid: row.rowid };
  }

  /** Writes an entry: in place when it came from `get`, else inserted or replacing its key's. */
  put(entry: Entry | StoredEntry): void {
    if ('rowid' in entry && this.updateStmt.run(entry.count, entry.last, entry.id, entry.rowid).changes > 0) return;
    this.insertStmt.run(...keyValues(entry.key), entry.count, entry.last, entry.id);
  }

  delete(key: EffectiveRule): boolean {
    return this.deleteStmt.run(...keyValues(key)).changes > 0;
  }

  /** Every entry, ordered by name, address, port and then the rest of the key. */
  *entries(): Generator<Entry> {
    for (const row of this.iterateStmt.iterate() as IterableIterator<Row>) yield entryOf(row);
  }

  /** When the next entry expires (`last + duration`), undefined when none will. */
  nextExpiry(): number | undefined {
    return (this.nextExpiryStmt.get() as number | null) ?? undefined;
  }

  /** Entries whose time is up at `now`: `last + duration < now`, soonest first. */
  due(now: number): Entry[] {
    return (this.dueStmt.all(now) as Row[]).map(entryOf);
  }

  size(): number {
    return this.countStmt.get() as number;
  }

  truncate(): void {
    this.db.exec('DELETE FROM entry');
  }

  /** Runs `fn` in one transaction: one commit for many writes. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /** `PRAGMA integrity_check`: 'ok' or what is wrong. */
  integrityCheck(): string {
    return String(this.db.pragma('integrity_check', { simple: true }));
  }

  close(): void {
    this.db.close();
  }
}
