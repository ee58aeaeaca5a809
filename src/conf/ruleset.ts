// From the rules of all files of one load to the rule set the daemon walks
// (config.md §6): rules with identical selectors merged (G36), both lists
// sorted in upstream's order with a stable sort (G37, G38), and a warning
// where that order hides a host rule behind a network rule.
import { nativeFamily } from '../address.js';
import { formatDuration, formatNumber } from './format.js';
import { maskedKey, toText, widthOf } from './ip.js';
import type { ParseResult } from './parse.js';
import { ANY, SAME, type AddressSelector, type ConfEnv, type Diagnostic, type Rule, type RuleSet, type Source } from './types.js';

/** A rule's place, `file:line`. */
export const fileLine = (s: Source): string => `${s.file}:${s.line}`;

/**
 * A diagnostic as logs and listings show it: `file:line: message` (the file
 * alone when it concerns the whole file), the severity after the place when asked.
 */
export function formatDiagnostic(d: Diagnostic, withSeverity: boolean): string {
  return `${d.source.line > 0 ? fileLine(d.source) : d.source.file}: ${withSeverity ? `${d.severity}: ` : ''}${d.message}`;
}

/** Identical keys mean identical selectors: address, location mask, port, type, family, owner. */
function selectorKey(rule: Rule): string {
  const a = rule.address;
  const address = a.kind === 'ip' ? `${a.address.family} ${a.address.words.join(',')}` : a.kind === 'interface' ? `if ${a.name}` : '*';
  return `${address}/${rule.lmask}:${rule.port} ${rule.proto} ${rule.family} ${rule.uid}`;
}

/** The stricter limit: the smaller count, where `*` (never) is the least strict. */
function stricterNfail(a: number, b: number): number {
  if (a === SAME || a === ANY) return b === SAME ? a : b;
  if (b === SAME || b === ANY) return a;
  return Math.min(a, b);
}

/** The longer block, where `*` (forever) is the longest. */
function longerDuration(a: number, b: number): number {
  if (a === SAME) return b;
  if (b === SAME) return a;
  if (a === ANY || b === ANY) return ANY;
  return Math.max(a, b);
}

/** Appends `rules` to `list`, merging each into an earlier rule with identical selectors. */
function mergeInto(list: Rule[], index: Map<string, number>, rules: readonly Rule[], diagnostics: Diagnostic[]): void {
  for (const rule of rules) {
    const key = selectorKey(rule);
    const at = index.get(key);
    if (at === undefined) {
      index.set(key, list.length);
      list.push(rule);
      continue;
    }
    const earlier = list[at];
    const merged = {
      ...earlier,
      nfail: stricterNfail(earlier.nfail, rule.nfail),
      duration: longerDuration(earlier.duration, rule.duration),
    };
    list[at] = merged;
    const ignored = rule.name !== earlier.name || rule.rmask !== earlier.rmask ? '; its name and mask are ignored' : '';
    diagnostics.push({
      source: rule.source,
      severity: 'warning',
      message:
        `same selectors as ${fileLine(earlier.source)}: merged into it ` +
        `(nfail ${formatNumber(merged.nfail)}, duration ${formatDuration(merged.duration)})${ignored}`,
    });
  }
}

const KIND_RANK = { interface: 3, inet6: 2, inet: 1, any: 0 } as const;

function kindRank(a: AddressSelector): number {
  return a.kind === 'ip' ? KIND_RANK[a.address.family] : KIND_RANK[a.kind];
}

/** Upstream's order (config.md §6.3): each key descending, ANY and SAME last. */
export function compareRules(a: Rule, b: Rule): number {
  return (
    kindRank(b.address) - kindRank(a.address) ||
    b.lmask - a.lmask ||
    b.port - a.port ||
    b.proto - a.proto ||
    b.family - a.family ||
    b.rmask - a.rmask ||
    b.uid - a.uid
  );
}

const covers = (network: number, host: number): boolean => network === ANY || network === SAME || network === host;

/**
 * G37: an unmasked host rule sorts after every masked network rule, so a
 * network that contains the host and selects at least what it selects
 * makes it unreachable.  Warns with both lines.
 */
function shadowWarnings(list: readonly Rule[], families: ConfEnv['families'], diagnostics: Diagnostic[]): void {
  // masked network rules by family, then by mask (capped at the width), then by masked address; in list order
  const networks = { inet: new Map<number, Map<number | string, Rule[]>>(), inet6: new Map<number, Map<number | string, Rule[]>>() };
  for (const rule of list) {
    if (rule.address.kind !== 'ip' || rule.lmask === ANY) continue;
    const address = rule.address.address;
    const bits = Math.min(rule.lmask, widthOf(address.family));
    const byMask = networks[address.family];
    if (!byMask.has(bits)) byMask.set(bits, new Map());
    const buckets = byMask.get(bits)!;
    const key = maskedKey(address, bits);
    const bucket = buckets.get(key);
    if (bucket) bucket.push(rule);
    else buckets.set(key, [rule]);
  }
  for (const host of list) {
    if (host.address.kind !== 'ip' || host.lmask !== ANY) continue;
    const address = host.address.address;
    // an IP rule only ever meets probes of its own family, so that family covers any
    const familyNumber = nativeFamily(families, address.family);
    const shadows = (n: Rule): boolean =>
      covers(n.port, host.port) &&
      covers(n.proto, host.proto) &&
      covers(n.uid, host.uid) &&
      (covers(n.family, host.family) || n.family === familyNumber);
    for (const [bits, buckets] of networks[address.family]) {
      const network = buckets.get(maskedKey(address, bits))?.find(shadows);
      if (network === undefined || network.address.kind !== 'ip') continue;
      const text = toText(address);
      const width = widthOf(address.family);
      const advice = bits < width ? `; write ${text}/${width} to make the host rule win` : '';
      diagnostics.push({
        source: host.source,
        severity: 'warning',
        message:
          `the rule for ${text} is never used: the network rule ${toText(network.address.address)}/${network.lmask} ` +
          `at ${fileLine(network.source)} sorts before it and matches the same notifications${advice}`,
      });
      break;
    }
  }
}

/** The rule set of one load from its files' rules, in loading order. */
export function buildRuleSet(
  files: readonly ParseResult[],
  families: ConfEnv['families'],
): { ruleSet: RuleSet; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const local: Rule[] = [];
  const remote: Rule[] = [];
  const localIndex = new Map<string, number>();
  const remoteIndex = new Map<string, number>();
  for (const file of files) {
    mergeInto(remote, remoteIndex, file.remote, diagnostics);
    mergeInto(local, localIndex, file.local, diagnostics);
  }
  local.sort(compareRules); // stable
  remote.sort(compareRules);
  shadowWarnings(local, families, diagnostics);
  shadowWarnings(remote, families, diagnostics);
  return { ruleSet: { local, remote }, diagnostics };
}
