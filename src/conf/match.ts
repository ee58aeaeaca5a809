// Matching a notification against the rule set (config.md §7): the first
// matching local rule, then the first matching remote rule on the masked
// remote address.  The lists are indexed so that a notification looks at
// the few rules that can match it, in the same order as a linear walk:
// rules of one address kind and location mask are contiguous in the
// sorted list, so each such group is looked up by the masked address; a
// run of any-address rules for given ports is looked up by port; the rest
// (any port, interfaces) is walked.
import { maskAddress, maskedKey, prefixEqual, sameAddress, toText, widthOf } from './ip.js';
import { ANY, SAME, type InterfaceAddresses, type IPAddress, type Match, type Probe, type Rule, type RuleSet } from './types.js';

/** The fields a rule compares besides the address. */
interface Fields {
  address: IPAddress;
  port: number;
  proto: number;
  family: number;
  uid: number;
}

const fieldMatches = (rule: number, value: number): boolean => rule === value || rule === ANY || rule === SAME;

function otherFieldsMatch(rule: Rule, x: Fields): boolean {
  return (
    fieldMatches(rule.port, x.port) &&
    fieldMatches(rule.proto, x.proto) &&
    fieldMatches(rule.family, x.family) &&
    fieldMatches(rule.uid, x.uid)
  );
}

/** config.md §7.2: whether `rule` matches. */
function ruleMatches(rule: Rule, x: Fields, interfaces: InterfaceAddresses): boolean {
  const a = rule.address;
  if (a.kind === 'ip') {
    const bits = rule.lmask === ANY ? widthOf(a.address.family) : rule.lmask;
    if (a.address.family !== x.address.family || !prefixEqual(a.address.words, x.address.words, bits)) return false;
  } else if (a.kind === 'interface') {
    if (!(interfaces.get(a.name) ?? []).some((ip) => sameAddress(ip, x.address))) return false;
  }
  return otherFieldsMatch(rule, x);
}

type Group =
  /** IP rules of one family and location mask, by masked address. */
  | { kind: 'ip'; family: IPAddress['family']; bits: number; byAddress: Map<number | string, Rule[]> }
  /** A run of any-address rules for given ports, by port. */
  | { kind: 'ports'; byPort: Map<number, Rule[]> }
  /** A run of any-address rules for any port, and interface rules: walked. */
  | { kind: 'walk'; rules: Rule[] };

/** One list of the rule set, indexed. */
export interface CompiledList {
  groups: readonly Group[];
}

function compileList(rules: readonly Rule[]): CompiledList {
  const groups: Group[] = [];
  const walk = (rule: Rule, last: Group | undefined, kind: 'any' | 'interface'): void => {
    if (last?.kind === 'walk' && last.rules[0].address.kind === kind) last.rules.push(rule);
    else groups.push({ kind: 'walk', rules: [rule] });
  };
  for (const rule of rules) {
    const a = rule.address;
    let last = groups[groups.length - 1];
    if (a.kind === 'ip') {
      const bits = rule.lmask === ANY ? widthOf(a.address.family) : Math.min(rule.lmask, widthOf(a.address.family));
      if (last?.kind !== 'ip' || last.family !== a.address.family || last.bits !== bits) {
        last = { kind: 'ip', family: a.address.family, bits, byAddress: new Map() };
        groups.push(last);
      }
      const key = maskedKey(a.address, bits);
      const bucket = last.byAddress.get(key);
      if (bucket) bucket.push(rule);
      else last.byAddress.set(key, [rule]);
    } else if (a.kind === 'interface' || rule.port === ANY || rule.port === SAME) {
      walk(rule, last, a.kind);
    } else {
      if (last?.kind !== 'ports') groups.push((last = { kind: 'ports', byPort: new Map() }));
      const bucket = last.byPort.get(rule.port);
      if (bucket) bucket.push(rule);
      else last.byPort.set(rule.port, [rule]);
    }
  }
  return { groups };
}

function firstMatch(list: CompiledList, x: Fields, interfaces: InterfaceAddresses): Rule | undefined {
  for (const group of list.groups) {
    if (group.kind === 'ip') {
      if (group.family !== x.address.family) continue;
      const candidates = group.byAddress.get(maskedKey(x.address, group.bits));
      if (candidates !== undefined) for (const rule of candidates) if (otherFieldsMatch(rule, x)) return rule;
    } else if (group.kind === 'ports') {
      const candidates = group.byPort.get(x.port);
      if (candidates !== undefined) for (const rule of candidates) if (otherFieldsMatch(rule, x)) return rule;
    } else {
      for (const rule of group.rules) if (ruleMatches(rule, x, interfaces)) return rule;
    }
  }
  return undefined;
}

export interface CompiledRules {
  ruleSet: RuleSet;
  local: CompiledList;
  remote: CompiledList;
}

export function compileRules(ruleSet: RuleSet): CompiledRules {
  return { ruleSet, local: compileList(ruleSet.local), remote: compileList(ruleSet.remote) };
}

/** The first rule of `rules` that matches, walking them one by one: the reference for the index. */
export function firstMatchLinear(rules: readonly Rule[], x: Fields, interfaces: InterfaceAddresses): Rule | undefined {
  return rules.find((rule) => ruleMatches(rule, x, interfaces));
}

export type FindRule = (list: 'local' | 'remote', x: Fields) => Rule | undefined;

/**
 * config.md §7.3: the effective rule for a probe, or undefined when no
 * local rule matches or the remote address is of another family than the
 * socket (upstream aborts there, G9).
 */
export function matchProbe(compiled: CompiledRules, probe: Probe, interfaces: InterfaceAddresses, remoteText?: string): Match | undefined {
  return matchWith(ruleFinder(compiled, interfaces), probe, remoteText);
}

/** The indexed lookup of `compiled` for matchWith; a caller that matches many probes makes it once (not a closure per probe). */
export function ruleFinder(compiled: CompiledRules, interfaces: InterfaceAddresses): FindRule {
  return (list, x) => firstMatch(compiled[list], x, interfaces);
}

/** `remoteText`: the caller's text of `probe.remote` (toText), when it has made it: not made a second time for the entry. */
export function matchWith(find: FindRule, probe: Probe, remoteText?: string): Match | undefined {
  const local = find('local', { address: probe.local, port: probe.port, proto: probe.proto, family: probe.family, uid: probe.uid });
  if (local === undefined || probe.remote.family !== probe.local.family) return undefined;
  const width = widthOf(probe.remote.family);
  let { name, uid, rmask, nfail, duration } = local;
  let address = rmask === ANY ? probe.remote : maskAddress(probe.remote, rmask);
  // the remote pass sees the masked address and the local rule's owner (G41)
  const remote = find('remote', { address, port: probe.port, proto: probe.proto, family: probe.family, uid });
  if (remote !== undefined) {
    if (remote.name !== '') name = remote.name;
    if (remote.uid !== SAME) uid = remote.uid;
    if (remote.rmask !== SAME) rmask = remote.rmask; // a name without /mask resets it (G40)
    if (remote.nfail !== SAME) nfail = remote.nfail;
    if (remote.duration !== SAME) duration = remote.duration;
  }
  if (rmask !== ANY) address = maskAddress(address, rmask);
  return {
    local,
    remote,
    effective: {
      family: probe.family,
      address: address === probe.remote && remoteText !== undefined ? remoteText : toText(address),
      lmask: rmask === ANY ? width : Math.min(rmask, width),
      port: probe.port,
      proto: probe.proto,
      uid,
      name,
      rmask,
      nfail,
      duration,
    },
  };
}
