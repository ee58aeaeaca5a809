// The notification and control sockets under attack by a local user
// (issue 13): reports for the host's ports from a network namespace of the
// user's own, explicit peers for TCP sockets, a symlink swapped in for a
// socket file while it is set up.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { chmodSync, lstatSync, mkdirSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ControlServer, ControlSetupError } from '../src/daemon/control.js';
import { constants, lingeringClosed, setSocketMode } from '../src/protocol/native.js';
import { encodeNotification } from '../src/protocol/wire.js';
import { burst } from './burst.js';
import { AUTH_FAIL, Blocklist } from '../src/index.js';
import { controlPathFor } from '../src/protocol/control.js';
import { NotificationSocket, SocketSetupError } from '../src/protocol/server.js';
import { toText } from '../src/conf/ip.js';
import {
  DaemonProcess,
  LogCollector,
  Receiver,
  controlStatus,
  isRoot,
  openDescriptors,
  repoRoot,
  run,
  sharedTree,
  tempDir,
  until,
} from './support.js';

const NOBODY = 65534;

/** A directory nobody may write (as a chroot's var/run listed with -P), below a world-searchable one. */
function writableByNobody(): string {
  const root = tempDir('blocklistd-attack-');
  chmodSync(root, 0o755);
  const dir = join(root, 'run');
  mkdirSync(dir, { mode: 0o777 });
  chmodSync(dir, 0o777);
  return dir;
}

/** A root-owned file of mode 0600: what the attacker wants opened to everybody. */
function secretFile(): string {
  const path = join(tempDir('blocklistd-secret-'), 'shadow');
  writeFileSync(path, 'secret\n', { mode: 0o600 });
  return path;
}

/**
 * Runs, as nobody, a loop that replaces the socket file at `path` by a
 * symlink to `target` as soon as it appears; resolves, once it runs, to a
 * function that stops it and resolves to the number of swaps.  It ends by
 * itself after a minute, should this process die first.
 */
async function startSwapper(path: string, target: string): Promise<() => Promise<number>> {
  const script = `
    const fs = require('node:fs');
    const [path, target] = process.argv.slice(1);
    const tmp = path + '.swap';
    let swaps = 0;
    let stop = false;
    process.on('SIGTERM', () => (stop = true));
    setTimeout(() => (stop = true), 60000).unref();
    const loop = () => {
      if (stop) return console.log(swaps);
      for (let i = 0; i < 2000; i++) {
        try {
          if (fs.lstatSync(path).isSocket()) {
            try { fs.unlinkSync(tmp); } catch {}
            fs.symlinkSync(target, tmp);
            fs.renameSync(tmp, path);
            swaps++;
          }
        } catch {}
      }
      setImmediate(loop);
    };
    console.log('running');
    loop();`;
  const child = spawn(process.execPath, ['-e', script, path, target], { uid: NOBODY, gid: NOBODY, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await new Promise<void>((resolve) =>
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('running\n')) resolve();
    }),
  );
  return async () => {
    child.kill('SIGTERM');
    await exited;
    return Number(out.slice('running\n'.length).trim());
  };
}

/** A connected loopback TCP pair: the accepted socket, and a close for both. */
async function tcpPair(): Promise<{ accepted: net.Socket; close: () => void }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const a = await accepted;
  return {
    accepted: a,
    close: () => {
      a.destroy();
      client.destroy();
      server.close();
    },
  };
}

/** Keeps a socket a moment, for the swapper to see it, then closes it. */
async function lingerThenClose(socket: { close(): void }): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 2));
  socket.close();
}

describe('socket files are never chmod-ed through a symlink', () => {
  test('setSocketMode refuses a symlink and a file that is no socket, and sets a socket', () => {
    const dir = tempDir();
    const target = join(dir, 'target');
    writeFileSync(target, '', { mode: 0o600 });
    symlinkSync(target, join(dir, 'link'));
    assert.equal(setSocketMode(join(dir, 'link'), 0o666, -1), constants.ELOOP);
    assert.equal(setSocketMode(target, 0o666, -1), constants.ENOTSOCK);
    assert.equal(statSync(target).mode & 0o777, 0o600);
    const socket = new NotificationSocket(join(dir, 's.sock'), { log: () => {}, mode: 0o600 });
    assert.equal(lstatSync(join(dir, 's.sock')).mode & 0o777, 0o600);
    assert.equal(setSocketMode(join(dir, 's.sock'), 0o640, process.getgid!()), 0);
    assert.equal(lstatSync(join(dir, 's.sock')).mode & 0o777, 0o640);
    socket.close();
  });

  const ROUNDS = 40;
  test(
    `a local user swapping in a symlink during set-up: ${ROUNDS} notification and control sockets`,
    { skip: !isRoot && 'needs root to run the attacker as nobody' },
    async () => {
      const dir = writableByNobody();
      const target = secretFile();
      const notify = join(dir, 'blocklistd.sock');
      const control = join(dir, 'blocklistd.ctl');
      let refused = 0;
      for (const [path, open] of [
        [notify, async () => lingerThenClose(new NotificationSocket(notify, { log: () => {} }))],
        [
          control,
          async () => lingerThenClose(await ControlServer.open({ path: control, log: new LogCollector().log, handle: async () => ({}) })),
        ],
      ] as const) {
        const stop = await startSwapper(path, target);
        try {
          for (let round = 0; round < ROUNDS; round++) {
            try {
              await open();
            } catch (e) {
              // a swap between bind and the mode, or a link left at the path: set-up fails, the target is untouched
              assert.ok(e instanceof SocketSetupError || e instanceof ControlSetupError, String(e));
              assert.match(
                (e as Error).message,
                new RegExp(
                  [
                    'Too many levels of symbolic links',
                    'Socket operation on non-socket',
                    'No such file',
                    'Address already in use',
                    'EADDRINUSE',
                    'is not a socket',
                  ].join('|'),
                ),
              );
              refused++;
            }
            try {
              unlinkSync(path);
            } catch {
              // the daemon removed it, or the swapper's link is gone
            }
            assert.equal(statSync(target).mode & 0o777, 0o600, `round ${round}: the target's mode changed`);
          }
        } finally {
          assert.ok((await stop()) > 0, 'the swapper never saw the socket');
        }
      }
      assert.equal(statSync(target).mode & 0o777, 0o600);
      console.log(`# ${refused} of ${2 * ROUNDS} set-ups refused because a symlink was swapped in`);
    },
  );
});

/**
 * A server reporting, as `nobody`, a socket it made on `port`: `mode`
 * tcp-explicit (its listening socket with the explicit peer 203.0.113.9),
 * tcp-connected (an accepted connection from 127.0.0.1) or udp-explicit.
 * With `namespace`, in a user and network namespace of its own (unshare
 * -rn), where port 22 is its to bind.
 */
async function reportAsNobody(
  socketPath: string,
  mode: 'tcp-explicit' | 'tcp-connected' | 'udp-explicit',
  port: number,
  namespace: boolean,
): Promise<void> {
  const script = `
    import net from 'node:net';
    import dgram from 'node:dgram';
    import { Blocklist, AUTH_FAIL, AUTH_OK } from ${JSON.stringify(join(sharedTree(), 'dist/src/index.js'))};
    const client = new Blocklist({ socketPath: ${JSON.stringify(socketPath)} });
    const peer = { address: '203.0.113.9', port: 5 };
    const mode = ${JSON.stringify(mode)};
    let ok;
    if (mode === 'udp-explicit') {
      const s = dgram.createSocket('udp4');
      await new Promise((r) => s.bind(${port}, '127.0.0.1', r));
      ok = client.notifyPeer(AUTH_FAIL, s, peer, 'forged');
      s.close();
    } else {
      const server = net.createServer().listen(${port}, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      if (mode === 'tcp-explicit') {
        ok = client.notifyPeer(AUTH_OK, server._handle.fd, peer, 'forged');
      } else {
        const accepted = new Promise((r) => server.once('connection', r));
        const c = net.connect(server.address().port, '127.0.0.1');
        const conn = await accepted;
        ok = client.notify(AUTH_FAIL, conn, 'forged');
        conn.destroy();
        c.destroy();
      }
      server.close();
    }
    client.close();
    if (!ok) process.exit(2);`;
  const node = ['--input-type=module', '-e', script];
  const r = namespace
    ? await run('unshare', ['-rn', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, ...node], {
        uid: NOBODY,
        gid: NOBODY,
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
      })
    : await run(process.execPath, node, { uid: NOBODY, gid: NOBODY });
  assert.equal(r.code, 0, `${mode}: ${r.stdout}${r.stderr}`);
}

/** Whether an unprivileged user may make a user and network namespace here (kernel.unprivileged_userns_clone, AppArmor). */
const userNamespaces = isRoot && spawnSync('unshare', ['-rn', 'true'], { uid: NOBODY, gid: NOBODY }).status === 0;
const noUserNamespaces = !userNamespaces && 'unprivileged users may not create namespaces here: the attack cannot be made';

describe('reports a local user may not make', { skip: !isRoot && 'needs root to run a client as nobody' }, () => {
  let receiver: Receiver;
  before(() => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    receiver = new Receiver(join(dir, 'blocklistd.sock'));
  });
  after(() => receiver.close());
  const refusals = (text: string): number =>
    receiver.logs.lines.filter((l) => l.level === 'err' && l.message.startsWith(text) && / from uid 65534 \(pid \d+\)$/.test(l.message))
      .length;

  test("no report for a socket of a network namespace of their own, for the host's port 22", { skip: noUserNamespaces }, async () => {
    const before = receiver.received.length;
    const modes = ['tcp-explicit', 'tcp-connected', 'udp-explicit'] as const;
    for (const mode of modes) await reportAsNobody(receiver.path, mode, 22, true);
    await until(() => refusals('refused a socket of another network namespace') === modes.length);
    assert.equal(receiver.received.length, before, 'nothing forged reaches the daemon');
  });

  test(
    "the daemon: a forged report from a namespace of their own blocks nobody on the host's port 22, and is counted",
    { skip: noUserNamespaces },
    async (t) => {
      const daemon = await DaemonProcess.start({ config: '22 stream * * * 1 6h\n' });
      t.after(() => daemon.stop());
      chmodSync(daemon.dir, 0o755);
      await reportAsNobody(daemon.socket, 'tcp-connected', 22, true);
      await daemon.waitFor(/refused a socket of another network namespace from uid 65534 \(pid \d+\)/);
      const status = await controlStatus(controlPathFor(daemon.socket));
      assert.equal(status.counters.notifications_dropped.netns, 1);
      assert.equal(status.entries, 0);
      assert.deepEqual(
        daemon.helperCalls().filter((c) => c.startsWith('add')),
        [],
      );
    },
  );

  test('--trust-user: that user may name the peer of a TCP socket; an unknown user is a start-up error', async (t) => {
    const daemon = await DaemonProcess.start({ config: '* stream * * * 3 6h\n', args: ['--trust-user', 'nobody'] });
    t.after(() => daemon.stop());
    chmodSync(daemon.dir, 0o755);
    await reportAsNobody(daemon.socket, 'tcp-explicit', 0, false);
    const control = controlPathFor(daemon.socket);
    let status = await controlStatus(control);
    for (let i = 0; i < 200 && status.counters.notifications['auth_ok:matched'] === undefined; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      status = await controlStatus(control);
    }
    assert.equal(status.counters.notifications['auth_ok:matched'], 1);
    assert.equal(status.counters.notifications_dropped.untrusted, 0);

    const dir = tempDir();
    const r = await run(process.execPath, [
      join(repoRoot, 'bin/blocklistd'),
      '-d',
      '--trust-user',
      'no-such-user-here',
      '-c',
      daemon.config,
      '-D',
      join(dir, 'db'),
      '-s',
      join(dir, 's.sock'),
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--trust-user: unknown user 'no-such-user-here'/);
  });

  test('an explicit peer for a TCP socket only from a trusted sender; for UDP, and a connected TCP socket, from anybody', async () => {
    const before = receiver.received.length;
    await reportAsNobody(receiver.path, 'tcp-explicit', 0, false);
    await until(() => refusals('refused an explicit peer for a stream socket') === 1);
    await reportAsNobody(receiver.path, 'udp-explicit', 0, false);
    await reportAsNobody(receiver.path, 'tcp-connected', 0, false);
    await receiver.waitFor(before + 2);
    const [udp, tcp] = receiver.received.slice(before);
    assert.deepEqual([udp.uid, udp.socketType, toText(udp.remote), udp.explicitPeer], [NOBODY, 'dgram', '203.0.113.9', true]);
    assert.deepEqual([tcp.uid, tcp.socketType, toText(tcp.remote), tcp.explicitPeer], [NOBODY, 'stream', '127.0.0.1', false]);
  });
});

/**
 * As nobody, sends `n` reports each carrying a loopback TCP socket with
 * SO_LINGER (120 s) and unsent data (its peer does not read), closing its
 * own copy at once: the daemon's close() is the last and would wait.
 * Resolves once they are sent, to a function that ends the sender (which
 * holds the peers meanwhile).
 */
async function sendLingering(socketPath: string, n: number): Promise<() => void> {
  const datagram = encodeNotification(1, null, Buffer.from('linger')).toString('hex');
  const script = `
import socket, struct, sys, time
path, n, datagram = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
peers = []
for i in range(n):
    listener = socket.socket(); listener.bind(('127.0.0.1', 0)); listener.listen()
    c = socket.create_connection(listener.getsockname()); peer, _ = listener.accept(); listener.close()
    peers.append(peer)  # never reads: what c sends stays unsent
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 120))
    c.setblocking(False)
    try:
        while True: c.send(b'x' * 65536)
    except BlockingIOError:
        pass
    u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); u.connect(path)
    u.sendmsg([datagram], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack('i', c.fileno()))])
    u.close()
    c.close()  # not the last reference: the datagram in flight holds one
print('sent', flush=True)
sys.stdin.read()
`;
  const child = spawn('python3', ['-c', script, socketPath, String(n), datagram], {
    uid: NOBODY,
    gid: NOBODY,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('sent') && resolve());
    child.once('exit', (code) => reject(new Error(`the lingering sender exited with ${code}`)));
  });
  return () => child.kill('SIGKILL');
}

describe('lingering descriptors', { skip: !isRoot && 'needs root to run the attacker as nobody' }, () => {
  test('sockets lingering for 120 s neither delay the others nor pile up descriptors', async (t) => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const receiver = new Receiver(join(dir, 'blocklistd.sock'), false);
    const client = new Blocklist({ socketPath: receiver.path });
    t.after(() => {
      client.close();
      receiver.close();
    });
    const lingeredBefore = lingeringClosed();
    // the kernel queues 11 datagrams by default: the receiver starts once they wait
    const LINGERING = 8;
    const stopSender = await sendLingering(receiver.path, LINGERING);
    t.after(stopSender);
    const pair = await tcpPair();
    t.after(() => pair.close());
    // the descriptors in flight are in no table yet; the client's socket and the receiver's wake-up pipe come
    const baseline = openDescriptors() + 3;
    const started = Date.now();
    receiver.start();
    await receiver.waitFor(LINGERING);
    // in rounds of 10: the kernel's queue holds 11
    for (let round = 1; round <= 5; round++) {
      for (let i = 0; i < 10; i++) assert.equal(client.notify(AUTH_FAIL, pair.accepted, 'after'), true);
      await receiver.waitFor(LINGERING + 10 * round);
    }
    // every descriptor closed, the lingering ones too, long before their 120 s
    await until(() => openDescriptors() <= baseline && lingeringClosed() - lingeredBefore === LINGERING, 10_000);
    console.log(`# ${LINGERING} lingering and 50 ordinary descriptors closed in ${Date.now() - started} ms`);
  });
});

describe('bursts from many servers', () => {
  // the full proof (20 x 500, paced and unpaced) is the benchmark test/bench/burst.ts
  test(
    '20 libblocklist-style senders x 100 at 100/s, a 2 ms helper per notification (nfail 1): none given up, every one blocked',
    { skip: !isRoot && 'needs root for the --queue of the socket' },
    async () => {
      const r = await burst({ senders: 20, each: 100, rate: 100, helperMs: 2 });
      console.log(`# 20 x 100 at 100/s: ${r.givenUp} given up, ${r.entries} entries, ${r.adds} adds, ${r.seconds.toFixed(1)} s`);
      assert.deepEqual({ givenUp: r.givenUp, entries: r.entries, adds: r.adds }, { givenUp: 0, entries: 2000, adds: 2000 });
    },
  );
});

describe('out of descriptors', () => {
  test('a watchdog ping that cannot get a socket (EMFILE) is logged, never thrown', async () => {
    const dir = tempDir();
    const script = `
      import { openSync } from 'node:fs';
      import { SystemdNotifier } from ${JSON.stringify(join(sharedTree(), 'dist/src/daemon/systemd.js'))};
      const notifier = SystemdNotifier.fromEnv((level, message) => console.log(level, message), {
        NOTIFY_SOCKET: ${JSON.stringify(join(dir, 'notify'))},
      });
      let open = 0;
      try { for (;;) { openSync('/dev/null'); open++; } } catch (e) { console.log('filled', e.code); }
      notifier.notify('WATCHDOG=1');
      notifier.notify('WATCHDOG=1');
      setTimeout(() => console.log('alive'), 50);`;
    const r = await run('prlimit', ['--nofile=64:64', process.execPath, '--input-type=module', '-e', script]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines[0], 'filled EMFILE');
    // unix-dgram says "socket -24" (-EMFILE)
    assert.match(lines[1], /^warning cannot notify systemd at .*notify: (socket -24|.*EMFILE)/);
    assert.deepEqual(lines.slice(2), ['alive'], 'one warning, no exception');
  });
});
