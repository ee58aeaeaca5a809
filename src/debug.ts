// Debug lines (-d, -dd, SIGUSR1/SIGUSR2) gated in one place for the whole
// daemon: the engine, the helper runner and the daemon itself write them
// through a DebugLog, which builds a line only when the level reaches it.
import type { LogFields, LogFn } from './types.js';

/**
 * Debug lines at `level` (1: -d, 2: -dd), written while the debug level
 * reaches it; the message (or several lines, each with the fields) and
 * the fields are built only then, so a daemon without -d spends nothing
 * on them.
 */
export type DebugLog = (level: number, message: () => string | readonly string[], fields?: () => LogFields) => void;

export function debugLog(log: LogFn, debugLevel: () => number): DebugLog {
  return (level, message, fields) => {
    if (debugLevel() < level) return;
    const lines = message();
    if (typeof lines === 'string') log('debug', lines, fields?.());
    else for (const line of lines) log('debug', line, fields?.());
  };
}
