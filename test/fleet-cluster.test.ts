// The fleet on a three-node NATS cluster (issue 17): JetStream replicates
// the bucket with RAFT (three replicas); with one node killed, blocks still
// propagate between daemons, whichever node they were connected to.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ctl, freePort, startDaemon, tempDir, until } from './support.js';
import { BUCKET, createBucket, natsClient, natsMissing, NatsServer } from './nats.js';

const missing = natsMissing();

describe('fleet on a NATS cluster', { skip: missing }, () => {
  test('three nodes, one killed: a block still goes from A to B', async (t) => {
    const hosts = ['a', 'b'];
    const routes = [await freePort(), await freePort(), await freePort()];
    const nodes = await Promise.all(
      routes.map((port, i) =>
        NatsServer.start(t, { hosts, serverName: `node${i}`, cluster: { name: 'fleet', port, routes: routes.filter((p) => p !== port) } }),
      ),
    );
    const urls = nodes.map((n) => n.url);
    const admin = await natsClient(t, urls);
    // the meta leader is elected a moment after the routes are up
    let created = false;
    for (let i = 0; i < 100 && !created; i++) {
      created = await createBucket(admin, 3).then(
        () => true,
        async () => (await new Promise((resolve) => setTimeout(resolve, 200)), false),
      );
    }
    assert.ok(created, 'the bucket could not be created on the cluster');
    await admin.close();

    const port = await freePort();
    const config = `${port} stream * * * 3 1h\n`;
    const start = async (origin: string, servers: string[]) => {
      const dir = tempDir(`blocklistd-${origin}-`);
      writeFileSync(join(dir, 'fleet.user'), `${origin}:${origin}-secret\n`, { mode: 0o600 });
      const daemon = await startDaemon(
        t,
        config,
        ['--fleet', servers.join(','), '--fleet-name', origin, '--fleet-user-file', join(dir, 'fleet.user')],
        { dir },
      );
      await daemon.waitFor(/fleet: connected to /);
      return daemon;
    };
    // A starts on node 0, B on node 1; both know every node
    const a = await start('a', urls);
    const b = await start('b', [urls[1]!, urls[2]!, urls[0]!]);
    const calls = (address: string): string[] => b.helperCalls().filter((l) => l.includes(` ${address} `));
    /** Waits for B's helper; on a timeout the fleet lines of both logs say where it stopped. */
    const helperOfB = async (address: string, n: number, ms: number): Promise<void> => {
      try {
        await until(() => calls(address).length === n, ms);
      } catch (e) {
        const lines = (log: string): string =>
          log
            .split('\n')
            .filter((l) => l.includes('fleet'))
            .join('\n');
        // and what each node of the cluster said last but its start-up banner (elections, lost routes, JetStream's state)
        const said = nodes.map(
          (node) =>
            `node ${node.port}:\n` +
            node.log
              .split('\n')
              .filter((l) => /\[(WRN|ERR)\]|RAFT|JetStream|leader|[Rr]oute/.test(l) && !/trying to connect to route/.test(l))
              .slice(-25)
              .join('\n'),
        );
        // and whether each node still answers for the bucket's stream now (its leader, replicas, last sequence, consumers):
        // a cluster that does not answer, or clients stalled on one that does
        const answers = await Promise.all(
          nodes.map(async (node) => {
            try {
              const nc = await natsClient(t, node.url);
              const info = (await nc.request(`$JS.API.STREAM.INFO.KV_${BUCKET}`, '', { timeout: 3000 })).json<{
                cluster?: unknown;
                state?: { last_seq?: number; consumer_count?: number };
              }>();
              return `node ${node.port} now: ${JSON.stringify({ cluster: info.cluster, state: info.state })}`;
            } catch (error) {
              return `node ${node.port} now: ${(error as Error).message}`;
            }
          }),
        );
        throw new Error(
          `${(e as Error).message}\nA:\n${lines(a.stderr)}\nB:\n${lines(b.stderr)}\n${said.join('\n')}\n${answers.join('\n')}`,
        );
      }
    };

    assert.equal((await ctl(['block', '-p', String(port), '--control', a.control, '198.51.100.30'])).code, 0);
    await helperOfB('198.51.100.30', 1, 10_000);

    // the node A is connected to dies: A moves to another, the bucket keeps its quorum
    const connected = /fleet: connected to (\S+)/.exec(a.stderr)![1]!;
    const victim = nodes.find((n) => connected.endsWith(`:${n.port}`))!;
    await victim.stop();
    await a.waitFor(/fleet: reconnected to /, 0, 30_000);
    assert.equal((await ctl(['block', '-p', String(port), '--control', a.control, '198.51.100.31'])).code, 0);
    await helperOfB('198.51.100.31', 1, 60_000);
    assert.equal((await ctl(['unblock', '-p', String(port), '--control', a.control, '198.51.100.30'])).code, 0);
    await helperOfB('198.51.100.30', 2, 60_000);
    assert.match(calls('198.51.100.30')[1]!, /^rem /);
    // a watch whose consumer was on the killed node is started again (fleet.ts checkWatch): said when it happened
    for (const [name, daemon] of [['A', a] as const, ['B', b] as const])
      for (const line of daemon.stderr.split('\n').filter((l) => l.includes('stalled at'))) t.diagnostic(`${name}: ${line}`);
  });
});
