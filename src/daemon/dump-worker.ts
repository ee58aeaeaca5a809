// The reading side of the control socket's `dump` (commands.ts), in a
// worker thread: SQLite sorts the whole table before it gives the first
// row (0.7 s for a million entries), which would hold the daemon's event
// loop, and with it the notifications, that long.  Here the daemon only
// relays the chunks.  One chunk is read ahead: the next is read when the
// daemon asks for it ('next'), so a client that reads slowly holds a chunk
// or two in memory, never the table.
import { parentPort, workerData } from 'node:worker_threads';
import { dumpSelected, entryRow, type DumpSelection, type EntryRow } from '../state/entry.js';
import { StateStore } from '../state/store.js';
import { systemEnv } from '../conf/system.js';
import { dumpEntries } from '../fleet/state.js';

export interface DumpWorkerData {
  path: string;
  select: DumpSelection;
  chunk: number;
}

/** What the worker posts: a chunk of rows (the last with `more` false), or why it could not go on. */
export type DumpWorkerMessage = { rows: EntryRow[]; more: boolean } | { error: string };

const { path, select, chunk } = workerData as DumpWorkerData;
const port = parentPort!;
let store: StateStore | undefined;
try {
  store = StateStore.open(path, { readonly: true });
  const entries = dumpEntries(store, systemEnv().families);
  const send = (): void => {
    const rows: EntryRow[] = [];
    try {
      for (let next = entries.next(); ; next = entries.next()) {
        if (next.done === true) {
          port.postMessage({ rows, more: false } satisfies DumpWorkerMessage);
          break;
        }
        if (!dumpSelected(next.value, select)) continue;
        rows.push(entryRow(next.value));
        if (rows.length === chunk) return port.postMessage({ rows, more: true } satisfies DumpWorkerMessage);
      }
    } catch (e) {
      port.postMessage({ error: (e as Error).message } satisfies DumpWorkerMessage);
    }
    store?.close();
    port.close();
  };
  port.on('message', send);
  send();
} catch (e) {
  port.postMessage({ error: (e as Error).message } satisfies DumpWorkerMessage);
  store?.close();
  port.close();
}
