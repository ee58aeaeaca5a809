// The codec against protocol.md §2-§3, byte for byte.
import assert from 'node:assert/strict';
import { SocketAddress as NodeSocketAddress } from 'node:net';
import { describe, test } from 'node:test';
import ipaddr from 'ipaddr.js';
import {
  ABUSIVE_BEHAVIOR,
  AUTH_FAIL,
  AUTH_OK,
  BAD_USER,
  HEADER_SIZE,
  decodeHeader,
  decodeSockaddr,
  decodeText,
  encodeNotification,
  encodeSockaddr,
  encodeText,
  formatIPv6,
  parseIPAddress,
  wireTypeOf,
} from '../src/protocol/wire.js';
import { WireType } from '../src/types.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('wire codec', () => {
  test('the worked example of protocol.md §2.3, byte for byte', () => {
    const sa = encodeSockaddr('inet', Uint8Array.of(192, 0, 2, 7), 53);
    const b = encodeNotification(WireType.ADD, sa, Buffer.from('dns'));
    assert.equal(b.length, 147);
    assert.deepEqual(b.subarray(0, 32), hex('93000000 01000000 01000000 10000000 02000035 c0000207 00000000 00000000'));
    assert.ok(b.subarray(32, HEADER_SIZE).every((x) => x === 0), '112 zero bytes');
    assert.equal(b.subarray(HEADER_SIZE).toString(), 'dns');
    assert.deepEqual(decodeHeader(b), { length: 147, version: 1, type: 1, salen: 16 });
  });

  test('sockaddr_in6 for [2001:db8::1]:22 as protocol.md §2.3 lays it out', () => {
    const sa = encodeSockaddr('inet6', hex('20010db8000000000000000000000001'), 22);
    assert.deepEqual(sa, hex('0a000016 00000000 20010db8000000000000000000000001 00000000'));
    assert.deepEqual(decodeSockaddr(sa, 0, 28), { family: 'inet6', address: '2001:db8::1', port: 22 });
    const scoped = encodeSockaddr('inet6', hex('fe800000000000000000000000000001'), 22, 3);
    assert.deepEqual(scoped.subarray(24), hex('03000000'), 'scope id in host order');
  });

  test('a sockaddr is decoded only when complete and of a known family', () => {
    const sa = encodeSockaddr('inet', Uint8Array.of(10, 1, 2, 3), 65535);
    assert.deepEqual(decodeSockaddr(sa, 0, 16), { family: 'inet', address: '10.1.2.3', port: 65535 });
    assert.equal(decodeSockaddr(sa, 0, 15), undefined);
    assert.equal(decodeSockaddr(hex('0100'), 0, 2), undefined, 'AF_UNIX');
    assert.equal(decodeSockaddr(Buffer.alloc(1), 0, 1), undefined);
  });

  test('public actions travel as their wire types, never as themselves (§3.2)', () => {
    assert.equal(wireTypeOf(AUTH_OK), WireType.DELETE);
    assert.equal(wireTypeOf(AUTH_FAIL), WireType.ADD);
    assert.equal(wireTypeOf(ABUSIVE_BEHAVIOR), WireType.ABUSE);
    assert.equal(wireTypeOf(BAD_USER), WireType.BADUSER);
    for (const bad of [-1, 4, 1.5, NaN]) assert.equal(wireTypeOf(bad), undefined);
  });

  test('IPv6 text is inet_ntop(3) text', () => {
    const cases: [string, string][] = [
      ['00000000000000000000000000000000', '::'],
      ['00000000000000000000000000000001', '::1'],
      ['00000000000000000000ffff7f000001', '::ffff:127.0.0.1'],
      ['00000000000000000000000001020304', '::1.2.3.4'],
      ['20010db8000000010000000000000001', '2001:db8:0:1::1'],
      ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
      ['20010db8000100000000000100000000', '2001:db8:1::1:0:0'],
      ['fe800000000000000000000000000000', 'fe80::'],
      ['00010000000000000000000000000000', '1::'],
      ['00010002000300040005000600070008', '1:2:3:4:5:6:7:8'],
      ['00010000000200000003000000040000', '1:0:2:0:3:0:4:0'],
    ];
    for (const [bytes, text] of cases) assert.equal(formatIPv6(hex(bytes), 0), text, bytes);
  });

  test('IPv6 text agrees with libuv and parses back to the same bytes', () => {
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.alloc(16);
      for (let w = 0; w < 8; w++) if (Math.random() < 0.4) b.writeUInt16BE((Math.random() * 0x10000) | 0, 2 * w);
      if (i % 5 === 0) b.writeUInt16BE(0xffff, 10);
      const text = formatIPv6(b, 0);
      assert.equal(new NodeSocketAddress({ address: text, family: 'ipv6' }).address, text);
      // ipaddr.js reads the deprecated ::a.b.c.d form as ::ffff:a.b.c.d
      if (!text.startsWith('::') || !text.includes('.') || text.startsWith('::ffff:'))
        assert.deepEqual(ipaddr.IPv6.parse(text).toByteArray(), [...b]);
    }
  });

  test('address text is parsed as inet_pton(3) parses it', () => {
    const bytes = (t: string): string | undefined => {
      const p = parseIPAddress(t);
      return p && `${p.family} ${Buffer.from(p.bytes).toString('hex')}${p.zone === undefined ? '' : ` %${p.zone}`}`;
    };
    assert.equal(bytes('192.0.2.7'), 'inet c0000207');
    assert.equal(bytes('2001:db8::1'), 'inet6 20010db8000000000000000000000001');
    assert.equal(bytes('::ffff:192.0.2.7'), 'inet6 00000000000000000000ffffc0000207');
    assert.equal(bytes('::1.2.3.4'), 'inet6 00000000000000000000000001020304');
    assert.equal(bytes('fe80::1%eth0'), 'inet6 fe800000000000000000000000000001 %eth0');
    for (const bad of ['127.1', '0x7f.0.0.1', '1.2.3.256', '1::2::3', 'host', '', '::ffff:1.2.3.4.5'])
      assert.equal(parseIPAddress(bad), undefined, bad);
  });

  test('text is cut at 128 bytes on a character boundary', () => {
    assert.equal(encodeText('ssh').toString(), 'ssh');
    assert.equal(encodeText('a'.repeat(200)).length, 128);
    const euro = '€'.repeat(50); // 3 bytes each: 42 whole characters fit
    assert.equal(encodeText(euro).toString(), '€'.repeat(42));
    assert.equal(encodeText('x' + '😀'.repeat(40)).toString(), 'x' + '😀'.repeat(31));
  });

  test('received text is escaped for logging', () => {
    const t = (b: Buffer): string => decodeText(b, 0, b.length);
    assert.equal(t(Buffer.from('ssh')), 'ssh');
    assert.equal(t(Buffer.from('a\nb\r\tc')), 'a\\nb\\r\\tc');
    assert.equal(t(Buffer.from('a\\nb')), 'a\\\\nb', 'a literal backslash cannot fake an escape');
    assert.equal(t(Buffer.from('naïve €')), 'naïve €');
    assert.equal(t(hex('61ff62c0af63')), 'a\\xffb\\xc0\\xafc', 'invalid and overlong UTF-8');
    assert.equal(t(hex('eda080')), '\\xed\\xa0\\x80', 'a surrogate');
    assert.equal(t(hex('00071b7f')), '\\x00\\x07\\x1b\\x7f');
    assert.equal(t(Buffer.from('a\u2028b\u202ec\u0085')), 'a\\xe2\\x80\\xa8b\\xe2\\x80\\xaec\\xc2\\x85');
    assert.equal(t(hex('e282')), '\\xe2\\x82', 'a truncated sequence');
  });
});
