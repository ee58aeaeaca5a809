// Types shared by more than one folder of src/ (see doc/README.md for the folders and the flow).

/** Syslog priorities, the levels every logger of the project speaks. */
export type LogLevel = 'crit' | 'err' | 'warning' | 'notice' | 'info' | 'debug';

/**
 * What a log line is about, for machines: the JSON output carries these
 * beside the message; text and syslog lines show the message alone.
 */
export interface LogFields {
  /** What happened: start, stop, reload, notification, count, block, release, manual, ... */
  event: string;
  [field: string]: string | number | boolean | readonly string[] | undefined;
}

/**
 * Where a component sends its log lines; the daemon decides where they go.
 * The fields may come as a function that makes them: called only by an
 * output that writes them (JSON), for a line written per notification.
 */
export type LogFn = (level: LogLevel, message: string, fields?: LogFields | (() => LogFields)) => void;

export type AddressFamily = 'inet' | 'inet6';

/** An IP address as unsigned 32-bit words in network order: one for IPv4, four for IPv6. */
export interface IPAddress {
  family: AddressFamily;
  words: readonly number[];
}

/**
 * A numeric IP endpoint, the address kept as words from the decoded
 * sockaddr to the state key: text is made only where it is shown or
 * stored (conf/ip.ts toText); an IPv4-mapped IPv6 peer stays IPv6.
 */
export interface SocketAddress extends IPAddress {
  port: number;
}

/** The socket type of the descriptor a server passed (`SO_TYPE`). */
export type SocketType = 'stream' | 'dgram';

/** Message types as they travel in the datagram (protocol.md §3.1). */
export const WireType = {
  INVALID: 0,
  /** authentication failure, +2 */
  ADD: 1,
  /** authentication success, reset */
  DELETE: 2,
  /** abusive behaviour, block now */
  ABUSE: 3,
  /** invalid user name, +1 */
  BADUSER: 4,
} as const;
export type WireType = (typeof WireType)[keyof typeof WireType];

/** A received datagram that passed every check of protocol.md §4-§6. */
export interface Notification {
  type: Exclude<WireType, typeof WireType.INVALID>;
  /** The sender's text, control characters and invalid UTF-8 escaped: safe to log. */
  text: string;
  /** Credentials the kernel attached: pid, uid and gid of the sender. */
  pid: number;
  uid: number;
  gid: number;
  socketType: SocketType;
  /** `getsockname` of the passed socket: the local address and port the server serves on. */
  local: SocketAddress;
  /** `getpeername`, or the address in the message when the socket is not connected. */
  remote: SocketAddress;
  /** True when `remote` came from the message (the `blocklist_sa` case). */
  explicitPeer: boolean;
  /** Set when the notification came from a control `report` request (a log watcher): its source label. */
  report?: { source: string };
}

/** `*` in the configuration (upstream stores −1): any value; nfail never; duration forever. */
export const ANY = -1;
/** `=` in the configuration (−2), remote lines only: inherit from the local rule. */
export const SAME = -2;

/**
 * The rule in force for one notification (config.md §7.3), and the state
 * key (state-and-ctl.md §1.1): the masked remote address with the local
 * service and the rule's parameters.  −1 (ANY) is `*`: nfail never,
 * duration forever, owner any, no name mask.
 */
export interface EffectiveRule {
  /** Address family of the reporting socket, in the platform's numbering. */
  family: number;
  /** The remote address masked to `lmask`, as numeric text. */
  address: string;
  lmask: number;
  /** The local (service) port. */
  port: number;
  /** 6 tcp, 17 udp. */
  proto: number;
  uid: number;
  name: string;
  rmask: number;
  nfail: number;
  /** Seconds. */
  duration: number;
}

/** One state database record: failures counted against an effective rule (state-and-ctl.md §1.2). */
export interface Entry {
  key: EffectiveRule;
  /** Failure points; may exceed nfail. */
  count: number;
  /** Seconds since the epoch of the last failure; 0 after an AUTH_OK reset. */
  last: number;
  /** The packet-filter rule id the helper's add returned; "" when no rule is installed. */
  id: string;
  /** An escalated block (doc/escalation.md): its number in the address's history; absent for upstream's fixed blocks. */
  block?: number;
  /** An escalated block's seconds beyond the rule's duration; -1 (PERMANENT): it never expires by itself. */
  hold?: number;
}
