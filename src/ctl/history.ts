// blocklistctl history (doc/escalation.md §5): the blocks each address had
// under a rule name, read from the database file, with the forgiveness of
// the configuration's [escalate] policies applied.
import { loadConfig } from '../conf/load.js';
import { parseIP } from '../conf/ip.js';
import { systemEnv } from '../conf/system.js';
import { forgivenCount, historyAddresses, PERMANENT, type EscalationPolicy, type History } from '../escalate/policy.js';
import { StateError, StateStore } from '../state/store.js';
import { localTime } from '../time.js';
import type { Output } from './conf.js';
import { envelope } from './json.js';
import type { ErrorCode } from '../protocol/control.js';

export interface HistoryOptions {
  db: string;
  config: string;
  ruleName: string;
  name?: string;
  json?: boolean;
}

/** A database file opened read-only, or the message why it cannot be. */
export function readStore(path: string): StateStore | string {
  try {
    return StateStore.open(path, { readonly: true });
  } catch (e) {
    return e instanceof StateError ? e.message : String(e);
  }
}

/** A history as JSON: the stored count, the count forgiveness leaves now, times as epoch seconds and ISO-8601. */
function historyJson(h: History, now: number, p: EscalationPolicy | undefined): Record<string, unknown> {
  return {
    ...h,
    until: h.until === PERMANENT ? null : h.until,
    permanent: h.until === PERMANENT,
    lastTime: new Date(h.last * 1000).toISOString(),
    untilTime: h.until === PERMANENT ? null : new Date(h.until * 1000).toISOString(),
    forgiven: forgivenCount(h, now, p?.forget),
  };
}

/** `blocklistctl history [address]`: exit 0, 1 when the database cannot be read or the address has none. */
export function historyCommand(address: string | undefined, o: HistoryOptions, io: Output, now = Math.floor(Date.now() / 1000)): number {
  const fail = (code: ErrorCode, message: string): number => {
    if (o.json === true) io.out(envelope('history', { error: { code, message } }));
    else io.err(`blocklistctl: ${message}\n`);
    return 1;
  };
  const ip = address === undefined ? undefined : parseIP(address);
  if (address !== undefined && ip === undefined) return fail('bad_argument', `bad address '${address}'`);
  const store = readStore(o.db);
  if (typeof store === 'string') return fail('database_error', store);
  let rows: History[];
  try {
    // the address's own history, and those of the networks around it (rules with a /mask)
    rows = ip === undefined ? store.histories(undefined, o.name) : historyAddresses(ip).flatMap((a) => store.histories(a, o.name));
  } finally {
    store.close();
  }
  // the configuration's forgiveness; none there (or no configuration): the counts as stored
  const policies = loadConfig(o.config, systemEnv(o.ruleName)).escalation;
  if (o.json === true) {
    io.out(envelope('history', { result: { histories: rows.map((h) => historyJson(h, now, policies.get(h.name))) } }));
    return 0;
  }
  if (rows.length === 0) {
    if (address !== undefined) return fail('not_found', `no history for ${address}`);
    return 0;
  }
  io.out('rulename\taddress\tblocks\tnow\tlast block\tended\n');
  for (const h of rows) {
    const ended = h.until === PERMANENT ? 'permanent' : localTime(h.until);
    io.out(`${h.name}\t${h.address}\t${h.count}\t${forgivenCount(h, now, policies.get(h.name)?.forget)}\t${localTime(h.last)}\t${ended}\n`);
  }
  return 0;
}
