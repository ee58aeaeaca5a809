// Pattern files of blocklistd-watch (issue 14): one per service, read into
// what the matcher needs.  Pure: the text in, the pattern and its
// diagnostics (file:line) out; a faulty line is skipped, the rest load.
//
//   # comment
//   port      ssh                     the local port reported (name or number)
//   proto     tcp                     tcp (default) or udp
//   program   sshd sshd-session       syslog identifiers of the service (file sources)
//   journal   _SYSTEMD_UNIT=ssh.service   journal entries of the service: trusted
//   journal   _EXE=/usr/sbin/sshd         fields, all of a line must hold, any line
//   fail      REGEX                   a line meaning a failed authentication (+2)
//   baduser   REGEX                   an unknown user (+1)
//   abuse     REGEX                   abuse: block now
//   ok        REGEX                   a successful login: the count is reset
//   suspect   REGEX                   what `test` shows as a failure matched by nothing
//
// A REGEX is a JavaScript regular expression with the named group `addr`
// (the client address) and optionally `user`; the rules are tried in file
// order on the message, the first that matches wins.
import type { ReportType } from '../protocol/control.js';

export interface PatternRule {
  type: ReportType;
  regex: RegExp;
  /** Where it was written: file:line. */
  where: string;
}

export interface Pattern {
  name: string;
  file: string;
  port: string;
  proto: 'tcp' | 'udp';
  /** Syslog identifiers (program names) of the service; empty: lines without a syslog header only. */
  programs: ReadonlySet<string>;
  /** Journal matches: each a set of FIELD=value that must all hold; an entry is the service's when one holds. */
  journal: readonly Readonly<Record<string, string>>[];
  rules: readonly PatternRule[];
  suspect: RegExp;
}

/** A line that looks like a failure, for `test`'s list of what the rules missed. */
const DEFAULT_SUSPECT =
  /fail|invalid|illegal|denied|refused|not allowed|bad |unknown user|no such user|authenticat|mismatch|too many|maximum|closed by|preauth/i;

const TYPES: readonly string[] = ['fail', 'baduser', 'abuse', 'ok'];

/** Journal fields a pattern may select by: those journald sets itself, that a client cannot forge. */
const TRUSTED_FIELDS = ['_SYSTEMD_UNIT', '_COMM', '_EXE', '_PID', '_UID', '_TRANSPORT', '_CMDLINE', '_SYSTEMD_SLICE'] as const;

export interface ParsedPattern {
  /** Undefined when the file cannot be used (no port, no rule). */
  pattern: Pattern | undefined;
  diagnostics: string[];
}

export function parsePattern(name: string, file: string, text: string): ParsedPattern {
  const diagnostics: string[] = [];
  let port: string | undefined;
  let proto: 'tcp' | 'udp' = 'tcp';
  const programs = new Set<string>();
  const journal: Record<string, string>[] = [];
  const rules: PatternRule[] = [];
  let suspect = DEFAULT_SUSPECT;
  const lines = text.split('\n');
  for (const [i, raw] of lines.entries()) {
    const where = `${file}:${i + 1}`;
    const line = raw.replace(/\r$/, '');
    if (/^\s*(#|$)/.test(line)) continue;
    const m = /^\s*(\S+)\s+(.*?)\s*$/.exec(line);
    if (m === null) {
      diagnostics.push(`${where}: '${line.trim()}' has no value`);
      continue;
    }
    const [, key, value] = m;
    const complain = (message: string): void => void diagnostics.push(`${where}: ${message}`);
    if (key === 'port') {
      if (!/^[A-Za-z0-9][\w.-]*$/.test(value)) complain(`bad port '${value}'`);
      else port = value;
    } else if (key === 'proto') {
      if (value !== 'tcp' && value !== 'udp') complain(`bad proto '${value}': tcp or udp`);
      else proto = value;
    } else if (key === 'program') {
      for (const p of value.split(/\s+/)) programs.add(p);
    } else if (key === 'journal') {
      const match: Record<string, string> = {};
      let ok = true;
      for (const term of value.split(/\s+/)) {
        const eq = term.indexOf('=');
        const field = term.slice(0, eq);
        if (eq <= 0 || eq === term.length - 1) {
          complain(`bad journal match '${term}': FIELD=value`);
          ok = false;
        } else if (!(TRUSTED_FIELDS as readonly string[]).includes(field)) {
          complain(`journal field '${field}' can be forged by a client: use one of ${TRUSTED_FIELDS.join(', ')}`);
          ok = false;
        } else match[field] = term.slice(eq + 1);
      }
      if (ok) journal.push(match);
    } else if (TYPES.includes(key) || key === 'suspect') {
      let regex: RegExp;
      try {
        regex = new RegExp(value);
      } catch (e) {
        complain(`bad regular expression: ${(e as Error).message}`);
        continue;
      }
      if (key === 'suspect') {
        suspect = regex;
        continue;
      }
      if (!/\(\?<addr>/.test(value)) {
        complain(`the regular expression has no (?<addr>...) group`);
        continue;
      }
      rules.push({ type: key as ReportType, regex, where });
    } else complain(`unknown keyword '${key}': port, proto, program, journal, fail, baduser, abuse, ok or suspect`);
  }
  const missing = port === undefined ? 'no port' : rules.length === 0 ? 'no rule (fail, baduser, abuse or ok)' : undefined;
  if (missing !== undefined) {
    diagnostics.push(`${file}: ${missing}: pattern '${name}' not loaded`);
    return { pattern: undefined, diagnostics };
  }
  return { pattern: { name, file, port: port!, proto, programs, journal, rules, suspect }, diagnostics };
}
