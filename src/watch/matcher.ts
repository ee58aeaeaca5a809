// What a log line or a journal entry means (issue 14): pure functions from
// text to a report, used by blocklistd-watch and its `test` command.
import { parseIPAddress } from '../address.js';
import type { ReportType } from '../protocol/control.js';
import type { Pattern, PatternRule } from './patterns.js';

export interface LineMatch {
  type: ReportType;
  /** The client address as the line gave it (numeric). */
  address: string;
  user?: string;
  rule: PatternRule;
}

/**
 * The first rule of the pattern matching the message; a match whose `addr`
 * is not a numeric address (a host name logged with UseDNS) counts nothing.
 */
function matchMessage(pattern: Pattern, message: string): LineMatch | undefined {
  for (const rule of pattern.rules) {
    const m = rule.regex.exec(message);
    if (m === null) continue;
    const address = m.groups?.addr;
    if (address === undefined || parseIPAddress(address) === undefined) continue;
    const user = m.groups?.user;
    return user === undefined ? { type: rule.type, address, rule } : { type: rule.type, address, user, rule };
  }
  return undefined;
}

export interface SyslogLine {
  program: string;
  message: string;
}

/**
 * The header of a syslog file line, as rsyslog and syslog-ng write it:
 * `Dec  4 14:00:00 host sshd[123]: text` or the RFC 3339 form
 * `2026-12-04T14:00:00.123456+00:00 host sshd[123]: text`.
 */
const SYSLOG_STAMP = String.raw`(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d))`;
const SYSLOG = new RegExp(String.raw`^${SYSLOG_STAMP} [^\s:]+ ([^\s[:]+)(?:\[\d+\])?: ?`);

export function parseSyslog(line: string): SyslogLine | undefined {
  const m = SYSLOG.exec(line);
  return m === null ? undefined : { program: m[1], message: line.slice(m[0].length) };
}

/** A file line: `other` when its syslog header names another program. */
export type FileLineResult = { match: LineMatch | undefined; message: string } | 'other';

/**
 * A line of a file: of a syslog file when it has a syslog header (its
 * program must be one of the pattern's), else of the service's own log
 * (the whole line is the message).
 */
export function matchFileLine(pattern: Pattern, line: string): FileLineResult {
  line = line.endsWith('\r') ? line.slice(0, -1) : line;
  const header = parseSyslog(line);
  if (header !== undefined && !pattern.programs.has(header.program)) return 'other';
  const message = header === undefined ? line : header.message;
  return { match: matchMessage(pattern, message), message };
}

/**
 * A journal entry as `journalctl -o json` prints it: a field is a string,
 * or an array of bytes when not UTF-8 text, or an array of those when repeated.
 */
export type JournalEntry = Record<string, unknown>;

/** A field's text; bytes decoded as UTF-8 (invalid sequences replaced); undefined when absent or repeated. */
function journalField(entry: JournalEntry, field: string): string | undefined {
  const v = entry[field];
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((b) => typeof b === 'number')) return Buffer.from(v as number[]).toString('utf8');
  return undefined;
}

/** Whether the entry is the service's by the pattern's trusted-field matches. */
function isServiceEntry(pattern: Pattern, entry: JournalEntry): boolean {
  return pattern.journal.some((match) => Object.entries(match).every(([field, value]) => journalField(entry, field) === value));
}

/** A journal entry: undefined when it is not the service's. */
export function matchJournalEntry(pattern: Pattern, entry: JournalEntry): { match: LineMatch | undefined; message: string } | undefined {
  if (!isServiceEntry(pattern, entry)) return undefined;
  const message = journalField(entry, 'MESSAGE') ?? '';
  return { match: matchMessage(pattern, message), message };
}
