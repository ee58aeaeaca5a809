// Kernel-side expiry (issue 18, helper.md §1.8): a block goes into the
// packet filter with a timeout of its own, so that the blocks of a daemon
// that dies and never comes back end by themselves.  The daemon still
// releases every block itself, as before; the kernel's timeout is the net
// under it, set a margin after the daemon's deadline.
import type { HelperExtensions } from '../run/helper.js';
import type { LogFn } from '../types.js';

/** --kernel-expiry-margin's default, in seconds (doc/decisions.md). */
export const DEFAULT_KERNEL_EXPIRY_MARGIN = 60;

/**
 * The kernel timeout (seconds) of a block whose last failure was at `last`
 * (seconds since the epoch), added at `now`: what remains of its
 * `duration`, to the second after its deadline when the daemon releases it
 * (expired means `last + duration < now`), plus `margin`, so that a living
 * daemon's release comes first; a block already due (a restore) gets the
 * margin.  Undefined, no timeout: a forever block (`duration` below 0), or
 * kernel expiry off (`margin` undefined).
 */
export function kernelTimeout(duration: number, last: number, now: number, margin: number | undefined): number | undefined {
  if (margin === undefined || duration < 0) return undefined;
  return Math.max(0, last + duration + 1 - now) + margin;
}

/**
 * What the daemon asks of the helper beyond upstream's contract, of what
 * it offers (`capabilities`): kernel timeouts with --kernel-expiry,
 * cutting connections with --cut-connections.  An option the helper cannot
 * serve is a warning.
 */
export function helperExtensions(
  o: { kernelExpiryMargin: number | undefined; cutConnections: boolean },
  capabilities: ReadonlySet<string>,
  log: LogFn,
): HelperExtensions {
  if (o.cutConnections && !capabilities.has('cut'))
    log('warning', '--cut-connections: the helper does not offer "cut": connections are not ended');
  return { timeouts: o.kernelExpiryMargin !== undefined && capabilities.has('timeout'), cut: o.cutConnections && capabilities.has('cut') };
}
