// The control protocol between blocklistctl and the daemon (issue 7): a
// unix stream socket, one JSON request per line, one JSON response per
// line, in order.  A request is {"version": 1, "id": any, "command": name,
// "args": {...}}; a response {"version": 1, "id": the request's, "result":
// ...} or {"version": 1, "id": ..., "error": {"code", "message", "details"?}}.
// Shared by both ends; nothing here touches a socket.
import { LineReader } from '../lines.js';

export const CONTROL_VERSION = 1;
export const DEFAULT_CONTROL_PATH = '/var/run/blocklistd.ctl';

/** The control socket beside a notification socket: x.sock → x.ctl, else x + .ctl (the daemon's default, blocklistctl's -s). */
export function controlPathFor(socket: string): string {
  return socket.endsWith('.sock') ? `${socket.slice(0, -'.sock'.length)}.ctl` : `${socket}.ctl`;
}
/** The longest request line the daemon reads; a longer one is refused and the connection closed. */
export const REQUEST_MAX_BYTES = 64 * 1024;
/** The longest response line blocklistctl reads. */
export const RESPONSE_MAX_BYTES = 256 * 1024 * 1024;

/**
 * Addresses in one block request at most: a line of them (IPv6 networks
 * too) stays below REQUEST_MAX_BYTES, and goes to the helper as one batch.
 */
export const BLOCK_MAX = 1000;

/** The `report` request's types: fail (+2), baduser (+1), abuse (to the limit), ok (reset). */
export const REPORT_TYPES = ['fail', 'baduser', 'abuse', 'ok'] as const;
export type ReportType = (typeof REPORT_TYPES)[number];

export type ErrorCode =
  | 'bad_request' // not JSON, not an object, no command
  | 'too_large' // a line over REQUEST_MAX_BYTES
  | 'unsupported_version'
  | 'unknown_command'
  | 'bad_argument'
  | 'access_denied'
  | 'not_found' // unblock: nothing matched
  | 'busy' // a helper call of that entry is running: try again
  | 'self_address' // block: loopback or an address of the host, without force
  | 'helper_failed' // the packet filter did not take the change
  | 'config_error' // reload: the new configuration has errors
  | 'stopping' // the daemon is shutting down
  | 'internal'
  | 'not_running' // blocklistctl: nobody listens on the control socket
  | 'usage' // blocklistctl: a command line that cannot be used (exit 2)
  | 'no_match' // blocklistctl test: no rule matches
  | 'database_error'; // blocklistctl dump: the database file cannot be read

export interface ControlErrorBody {
  code: ErrorCode;
  message: string;
  details?: unknown;
}

export interface ControlRequest {
  version: number;
  id?: unknown;
  command: string;
  args: Record<string, unknown>;
}

/** An error a request ends with; the server turns it into an error response. */
export class ControlError extends Error {
  /** The id of a request refused after it was read as a JSON object, for its answer. */
  requestId?: unknown;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ControlError';
  }

  get body(): ControlErrorBody {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** A request line → a request; throws ControlError for what is not one. */
export function parseRequest(line: string): ControlRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new ControlError('bad_request', 'the request is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ControlError('bad_request', 'the request is not a JSON object');
  const o = value as Record<string, unknown>;
  const refuse = (code: ErrorCode, message: string): ControlError => Object.assign(new ControlError(code, message), { requestId: o.id });
  // a request without a version is taken as version 1: typed by hand into `nc -U`
  const version = o.version ?? CONTROL_VERSION;
  if (version !== CONTROL_VERSION)
    throw refuse(
      'unsupported_version',
      `protocol version ${JSON.stringify(version)} is not supported (this daemon speaks ${CONTROL_VERSION})`,
    );
  if (typeof o.command !== 'string') throw refuse('bad_request', 'the request has no "command" string');
  const args = o.args ?? {};
  if (typeof args !== 'object' || args === null || Array.isArray(args)) throw refuse('bad_request', '"args" is not a JSON object');
  return { version: CONTROL_VERSION, id: o.id, command: o.command, args: args as Record<string, unknown> };
}

export function encodeResponse(id: unknown, outcome: { result: unknown } | { error: ControlErrorBody }): string {
  return `${JSON.stringify({ version: CONTROL_VERSION, ...(id === undefined ? {} : { id }), ...outcome })}\n`;
}

/**
 * Cuts a byte stream into lines of at most `max` bytes.  push() returns
 * the complete lines; once a line grows beyond `max` without its newline,
 * `overflow` is set and everything after is ignored.
 */
export class LineSplitter {
  private readonly reader: LineReader;
  overflow = false;

  constructor(max: number) {
    this.reader = new LineReader(max, () => (this.overflow = true));
  }

  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    if (!this.overflow) this.reader.push(chunk, (line) => this.overflow || lines.push(line));
    return lines;
  }
}
