// One daemon per database (issue 15 §1): `<db>.lock` beside the database,
// locked with flock(2) and holding the holder's pid.  The kernel drops the
// lock with the holder's last descriptor, however the process ends: a lock
// is never stale, and the file left behind means nothing by itself.
import { closeSync, constants, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { errnoMessage, errnoText } from '../errno.js';
import { constants as native, tryLock } from '../protocol/native.js';

export const lockPathFor = (db: string): string => `${db}.lock`;

/** Another process holds the lock, or the lock file cannot be used. */
export class LockError extends Error {
  override readonly name = 'LockError';
}

/** The pid in a lock file, and the holder's command line when /proc tells it. */
function holder(path: string): string {
  let pid: string;
  try {
    pid = readFileSync(path, 'utf8').trim();
  } catch {
    return 'another process';
  }
  if (!/^\d+$/.test(pid)) return 'another process';
  let command = '';
  try {
    command = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((a) => a !== '')
      .join(' ');
  } catch {
    // not Linux, or gone meanwhile
  }
  return `pid ${pid}${command === '' ? '' : ` (${command})`}`;
}

export class DatabaseLock {
  private constructor(private fd: number | undefined) {}

  /**
   * Locks the database `db` for this process (its directory made as the
   * database's would be); throws LockError naming the holder when another
   * process has it.  The descriptor is close-on-exec: no helper inherits it.
   */
  static acquire(db: string): DatabaseLock {
    const path = lockPathFor(db);
    let fd: number;
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
      fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
    } catch (e) {
      throw new LockError(`Can't open the database lock '${path}': ${errnoText(e)}`);
    }
    const errno = tryLock(fd);
    if (errno !== 0) {
      closeSync(fd);
      if (errno === native.EAGAIN) throw new LockError(`database '${db}' is in use by ${holder(path)}: one daemon per database`);
      throw new LockError(`Can't lock '${path}': ${errnoMessage(errno)}`);
    }
    ftruncateSync(fd);
    writeSync(fd, `${process.pid}\n`, 0);
    return new DatabaseLock(fd);
  }

  /**
   * Who holds the lock of database `db` now: undefined when nobody does
   * (or there is no lock file).  Creates nothing: for --check.
   */
  static holderOf(db: string): string | undefined {
    const path = lockPathFor(db);
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY);
    } catch {
      return undefined;
    }
    try {
      return tryLock(fd) === native.EAGAIN ? holder(path) : undefined;
    } finally {
      closeSync(fd); // and with it a lock just taken
    }
  }

  release(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}
