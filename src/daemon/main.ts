// blocklistd's entry point: the command line, detaching, the pid file, the
// signals (daemon.md §1-§3).
//
// Detaching: without -d (or --foreground) the process re-executes itself
// as a detached child with the same arguments and waits for one line on a
// pipe: "ready" once the child listens, or the child's error.
import { spawn } from 'node:child_process';
import { closeSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { CommanderError } from 'commander';
import { EXIT_FAILURE, EXIT_USAGE } from '../cli.js';
import { setCloseOnExec } from '../protocol/native.js';
import { Daemon, FatalError } from './daemon.js';
import { problemText } from './checks.js';
import { createLogger, type DaemonLogger } from './log.js';
import { StartupError, USAGE, UsageError, parseOptions, type DaemonOptions } from './options.js';

const READY_FD_VARIABLE = 'BLOCKLISTD_READY_FD';

/** The parent side of detaching: exits 0 when the child is ready, 1 with its error otherwise. */
async function detach(argv: string[], progname: string): Promise<never> {
  const child = spawn(process.execPath, [...process.execArgv, ...argv.slice(1)], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    env: { ...process.env, [READY_FD_VARIABLE]: '3' },
  });
  let report = '';
  const pipe = child.stdio[3]!;
  pipe.on('data', (d: Buffer) => (report += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise((resolve) => pipe.once('close', resolve));
  if (report === 'ready\n') {
    child.unref();
    process.exit(0);
  }
  const status = await exited;
  process.stderr.write(report !== '' ? report : `${progname}: the daemon exited during start-up (status ${status})\n`);
  process.exit(1);
}

/** The pid file of a detached daemon: `<pid>\n`. */
function writePidfile(path: string): void {
  try {
    writeFileSync(path, `${process.pid}\n`, { mode: 0o644 });
  } catch (e) {
    throw new FatalError(`Can't write pid file '${path}': ${(e as Error).message}`);
  }
}

/** Tells the waiting parent; it may be gone (killed meanwhile), which changes nothing for the daemon. */
function tellParent(fd: number, text: string): void {
  try {
    writeSync(fd, text);
    closeSync(fd);
  } catch {
    // EPIPE: nobody waits any more
  }
}

export async function main(argv: string[]): Promise<void> {
  // An idle daemon's notification runs code that V8 has run a few times at most, and so interprets: compiled at once
  // to baseline code (Sparkplug, which does not optimise), the JavaScript from a notification to its helper's start
  // took 0.11-0.39 ms less than its 1.0-1.1 ms (medians of 117-157 in two sets of interleaved runs, issue 19, helper.md
  // §1.9).  Hot code is optimised as before.
  setFlagsFromString('--always-sparkplug');
  const progname = basename(argv[1] ?? 'blocklistd');
  let options: DaemonOptions;
  try {
    options = parseOptions(argv, progname);
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode); // --help, --version
    if (e instanceof UsageError) {
      process.stderr.write(`${e.message === '' ? '' : `${progname}: ${e.message}\n`}${USAGE}\n`);
      process.exit(EXIT_USAGE);
    }
    if (!(e instanceof StartupError)) throw e;
    process.stderr.write(`${progname}: ${e.message}\n`);
    process.exit(EXIT_FAILURE);
  }
  if (options.check) process.exit(await check(options, progname));
  const readyFd = process.env[READY_FD_VARIABLE] === undefined ? undefined : Number(process.env[READY_FD_VARIABLE]);
  delete process.env[READY_FD_VARIABLE];
  const detached = readyFd !== undefined;
  if (options.debug === 0 && !options.foreground && !detached) {
    if (options.logFormat === 'json') {
      process.stderr.write(`${progname}: --log-format json writes on stdout: use it with --foreground or -d\n`);
      process.exit(EXIT_USAGE);
    }
    await detach(argv, progname);
  }

  // ps, pgrep and rc.subr know the daemon by its name, not as "node"
  process.title = [progname, ...argv.slice(2)].join(' ');
  // nothing this process inherited may reach a helper (G25)
  setCloseOnExec(3);
  if (detached) process.chdir('/');
  const logger = createLogger({
    ident: progname,
    // asked for by name, JSON wins over -d's plain lines on stderr
    output: options.logFormat === 'json' ? 'json' : options.debug > 0 ? 'stderr' : 'syslog',
    verbose: options.verbose,
    syslogPath: options.syslogSocket,
  });
  const daemon = new Daemon(options, logger);
  let pidfile: string | undefined;

  const exit = (status: number): never => {
    daemon.removeSockets();
    if (pidfile !== undefined) {
      try {
        unlinkSync(pidfile);
      } catch {
        // already gone
      }
    }
    logger.close();
    process.exit(status);
  };
  /** In the log, and where the one who started the daemon sees it (-d already shows the log on stderr). */
  const fail = (level: 'err' | 'crit', message: string): never => {
    logger.log(level, message);
    if (readyFd !== undefined) tellParent(readyFd, `${progname}: ${message}\n`);
    else if (options.debug === 0) process.stderr.write(`${progname}: ${message}\n`);
    return exit(1);
  };
  // a known failure is one line; anything else is a bug: its stack helps whoever reports it
  const crash = (e: unknown): never => fail('crit', `internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.on('uncaughtException', crash);
  installSignals(daemon, logger, (reason) => void daemon.stop(0, reason).then(exit));

  try {
    await daemon.start();
    if (detached) {
      writePidfile(options.pidfile);
      pidfile = options.pidfile;
    }
  } catch (e) {
    if (e instanceof FatalError) fail('err', e.message);
    crash(e);
  }
  if (readyFd !== undefined) tellParent(readyFd, 'ready\n');
}

/** --check: prints what was checked and every problem; 0 when nothing is fatal, else 1. */
async function check(options: DaemonOptions, progname: string): Promise<number> {
  const silent = (): void => {};
  const { report, problems } = await new Daemon(options, { log: silent, library: silent, close: silent }).check();
  const fatal = problems.filter((p) => p.severity === 'fatal').length;
  const warnings = problems.length - fatal;
  const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;
  process.stdout.write(
    [
      ...report,
      ...problems.map(problemText),
      `${progname} --check: ${problems.length === 0 ? 'no problem' : `${count(fatal, 'fatal problem')}, ${count(warnings, 'warning')}`}`,
      '',
    ].join('\n'),
  );
  return fatal > 0 ? 1 : 0;
}

function installSignals(daemon: Daemon, logger: DaemonLogger, stop: (reason: string) => void): void {
  process.on('SIGHUP', () => daemon.reload());
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const) process.on(signal, () => stop(signal));
  // a listener keeps Node from starting its inspector on SIGUSR1
  process.on('SIGUSR1', () => {
    daemon.debug++;
    logger.log('debug', `debug level ${daemon.debug}`);
  });
  process.on('SIGUSR2', () => {
    daemon.debug = Math.max(0, daemon.debug - 1);
    logger.log('debug', `debug level ${daemon.debug}`);
  });
}
