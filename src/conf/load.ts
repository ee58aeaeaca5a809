// Loading a configuration path (config.md §1): a file and its `.d`
// directory beside it, or a directory; directory entries in byte order,
// dotfiles skipped (G39).  Every load builds a new rule set (G14).
import { closeSync, constants, fstatSync, openSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { constants as osConstants } from 'node:os';
import { errnoText } from '../errno.js';
import { parseConfig, type ParseResult } from './parse.js';
import { buildRuleSet, fileLine } from './ruleset.js';
import type { ConfEnv, Diagnostic, RuleSet, Source } from './types.js';
import { parsePolicy, PolicyError, type EscalationPolicy } from '../escalate/policy.js';
import { parseAggregate, type AggregatePolicy } from '../escalate/aggregate.js';

export { DEFAULT_CONFIG_PATH } from './defaults.js';

/** A configuration file larger than this is refused: a mistake (a log, a dump), not a rule set. */
const CONFIG_MAX_BYTES = 4 * 1024 * 1024;

export interface LoadResult {
  ruleSet: RuleSet;
  diagnostics: Diagnostic[];
  /** The files read, in order. */
  files: string[];
  /** False when neither the path nor its `.d` directory could be read: keep the rules you had. */
  found: boolean;
  /** The `[escalate]` policies by rule name (doc/escalation.md §1); empty: upstream's fixed durations. */
  escalation: Map<string, EscalationPolicy>;
  /** The `[aggregate]` policies by rule name (doc/escalation.md §6); empty: no aggregates. */
  aggregation: Map<string, AggregatePolicy>;
}

/**
 * The lines of section `section` of every file, in order, by `parse`: a
 * later line for a name replaces an earlier one (a drop-in overrides).
 */
function sectionPolicies<P extends { name: string }>(
  section: 'escalate' | 'aggregate',
  parse: (fields: string[]) => P,
  parsed: readonly ParseResult[],
  ruleSet: RuleSet,
  diagnostics: Diagnostic[],
): Map<string, P> {
  const policies = new Map<string, { policy: P; source: Source }>();
  const names = new Set([...ruleSet.local, ...ruleSet.remote].map((r) => r.name));
  for (const { source, fields } of parsed.flatMap((p) => p[section])) {
    try {
      const policy = parse(fields);
      const earlier = policies.get(policy.name);
      if (earlier !== undefined)
        diagnostics.push({
          source,
          severity: 'warning',
          message: `[${section}] ${policy.name} replaces the line at ${fileLine(earlier.source)}`,
        });
      if (!names.has(policy.name))
        diagnostics.push({ source, severity: 'warning', message: `[${section}] ${policy.name}: no rule has this name` });
      policies.set(policy.name, { policy, source });
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      diagnostics.push({ source, severity: 'error', message: `[${section}] ${e.message}` });
    }
  }
  return new Map([...policies].map(([name, { policy }]) => [name, policy]));
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The text of a configuration file.  Only a regular file is read: a FIFO
 * (opened without waiting for a writer), a device or a socket left in the
 * directory would hang a reload or read without end.
 */
function readRegular(path: Buffer): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw Object.assign(new Error('EISDIR'), { errno: -osConstants.errno.EISDIR, code: 'EISDIR' });
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > CONFIG_MAX_BYTES) throw new Error(`larger than ${CONFIG_MAX_BYTES / (1024 * 1024)} MiB`);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** A file to read: its path as bytes (names need not be UTF-8) and as text for messages. */
interface ConfigFile {
  path: Buffer;
  name: string;
}

/** The entries of a configuration directory, in byte order of their names, without dotfiles. */
function directoryEntries(dir: string): ConfigFile[] {
  return readdirSync(dir, { encoding: 'buffer' })
    .filter((entry) => entry[0] !== 0x2e)
    .sort(Buffer.compare)
    .map((entry) => {
      const path = Buffer.concat([Buffer.from(join(dir, '/')), entry]);
      return { path, name: path.toString('utf8') };
    });
}

export function loadConfig(path: string, env: ConfEnv): LoadResult {
  const diagnostics: Diagnostic[] = [];
  const parsed: ParseResult[] = [];
  const files: string[] = [];
  const cannotOpen = (file: string, e: unknown): void => {
    diagnostics.push({ source: { file, line: 0 }, severity: 'error', message: `Cannot open '${file}' (${errnoText(e)})` });
  };
  /** Reads and parses one file; returns why it could not be read. */
  const read = (file: ConfigFile): unknown => {
    try {
      const text = readRegular(file.path);
      files.push(file.name);
      parsed.push(parseConfig(text, file.name, env));
      return undefined;
    } catch (e) {
      return e;
    }
  };
  /** Reads every entry of a directory; false when the directory itself cannot be read. */
  const readAll = (dir: string): boolean => {
    let entries: ConfigFile[];
    try {
      entries = directoryEntries(dir);
    } catch (e) {
      cannotOpen(dir, e);
      return false;
    }
    for (const file of entries) {
      const error = read(file);
      if (error !== undefined) cannotOpen(file.name, error);
    }
    return true;
  };

  let found: boolean;
  if (isDirectory(path)) {
    found = readAll(path);
  } else {
    const error = read({ path: Buffer.from(path), name: path });
    const dropIn = `${path}.d`;
    const hasDropIn = isDirectory(dropIn);
    // a missing file beside its .d directory is fine; an unreadable one is not
    if (error !== undefined && (!hasDropIn || (error as NodeJS.ErrnoException).code !== 'ENOENT')) cannotOpen(path, error);
    found = (hasDropIn && readAll(dropIn)) || error === undefined;
  }
  const built = buildRuleSet(parsed, env.families);
  const policies: Diagnostic[] = [];
  const escalation = sectionPolicies('escalate', parsePolicy, parsed, built.ruleSet, policies);
  const aggregation = sectionPolicies('aggregate', parseAggregate, parsed, built.ruleSet, policies);
  // file-level errors first, then each file's lines, then what the merge and sort found, then the policies
  return {
    ruleSet: built.ruleSet,
    diagnostics: [...diagnostics, ...parsed.flatMap((p) => p.diagnostics), ...built.diagnostics, ...policies],
    files,
    found,
    escalation,
    aggregation,
  };
}
