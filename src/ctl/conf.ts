// blocklistctl config and blocklistctl test: what a sysadmin runs before
// reloading the daemon, and to see which rule a client would meet.
import { nativeFamily } from '../address.js';
import { parseIP, toText } from '../conf/ip.js';
import { formatDuration, formatNumber, formatRule, protocolName } from '../conf/format.js';
import { loadConfig } from '../conf/load.js';
import { cNumber, servicePort } from '../conf/parse.js';
import { compileRules, matchProbe } from '../conf/match.js';
import { fileLine, formatDiagnostic } from '../conf/ruleset.js';
import { interfaceAddresses, systemEnv } from '../conf/system.js';
import { ANY, IPPROTO_TCP, IPPROTO_UDP, type ConfEnv, type EffectiveRule, type Rule } from '../conf/types.js';
import { envelope } from './json.js';
import { existsSync } from 'node:fs';
import { readStore } from './history.js';
import { formatAggregate } from '../escalate/aggregate.js';
import { blockLength, formatPolicy, nextBlockNumber, PERMANENT, type EscalationPolicy, type History } from '../escalate/policy.js';

export interface Output {
  out: (text: string) => void;
  err: (text: string) => void;
}

export interface ConfOptions {
  config: string;
  ruleName: string;
  json?: boolean;
}

function ruleJson(rule: Rule, families: ConfEnv['families']): Record<string, unknown> {
  const { source, address, ...fields } = rule;
  const a = address.kind === 'ip' ? { kind: 'ip', family: address.address.family, address: toText(address.address) } : address;
  return { file: source.file, line: source.line, text: formatRule(rule, families), address: a, ...fields };
}

/** `blocklistctl config`: the rules as the daemon will walk them, and every diagnostic. Exit 1 if a line was rejected. */
export function configCommand(options: ConfOptions, io: Output): number {
  const env = systemEnv(options.ruleName);
  const { ruleSet, diagnostics, files, escalation, aggregation } = loadConfig(options.config, env);
  const failed = diagnostics.some((d) => d.severity === 'error');
  if (options.json) {
    const result = {
      files,
      local: ruleSet.local.map((r) => ruleJson(r, env.families)),
      remote: ruleSet.remote.map((r) => ruleJson(r, env.families)),
      // the effective escalation policies (doc/escalation.md §1); none: upstream's fixed durations
      ...(escalation.size === 0 ? {} : { escalate: [...escalation.values()].map((p) => ({ ...p, text: formatPolicy(p) })) }),
      ...(aggregation.size === 0 ? {} : { aggregate: [...aggregation.values()].map((p) => ({ ...p, text: formatAggregate(p) })) }),
      diagnostics: diagnostics.map((d) => ({ file: d.source.file, line: d.source.line, severity: d.severity, message: d.message })),
    };
    const errors = diagnostics.filter((d) => d.severity === 'error').length;
    io.out(
      envelope('config', {
        result,
        error: failed ? { code: 'config_error', message: `${errors} error${errors === 1 ? '' : 's'} in the configuration` } : undefined,
      }),
    );
    return failed ? 1 : 0;
  }
  for (const d of diagnostics) io.err(`${formatDiagnostic(d, true)}\n`);
  for (const section of ['local', 'remote'] as const) {
    io.out(`[${section}]\n`);
    for (const rule of ruleSet[section]) io.out(`${formatRule(rule, env.families)}\t# ${fileLine(rule.source)}\n`);
  }
  if (escalation.size > 0) io.out(`[escalate]\n${[...escalation.values()].map((p) => `${formatPolicy(p)}\n`).join('')}`);
  if (aggregation.size > 0) io.out(`[aggregate]\n${[...aggregation.values()].map((p) => `${formatAggregate(p)}\n`).join('')}`);
  return failed ? 1 : 0;
}

export interface TestOptions extends ConfOptions {
  uid: string;
  type: string;
  local?: string;
  /** The database whose history says what the next block lasts (escalation). */
  db: string;
}

/**
 * What the next block of `key`'s address lasts under `p`, by the history in database `db` (none there yet: no history;
 * unreadable: as if none, and why).
 */
function nextBlock(
  p: EscalationPolicy,
  key: EffectiveRule,
  db: string,
  now: number,
): { block: number; seconds: number; jitter: number; history: string | undefined } {
  const store = existsSync(db) ? readStore(db) : undefined;
  let h: History | undefined;
  if (typeof store === 'object') {
    try {
      h = store.history(key.name, key.address);
    } finally {
      store.close();
    }
  }
  const block = nextBlockNumber(p, h, now);
  return {
    block,
    seconds: blockLength({ ...p, jitter: 0 }, block, key.duration, () => 0),
    jitter: p.jitter,
    history: typeof store === 'string' ? store : undefined,
  };
}

/** A next block as `test` prints it. */
function nextBlockText(n: ReturnType<typeof nextBlock>): string {
  const length =
    n.seconds === PERMANENT
      ? 'permanent'
      : `${formatDuration(n.seconds)} (${n.seconds} s)${n.jitter > 0 ? ` plus up to ${n.jitter} s of jitter` : ''}`;
  return `next block   the ${ordinal(n.block)}: ${length}${n.history === undefined ? '' : ` (no history read: ${n.history})`}\n`;
}

/** How many failures of each kind reach a limit (daemon.md §5.3). */
function threshold(nfail: number): string {
  if (nfail === ANY) return 'never blocked';
  const authFail = Math.max(1, Math.ceil(nfail / 2));
  const badUser = Math.max(1, nfail);
  return `blocked at the ${ordinal(authFail)} AUTH_FAIL (2 points each) or the ${ordinal(badUser)} BAD_USER (1 point)`;
}

function ordinal(n: number): string {
  const suffix = n % 100 >= 11 && n % 100 <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${suffix}`;
}

/** `blocklistctl test`: the rules a notification from `address` to local `port` meets. Exit 1 when none. */
export function testCommand(address: string, portText: string, options: TestOptions, io: Output): number {
  const env = systemEnv(options.ruleName);
  const bad = (message: string): number => {
    if (options.json) io.out(envelope('test', { error: { code: 'bad_argument', message } }));
    else io.err(`blocklistctl: ${message}\n`);
    return 1;
  };
  const remote = parseIP(address);
  if (remote === undefined) return bad(`bad address '${address}'`);
  const local = parseIP(options.local ?? (remote.family === 'inet' ? '0.0.0.0' : '::'), remote.family);
  if (local === undefined) return bad(`bad local address '${options.local}' for a ${remote.family === 'inet' ? 'IPv4' : 'IPv6'} client`);
  // as the configuration reads them: service or C number, user name or C number
  const port = servicePort(portText, env);
  const uid = env.user(options.uid) ?? cNumber(options.uid);
  if (port === undefined || uid === undefined || (options.type !== 'stream' && options.type !== 'dgram')) {
    return bad(`bad ${port === undefined ? `port '${portText}'` : uid === undefined ? `user '${options.uid}'` : `type '${options.type}'`}`);
  }
  const { ruleSet, diagnostics, escalation } = loadConfig(options.config, env);
  for (const d of diagnostics) io.err(`${formatDiagnostic(d, true)}\n`);
  const proto = options.type === 'stream' ? IPPROTO_TCP : IPPROTO_UDP;
  const family = nativeFamily(env.families, remote.family);
  const match = matchProbe(compileRules(ruleSet), { family, local, port, proto, uid, remote }, interfaceAddresses());
  if (match === undefined) {
    if (options.json) io.out(envelope('test', { result: { matched: false }, error: { code: 'no_match', message: 'no rule matched' } }));
    else io.out('no rule matched\n');
    return 1;
  }
  const e = match.effective;
  const policy = e.duration === ANY ? undefined : escalation.get(e.name);
  const next = policy === undefined ? undefined : nextBlock(policy, e, options.db, Math.floor(Date.now() / 1000));
  if (options.json) {
    const nextJson = next && {
      nextBlock: {
        block: next.block,
        duration: next.seconds === PERMANENT ? null : next.seconds,
        permanent: next.seconds === PERMANENT,
        jitter: next.jitter,
      },
    };
    io.out(
      envelope('test', {
        result: {
          matched: true,
          local: ruleJson(match.local, env.families),
          remote: match.remote === undefined ? null : ruleJson(match.remote, env.families),
          effective: e,
          ...nextJson,
        },
      }),
    );
    return 0;
  }
  const rule = (r: Rule | undefined): string => (r === undefined ? 'none' : `${fileLine(r.source)}  ${formatRule(r, env.families)}`);
  io.out(
    `local rule   ${rule(match.local)}\n` +
      `remote rule  ${rule(match.remote)}\n` +
      `name         ${e.name}\n` +
      `address      ${e.address}/${e.lmask} port ${e.port}/${protocolName(e.proto)}\n` +
      `nfail        ${formatNumber(e.nfail)}: ${threshold(e.nfail)}\n` +
      `duration     ${e.duration === ANY ? 'forever' : `${formatDuration(e.duration)} (${e.duration} s)`}\n` +
      `owner        ${formatNumber(e.uid)}\n` +
      (next === undefined ? '' : nextBlockText(next)),
  );
  return 0;
}
