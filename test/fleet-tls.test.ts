// The shipped example server configuration (etc/nats/blocklist.conf) as it
// is, with only its paths and port put to a test's: TLS with a CA made here,
// one user per host.  Daemons reach each other through it over TLS, and a
// host's user cannot write another host's keys (issue 17).
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Kvm } from '@nats-io/kv';
import { keyOf } from '../src/fleet/record.js';
import { ctl, freePort, repoRoot, run, startDaemon, tempDir, until } from './support.js';
import { BUCKET, createBucket, natsClient, natsMissing, NatsServer } from './nats.js';

const missing = natsMissing();

/** A CA and a certificate for 127.0.0.1 it signed, in `dir`. */
async function certificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const files = { ca: join(dir, 'ca.crt'), cert: join(dir, 'server.crt'), key: join(dir, 'server.key') };
  const openssl = async (args: string[]): Promise<void> => {
    const r = await run('openssl', args);
    assert.equal(r.code, 0, r.stderr);
  };
  await openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=fleet test CA',
    '-keyout',
    join(dir, 'ca.key'),
    '-out',
    files.ca,
  ]);
  await openssl([
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    files.key,
    '-out',
    join(dir, 'server.csr'),
  ]);
  writeFileSync(join(dir, 'ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await openssl([
    'x509',
    '-req',
    '-in',
    join(dir, 'server.csr'),
    '-CA',
    files.ca,
    '-CAkey',
    join(dir, 'ca.key'),
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    join(dir, 'ext'),
    '-out',
    files.cert,
  ]);
  return files;
}

describe('the example server configuration, over TLS', { skip: missing }, () => {
  test(
    "host-a's block reaches host-b through etc/nats/blocklist.conf; " + "host-a cannot write host-b's keys; a wrong CA is refused",
    async (t) => {
      const dir = tempDir('blocklistd-nats-tls-');
      const tls = await certificates(dir);
      const shipped = readFileSync(join(repoRoot, 'etc/nats/blocklist.conf'), 'utf8');
      const nats = await NatsServer.start(t, {
        hosts: [],
        dir,
        config: (port, d) =>
          shipped
            .replace('listen: 0.0.0.0:4222', `listen: 127.0.0.1:${port}`)
            .replace('/var/lib/nats/jetstream', join(d, 'js'))
            .replace('/etc/nats/tls/server.crt', tls.cert)
            .replace('/etc/nats/tls/server.key', tls.key)
            .replace('/etc/nats/tls/ca.crt', tls.ca),
      });
      const url = `tls://127.0.0.1:${nats.port}`;
      const admin = await natsClient(t, url, 'admin', 'change-me-admin', tls.ca);
      const kv = await createBucket(admin);

      const port = await freePort();
      const config = `${port} stream * * * 3 1h\n`;
      const host = async (name: string) => {
        const d = tempDir(`blocklistd-${name}-`);
        writeFileSync(join(d, 'fleet.user'), `${name}:change-me-${name.slice(-1)}\n`, { mode: 0o600 });
        const daemon = await startDaemon(
          t,
          config,
          ['--fleet', url, '--fleet-name', name, '--fleet-user-file', join(d, 'fleet.user'), '--fleet-ca', tls.ca],
          { dir: d },
        );
        await daemon.waitFor(/fleet: connected to /);
        return daemon;
      };
      const a = await host('host-a');
      const b = await host('host-b');
      assert.equal((await ctl(['block', '-p', String(port), '--control', a.control, '198.51.100.40'])).code, 0);
      await until(() => b.helperCalls().some((l) => l.startsWith('add ') && l.includes(' 198.51.100.40 ')), 10_000);

      // host-a's own user, as a compromised host-a would use it
      const asA = await natsClient(t, url, 'host-a', 'change-me-a', tls.ca);
      const kvA = await new Kvm(asA).open(BUCKET);
      const forged = keyOf({ origin: 'host-b', family: 4, address: '192.0.2.66', mask: 32, proto: 'tcp', port, name: 'blocklistd' });
      await assert.rejects(kvA.put(forged, '{}'), /permission|timeout|503|no responders/i);
      assert.equal(await kv.get(forged), null);
      // nor delete or purge the bucket
      await assert.rejects(asA.request(`$JS.API.STREAM.DELETE.KV_${BUCKET}`, '', { timeout: 2000 }));
      await assert.rejects(asA.request(`$JS.API.STREAM.PURGE.KV_${BUCKET}`, '', { timeout: 2000 }));
      assert.ok((await kv.status()).values >= 1);

      // a server whose certificate does not chain to the CA given: no connection
      const other = await certificates(tempDir('blocklistd-other-ca-'));
      await assert.rejects(natsClient(t, url, 'host-a', 'change-me-a', other.ca));
    },
  );
});
