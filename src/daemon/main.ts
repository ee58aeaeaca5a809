// blocklistd, as far as the foundation goes: listen on the notification
// sockets and log every validated notification.  Rules, state, the helper,
// detaching and syslog come with the daemon issue (daemon.md).
import { Command } from 'commander';
import { DEFAULT_SOCKET_PATH, NotificationSocket, SocketSetupError } from '../protocol/server.js';
import type { LogFn, Notification } from '../types.js';

function formatNotification(n: Notification): string {
  return (
    `processing type=${n.type} remote=${n.remote.address}:${n.remote.port} ` +
    `local=${n.local.address}:${n.local.port}/${n.socketType} msg="${n.text}" uid=${n.uid} gid=${n.gid}`
  );
}

export function main(argv: string[]): void {
  const program = new Command('blocklistd')
    .option('-d', 'debug: also log debug lines (the daemon stays in the foreground)')
    .option('-s <sockpath>', 'listen on this socket (repeatable)', (p: string, all: string[]) => [...all, p], [])
    .helpOption('-h, --help')
    .showHelpAfterError()
    .parse(argv);
  const opts = program.opts<{ d?: boolean; s: string[] }>();
  const debug = opts.d === true;
  const log: LogFn = (level, message) => {
    if (level !== 'debug' || debug) process.stderr.write(`${message}\n`);
  };

  const sockets: NotificationSocket[] = [];
  try {
    for (const path of opts.s.length > 0 ? opts.s : [DEFAULT_SOCKET_PATH]) {
      sockets.push(new NotificationSocket(path, { log }));
      log('debug', `listening on ${path}`);
    }
  } catch (e) {
    if (!(e instanceof SocketSetupError)) throw e;
    log('err', e.message);
    process.exit(1);
  }
  for (const socket of sockets) {
    socket.start(
      (batch) => {
        for (const n of batch) log(n.text !== '' ? 'info' : 'debug', formatNotification(n));
      },
      (message) => {
        log('err', message);
        process.exit(1);
      },
    );
  }
  const stop = (): void => {
    for (const socket of sockets) socket.close();
  };
  process.on('SIGTERM', stop).on('SIGINT', stop).on('SIGQUIT', stop);
}
