// The fleet's pure parts (issue 17): keys (every token a valid NATS key
// token, IPv6 encoded), the checks of a value from the bucket, the local end
// under clock skew and --fleet-max-duration, the --fleet options.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { defaultOrigin, fleetConfig, type FleetArguments } from '../src/fleet/config.js';
import { FleetRecordError, keyOf, keyToken, localEnd, originOfKey, parseValue, valueOf, type FleetBlock } from '../src/fleet/record.js';

const block = (fields: Partial<FleetBlock> = {}): FleetBlock => ({
  origin: 'web1',
  name: 'blocklistd',
  family: 4,
  address: '192.0.2.1',
  mask: 32,
  proto: 'tcp',
  port: 22,
  duration: 3600,
  start: 1_800_000_000,
  end: 1_800_003_600,
  reason: 'limit',
  ...fields,
});
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
/** NATS's key rule: tokens of [-/_=A-Za-z0-9] separated by dots, none empty. */
const NATS_KEY = /^[-/_=A-Za-z0-9]+(\.[-/_=A-Za-z0-9]+)*$/;

describe('fleet keys', () => {
  test('IPv4 and IPv6 addresses, any port and protocol, odd rule names: valid NATS keys of 8 tokens', () => {
    const cases: [Partial<FleetBlock>, string][] = [
      [{}, 'v1.web1.4.192=2E0=2E2=2E1.32.tcp.22.blocklistd'],
      [{ family: 6, address: '2001:db8::1', mask: 64 }, 'v1.web1.6.2001=3Adb8=3A=3A1.64.tcp.22.blocklistd'],
      [
        { family: 6, address: '::ffff:192.0.2.1', mask: 128, proto: '', port: -1 },
        'v1.web1.6.=3A=3Affff=3A192=2E0=2E2=2E1.128.any.any.blocklistd',
      ],
      [{ name: 'ssh.fail/x é' }, 'v1.web1.4.192=2E0=2E2=2E1.32.tcp.22.ssh=2Efail=2Fx=20=C3=A9'],
    ];
    for (const [fields, key] of cases) {
      assert.equal(keyOf(block(fields)), key);
      assert.match(key, NATS_KEY);
      assert.equal(key.split('.').length, 8);
      assert.equal(originOfKey(key), 'web1');
    }
    assert.equal(keyToken(''), '=');
  });

  test('an origin must be one token: dots, blanks, wildcards refused', () => {
    for (const origin of ['a.b', 'a b', '>', '*', '', 'x'.repeat(65)])
      assert.throws(() => keyOf(block({ origin })), FleetRecordError, origin);
  });
});

describe('fleet values', () => {
  test('a value round-trips; its key must be the one its fields make', () => {
    const b = block();
    assert.deepEqual(parseValue(keyOf(b), bytes(valueOf(b))), b);
    const forever = block({ duration: -1, end: null });
    assert.deepEqual(parseValue(keyOf(forever), bytes(valueOf(forever))), forever);
    // a host putting a block of another address, or of another origin, under its key
    assert.throws(() => parseValue(keyOf(b), bytes(valueOf(block({ address: '192.0.2.2' })))), /does not match/);
    assert.throws(() => parseValue(keyOf(b), bytes(valueOf(block({ origin: 'web2' })))), /does not match/);
  });

  test('hostile values refused with the field named', () => {
    const key = keyOf(block());
    const bad: [unknown, RegExp][] = [
      ['not json', /not JSON/],
      [[1, 2], /not a JSON object/],
      [{ ...block(), name: 'x; rm -rf /' }, /bad name/],
      [{ ...block(), family: 5 }, /bad family/],
      [{ ...block(), address: '192.0.2.256' }, /bad address/],
      [{ ...block(), address: '2001:db8::1' }, /bad address/],
      [{ ...block(), mask: 33 }, /bad mask/],
      [{ ...block(), proto: 'icmp' }, /bad proto/],
      [{ ...block(), port: 70000 }, /bad port/],
      [{ ...block(), duration: 1.5 }, /bad duration/],
      [{ ...block(), end: 1 }, /bad end/],
      [{ ...block(), reason: 'x'.repeat(300) }, /bad reason/],
      [{ ...block(), origin: 'a.b' }, /bad origin/],
    ];
    for (const [value, error] of bad)
      assert.throws(() => parseValue(key, bytes(typeof value === 'string' ? value : JSON.stringify(value))), error, JSON.stringify(value));
    assert.throws(() => parseValue(key, new Uint8Array(5000)), /at most 4096/);
  });
});

describe('the local end of a learned block', () => {
  const now = 1_800_000_000;
  test("clocks within the skew: the origin's end; a start far ahead: the receive time plus the duration", () => {
    assert.equal(localEnd(block({ start: now - 60 }), now, 300, 0), now - 60 + 3600);
    assert.equal(localEnd(block({ start: now + 200 }), now, 300, 0), now + 200 + 3600);
    assert.equal(localEnd(block({ start: now + 7200 }), now, 300, 0), now + 3600);
  });
  test('an old block replayed keeps its start (a late joiner does not extend it); an ended one is not applied', () => {
    assert.equal(localEnd(block({ start: now - 3000 }), now, 300, 0), now + 600);
    assert.equal(localEnd(block({ start: now - 4000 }), now, 300, 0), undefined);
  });
  test('--fleet-max-duration cuts long and forever blocks', () => {
    assert.equal(localEnd(block({ duration: -1, end: null }), now, 300, 0), null);
    assert.equal(localEnd(block({ duration: -1, end: null, start: now }), now, 300, 600), now + 600);
    assert.equal(localEnd(block({ start: now }), now, 300, 600), now + 600);
    assert.equal(localEnd(block({ start: now }), now, 300, 7200), now + 3600);
  });
});

describe('the --fleet options', () => {
  const args = (fields: Partial<FleetArguments>): FleetArguments => ({
    fleetBucket: 'blocklist',
    fleetMaxDuration: '0',
    fleetTrust: [],
    ...fields,
  });
  const abs = (p: string): string => `/cwd/${p}`;
  test('without --fleet: nothing, and its options alone are an error', () => {
    assert.equal(fleetConfig(args({}), abs), undefined);
    assert.throws(() => fleetConfig(args({ fleetName: 'a' }), abs), /--fleet-name needs --fleet/);
  });
  test('plain text to another host refused unless --fleet-insecure; loopback, tls:// and TLS options pass', () => {
    assert.throws(() => fleetConfig(args({ fleet: 'nats://nats.example.net:4222' }), abs), /plain text to another host/);
    assert.throws(() => fleetConfig(args({ fleet: 'nats://127.0.0.1:4222,192.0.2.9:4222' }), abs), /'192\.0\.2\.9:4222' is plain text/);
    for (const fleet of ['nats://127.0.0.1:4222', 'localhost:4222', 'nats://[::1]:4222', 'tls://nats.example.net:4222'])
      assert.ok(fleetConfig(args({ fleet }), abs), fleet);
    assert.ok(fleetConfig(args({ fleet: 'nats://nats.example.net', fleetCa: 'ca.pem' }), abs));
    assert.ok(fleetConfig(args({ fleet: 'nats://nats.example.net', fleetInsecure: true }), abs));
    assert.throws(() => fleetConfig(args({ fleet: 'nats://u:p@127.0.0.1' }), abs), /not in the URL/);
  });
  test('names, trust list, caps checked; paths made absolute; the default origin from the host name', () => {
    const c = fleetConfig(
      args({ fleet: '127.0.0.1', fleetName: 'web-1', fleetTrust: ['web2,mail', 'web3'], fleetMaxDuration: '86400', fleetUserFile: 'u' }),
      abs,
    )!;
    assert.deepEqual([c.name, c.trust, c.maxDuration, c.userFile], ['web-1', ['web2', 'mail', 'web3'], 86400, '/cwd/u']);
    assert.throws(() => fleetConfig(args({ fleet: '127.0.0.1', fleetName: 'web.1' }), abs), /bad --fleet-name/);
    assert.throws(() => fleetConfig(args({ fleet: '127.0.0.1', fleetTrust: ['a>'] }), abs), /bad --fleet-trust/);
    assert.throws(() => fleetConfig(args({ fleet: '127.0.0.1', fleetMaxDuration: '1h' }), abs), /bad --fleet-max-duration/);
    assert.throws(() => fleetConfig(args({ fleet: '127.0.0.1', fleetCert: 'c' }), abs), /go together/);
    assert.equal(defaultOrigin('web1.example.net'), 'web1');
    assert.equal(defaultOrigin('odd host'), 'odd-host');
    assert.equal(fleetConfig(args({ fleet: '127.0.0.1' }), abs, 'mail.example.net')!.name, 'mail');
  });
});
