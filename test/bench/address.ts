// Micro-benchmark of a notification's address path: a drained record
// decoded, its probe made, matched against a small rule set, the state
// key's address in hand; 1e6 IPv6 and 1e6 IPv4 notifications, CPU time per
// notification.  Prints figures only.  Run: npm run bench -- address
import { compileRules, matchProbe } from '../../src/conf/match.js';
import { parseConfig } from '../../src/conf/parse.js';
import { buildRuleSet } from '../../src/conf/ruleset.js';
import { systemEnv } from '../../src/conf/system.js';
import { probeOf } from '../../src/daemon/probe.js';
import { constants, layout } from '../../src/protocol/native.js';
import { RecordBuffer, decodeRecord, rootOnly } from '../../src/protocol/receive.js';
import { NATIVE_FAMILIES, encodeNotification, sockaddrSize, writeHost32 } from '../../src/protocol/wire.js';
import { nativeFamily } from '../../src/address.js';
import { WireType, type AddressFamily } from '../../src/types.js';
import { record } from './results.js';

const N = Number(process.env.BENCH_N ?? 1_000_000);
const DISTINCT = 1024;
const env = systemEnv();
const CONFIG = [
  '[local]',
  '22\tstream\t*\t*\t*\t3\t24h',
  '[2001:db8::]/32:443\tstream\ttcp6\t*\t-web/64\t5\t1h',
  '[remote]',
  '192.0.2.0/24\t*\t*\t*\t=\t*\t*',
  '[2001:db8:ff::]/48\t*\t*\t*\t=\t*\t*',
].join('\n');
const compiled = compileRules(buildRuleSet([parseConfig(CONFIG + '\n', 'bench.conf', env)], env.families).ruleSet);
const NO_INTERFACES = new Map();
const policy = { netns: undefined, trusted: rootOnly };
const ignore = (): void => {};

/** A socket address as the addon decodes it into a record (native.ts `layout`). */
function writeEndpoint(r: Buffer, at: number, family: AddressFamily, address: Uint8Array, port: number): void {
  writeHost32(r, at, nativeFamily(NATIVE_FAMILIES, family));
  writeHost32(r, at + 4, port);
  for (let k = 0; k < address.length / 4; k++) writeHost32(r, at + 8 + 4 * k, Buffer.from(address).readUInt32BE(4 * k));
}

/** A record as the receive thread drains it: a TCP socket of `family` connected from `remote` to port 22. */
function drainedRecord(family: AddressFamily, local: Uint8Array, remote: Uint8Array): RecordBuffer {
  const records = new RecordBuffer(1);
  const r = records.bytes;
  const payload = encodeNotification(WireType.ADD, null, Buffer.from('ssh'));
  writeHost32(r, layout.length, payload.length);
  writeHost32(r, layout.cmsgCount, 2);
  writeHost32(r, layout.cmsgLevel, constants.SOL_SOCKET);
  writeHost32(r, layout.cmsgType, constants.SCM_RIGHTS);
  writeHost32(r, layout.cmsgLen, constants.CMSG_LEN_INT);
  writeHost32(r, layout.cmsgLevel + 4, constants.SOL_SOCKET);
  writeHost32(r, layout.cmsgType + 4, constants.SCM_CREDENTIALS);
  writeHost32(r, layout.hasCred, 1);
  writeHost32(r, layout.pid, 1234);
  writeHost32(r, layout.type, constants.SOCK_STREAM);
  writeEndpoint(r, layout.local, family, local, 22);
  writeHost32(r, layout.localLen, sockaddrSize(family));
  writeEndpoint(r, layout.peer, family, remote, 40000);
  writeHost32(r, layout.peerLen, sockaddrSize(family));
  payload.copy(r, layout.payload);
  return records;
}

function records(family: AddressFamily): RecordBuffer[] {
  return Array.from({ length: DISTINCT }, (_, i) => {
    if (family === 'inet') return drainedRecord(family, Uint8Array.of(192, 0, 2, 1), Uint8Array.of(198, 51, i >> 8, i & 0xff));
    const remote = Buffer.from('20010db8000000000000000000000000', 'hex');
    remote.writeUInt16BE(i, 6);
    remote.writeUInt16BE((i * 7919) & 0xffff, 14);
    return drainedRecord(family, Buffer.from('20010db8000000000000000000000001', 'hex'), remote);
  });
}

/** Mean CPU µs per notification over `n`, after a warm-up. */
function measure(rs: RecordBuffer[], n: number): { micros: number; matched: number } {
  let matched = 0;
  const once = (r: RecordBuffer): void => {
    const notification = decodeRecord(r, 0, ignore, policy)!;
    const probe = probeOf(notification, env.families);
    const match = matchProbe(compiled, probe, NO_INTERFACES);
    if (match !== undefined && match.effective.address.length > 0) matched++;
  };
  for (let i = 0; i < 200_000; i++) once(rs[i % DISTINCT]);
  matched = 0;
  // CPU time, not wall time: the figure stays comparable on a shared, loaded machine
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) once(rs[i % DISTINCT]);
  const used = process.cpuUsage(t0);
  return { micros: (used.user + used.system) / n, matched };
}

for (const family of ['inet6', 'inet'] as const) {
  const rs = records(family);
  const runs = [0, 1, 2].map(() => measure(rs, N));
  const sorted = runs.map((r) => r.micros).sort((a, b) => a - b);
  const name = family === 'inet' ? 'IPv4' : 'IPv6';
  console.log(
    `${name}: decode + probe + match + key, ${N} notifications (${runs[0].matched} matched): median of 3 ` +
      `${sorted[1].toFixed(3)} µs CPU each (runs ${sorted.map((m) => m.toFixed(3)).join(', ')})`,
  );
  record({
    id: `address.${family}`,
    name: `an ${name} notification decoded, probed, matched, keyed: CPU time`,
    value: sorted[1],
    unit: 'µs',
  });
}
