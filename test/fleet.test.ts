// Blocks shared through NATS JetStream key-value (issue 17): three daemons
// (own sockets, databases, recording helpers) and a real nats-server on
// loopback.  A block made on A reaches B and C; its release releases it
// there; a daemon started later learns every block in force; publishes
// survive a server down and a daemon restart; a hostile value is ignored.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { Kvm } from '@nats-io/kv';
import { nkeys } from '@nats-io/transport-node';
import { ctl, DaemonProcess, freePort, parsed, repoRoot, requestStatus, run, startDaemon, tempDir, until, type Json } from './support.js';
import { BUCKET, createBucket, natsClient, natsMissing, NatsServer } from './nats.js';
import { keyOf } from '../src/fleet/record.js';

const missing = natsMissing();

/** The arguments that put a daemon in the fleet as `origin`, its password in a file beside its database. */
function fleetArgs(server: string | string[], origin: string, dir: string, more: string[] = []): string[] {
  const userFile = join(dir, 'fleet.user');
  writeFileSync(userFile, `${origin}:${origin}-secret\n`, { mode: 0o600 });
  return ['--fleet', [server].flat().join(','), '--fleet-name', origin, '--fleet-user-file', userFile, ...more];
}

interface Host {
  daemon: DaemonProcess;
  dir: string;
  origin: string;
}

async function startHost(
  t: TestContext,
  server: string | string[],
  origin: string,
  config: string,
  { dir = tempDir(`blocklistd-${origin}-`), more = [] as string[], env = {} as Record<string, string> } = {},
): Promise<Host> {
  const daemon = await startDaemon(t, config, fleetArgs(server, origin, dir, more), { dir, env });
  await daemon.waitFor(/fleet: connected to /);
  return { daemon, dir, origin };
}

/** The helper calls of `host` that add or remove `address`. */
const callsOf = (host: Host, address: string): string[] =>
  host.daemon.helperCalls().filter((l) => / (add|rem) /.test(` ${l}`) && l.includes(` ${address} `));

/** `blocklistctl dump -a --json` through the daemon: every entry and learned block. */
async function dumpJson(host: Host): Promise<Json[]> {
  const r = await ctl(['dump', '-a', '--json', '--control', host.daemon.control]);
  assert.equal(r.code, 0, r.stderr);
  return parsed(r).result as Json[];
}

/** The daemon's fleet link as `status` shows it. */
const status = async (host: Host): Promise<Json> => requestStatus(host.daemon);

/** Waits for an asynchronous condition (a status read over the control socket). */
async function eventually(condition: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms: ${condition.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('fleet: blocks shared through NATS JetStream', { skip: missing }, () => {
  test(
    'a block on A reaches B and C and its release releases it there; ' + 'a daemon started later learns it; a hostile value is ignored',
    async (t) => {
      const nats = await NatsServer.start(t, { hosts: ['a', 'b', 'c', 'd'] });
      const admin = await natsClient(t, nats.url);
      await createBucket(admin);
      const port = await freePort();
      const config = `${port} stream * * * 3 1h\n`;
      const a = await startHost(t, nats.url, 'a', config);
      const b = await startHost(t, nats.url, 'b', config);
      const c = await startHost(t, nats.url, 'c', config);

      let r = await ctl(['block', '-p', String(port), '--control', a.daemon.control, '198.51.100.7']);
      assert.equal(r.code, 0, r.stderr);
      for (const host of [b, c]) {
        await host.daemon.waitFor(/fleet: blocked 198\.51\.100\.7\/32:\d+ \(blocklistd tcp\) from a for \d+ seconds/);
        await until(() => callsOf(host, '198.51.100.7').length === 1);
        assert.match(callsOf(host, '198.51.100.7')[0]!, new RegExp(`^add blocklistd tcp 198\\.51\\.100\\.7 32 ${port} ''$`));
      }
      // A never applies its own block a second time
      assert.equal(callsOf(a, '198.51.100.7').length, 1);

      // a daemon started later learns every block in force
      const d = await startHost(t, nats.url, 'd', config);
      await until(() => callsOf(d, '198.51.100.7').length === 1);
      const learned = (await dumpJson(d)).filter((e) => e.address === '198.51.100.7');
      assert.equal(learned.length, 1);
      assert.equal(learned[0]!.origin, 'a');

      // a hostile value under A's prefix (as A's user could put it): logged and ignored
      const kv = await new Kvm(admin).open(BUCKET);
      await kv.put(
        'v1.a.4.203=2E0=2E113=2E5.32.tcp.22.blocklistd',
        JSON.stringify({
          origin: 'a',
          name: 'x; rm -rf /',
          family: 4,
          address: '203.0.113.5',
          mask: 32,
          proto: 'tcp',
          port: 22,
          duration: 60,
          start: 1,
          end: 61,
        }),
      );
      await kv.put('v1.a.4.203=2E0=2E113=2E6.32.tcp.22.blocklistd', 'not json');
      for (const host of [b, c]) await host.daemon.waitFor(/fleet: ignored v1\.a\.4\.203=2E0=2E113=2E5.*bad name/);
      await eventually(async () => (await status(b)).fleet.rejected >= 2);
      assert.equal(callsOf(b, '203.0.113.5').length, 0);

      // released on A: released on B, C and D
      r = await ctl(['unblock', '-p', String(port), '--control', a.daemon.control, '198.51.100.7']);
      assert.equal(r.code, 0, r.stderr);
      for (const host of [b, c, d]) {
        await until(() => callsOf(host, '198.51.100.7').length === 2);
        assert.match(callsOf(host, '198.51.100.7')[1]!, /^rem blocklistd tcp 198\.51\.100\.7 32 \d+ /);
      }
      assert.equal((await dumpJson(b)).filter((e) => e.address === '198.51.100.7').length, 0);
      const s = await status(b);
      assert.equal(s.fleet.connected, true);
      assert.equal(s.fleet.applied, 1);
      assert.equal(s.fleet.released, 1);
      assert.equal(s.fleet.pending, 0);

      // a flush by hand on A deletes its keys: B releases them
      assert.equal((await ctl(['block', '-p', String(port), '--control', a.daemon.control, '198.51.100.8'])).code, 0);
      await until(() => callsOf(b, '198.51.100.8').length === 1);
      assert.equal((await ctl(['flush', '--control', a.daemon.control, 'blocklistd'])).code, 0);
      await until(() => callsOf(b, '198.51.100.8').length === 2);
      assert.match(callsOf(b, '198.51.100.8')[1]!, /^rem /);

      // a block renewed on A (blocked again by hand) moves its end on B too, without a second add
      const expires = async (): Promise<number | undefined> =>
        (await dumpJson(b)).find((e) => e.address === '198.51.100.60')?.expires as number | undefined;
      assert.equal((await ctl(['block', '-p', String(port), '-t', '20', '--control', a.daemon.control, '198.51.100.60'])).code, 0);
      await eventually(async () => (await expires()) !== undefined);
      const first = (await expires())!;
      await new Promise((resolve) => setTimeout(resolve, 3000));
      assert.equal((await ctl(['block', '-p', String(port), '-t', '20', '--control', a.daemon.control, '198.51.100.60'])).code, 0);
      await eventually(async () => (await expires())! >= first + 2);
      assert.equal(callsOf(b, '198.51.100.60').length, 1);
    },
  );

  test(
    'the server down: A blocks locally and keeps its publishes, across a restart of A too; ' + 'B catches up when the server is back',
    async (t) => {
      const nats = await NatsServer.start(t, { hosts: ['a', 'b'] });
      const admin = await natsClient(t, nats.url);
      await createBucket(admin);
      await admin.close();
      const port = await freePort();
      const config = `${port} stream * * * 3 1h\n`;
      const metricsPort = await freePort();
      let a = await startHost(t, nats.url, 'a', config, { more: ['--metrics', `127.0.0.1:${metricsPort}`] });
      const b = await startHost(t, nats.url, 'b', config);

      await nats.stop();
      await a.daemon.waitFor(/fleet: disconnected/);
      const r = await ctl(['block', '-p', String(port), '--control', a.daemon.control, '198.51.100.20', '198.51.100.21']);
      assert.equal(r.code, 0, r.stderr);
      await eventually(async () => (await status(a)).fleet.pending === 2);
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(metrics, /^blocklistd_fleet_connected 0$/m);
      assert.match(metrics, /^blocklistd_fleet_pending 2$/m);
      // A restarts while the server is down: nothing of what it must publish is lost
      await a.daemon.stop();
      const restarted = await startDaemon(t, config, fleetArgs(nats.url, 'a', a.dir), { dir: a.dir });
      a = { ...a, daemon: restarted };
      assert.equal((await status(a)).fleet.pending, 2);

      await nats.run();
      await eventually(async () => (await status(a)).fleet.pending === 0, 20_000);
      for (const address of ['198.51.100.20', '198.51.100.21']) await until(() => callsOf(b, address).length === 1, 20_000);
      assert.equal((await status(b)).fleet.blocks, 2);
    },
  );

  test('one element, two holders: added once, removed by the last holder; an allow-list rule wins over the fleet', async (t) => {
    const nats = await NatsServer.start(t, { hosts: ['a', 'b', 'c'] });
    await createBucket(await natsClient(t, nats.url));
    const port = await freePort();
    const config = `${port} stream * * * 3 1h\n`;
    const a = await startHost(t, nats.url, 'a', config);
    const b = await startHost(t, nats.url, 'b', config);
    // C never blocks 198.51.100.0/24 on that port
    const c = await startHost(t, nats.url, 'c', `${config}[remote]\n198.51.100.0/24:${port} * * * = * =\n`);
    const x = '198.51.100.9';
    const block = async (host: Host): Promise<void> =>
      assert.equal((await ctl(['block', '-p', String(port), '--control', host.daemon.control, x])).code, 0);
    const unblock = async (host: Host): Promise<void> =>
      assert.equal((await ctl(['unblock', '-p', String(port), '--control', host.daemon.control, x])).code, 0);

    await block(b);
    await block(a);
    await a.daemon.waitFor(/fleet: blocked 198\.51\.100\.9\/32:\d+ .* from b/);
    await b.daemon.waitFor(/fleet: blocked 198\.51\.100\.9\/32:\d+ .* from a/);
    // each host added the element once: its own block, or the one learned first
    await eventually(async () => (await status(c)).fleet.allowListed === 2);
    assert.equal(callsOf(a, x).length, 1);
    assert.equal(callsOf(b, x).length, 1);
    assert.deepEqual(callsOf(c, x), []);
    // A lifts its block: B's still holds the element on A, and on B its own
    await unblock(a);
    await b.daemon.waitFor(/fleet: released 198\.51\.100\.9\/32:\d+ from a: deleted by its origin/);
    assert.equal(callsOf(a, x).length, 1);
    assert.equal(callsOf(b, x).length, 1);
    // B lifts its own: now both remove it, once each
    await unblock(b);
    await a.daemon.waitFor(/fleet: released 198\.51\.100\.9\/32:\d+ from b: deleted by its origin/);
    await until(() => callsOf(a, x).length === 2);
    assert.match(callsOf(a, x)[1]!, /^rem /);
    assert.equal(callsOf(b, x).length, 2);
    assert.match(callsOf(b, x)[1]!, /^rem /);
    assert.deepEqual(callsOf(c, x), []);
  });

  test(
    '--fleet-trust; a learned block ends at its end time without its origin; ' +
      'a start far ahead (a clock hours fast) counts from its arrival; restored with -r',
    async (t) => {
      const nats = await NatsServer.start(t, { hosts: ['a', 'b'] });
      const admin = await natsClient(t, nats.url);
      await createBucket(admin);
      const asA = await new Kvm(await natsClient(t, nats.url, 'a')).open(BUCKET);
      const port = await freePort();
      const dir = tempDir('blocklistd-b-');
      let b = await startHost(t, nats.url, 'b', `${port} stream * * * 3 1h\n`, { dir, more: ['--fleet-trust', 'a'] });
      const now = Math.floor(Date.now() / 1000);
      // an origin outside --fleet-trust (put by the admin: no host user may) is not applied
      const stranger = {
        origin: 'x',
        name: 'blocklistd',
        family: 4 as const,
        address: '198.51.100.59',
        mask: 32,
        proto: 'tcp',
        port,
        duration: 60,
        start: now,
        end: now + 60,
        reason: 'limit',
      };
      await (await new Kvm(admin).open(BUCKET)).put(keyOf(stranger), JSON.stringify(stranger));
      await b.daemon.waitFor(/fleet: ignored v1\.x\..*: origin x is not in --fleet-trust/);
      assert.deepEqual(callsOf(b, '198.51.100.59'), []);
      const put = async (address: string, start: number, duration: number): Promise<void> => {
        const block = {
          origin: 'a',
          name: 'blocklistd',
          family: 4 as const,
          address,
          mask: 32,
          proto: 'tcp',
          port,
          duration,
          start,
          end: start + duration,
          reason: 'limit',
        };
        await asA.put(keyOf(block), JSON.stringify(block));
      };
      await put('198.51.100.50', now, 3);
      await put('198.51.100.51', now + 3600, 3);
      await put('198.51.100.52', now, 3600);
      for (const x of ['198.51.100.50', '198.51.100.51', '198.51.100.52']) await until(() => callsOf(b, x).length === 1);
      for (const x of ['198.51.100.50', '198.51.100.51']) {
        await b.daemon.waitFor(new RegExp(`fleet: released ${x.replace(/\./g, '\\.')}/32:${port} from a: its end passed`), 0, 10_000);
        await until(() => callsOf(b, x).length === 2);
        assert.match(callsOf(b, x)[1]!, /^rem /);
      }
      // B restarts with -r: the block learned is in the filter again, not published
      await b.daemon.stop();
      const restarted = await startDaemon(t, `${port} stream * * * 3 1h\n`, ['-r', ...fleetArgs(nats.url, 'b', dir)], { dir });
      b = { ...b, daemon: restarted };
      await until(() => callsOf(b, '198.51.100.52').length === 2);
      assert.match(callsOf(b, '198.51.100.52')[1]!, /^add /);
      assert.equal((await status(b)).fleet.blocks, 1);
      assert.equal((await status(b)).fleet.published, 0);
    },
  );

  test(
    '--fleet-creds with a user nkey seed: the host authenticates with its nkey; ' + 'an IPv6 network and a block of every port cross too',
    async (t) => {
      const user = nkeys.createUser();
      const nats = await NatsServer.start(t, { hosts: ['a'], nkeyHosts: { n: user.getPublicKey() } });
      await createBucket(await natsClient(t, nats.url));
      const dir = tempDir('blocklistd-n-');
      writeFileSync(join(dir, 'n.nk'), `${new TextDecoder().decode(user.getSeed())}\n`, { mode: 0o600 });
      const port = await freePort();
      const config = `${port} stream * * * 3 1h\n`;
      const n = await startDaemon(t, config, ['--fleet', nats.url, '--fleet-name', 'n', '--fleet-creds', join(dir, 'n.nk')], { dir });
      await n.waitFor(/fleet: connected to /);
      const a = await startHost(t, nats.url, 'a', config);
      assert.equal((await ctl(['block', '-p', String(port), '--control', n.control, '198.51.100.70'])).code, 0);
      await until(() => callsOf(a, '198.51.100.70').length === 1);
      // an IPv6 network, and a block of every port and protocol
      assert.equal((await ctl(['block', '-p', String(port), '--control', n.control, '2001:db8:7::/48'])).code, 0);
      await until(() => callsOf(a, '2001:db8:7::').length === 1);
      assert.match(callsOf(a, '2001:db8:7::')[0]!, new RegExp(`^add blocklistd tcp 2001:db8:7:: 48 ${port} ''$`));
      assert.equal((await ctl(['block', '-t', '1h', '--control', n.control, '198.51.100.71'])).code, 0);
      await until(() => callsOf(a, '198.51.100.71').length === 1);
      assert.match(callsOf(a, '198.51.100.71')[0]!, /^add blocklistd '' 198\.51\.100\.71 32 '' ''$/);
    },
  );

  test("a host cannot forge another origin's key: the server refuses the publish", async (t) => {
    const nats = await NatsServer.start(t, { hosts: ['a', 'b'] });
    const admin = await natsClient(t, nats.url);
    const kv = await createBucket(admin);
    const asA = await natsClient(t, nats.url, 'a');
    const kvA = await new Kvm(asA).open(BUCKET);
    const own = keyOf({ origin: 'a', family: 4, address: '192.0.2.1', mask: 32, proto: 'tcp', port: 22, name: 'blocklistd' });
    const forged = keyOf({ origin: 'b', family: 4, address: '192.0.2.1', mask: 32, proto: 'tcp', port: 22, name: 'blocklistd' });
    await kvA.put(own, '{}');
    await assert.rejects(kvA.put(forged, '{}'), /permission|timeout|503|no responders/i);
    assert.equal(await kv.get(forged), null);
    assert.notEqual(await kv.get(own), null);
  });
  test('a reload that allow-lists a learned block releases it; a learned block of an allow-listed address is not applied', async (t) => {
    const nats = await NatsServer.start(t, { hosts: ['a', 'b'] });
    await createBucket(await natsClient(t, nats.url));
    const port = await freePort();
    const rule = `${port} stream * * * 3 1h\n`;
    const a = await startHost(t, nats.url, 'a', rule);
    const b = await startHost(t, nats.url, 'b', rule);
    const x = '198.51.100.30';
    assert.equal((await ctl(['block', '-p', String(port), '--control', a.daemon.control, x])).code, 0);
    await until(() => callsOf(b, x).length === 1);
    writeFileSync(b.daemon.config, `${rule}[remote]\n${x} * * * = * =\n`);
    const reload = await ctl(['reload', '--control', b.daemon.control]);
    assert.equal(reload.code, 0, reload.stderr);
    await b.daemon.waitFor(new RegExp(`fleet: released ${x.replace(/\./g, '\\.')}/32:${port} from a: a local allow-list rule covers it`));
    await until(() => callsOf(b, x).length === 2);
    assert.match(callsOf(b, x)[1]!, /^rem /);
    // blocked again on A: B leaves it out
    assert.equal((await ctl(['unblock', '-p', String(port), '--control', a.daemon.control, x])).code, 0);
    assert.equal((await ctl(['block', '-p', String(port), '--control', a.daemon.control, x])).code, 0);
    await eventually(async () => (await status(b)).fleet.allowListed >= 2);
    assert.equal(callsOf(b, x).length, 2);
  });
});

test('--fleet: a plain-text URL to another host is a usage error (exit 2) unless --fleet-insecure', async () => {
  const r = await run(process.execPath, [join(repoRoot, 'bin/blocklistd'), '--check', '--fleet', 'nats://192.0.2.1:4222']);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    new RegExp(
      "^blocklistd: --fleet server 'nats://192\\.0\\.2\\.1:4222' is plain text to another host: " +
        'use tls:// \\(and --fleet-ca\\), or --fleet-insecure to allow it\n',
    ),
  );
});
