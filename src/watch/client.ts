// blocklistd-watch's connection to the daemon's control socket (issue 14):
// one connection, `report` requests pipelined on it, answered in order.
// When the daemon goes away (a restart), the connection is made again and
// every request not yet answered is sent again: nothing read is lost.  A
// request the daemon refuses (a bad argument) is logged and dropped.
import { connect, type Socket } from 'node:net';
import { CONTROL_VERSION, LineSplitter, RESPONSE_MAX_BYTES, type ControlErrorBody } from '../protocol/control.js';
import type { LogFn } from '../types.js';

export interface ReportArgs {
  type: string;
  address: string;
  port: string;
  proto: string;
  message: string;
  source: string;
}

interface Pending {
  id: number;
  args: ReportArgs;
  line: string;
  done: () => void;
}

/** Waits between connection attempts: doubling from the first to the last. */
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 5000;

export class ReportClient {
  private socket: Socket | undefined;
  /** Sent or to send, oldest first; the answers come in this order. */
  private readonly pending: Pending[] = [];
  /** How many of `pending` went out on the current connection. */
  private sent = 0;
  private nextId = 1;
  private retryMs = RETRY_FIRST_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private connected = false;
  /** Set after a failure was logged, so that a daemon down for long is logged once. */
  private downLogged = false;
  private lines = new LineSplitter(RESPONSE_MAX_BYTES);

  constructor(
    private readonly path: string,
    private readonly log: LogFn,
    /** Told of each answer: the request's args and its result or error. */
    private readonly answered: (args: ReportArgs, outcome: { result: unknown } | { error: ControlErrorBody }) => void = () => {},
  ) {
    this.connect();
  }

  /** Requests not answered yet. */
  get backlog(): number {
    return this.pending.length;
  }

  /** Queues a report; `done` runs once the daemon answered it (or refused it for good). */
  report(args: ReportArgs, done: () => void = () => {}): void {
    const id = this.nextId++;
    this.pending.push({ id, args, line: `${JSON.stringify({ version: CONTROL_VERSION, id, command: 'report', args })}\n`, done });
    if (this.connected) this.flush();
  }

  /** Resolves once every queued report is answered (or `ms` passed). */
  async drain(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (this.pending.length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    return this.pending.length === 0;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.socket?.destroy();
  }

  private flush(): void {
    if (this.sent >= this.pending.length) return;
    const out = this.pending
      .slice(this.sent)
      .map((p) => p.line)
      .join('');
    this.sent = this.pending.length;
    this.socket!.write(out);
  }

  private connect(): void {
    if (this.closed) return;
    const socket = connect(this.path);
    this.socket = socket;
    this.lines = new LineSplitter(RESPONSE_MAX_BYTES);
    socket.on('connect', () => {
      this.connected = true;
      this.retryMs = RETRY_FIRST_MS;
      if (this.downLogged) this.log('notice', `control socket ${this.path}: connected again, ${this.pending.length} reports to send`);
      this.downLogged = false;
      this.sent = 0;
      this.flush();
    });
    socket.on('data', (chunk: Buffer) => {
      for (const line of this.lines.push(chunk)) this.answer(line);
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (!this.downLogged)
        this.log('warning', `control socket ${this.path}: ${e.code ?? e.message}; trying again, ${this.pending.length} reports kept`);
      this.downLogged = true;
    });
    socket.on('close', () => {
      this.connected = false;
      if (this.closed) return;
      if (!this.downLogged)
        this.log(
          'warning',
          `control socket ${this.path}: the daemon closed the connection; trying again, ${this.pending.length} reports kept`,
        );
      this.downLogged = true;
      this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    });
  }

  private answer(line: string): void {
    let response: { id?: unknown; result?: unknown; error?: ControlErrorBody };
    try {
      response = JSON.parse(line) as typeof response;
    } catch {
      this.log('err', `control socket ${this.path}: unreadable answer`);
      return;
    }
    const first = this.pending[0];
    if (first === undefined || response.id !== first.id) {
      // an answer to no request of ours: a refusal of the connection (access_denied), the connection closes next
      if (response.error !== undefined) this.log('err', `control socket ${this.path}: ${response.error.message}`);
      this.downLogged = true;
      return;
    }
    const args = first.args;
    if (response.error !== undefined && ['stopping', 'internal'].includes(response.error.code)) {
      // the daemon is going away: this request and the rest are sent again on the next connection
      this.socket?.destroy();
      return;
    }
    this.pending.shift();
    this.sent--;
    if (response.error !== undefined) {
      this.log('err', `report ${args.type} ${args.address} port ${args.port}: ${response.error.message}`);
      this.answered(args, { error: response.error });
    } else this.answered(args, { result: response.result });
    first.done();
  }
}
