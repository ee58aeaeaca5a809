// blocklistd.conf parsing: the lexical rules, every field form, every error
// of config.md §8 with its file:line, and the fixes G29-G35, G42.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { logicalLines, parseConfig, parseDuration, upstreamDuration } from '../src/conf/parse.js';
import { systemEnv } from '../src/conf/system.js';
import { ANY, SAME, type Rule } from '../src/conf/types.js';
import { toText } from '../src/conf/ip.js';

const env = systemEnv('blocklistd');
const { inet, inet6 } = env.families;

function parse(text: string, file = 'test.conf') {
  return parseConfig(text, file, env);
}

/** The one rule of a one-line config, in `section`. */
function rule(line: string, section: 'local' | 'remote' = 'local'): Rule {
  const r = parse(`[${section}]\n${line}\n`);
  assert.deepEqual(
    r.diagnostics.filter((d) => d.severity === 'error'),
    [],
    line,
  );
  assert.equal(r[section].length, 1, line);
  return r[section][0];
}

/** The error a one-line config earns: "line: message". */
function error(line: string, section: 'local' | 'remote' = 'local'): string {
  const r = parse(`[${section}]\n${line}\n`);
  const errors = r.diagnostics.filter((d) => d.severity === 'error');
  assert.equal(errors.length, 1, `${line}: ${JSON.stringify(r.diagnostics)}`);
  assert.equal(r[section].length, 0);
  assert.equal(errors[0].source.file, 'test.conf');
  return `${errors[0].source.line}: ${errors[0].message}`;
}

const location = (r: Rule): string => {
  const a = r.address;
  const host = a.kind === 'ip' ? toText(a.address) : a.kind === 'interface' ? `if:${a.name}` : '*';
  return `${host} ${r.lmask} ${r.port}`;
};

describe('lexical rules (config.md §2)', () => {
  test('comments anywhere, escaped #, continuation, line numbers of the last physical line', () => {
    const text = ['# a comment line', 'ssh stream \\', '  * * * 3 6h # trailing', 'a\\#b', '', '   # indented'].join('\n');
    assert.deepEqual(
      [...logicalLines(text)],
      [
        { line: 3, text: 'ssh stream   * * * 3 6h' },
        { line: 4, text: 'a\\#b' },
        { line: 5, text: '' },
        { line: 6, text: '' },
      ],
    );
  });

  test('a comment line in a continuation ends it; a comment line before text is skipped', () => {
    assert.deepEqual(
      [...logicalLines('a \\\n# c\nb\n')],
      [
        { line: 2, text: 'a ' },
        { line: 3, text: 'b' },
      ],
    );
    assert.deepEqual([...logicalLines('# one\n# two\nb')], [{ line: 3, text: 'b' }]);
    assert.deepEqual(
      [...logicalLines('a \\\\\nb')],
      [
        { line: 1, text: 'a \\\\' },
        { line: 2, text: 'b' },
      ],
      'an escaped backslash does not continue',
    );
    assert.deepEqual([...logicalLines('a \\  \t\nb')], [{ line: 2, text: 'a b' }], 'blanks after the continuation are tolerated');
  });

  test('CRLF files load (G35); blank and indented-comment lines are skipped (G34)', () => {
    const r = parse('[local]\r\nssh\tstream\t*\t*\t*\t3\t6h\r\n   \r\n\t# indented\r\n[remote]  \r\n192.0.2.0/24\t*\t*\t*\t=\t*\t*\r\n');
    assert.deepEqual(r.diagnostics, []);
    assert.equal(r.local[0].duration, 21600);
    assert.equal(r.remote.length, 1, '`[remote]  ` with trailing blanks is a section header (G33)');
  });

  test('fields beyond the seventh are ignored with a warning', () => {
    const r = parse('27188 stream * * * 2 5 extra words\n');
    assert.equal(r.local[0].duration, 5);
    assert.deepEqual(r.diagnostics, [
      { source: { file: 'test.conf', line: 1 }, severity: 'warning', message: 'extra fields ignored: extra words' },
    ]);
  });
});

describe('field 1, the location (config.md §4.2)', () => {
  const cases: [string, string][] = [
    ['*', `* ${ANY} ${ANY}`],
    ['ssh', `* ${ANY} 22`],
    ['22', `* ${ANY} 22`],
    ['0x16', `* ${ANY} 22`],
    ['ssh/24', '* 24 22'],
    ['192.168.1.1:ssh', `192.168.1.1 ${ANY} 22`],
    ['10.0.0.0/8:22', '10.0.0.0 8 22'],
    ['10.0.0.0/8', `10.0.0.0 8 ${ANY}`],
    ['10.1.2.3', `10.1.2.3 ${ANY} ${ANY}`],
    ['*:ssh', `* ${ANY} 22`],
    ['[::1]:22', `::1 ${ANY} 22`],
    ['[2001:db8::]/32:ssh', '2001:db8:: 32 22'],
    ['[2001:db8::]/32', `2001:db8:: 32 ${ANY}`],
    ['[*]:22', `* ${ANY} 22`],
    ['lo:ssh', `if:lo ${ANY} 22`],
    ['lo', `if:lo ${ANY} ${ANY}`],
    ['0.0.0.0:domain', `0.0.0.0 ${ANY} 53`],
  ];
  for (const [text, expected] of cases) {
    test(text, () => assert.equal(location(rule(`${text} stream * * * 3 1h`)), expected));
  }

  test('`=` port on a remote line', () => {
    assert.equal(location(rule('= * * * = * *', 'remote')), `* ${ANY} ${SAME}`);
    assert.equal(location(rule('192.0.2.0/24:= * * * = * *', 'remote')), `192.0.2.0 24 ${SAME}`);
  });

  test('a mask wider than the address is accepted with a warning', () => {
    const r = parse('10.0.0.1/33:22 stream * * * 3 1h\n');
    assert.equal(r.local[0].lmask, 33);
    assert.equal(r.diagnostics[0].severity, 'warning');
  });
});

describe('fields 2-7', () => {
  test('type: stream, dgram, *, numbers', () => {
    assert.equal(rule('22 stream * * * 3 1h').proto, 6);
    assert.equal(rule('22 dgram * * * 3 1h').proto, 17);
    assert.equal(rule('22 * * * * 3 1h').proto, ANY);
    assert.equal(rule('22 132 * * * 3 1h').proto, 132);
    assert.equal(rule('22 = * * = * *', 'remote').proto, SAME);
  });

  test('protocol: tcp/udp mean IPv4, tcp6/udp6 IPv6, whatever the type', () => {
    assert.equal(rule('22 stream tcp * * 3 1h').family, inet);
    assert.equal(rule('22 stream udp * * 3 1h').family, inet, 'udp on a stream line is legal and means IPv4');
    assert.equal(rule('22 stream tcp6 * * 3 1h').family, inet6);
    assert.equal(rule('22 dgram udp6 * * 3 1h').family, inet6);
    assert.equal(rule('22 stream * * * 3 1h').family, ANY);
    assert.equal(rule(`22 stream ${inet6} * * 3 1h`).family, inet6);
  });

  test('owner: a user name, a uid, *', () => {
    assert.equal(rule('22 stream * root * 3 1h').uid, 0);
    assert.equal(rule('22 stream * 1000 * 3 1h').uid, 1000);
    assert.equal(rule('22 stream * * * 3 1h').uid, ANY);
  });

  test('name: *, -suffix, literal, /mask, = on remote lines, the colon quirk, 127 bytes', () => {
    const name = (text: string, section: 'local' | 'remote' = 'local'): string => {
      const r = rule(`22 stream * * ${text} 3 1h`, section);
      return `${r.name} ${r.rmask}`;
    };
    assert.equal(name('*'), `blocklistd ${ANY}`);
    assert.equal(name('-ext'), `blocklistd-ext ${ANY}`);
    assert.equal(name('sshd'), `sshd ${ANY}`);
    assert.equal(name('-int/24'), 'blocklistd-int 24');
    assert.equal(name('*/64'), 'blocklistd 64');
    assert.equal(name('=', 'remote'), ` ${ANY}`);
    assert.equal(name('=/=', 'remote'), ` ${SAME}`);
    assert.equal(name('/24', 'remote'), ' 24');
    assert.equal(name('a/24:b'), 'b 24');
    assert.equal(name('name:with/colon'), `with/colon ${ANY}`);
    assert.equal(rule(`22 stream * * ${'x'.repeat(200)} 3 1h`).name, 'x'.repeat(127));
    const euro = rule(`22 stream * * ${'€'.repeat(50)} 3 1h`).name;
    assert.equal(euro, '€'.repeat(42), 'cut on a character boundary');
    // any other character is the name's: the helper makes filter object names of it (blocklistd-helper(8))
    for (const text of ['ä', 'ö', 'a+b', 'a_b', 'INPUT', 'x\\y', 'a"b;c']) assert.equal(rule(`22 stream * * ${text} 3 1h`).name, text);
  });

  test('nfail: a count, * never, = inherit', () => {
    assert.equal(rule('22 stream * * * 0 1h').nfail, 0);
    assert.equal(rule('22 stream * * * 010 1h').nfail, 8, 'C numbers: a leading 0 is octal');
    assert.equal(rule('22 stream * * * * 1h').nfail, ANY);
    assert.equal(rule('22 * * * = = =', 'remote').nfail, SAME);
  });
});

describe('durations (config.md §4.8, G29)', () => {
  const cases: [string, number, number | undefined][] = [
    ['60', 60, 60],
    ['1m', 60, 60],
    ['6h', 21600, 21600],
    ['12h', 43200, 43200],
    ['1d', 86400, 86400],
    ['0x10', 16, 16],
    ['010', 8, 8],
    ['1h,30m', 5400, 5400],
    ['1h30m', 5400, 3600],
    ['1d12h', 129600, 93600],
    ['1m,30', 90, 30],
    ['1h30', 3630, 0],
    ['1d,2h,3m,4s', 93784, 93784],
    ['0', 0, 0],
    ['1h08m', 4080, 4080],
    ['1h-30m', 5400, 5400],
    ['1h,010m', 4200, 4080],
    ['010m', 480, 480],
  ];
  for (const [text, ours, upstream] of cases) {
    test(`${text} = ${ours} s (upstream ${upstream})`, () => {
      assert.equal(parseDuration(text), ours);
      assert.equal(upstreamDuration(text), upstream);
      const r = parse(`22 stream * * * 3 ${text}\n`);
      assert.equal(r.local[0].duration, ours);
      const warnings = r.diagnostics.map((d) => d.message);
      if (ours === upstream) assert.deepEqual(warnings, []);
      else assert.deepEqual(warnings, [`duration ${text} is ${ours} seconds; upstream blocklistd reads it as ${upstream} seconds`]);
    });
  }

  test('malformed durations are errors: 1S, 1x, -5, empty, 1h,, 08', () => {
    for (const text of ['1S', '1x', '-5', '1h,', '1hh', '08', 'h']) {
      assert.equal(parseDuration(text), undefined, text);
      assert.equal(error(`22 stream * * * 3 ${text}`), `2: Bad number [${text}]`);
    }
    assert.equal(error('22 stream * * * 3'), '2: Bad number []');
  });

  test('a duration beyond INT_MAX seconds is an error, not a wrapped number', () => {
    assert.equal(parseDuration('24856d'), 'overflow');
    assert.equal(error('22 stream * * * 3 24856d'), '2: Duration too long [24856d]');
    assert.equal(parseDuration('24855d'), 24855 * 86400);
  });

  test('* is forever, = inherits on remote lines', () => {
    assert.equal(rule('22 stream * * * 3 *').duration, ANY);
    assert.equal(rule('22 * * * = = =', 'remote').duration, SAME);
  });
});

describe('errors (config.md §8): the line is skipped with file:line, the rest loads', () => {
  const cases: [string, string, 'local' | 'remote'][] = [
    ['nosuchservice stream * * * 3 1h', 'Bad number for service [nosuchservice]', 'local'],
    ['22 raw * * * 3 1h', 'Bad number for protocol [raw]', 'local'],
    ['22 stream ip * * 3 1h', 'Bad number for family [ip]', 'local'],
    ['22 stream * nosuchuser * 3 1h', 'Bad number for user [nosuchuser]', 'local'],
    ['10.0.0.0/x:22 stream * * * 3 1h', 'Bad number for mask [x]', 'local'],
    ['22 stream * * * x 1h', 'Bad number for nfail [x]', 'local'],
    ['22 stream * * */y 3 1h', 'Bad number for mask [y]', 'local'],
    ['= stream * * * 3 1h', "`=' for service not allowed in local config", 'local'],
    ['22 = * * * 3 1h', "`=' for protocol not allowed in local config", 'local'],
    ['22 stream = * * 3 1h', "`=' for family not allowed in local config", 'local'],
    ['22 stream * = * 3 1h', "`=' for user not allowed in local config", 'local'],
    ['22 stream * * * = 1h', "`=' for nfail not allowed in local config", 'local'],
    ['22 stream * * */= 3 1h', "`=' for mask not allowed in local config", 'local'],
    ['22 stream * * * 3 1y', 'Bad number [1y]', 'local'],
    ['22 stream * * * 3 =', "`=' duration not allowed in local config", 'local'],
    ['[2001:db8::/32]:22 stream * * * 3 1h', 'Bad address [2001:db8::/32]', 'local'],
    ['[fe80::1%lo]:22 stream * * * 3 1h', 'Bad address [fe80::1%lo]', 'local'],
    ['lo/24:ssh stream * * * 3 1h', "Can't specify mask 24 with interface [lo]", 'local'],
    ['lo:ssh * * * = * *', 'Interface spec does not make sense with remote config [lo]', 'remote'],
    ['22 stream * * = 3 1h', "`=' name not allowed in local config", 'local'],
    // fixed upstream defects: these used to load
    ['foo.bar:27182 stream * * * 2 90', 'Bad address [foo.bar]', 'local'], // G30: was 0.0.0.0
    ['192.168.1.256:22 stream * * * 2 90', 'Bad address [192.168.1.256]', 'local'], // G30
    ['nosuchif0:ssh stream * * * 2 90', 'Bad address [nosuchif0]', 'local'], // G30: an absent interface
    ['70000 stream * * * 2 90', 'Port out of range [70000]', 'local'], // G32
    ['22 stream * * /24 2 90', 'Empty name not allowed in local config', 'local'], // G42
    ['10.0.0.0/=:22 * * * = * *', "`=' for mask not allowed in a location", 'remote'], // upstream aborts on it
    // a rule name reaches the helper and the packet filter's object names: no control bytes (NUL cut it), no blanks
    ['22 stream * * a\0b 2 90', 'Bad name [a\\x00b]: control characters are not allowed', 'local'],
    ['22 stream * * -ext\x01 2 90', 'Bad name [blocklistd-ext\\x01]: control characters are not allowed', 'local'],
    ['22 stream * * a\x7fb 2 90', 'Bad name [a\\x7fb]: control characters are not allowed', 'local'],
    ['22 stream * * a\u0085b 2 90', 'Bad name [a\\x85b]: control characters are not allowed', 'local'],
    ['22 stream * * a\u00a0b 2 90', 'Bad name [a\u00a0b]: blanks are not allowed', 'local'],
    ['22 stream * * a\u2028b 2 90', 'Bad name [a\u2028b]: blanks are not allowed', 'local'],
    ['* * * * x:a\x1bb * * *', 'Bad name [a\\x1bb]: control characters are not allowed', 'remote'],
  ];
  for (const [line, message, section] of cases) {
    test(message, () => assert.equal(error(line, section), `2: ${message}`));
  }

  test('a bad line does not stop the file', () => {
    const r = parse('ssh stream * * * 3 6h\nbad line\n\nftp stream * * * 3 6h\n');
    assert.equal(r.local.length, 2);
    assert.deepEqual(r.diagnostics, [
      { source: { file: 'test.conf', line: 2 }, severity: 'error', message: 'Bad number for service [bad]' },
    ]);
  });

  test(
    'an unknown user such as `named` on hosts without it (E8)',
    { skip: env.user('named') !== undefined && 'this host has a named user' },
    () => {
      assert.equal(error('domain * * named * 3 12h'), '2: Bad number for user [named]');
    },
  );
});
