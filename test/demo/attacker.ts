// The client side of the demo's login server: one login attempt from a
// chosen source address, and what became of it.
//
// Standalone (one attempt, its result as one JSON line):
//   node dist/test/demo/attacker.js -h host -p port [-b srcaddr] [-u user] [-w password] [-t ms]
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/**
 * - `welcome`, `denied`: the server's answer;
 * - `no-connect`: no answer to the SYN within the time (what a packet filter's drop looks like);
 * - `no-answer`: connected, but no answer within the time;
 * - `refused`: RST (nothing listens there);
 * - `error`: anything else (`detail` says what).
 */
export type AttemptOutcome = 'welcome' | 'denied' | 'no-connect' | 'no-answer' | 'refused' | 'error';

export interface Attempt {
  host: string;
  port: number;
  /** Source address (default: the kernel's choice). */
  from?: string;
  user: string;
  password: string;
  /** Default 1000 ms. */
  timeoutMs?: number;
}

export interface AttemptResult {
  outcome: AttemptOutcome;
  /** The server's answer, or the error's code. */
  detail: string;
  ms: number;
}

export function tryLogin(a: Attempt): Promise<AttemptResult> {
  const start = Date.now();
  return new Promise((resolve) => {
    let connected = false;
    let answer = '';
    let settled = false;
    const conn = net.connect({ host: a.host, port: a.port, localAddress: a.from });
    const done = (outcome: AttemptOutcome, detail: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.destroy();
      resolve({ outcome, detail, ms: Date.now() - start });
    };
    const timer = setTimeout(() => done(connected ? 'no-answer' : 'no-connect', answer.trim()), a.timeoutMs ?? 1000);
    conn.on('connect', () => {
      connected = true;
      conn.write(`${a.user} ${a.password}\n`);
    });
    const answered = (): void => {
      const text = answer.trim();
      done(text.startsWith('welcome') ? 'welcome' : text === 'denied' ? 'denied' : 'error', text);
    };
    // the first line is the answer: hang up at once, as an attacker's tool does
    conn.on('data', (d: Buffer) => {
      answer += d.toString();
      if (answer.includes('\n')) answered();
    });
    conn.on('end', answered);
    conn.on('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'refused' : 'error', e.code ?? e.message));
  });
}

/** Passwords an attacker tries first. */
export const WORDLIST = ['123456', 'password', 'qwerty', 'letmein', 'dragon', 'monkey', 'admin', 'iloveyou'];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', short: 'h', default: '127.0.0.1' },
      port: { type: 'string', short: 'p', default: '2222' },
      from: { type: 'string', short: 'b' },
      user: { type: 'string', short: 'u', default: 'root' },
      password: { type: 'string', short: 'w', default: WORDLIST[0] },
      timeout: { type: 'string', short: 't', default: '1000' },
    },
  });
  const result = await tryLogin({
    host: values.host,
    port: Number(values.port),
    from: values.from,
    user: values.user,
    password: values.password,
    timeoutMs: Number(values.timeout),
  });
  console.log(JSON.stringify(result));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    console.error(`attacker: ${(e as Error).message}`);
    process.exit(1);
  });
}
