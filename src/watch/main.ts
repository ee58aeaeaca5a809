// blocklistd-watch (issue 14): reads the journal and log files of servers
// that do not speak the blocklist protocol (OpenSSH on Linux, postfix,
// dovecot...), turns their failure lines into `report` requests on the
// daemon's control socket.  A separate process: it needs only to read the
// logs and to reach the control socket.
import { Command, CommanderError } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXIT_FAILURE, EXIT_USAGE, HELP_CONFIG, VERSION } from '../cli.js';
import { servicePort } from '../conf/parse.js';
import { systemEnv } from '../conf/system.js';
import { controlPath } from '../ctl/control.js';
import { DEFAULT_CONTROL_PATH } from '../protocol/control.js';
import { createLogger } from '../daemon/log.js';
import type { LogFn } from '../types.js';
import { ReportClient } from './client.js';
import { matchFileLine, matchJournalEntry, type JournalEntry, type LineMatch } from './matcher.js';
import { parsePattern, type Pattern } from './patterns.js';
import { FileSource, JournalSource, WatchState, type Source } from './sources.js';

export const DEFAULT_WATCH_CONFIG = '/etc/blocklistd-watch.conf';
export const DEFAULT_PATTERN_DIR = '/etc/blocklistd-watch.d';
export const DEFAULT_STATE = '/var/lib/blocklistd-watch/state.json';
/** The pattern files shipped with the package: used for a name /etc does not have. */
const PACKAGE_PATTERN_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../etc/blocklistd-watch.d');

/** Reports queued beyond this pause reading; below LOW_WATER reading resumes. */
const HIGH_WATER = 10_000;
const LOW_WATER = 1000;
/** A report's message: the start of the log line, enough for the daemon's log (it keeps 128 bytes). */
const MESSAGE_MAX = 200;

/** A source as the command line or the configuration names it. */
export type SourceSpec =
  { kind: 'journal'; pattern?: string; where: string } | { kind: 'file'; path: string; pattern?: string; where: string };

export class WatchError extends Error {
  override readonly name = 'WatchError';
}

/** blocklistd-watch.conf: `journal PATTERN` and `file PATH PATTERN` lines, `#` comments. */
export function parseWatchConfig(file: string, text: string): { sources: SourceSpec[]; diagnostics: string[] } {
  const sources: SourceSpec[] = [];
  const diagnostics: string[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const where = `${file}:${i + 1}`;
    const words = raw
      .replace(/#.*/, '')
      .trim()
      .split(/\s+/)
      .filter((w) => w !== '');
    if (words.length === 0) continue;
    if (words[0] === 'journal' && words.length === 2) sources.push({ kind: 'journal', pattern: words[1], where });
    else if (words[0] === 'file' && words.length === 3) sources.push({ kind: 'file', path: words[1], pattern: words[2], where });
    else diagnostics.push(`${where}: expected 'journal PATTERN' or 'file PATH PATTERN'`);
  }
  return { sources, diagnostics };
}

/** The pattern file of a name: a path as it is, else NAME.conf in the pattern directory, else in the package's. */
export function patternFile(name: string, dir: string): string {
  if (name.includes('/')) return name;
  const own = join(dir, `${name}.conf`);
  if (existsSync(own) || dir !== DEFAULT_PATTERN_DIR) return own;
  return join(PACKAGE_PATTERN_DIR, `${name}.conf`);
}

/** Reads a pattern; its diagnostics are logged; throws when it cannot be used. */
export function loadPattern(name: string, dir: string, log: LogFn): Pattern {
  const file = patternFile(name, dir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new WatchError(`pattern '${name}': ${(e as Error).message}`);
  }
  const base = name.includes('/') ? name.replace(/^.*\//, '').replace(/\.conf$/, '') : name;
  const { pattern, diagnostics } = parsePattern(base, file, text);
  for (const d of diagnostics) log('warning', d);
  if (pattern === undefined) throw new WatchError(`pattern '${name}' (${file}) cannot be used`);
  return pattern;
}

/** A line's match as the debug line shows it: type, address, and the user when the pattern names one. */
const matchText = (m: LineMatch): string => `${m.type} ${m.address}${m.user === undefined ? '' : ` user ${m.user}`}`;

interface WatchOptions {
  config: string;
  control: string;
  debug: boolean;
  patternDir: string;
  state: string;
  journalDirectory?: string;
  journalctl?: string;
  /** Sources from the command line: they replace the configuration's. */
  sources: SourceSpec[];
}

/** Runs the watcher until SIGTERM or SIGINT. */
async function watch(o: WatchOptions): Promise<void> {
  const logger = createLogger({ ident: 'blocklistd-watch', output: 'stderr', verbose: false });
  const log: LogFn = (level, message) => {
    if (level !== 'debug' || o.debug) logger.log(level, message);
  };
  let specs = o.sources;
  if (specs.length === 0) {
    let text: string;
    try {
      text = readFileSync(o.config, 'utf8');
    } catch (e) {
      throw new WatchError(`${o.config}: ${(e as Error).message} (or give sources with --journal/--file and --pattern)`);
    }
    const parsed = parseWatchConfig(o.config, text);
    for (const d of parsed.diagnostics) log('warning', d);
    specs = parsed.sources;
  }
  const sources: Source[] = [];
  const journalPatterns: Pattern[] = [];
  const state = new WatchState(o.state, log);
  const client = new ReportClient(o.control, log);
  const flow = { paused: false };
  const settle = (): void => {
    if (flow.paused && client.backlog < LOW_WATER) {
      flow.paused = false;
      for (const s of sources) s.resume();
    }
  };
  // service names resolved once here, not by the daemon for every report
  const env = systemEnv();
  const ports = new Map<Pattern, string>();
  const send = (pattern: Pattern, match: LineMatch, message: string, done: () => void): void => {
    log('debug', `${pattern.name}: ${matchText(match)} (${match.rule.where})`);
    client.report(
      {
        type: match.type,
        address: match.address,
        port: ports.get(pattern)!,
        proto: pattern.proto,
        message: message.slice(0, MESSAGE_MAX),
        source: pattern.name,
      },
      () => {
        done();
        settle();
      },
    );
    if (!flow.paused && client.backlog > HIGH_WATER) {
      flow.paused = true;
      log('warning', `${client.backlog} reports waiting for the daemon: reading paused`);
      for (const s of sources) s.pause();
    }
  };
  for (const spec of specs) {
    if (spec.pattern === undefined) throw new WatchError(`${spec.where}: no --pattern for this source`);
    let pattern: Pattern;
    try {
      pattern = loadPattern(spec.pattern, o.patternDir, log);
    } catch (e) {
      // one unusable pattern does not stop the others
      log('err', `${spec.where}: ${(e as Error).message}; source skipped`);
      continue;
    }
    const port = servicePort(pattern.port, env);
    if (port === undefined) {
      log('err', `${pattern.file}: unknown port '${pattern.port}' (not in /etc/services); source skipped`);
      continue;
    }
    ports.set(pattern, String(port));
    if (spec.kind === 'file') {
      sources.push(
        new FileSource(spec.path, state, log, (line, done) => {
          const r = matchFileLine(pattern, line);
          if (r !== 'other' && r.match !== undefined) send(pattern, r.match, r.message, done);
          else done();
        }),
      );
    } else if (pattern.journal.length === 0) log('err', `${spec.where}: pattern '${pattern.name}' has no journal match; source skipped`);
    else journalPatterns.push(pattern);
  }
  if (journalPatterns.length > 0) {
    sources.push(
      new JournalSource({
        matches: journalPatterns.flatMap((p) => p.journal),
        state,
        directory: o.journalDirectory,
        journalctl: o.journalctl,
        log,
        entry: (entry: JournalEntry, done) => {
          for (const pattern of journalPatterns) {
            const r = matchJournalEntry(pattern, entry);
            if (r?.match !== undefined) return send(pattern, r.match, r.message, done);
          }
          done();
        },
      }),
    );
  }
  if (sources.length === 0) throw new WatchError('no source to read');
  for (const s of sources) s.start();
  log('info', `watching ${sources.map((s) => s.name).join(', ')}; reporting to ${o.control}`);

  await new Promise<void>((resolveStop) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolveStop();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  await Promise.all(sources.map((s) => s.stop()));
  // what was read is sent before the exit, if the daemon answers
  if (!(await client.drain(5000))) log('warning', `${client.backlog} reports not answered at exit: read again at the next start`);
  client.close();
  state.write();
  log('info', 'stopped');
}

// --- test ------------------------------------------------------------------------

export interface TestLine {
  line: number;
  text: string;
  /** `other`: another program's syslog line or journal entry; null: the service's, matched by no rule. */
  result: { type: string; address: string; user?: string; rule: string } | 'other' | null;
}

export interface TestReport {
  pattern: string;
  file: string;
  lines: TestLine[];
  counts: { lines: number; matched: number; unmatched: number; other: number; byType: Record<string, number> };
  /** Lines of the service matched by no rule that look like failures (the pattern's `suspect`). */
  missed: TestLine[];
}

/** A line of the service as `test` shows it: what matched, or null (no rule matched). */
function testResult(match: LineMatch | undefined): TestLine['result'] {
  if (match === undefined) return null;
  return {
    type: match.type,
    address: match.address,
    ...(match.user === undefined ? {} : { user: match.user }),
    rule: match.rule.where,
  };
}

/**
 * What a pattern makes of each line of a log: a log file's lines, or the
 * JSON entries of `journalctl -o json` (a line starting with `{`).
 */
export function testPattern(pattern: Pattern, file: string, text: string): TestReport {
  const lines: TestLine[] = [];
  const missed: TestLine[] = [];
  const counts = { lines: 0, matched: 0, unmatched: 0, other: 0, byType: {} as Record<string, number> };
  const rows = text.split('\n');
  if (rows.at(-1) === '') rows.pop();
  for (const [i, raw] of rows.entries()) {
    let result: TestLine['result'];
    let message = raw;
    let shown = raw;
    const entry = raw.startsWith('{') ? journalEntry(raw) : undefined;
    if (entry !== undefined) {
      const r = matchJournalEntry(pattern, entry);
      if (r !== undefined) message = r.message;
      shown = r?.message ?? String(entry.MESSAGE ?? '');
      result = r === undefined ? 'other' : testResult(r.match);
    } else {
      const r = matchFileLine(pattern, raw);
      if (r !== 'other') message = r.message;
      result = r === 'other' ? 'other' : testResult(r.match);
    }
    const row: TestLine = { line: i + 1, text: shown, result };
    lines.push(row);
    counts.lines++;
    if (result === 'other') counts.other++;
    else if (result === null) {
      counts.unmatched++;
      if (pattern.suspect.test(message)) missed.push(row);
    } else {
      counts.matched++;
      counts.byType[result.type] = (counts.byType[result.type] ?? 0) + 1;
    }
  }
  return { pattern: pattern.name, file, lines, counts, missed };
}

function journalEntry(line: string): JournalEntry | undefined {
  try {
    const v = JSON.parse(line) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as JournalEntry) : undefined;
  } catch {
    return undefined;
  }
}

function formatTest(r: TestReport): string {
  const out: string[] = [];
  for (const l of r.lines) {
    const what =
      l.result === 'other'
        ? 'other'
        : l.result === null
          ? '-'
          : `${l.result.type} ${l.result.address}${l.result.user === undefined ? '' : ` user=${l.result.user}`}`;
    out.push(`${l.line}: ${what}\t${l.text}`);
  }
  const types = Object.entries(r.counts.byType)
    .map(([t, n]) => `${t} ${n}`)
    .join(', ');
  out.push('');
  const matched = `${r.counts.matched} matched${types === '' ? '' : ` (${types})`}`;
  out.push(`${r.counts.lines} lines: ${matched}, ${r.counts.unmatched} unmatched, ${r.counts.other} of other programs`);
  if (r.missed.length > 0) {
    out.push(`${r.missed.length} unmatched lines look like failures:`);
    for (const l of r.missed) out.push(`${l.line}: ${l.text}`);
  }
  return `${out.join('\n')}\n`;
}

// --- command line --------------------------------------------------------------

const USAGE = [
  'usage: blocklistd-watch [-c conf] [-s sockpath | --control path] [-d] [--patterns dir] [--state file]',
  '                        [--journal --pattern name | --file path --pattern name]...',
  '       blocklistd-watch test [--patterns dir] [--json] --pattern name file',
].join('\n');

export function main(argv: string[]): void {
  const fail = (message: string, status = EXIT_FAILURE): never => {
    process.stderr.write(`blocklistd-watch: ${message}\n`);
    process.exit(status);
  };
  const usage = (message: string): never => fail(`${message}\n${USAGE}`, EXIT_USAGE);
  const sources: SourceSpec[] = [];
  const addPattern = (name: string): string => {
    const last = sources.at(-1);
    if (last === undefined || last.pattern !== undefined) usage(`--pattern ${name}: give --journal or --file before each --pattern`);
    last!.pattern = name;
    return name;
  };
  const program = new Command('blocklistd-watch')
    .version(VERSION, '-V, --version')
    .description('report the failures the journal and log files show to blocklistd')
    .helpOption('-h, --help')
    .helpCommand(false)
    .configureHelp(HELP_CONFIG)
    // the root's --pattern pairs with a source; test's is its own
    .enablePositionalOptions()
    .option('-c <conf>', 'configuration: the sources to read', DEFAULT_WATCH_CONFIG)
    .option('-s <sockpath>', "the daemon's notification socket: its control socket is beside it (.ctl for .sock)")
    .option('--control <path>', `the daemon's control socket (default: ${DEFAULT_CONTROL_PATH})`)
    .option('-d', 'debug: log every line matched')
    .option('--patterns <dir>', 'the pattern directory', DEFAULT_PATTERN_DIR)
    .option('--state <file>', "where the journal cursor and the files' offsets are kept", DEFAULT_STATE)
    .option('--journal', "read the systemd journal (then --pattern); replaces the configuration's sources", () => {
      sources.push({ kind: 'journal', where: '--journal' });
      return true;
    })
    .option('--file <path>', "read a log file (then --pattern); replaces the configuration's sources", (path: string) => {
      sources.push({ kind: 'file', path, where: `--file ${path}` });
      return path;
    })
    .option('--pattern <name>', 'the pattern of the source before it: /etc/blocklistd-watch.d/NAME.conf, or a path', addPattern)
    .option('--journal-directory <dir>', 'read the journal files of this directory instead of the system journal (journalctl --directory)')
    // commander's complaints come once, from usage() below
    .configureOutput({ writeErr: () => {} })
    .exitOverride()
    .action(
      async (opts: {
        c: string;
        s?: string;
        control?: string;
        d?: boolean;
        patterns: string;
        state: string;
        journalDirectory?: string;
      }) => {
        const incomplete = sources.find((s) => s.pattern === undefined);
        if (incomplete !== undefined) usage(`${incomplete.where}: needs a --pattern after it`);
        try {
          await watch({
            config: opts.c,
            control: controlPath({ control: opts.control, socket: opts.s }),
            debug: opts.d === true,
            patternDir: opts.patterns,
            state: opts.state,
            journalDirectory: opts.journalDirectory,
            journalctl: process.env.BLOCKLISTD_WATCH_JOURNALCTL,
            sources,
          });
          process.exit(0);
        } catch (e) {
          if (e instanceof WatchError) fail(e.message);
          throw e;
        }
      },
    );
  program
    .command('test')
    .description('show what a pattern makes of each line of a log file (or of journalctl -o json output), and the failures it misses')
    .argument('<file>', 'a log file, or - for standard input')
    .requiredOption('--pattern <name>', 'the pattern: NAME or a path')
    .option('--patterns <dir>', 'the pattern directory', DEFAULT_PATTERN_DIR)
    .option('--json', 'machine-readable output')
    .exitOverride()
    .action((file: string, opts: { pattern: string; patterns: string; json?: boolean }) => {
      const diagnostics: string[] = [];
      let pattern: Pattern;
      try {
        pattern = loadPattern(opts.pattern, opts.patterns, (_level, message) => diagnostics.push(message));
      } catch (e) {
        for (const d of diagnostics) process.stderr.write(`${d}\n`);
        return fail((e as Error).message);
      }
      for (const d of diagnostics) process.stderr.write(`${d}\n`);
      let text: string;
      try {
        text = readFileSync(file === '-' ? 0 : file, 'utf8');
      } catch (e) {
        return fail(`${file}: ${(e as Error).message}`);
      }
      const report = testPattern(pattern, file, text);
      process.stdout.write(opts.json ? `${JSON.stringify({ ...report, diagnostics }, null, 2)}\n` : formatTest(report));
      process.exitCode = diagnostics.length > 0 ? 1 : 0;
    });
  program.parseAsync(argv).catch((e: unknown) => {
    if (!(e instanceof CommanderError)) throw e;
    if (e.exitCode === 0) process.exit(0);
    usage(e.message.replace(/^error: /, ''));
  });
}
