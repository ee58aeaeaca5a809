// What is at a socket path before binding (src/protocol/socketfile.ts),
// shared by the notification and the control socket, and which passed
// descriptors the notification socket adopts (the addon only reports what
// a descriptor is: the choice is made in TypeScript).
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { closeSync, lstatSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { ControlServer } from '../src/daemon/control.js';
import { descriptorOf } from '../src/client/index.js';
import { AUTH_FAIL, Blocklist } from '../src/index.js';
import { NotificationSocket, SocketSetupError } from '../src/protocol/server.js';
import { removeStaleSocket } from '../src/protocol/socketfile.js';
import { LogCollector, Receiver, staleSocket, tempDir } from './support.js';

/** The descriptor of a listening Node server. */
const serverFd = (o: unknown): number => (o as { _handle: { fd: number } })._handle.fd;

/** A unix stream server listening at `path`, answering `text`. */
async function streamServer(path: string, text: string): Promise<net.Server> {
  const server = net.createServer((c) => c.end(text));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

/** A bound UDP socket, closed after the test. */
async function udpSocket(t: TestContext): Promise<dgram.Socket> {
  const udp = dgram.createSocket('udp4');
  t.after(() => udp.close());
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  return udp;
}

async function reply(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(path);
    c.on('data', (d) => resolve(d.toString()));
    c.on('error', reject);
  });
}

describe('removeStaleSocket', () => {
  const dir = tempDir();

  test('nothing there, or a path that cannot be looked at: free, nothing created', () => {
    assert.equal(removeStaleSocket(join(dir, 'none.sock')), 'free');
    assert.equal(removeStaleSocket(join(dir, 'missing', 'x.sock')), 'free');
    assert.equal(removeStaleSocket(join(dir, 'a\0b')), 'free');
  });

  test('a socket file nobody is bound to: stale, removed', async () => {
    const path = join(dir, 'stale.sock');
    await staleSocket(path);
    assert.equal(removeStaleSocket(path), 'stale');
    assert.throws(() => lstatSync(path), { code: 'ENOENT' });
  });

  test('a bound unix datagram socket: live, left alone and still receiving', async (t) => {
    const udp = await udpSocket(t);
    const path = join(dir, 'live.sock');
    const receiver = new Receiver(path);
    try {
      assert.equal(removeStaleSocket(path), 'live');
      assert.ok(lstatSync(path).isSocket());
      const client = new Blocklist({ socketPath: path, logger: null });
      assert.equal(client.notifyPeer(AUTH_FAIL, udp, { address: '192.0.2.1', port: 22 }, 'after the probe'), true);
      assert.equal((await receiver.next()).text, 'after the probe');
    } finally {
      receiver.close();
    }
  });

  test('a listening unix stream socket: taken, left alone and still answering', async (t) => {
    const path = join(dir, 'stream.sock');
    const server = await streamServer(path, 'still mine\n');
    t.after(() => server.close());
    assert.equal(removeStaleSocket(path), 'taken');
    assert.equal(await reply(path), 'still mine\n');
  });

  test('a file of another kind: not-socket, never removed', () => {
    const path = join(dir, 'precious');
    writeFileSync(path, 'keep me');
    assert.equal(removeStaleSocket(path), 'not-socket');
    assert.equal(readFileSync(path, 'utf8'), 'keep me');
  });

  test("a relative path starting with '@' is the file, not a Linux abstract name", async (t) => {
    const cwd = process.cwd();
    process.chdir(dir);
    t.after(() => process.chdir(cwd));
    // read as an abstract name, nothing would answer and the live file would be removed
    const live = new Receiver('@at.sock', false);
    try {
      assert.ok(lstatSync(join(dir, '@at.sock')).isSocket());
      assert.equal(removeStaleSocket('@at.sock'), 'live');
    } finally {
      live.close();
    }
    assert.equal(removeStaleSocket('@at.sock'), 'stale');
  });
});

describe('the notification and the control socket share it', () => {
  const dir = tempDir();

  test('a stale file at either path is replaced; a live one at either path refused with its own message', async (t) => {
    const notify = join(dir, 'n.sock');
    const control = join(dir, 'c.ctl');
    await staleSocket(notify);
    await staleSocket(control);
    const receiver = new Receiver(notify);
    t.after(() => receiver.close());
    const server = await ControlServer.open({ path: control, log: new LogCollector().log, handle: async () => ({}) });
    t.after(() => server.close());
    assert.throws(() => new NotificationSocket(notify, { log: () => {} }), {
      name: 'SocketSetupError',
      message: `bl_init: another daemon is handling '${notify}'`,
    });
    await assert.rejects(ControlServer.open({ path: notify, log: new LogCollector().log, handle: async () => ({}) }), {
      message: `control socket ${notify}: another daemon is handling it`,
    });
    await assert.rejects(ControlServer.open({ path: control, log: new LogCollector().log, handle: async () => ({}) }), {
      message: `control socket ${control}: another daemon is handling it`,
    });
    // a live stream socket at the notification path: bind fails, as upstream's
    assert.throws(() => new NotificationSocket(control, { log: () => {} }), {
      message: `bl_init: bind failed for '${control}' (Address already in use)`,
    });
    assert.ok(lstatSync(notify).isSocket() && lstatSync(control).isSocket());
  });
});

describe('adopting a passed descriptor (socket activation)', () => {
  const dir = tempDir();

  test('a file is refused: getsockopt fails', () => {
    const path = join(dir, 'file');
    writeFileSync(path, '');
    const fd = openSync(path, 'r');
    try {
      assert.throws(
        () => new NotificationSocket('passed', { log: () => {}, fd }),
        (e: unknown) =>
          e instanceof SocketSetupError &&
          e.message === 'bl_init: getsockopt failed for passed (Socket operation on non-socket)' &&
          e.code === 'ENOTSOCK',
      );
    } finally {
      closeSync(fd);
    }
  });

  test('a listening unix stream socket and a UDP socket are refused and left open and working', async (t) => {
    const path = join(dir, 'stream.sock');
    const server = await streamServer(path, 'untouched\n');
    t.after(() => server.close());
    assert.throws(
      () => new NotificationSocket('stream', { log: () => {}, fd: serverFd(server) }),
      (e: unknown) =>
        e instanceof SocketSetupError && e.message === 'bl_init: stream is not a unix datagram socket' && e.code === 'EPROTOTYPE',
    );
    assert.equal(await reply(path), 'untouched\n');
    const udp = await udpSocket(t);
    assert.throws(() => new NotificationSocket('udp', { log: () => {}, fd: descriptorOf(udp)! }), {
      message: 'bl_init: udp is not a unix datagram socket',
    });
    assert.ok(udp.address().port > 0);
  });
});
