// Rules back to configuration syntax: what `blocklistctl config` prints.
// Parsing the printed text gives the same rules, and upstream reads it the
// same way (durations are written as `1h,30m`, which both agree on).
import { familyOfNative } from '../address.js';
import { DURATION_UNITS, durationParts } from '../time.js';
import { toText, widthOf } from './ip.js';
import { ANY, IPPROTO_TCP, IPPROTO_UDP, SAME, type ConfEnv, type Rule, type RuleSet } from './types.js';

/** A number field: `*`, `=` or the value. */
export function formatNumber(n: number): string {
  return n === ANY ? '*' : n === SAME ? '=' : String(n);
}

/** Seconds as units (`6h`, `1h,30m`, `45s`); `*` forever, `=` inherit. */
export function formatDuration(seconds: number): string {
  if (seconds === ANY || seconds === SAME) return formatNumber(seconds);
  if (seconds === 0) return '0';
  return durationParts(seconds, DURATION_UNITS).join(',');
}

function formatMask(mask: number): string {
  return mask === ANY ? '' : `/${formatNumber(mask)}`;
}

export function formatLocation(rule: Rule): string {
  const a = rule.address;
  const port = formatNumber(rule.port);
  const mask = formatMask(rule.lmask);
  if (a.kind === 'interface') return rule.port === ANY ? a.name : `${a.name}:${port}`;
  if (a.kind === 'ip') {
    const host = a.address.family === 'inet6' ? `[${toText(a.address)}]` : toText(a.address);
    return rule.port === ANY ? `${host}${mask}` : `${host}${mask}:${port}`;
  }
  if (rule.lmask === ANY) return port;
  return `*${mask}:${port}`;
}

function formatType(proto: number): string {
  return proto === IPPROTO_TCP ? 'stream' : proto === IPPROTO_UDP ? 'dgram' : formatNumber(proto);
}

/** The name of a rule's or entry's protocol (IPPROTO_TCP or IPPROTO_UDP), as a port is written: 22/tcp. */
export const protocolName = (proto: number): 'tcp' | 'udp' => (proto === IPPROTO_UDP ? 'udp' : 'tcp');

/** The family field; the tcp/udp prefix only follows the rule's type for readability. */
function formatFamily(family: number, proto: number, families: ConfEnv['families']): string {
  const prefix = protocolName(proto);
  const name = familyOfNative(families, family);
  if (name === undefined) return formatNumber(family);
  return name === 'inet' ? prefix : `${prefix}6`;
}

/**
 * The name field.  An empty name is `=` (inherit); a name with `/` or `:`
 * is written after a `:`, which the parser takes literally (config.md §4.6).
 */
function formatName(name: string, rmask: number): string {
  const mask = formatMask(rmask);
  if (name === '') return `=${mask}`;
  if (/[/:]/.test(name)) return `${mask}:${name}`;
  return `${name}${mask}`;
}

/** One rule as a configuration line, fields separated by tabs. */
export function formatRule(rule: Rule, families: ConfEnv['families']): string {
  return [
    formatLocation(rule),
    formatType(rule.proto),
    formatFamily(rule.family, rule.proto, families),
    formatNumber(rule.uid),
    formatName(rule.name, rule.rmask),
    formatNumber(rule.nfail),
    formatDuration(rule.duration),
  ].join('\t');
}

function debugMask(mask: number, width: number | undefined): string {
  if (mask === ANY || mask === width) return '';
  return `/${formatNumber(mask)}`;
}

/** One rule as upstream's `-d` listing shows it (daemon.md §11). */
function debugRule(rule: Rule, defaultName: string, families: ConfEnv['families']): string {
  const a = rule.address;
  const family = a.kind === 'ip' ? a.address.family : familyOfNative(families, rule.family);
  const width = family === undefined ? undefined : widthOf(family);
  let loc =
    (a.kind === 'ip' ? toText(a.address) : a.kind === 'interface' ? a.name : '*') +
    debugMask(rule.lmask, a.kind === 'ip' ? width : undefined);
  if (rule.port === SAME) loc = loc === '' || loc === '*' ? '-2' : `${loc}:-2`;
  else if (rule.port !== ANY) loc = loc === '' || loc === '*' ? String(rule.port) : `${loc}:${rule.port}`;
  let name = rule.name === '' ? '=' : rule.name.startsWith(defaultName) ? rule.name.slice(defaultName.length) || '*' : rule.name;
  if (!(rule.name === '' && rule.rmask === SAME)) name += debugMask(rule.rmask, width);
  const fields = [
    formatNumber(rule.proto),
    formatNumber(rule.family),
    formatNumber(rule.uid),
    name,
    formatNumber(rule.nfail),
    formatNumber(rule.duration),
  ];
  return [loc.padStart(20).slice(0, 20), ...fields].join('\t');
}

/** The rule listing logged after each parse with -d (daemon.md §11). */
export function debugListing(
  rules: { local: readonly Rule[]; remote: readonly Rule[] },
  defaultName: string,
  families: ConfEnv['families'],
): string {
  const header = (what: string): string => `${what.padStart(20)}\ttype\tproto\towner\tname\tnfail\tduration`;
  return [
    '[local]',
    header('target'),
    ...rules.local.map((r) => debugRule(r, defaultName, families)),
    '[remote]',
    header('source'),
    ...rules.remote.map((r) => debugRule(r, defaultName, families)),
  ].join('\n');
}

/** What a reload changed, each rule as `[section] line` (fields separated by spaces). */
export interface RuleChanges {
  added: string[];
  removed: string[];
  /** The same rule with another nfail or duration: `[section] fields: old -> new`. */
  changed: string[];
}

/** The rules of `after` against those of `before`: a rule is its fields but nfail and duration, which can change. */
export function ruleChanges(before: RuleSet, after: RuleSet, families: ConfEnv['families']): RuleChanges {
  const byRule = (rules: RuleSet): Map<string, string[]> => {
    const out = new Map<string, string[]>();
    for (const [section, list] of [
      ['local', rules.local],
      ['remote', rules.remote],
    ] as const) {
      for (const rule of list) {
        const fields = formatRule(rule, families).split('\t');
        const key = `[${section}] ${fields.slice(0, 5).join(' ')}`;
        out.set(key, [...(out.get(key) ?? []), fields.slice(5).join(' ')]);
      }
    }
    return out;
  };
  const old = byRule(before);
  const changes: RuleChanges = { added: [], removed: [], changed: [] };
  for (const [key, values] of byRule(after)) {
    // what both have is unchanged; the rest pairs up as changes, the remainder added or removed
    const gone = [...(old.get(key) ?? [])];
    old.delete(key);
    const come = values.filter((v) => {
      const i = gone.indexOf(v);
      if (i >= 0) gone.splice(i, 1);
      return i < 0;
    });
    come.forEach((v, i) => (i < gone.length ? changes.changed.push(`${key}: ${gone[i]} -> ${v}`) : changes.added.push(`${key} ${v}`)));
    for (const v of gone.slice(come.length)) changes.removed.push(`${key} ${v}`);
  }
  for (const [key, values] of old) for (const v of values) changes.removed.push(`${key} ${v}`);
  return changes;
}
