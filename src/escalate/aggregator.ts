// Subnet aggregation in the daemon (doc/escalation.md §6): after a block
// of a rule name with an [aggregate] policy, the blocks of its network are
// counted; at `count` of them one block of the network, added with one
// helper call and lasting as long as the longest, replaces them, and is
// released as one by expiry.  Through the engine's primitives, as the
// manual commands do.
import { coveredNetwork, parseIP, toText, widthOf } from '../conf/ip.js';
import { entryFields, entryText, remLeftRule, type Engine } from '../daemon/engine.js';
import { entryId } from '../run/inflight.js';
import { failureText } from '../run/helper.js';
import { blockSeconds } from '../state/entry.js';
import type { StateStore } from '../state/store.js';
import { ANY, type EffectiveRule, type Entry, type LogFn } from '../types.js';
import { aggregateNetwork, inNetwork, textRange, type AggregatePolicy, type AllowedNetwork } from './aggregate.js';
import { PERMANENT } from './policy.js';
import { sameRule } from '../state/rule.js';

export class Aggregator {
  private policies: ReadonlyMap<string, AggregatePolicy> = new Map();
  private allowed: readonly AllowedNetwork[] = [];
  /** Networks whose aggregate an allow-list rule forbids, logged once per configuration. */
  private readonly refused = new Set<string>();

  constructor(
    private readonly engine: Engine,
    private readonly store: StateStore,
    private readonly log: LogFn,
  ) {}

  /** A load or reload: the policies, and the allow-list rules' networks, in force from now on. */
  setPolicies(policies: ReadonlyMap<string, AggregatePolicy>, allowed: readonly AllowedNetwork[]): void {
    this.policies = policies;
    this.allowed = allowed;
    this.refused.clear();
  }

  /** The packet filter took a block of `key`, begun from failures: aggregate its network's if they are enough. */
  async blocked(key: EffectiveRule): Promise<void> {
    const { engine, store, log } = this;
    const p = this.policies.get(key.name);
    const ip = p && parseIP(key.address);
    if (p === undefined || ip === undefined || key.lmask !== widthOf(ip.family) || engine.stopping) return;
    const net = aggregateNetwork(ip, p);
    const netKey: EffectiveRule = { ...key, address: toText(net.address), lmask: net.mask };
    if (engine.busy(netKey) || store.get(netKey) !== undefined) return;
    const members = store
      .blockedIn(key.name, ...textRange(net))
      .filter((e) => sameRule(e.key, key) && inNetwork(parseIP(e.key.address)!, net) && !engine.busy(e.key));
    if (members.length < p.count) return;
    const network = `${netKey.address}/${net.mask}`;
    const allow = coveredNetwork(net.address, net.mask, this.allowed);
    if (allow !== undefined) {
      if (!this.refused.has(entryId(netKey)))
        log(
          'notice',
          `not aggregating ${members.length} blocks of ${network} (${key.name}): the allow-list rule at ${allow.what} is inside it`,
        );
      this.refused.add(entryId(netKey));
      return;
    }
    // as long as the longest of them (permanent if one is)
    const now = engine.now();
    const ends = members.map((e) => (blockSeconds(e) === ANY ? Infinity : e.last + blockSeconds(e)));
    const end = Math.max(...ends);
    const hold = end === Infinity ? PERMANENT : Math.max(0, end - now - key.duration);
    const wrote = { count: key.nfail, last: now };
    if (!engine.guard(() => store.put({ key: netKey, ...wrote, id: '', hold }))) return;
    log('notice', `aggregating ${members.length} blocks of ${network} (${key.name}) into one`, {
      ...entryFields('aggregate', netKey),
      count: members.length,
    });
    const result = await engine.add(netKey, undefined, wrote, 'limit', blockSeconds({ key: netKey, ...wrote, id: '', hold }));
    // not taken: the entry went with the failure, the addresses' blocks stay
    if (result.outcome !== 'ok') return;
    await Promise.all(members.map((e) => this.dissolve(e, network)));
    engine.armExpiry();
  }

  /** A block the aggregate stands for: `rem`, and its entry deleted; one whose rem fails stays until it expires. */
  private async dissolve(e: Entry, network: string): Promise<void> {
    const { engine, store, log } = this;
    const result = await engine.remove(e);
    if (remLeftRule(result, e.id)) {
      log('err', `rem ${e.key.name} ${entryText(e.key)} failed${failureText(result)}; it stays until it expires`);
      return;
    }
    // before the delete: the start a restore kept is found through the entry (engine.lasted)
    engine.lasted(entryId(e.key), e);
    engine.guard(() => store.delete(e.key));
    log('info', `released ${entryText(e.key)}: in the block of ${network}`, { ...entryFields('release', e.key), origin: 'aggregate' });
  }
}
