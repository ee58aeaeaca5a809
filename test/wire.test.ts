// The codec against protocol.md §2-§3, byte for byte.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ABUSIVE_BEHAVIOR,
  AUTH_FAIL,
  AUTH_OK,
  BAD_USER,
  HEADER_SIZE,
  encodeNotification,
  encodeSockaddr,
  encodeText,
  wireTypeOf,
} from '../src/protocol/wire.js';
import { decodeText } from '../src/text.js';
import { decodeHeader, decodeSockaddr } from './wire-decode.js';
import { WireType } from '../src/types.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('wire codec', () => {
  test('the worked example of protocol.md §2.3, byte for byte', () => {
    const sa = encodeSockaddr('inet', Uint8Array.of(192, 0, 2, 7), 53);
    const b = encodeNotification(WireType.ADD, sa, Buffer.from('dns'));
    assert.equal(b.length, 147);
    assert.deepEqual(b.subarray(0, 32), hex('93000000 01000000 01000000 10000000 02000035 c0000207 00000000 00000000'));
    assert.ok(
      b.subarray(32, HEADER_SIZE).every((x) => x === 0),
      '112 zero bytes',
    );
    assert.equal(b.subarray(HEADER_SIZE).toString(), 'dns');
    assert.deepEqual(decodeHeader(b), { length: 147, version: 1, type: 1, salen: 16 });
  });

  test('sockaddr_in6 for [2001:db8::1]:22 as protocol.md §2.3 lays it out', () => {
    const sa = encodeSockaddr('inet6', hex('20010db8000000000000000000000001'), 22);
    assert.deepEqual(sa, hex('0a000016 00000000 20010db8000000000000000000000001 00000000'));
    assert.deepEqual(decodeSockaddr(sa, 0, 28), { family: 'inet6', words: [0x20010db8, 0, 0, 1], port: 22 });
    const scoped = encodeSockaddr('inet6', hex('fe800000000000000000000000000001'), 22, 3);
    assert.deepEqual(scoped.subarray(24), hex('03000000'), 'scope id in host order');
  });

  test('a sockaddr is decoded only when complete and of a known family', () => {
    const sa = encodeSockaddr('inet', Uint8Array.of(10, 1, 2, 3), 65535);
    assert.deepEqual(decodeSockaddr(sa, 0, 16), { family: 'inet', words: [0x0a010203], port: 65535 });
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
