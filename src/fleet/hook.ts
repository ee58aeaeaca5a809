// What the engine tells the fleet and asks it (doc/fleet.md §5): its own
// blocks to publish and release, and whether the fleet holds a
// packet-filter element, so that two holders of one element share it.
import type { HelperResult, HelperTarget } from '../run/helper.js';
import type { EffectiveRule } from '../types.js';

export interface SharedBlocks {
  /** A block this host made (its add worked, or the fleet held it already), lasting `seconds` from `start` (ANY: forever): to publish. */
  blocked(key: EffectiveRule, start: number, seconds: number, reason: string): void;
  /** A block this host released: its key to delete. */
  released(key: EffectiveRule): void;
  /** The entries of rule `name` were flushed by hand: their keys to delete. */
  flushed(name: string): void;
  /**
   * The helper's id of the fleet's block of this element when it is in the packet filter: the engine's add and rem then
   * leave the filter alone.
   */
  holding(target: HelperTarget): string | undefined;
  /**
   * Kernel expiry (doc/fleet.md §5): the engine's block of this element needs the kernel to keep it until `until` (epoch
   * seconds, Infinity: no timeout): recorded; the until an add of the element must carry to cover the fleet's blocks of it too.
   */
  timeoutFor(target: HelperTarget, until: number): number;
  /** The same need recorded; whether the element's kernel timeout, set by the fleet, covers it already (the engine's add is skipped). */
  covers(target: HelperTarget, until: number): boolean;
}

/** The result of an add or rem not run because another holder keeps the element: it is (still) there. */
export const heldResult = (id: string): HelperResult => ({
  outcome: 'ok',
  line: `OK ${id}`,
  id,
  exitCode: 0,
  signal: null,
  timedOut: false,
  error: undefined,
  cancelled: false,
});
