// A writer for the state tests: batches of 10 entries, one transaction
// each, forever; after each commit it prints the batch number (synchronously,
// so that a printed batch is an acknowledged one when the process is killed).
// Usage: node state-writer.js dbpath base [pause-ms]
import { writeSync } from 'node:fs';
import { StateStore } from '../src/state/store.js';

const [path, baseText, pauseText] = process.argv.slice(2);
const base = Number(baseText);
const pause = Number(pauseText ?? 0);
const store = StateStore.open(path);
let batch = 0;

function writeBatch(): void {
  store.transaction(() => {
    for (let i = 0; i < 10; i++) {
      const n = base + batch * 10 + i;
      const address = `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
      store.put({
        key: { family: 2, address, lmask: 32, port: 22, proto: 6, uid: -1, name: 'blocklistd', rmask: -1, nfail: 3, duration: 3600 },
        count: 2,
        last: n,
        id: '',
      });
    }
  });
  batch++;
  writeSync(1, `${batch}\n`);
  if (pause > 0) setTimeout(writeBatch, pause);
  else setImmediate(writeBatch);
}
writeBatch();
