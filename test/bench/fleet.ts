// Benchmark of the fleet (issue 17): two daemons, A and B, on one
// nats-server on loopback.  Latency: 1,000 blocks made on A one after the
// other, from A's helper add to B's helper add (each helper stamps its
// calls with the wall clock in nanoseconds): median and 99th percentile
// (target <= 1 s p99, aim 50 ms).  Burst: 10,000 of A's blocks put in the
// bucket at once (A's user, as A's outbox sends them after an outage),
// until B's batch helper has added all of them (target <= 10 s); then a
// daemon started later, until it has applied the 10,000 in force.
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlRequest, DaemonProcess, freePort, tempDir } from '../support.js';
import { ADMIN, BUCKET, createBucket, natsMissing, NatsServer } from '../nats.js';
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { keyOf, valueOf } from '../../src/fleet/record.js';
import { atMost, record } from './results.js';

const LATENCY_BLOCKS = Number(process.env.FLEET_BENCH_BLOCKS ?? 1000);
const BURST_BLOCKS = 10_000;

const missing = natsMissing();
if (missing !== undefined) {
  console.log(`fleet: skipped: ${missing}`);
  process.exit(1);
}

/** A helper that stamps each add with the wall clock (ns) and the address; batch mode off: one call per add. */
const STAMPING_HELPER = `#!/bin/sh
case "$1" in
add) echo "$(date +%s%N) $4" >> "$HELPER_LOG"; echo "OK id-$4" ;;
capabilities) echo ;;
*) echo OK ;;
esac
`;

/**
 * A batch helper as fast as a packet filter's transaction, one process per
 * batch (the test fixture forks per line: 30 s for 10,000): records each
 * line, answers it, and a "batch <n>" line at its end.
 */
const BATCH_HELPER = `#!/bin/sh
case "$1" in
capabilities) echo batch ;;
batch) awk -v out="$HELPER_LOG" '{ print >> out; print ($1 == "add" ? "OK id-" $4 : "OK") } END { print "batch " NR >> out }' ;;
add) echo "$*" >> "$HELPER_LOG"; echo "OK id-$4" ;;
*) echo OK ;;
esac
`;

const nats = await NatsServer.start(undefined, { hosts: ['a', 'b', 'c'] });
const daemons: DaemonProcess[] = [];
try {
  const admin = await connect({ servers: nats.url, user: ADMIN.user, pass: ADMIN.password });
  await createBucket(admin);
  await admin.close();
  const port = await freePort();
  const config = `${port} stream * * * 3 1h\n`;
  const start = async (origin: string, helper: string, env: Record<string, string> = {}): Promise<DaemonProcess> => {
    const dir = tempDir(`blocklistd-bench-${origin}-`);
    writeFileSync(join(dir, 'fleet.user'), `${origin}:${origin}-secret\n`);
    const daemon = await DaemonProcess.start({
      config,
      dir,
      env,
      args: ['-C', helper, '--fleet', nats.url, '--fleet-name', origin, '--fleet-user-file', join(dir, 'fleet.user')],
    });
    daemons.push(daemon);
    await daemon.waitFor(/fleet: connected to /);
    return daemon;
  };
  const helpers = tempDir('blocklistd-bench-helper-');
  const [stamping, batching] = [join(helpers, 'stamping-helper'), join(helpers, 'batch-helper')];
  writeFileSync(stamping, STAMPING_HELPER);
  writeFileSync(batching, BATCH_HELPER);
  chmodSync(stamping, 0o755);
  chmodSync(batching, 0o755);

  // latency: one block at a time
  const a = await start('a', stamping);
  const b = await start('b', stamping);
  const stamps = (d: DaemonProcess): Map<string, number> =>
    new Map(
      (existsSync(d.helperLog) ? readFileSync(d.helperLog, 'utf8') : '')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => {
          const [ns, address] = l.split(' ');
          return [address!, Number(BigInt(ns!) / 1000n) / 1000] as const;
        }),
    );
  const addresses = Array.from({ length: LATENCY_BLOCKS }, (_, i) => `10.200.${i >> 8}.${i & 255}`);
  for (const address of addresses) {
    await controlRequest(a.control, 'block', { address, port: String(port) });
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const deadline = Date.now() + 60_000;
  while (stamps(b).size < LATENCY_BLOCKS && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  const [onA, onB] = [stamps(a), stamps(b)];
  const latencies = addresses
    .filter((x) => onA.has(x) && onB.has(x))
    .map((x) => onB.get(x)! - onA.get(x)!)
    .sort((p, q) => p - q);
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]!;
  console.log(
    `fleet: ${latencies.length} of ${LATENCY_BLOCKS} blocks from A's helper add to B's: median ${pct(50).toFixed(1)} ms, ` +
      `p99 ${pct(99).toFixed(1)} ms, max ${latencies[latencies.length - 1]!.toFixed(1)} ms (target p99 <= 1000 ms, aim 50 ms)`,
  );
  record({
    id: 'fleet.latency.median',
    name: `fleet: propagation from A's helper add to B's, median of ${LATENCY_BLOCKS} blocks`,
    value: pct(50),
    unit: 'ms',
  });
  record({
    id: 'fleet.latency.p99',
    name: `fleet: propagation from A's helper add to B's, 99th percentile of ${LATENCY_BLOCKS} blocks`,
    value: pct(99),
    unit: 'ms',
    target: atMost(1000),
  });
  record({
    id: 'fleet.latency.missed',
    name: 'fleet: latency blocks that never reached B within 60 s',
    value: LATENCY_BLOCKS - latencies.length,
    unit: 'blocks',
    target: atMost(0),
  });
  for (const d of daemons.splice(0)) await d.stop();

  // burst: 10,000 of A's blocks put in the bucket at once (as A's user, as A's outbox does after an outage), B with a batch helper
  const b2 = await start('b', batching);
  const adds = (d: DaemonProcess): number =>
    existsSync(d.helperLog)
      ? readFileSync(d.helperLog, 'utf8')
          .split('\n')
          .filter((l) => l.startsWith('add ') && l.includes(' 10.201.')).length
      : 0;
  const asA = await connect({ servers: nats.url, user: 'a', pass: 'a-secret' });
  const kv = await new Kvm(asA).open(BUCKET);
  const now = Math.floor(Date.now() / 1000);
  const blocks = Array.from({ length: BURST_BLOCKS }, (_, i) => ({
    origin: 'a',
    name: 'blocklistd',
    family: 4 as const,
    address: `10.201.${i >> 8}.${i & 255}`,
    mask: 32,
    proto: 'tcp',
    port,
    duration: 3600,
    start: now,
    end: now + 3600,
    reason: 'limit',
  }));
  const started = performance.now();
  await Promise.all(blocks.map((b) => kv.put(keyOf(b), valueOf(b))));
  const published = (performance.now() - started) / 1000;
  const burstDeadline = Date.now() + 120_000;
  while (adds(b2) < BURST_BLOCKS && Date.now() < burstDeadline) await new Promise((resolve) => setTimeout(resolve, 20));
  const seconds = (performance.now() - started) / 1000;
  const applied = adds(b2);
  const batches = readFileSync(b2.helperLog, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('batch ')).length;
  console.log(
    `fleet: ${BURST_BLOCKS} blocks of A put in one burst (${published.toFixed(1)} s); ` +
      `${applied} applied by B in ${seconds.toFixed(1)} s from the first put, in ${batches} helper batches (target <= 10 s)`,
  );
  record({
    id: 'fleet.burst.seconds',
    name: `fleet: ${BURST_BLOCKS} blocks of A published in one burst, until B's batch helper added all`,
    value: seconds,
    unit: 's',
    target: atMost(10),
  });
  record({
    id: 'fleet.burst.missed',
    name: 'fleet: blocks of the burst B had not applied after 120 s',
    value: BURST_BLOCKS - applied,
    unit: 'blocks',
    target: atMost(0),
  });

  // a host that joins later: the 10,000 replayed from the bucket
  const joinStarted = performance.now();
  const c = await start('c', batching);
  while (adds(c) < BURST_BLOCKS && Date.now() < burstDeadline + 60_000) await new Promise((resolve) => setTimeout(resolve, 20));
  const joined = (performance.now() - joinStarted) / 1000;
  console.log(`fleet: a daemon started later applied ${adds(c)} blocks in force in ${joined.toFixed(1)} s from its start`);
  record({
    id: 'fleet.join.seconds',
    name: `fleet: a daemon started later, until its batch helper added the ${BURST_BLOCKS} blocks in force`,
    value: joined,
    unit: 's',
  });
  await asA.close();
} finally {
  for (const d of daemons) await d.stop();
  await nats.stop();
}
