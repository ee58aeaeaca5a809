// Address text: inet_ntop(3) output and inet_pton(3) parsing; the two namings of a family.
import assert from 'node:assert/strict';
import { SocketAddress as NodeSocketAddress } from 'node:net';
import { describe, test } from 'node:test';
import ipaddr from 'ipaddr.js';
import { familyOfNative, nativeFamily, parseIPAddress } from '../src/address.js';
import { fromBytes, toText } from '../src/conf/ip.js';
import { NATIVE_FAMILIES } from '../src/protocol/wire.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ipv6Text = (bytes: Uint8Array): string => toText(fromBytes('inet6', bytes));

describe('address text', () => {
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
      ['00000000000000000000ffff00000000', '::ffff:0.0.0.0'],
      ['00000000000000000000fffe7f000001', '::fffe:7f00:1'],
      ['ffffffffffffffffffffffffffffffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    ];
    for (const [bytes, text] of cases) assert.equal(ipv6Text(hex(bytes)), text, bytes);
  });

  test('IPv6 text agrees with libuv and parses back to the same bytes', () => {
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.alloc(16);
      for (let w = 0; w < 8; w++) if (Math.random() < 0.4) b.writeUInt16BE((Math.random() * 0x10000) | 0, 2 * w);
      if (i % 5 === 0) b.writeUInt16BE(0xffff, 10);
      const text = ipv6Text(b);
      assert.equal(new NodeSocketAddress({ address: text, family: 'ipv6' }).address, text);
      // ipaddr.js reads the deprecated ::a.b.c.d form as ::ffff:a.b.c.d
      if (!text.startsWith('::') || !text.includes('.') || text.startsWith('::ffff:'))
        assert.deepEqual(ipaddr.IPv6.parse(text).toByteArray(), [...b]);
    }
  });

  test('IPv4 text is dotted decimal, from the word', () => {
    for (const [bytes, text] of [
      ['00000000', '0.0.0.0'],
      ['c0000207', '192.0.2.7'],
      ['ffffffff', '255.255.255.255'],
      ['7f000001', '127.0.0.1'],
    ])
      assert.equal(toText(fromBytes('inet', hex(bytes))), text, bytes);
  });

  test("a family's name and its platform number map one to one, other numbers to none", () => {
    for (const family of ['inet', 'inet6'] as const)
      assert.equal(familyOfNative(NATIVE_FAMILIES, nativeFamily(NATIVE_FAMILIES, family)), family);
    assert.notEqual(NATIVE_FAMILIES.inet, NATIVE_FAMILIES.inet6);
    const other = { inet: 20, inet6: 30 };
    assert.deepEqual(
      [nativeFamily(other, 'inet'), nativeFamily(other, 'inet6'), familyOfNative(other, 30), familyOfNative(other, 2)],
      [20, 30, 'inet6', undefined],
    );
    assert.equal(familyOfNative(NATIVE_FAMILIES, 1), undefined, 'AF_UNIX');
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
});
