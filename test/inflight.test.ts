// The one record of helper work in flight (src/run/inflight.ts): what the
// engine asks before it starts a call for an entry, in process.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { entryId, InFlight } from '../src/run/inflight.js';
import { stateKey } from './support.js';

const entry = (address: string, name = 'blocklistd') => ({ key: stateKey(address, { name }), count: 3, last: 1000, id: `id-${address}` });

test('an entry id holds every field of the effective rule: two entries of one filter rule are two ids', () => {
  assert.notEqual(entryId(stateKey('192.0.2.1')), entryId(stateKey('192.0.2.1', { nfail: 5 })));
  assert.notEqual(entryId(stateKey('192.0.2.1')), entryId(stateKey('192.0.2.1', { duration: 60 })));
  assert.equal(entryId(stateKey('192.0.2.1')), entryId({ ...stateKey('192.0.2.1') }));
});

test('adds and rems: busy while running, a rem takes the entry off its retry, evictable only when neither', () => {
  const work = new InFlight();
  const a = entryId(stateKey('192.0.2.1'));
  work.addStarted(a, { before: undefined, wrote: { count: 3, last: 1000 }, client: '192.0.2.1', origin: 'limit' });
  assert.ok(work.adding(a) && work.busy(a) && !work.evictable(a) && work.unsettled(a));
  assert.deepEqual(work.addEnded(a)?.wrote, { count: 3, last: 1000 });
  assert.equal(work.addEnded(a), undefined, 'ended once');
  assert.ok(!work.busy(a) && work.evictable(a) && !work.unsettled(a));
  work.retryRem(a, entry('192.0.2.1'), 2000);
  assert.ok(!work.busy(a) && !work.evictable(a) && work.unsettled(a));
  work.remStarted(a);
  assert.ok(work.removing(a) && work.busy(a));
  assert.equal(work.nextRetry(), undefined, 'no longer waiting for its retry');
  work.remEnded(a);
  assert.deepEqual(work.counts, { adds: 0, rems: 0, remRetries: 0, unrecorded: 0 });
});

test("retries come due in time, the first due first; a step of the clock moves them and the adds' times", () => {
  const work = new InFlight();
  const [a, b] = ['192.0.2.1', '192.0.2.2'];
  work.retryRem(entryId(stateKey(a)), entry(a), 2000);
  work.retryRem(entryId(stateKey(b)), entry(b), 1500);
  const c = entryId(stateKey('192.0.2.3'));
  work.addStarted(c, { before: { count: 1, last: 900 }, wrote: { count: 3, last: 1000 }, client: undefined, origin: 'restore' });
  assert.equal(work.nextRetry(), 1500);
  work.shiftTimes(100);
  assert.equal(work.nextRetry(), 1600);
  assert.deepEqual(work.addEnded(c), {
    before: { count: 1, last: 1000 },
    wrote: { count: 3, last: 1100 },
    client: undefined,
    origin: 'restore',
  });
  assert.deepEqual(
    work.takeDueRetries(1600).map((e) => e.key.address),
    [b],
  );
  assert.equal(work.counts.remRetries, 1);
  assert.deepEqual(
    work.takeDueRetries(2100).map((e) => e.key.address),
    [a],
  );
  assert.equal(work.nextRetry(), undefined);
});

test('releases to write: the block is gone until its entry is written; a flush of the name forgets its retries and releases', () => {
  const work = new InFlight();
  const ssh = entry('192.0.2.1', 'ssh');
  const web = entry('192.0.2.2', 'web');
  work.releaseUnrecorded(entryId(ssh.key), ssh);
  work.releaseUnrecorded(entryId(web.key), web);
  work.retryRem(entryId(stateKey('192.0.2.3', { name: 'ssh' })), entry('192.0.2.3', 'ssh'), 5000);
  assert.ok(work.released(entryId(ssh.key)) && work.unsettled(entryId(ssh.key)) && work.evictable(entryId(ssh.key)));
  work.forgetName('ssh');
  assert.deepEqual(
    work.unrecordedEntries().map((e) => e.key.name),
    ['web'],
  );
  assert.equal(work.counts.remRetries, 0);
  work.recorded(entryId(web.key));
  assert.ok(!work.released(entryId(web.key)));
  work.releaseUnrecorded(entryId(web.key), web);
  work.allRecorded();
  assert.equal(work.counts.unrecorded, 0);
});
