// The receive path alone, for the benchmark: drain, decode, count.
// Usage: node receiver.js socketpath; prints "ready", then the count on SIGTERM.
import { NotificationSocket } from '../../src/protocol/server.js';

let received = 0;
let dropped = 0;
let batches = 0;
const socket = new NotificationSocket(process.argv[2], { log: (level) => void (level === 'err' && dropped++) });
socket.start(
  (batch) => {
    batches++;
    received += batch.length;
  },
  (message) => {
    throw new Error(message);
  },
);
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  socket.close();
  process.stdout.write(`${received} ${dropped} ${batches}\n`);
});
