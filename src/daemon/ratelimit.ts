// Per-sender limits (issue 13): the notification socket is world-writable,
// so a local user can flood it.  Each sender uid has a token bucket of
// `burst` notifications refilled at `rate` per second; a notification
// finding the bucket empty is dropped before any other work.  Trusted uids
// and gids (root always: it can forge any credentials anyway) pass
// unchecked.  Pure: the caller passes the time.

/**
 * The senders the daemon trusts (root, --trust-user, --trust-group): exempt
 * from the limit here, and allowed to name the peer of a TCP socket
 * (protocol/receive.ts).  One notion, decided here.
 */
export interface TrustedSenders {
  uids: ReadonlySet<number>;
  gids: ReadonlySet<number>;
}

export const isTrusted = (trusted: TrustedSenders, uid: number, gid: number): boolean => trusted.uids.has(uid) || trusted.gids.has(gid);

export interface SenderLimits {
  /** Notifications per second per uid; 0: no limit. */
  rate: number;
  /** Notifications a uid may send at once after a quiet spell. */
  burst: number;
  trusted: TrustedSenders;
}

/** Drops of one uid since its last report. */
export interface DropReport {
  uid: number;
  dropped: number;
  /** Milliseconds since the report before (0: the first of a flood). */
  since: number;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date (ms). */
  at: number;
  /** Dropped and not reported yet. */
  dropped: number;
  /** When the last report for this uid was made (ms); -Infinity when never. */
  reportedAt: number;
}

/** Buckets kept beyond this are pruned of the full ones (a full bucket is the same as none). */
const PRUNE_ABOVE = 4096;

export class SenderLimiter {
  private readonly buckets = new Map<number, Bucket>();
  private readonly perMs: number;

  constructor(
    private readonly limits: SenderLimits,
    /** Milliseconds between two log reports of the same uid. */
    private readonly reportEvery: number,
  ) {
    this.perMs = limits.rate / 1000;
  }

  get enabled(): boolean {
    return this.limits.rate > 0;
  }

  /** True when a notification from uid/gid at `now` (ms) may go on; false: drop it. */
  admit(uid: number, gid: number, now: number): boolean {
    if (isTrusted(this.limits.trusted, uid, gid)) return true;
    let b = this.buckets.get(uid);
    if (b === undefined) {
      if (this.buckets.size >= PRUNE_ABOVE) this.prune(now);
      b = { tokens: this.limits.burst, at: now, dropped: 0, reportedAt: -Infinity };
      this.buckets.set(uid, b);
    } else if (now > b.at) {
      b.tokens = Math.min(this.limits.burst, b.tokens + (now - b.at) * this.perMs);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return true;
    }
    b.dropped++;
    return false;
  }

  /**
   * The uids with drops not reported yet whose last report is at least
   * `reportEvery` ago: the first drop of a flood is reported at once, the
   * rest at most once per interval.
   */
  reports(now: number): DropReport[] {
    const out: DropReport[] = [];
    for (const [uid, b] of this.buckets) {
      if (b.dropped === 0 || now - b.reportedAt < this.reportEvery) continue;
      out.push({ uid, dropped: b.dropped, since: b.reportedAt === -Infinity ? 0 : now - b.reportedAt });
      b.dropped = 0;
      b.reportedAt = now;
    }
    return out;
  }

  /** Forgets the buckets that are full again and have nothing to report. */
  private prune(now: number): void {
    for (const [uid, b] of this.buckets) {
      const full = b.tokens + (now - b.at) * this.perMs >= this.limits.burst;
      if (full && b.dropped === 0 && now - b.reportedAt >= this.reportEvery) this.buckets.delete(uid);
    }
  }
}
