// The native layer's lifecycle and its defence of the event loop: a socket
// in a Worker that ends, a descriptor whose close() would block.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Receiver, repoRoot, run, tempDir } from './support.js';

test('a Worker that ends with its socket started, by terminate() or process.exit()', async () => {
  const dir = tempDir();
  const server = JSON.stringify(join(repoRoot, 'dist/src/protocol/server.js'));
  for (const ending of ['terminate', 'exit']) {
    const script = `
      import { Worker, isMainThread, parentPort } from 'node:worker_threads';
      import { NotificationSocket } from ${server};
      if (isMainThread) {
        const worker = new Worker(new URL(import.meta.url));
        worker.on('message', () => ${ending === 'terminate' ? 'worker.terminate()' : 'undefined'});
        worker.on('exit', () => {
          // the worker's socket is closed: its path can be bound again
          new NotificationSocket(${JSON.stringify(join(dir, `${ending}.sock`))}, { log: () => {} }).close();
          console.log('main alive');
        });
      } else {
        const socket = new NotificationSocket(${JSON.stringify(join(dir, `${ending}.sock`))}, { log: () => {} });
        socket.start(() => {});
        ${ending === 'terminate' ? "parentPort.postMessage('started');" : 'setTimeout(() => process.exit(0), 20);'}
      }`;
    const file = join(dir, `${ending}.mjs`);
    writeFileSync(file, script);
    const result = await run(process.execPath, [file]);
    assert.equal(result.code, 0, `${ending}: ${result.stderr}`);
    assert.equal(result.stdout, 'main alive\n', ending);
  }
});

// A TCP socket with SO_LINGER and unsent data blocks close() for the linger
// time when it drops the last reference: the sender closes its copy after
// passing it, so the receiver's close is the last.  Upstream stalls.
const LINGERING_CLIENT = `
import socket, struct, sys, time
listener = socket.socket(); listener.bind(('127.0.0.1', 0)); listener.listen(1)
conn = socket.create_connection(listener.getsockname())
peer, _ = listener.accept()          # never reads: the data stays unsent
conn.setblocking(False)
try:
    while True: conn.send(b'x' * 65536)
except BlockingIOError: pass
conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, int(sys.argv[2])))
daemon = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); daemon.connect(sys.argv[1])
datagram = struct.pack('=IIII', 147, 1, 1, 0) + bytes(128) + b'lgr'
socket.send_fds(daemon, [datagram], [conn.fileno()])
conn.close()
print('sent', flush=True)
time.sleep(int(sys.argv[2]) + 1)
`;

test('a descriptor whose close() blocks for its linger time does not stall the event loop', async (t) => {
  const LINGER = 3;
  const path = join(tempDir(), 'linger.sock');
  const receiver = new Receiver(path, false);
  t.after(() => receiver.close());
  let gap = 0;
  let last = Date.now();
  const ticker = setInterval(() => {
    gap = Math.max(gap, Date.now() - last);
    last = Date.now();
  }, 10);
  t.after(() => clearInterval(ticker));
  const client = spawn('python3', ['-c', LINGERING_CLIENT, path, String(LINGER)], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => client.kill());
  // the datagram is queued and the client's copy closed before the receiver starts
  await new Promise((resolve) => client.stdout.once('data', resolve));
  receiver.start();
  const n = await receiver.next();
  assert.equal(n.text, 'lgr');
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.ok(gap < 250, `the event loop stalled for ${gap} ms`);
  t.diagnostic(`longest event-loop gap while the close lingers: ${gap} ms`);
});
