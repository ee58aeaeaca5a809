// blocklistd.conf, one file's text to rules and diagnostics (config.md
// §2-§4, §8).  Pure: the system's services, users and interfaces come in
// through ConfEnv.  A bad line is reported with file:line and skipped; the
// rest of the file still loads.
import { nativeFamily } from '../address.js';
import { cutUtf8 } from '../text.js';
import { DURATION_UNITS } from '../time.js';
import { parseIP, widthOf } from './ip.js';
import {
  ANY,
  IPPROTO_TCP,
  IPPROTO_UDP,
  SAME,
  type AddressSelector,
  type ConfEnv,
  type Diagnostic,
  type Rule,
  type Section,
  type Source,
} from './types.js';

export const INT_MAX = 2147483647;
/** Upstream keeps rule names in a 128-byte buffer. */
export const NAME_MAX = 127;

export interface ParseResult {
  local: Rule[];
  remote: Rule[];
  /** The `[escalate]` and `[aggregate]` sections' lines, as fields: load.ts reads them (escalate/). */
  escalate: { source: Source; fields: string[] }[];
  aggregate: { source: Source; fields: string[] }[];
  diagnostics: Diagnostic[];
}

/** A line that cannot be loaded: the message says why. */
class LineError extends Error {
  override readonly name = 'LineError';
}

/** Physical lines joined into logical ones as fparseln(3) does (config.md §2). */
export function* logicalLines(text: string): Generator<{ line: number; text: string }> {
  const physical = text.split('\n');
  if (physical[physical.length - 1] === '') physical.pop();
  let next = 0;
  let lineno = 0;
  while (next < physical.length) {
    let logical: string | undefined;
    for (let more = true; more && next < physical.length;) {
      more = false;
      let s = physical[next++];
      lineno++;
      const comment = unescapedIndexOf(s, '#');
      if (comment >= 0) {
        s = s.slice(0, comment);
        // a whole-line comment before any text is skipped; within a continuation it ends the line
        more = s === '' && logical === undefined;
      }
      s = s.replace(/[ \t\r]+$/, ''); // CRLF files (G35), trailing blanks even after a continuation `\`
      if (s.endsWith('\\') && !escaped(s, s.length - 1)) {
        s = s.slice(0, -1);
        more = true;
      }
      if (s !== '') logical = (logical ?? '') + s;
    }
    yield { line: lineno, text: logical ?? '' };
  }
}

/** Whether the character at `i` follows an odd number of backslashes. */
function escaped(s: string, i: number): boolean {
  let n = 0;
  while (i - n - 1 >= 0 && s[i - n - 1] === '\\') n++;
  return n % 2 === 1;
}

function unescapedIndexOf(s: string, c: string): number {
  for (let i = s.indexOf(c); i >= 0; i = s.indexOf(c, i + 1)) if (!escaped(s, i)) return i;
  return -1;
}

const C_NUMBER = /^[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/;

/** The value of C number text (base 0: 0x hex, 0 octal, decimal), whatever its size. */
function cValue(text: string): number | undefined {
  if (!C_NUMBER.test(text)) return undefined;
  const negative = text[0] === '-';
  const digits = text[0] === '-' || text[0] === '+' ? text.slice(1) : text;
  let value: number;
  if (digits.length > 2 && (digits[1] === 'x' || digits[1] === 'X')) value = parseInt(digits.slice(2), 16);
  else if (digits.length > 1 && digits[0] === '0') value = parseInt(digits, 8);
  else value = parseInt(digits, 10);
  return negative ? -value : value;
}

/** strtoimax(text, base 0) over the whole text, within 0..INT_MAX (config.md §4.1 step 3). */
export function cNumber(text: string): number | undefined {
  const value = cValue(text);
  if (value === undefined || !(value >= 0 && value <= INT_MAX)) return undefined;
  return value === 0 ? 0 : value; // never -0
}

/** The number parse shared by the fields: `*`, `=` (remote only) or a C number. */
function getNumber(text: string, what: string, section: Section): number {
  if (text === '*') return ANY;
  if (text === '=') {
    if (section === 'remote') return SAME;
    throw new LineError(`\`=' for ${what} not allowed in local config`);
  }
  const value = cNumber(text);
  if (value === undefined) throw new LineError(`Bad number for ${what} [${text}]`);
  return value;
}

/** A port as a command line gives it: a service name, or a number as C reads it, up to 65535. */
export function servicePort(text: string, env: ConfEnv): number | undefined {
  const number = cNumber(text);
  return env.service(text) ?? (number !== undefined && number >= 0 && number <= 65535 ? number : undefined);
}

function getPort(text: string, section: Section, env: ConfEnv): number {
  const service = env.service(text);
  if (service !== undefined) return service;
  const port = getNumber(text, 'service', section);
  if (port > 65535) throw new LineError(`Port out of range [${text}]`); // G32
  return port;
}

interface Location {
  address: AddressSelector;
  lmask: number;
  port: number;
}

/** Field 1, by upstream's algorithm (config.md §4.2), with bad hosts rejected (G30). */
function getLocation(token: string, section: Section, env: ConfEnv): Location {
  if (token === '*') return { address: { kind: 'any' }, lmask: ANY, port: ANY };
  const bracket = token.indexOf(']');
  let host = bracket >= 0 ? token.slice(1, bracket) : token;
  const rest = bracket >= 0 ? token.slice(bracket + 1) : token;
  const colon = rest.indexOf(':');
  let maskPart = colon >= 0 ? rest.slice(0, colon) : rest;
  const portText = colon >= 0 ? rest.slice(colon + 1) : undefined;
  let lmask = ANY;
  const slash = maskPart.indexOf('/');
  if (slash >= 0) {
    lmask = getNumber(maskPart.slice(slash + 1), 'mask', section);
    // upstream aborts when it matches against a `=' location mask
    if (lmask === SAME) throw new LineError("`=' for mask not allowed in a location");
    maskPart = maskPart.slice(0, slash);
  }
  const port = (): number => (portText === undefined ? ANY : getPort(portText, section, env));

  if (bracket >= 0) {
    if (host === '*') return { address: { kind: 'any' }, lmask, port: port() };
    const ip = parseIP(host, 'inet6');
    if (ip === undefined) throw new LineError(`Bad address [${host}]`);
    return { address: { kind: 'ip', address: ip }, lmask, port: port() };
  }
  host = maskPart;
  if (!(colon >= 0 || host.includes('.') || env.isInterface(host))) {
    // no host part: the whole token is the service (`ssh/24`: any host, mask 24)
    return { address: { kind: 'any' }, lmask, port: getPort(host, section, env) };
  }
  if (host === '*') return { address: { kind: 'any' }, lmask, port: port() };
  if (env.isInterface(host)) {
    if (section === 'remote') throw new LineError(`Interface spec does not make sense with remote config [${host}]`);
    if (lmask !== ANY) throw new LineError(`Can't specify mask ${lmask} with interface [${host}]`);
    return { address: { kind: 'interface', name: host }, lmask, port: port() };
  }
  const ip = parseIP(host, 'inet');
  if (ip === undefined) throw new LineError(`Bad address [${host}]`);
  return { address: { kind: 'ip', address: ip }, lmask, port: port() };
}

/** Field 2: the socket type, as an IP protocol. */
function getType(text: string, section: Section): number {
  if (text === 'stream') return IPPROTO_TCP;
  if (text === 'dgram') return IPPROTO_UDP;
  return getNumber(text, 'protocol', section);
}

/** Field 3: the address family; `tcp6`/`udp6` mean IPv6, any other tcp…/udp… IPv4. */
function getFamily(text: string, section: Section, env: ConfEnv): number {
  if (text.startsWith('tcp') || text.startsWith('udp')) return nativeFamily(env.families, text[3] === '6' ? 'inet6' : 'inet');
  return getNumber(text, 'family', section);
}

function getOwner(text: string, section: Section, env: ConfEnv): number {
  return env.user(text) ?? getNumber(text, 'user', section);
}

/** Field 5: name and remote mask (config.md §4.6). */
function getName(text: string, section: Section, env: ConfEnv): { name: string; rmask: number } {
  const colon = text.indexOf(':');
  const examined = colon >= 0 ? text.slice(0, colon) : text;
  const slash = examined.indexOf('/');
  const rmask = slash >= 0 ? getNumber(examined.slice(slash + 1), 'mask', section) : ANY;
  const nameText = colon >= 0 ? text.slice(colon + 1) : slash >= 0 ? text.slice(0, slash) : text;
  let name: string;
  if (nameText === '*') name = env.defaultName;
  else if (nameText === '=') {
    if (section === 'local') throw new LineError("`=' name not allowed in local config");
    name = '';
  } else if (nameText.startsWith('-')) name = env.defaultName + nameText;
  else name = nameText;
  if (name === '' && section === 'local') throw new LineError('Empty name not allowed in local config'); // G42
  const problem = ruleNameProblem(name);
  if (problem !== undefined) throw new LineError(`Bad name [${shownName(name)}]: ${problem}`);
  return { name: cutUtf8(Buffer.from(name, 'utf8'), NAME_MAX).toString('utf8'), rmask };
}

/**
 * Why a rule name cannot be used, undefined when it can.  The name goes to
 * the helper as an argument and as a field of a batch line, and into the
 * names of packet-filter objects: a NUL would cut it, a control character
 * or a blank would split or forge a line.
 */
export function ruleNameProblem(name: string): string | undefined {
  if (/\p{Cc}/u.test(name)) return 'control characters are not allowed';
  if (/\s/u.test(name)) return 'blanks are not allowed';
  return undefined;
}

/** A rule name as a message shows it: control characters as \xNN. */
export const shownName = (name: string): string =>
  name.replace(/[\p{Cc}\\]/gu, (c) => (c === '\\' ? '\\\\' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));

const UNIT: Readonly<Record<string, number>> = Object.fromEntries(DURATION_UNITS);
/** A C number (base 0) with its sign, as strtoimax(3) reads a prefix. */
const C_PREFIX = /[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)/y;
const DECIMAL_TERM = /\+?[0-9]+/y;

/**
 * A duration: `<n><unit>` terms with d, h, m, s, optionally separated by
 * one character, and a bare number of seconds last (`1h30m` = `1h,30m` =
 * 5400, `1m,30` = 90) (G29).  The first number is read as C reads it
 * (`0x10` = 16, `010` = 8), the others in decimal (`1h08m`).  'overflow'
 * beyond INT_MAX seconds, undefined when malformed.
 */
export function parseDuration(text: string): number | 'overflow' | undefined {
  let total = 0;
  for (let pos = 0; ;) {
    const term = pos === 0 ? C_PREFIX : DECIMAL_TERM;
    term.lastIndex = pos;
    const m = term.exec(text);
    const value = m === null ? undefined : pos === 0 ? cValue(m[0]) : parseInt(m[0], 10);
    if (m === null || value === undefined || value < 0) return undefined;
    pos += m[0].length;
    if (pos === text.length) {
      total += value;
      break;
    }
    const unit = UNIT[text[pos]];
    if (unit === undefined) return undefined;
    total += value * unit;
    pos++;
    if (pos === text.length) break;
    if (!/[0-9+]/.test(text[pos])) pos++; // one separator
    if (pos === text.length) return undefined;
  }
  return total <= INT_MAX ? total : 'overflow';
}

/**
 * What upstream computes for a duration (config.md §4.8), bit for bit:
 * NetBSD strtoi(3) clamps a number followed by more text to 0..INT_MAX,
 * a whole number out of range is an error, the total is a 32-bit int.
 */
export function upstreamDuration(text: string): number | undefined {
  let total = 0;
  for (let s = text; ;) {
    C_PREFIX.lastIndex = 0;
    const m = C_PREFIX.exec(s);
    const raw = m === null ? undefined : cValue(m[0]);
    if (m === null || raw === undefined || Math.abs(raw) > 2 ** 63 - 1) return undefined;
    if (m[0].length === s.length) return raw >= 0 && raw <= INT_MAX ? raw || 0 : undefined; // replaces the total
    const value = Math.min(Math.max(raw, 0), INT_MAX);
    const unit = UNIT[s[m[0].length]];
    if (unit === undefined) return undefined;
    total = (total + value * unit) | 0;
    if (m[0].length + 1 === s.length) return total;
    s = s.slice(m[0].length + 2);
  }
}

/** Field 7; a value upstream reads otherwise is accepted with a warning. */
function getDuration(text: string, section: Section, warn: (message: string) => void): number {
  if (text === '*') return ANY;
  if (text === '=') {
    if (section === 'remote') return SAME;
    throw new LineError("`=' duration not allowed in local config");
  }
  const seconds = parseDuration(text);
  if (seconds === 'overflow') throw new LineError(`Duration too long [${text}]`);
  if (seconds === undefined) throw new LineError(`Bad number [${text}]`);
  const upstream = upstreamDuration(text);
  if (upstream !== seconds) {
    const upstreamReading = upstream === undefined ? 'an error' : `${upstream} seconds`;
    warn(`duration ${text} is ${seconds} seconds; upstream blocklistd reads it as ${upstreamReading}`);
  }
  return seconds;
}

// [escalate] and [aggregate]: this port's extensions (doc/escalation.md §1, §6)
const SECTION_HEADER = /^\s*\[(local|remote|escalate|aggregate)\]\s*$/;
type FileSection = Section | 'escalate' | 'aggregate';

/** Parses one file's text; `file` names it in diagnostics. */
export function parseConfig(text: string, file: string, env: ConfEnv): ParseResult {
  const result: ParseResult = { local: [], remote: [], escalate: [], aggregate: [], diagnostics: [] };
  let section: FileSection = 'local';
  for (const { line, text: logical } of logicalLines(text)) {
    const source: Source = { file, line };
    const header = SECTION_HEADER.exec(logical); // trailing blanks allowed (G33)
    if (header !== null) {
      section = header[1] as FileSection;
      continue;
    }
    const fields = logical.split(/[ \t\n\v\f\r]+/).filter((f) => f !== '');
    if (fields.length === 0) continue; // blank, or an indented comment (G34)
    if (section === 'escalate' || section === 'aggregate') {
      result[section].push({ source, fields });
      continue;
    }
    try {
      const warn = (message: string): void => void result.diagnostics.push({ source, severity: 'warning', message });
      result[section].push(parseRule(fields, section, source, env, warn));
      if (fields.length > 7) warn(`extra fields ignored: ${fields.slice(7).join(' ')}`);
    } catch (e) {
      if (!(e instanceof LineError)) throw e;
      result.diagnostics.push({ source, severity: 'error', message: e.message });
    }
  }
  return result;
}

function parseRule(fields: string[], section: Section, source: Source, env: ConfEnv, warn: (m: string) => void): Rule {
  const field = (i: number): string => fields[i] ?? '';
  const location = getLocation(field(0), section, env);
  const proto = getType(field(1), section);
  const family = getFamily(field(2), section, env);
  const uid = getOwner(field(3), section, env);
  const { name, rmask } = getName(field(4), section, env);
  const nfail = getNumber(field(5), 'nfail', section);
  const duration = getDuration(field(6), section, warn);
  if (location.address.kind === 'ip' && location.lmask > widthOf(location.address.address.family)) {
    warn(`mask ${location.lmask} is wider than the address: all ${widthOf(location.address.address.family)} bits are compared`);
  }
  return { source, ...location, proto, family, uid, name, rmask, nfail, duration };
}
