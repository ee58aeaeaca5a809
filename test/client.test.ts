// The client API's contract with its host server (client.md, protocol.md
// §7): never throw, log an outage once, reconnect after a daemon restart,
// retry a full queue, refuse what cannot be sent.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { AUTH_FAIL, AUTH_OK, BAD_USER, Blocklist, DEFAULT_SOCKET_PATH, blocklist, blocklistOpen, blocklistSa } from '../src/index.js';
import { WireType } from '../src/types.js';
import { toText } from '../src/conf/ip.js';
import { LogCollector, Receiver, endpointText, tempDir } from './support.js';

async function accepted(t: TestContext): Promise<net.Socket> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const connection = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const socket = await connection;
  t.after(() => {
    socket.destroy();
    client.destroy();
    server.close();
  });
  return socket;
}

function logged(): { logs: LogCollector; logger: (level: 'debug' | 'info' | 'err', message: string) => void } {
  const logs = new LogCollector();
  return { logs, logger: (level, message) => logs.log(level, message) };
}

describe('the client API', () => {
  const dir = tempDir();

  test('defaults to /var/run/blocklistd.sock', () => {
    assert.equal(DEFAULT_SOCKET_PATH, '/var/run/blocklistd.sock');
    assert.equal(new Blocklist({ logger: null }).socketPath, DEFAULT_SOCKET_PATH);
  });

  test('with no daemon: false, no throw, the outage logged once; then the daemon comes', async (t) => {
    const path = join(dir, 'later.sock');
    const socket = await accepted(t);
    const { logs, logger } = logged();
    const client = blocklistOpen({ socketPath: path, logger });
    for (let i = 0; i < 5; i++) assert.equal(client.notify(AUTH_FAIL, socket, 'ssh'), false);
    assert.deepEqual(logs.lines, [{ level: 'debug', message: `bl_init: connect failed for '${path}' (No such file or directory)` }]);

    const receiver = new Receiver(path);
    t.after(() => receiver.close());
    assert.equal(client.notify(AUTH_FAIL, socket, 'now'), true);
    assert.equal((await receiver.next()).text, 'now');
    client.close();
  });

  test('a daemon restart: the next notification reconnects to the new socket', async (t) => {
    const path = join(dir, 'restart.sock');
    const socket = await accepted(t);
    const { logs, logger } = logged();
    let receiver = new Receiver(path);
    const client = new Blocklist({ socketPath: path, logger });
    assert.equal(client.notify(AUTH_FAIL, socket, 'first'), true);
    assert.equal((await receiver.next()).text, 'first');
    receiver.close();

    receiver = new Receiver(path);
    t.after(() => receiver.close());
    assert.equal(client.notify(AUTH_FAIL, socket, 'second'), true, 'the retry on a new socket succeeded (G5)');
    assert.equal((await receiver.next()).text, 'second');
    assert.deepEqual(logs.lines, []);
    client.close();
  });

  test('a daemon gone for good: false, logged once', async (t) => {
    const path = join(dir, 'gone.sock');
    const socket = await accepted(t);
    const { logs, logger } = logged();
    const receiver = new Receiver(path);
    const client = new Blocklist({ socketPath: path, logger });
    assert.equal(client.notify(AUTH_FAIL, socket), true);
    await receiver.next();
    receiver.close();
    for (let i = 0; i < 3; i++) assert.equal(client.notify(AUTH_FAIL, socket), false);
    assert.deepEqual(logs.lines, [{ level: 'debug', message: `bl_init: connect failed for '${path}' (Connection refused)` }]);
    client.close();
  });

  test('a full queue: the retries fail, false and one log line; the next send after a drain succeeds', async (t) => {
    const path = join(dir, 'full.sock');
    const socket = await accepted(t);
    const { logs, logger } = logged();
    const receiver = new Receiver(path, false);
    t.after(() => receiver.close());
    const client = new Blocklist({ socketPath: path, logger });
    let sent = 0;
    while (client.notify(BAD_USER, socket, String(sent))) sent++;
    assert.ok(sent > 0 && sent < 1000, `${sent} datagrams queued`);
    assert.equal(client.notify(BAD_USER, socket), false);
    assert.deepEqual(logs.lines, [{ level: 'err', message: 'bl_send: sendmsg failed (Resource temporarily unavailable)' }]);

    receiver.start();
    await receiver.waitFor(sent);
    assert.deepEqual(
      receiver.received.map((n) => n.text),
      Array.from({ length: sent }, (_, i) => String(i)),
      'nothing queued was lost or reordered',
    );
    assert.equal(client.notify(AUTH_OK, socket, 'after'), true);
    assert.equal((await receiver.next()).text, 'after');
    client.close();
  });

  test('what cannot be sent is refused locally, with a log line', async (t) => {
    const path = join(dir, 'refuse.sock');
    const receiver = new Receiver(path);
    t.after(() => receiver.close());
    const socket = await accepted(t);
    const { logs, logger } = logged();
    const client = new Blocklist({ socketPath: path, logger });

    assert.equal(client.notify(7 as typeof AUTH_FAIL, socket), false);
    assert.equal(client.notify(-1 as typeof AUTH_FAIL, socket), false);
    assert.equal(client.notify(AUTH_FAIL, -1), false);
    assert.equal(client.notify(AUTH_FAIL, 1.5), false);
    assert.equal(client.notify(AUTH_FAIL, 2 ** 31), false);
    const closed = new net.Socket();
    assert.equal(client.notify(AUTH_FAIL, closed), false);
    assert.equal(client.notifyPeer(AUTH_FAIL, socket, { address: 'not an address', port: 1 }), false);
    assert.equal(client.notifyPeer(AUTH_FAIL, socket, { address: '192.0.2.1', port: 70000 }), false);
    assert.deepEqual(
      logs.lines.map((l) => l.message),
      [
        'unknown action 7',
        'unknown action -1',
        'the reported socket has no descriptor (closed?)',
        'the reported socket has no descriptor (closed?)',
        'the reported socket has no descriptor (closed?)',
        'the reported socket has no descriptor (closed?)',
        "bl_getsock: invalid peer address 'not an address'",
        'bl_getsock: invalid peer port 70000',
      ],
    );

    // none of them reached the daemon: the next one is the first to arrive
    assert.equal(client.notify(AUTH_FAIL, socket, 'valid'), true);
    assert.equal((await receiver.next()).text, 'valid');
    assert.equal(receiver.received.length, 1);
    client.close();
  });

  test('the message: absent is empty (G6), long is cut to 128 bytes on a character boundary', async (t) => {
    const path = join(dir, 'text.sock');
    const receiver = new Receiver(path);
    t.after(() => receiver.close());
    const socket = await accepted(t);
    const client = new Blocklist({ socketPath: path });
    assert.equal(client.notify(AUTH_FAIL, socket, null as unknown as string), true);
    assert.equal((await receiver.next()).text, '');
    assert.equal(client.notify(AUTH_FAIL, socket), true);
    assert.equal((await receiver.next()).text, '');
    assert.equal(client.notify(AUTH_FAIL, socket, 'ü'.repeat(100)), true);
    assert.equal((await receiver.next()).text, 'ü'.repeat(64));
    assert.equal(receiver.logs.lines.length, 0, 'a cut on a character boundary is not a truncated datagram');
    client.close();
  });

  test('the one-shot calls blocklist() and blocklistSa(), and a descriptor number', async (t) => {
    const path = join(dir, 'oneshot.sock');
    const receiver = new Receiver(path);
    t.after(() => receiver.close());
    const socket = await accepted(t);
    assert.equal(blocklist(AUTH_FAIL, socket, 'once', { socketPath: path }), true);
    let n = await receiver.next();
    assert.equal(n.type, WireType.ADD);
    assert.equal(n.text, 'once');
    const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
    assert.equal(blocklistSa(BAD_USER, fd, { address: '192.0.2.3', port: 9 }, 'sa', { socketPath: path }), true);
    n = await receiver.next();
    assert.equal(n.type, WireType.BADUSER);
    assert.equal(n.explicitPeer, false, 'the connected socket wins');
    assert.equal(toText(n.remote), '127.0.0.1');
  });

  test('a TLS connection reports the TCP socket under it', async (t) => {
    const path = join(dir, 'tls.sock');
    const receiver = new Receiver(path);
    t.after(() => receiver.close());
    const client = new Blocklist({ socketPath: path });
    const server = tls.createServer({ key: TEST_KEY, cert: TEST_CERT }, (conn) => {
      assert.equal(client.notify(AUTH_FAIL, conn, 'imaps'), true);
      conn.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const port = (server.address() as net.AddressInfo).port;
    const peer = tls.connect(port, '127.0.0.1', { rejectUnauthorized: false });
    peer.on('error', () => {});
    t.after(() => peer.destroy());
    const n = await receiver.next();
    assert.equal(n.text, 'imaps');
    assert.deepEqual(endpointText(n.local), { family: 'inet', address: '127.0.0.1', port });
    assert.equal(toText(n.remote), '127.0.0.1');
    client.close();
  });
});

// A self-signed test certificate for localhost, valid until 2126.
const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgOBZoJ/zb7DBpCc3l
x0flStrezx5KrVeIyAfOsnlriT6hRANCAATESxTV8FpT7dDVTibfOAGm1BBrHECk
ORhp/1Hdc3zYztW6KFT3BYfHZZpOnPV8Z8/NMqT5Ej1wgM4gtBEdsu4B
-----END PRIVATE KEY-----`;
const TEST_CERT = `-----BEGIN CERTIFICATE-----
MIIBgDCCASWgAwIBAgIUQCCVcOSocAaA2lc5ennxtK0x5hwwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyMTA3MDM0NloYDzIxMjYxMDI4
MDcwMzQ2WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATESxTV8FpT7dDVTibfOAGm1BBrHECkORhp/1Hdc3zYztW6KFT3BYfH
ZZpOnPV8Z8/NMqT5Ej1wgM4gtBEdsu4Bo1MwUTAdBgNVHQ4EFgQUqLe2GTaueux9
D1uAcqrm16r7EqQwHwYDVR0jBBgwFoAUqLe2GTaueux9D1uAcqrm16r7EqQwDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAk4q1H232Uldsw6TYPLLN
/6Sp8KjesmljpGbf2YaUdagCIQC12bP9Z+WiTE9qkHBw/efhkBeWiSlM7sr6d7XJ
fRcQIg==
-----END CERTIFICATE-----`;
