// Comparing entries' keys (effective rules).
import type { EffectiveRule } from '../types.js';

/**
 * The same rule but for the address: the store's cache compares the rest of the key of an address's rows with it, and
 * subnet aggregation finds the blocks that one network block can stand for.
 */
export const sameRule = (a: EffectiveRule, b: EffectiveRule): boolean =>
  a.name === b.name &&
  a.family === b.family &&
  a.lmask === b.lmask &&
  a.port === b.port &&
  a.proto === b.proto &&
  a.uid === b.uid &&
  a.nfail === b.nfail &&
  a.rmask === b.rmask &&
  a.duration === b.duration;
