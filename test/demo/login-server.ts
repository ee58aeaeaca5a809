// A small TCP login server that reports to blocklistd, as sshd does with
// libblocklist: a client sends one line `user password`, the server answers
// `welcome <user>` or `denied` and closes a second later.  A wrong password is reported as
// AUTH_FAIL, an unknown user as BAD_USER, a good login as AUTH_OK.
//
// The report goes through this package's client API (Blocklist.notify with
// the accepted connection), or, with `blprobe`, through the independent C
// client: it is run for each outcome with the client's address (`-a`, the
// blocklist_sa form), on a loopback listener of the same port.
//
// Standalone:
//   node dist/test/demo/login-server.js [-l address]... [-p port] [-s sockpath]
//        [-u user:password]... [--blprobe path]
// prints `listening on <address>:<port>` for each address, then one line
// per login; SIGTERM or SIGINT stop it.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AUTH_FAIL, AUTH_OK, BAD_USER, Blocklist, type BlocklistAction } from '../../src/index.js';

export type LoginOutcome = 'ok' | 'fail' | 'baduser';

export interface LoginEvent {
  /** The client's address as the server saw it (IPv4 dotted, IPv6 without brackets). */
  remote: string;
  user: string;
  outcome: LoginOutcome;
  /** The notification reached the daemon's socket (client API) or blprobe exited 0. */
  reported: boolean;
}

export interface LoginServerOptions {
  /** The addresses to listen on (default 127.0.0.1). */
  hosts?: string[];
  /** The port; 0 picks a free one (the same for every address). */
  port?: number;
  /** The daemon's socket (default: the client API's default, /var/run/blocklistd.sock). */
  socketPath?: string;
  /** user → password (default DEFAULT_USERS). */
  users?: Record<string, string>;
  /** Report with this blprobe binary instead of the client API. */
  blprobe?: string;
  /** Called after each login has been reported and answered. */
  onLogin?: (event: LoginEvent) => void;
}

export const DEFAULT_USERS: Readonly<Record<string, string>> = {
  alice: 'wonderland',
  bob: 'builder',
  root: 'correct-horse-battery-staple',
};

const ACTION_NAME = new Map<BlocklistAction, string>([
  [AUTH_OK, 'ok'],
  [AUTH_FAIL, 'fail'],
  [BAD_USER, 'baduser'],
]);

/** How long a client may take to send its line. */
const IDLE_MS = 5000;

/**
 * How long the server keeps its end of a connection open after answering.
 * The daemon reads the client's address from the connection it is passed
 * (getpeername): once both ends have closed, the kernel has no peer to give
 * and the notification is dropped (`unconnected socket with no peer in
 * message`, protocol.md §6).  A client that hangs up at once after `denied`
 * would race the daemon; sshd, too, keeps the connection while it reports.
 */
const LINGER_MS = 1000;

export class LoginServer {
  private readonly servers: net.Server[] = [];
  private readonly connections = new Set<net.Socket>();
  private readonly client: Blocklist | undefined;
  port = 0;

  private constructor(private readonly o: LoginServerOptions) {
    this.client = o.blprobe === undefined ? new Blocklist({ socketPath: o.socketPath, logger: null }) : undefined;
  }

  static async start(o: LoginServerOptions = {}): Promise<LoginServer> {
    const s = new LoginServer(o);
    try {
      for (const host of o.hosts ?? ['127.0.0.1']) {
        // half-open: a client's FIN must not close our end before LINGER_MS
        const server = net.createServer({ allowHalfOpen: true }, (conn) => s.serve(conn));
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host, port: s.port || o.port || 0, ipv6Only: host.includes(':') }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        s.servers.push(server);
        s.port = (server.address() as net.AddressInfo).port;
      }
    } catch (e) {
      await s.close();
      throw e;
    }
    return s;
  }

  /** `host:port` of each listener. */
  get addresses(): string[] {
    return this.servers.map((server) => {
      const a = server.address() as net.AddressInfo;
      return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    });
  }

  private serve(conn: net.Socket): void {
    this.connections.add(conn);
    conn.on('close', () => this.connections.delete(conn));
    conn.on('error', () => {});
    conn.setTimeout(IDLE_MS, () => conn.destroy());
    let line = '';
    const onData = (data: Buffer): void => {
      line += data.toString('latin1');
      const nl = line.indexOf('\n');
      if (nl === -1 && line.length < 512) return;
      conn.off('data', onData);
      void this.login(conn, (nl === -1 ? line : line.slice(0, nl)).trim());
    };
    conn.on('data', onData);
  }

  private async login(conn: net.Socket, line: string): Promise<void> {
    const [user = '', password = ''] = line.split(/\s+/, 2);
    const users = this.o.users ?? DEFAULT_USERS;
    const known = Object.hasOwn(users, user);
    const outcome: LoginOutcome = known && users[user] === password ? 'ok' : known ? 'fail' : 'baduser';
    const action = outcome === 'ok' ? AUTH_OK : outcome === 'fail' ? AUTH_FAIL : BAD_USER;
    const text = outcome === 'ok' ? `login ${user}` : outcome === 'fail' ? `bad password for ${user}` : `unknown user ${user}`;
    // report first, then answer: as sshd does
    const reported = await this.report(action, conn, text);
    const remote = conn.remoteAddress ?? '?';
    if (!conn.destroyed) {
      conn.write(outcome === 'ok' ? `welcome ${user}\n` : 'denied\n');
      setTimeout(() => conn.end(), LINGER_MS).unref();
    }
    this.o.onLogin?.({ remote, user, outcome, reported });
  }

  private report(action: BlocklistAction, conn: net.Socket, text: string): Promise<boolean> {
    if (this.client !== undefined) return Promise.resolve(this.client.notify(action, conn, text));
    // blprobe reports the client's address explicitly, passing a listener of
    // the same port on the loopback address of the client's family
    const remote = conn.remoteAddress ?? '';
    const v4 = net.isIPv4(remote) || remote.startsWith('::ffff:');
    const args = [
      '-s',
      this.o.socketPath ?? '/var/run/blocklistd.sock',
      '-L',
      v4 ? '127.0.0.1' : '::1',
      '-p',
      String(conn.localPort),
      '-a',
      remote.replace(/^::ffff:/, ''),
      '-t',
      ACTION_NAME.get(action)!,
      '-m',
      text,
      '-w',
      '5000',
    ];
    return new Promise((resolve) => {
      const child = spawn(this.o.blprobe!, args, { stdio: ['ignore', 'ignore', 'inherit'] });
      child.on('error', () => resolve(false));
      child.on('exit', (code) => resolve(code === 0));
    });
  }

  async close(): Promise<void> {
    for (const conn of this.connections) conn.destroy();
    await Promise.all(this.servers.map((server) => new Promise((resolve) => server.close(resolve))));
    this.client?.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      listen: { type: 'string', short: 'l', multiple: true },
      port: { type: 'string', short: 'p', default: '2222' },
      socket: { type: 'string', short: 's' },
      user: { type: 'string', short: 'u', multiple: true },
      blprobe: { type: 'string' },
    },
  });
  const users =
    values.user === undefined ? undefined : Object.fromEntries(values.user.map((u) => [u.split(':')[0], u.split(':').slice(1).join(':')]));
  const server = await LoginServer.start({
    hosts: values.listen,
    port: Number(values.port),
    socketPath: values.socket,
    users,
    blprobe: values.blprobe,
    onLogin: (e) => console.log(`login ${e.outcome} user=${e.user} from=${e.remote} reported=${e.reported}`),
  });
  for (const a of server.addresses) console.log(`listening on ${a}`);
  const stop = (): void => void server.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    console.error(`login-server: ${(e as Error).message}`);
    process.exit(1);
  });
}
