// Properties of the configuration code over generated input (fast-check):
// the parser never throws, printing then parsing gives the same rules, and
// the indexed matcher agrees with a plain walk of the sorted lists.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { formatRule } from '../src/conf/format.js';
import { fromBytes } from '../src/conf/ip.js';
import { compileRules, firstMatchLinear, matchProbe, matchWith } from '../src/conf/match.js';
import { INT_MAX, parseConfig } from '../src/conf/parse.js';
import { compareRules } from '../src/conf/ruleset.js';
import { systemEnv } from '../src/conf/system.js';
import { ANY, SAME, type AddressSelector, type IPAddress, type Probe, type Rule, type Section } from '../src/conf/types.js';

const env = systemEnv('blocklistd');
const { inet, inet6 } = env.families;
const RUNS = Number(process.env.PROPERTY_RUNS ?? 300);

/** A value, or `*`, or `=` where the section allows it. */
const field = (section: Section, value: fc.Arbitrary<number>): fc.Arbitrary<number> =>
  section === 'remote' ? fc.oneof(value, fc.constant(ANY), fc.constant(SAME)) : fc.oneof(value, fc.constant(ANY));

/** Addresses from a small space, so that generated rules and probes meet. */
const ipv4 = fc
  .tuple(fc.constantFrom(10, 192), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 255 }))
  .map(([a, b, c]) => fromBytes('inet', Uint8Array.of(a, 0, b, c)));
const ipv6 = fc
  .tuple(fc.constantFrom(0x20010db8, 0), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xffff }))
  .map(([a, b, c]): IPAddress => ({ family: 'inet6', words: [a >>> 0, 0, b === 3 ? 0xffff : b, c] }));

const selector = (section: Section): fc.Arbitrary<{ address: AddressSelector; lmask: number }> =>
  fc.oneof(
    fc.record({
      address: fc.constant<AddressSelector>({ kind: 'any' }),
      lmask: fc.oneof(fc.constant(ANY), fc.integer({ min: 0, max: 32 })),
    }),
    fc.record({
      address: ipv4.map((a): AddressSelector => ({ kind: 'ip', address: a })),
      lmask: fc.oneof(fc.constant(ANY), fc.integer({ min: 0, max: 33 })),
    }),
    fc.record({
      address: ipv6.map((a): AddressSelector => ({ kind: 'ip', address: a })),
      lmask: fc.oneof(fc.constant(ANY), fc.integer({ min: 0, max: 128 })),
    }),
    ...(section === 'local' ? [fc.constant({ address: { kind: 'interface', name: 'lo' } as AddressSelector, lmask: ANY })] : []),
  );

const NAME_CHARS = 'abcXYZ019_.-/:\\';
const name = (section: Section): fc.Arbitrary<string> =>
  fc
    .string({ unit: fc.constantFrom(...NAME_CHARS), minLength: section === 'local' ? 1 : 0, maxLength: 12 })
    .filter((n) => !n.startsWith('-') && n !== '*' && n !== '=');

function ruleArbitrary(section: Section): fc.Arbitrary<Rule> {
  return fc
    .record({
      where: selector(section),
      port: field(section, fc.oneof(fc.constantFrom(22, 53, 80), fc.integer({ min: 0, max: 65535 }))),
      proto: field(section, fc.constantFrom(6, 17, 132)),
      family: field(section, fc.constantFrom(inet, inet6, 1)),
      uid: field(section, fc.constantFrom(0, 1000, 65534)),
      name: name(section),
      rmask: field(section, fc.integer({ min: 0, max: 128 })),
      nfail: field(section, fc.integer({ min: 0, max: 20 })),
      duration: field(section, fc.oneof(fc.integer({ min: 0, max: 100000 }), fc.constant(INT_MAX))),
    })
    .map(({ where, ...rest }) => ({ source: { file: 'gen.conf', line: 0 }, ...where, ...rest }));
}

const withoutSource = (rules: readonly Rule[]): Omit<Rule, 'source'>[] => rules.map(({ source: _source, ...r }) => r);

describe('configuration properties', () => {
  test('the parser never throws, whatever the text', () => {
    const token = fc.oneof(
      fc.string(),
      fc.constantFrom('*', '=', '[local]', '[remote]', '\\', '#', '[', ']', ':', '/', 'ssh', 'lo', '::', '1h30m', '0x', '-'),
      fc.string({ unit: fc.constantFrom(...'[]:/*=#\\.-0123456789abcdefhmsx \t\r\n') }),
    );
    const text = fc.oneof(
      fc.string({ unit: 'binary' }),
      fc
        .array(
          fc.array(token, { maxLength: 9 }).map((t) => t.join(' ')),
          { maxLength: 8 },
        )
        .map((l) => l.join('\n')),
    );
    fc.assert(
      fc.property(text, (t) => {
        const r = parseConfig(t, 'fuzz.conf', env);
        for (const d of r.diagnostics) assert.ok(d.source.line >= 1 && d.message.length > 0);
      }),
      { numRuns: RUNS * 10 },
    );
  });

  test('printing the rules and parsing the text gives the same rules', () => {
    fc.assert(
      fc.property(
        fc.array(ruleArbitrary('local'), { maxLength: 6 }),
        fc.array(ruleArbitrary('remote'), { maxLength: 6 }),
        (local, remote) => {
          const text = [
            '[local]',
            ...local.map((r) => formatRule(r, env.families)),
            '[remote]',
            ...remote.map((r) => formatRule(r, env.families)),
          ].join('\n');
          const parsed = parseConfig(text, 'printed.conf', env);
          assert.deepEqual(
            parsed.diagnostics.filter((d) => d.severity === 'error'),
            [],
            text,
          );
          assert.deepEqual(withoutSource(parsed.local), withoutSource(local), text);
          assert.deepEqual(withoutSource(parsed.remote), withoutSource(remote), text);
        },
      ),
      { numRuns: RUNS },
    );
  });

  test('the indexed matcher finds what a walk of the sorted lists finds', (t) => {
    const lo = new Map([['lo', [fromBytes('inet', Uint8Array.of(10, 0, 0, 1)), fromBytes('inet', Uint8Array.of(192, 0, 1, 1))]]]);
    const probe = fc.oneof(fc.record({ local: ipv4, remote: ipv4 }), fc.record({ local: ipv6, remote: ipv6 })).chain(({ local, remote }) =>
      fc.record({
        family: fc.constant(local.family === 'inet' ? inet : inet6),
        local: fc.constant(local),
        port: fc.constantFrom(22, 53, 80, 1000),
        proto: fc.constantFrom(6, 17),
        uid: fc.constantFrom(0, 1000, 65534),
        remote: fc.constant(remote),
      }),
    );
    const seen = { matched: 0, unmatched: 0, remote: 0 };
    fc.assert(
      fc.property(
        fc.array(ruleArbitrary('local'), { maxLength: 40 }),
        fc.array(ruleArbitrary('remote'), { maxLength: 40 }),
        fc.array(probe, { minLength: 1, maxLength: 20 }),
        (local, remote, probes) => {
          const rules = { local: [...local].sort(compareRules), remote: [...remote].sort(compareRules) };
          const compiled = compileRules(rules);
          for (const p of probes as Probe[]) {
            const indexed = matchProbe(compiled, p, lo);
            const walked = matchWith((list, x) => firstMatchLinear(rules[list], x, lo), p);
            assert.deepEqual(indexed, walked);
            seen[indexed === undefined ? 'unmatched' : 'matched']++;
            if (indexed?.remote !== undefined) seen.remote++;
          }
        },
      ),
      { numRuns: RUNS },
    );
    assert.ok(seen.matched > 0 && seen.unmatched > 0 && seen.remote > 0, JSON.stringify(seen));
    t.diagnostic(`probes: ${JSON.stringify(seen)}`);
  });
});
