// A real nats-server for the fleet tests (issue 17): on loopback, JetStream
// in a temp directory, one user per host whose permissions are those of
// etc/nats/blocklist.conf (a host publishes only under its own origin),
// an admin user that creates the bucket; alone or as a node of a cluster.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { freePort, tempDir, until } from './support.js';

export const NATS_SERVER = '/usr/sbin/nats-server';

/** Why the fleet tests cannot run here, or undefined. */
export function natsMissing(): string | undefined {
  const r = spawnSync(NATS_SERVER, ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `${NATS_SERVER} is not installed (apt-get install nats-server)`;
}

export const BUCKET = 'blocklist';
export const ADMIN = { user: 'admin', password: 'admin-secret' };

/**
 * What one host may do on the server: publish under its own origin, read
 * the bucket through JetStream's API (stream info, a watch's consumer,
 * direct gets), answer flow control; nothing else.  The same lists as
 * etc/nats/blocklist.conf.
 */
export function hostPermissions(origin: string, bucket = BUCKET): string {
  const stream = `KV_${bucket}`;
  const publish = [
    `$KV.${bucket}.v1.${origin}.>`,
    '$JS.API.INFO',
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.>`,
    `$JS.API.CONSUMER.DELETE.${stream}.>`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.FC.${stream}.>`,
  ];
  return `{ publish: { allow: ${JSON.stringify(publish)} }, subscribe: { allow: ["_INBOX.>"] } }`;
}

export interface NatsOptions {
  /** Hosts (origins), each a user named after it with password `<origin>-secret`. */
  hosts: string[];
  /** Hosts that authenticate with an nkey instead: origin and the user's public key. */
  nkeyHosts?: Record<string, string>;
  /** A node of a cluster: its name, its route port, the other nodes' route ports. */
  cluster?: { name: string; port: number; routes: number[] };
  serverName?: string;
  /** The client port; a free one by default. */
  port?: number;
  dir?: string;
  /** A whole configuration instead (the shipped example's), given the port and the directory. */
  config?: (port: number, dir: string) => string;
}

export class NatsServer {
  private child: ChildProcess | undefined;
  private output = '';

  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly configPath: string,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Started for test `t` (killed after it), or for a benchmark (`undefined`: its caller stops it). */
  static async start(t: TestContext | undefined, o: NatsOptions): Promise<NatsServer> {
    const port = o.port ?? (await freePort());
    const dir = o.dir ?? tempDir('blocklistd-nats-');
    const users = [
      `{ user: ${ADMIN.user}, password: ${ADMIN.password} }`,
      ...o.hosts.map((h) => `{ user: ${h}, password: ${h}-secret, permissions: ${hostPermissions(h)} }`),
      ...Object.entries(o.nkeyHosts ?? {}).map(([h, key]) => `{ nkey: ${key}, permissions: ${hostPermissions(h)} }`),
    ];
    const config =
      o.config?.(port, dir) ??
      [
        `listen: 127.0.0.1:${port}`,
        `server_name: ${o.serverName ?? `n${port}`}`,
        `jetstream { store_dir: "${join(dir, 'js')}" }`,
        `authorization { users: [\n  ${users.join(',\n  ')}\n] }`,
        o.cluster === undefined
          ? ''
          : `cluster { name: ${o.cluster.name}, listen: 127.0.0.1:${o.cluster.port}, ` +
            `routes: [${o.cluster.routes.map((p) => `nats-route://127.0.0.1:${p}`).join(', ')}] }`,
      ].join('\n');
    const configPath = join(dir, 'nats.conf');
    writeFileSync(configPath, config);
    const server = new NatsServer(port, dir, configPath);
    t?.after(() => server.stop());
    await server.run();
    return server;
  }

  /** Starts the process (again, after stop: same port and storage). */
  async run(): Promise<void> {
    this.output = '';
    const child = (this.child = spawn(NATS_SERVER, ['-c', this.configPath], { stdio: ['ignore', 'pipe', 'pipe'] }));
    child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
    await until(() => /Server is ready/.test(this.output) || child.exitCode !== null, 15_000);
    if (child.exitCode !== null) throw new Error(`nats-server exited: ${this.output}`);
  }

  get log(): string {
    return this.output;
  }

  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  }
}

/** A client connection as `user` (default: the admin), closed after the test. */
export async function natsClient(
  t: TestContext,
  servers: string | string[],
  user = ADMIN.user,
  password = user === ADMIN.user ? ADMIN.password : `${user}-secret`,
  caFile?: string,
): Promise<NatsConnection> {
  const nc = await connect({ servers, user, pass: password, reconnect: false, ...(caFile === undefined ? {} : { tls: { caFile } }) });
  t.after(() => nc.close().catch(() => {}));
  return nc;
}

/** The bucket as the admin makes it (the hosts' users may not create streams); `replicas` for a cluster. */
export async function createBucket(nc: NatsConnection, replicas = 1): Promise<KV> {
  return new Kvm(nc).create(BUCKET, { history: 1, replicas });
}
