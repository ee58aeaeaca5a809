// What can keep the daemon from protecting the host, decided from facts
// gathered at start and on reload (issue 15 §1, §2): pure, so that start,
// reload, --check and `blocklistctl status` tell the same problems.
// Fatal problems stop the start (exit 1) unless --fail-open, upstream's
// behaviour, turns them into warnings.
import { nativeFamily } from '../address.js';
import { firstMatchLinear, matchWith } from '../conf/match.js';
import { parseIP } from '../conf/ip.js';
import { ANY, type ConfEnv, type RuleSet } from '../conf/types.js';

export type Severity = 'fatal' | 'warning';

export interface Problem {
  severity: Severity;
  /** Stable, for scripts: config_unreadable, no_rules, helper_missing, ... */
  code: string;
  message: string;
}

/** A program the daemon runs, as the file system shows it. */
export type ProgramState = { state: 'ok' } | { state: 'missing' | 'not_executable'; reason: string };

/** The helper's own verdict on its packet-filter back end (`control check`). */
export interface BackendCheck {
  ok: boolean;
  /** What it printed: the back end and why, or why it cannot operate. */
  message: string;
}

export interface StartupFacts {
  config: string;
  /** Why the configuration (its file, or its directory) could not be read; empty when it was. */
  configUnreadable: string[];
  /** Why entries of a configuration directory could not be read (a FIFO, a subdirectory): the rest was. */
  configSkipped: string[];
  /** Local rules in force: without any, nothing is ever blocked. */
  localRules: number;
  helper: string;
  helperState: ProgramState;
  /** undefined: the helper does not offer `check` (upstream's), or was not run. */
  backend: BackendCheck | undefined;
  /** The loopback addresses some local rule may block (see loopbackExposed). */
  loopbackExposed: string[];
  allowSelf: boolean;
  /** Warnings found elsewhere (the kernel cannot tell the network namespace ...), passed through. */
  warnings: string[];
}

/** Every problem the facts show: the configuration's, the helper's, loopback's, then those found elsewhere. */
export function startupProblems(f: StartupFacts): Problem[] {
  const problems: Problem[] = [];
  const fatal = (code: string, message: string): number => problems.push({ severity: 'fatal', code, message });
  const warning = (code: string, message: string): number => problems.push({ severity: 'warning', code, message });
  for (const reason of f.configUnreadable) fatal('config_unreadable', `configuration ${f.config}: ${reason}`);
  for (const reason of f.configSkipped) warning('config_file_skipped', `configuration ${f.config}: ${reason}: skipped`);
  if (f.configUnreadable.length === 0 && f.localRules === 0)
    fatal('no_rules', `configuration ${f.config}: no [local] rule, nothing would ever be blocked`);
  if (f.helperState.state !== 'ok') {
    fatal(
      f.helperState.state === 'missing' ? 'helper_missing' : 'helper_not_executable',
      `helper ${f.helper}: ${f.helperState.reason}, no block could be added`,
    );
  } else if (f.backend !== undefined && !f.backend.ok) {
    fatal('backend_unusable', `helper ${f.helper}: the packet filter cannot be used: ${f.backend.message}`);
  }
  if (f.loopbackExposed.length > 0 && !f.allowSelf) {
    warning(
      'loopback_not_allowed',
      `no [remote] rule with nfail * covers ${f.loopbackExposed.join(' and ')} for every [local] rule: the host may block itself; ` +
        'add "127.0.0.0/8 * * * = * =" and "[::1] * * * = * =" under [remote], or start with --allow-self',
    );
  }
  for (const message of f.warnings) warning('system', message);
  return problems;
}

/** --fail-open: upstream's behaviour, every problem a warning. */
export function failOpen(problems: readonly Problem[]): Problem[] {
  return problems.map((p) =>
    p.severity === 'fatal' ? { ...p, severity: 'warning', message: `${p.message} (--fail-open: running anyway)` } : p,
  );
}

/** As a log line or a line of --check. */
export const problemText = (p: Problem): string => `${p.severity}: ${p.message}`;

const LOOPBACK = [
  { text: '127.0.0.1', address: parseIP('127.0.0.1')! },
  { text: '::1', address: parseIP('::1')! },
];

/**
 * The loopback addresses (127.0.0.1, ::1) that some local rule could count
 * and block: "allow-listed" means that for every local rule of their
 * family, the remote pass a notification from them would make (its port,
 * protocol and owner those of the local rule, its address masked by the
 * rule's mask: config.md §7.3) ends with nfail * (never block).  A remote
 * rule for one port only does not cover a local rule for every port; a
 * remote rule sorted before the allow-list line and matching first (the
 * sort trap of config.md §9, example E2) is seen as it works.
 */
export function loopbackExposed(ruleSet: RuleSet, families: ConfEnv['families']): string[] {
  const none = new Map();
  const findRemote = (x: Parameters<typeof firstMatchLinear>[1]) => firstMatchLinear(ruleSet.remote, x, none);
  return LOOPBACK.filter(({ address }) => {
    const family = nativeFamily(families, address.family);
    return ruleSet.local.some((local) => {
      if (local.family !== ANY && local.family !== family) return false;
      const match = matchWith((list, x) => (list === 'local' ? local : findRemote(x)), {
        family,
        local: address,
        port: local.port,
        proto: local.proto,
        uid: ANY,
        remote: address,
      });
      return match !== undefined && match.effective.nfail !== ANY;
    });
  }).map((l) => l.text);
}

/** The files --check looks at, beside StartupFacts. */
export interface FileFacts {
  db: string;
  /** Who holds the database's lock now; undefined: nobody. */
  dbHolder: string | undefined;
  /** Why the database cannot be opened or created; undefined: it can. */
  dbProblem: string | undefined;
  /** Each socket path (notification and control sockets), what is there, and why the socket cannot be had (undefined: it can). */
  sockets: { path: string; state: string; problem: string | undefined }[];
}

/** What keeps the database or the sockets from being opened: fatal, --fail-open or not, as at start. */
export function fileProblems(f: FileFacts): Problem[] {
  const problems: Problem[] = [];
  if (f.dbHolder !== undefined)
    problems.push({
      severity: 'fatal',
      code: 'database_locked',
      message: `database '${f.db}' is in use by ${f.dbHolder}: one daemon per database`,
    });
  if (f.dbProblem !== undefined)
    problems.push({ severity: 'fatal', code: 'database_unusable', message: `database '${f.db}': ${f.dbProblem}` });
  for (const s of f.sockets)
    if (s.problem !== undefined) problems.push({ severity: 'fatal', code: 'socket_unusable', message: `socket '${s.path}': ${s.problem}` });
  return problems;
}
