// The receive path alone, for the benchmark: take, decode, count.
// Usage: node receiver.js socketpath perRound; prints "ready", then a line
// "round <n>" each time perRound more notifications have been decoded, and
// "<received> <dropped> <batches>" on SIGTERM.
import { writeSync } from 'node:fs';
import { NotificationSocket } from '../../src/protocol/server.js';

const perRound = Number(process.argv[3]);
let received = 0;
let dropped = 0;
let batches = 0;
const socket = new NotificationSocket(process.argv[2], { log: (level) => void (level === 'err' && dropped++) });
socket.start((batch) => {
  batches++;
  const before = Math.floor(received / perRound);
  received += batch.length;
  if (Math.floor(received / perRound) > before) writeSync(1, `round ${Math.floor(received / perRound)}\n`);
});
writeSync(1, 'ready\n');
process.on('SIGTERM', () => {
  socket.close();
  writeSync(1, `${received} ${dropped} ${batches}\n`);
});
