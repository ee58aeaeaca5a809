// What matching sees of a received notification (config.md §7.1): the
// protocol's Notification adapted to the configuration's Probe.  The
// addresses pass as the words the receive path decoded, unparsed.
import { nativeFamily } from '../address.js';
import { IPPROTO_TCP, IPPROTO_UDP, type ConfEnv, type Probe } from '../conf/types.js';
import type { Notification } from '../types.js';

export function probeOf(n: Notification, families: ConfEnv['families']): Probe {
  return {
    family: nativeFamily(families, n.local.family),
    local: n.local,
    port: n.local.port,
    proto: n.socketType === 'stream' ? IPPROTO_TCP : IPPROTO_UDP,
    uid: n.uid,
    remote: n.remote,
  };
}
