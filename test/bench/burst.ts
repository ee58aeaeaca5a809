// Benchmark of bursts from many servers (issue 13): 20 senders that send as
// libblocklist does (non-blocking, five tries, then given up), 500
// notifications each for addresses of their own, every one blocking (nfail
// 1) with a helper taking 2 ms: paced at 100/s per sender and unpaced.
// The goal is 0 given up; prints the figures, and how long the helper calls
// took to drain.  As root the daemon's --queue applies (1024); otherwise
// the socket has the sysctl's length.
import { burst } from '../burst.js';
import { atMost, record } from './results.js';

const SENDERS = 20;
const EACH = 500;

for (const rate of [100, 0]) {
  const r = await burst({ senders: SENDERS, each: EACH, rate, helperMs: 2 });
  const offered = rate > 0 ? `${rate}/s each` : 'as fast as they can';
  console.log(
    `burst: ${SENDERS} libblocklist-style senders x ${EACH}, ${offered}, helper 2 ms, nfail 1: ` +
      `${r.givenUp} of ${SENDERS * EACH} given up (target 0), ${r.entries} entries, ${r.adds} adds, all ` +
      `done in ${r.seconds.toFixed(1)} s`,
  );
  record({
    id: `burst.givenup.${rate}`,
    name: `${SENDERS} senders x ${EACH}, ${offered}, helper 2 ms, nfail 1: given up`,
    value: r.givenUp,
    unit: 'notifications',
    target: rate > 0 ? atMost(0) : undefined,
  });
  record({
    id: `burst.seconds.${rate}`,
    name: `${SENDERS} senders x ${EACH}, ${offered}: until every helper add ended`,
    value: r.seconds,
    unit: 's',
  });
}
